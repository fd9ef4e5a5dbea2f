//! Real servers from Debian packages, each started on loopback with a configuration of its own
//! in a directory the caller gives (a temp dir), on free ports, in the foreground, and stopped
//! by the PID the lab spawned when dropped: `redis-server`, `memcached`, Dovecot (IMAP and
//! POP3 with STARTTLS), an SMTP server with STARTTLS (Python's `aiosmtpd`) and `chronyd` as an
//! NTP server. `scripts/setup` installs the packages; a missing one is a
//! [`LabError::MissingTool`] that says so.
//!
//! Dovecot counts a connection whose source and destination addresses are equal as secured
//! (and allows plaintext logins on it); on loopback the kernel picks 127.0.0.1 as the source,
//! so the lab's Dovecot listens on 127.0.0.2 by default, where it behaves as it does across a
//! network.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::LabError;
use crate::pki::Identity;

/// How long a server may take to answer after it was started.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// One server process the lab started; dropping it stops it (and its children) by PID.
pub struct Daemon {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Daemon {
    /// Where it answers.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its directory: configuration, state, logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What it wrote to its log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        crate::process::terminate_child(&mut self.child, Duration::from_secs(5));
    }
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at {} (pid {})",
            self.name,
            self.addr,
            self.child.id()
        )
    }
}

fn tool(path: &str, package: &'static str) -> Result<PathBuf, LabError> {
    let p = PathBuf::from(path);
    if p.exists() {
        Ok(p)
    } else {
        Err(LabError::MissingTool {
            path: p,
            hint: package,
        })
    }
}

fn mkdir(dir: &Path) -> Result<(), LabError> {
    std::fs::create_dir_all(dir).map_err(|e| LabError::io(format!("creating {}", dir.display()), e))
}

fn write(path: &Path, text: &str) -> Result<(), LabError> {
    std::fs::write(path, text).map_err(|e| LabError::io(format!("writing {}", path.display()), e))
}

/// A TCP port on `ip` that is free now (bound, then released).
fn free_tcp(ip: Ipv4Addr) -> Result<u16, LabError> {
    Ok(crate::tcp::closed_port(ip)?.port())
}

/// A UDP port on `ip` that is free now.
pub fn free_udp(ip: Ipv4Addr) -> Result<u16, LabError> {
    let s = std::net::UdpSocket::bind((ip, 0)).map_err(|e| LabError::io("binding UDP", e))?;
    let port = s
        .local_addr()
        .map_err(|e| LabError::io("reading a bound address", e))?
        .port();
    Ok(port)
}

