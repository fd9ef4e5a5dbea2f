//! The values OpenSSH computes from the local machine and substitutes into ssh_config: the
//! home directory (`~`, `%d`), the local user (`%u`), the host name (`%l`, `%L`), the
//! connection hash (`%C`), `%` tokens and `${ENV}` (`percent_expand`), and the number and time
//! forms its options take (`a2port`, `convtime`); and the user's shell that runs `Match exec`
//! (`run_match_exec`, bounded by `MATCH_EXEC_TIMEOUT`) and ProxyCommand. `eval` and `conn::config` call these; they
//! read only the environment, `/etc/passwd`, `/etc/services` and `/proc`.

use std::path::PathBuf;

/// How long a `Match exec` command may run; after it, it is killed and the block does not
/// apply.
pub const MATCH_EXEC_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The shell OpenSSH runs commands with: `$SHELL` when it is an absolute path, else
/// `/bin/sh` (`Match exec`, and ProxyCommand in `conn::proxy`).
pub fn user_shell() -> String {
    std::env::var("SHELL")
        .ok()
        .filter(|s| s.starts_with('/'))
        .unwrap_or_else(|| "/bin/sh".to_string())
}

/// Runs a `Match exec` command (tokens expanded) as OpenSSH's `execute_in_shell` does: with
/// `user_shell() -c`, stdin and stdout on /dev/null; whether it exited 0. `Err` says why it
/// gave no answer: it could not start, or it ran past `MATCH_EXEC_TIMEOUT` (then it is
/// killed, by its PID, and reaped).
pub fn run_match_exec(cmd: &str) -> Result<bool, String> {
    use std::process::{Command, Stdio};
    let mut child = Command::new(user_shell())
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("`{cmd}` could not start ({e})"))?;
    let deadline = std::time::Instant::now() + MATCH_EXEC_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status.success()),
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "`{cmd}` ran for more than {} and was stopped",
                    crate::units::Duration(MATCH_EXEC_TIMEOUT)
                ));
            }
        }
    }
}

/// The home directory: `$HOME`, else the passwd entry's. (OpenSSH always takes the passwd
/// entry; sortie honours `HOME` so that a test or a wrapper can move it — docs/ssh.md.)
pub fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| passwd_by_uid().map(|p| PathBuf::from(p.1)))
}

/// The name of the user running sortie (`$USER`, `$LOGNAME`, else the passwd entry).
pub fn local_user() -> String {
    if let Some(u) = ["USER", "LOGNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|u| !u.is_empty()))
    {
        return u;
    }
    passwd_by_uid()
        .map(|p| p.0)
        .unwrap_or_else(|| "root".into())
}

pub fn uid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// (name, home) of the passwd entry with our uid.
fn passwd_by_uid() -> Option<(String, String)> {
    let uid = uid().to_string();
    passwd_find(|f| f[2] == uid)
}

/// The home directory of `user` (for `~user/…`).
pub fn home_of(user: &str) -> Option<String> {
    passwd_find(|f| f[0] == user).map(|p| p.1)
}

fn passwd_find(pred: impl Fn(&[&str]) -> bool) -> Option<(String, String)> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 5 && pred(&f)).then(|| (f[0].to_string(), f[5].to_string()))
    })
}

