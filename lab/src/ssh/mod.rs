//! SSH hosts for the lab: N real OpenSSH `sshd` processes, each on its own loopback address.
//!
//! [`SshLab::start`] takes [`SshLabOptions`] (how many hosts, the lab directory, the first address,
//! the port) and writes into that directory the client key, `authorized_keys`, per-host
//! `hosts/hNN/` folders (sshd_config, ed25519 host key, PID file, log), `known_hosts`,
//! `ssh_config` (for `ssh -F`) and `inventory.yml` (sortie's native format). Each `sshd` runs in the
//! foreground in its own process group, logging at VERBOSE to its own file so tests can count
//! accepted logins. When we are root, each `sshd` starts in a private mount namespace where a lab
//! copy of /etc/passwd gives the login user `/bin/sh`: root's bash start-up on these machines
//! costs ~100 ms per command, and nothing outside the namespace changes. With
//! [`SshLabOptions::password`] the namespace also gets a lab copy of /etc/shadow holding that
//! password's hash for the login user, and sshd takes passwords. With [`SshLabOptions::site`]
//! every sshd runs inside that network namespace, behind a relay on its usual address
//! ([`crate::site`]); [`SshLabOptions::binds`] adds files to bind-mount (the site's /etc/hosts
//! and /etc/resolv.conf), and [`SshLabOptions::no_forwarding`] names hosts that refuse TCP
//! forwarding. Dropping the [`SshLab`] stops every process it started, by PID.
//!
//! This module holds the options, the hosts and what tests do to them (kill, restart, new key);
//! `sshd` starts, probes and stops the processes, `config` writes the files above, `keys` makes
//! the keys and `account` arranges the login user's shell and password.

mod account;
mod config;
mod keys;
mod sshd;

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use rustix::process::Signal;

use config::host_pattern;
use sshd::host_addresses;

use crate::site::SiteNet;
use crate::wan::{Wan, WanOptions};
use crate::{LabError, process, raise_fd_limit};

pub use sshd::speaks_ssh;

const SSHD: &str = "/usr/sbin/sshd";
const UNSHARE: &str = "unshare";
const INSTALL_HINT: &str = "install OpenSSH with `apt-get install openssh-server openssh-client`";
const KEYGEN_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_GRACE: Duration = Duration::from_secs(3);

/// How to start an [`SshLab`].
#[derive(Debug, Clone)]
pub struct SshLabOptions {
    /// Number of hosts, named h01…hNN (three digits from 100 hosts on).
    pub hosts: usize,
    /// Lab directory; created if missing. Keys already in it are reused.
    pub dir: PathBuf,
    /// Address of the first host; host i listens on `base + i`. Must stay in 127.0.0.0/8 and
    /// off 127.0.0.1 (the HTTP and TCP servers use it).
    pub base: Ipv4Addr,
    /// Port every host listens on; 0 picks one that is free on every host address.
    pub port: u16,
    /// Give the login user `/bin/sh` through a private mount namespace, when we are root.
    pub sh_login_shell: bool,
    /// How long to wait for every sshd to answer with its `SSH-2.0` banner.
    pub ready_timeout: Duration,
    /// The sshd binary.
    pub sshd: PathBuf,
    /// Let the login user in with this password too: a lab copy of /etc/shadow holding its
    /// SHA-512 crypt hash is bind-mounted in sshd's mount namespace (root and `unshare` needed;
    /// the machine's /etc/shadow is never touched), and sshd_config says
    /// `PasswordAuthentication yes`.
    pub password: Option<String>,
    /// sshd listens on each host's backstage address ([`crate::wan::backstage`]), for a
    /// [`crate::wan::Wan`] in front of it on the public one (set by [`crate::Lab`]).
    pub behind_wan: bool,
    /// Indices of the hosts whose sshd_config says `AllowTcpForwarding no` (the others say
    /// yes): a host through which no `direct-tcpip` channel opens.
    pub no_forwarding: Vec<usize>,
    /// (host index, command): the host's sshd runs this as its `sftp` subsystem instead of
    /// `internal-sftp` — a server that stalls or answers garbage when SFTP starts, for tests.
    pub sftp_subsystem: Vec<(usize, String)>,
    /// Files bind-mounted over the machine's in every sshd's mount namespace, (lab file,
    /// path it covers), e.g. the site's `/etc/hosts`; root and `unshare` needed. The
    /// machine's own files are never touched.
    pub binds: Vec<(PathBuf, PathBuf)>,
    /// Run every sshd inside this site ([`crate::site`]); a relay in the runner's namespace
    /// then listens on each host's usual address and port and connects to its sshd inside.
    pub site: Option<SiteNet>,
}

