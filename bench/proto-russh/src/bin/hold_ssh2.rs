//! The same held sessions as `rt … hold`, through ssh2 (libssh2), for memory per session:
//! connected, authenticated, one command run, an SFTP channel started, all held at once.
use std::net::TcpStream;
use std::sync::{Arc, Mutex};

fn rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let info: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&args[1])?)?;
    let n: usize = args[2].parse()?;
    let key = std::path::PathBuf::from(info["identity_file"].as_str().unwrap_or(""));
    let user = info["user"].as_str().unwrap_or("root").to_string();
    let hosts: Vec<(String, u16)> = info["hosts"]
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("lab.json has no hosts"))?
        .iter()
        .take(n)
        .map(|h| {
            (
                h["address"].as_str().unwrap_or_default().to_string(),
                h["port"].as_u64().unwrap_or(22) as u16,
            )
        })
        .collect();
    let before = rss();
    let held = Arc::new(Mutex::new(Vec::new()));
    let next = Arc::new(Mutex::new(0usize));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (hosts, held, next, key, user) = (
                hosts.clone(),
                held.clone(),
                next.clone(),
                key.clone(),
                user.clone(),
            );
            std::thread::spawn(move || -> anyhow::Result<()> {
                loop {
                    let i = {
                        let mut g = next.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                        let i = *g;
                        *g += 1;
                        i
                    };
                    if i >= hosts.len() {
                        return Ok(());
                    }
                    let tcp = TcpStream::connect((hosts[i].0.as_str(), hosts[i].1))?;
                    let mut s = ssh2::Session::new()?;
                    s.set_tcp_stream(tcp);
                    s.handshake()?;
                    s.userauth_pubkey_file(&user, None, &key, None)?;
                    let mut ch = s.channel_session()?;
                    ch.exec("true")?;
                    std::io::Read::read_to_end(&mut ch, &mut Vec::new())?;
                    ch.wait_close()?;
                    drop(ch);
                    let sftp = s.sftp()?;
                    held.lock()
                        .map_err(|_| anyhow::anyhow!("poisoned"))?
                        .push((s, sftp));
                }
            })
        })
        .collect();
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("a thread panicked"))??;
    }
    let after = rss();
    println!(
        "ssh2: hosts={n}; RSS before {before} KiB, with all held {after} KiB: {:.1} KiB per session",
        (after - before) as f64 / n as f64
    );
    Ok(())
}