/// The local host name as `gethostname` gives it (`%l`).
pub fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// `%C`: SHA-1 over local host, remote host, port and user, in hex.
pub fn connection_hash(this_host: &str, host: &str, port: u16, user: &str) -> String {
    use sha1::Digest;
    let mut h = sha1::Sha1::new();
    for part in [this_host, host, &port.to_string(), user] {
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

/// `~`, `~/x`, `~user/x` → the home directory; anything else as it is. `Err` names an
/// unknown user.
pub fn tilde(path: &str) -> Result<String, String> {
    let Some(rest) = path.strip_prefix('~') else {
        return Ok(path.to_string());
    };
    let (user, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_start_matches('/')),
        None => (rest, ""),
    };
    let dir = if user.is_empty() {
        home()
            .map(|h| h.display().to_string())
            .ok_or("no home directory")?
    } else {
        home_of(user).ok_or_else(|| format!("no such user `{user}` for `~{user}`"))?
    };
    let sep = if dir.ends_with('/') { "" } else { "/" };
    Ok(format!("{dir}{sep}{tail}"))
}

/// OpenSSH's `percent_expand` (and with `dollar`, `${ENV}` too): `%%` is `%`, each `%x` of
/// `keys` its value; any other `%x` is an error, as is an unset or unclosed `${…}`.
pub fn percent(s: &str, keys: &[(char, &str)], dollar: bool) -> Result<String, String> {
    let mut out = String::new();
    let mut it = s.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        if dollar && c == '$' && s[i + 1..].starts_with('{') {
            let body = &s[i + 2..];
            let end = body
                .find('}')
                .ok_or_else(|| format!("`${{` without a closing `}}` in `{s}`"))?;
            let name = &body[..end];
            if name.is_empty() {
                return Err(format!("empty `${{}}` in `{s}`"));
            }
            let v = std::env::var(name)
                .map_err(|_| format!("environment variable `{name}` is not set (in `{s}`)"))?;
            out.push_str(&v);
            // Skip `{name}`.
            for _ in 0..name.chars().count() + 2 {
                it.next();
            }
            continue;
        }
        if c != '%' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some((_, '%')) => out.push('%'),
            Some((_, k)) => match keys.iter().find(|(key, _)| *key == k) {
                Some((_, v)) => out.push_str(v),
                None => return Err(format!("unknown token `%{k}` in `{s}`")),
            },
            None => return Err(format!("`%` at the end of `{s}`")),
        }
    }
    Ok(out)
}

/// An IP address literal, in the form `getnameinfo` gives it back.
pub fn address_literal(h: &str) -> Option<String> {
    h.parse::<std::net::IpAddr>().ok().map(|a| a.to_string())
}

/// `a2port`: 0 to 65535, or a service name from `/etc/services`; `None` otherwise. (Port 0
/// is then refused by the caller, as OpenSSH does.)
pub fn a2port(s: &str) -> Option<u16> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<u16>().ok();
    }
    let text = std::fs::read_to_string("/etc/services").ok()?;
    text.lines().find_map(|l| {
        let l = l.split('#').next().unwrap_or("");
        let mut f = l.split_whitespace();
        let name = f.next()?;
        let (port, proto) = f.next()?.split_once('/')?;
        let aliases: Vec<&str> = f.collect();
        (proto == "tcp" && (name == s || aliases.contains(&s)))
            .then(|| port.parse().ok())
            .flatten()
    })
}

/// `convtime`: `90`, `90s`, `1h30m`, … in seconds; `None` when malformed.
pub fn convtime(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let n: u64 = s[start..i].parse().ok()?;
        let mult = match b.get(i) {
            None => 1,
            Some(c) => {
                i += 1;
                match c.to_ascii_lowercase() {
                    b's' => 1,
                    b'm' => 60,
                    b'h' => 3600,
                    b'd' => 86_400,
                    b'w' => 604_800,
                    _ => return None,
                }
            }
        };
        total = total.checked_add(n.checked_mul(mult)?)?;
        if total > i32::MAX as u64 {
            return None;
        }
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_times_ports() {
        let keys = [('h', "web"), ('p', "22")];
        assert_eq!(percent("%h:%p%%", &keys, false).as_deref(), Ok("web:22%"));
        assert!(percent("%x", &keys, false).is_err());
        assert!(percent("a%", &keys, false).is_err());
        assert_eq!(convtime("1h30m"), Some(5400));
        assert_eq!(convtime("10"), Some(10));
        assert_eq!(convtime("1x"), None);
        assert_eq!(convtime(""), None);
        assert_eq!(a2port("2222"), Some(2222));
        assert_eq!(a2port("70000"), None);
        assert_eq!(a2port("nope-not-a-service"), None);
        assert_eq!(address_literal("::1").as_deref(), Some("::1"));
        assert_eq!(address_literal("web"), None);
        assert_eq!(
            connection_hash("l", "h", 22, "u"),
            "a758b431ce3b5255bb64fb021a4c2b4b65682e88"
        );
    }
}