impl SshLabOptions {
    pub fn new(hosts: usize, dir: impl Into<PathBuf>) -> Self {
        SshLabOptions {
            hosts,
            dir: dir.into(),
            base: Ipv4Addr::new(127, 0, 10, 1),
            port: 2222,
            sh_login_shell: true,
            ready_timeout: Duration::from_secs(20) + Duration::from_millis(100) * hosts as u32,
            sshd: PathBuf::from(SSHD),
            password: None,
            behind_wan: false,
            no_forwarding: Vec::new(),
            sftp_subsystem: Vec::new(),
            binds: Vec::new(),
            site: None,
        }
    }

    /// Options for tests that run side by side: a base address of their own (from a
    /// per-process counter) and a port picked free.
    pub fn for_test(hosts: usize, dir: impl Into<PathBuf>) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // 16384 blocks of 256 addresses in 127.64.0.0–127.127.255.255, spread by PID so test
        // processes rarely meet.
        let block = (std::process::id() % 256) * 64 + (n % 64);
        let base = u32::from(Ipv4Addr::new(127, 64, 0, 1)) + block * 256;
        let mut options = SshLabOptions::new(hosts, dir);
        options.base = Ipv4Addr::from(base);
        options.port = 0;
        options
    }
}

/// How the login user's shell was arranged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShellMode {
    /// sshd runs in a mount namespace whose /etc/passwd (the lab copy at this path) says /bin/sh.
    Namespace(PathBuf),
    /// The user's own shell, already /bin/sh.
    AlreadySh,
    /// The user's own shell, unchanged; the reason says why.
    Unchanged { shell: String, reason: String },
}

impl ShellMode {
    pub fn describe(&self) -> String {
        match self {
            ShellMode::Namespace(_) => {
                "/bin/sh (private mount namespace, lab copy of /etc/passwd)".into()
            }
            ShellMode::AlreadySh => "/bin/sh (the user's own)".into(),
            ShellMode::Unchanged { shell, reason } => format!("{shell} (unchanged: {reason})"),
        }
    }
}

/// One lab host: its sshd and its files.
#[derive(Debug)]
pub struct SshHost {
    /// Inventory name, `h01`…
    pub name: String,
    pub address: Ipv4Addr,
    /// Where its sshd listens: `address`, or the backstage address behind a WAN.
    pub listen: Ipv4Addr,
    pub port: u16,
    /// The host's folder under `hosts/`.
    pub dir: PathBuf,
    pub config: PathBuf,
    pub host_key: PathBuf,
    /// sshd's own log (VERBOSE): one "Accepted publickey" line per login.
    pub log: PathBuf,
    pub pid_file: PathBuf,
    child: Option<Child>,
}

impl SshHost {
    /// PID of the listening sshd, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Where its sshd listens (behind a WAN: the backstage address).
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::from((self.listen, self.port))
    }

    /// The host's public key as one `known_hosts` line.
    pub fn known_hosts_line(&self) -> Result<String, LabError> {
        let pubkey = read_to_string(&self.host_key.with_extension("pub"))?;
        let key: Vec<&str> = pubkey.split_whitespace().take(2).collect();
        Ok(format!(
            "{} {}",
            host_pattern(self.address, self.port),
            key.join(" ")
        ))
    }
}

/// N running sshd hosts and the files that reach them.
pub struct SshLab {
    dir: PathBuf,
    options: SshLabOptions,
    port: u16,
    user: String,
    shell: ShellMode,
    identity: PathBuf,
    /// The lab copy of /etc/shadow (with [`SshLabOptions::password`]).
    shadow: Option<PathBuf>,
    hosts: Vec<SshHost>,
    extra_vars: BTreeMap<String, serde_json::Value>,
    /// Sessions of hosts killed by [`SshLab::kill_host`]: (PID, start time).
    orphans: Vec<(u32, u64)>,
    /// With [`SshLabOptions::site`]: the relay from each host's address here to its sshd inside.
    relay: Option<Wan>,
}