/// Spawns `cmd` with its output in `dir/log`, then waits until `ready` holds.
fn spawn(
    name: &'static str,
    mut cmd: Command,
    dir: &Path,
    addr: SocketAddr,
    ready: impl Fn(SocketAddr) -> bool,
) -> Result<Daemon, LabError> {
    let log = std::fs::File::create(dir.join("log"))
        .map_err(|e| LabError::io(format!("creating {}/log", dir.display()), e))?;
    let err = log
        .try_clone()
        .map_err(|e| LabError::io("duplicating a log file", e))?;
    cmd.stdin(Stdio::null()).stdout(log).stderr(err);
    let child = cmd
        .spawn()
        .map_err(|e| LabError::io(format!("starting {name}"), e))?;
    let mut d = Daemon {
        name,
        child,
        addr,
        dir: dir.to_path_buf(),
    };
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Ok(Some(status)) = d.child.try_wait() {
            return Err(LabError::Server(format!(
                "{name} exited ({status}) before it answered on {addr}; its log:\n{}",
                d.log()
            )));
        }
        if ready(addr) {
            return Ok(d);
        }
        if Instant::now() >= deadline {
            let log = d.log();
            drop(d);
            return Err(LabError::Server(format!(
                "{name} did not answer on {addr} within {READY_TIMEOUT:?}; its log:\n{log}"
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// True when a TCP connect succeeds and the server says something first (a banner) or, with
/// `probe`, answers it.
fn answers_tcp(addr: SocketAddr, probe: Option<&[u8]>) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if let Some(p) = probe
        && s.write_all(p).is_err()
    {
        return false;
    }
    let mut buf = [0u8; 64];
    matches!(s.read(&mut buf), Ok(n) if n > 0)
}

/// `redis-server` on 127.0.0.1, no persistence; with `password`, it demands `AUTH` first.
pub fn redis(dir: &Path, password: Option<&str>) -> Result<Daemon, LabError> {
    let bin = tool("/usr/bin/redis-server", "redis-server (run scripts/setup)")?;
    mkdir(dir)?;
    let port = free_tcp(Ipv4Addr::LOCALHOST)?;
    let mut conf = format!(
        "port {port}\nbind 127.0.0.1\nprotected-mode no\ndaemonize no\nsave \"\"\nappendonly no\ndir {}\nlogfile \"\"\n",
        dir.display()
    );
    if let Some(p) = password {
        conf.push_str(&format!("requirepass {p}\n"));
    }
    let path = dir.join("redis.conf");
    write(&path, &conf)?;
    let mut cmd = Command::new(bin);
    cmd.arg(&path);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    spawn("redis-server", cmd, dir, addr, |a| {
        answers_tcp(a, Some(b"PING\r\n"))
    })
}

/// `memcached` on 127.0.0.1 (TCP only, 16 MiB).
pub fn memcached(dir: &Path) -> Result<Daemon, LabError> {
    let bin = tool("/usr/bin/memcached", "memcached (run scripts/setup)")?;
    mkdir(dir)?;
    let port = free_tcp(Ipv4Addr::LOCALHOST)?;
    let mut cmd = Command::new(bin);
    cmd.args(["-l", "127.0.0.1", "-U", "0", "-m", "16", "-u", "root"])
        .arg("-p")
        .arg(port.to_string());
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    spawn("memcached", cmd, dir, addr, |a| {
        answers_tcp(a, Some(b"version\r\n"))
    })
}

/// How the lab's Dovecot is set up.
#[derive(Debug, Clone)]
pub struct DovecotOptions {
    /// Where it listens (not 127.0.0.1: see the module's note).
    pub ip: Ipv4Addr,
    /// Whether plaintext logins are refused before TLS (`disable_plaintext_auth`, `ssl =
    /// required`): true is the right set-up; false is the wrong one, for tests that must fail.
    pub refuse_plaintext: bool,
}

impl Default for DovecotOptions {
    fn default() -> Self {
        DovecotOptions {
            ip: Ipv4Addr::new(127, 0, 0, 2),
            refuse_plaintext: true,
        }
    }
}

/// A Dovecot serving IMAP and POP3 with STARTTLS (certificate `cert`), one static user
/// (`sortie`, password `secret`); `.addr()` is IMAP, [`Dovecot::pop3`] the POP3 port.
pub struct Dovecot {
    pub daemon: Daemon,
    pub pop3: SocketAddr,
}

pub fn dovecot(dir: &Path, cert: &Identity, options: &DovecotOptions) -> Result<Dovecot, LabError> {
    let bin = tool(
        "/usr/sbin/dovecot",
        "dovecot-imapd and dovecot-pop3d (run scripts/setup)",
    )?;
    for sub in ["run", "state", "home"] {
        mkdir(&dir.join(sub))?;
    }
    write(&dir.join("cert.pem"), &cert.cert_pem)?;
    write(&dir.join("key.pem"), &cert.key_pem)?;
    let ip = options.ip;
    let imap = free_tcp(ip)?;
    let pop3 = free_tcp(ip)?;
    let (ssl, plain) = if options.refuse_plaintext {
        ("required", "yes")
    } else {
        ("yes", "no")
    };
    let d = dir.display();
    let instance = format!("sortie-lab-{}", std::process::id());
    let conf = format!(
        "protocols = imap pop3\nlisten = {ip}\nbase_dir = {d}/run\nstate_dir = {d}/state\n\
instance_name = {instance}-{imap}\nlog_path = {d}/log\nssl = {ssl}\nssl_cert = <{d}/cert.pem\n\
ssl_key = <{d}/key.pem\ndisable_plaintext_auth = {plain}\nauth_mechanisms = plain login\n\
default_login_user = dovenull\ndefault_internal_user = dovecot\n\
passdb {{\n  driver = static\n  args = password=secret\n}}\n\
userdb {{\n  driver = static\n  args = uid=nobody gid=nogroup home={d}/home/%u\n}}\n\
mail_location = maildir:~/Maildir\n\
service imap-login {{\n  inet_listener imap {{\n    address = {ip}\n    port = {imap}\n  }}\n  inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
service pop3-login {{\n  inet_listener pop3 {{\n    address = {ip}\n    port = {pop3}\n  }}\n  inet_listener pop3s {{\n    port = 0\n  }}\n}}\n"
    );
    let path = dir.join("dovecot.conf");
    write(&path, &conf)?;
    let mut cmd = Command::new(bin);
    cmd.arg("-F").arg("-c").arg(&path);
    let addr = SocketAddr::from((ip, imap));
    let pop3 = SocketAddr::from((ip, pop3));
    let daemon = spawn("dovecot", cmd, dir, addr, move |a| {
        answers_tcp(a, None) && answers_tcp(pop3, None)
    })?;
    Ok(Dovecot { daemon, pop3 })
}

/// An SMTP server (Python's `aiosmtpd`, Debian's `python3-aiosmtpd`) on 127.0.0.1 that
/// discards mail; with `tls`, it offers STARTTLS with that certificate.
pub fn smtp(dir: &Path, tls: Option<&Identity>) -> Result<Daemon, LabError> {
    let python = tool("/usr/bin/python3", "python3 (run scripts/setup)")?;
    tool(
        "/usr/lib/python3/dist-packages/aiosmtpd",
        "python3-aiosmtpd (run scripts/setup)",
    )?;
    mkdir(dir)?;
    let port = free_tcp(Ipv4Addr::LOCALHOST)?;
    let mut cmd = Command::new(python);
    // Debian's python3 with its own packages, whatever a user's environment adds.
    cmd.env_remove("PYTHONPATH").env_remove("PYTHONHOME");
    cmd.args(["-m", "aiosmtpd", "-n", "-c", "aiosmtpd.handlers.Sink"])
        .arg("-l")
        .arg(format!("127.0.0.1:{port}"));
    if let Some(id) = tls {
        write(&dir.join("cert.pem"), &id.cert_pem)?;
        write(&dir.join("key.pem"), &id.key_pem)?;
        cmd.arg("--tlscert")
            .arg(dir.join("cert.pem"))
            .arg("--tlskey")
            .arg(dir.join("key.pem"))
            .arg("--no-requiretls");
    }
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    spawn("aiosmtpd", cmd, dir, addr, |a| answers_tcp(a, None))
}

/// `chronyd` as an NTP server on 127.0.0.1 (UDP), never touching the system clock (`-x`);
/// with `stratum`, it serves its local clock at that stratum (`local stratum N`), else it is
/// unsynchronised (its replies say stratum 0, leap "alarm").
pub fn chrony(dir: &Path, stratum: Option<u8>) -> Result<Daemon, LabError> {
    let bin = tool("/usr/sbin/chronyd", "chrony (run scripts/setup)")?;
    mkdir(dir)?;
    let port = free_udp(Ipv4Addr::LOCALHOST)?;
    let d = dir.display();
    let mut conf = format!(
        "port {port}\nbindaddress 127.0.0.1\nallow 127.0.0.1\ncmdport 0\npidfile {d}/chronyd.pid\ndriftfile {d}/drift\n"
    );
    if let Some(s) = stratum {
        conf.push_str(&format!("local stratum {s}\n"));
    }
    let path = dir.join("chrony.conf");
    write(&path, &conf)?;
    let mut cmd = Command::new(bin);
    cmd.args(["-d", "-x", "-u", "root", "-f"]).arg(&path);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    spawn("chronyd", cmd, dir, addr, |a| ntp_query(a).is_some())
}

/// A mode-3 (client) NTP query; the reply's bytes, if one comes within half a second.
pub fn ntp_query(addr: SocketAddr) -> Option<Vec<u8>> {
    let local: SocketAddr = match addr.ip() {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let s = std::net::UdpSocket::bind(local).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    let mut query = [0u8; 48];
    query[0] = 0x23;
    s.send_to(&query, addr).ok()?;
    let mut buf = [0u8; 512];
    let (n, _) = s.recv_from(&mut buf).ok()?;
    Some(buf[..n].to_vec())
}
