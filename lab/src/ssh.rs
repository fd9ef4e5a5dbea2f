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
//! password's hash for the login user, and sshd takes passwords. Dropping the [`SshLab`] stops
//! every process it started, by PID.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::{LabError, process, raise_fd_limit, write_atomically};

const SSHD: &str = "/usr/sbin/sshd";
const SSH_KEYGEN: &str = "ssh-keygen";
const UNSHARE: &str = "unshare";
const OPENSSL: &str = "openssl";
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

    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::from((self.address, self.port))
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
        raise_fd_limit();
        let dir = absolute(&options.dir)?;
        create_dir(&dir.join("hosts"))?;
        let (uid, user, shell) = current_user()?;
        if uid == 0 {
            // sshd's privilege separation needs it when started as root; the Debian package
            // only creates it at service start.
            create_dir(Path::new("/run/sshd"))?;
        }

        let identity = dir.join("client_ed25519");
        let width = if options.hosts >= 100 { 3 } else { 2 };
        let hosts: Vec<SshHost> = addresses
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
                    port: options.port,
                    child: None,
                }
            })
            .collect();
        for host in &hosts {
            create_dir(&host.dir)?;
        }

        // Keys: the client's and every missing host key, generated side by side.
        let mut missing: Vec<(PathBuf, String)> = Vec::new();
        if !identity.exists() {
            missing.push((identity.clone(), "sortie-lab client".into()));
        }
        for host in &hosts {
            if !host.host_key.exists() {
                missing.push((host.host_key.clone(), format!("sortie-lab {}", host.name)));
            }
        }
        generate_keys(&missing)?;
        let client_pub = read_to_string(&identity.with_extension("pub"))?;
        write(&dir.join("authorized_keys"), &client_pub)?;

        let shell_mode = if !options.sh_login_shell || shell == "/bin/sh" {
            if shell == "/bin/sh" {
                ShellMode::AlreadySh
            } else {
                ShellMode::Unchanged {
                    shell: shell.clone(),
                    reason: "disabled by the options".into(),
                }
            }
        } else {
            prepare_namespace_passwd(&dir, uid, &shell)
        };
        let shadow = match &options.password {
            None => None,
            Some(password) => {
                // The shadow copy is only seen through the namespace the passwd copy made.
                let ShellMode::Namespace(_) = &shell_mode else {
                    return Err(LabError::Server(format!(
                        "a lab password needs sshd in a private mount namespace (root and \
                         `unshare`); login shell: {}",
                        shell_mode.describe()
                    )));
                };
                Some(write_lab_shadow(&dir, &user, password)?)
            }
        };

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
        let all: Vec<usize> = (0..lab.hosts.len()).collect();
        lab.wait_ready(&all, lab.options.ready_timeout)?;
        Ok(lab)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
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
        Ok(())
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
        Ok(killed)
    }

    /// Starts host `i` again after a kill, and waits until it answers.
    pub fn start_host(&mut self, i: usize) -> Result<(), LabError> {
        let running = self.host(i)?.child.is_some();
        if !running {
            self.spawn(i)?;
        }
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
        generate_keys(&[(host.host_key.clone(), format!("sortie-lab {}", host.name))])?;
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

    /// Writes `known_hosts` from the host keys as they are now.
    pub fn write_known_hosts(&self) -> Result<(), LabError> {
        let mut text = String::new();
        for host in &self.hosts {
            text.push_str(&host.known_hosts_line()?);
            text.push('\n');
        }
        write_atomically(&self.known_hosts(), &text)
    }

    /// Writes `inventory.yml`; `vars` become its top-level `vars` (ports of the lab servers).
    pub fn write_inventory(
        &self,
        vars: &BTreeMap<String, serde_json::Value>,
    ) -> Result<(), LabError> {
        write_atomically(&self.inventory(), &self.inventory_yaml(vars))
    }

    /// Vars added to every inventory this lab writes (merged under those passed in).
    pub fn set_extra_vars(&mut self, vars: BTreeMap<String, serde_json::Value>) {
        self.extra_vars = vars;
    }

    /// The inventory in sortie's native format (DESIGN.md "Inventory").
    pub fn inventory_yaml(&self, vars: &BTreeMap<String, serde_json::Value>) -> String {
        let q = |p: &Path| yaml_string(&p.display().to_string());
        let mut y = String::new();
        y.push_str("# Written by sortie's test lab: every host is a local sshd on its own 127.x address.\n");
        let _ = writeln!(y, "ssh:");
        let _ = writeln!(y, "  user: {}", yaml_string(&self.user));
        let _ = writeln!(y, "  identity_file: {}", q(&self.identity));
        let _ = writeln!(y, "  known_hosts: {}", q(&self.known_hosts()));
        let _ = writeln!(y, "  host_key_checking: strict");
        let _ = writeln!(y, "  connect_timeout: 10s");
        let mut all_vars = self.extra_vars.clone();
        all_vars.extend(vars.iter().map(|(k, v)| (k.clone(), v.clone())));
        if !all_vars.is_empty() {
            let _ = writeln!(y, "vars:");
            for (key, value) in &all_vars {
                // JSON scalars are YAML 1.2 flow scalars.
                let _ = writeln!(y, "  {key}: {value}");
            }
        }
        let _ = writeln!(y, "groups:");
        let _ = writeln!(y, "  lab:");
        if self.hosts.is_empty() {
            let _ = writeln!(y, "    hosts: {{}}");
        } else {
            let _ = writeln!(y, "    hosts:");
        }
        for host in &self.hosts {
            let _ = writeln!(
                y,
                "      {}: {{ address: {}, port: {} }}",
                host.name, host.address, host.port
            );
        }
        y
    }

    fn write_ssh_config(&self) -> Result<(), LabError> {
        let mut text = String::from("# For debugging: ssh -F THIS_FILE h01\n");
        for host in &self.hosts {
            let _ = write!(
                text,
                "Host {}\n  HostName {}\n  Port {}\n",
                host.name, host.address, host.port
            );
        }
        let _ = write!(
            text,
            "Host *\n  User {}\n  IdentityFile {}\n  IdentitiesOnly yes\n  \
             UserKnownHostsFile {}\n  GlobalKnownHostsFile /dev/null\n  \
             StrictHostKeyChecking yes\n  BatchMode yes\n  ConnectTimeout 10\n  LogLevel ERROR\n",
            self.user,
            self.identity.display(),
            self.known_hosts().display()
        );
        write(&self.ssh_config(), &text)
    }

    fn write_sshd_config(&self, i: usize) -> Result<(), LabError> {
        let host = self.host(i)?;
        let password = self.shadow.is_some();
        let root_login = match (self.user == "root", password) {
            (false, _) => "",
            (true, false) => "PermitRootLogin prohibit-password\n",
            (true, true) => "PermitRootLogin yes\n",
        };
        let password_auth = if password { "yes" } else { "no" };
        let text = format!(
            "# sortie lab host {name}\n\
             ListenAddress {address}:{port}\n\
             HostKey {key}\n\
             PidFile {pid}\n\
             AuthorizedKeysFile {authorized}\n\
             {root_login}\
             PubkeyAuthentication yes\n\
             PasswordAuthentication {password_auth}\n\
             KbdInteractiveAuthentication no\n\
             UsePAM no\n\
             StrictModes no\n\
             PermitUserRC no\n\
             PermitUserEnvironment no\n\
             PrintMotd no\n\
             PrintLastLog no\n\
             UseDNS no\n\
             X11Forwarding no\n\
             AllowTcpForwarding yes\n\
             AcceptEnv LANG LC_*\n\
             MaxStartups 1000\n\
             MaxSessions 256\n\
             MaxAuthTries 10\n\
             LoginGraceTime 30\n\
             LogLevel VERBOSE\n\
             Subsystem sftp internal-sftp\n",
            name = host.name,
            address = host.address,
            port = host.port,
            key = host.host_key.display(),
            pid = host.pid_file.display(),
            authorized = self.dir.join("authorized_keys").display(),
        );
        write(&host.config, &text)
    }

    /// Picks the port: the one asked for if it is free on every address, else (port 0) one the
    /// kernel hands out on the first address and that is free on all the others.
    fn choose_port(&self) -> Result<u16, LabError> {
        let addresses: Vec<Ipv4Addr> = self.hosts.iter().map(|h| h.address).collect();
        if self.options.port != 0 {
            check_port_free(&addresses, self.options.port)?;
            return Ok(self.options.port);
        }
        let first = addresses
            .first()
            .copied()
            .unwrap_or(Ipv4Addr::new(127, 0, 10, 1));
        let mut last_error = None;
        for _ in 0..20 {
            let port = TcpListener::bind((first, 0))
                .and_then(|l| l.local_addr())
                .map_err(|e| LabError::io("picking a free port", e))?
                .port();
            match check_port_free(&addresses, port) {
                Ok(()) => return Ok(port),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or(LabError::Server("no free port found".into())))
    }

    fn spawn(&mut self, i: usize) -> Result<(), LabError> {
        let sshd = self.options.sshd.clone();
        let shell = self.shell.clone();
        let shadow = self.shadow.clone();
        let host = self.hosts.get_mut(i).ok_or(LabError::NoSuchHost(i))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&host.log)
            .map_err(|e| LabError::io(format!("opening {}", host.log.display()), e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| LabError::io("duplicating a log handle", e))?;
        let mut cmd = match &shell {
            ShellMode::Namespace(passwd) => {
                // unshare and sh both exec: the PID we get is sshd's.
                let mut cmd = Command::new(UNSHARE);
                cmd.args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"]);
                match &shadow {
                    None => cmd
                        .arg("mount --bind \"$0\" /etc/passwd && exec \"$@\"")
                        .arg(passwd),
                    Some(shadow) => cmd
                        .arg(
                            "mount --bind \"$0\" /etc/passwd && mount --bind \"$1\" /etc/shadow \
                             && shift && exec \"$@\"",
                        )
                        .arg(passwd)
                        .arg(shadow),
                };
                cmd.arg(&sshd);
                cmd
            }
            _ => Command::new(&sshd),
        };
        // -D: foreground; -e: log to stderr, which is the host's log file.
        cmd.arg("-D").arg("-e").arg("-f").arg(&host.config);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2));
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd
            .spawn()
            .map_err(|e| LabError::io(format!("starting sshd for {}", host.name), e))?;
        host.child = Some(child);
        Ok(())
    }

    /// Waits until each of `which` accepts a TCP connection and sends `SSH-2.0`, probing with a
    /// few threads; an sshd that exits meanwhile is an error carrying its log's end.
    fn wait_ready(&mut self, which: &[usize], timeout: Duration) -> Result<(), LabError> {
        let deadline = Instant::now() + timeout;
        let mut pending: Vec<usize> = which.to_vec();
        // Bounded by the deadline: every round either shrinks `pending` or sleeps.
        while !pending.is_empty() {
            for &i in &pending {
                let host = &mut self.hosts[i];
                if let Some(child) = host.child.as_mut()
                    && let Ok(Some(status)) = child.try_wait()
                {
                    host.child = None;
                    return Err(LabError::HostExited {
                        host: host.name.clone(),
                        status: status.to_string(),
                        log_tail: log_tail(&host.log),
                    });
                }
            }
            let addrs: Vec<(usize, SocketAddr)> = pending
                .iter()
                .map(|&i| (i, self.hosts[i].socket_addr()))
                .collect();
            let ready = probe_all(&addrs, deadline);
            pending.retain(|i| !ready.contains(i));
            if pending.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                let names: Vec<&str> = pending
                    .iter()
                    .map(|&i| self.hosts[i].name.as_str())
                    .collect();
                return Err(LabError::Timeout {
                    what: format!("sshd readiness of {}", names.join(", ")),
                    after: timeout,
                });
            }
            sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Stops every sshd (and its sessions): SIGTERM, SIGKILL after a bounded wait.
    pub fn stop(&mut self) {
        let mut children: Vec<(Child, Vec<u32>)> = Vec::new();
        for host in &mut self.hosts {
            if let Some(child) = host.child.take() {
                let tree = process::signal_tree(child.id(), Signal::TERM);
                children.push((child, tree));
            }
        }
        let deadline = Instant::now() + STOP_GRACE;
        for (child, tree) in &mut children {
            let left = deadline.saturating_duration_since(Instant::now());
            if process::wait_child(child, left).is_none() {
                for pid in tree.iter() {
                    process::signal(*pid, Signal::KILL);
                }
                let _ = process::wait_child(child, Duration::from_secs(1));
            }
        }
        // Sessions outlive their listener's exit: make sure they are gone too, with those
        // left behind by `kill_host` (the same PID and start time: the same process).
        let mut sessions: Vec<u32> = children.iter().flat_map(|(_, t)| t[1..].to_vec()).collect();
        for (pid, started) in self.orphans.drain(..) {
            if process::start_time(pid) == Some(started) && process::alive(pid) {
                process::signal(pid, Signal::TERM);
                sessions.push(pid);
            }
        }
        if !process::wait_gone(&sessions, Duration::from_secs(1)) {
            for pid in sessions {
                process::signal(pid, Signal::KILL);
            }
        }
    }
}