impl SshLab {
    /// Writes keys and configs, starts every sshd, and returns once each answers `SSH-2.0`.
    pub fn start(options: SshLabOptions) -> Result<SshLab, LabError> {
        if !options.sshd.exists() {
            return Err(LabError::MissingTool {
                path: options.sshd.clone(),
                hint: INSTALL_HINT,
            });
        }
        let addresses = host_addresses(options.base, options.hosts)?;
        if options.behind_wan
            && let Some(a) = addresses.iter().find(|a| !crate::wan::has_backstage(**a))
        {
            return Err(LabError::Address(
                *a,
                "behind a WAN the hosts must be in 127.0.0.0–127.127.255.255 (their servers take the upper half)",
            ));
        }
        raise_fd_limit();
        let dir = absolute(&options.dir)?;
        create_dir(&dir.join("hosts"))?;
        let (uid, user, shell) = account::current_user()?;
        if uid == 0 {
            // sshd's privilege separation needs it when started as root; the Debian package
            // only creates it at service start.
            create_dir(Path::new("/run/sshd"))?;
        }

        let identity = dir.join("client_ed25519");
        let hosts = lay_out_hosts(&dir, &addresses, &options);
        for host in &hosts {
            create_dir(&host.dir)?;
        }
        keys::ensure_keys(&dir, &identity, &hosts)?;
        let shell_mode = account::login_shell(options.sh_login_shell, &dir, uid, &shell);
        let shadow = account::lab_shadow(options.password.as_deref(), &shell_mode, &dir, &user)?;

        let mut lab = SshLab {
            dir,
            port: options.port,
            options,
            user,
            shell: shell_mode,
            identity,
            shadow,
            hosts,
            extra_vars: BTreeMap::new(),
            orphans: Vec::new(),
            relay: None,
        };
        lab.port = lab.choose_port()?;
        for host in &mut lab.hosts {
            host.port = lab.port;
        }
        for i in 0..lab.hosts.len() {
            lab.write_sshd_config(i)?;
        }
        lab.write_known_hosts()?;
        lab.write_ssh_config()?;
        lab.write_inventory(&BTreeMap::new())?;

        for i in 0..lab.hosts.len() {
            lab.spawn(i)?;
        }
        lab.relay = lab.start_relay()?;
        let all: Vec<usize> = (0..lab.hosts.len()).collect();
        lab.wait_ready(&all, lab.options.ready_timeout)?;
        Ok(lab)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// With a site, the relay: each host's `listen:port` here to the same address inside,
    /// without delay (a WAN, if any, sits in front of it).
    fn start_relay(&self) -> Result<Option<Wan>, LabError> {
        let Some(site) = &self.options.site else {
            return Ok(None);
        };
        let routes = self
            .hosts
            .iter()
            .map(|h| (h.socket_addr(), h.socket_addr()))
            .collect();
        let direct = WanOptions {
            rtt: Duration::ZERO,
            bandwidth: None,
        };
        Wan::start_into(direct, routes, Some(site.clone())).map(Some)
    }

    /// Opens or closes host `i`'s relay listener (with a site), so a killed host refuses
    /// connects as it does without one.
    fn relay_open(&self, i: usize, open: bool) -> Result<(), LabError> {
        match &self.relay {
            Some(relay) => relay.set_open(self.host(i)?.socket_addr(), open),
            None => Ok(()),
        }
    }

    /// The port every host listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The login user (the current user).
    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn shell_mode(&self) -> &ShellMode {
        &self.shell
    }

    /// The client's private key, authorized on every host.
    pub fn identity_file(&self) -> &Path {
        &self.identity
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    pub fn ssh_config(&self) -> PathBuf {
        self.dir.join("ssh_config")
    }

    pub fn inventory(&self) -> PathBuf {
        self.dir.join("inventory.yml")
    }

    pub fn hosts(&self) -> &[SshHost] {
        &self.hosts
    }

    pub fn host(&self, i: usize) -> Result<&SshHost, LabError> {
        self.hosts.get(i).ok_or(LabError::NoSuchHost(i))
    }

    /// An `ssh` command reaching host `i` through the lab's `ssh_config`, ready for `.arg(cmd)`.
    pub fn ssh_command(&self, i: usize) -> Result<Command, LabError> {
        let host = self.host(i)?;
        let mut cmd = Command::new("ssh");
        cmd.arg("-F").arg(self.ssh_config()).arg(&host.name);
        Ok(cmd)
    }

    /// SIGKILL host `i`'s listening sshd only: new connections are refused, sessions already
    /// open carry on.
    pub fn kill_host(&mut self, i: usize) -> Result<(), LabError> {
        let host = self.hosts.get_mut(i).ok_or(LabError::NoSuchHost(i))?;
        if let Some(mut child) = host.child.take() {
            // Its sessions leave the tree when it dies: remember them for `stop`.
            let sessions = process::descendants(child.id());
            self.orphans.extend(
                sessions
                    .into_iter()
                    .filter_map(|pid| Some((pid, process::start_time(pid)?))),
            );
            process::signal(child.id(), Signal::KILL);
            let _ = process::wait_child(&mut child, STOP_GRACE);
        }
        self.relay_open(i, false)
    }

    /// SIGKILL host `i`'s sshd and every session under it (each connection's sshd and the
    /// commands it runs): "the server died mid-transfer".
    pub fn kill_host_and_sessions(&mut self, i: usize) -> Result<Vec<u32>, LabError> {
        let host = self.hosts.get_mut(i).ok_or(LabError::NoSuchHost(i))?;
        let Some(mut child) = host.child.take() else {
            return Ok(Vec::new());
        };
        let killed = process::signal_tree(child.id(), Signal::KILL);
        let _ = process::wait_child(&mut child, STOP_GRACE);
        process::wait_gone(&killed, STOP_GRACE);
        self.relay_open(i, false)?;
        Ok(killed)
    }

    /// Starts host `i` again after a kill, and waits until it answers.
    pub fn start_host(&mut self, i: usize) -> Result<(), LabError> {
        let running = self.host(i)?.child.is_some();
        if !running {
            self.spawn(i)?;
        }
        self.relay_open(i, true)?;
        self.wait_ready(&[i], self.options.ready_timeout)
    }

    /// Stops host `i` (and its sessions), gives it a new host key and starts it again.
    /// `known_hosts` keeps the old key, so clients see a changed key; returns the new
    /// `known_hosts` line ([`SshLab::write_known_hosts`] records it).
    pub fn regenerate_host_key(&mut self, i: usize) -> Result<String, LabError> {
        self.kill_host_and_sessions(i)?;
        let host = self.host(i)?;
        for path in [host.host_key.clone(), host.host_key.with_extension("pub")] {
            if path.exists() {
                std::fs::remove_file(&path)
                    .map_err(|e| LabError::io(format!("removing {}", path.display()), e))?;
            }
        }
        keys::generate_keys(&[(host.host_key.clone(), format!("sortie-lab {}", host.name))])?;
        self.start_host(i)?;
        self.host(i)?.known_hosts_line()
    }

    /// How many logins host `i`'s sshd has accepted ("Accepted publickey" in its log).
    pub fn accepted_connections(&self, i: usize) -> Result<usize, LabError> {
        self.log_count(i, "Accepted publickey")
    }

    /// How many lines of host `i`'s sshd log contain `needle`.
    pub fn log_count(&self, i: usize, needle: &str) -> Result<usize, LabError> {
        let log = std::fs::read(&self.host(i)?.log)
            .map_err(|e| LabError::io("reading an sshd log", e))?;
        Ok(String::from_utf8_lossy(&log)
            .lines()
            .filter(|l| l.contains(needle))
            .count())
    }
}

impl Drop for SshLab {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The hosts' names (`h01`…, three digits from 100 hosts on), addresses and files under
/// `DIR/hosts/`; none of them started yet.
fn lay_out_hosts(dir: &Path, addresses: &[Ipv4Addr], options: &SshLabOptions) -> Vec<SshHost> {
    let width = if options.hosts >= 100 { 3 } else { 2 };
    addresses
        .iter()
        .enumerate()
        .map(|(i, address)| {
            let name = format!("h{:0width$}", i + 1);
            let hdir = dir.join("hosts").join(&name);
            SshHost {
                config: hdir.join("sshd_config"),
                host_key: hdir.join("ssh_host_ed25519_key"),
                log: hdir.join("sshd.log"),
                pid_file: hdir.join("sshd.pid"),
                dir: hdir,
                name,
                address: *address,
                listen: if options.behind_wan {
                    crate::wan::backstage(*address)
                } else {
                    *address
                },
                port: options.port,
                child: None,
            }
        })
        .collect()
}

/// The last few lines of a log, for error messages.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}

fn absolute(path: &Path) -> Result<PathBuf, LabError> {
    create_dir(path)?;
    std::fs::canonicalize(path)
        .map_err(|e| LabError::io(format!("resolving {}", path.display()), e))
}

fn create_dir(path: &Path) -> Result<(), LabError> {
    std::fs::create_dir_all(path)
        .map_err(|e| LabError::io(format!("creating {}", path.display()), e))
}

fn read_to_string(path: &Path) -> Result<String, LabError> {
    std::fs::read_to_string(path)
        .map_err(|e| LabError::io(format!("reading {}", path.display()), e))
}

fn write(path: &Path, text: &str) -> Result<(), LabError> {
    std::fs::write(path, text).map_err(|e| LabError::io(format!("writing {}", path.display()), e))
}

/// What a finished child wrote on its (piped) stderr, for error messages.
fn stderr_of(child: &mut std::process::Child) -> String {
    let mut stderr = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut stderr);
    }
    stderr
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;
    use std::net::TcpStream;
    use std::process::{Output, Stdio};
    use std::thread::sleep;
    use std::time::Instant;

    fn run(lab: &SshLab, i: usize, command: &str) -> Output {
        lab.ssh_command(i).unwrap().arg(command).output().unwrap()
    }

    #[test]
    fn addresses_skip_network_and_broadcast_octets_and_stay_in_loopback() {
        let a = host_addresses(Ipv4Addr::new(127, 0, 10, 254), 3).unwrap();
        assert_eq!(
            a,
            [
                Ipv4Addr::new(127, 0, 10, 254),
                Ipv4Addr::new(127, 0, 11, 1),
                Ipv4Addr::new(127, 0, 11, 2)
            ]
        );
        assert!(host_addresses(Ipv4Addr::new(127, 255, 255, 254), 3).is_err());
        assert!(host_addresses(Ipv4Addr::new(127, 0, 0, 1), 1).is_err());
    }

    #[test]
    fn three_hosts_log_in_with_sh_and_write_inventory() {
        let dir = tempfile::tempdir().unwrap();
        let lab = SshLab::start(SshLabOptions::for_test(3, dir.path())).unwrap();
        assert_eq!(lab.hosts().len(), 3);

        for i in 0..3 {
            let out = run(&lab, i, "echo $0; uname -s");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            if lab.user() == "root" {
                assert_eq!(stdout.lines().next(), Some("sh"), "{:?}", lab.shell_mode());
            }
            assert_eq!(stdout.lines().nth(1), Some("Linux"));
        }
        assert_eq!(lab.accepted_connections(0).unwrap(), 1);

        let inventory = std::fs::read_to_string(lab.inventory()).unwrap();
        let h01 = lab.host(0).unwrap();
        assert!(inventory.contains(&format!(
            "      h01: {{ address: {}, port: {} }}\n",
            h01.address, h01.port
        )));
        assert!(inventory.contains("  host_key_checking: strict\n"));
        let known = std::fs::read_to_string(lab.known_hosts()).unwrap();
        assert_eq!(known.lines().count(), 3);
        assert!(known.starts_with(&format!("[{}]:{} ssh-ed25519 ", h01.address, h01.port)));

        // The SFTP subsystem answers.
        let sftp = Command::new("sftp")
            .arg("-F")
            .arg(lab.ssh_config())
            .arg("-b")
            .arg("-")
            .arg("h02")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn();
        if let Ok(mut sftp) = sftp {
            sftp.stdin.take().unwrap().write_all(b"pwd\n").unwrap();
            let out = sftp.wait_with_output().unwrap();
            assert!(out.status.success());
            assert!(String::from_utf8_lossy(&out.stdout).contains("Remote working directory"));
        }
    }

    #[test]
    fn multiplexed_commands_cost_milliseconds_not_a_shell_start_up() {
        let dir = tempfile::tempdir().unwrap();
        let lab = SshLab::start(SshLabOptions::for_test(1, dir.path())).unwrap();
        let control = dir.path().join("cm");
        let ssh = |command: &str| {
            lab.ssh_command(0)
                .unwrap()
                .arg("-o")
                .arg("ControlMaster=auto")
                .arg("-o")
                .arg(format!("ControlPath={}", control.display()))
                .arg("-o")
                .arg("ControlPersist=20")
                .arg(command)
                .output()
                .unwrap()
        };
        assert!(ssh("true").status.success());
        let started = Instant::now();
        for _ in 0..10 {
            assert!(ssh("true").status.success());
        }
        let each = started.elapsed() / 10;
        let _ = lab
            .ssh_command(0)
            .unwrap()
            .arg("-o")
            .arg(format!("ControlPath={}", control.display()))
            .args(["-O", "exit"])
            .output();
        eprintln!(
            "multiplexed no-op command: {each:?} ({:?})",
            lab.shell_mode()
        );
        // What makes commands cheap is that no bash rc file runs: the shell that runs them is
        // sh itself. (Times are reported, not asserted: this machine is shared.)
        if matches!(
            lab.shell_mode(),
            ShellMode::Namespace(_) | ShellMode::AlreadySh
        ) {
            let out = ssh("ps -o comm= -p $$");
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "sh");
        }
    }

