//! A measured prototype, not part of sortie: the bench's SSH work (exec, put 1 MiB through an
//! exclusive temporary with fsetstat and rename plus a listing of the folder, get 1 MiB after a
//! stat) done with russh + russh-sftp, every request pipelined where the protocol allows, to
//! count the round trips and the memory per session another SSH library would give sortie.
//!     proto-russh LAB_JSON rtt_ms phases   → per-phase round trips per host (medians)
//!     proto-russh LAB_JSON 0 hold          → peak RSS with every host connected, SFTP started

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use russh::client;
use russh::keys::{PrivateKeyWithHashAlg, load_secret_key};
use russh::{ChannelMsg, Disconnect};
use russh_sftp::client::RawSftpSession;
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};

struct Checker {
    host: String,
    port: u16,
    known: String,
}

impl client::Handler for Checker {
    type Error = anyhow::Error;
    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            return Ok(false);
        };
        Ok(russh::keys::check_known_hosts_path(
            &self.host,
            self.port,
            key,
            &self.known,
        )?)
    }
}

#[derive(Default, Debug, Clone)]
struct Times {
    connect_exec: f64,
    sftp_ready: f64,
    put: f64,
    get: f64,
}

struct Lab {
    user: String,
    key: Arc<russh::keys::PrivateKey>,
    known: String,
    hosts: Vec<(String, String, u16)>,
}

fn rss() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let get = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (get("VmRSS:"), get("VmHWM:"))
}

async fn connect(lab: &Lab, i: usize) -> Result<client::Handle<Checker>> {
    let (name, addr, port) = &lab.hosts[i];
    let config = Arc::new(client::Config {
        inactivity_timeout: None,
        ..Default::default()
    });
    let h = Checker {
        host: addr.clone(),
        port: *port,
        known: lab.known.clone(),
    };
    let mut s = client::connect(config, (addr.as_str(), *port), h)
        .await
        .with_context(|| format!("{name}: connect"))?;
    let auth = s
        .authenticate_publickey(
            lab.user.clone(),
            PrivateKeyWithHashAlg::new(lab.key.clone(), None),
        )
        .await?;
    if !auth.success() {
        bail!("{name}: authentication failed");
    }
    Ok(s)
}

async fn exec(s: &client::Handle<Checker>, cmd: &str) -> Result<(Vec<u8>, u32)> {
    let mut ch = s.channel_open_session().await?;
    ch.exec(true, cmd).await?;
    let mut out = Vec::new();
    let mut code = None;
    while let Some(msg) = ch.wait().await {
        match msg {
            ChannelMsg::Data { data } => out.extend_from_slice(&data),
            ChannelMsg::ExitStatus { exit_status } => code = Some(exit_status),
            ChannelMsg::Eof if code.is_some() => break,
            _ => {}
        }
    }
    Ok((out, code.unwrap_or(255)))
}

async fn start_sftp(s: &client::Handle<Checker>) -> Result<Arc<RawSftpSession>> {
    let ch = s.channel_open_session().await?;
    ch.request_subsystem(false, "sftp").await?;
    let raw = RawSftpSession::new(ch.into_stream());
    raw.init().await?;
    Ok(Arc::new(raw))
}

const CHUNK: usize = 32 << 10;

/// The put as sortie does it, pipelined: [stat dest, exclusive open of the temporary, opendir]
/// → [writes, fsetstat, close, readdir] → [rename, readdir to the end, close the listing].
async fn put(sftp: &RawSftpSession, dir: &str, blob: &[u8]) -> Result<()> {
    let dest = format!("{dir}/blob.bin");
    let tmp = format!("{dir}/.blob.bin.sortie-0123456789abcdef.tmp");
    let excl = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::EXCLUDE;
    let attrs = FileAttributes {
        permissions: Some(0o644),
        ..FileAttributes::empty()
    };
    let (st, h, d) = tokio::join!(
        sftp.stat(dest.clone()),
        sftp.open(tmp.clone(), excl, attrs.clone()),
        sftp.opendir(dir.to_string())
    );
    if st.is_ok() {
        bail!("{dest} exists: the prototype puts new files only");
    }
    let h = h?.handle;
    let d = d?.handle;
    let writes = futures_join(
        blob.chunks(CHUNK)
            .enumerate()
            .map(|(k, c)| sftp.write(h.clone(), (k * CHUNK) as u64, c.to_vec())),
    );
    let (w, set, close, listing) = tokio::join!(
        writes,
        sftp.fsetstat(h.clone(), attrs),
        sftp.close(h.clone()),
        sftp.readdir(d.clone())
    );
    for r in w {
        r?;
    }
    set?;
    close?;
    let _entries = listing?;
    let (ren, more, dclose) = tokio::join!(
        sftp.rename(tmp, dest),
        sftp.readdir(d.clone()),
        sftp.close(d)
    );
    ren?;
    let _ = more; // EOF
    dclose?;
    Ok(())
}

/// The get as sortie does it: stat (a FIFO is never opened), open, 1 MiB read in one flight; the
/// close sent and not waited for.
async fn get(sftp: &Arc<RawSftpSession>, path: &str) -> Result<Vec<u8>> {
    let st = sftp.stat(path.to_string()).await?;
    let size = st.attrs.size.unwrap_or(0) as usize;
    let h = sftp
        .open(path.to_string(), OpenFlags::READ, FileAttributes::empty())
        .await?
        .handle;
    let reads = futures_join((0..size.div_ceil(CHUNK)).map(|k| {
        let len = CHUNK.min(size - k * CHUNK) as u32;
        sftp.read(h.clone(), (k * CHUNK) as u64, len)
    }))
    .await;
    let mut out = Vec::with_capacity(size);
    for r in reads {
        out.extend_from_slice(&r?.data);
    }
    let s2 = sftp.clone();
    tokio::spawn(async move {
        let _ = s2.close(h).await;
    });
    Ok(out)
}

