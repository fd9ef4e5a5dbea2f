//! The lab's "site": one private network namespace that the runner cannot reach but the SSH
//! hosts are in, for probes that run from a host's network position (`via: host`).
//!
//! [`Site::start`] spawns a holder process, `unshare --net -- sh -c 'ip link set lo up && exec
//! sleep infinity'`, whose namespace is the site; it keeps the namespace's file
//! (`/proc/PID/ns/net`) open, and stops the holder by its PID when dropped. [`SiteNet`] is the
//! handle the rest of the lab holds: a thread that [`SiteNet::enter`]s the site creates its
//! sockets there (they stay there when handed to other threads), and every thread or process it
//! starts is there too — that is how [`SiteNet::run`] starts the inside servers and each sshd.
//! The machine's own namespace, addresses and files are never changed.

use std::fs::File;
use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{LabError, process};

/// How long the holder may take to bring its `lo` up.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// What the holder runs inside its new namespace (`sh -c`).
const HOLDER_SCRIPT: &str = "ip link set lo up && exec sleep infinity";

/// A handle on the site's network namespace; cheap to clone, valid while the [`Site`] lives.
#[derive(Debug, Clone)]
pub struct SiteNet {
    ns: Arc<File>,
    holder: u32,
}

impl SiteNet {
    /// Moves the calling thread into the site for good: its new sockets, threads and child
    /// processes are inside from now on. Only threads of the lab's own making should call it.
    pub fn enter(&self) -> Result<(), LabError> {
        rustix::thread::move_into_link_name_space(
            self.ns.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .map_err(|e| LabError::io("entering the site's network namespace (setns)", e.into()))
    }

    /// Runs `f` on a thread of its own inside the site and returns what it returns. Servers
    /// (their threads) and processes that `f` starts stay inside after it returns.
    pub fn run<T: Send>(
        &self,
        f: impl FnOnce() -> Result<T, LabError> + Send,
    ) -> Result<T, LabError> {
        std::thread::scope(|scope| {
            let inside = scope.spawn(|| {
                self.enter()?;
                f()
            });
            inside.join().unwrap_or_else(|_| {
                Err(LabError::Server("a thread inside the site panicked".into()))
            })
        })
    }

    /// A TCP socket (not yet connected) that lives in the site, for a relay to connect inside.
    pub fn tcp_socket(&self) -> Result<tokio::net::TcpSocket, LabError> {
        self.run(|| {
            tokio::net::TcpSocket::new_v4().map_err(|e| LabError::io("a socket in the site", e))
        })
    }

    /// PID of the process that holds the namespace.
    pub fn holder(&self) -> u32 {
        self.holder
    }
}

/// The running site: its holder process; dropping it stops the holder by PID.
pub struct Site {
    holder: Child,
    started: u64,
    net: SiteNet,
}

impl Site {
    /// Creates the namespace (root, `unshare` and `ip` needed: a clear error says which is
    /// missing) and waits until a socket inside can connect to itself on 127.0.0.1.
    pub fn start(dir: &Path) -> Result<Site, LabError> {
        check_requirements()?;
        std::fs::create_dir_all(dir)
            .map_err(|e| LabError::io(format!("creating {}", dir.display()), e))?;
        let log_path = dir.join("site.log");
        let log = File::create(&log_path)
            .map_err(|e| LabError::io(format!("creating {}", log_path.display()), e))?;
        let mut cmd = Command::new("unshare");
        cmd.args(["--net", "--", "/bin/sh", "-c", HOLDER_SCRIPT])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut holder = cmd
            .spawn()
            .map_err(|e| LabError::io("starting the site's holder (unshare --net)", e))?;
        match wait_ready(&mut holder, &log_path) {
            Ok(net) => {
                let started = process::start_time(holder.id()).unwrap_or(0);
                Ok(Site {
                    holder,
                    started,
                    net,
                })
            }
            Err(e) => {
                process::terminate_child(&mut holder, Duration::from_secs(2));
                Err(e)
            }
        }
    }

    pub fn net(&self) -> &SiteNet {
        &self.net
    }

    /// The holder's PID and start time (clock ticks after boot): with both, `sortie-lab stop`
    /// finds this very process again, never a reused PID.
    pub fn holder(&self) -> (u32, u64) {
        (self.holder.id(), self.started)
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        process::terminate_child(&mut self.holder, Duration::from_secs(2));
    }
}

/// Root, `unshare` and `ip` on PATH: what creating the site takes.
fn check_requirements() -> Result<(), LabError> {
    if !rustix::process::geteuid().is_root() {
        return Err(LabError::Inside(
            "root: it creates a network namespace (run the tests as root, as CI does)".into(),
        ));
    }
    for (tool, package) in [("unshare", "util-linux"), ("ip", "iproute2")] {
        if find_on_path(tool).is_none() {
            return Err(LabError::Inside(format!(
                "`{tool}` on PATH (Debian package {package}; scripts/setup installs it)"
            )));
        }
    }
    Ok(())
}

/// Where `name` is on PATH, if anywhere.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Waits until the holder has exec'd `sleep` in a namespace of its own and `lo` works there.
fn wait_ready(holder: &mut Child, log: &Path) -> Result<SiteNet, LabError> {
    let pid = holder.id();
    let deadline = Instant::now() + READY_TIMEOUT;
    let own = std::fs::read_link("/proc/self/ns/net").ok();
    // Bounded by the deadline: each round checks and sleeps 10 ms.
    loop {
        if let Ok(Some(status)) = holder.try_wait() {
            let stderr = std::fs::read_to_string(log).unwrap_or_default();
            return Err(LabError::Inside(format!(
                "a working `unshare --net` and `ip link set lo up`; the holder exited ({status}): {}",
                stderr.trim()
            )));
        }
        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok();
        let slept = process::cmdline(pid).is_some_and(|c| c.starts_with("sleep"));
        if slept && theirs.is_some() && theirs != own {
            let ns = File::open(format!("/proc/{pid}/ns/net"))
                .map_err(|e| LabError::io("opening the site's namespace", e))?;
            let net = SiteNet {
                ns: Arc::new(ns),
                holder: pid,
            };
            if net.run(loopback_works).is_ok() {
                return Ok(net);
            }
        }
        if Instant::now() >= deadline {
            return Err(LabError::Timeout {
                what: "the site's network namespace".into(),
                after: READY_TIMEOUT,
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A listener on 127.0.0.1 and a connection to it, in the calling thread's namespace.
fn loopback_works() -> Result<(), LabError> {
    let io = |e| LabError::io("checking the site's loopback", e);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(io)?;
    let addr = listener.local_addr().map_err(io)?;
    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).map_err(io)?;
    Ok(())
}