    #[test]
    fn killed_host_refuses_and_its_sessions_die_then_it_comes_back_with_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut lab = SshLab::start(SshLabOptions::for_test(2, dir.path())).unwrap();

        // A session in progress: a command that sleeps.
        let mut session = lab.ssh_command(0).unwrap().arg("sleep 30").spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let pid = lab.host(0).unwrap().pid().unwrap();
        while !process::descendants(pid)
            .iter()
            .any(|p| process::cmdline(*p).is_some_and(|c| c.contains("sleep 30")))
            && Instant::now() < deadline
        {
            sleep(Duration::from_millis(20));
        }
        let killed = lab.kill_host_and_sessions(0).unwrap();
        assert!(killed.len() >= 3, "listener, connection, shell: {killed:?}");
        let status = process::wait_child(&mut session, Duration::from_secs(10)).unwrap();
        assert!(!status.success());
        assert!(TcpStream::connect(lab.host(0).unwrap().socket_addr()).is_err());
        assert!(lab.host(0).unwrap().pid().is_none());

        // The other host is untouched.
        assert!(run(&lab, 1, "true").status.success());

        // Back with a new key: the client's strict check refuses it.
        let old = lab.host(0).unwrap().known_hosts_line().unwrap();
        let new = lab.regenerate_host_key(0).unwrap();
        assert_ne!(old, new);
        let out = run(&lab, 0, "true");
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("HOST IDENTIFICATION HAS CHANGED"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        lab.write_known_hosts().unwrap();
        assert!(run(&lab, 0, "true").status.success());

        // Plain kill: the listener goes, its open session stays, start_host brings it back.
        let mut session = lab.ssh_command(1).unwrap().arg("sleep 30").spawn().unwrap();
        let pid = lab.host(1).unwrap().pid().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !process::descendants(pid)
            .iter()
            .any(|p| process::cmdline(*p).is_some_and(|c| c.contains("sleep 30")))
            && Instant::now() < deadline
        {
            sleep(Duration::from_millis(20));
        }
        lab.kill_host(1).unwrap();
        assert!(TcpStream::connect(lab.host(1).unwrap().socket_addr()).is_err());
        assert!(
            session.try_wait().unwrap().is_none(),
            "the session survives"
        );
        lab.start_host(1).unwrap();
        assert!(run(&lab, 1, "true").status.success());

        // Dropping the lab ends every sshd and the session left from the killed listener.
        let pids: Vec<u32> = lab.hosts().iter().filter_map(SshHost::pid).collect();
        drop(lab);
        assert!(process::wait_gone(&pids, Duration::from_secs(5)));
        assert!(process::wait_child(&mut session, Duration::from_secs(10)).is_some());
    }
}