impl Drop for SshLab {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Probes `addrs` on up to 16 threads; returns the indices whose banner starts with `SSH-2.0`.
fn probe_all(addrs: &[(usize, SocketAddr)], deadline: Instant) -> Vec<usize> {
    let workers = addrs.len().clamp(1, 16);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                scope.spawn(move || {
                    addrs
                        .iter()
                        .skip(w)
                        .step_by(workers)
                        .filter(|(_, addr)| speaks_ssh(*addr, deadline))
                        .map(|(i, _)| *i)
                        .collect::<Vec<usize>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// True when `addr` accepts and sends a banner starting with `SSH-2.0` within a second.
pub fn speaks_ssh(addr: SocketAddr, deadline: Instant) -> bool {
    let left = deadline
        .saturating_duration_since(Instant::now())
        .clamp(Duration::from_millis(50), Duration::from_secs(1));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, left) else {
        return false;
    };
    if stream.set_read_timeout(Some(left)).is_err() {
        return false;
    }
    let mut banner = [0u8; 64];
    let mut got = 0;
    // At most 8 reads: sshd sends its banner line in one segment.
    for _ in 0..8 {
        match stream.read(&mut banner[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
        if got >= 7 || banner[..got].contains(&b'\n') {
            break;
        }
    }
    let ok = banner[..got].starts_with(b"SSH-2.0");
    // Say goodbye politely so sshd logs a clean close rather than an error.
    let _ = stream.write_all(b"SSH-2.0-sortie-lab-probe\r\n");
    ok
}

fn check_port_free(addresses: &[Ipv4Addr], port: u16) -> Result<(), LabError> {
    let mut held = Vec::with_capacity(addresses.len());
    for address in addresses {
        match TcpListener::bind((*address, port)) {
            Ok(l) => held.push(l),
            Err(e) => {
                return Err(LabError::PortUnavailable {
                    address: address.to_string(),
                    port,
                    detail: e.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// The hosts' addresses: `base`, `base + 1`, … — all inside 127.0.0.0/8, none of them 127.0.0.1
/// or a .0/.255 last octet (some tools treat those as network or broadcast addresses).
fn host_addresses(base: Ipv4Addr, n: usize) -> Result<Vec<Ipv4Addr>, LabError> {
    let mut out = Vec::with_capacity(n);
    let mut next = u32::from(base);
    // Skipping .0 and .255 adds at most 2 per 254: bounded by 2n + 2 steps.
    for _ in 0..(2 * n + 2) {
        if out.len() == n {
            break;
        }
        let address = Ipv4Addr::from(next);
        if address.octets()[0] != 127 {
            return Err(LabError::Address(address, "the lab only uses 127.0.0.0/8"));
        }
        if address == Ipv4Addr::LOCALHOST {
            return Err(LabError::Address(
                address,
                "127.0.0.1 is left to the HTTP and TCP servers",
            ));
        }
        let last = address.octets()[3];
        if last != 0 && last != 255 {
            out.push(address);
        }
        next = next.wrapping_add(1);
    }
    Ok(out)
}

fn host_pattern(address: Ipv4Addr, port: u16) -> String {
    if port == 22 {
        address.to_string()
    } else {
        format!("[{address}]:{port}")
    }
}

/// Runs ssh-keygen for each (path, comment), eight at a time, each with a timeout.
fn generate_keys(keys: &[(PathBuf, String)]) -> Result<(), LabError> {
    for chunk in keys.chunks(8) {
        let mut running = Vec::with_capacity(chunk.len());
        for (path, comment) in chunk {
            let child = Command::new(SSH_KEYGEN)
                .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
                .arg(path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => LabError::MissingTool {
                        path: PathBuf::from(SSH_KEYGEN),
                        hint: INSTALL_HINT,
                    },
                    _ => LabError::io("starting ssh-keygen", e),
                })?;
            running.push((child, path));
        }
        for (mut child, path) in running {
            let command = format!("ssh-keygen -t ed25519 -f {}", path.display());
            match process::wait_child(&mut child, KEYGEN_TIMEOUT) {
                Some(status) if status.success() => {}
                Some(status) => {
                    return Err(LabError::Command {
                        command,
                        status: status.to_string(),
                        stderr: stderr_of(&mut child),
                    });
                }
                None => {
                    process::signal(child.id(), Signal::KILL);
                    let _ = child.wait();
                    return Err(LabError::Timeout {
                        what: command,
                        after: KEYGEN_TIMEOUT,
                    });
                }
            }
        }
    }
    Ok(())
}

/// (uid, user name, login shell) of the current user, from /etc/passwd.
fn current_user() -> Result<(u32, String, String), LabError> {
    let uid = rustix::process::getuid().as_raw();
    let passwd = read_to_string(Path::new("/etc/passwd"))?;
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() == 7 && f[2].parse::<u32>().ok() == Some(uid))
        .map(|f| (uid, f[0].to_string(), f[6].to_string()))
        .ok_or_else(|| LabError::State {
            path: PathBuf::from("/etc/passwd"),
            detail: format!("no entry for uid {uid}"),
        })
}

/// Writes the lab's passwd copy (the user's shell set to /bin/sh) and checks, once, that
/// `unshare` can bind it over /etc/passwd; otherwise the user's shell stays as it is.
fn prepare_namespace_passwd(dir: &Path, uid: u32, shell: &str) -> ShellMode {
    let unchanged = |reason: String| ShellMode::Unchanged {
        shell: shell.to_string(),
        reason,
    };
    if uid != 0 {
        return unchanged("not root: no mount namespace".into());
    }
    let Ok(passwd) = read_to_string(Path::new("/etc/passwd")) else {
        return unchanged("/etc/passwd unreadable".into());
    };
    let mut copy = String::with_capacity(passwd.len());
    for line in passwd.lines() {
        let mut fields: Vec<&str> = line.split(':').collect();
        if fields.len() == 7 && fields[2].parse::<u32>().ok() == Some(uid) {
            fields[6] = "/bin/sh";
        }
        copy.push_str(&fields.join(":"));
        copy.push('\n');
    }
    let path = dir.join("passwd");
    if let Err(e) = write(&path, &copy) {
        return unchanged(e.to_string());
    }
    let probe = Command::new(UNSHARE)
        .args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
        .arg("mount --bind \"$0\" /etc/passwd && grep -c ':/bin/sh$' /etc/passwd")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    match probe {
        Err(e) => unchanged(format!("unshare unavailable: {e}")),
        Ok(mut child) => match process::wait_child(&mut child, Duration::from_secs(10)) {
            Some(status) if status.success() => ShellMode::Namespace(path),
            Some(status) => unchanged(format!(
                "unshare failed ({status}): {}",
                stderr_of(&mut child).trim()
            )),
            None => {
                process::signal(child.id(), Signal::KILL);
                let _ = child.wait();
                unchanged("unshare did not finish".into())
            }
        },
    }
}

/// Writes `DIR/shadow` (mode 0600): /etc/shadow with `user`'s password hash replaced by a
/// SHA-512 crypt hash of `password` (from `openssl passwd -6`, the password on its stdin), its
/// last-change date kept off 0 (which would force a change) and no expiry.
fn write_lab_shadow(dir: &Path, user: &str, password: &str) -> Result<PathBuf, LabError> {
    let mut child = Command::new(OPENSSL)
        .args(["passwd", "-6", "-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => LabError::MissingTool {
                path: PathBuf::from(OPENSSL),
                hint: "install it with `apt-get install openssl`",
            },
            _ => LabError::io("starting openssl", e),
        })?;
    // Dropping stdin after the write closes it: openssl hashes one line and exits.
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(format!("{password}\n").as_bytes())
            .map_err(|e| LabError::io("writing to openssl", e))?;
    }
    let command = "openssl passwd -6 -stdin".to_string();
    let Some(status) = process::wait_child(&mut child, KEYGEN_TIMEOUT) else {
        process::signal(child.id(), Signal::KILL);
        let _ = child.wait();
        return Err(LabError::Timeout {
            what: command,
            after: KEYGEN_TIMEOUT,
        });
    };
    let mut hash = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut hash);
    }
    let hash = hash.trim();
    if !status.success() || !hash.starts_with("$6$") {
        return Err(LabError::Command {
            command,
            status: status.to_string(),
            stderr: stderr_of(&mut child),
        });
    }

    let shadow = read_to_string(Path::new("/etc/shadow"))?;
    let mut copy = String::with_capacity(shadow.len() + hash.len());
    let mut found = false;
    for line in shadow.lines() {
        let mut fields: Vec<&str> = line.split(':').collect();
        if fields.len() == 9 && fields[0] == user {
            found = true;
            fields[1] = hash;
            if fields[2].is_empty() || fields[2] == "0" {
                fields[2] = "19000";
            }
            fields[7] = "";
        }
        copy.push_str(&fields.join(":"));
        copy.push('\n');
    }
    if !found {
        return Err(LabError::State {
            path: PathBuf::from("/etc/shadow"),
            detail: format!("no entry for {user}"),
        });
    }
    let path = dir.join("shadow");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| LabError::io(format!("writing {}", path.display()), e))?;
    file.write_all(copy.as_bytes())
        .map_err(|e| LabError::io(format!("writing {}", path.display()), e))?;
    Ok(path)
}

/// The last few lines of a log, for error messages.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}

/// A YAML double-quoted string (JSON's quoting is valid YAML).
fn yaml_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
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
    use std::process::Output;

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
