//! The sshd processes of an [`SshLab`]: the port they share, starting each one (in a mount
//! namespace of its own when files are bind-mounted for it, inside the site when there is one),
//! waiting until each answers with its `SSH-2.0` banner,
//! and stopping them with every session they started. Also where the hosts' addresses come from.

use std::io::{Read, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use rustix::process::Signal;

use super::{STOP_GRACE, ShellMode, SshLab, UNSHARE, log_tail};
use crate::{LabError, process};

/// `sh -c` script: bind-mounts each SOURCE TARGET pair up to `--`, then execs the rest.
/// Bounded by its arguments: each round consumes two.
const BIND_THEN_EXEC: &str = "while [ \"$1\" != -- ]; do mount --bind \"$1\" \"$2\" || exit 1; shift 2; done; shift; exec \"$@\"";

impl SshLab {
    /// Picks the port: the one asked for if it is free on every address, else (port 0) one the
    /// kernel hands out on the first address and that is free on all the others.
    pub(super) fn choose_port(&self) -> Result<u16, LabError> {
        // Behind a WAN the proxy takes the public address, sshd the backstage one: both free.
        let mut addresses: Vec<Ipv4Addr> = self.hosts.iter().map(|h| h.listen).collect();
        if self.options.behind_wan {
            addresses.extend(self.hosts.iter().map(|h| h.address));
        }
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

    pub(super) fn spawn(&mut self, i: usize) -> Result<(), LabError> {
        let mut cmd = self.sshd_command(i)?;
        let host = self.hosts.get_mut(i).ok_or(LabError::NoSuchHost(i))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&host.log)
            .map_err(|e| LabError::io(format!("opening {}", host.log.display()), e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| LabError::io("duplicating a log handle", e))?;
        // -D: foreground; -e: log to stderr, which is the host's log file.
        cmd.arg("-D").arg("-e").arg("-f").arg(&host.config);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2));
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let what = format!("starting sshd for {}", host.name);
        // Started from a thread inside the site, sshd (and every session) is inside too.
        let child = match &self.options.site {
            Some(site) => site.run(|| cmd.spawn().map_err(|e| LabError::io(what.clone(), e)))?,
            None => cmd.spawn().map_err(|e| LabError::io(what, e))?,
        };
        host.child = Some(child);
        Ok(())
    }

    /// The command that starts host `i`'s sshd: itself, or, when files are to be bind-mounted
    /// over the machine's (the lab's /etc/passwd, /etc/shadow, the site's /etc/hosts and
    /// /etc/resolv.conf), `unshare --mount` and a shell that mounts them and execs sshd — so
    /// the PID we get is sshd's, and nothing outside its mount namespace changes.
    fn sshd_command(&self, i: usize) -> Result<Command, LabError> {
        self.host(i)?;
        let mut binds: Vec<(PathBuf, PathBuf)> = Vec::new();
        if let ShellMode::Namespace(passwd) = &self.shell {
            binds.push((passwd.clone(), PathBuf::from("/etc/passwd")));
            if let Some(shadow) = &self.shadow {
                binds.push((shadow.clone(), PathBuf::from("/etc/shadow")));
            }
        }
        binds.extend(self.options.binds.iter().cloned());
        if binds.is_empty() {
            return Ok(Command::new(&self.options.sshd));
        }
        let mut cmd = Command::new(UNSHARE);
        cmd.args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
            .arg(BIND_THEN_EXEC)
            .arg("sh");
        for (source, target) in binds {
            cmd.arg(source).arg(target);
        }
        cmd.arg("--").arg(&self.options.sshd);
        Ok(cmd)
    }

    /// Waits until each of `which` accepts a TCP connection and sends `SSH-2.0`, probing with a
    /// few threads; an sshd that exits meanwhile is an error carrying its log's end.
    pub(super) fn wait_ready(
        &mut self,
        which: &[usize],
        timeout: Duration,
    ) -> Result<(), LabError> {
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
pub(super) fn host_addresses(base: Ipv4Addr, n: usize) -> Result<Vec<Ipv4Addr>, LabError> {
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