async fn futures_join<F: std::future::Future>(it: impl Iterator<Item = F>) -> Vec<F::Output> {
    let futs: Vec<_> = it.map(Box::pin).collect();
    let mut out = Vec::with_capacity(futs.len());
    // All polled at once (their requests go out together), answers taken in order.
    let mut set = futs;
    let mut results: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if results[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => results[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    for r in results {
        out.extend(r);
    }
    out
}

async fn host(lab: Arc<Lab>, i: usize, blob: Arc<Vec<u8>>, base: String) -> Result<Times> {
    let t0 = Instant::now();
    let s = Arc::new(connect(&lab, i).await?);
    // The SFTP channel opened beside the command (russh opens channels side by side).
    let s2 = s.clone();
    let sftp_task = tokio::spawn(async move {
        let r = start_sftp(&s2).await;
        (r, Instant::now())
    });
    let (out, code) = exec(&s, "uname -a").await?;
    if code != 0 || out.is_empty() {
        bail!("uname failed");
    }
    let t_exec = t0.elapsed();
    let (sftp, ready_at) = sftp_task.await?;
    let sftp = sftp?;
    let t_ready = ready_at.duration_since(t0);
    let t1 = Instant::now();
    let dir = format!("{base}/{}", lab.hosts[i].0);
    let (_, code) = exec(&s, &format!("rm -rf {dir} && mkdir -p {dir}")).await?;
    if code != 0 {
        bail!("mkdir failed");
    }
    let t_mk = t1.elapsed();
    let t2 = Instant::now();
    put(&sftp, &dir, &blob).await?;
    let t_put = t2.elapsed();
    let t3 = Instant::now();
    let got = get(&sftp, &format!("{dir}/blob.bin")).await?;
    let t_get = t3.elapsed();
    if got != *blob {
        bail!("get: bytes differ");
    }
    let _ = t_mk;
    s.disconnect(Disconnect::ByApplication, "", "en").await?;
    Ok(Times {
        connect_exec: t_exec.as_secs_f64(),
        sftp_ready: t_ready.as_secs_f64(),
        put: t_put.as_secs_f64(),
        get: t_get.as_secs_f64(),
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() { 0.0 } else { v[v.len() / 2] }
}

#[tokio::main(worker_threads = 2)]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let info: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&args[1])?)?;
    let rtt_ms: f64 = args[2].parse()?;
    let mode = args[3].as_str();
    let limit: usize = args
        .get(4)
        .and_then(|a| a.parse().ok())
        .unwrap_or(usize::MAX);
    let key = load_secret_key(info["identity_file"].as_str().context("key")?, None)?;
    let hosts = info["hosts"]
        .as_array()
        .context("hosts")?
        .iter()
        .take(limit)
        .map(|h| {
            (
                h["name"].as_str().unwrap_or("").to_string(),
                h["address"].as_str().unwrap_or("").to_string(),
                h["port"].as_u64().unwrap_or(22) as u16,
            )
        })
        .collect();
    let lab = Arc::new(Lab {
        user: info["user"].as_str().unwrap_or("root").into(),
        key: Arc::new(key),
        known: info["known_hosts"].as_str().context("known_hosts")?.into(),
        hosts,
    });
    let n = lab.hosts.len();
    match mode {
        "phases" => {
            let blob: Arc<Vec<u8>> =
                Arc::new((0..1u32 << 20).map(|i| (i * 7 + i / 4096) as u8).collect());
            let base = format!("{}/proto-russh", info["dir"].as_str().unwrap_or("/tmp"));
            std::fs::create_dir_all(&base)?;
            let t = Instant::now();
            let mut tasks = Vec::new();
            for i in 0..n {
                tasks.push(tokio::spawn(host(
                    lab.clone(),
                    i,
                    blob.clone(),
                    base.clone(),
                )));
            }
            let mut all = Vec::new();
            for t in tasks {
                all.push(t.await??);
            }
            let wall = t.elapsed().as_secs_f64();
            let rt = |f: fn(&Times) -> f64| median(all.iter().map(f).collect()) * 1000.0 / rtt_ms;
            println!(
                "hosts={n} wall={wall:.3}s connect+exec={:.1} sftp_ready_from_start={:.1} put={:.1} get={:.1} (round trips at {rtt_ms} ms; medians)",
                rt(|t| t.connect_exec),
                rt(|t| t.sftp_ready),
                rt(|t| t.put),
                rt(|t| t.get)
            );
        }
        "hold" => {
            let before = rss();
            let t = Instant::now();
            let mut tasks = Vec::new();
            for i in 0..n {
                let lab = lab.clone();
                tasks.push(tokio::spawn(async move {
                    let s = connect(&lab, i).await?;
                    let (_, code) = exec(&s, "true").await?;
                    let sftp = start_sftp(&s).await?;
                    let _ = code;
                    Ok::<_, anyhow::Error>((s, sftp))
                }));
            }
            let mut held = Vec::new();
            for t in tasks {
                held.push(t.await??);
            }
            let after = rss();
            println!(
                "hosts={n} connected in {:.1}s; RSS before {} KiB, with all held {} KiB (peak {} KiB): {:.1} KiB per session",
                t.elapsed().as_secs_f64(),
                before.0,
                after.0,
                after.1,
                (after.0 - before.0) as f64 / n as f64
            );
            for (s, sftp) in held {
                let _ = sftp.close_session();
                let _ = s.disconnect(Disconnect::ByApplication, "", "en").await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        _ => bail!("mode: phases or hold"),
    }
    let _ = StatusCode::Ok;
    Ok(())
}
