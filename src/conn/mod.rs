//! SSH connections: one authenticated session per host, opened on the host's first SSH step
//! and reused by every later step (a channel each), closed when the host is done.
//!
//! The runner makes a `HostConn` per host (`exec/`), step kinds (`steps/ssh.rs`,
//! `sftp_put.rs`, `sftp_get.rs`) call `exec` and `remote` on it, and the runner calls `close`
//! at the end. Where to connect comes from the inventory and ssh_config (`config`, reading the
//! files as OpenSSH does with `ssh_config`);
//! `connect` opens a session: TCP (or a tunnel through a jump host, `jump`), the host key
//! checked against known_hosts (`host_key`, `known_hosts`), the login (`auth`). The session
//! itself, with its rules for sharing libssh2 between threads, is `session`; commands run on
//! it by `command`, file transfers by `sftp`. Errors are `crate::error::StepError`s, the
//! type the step kinds return too. libssh2 runs non-blocking: every call is awaited on tokio's
//! reactor (`session`), each command or transfer in a task of its own, and so is opening a
//! session (`connect`: TCP, key exchange, login, in the task of the host's first SSH step),
//! so a host in flight holds no thread, even while it connects. A session
//! that fails to open, or dies, makes every later step of the host fail with the same connect
//! error — the host is unreachable; it is never retried.

// `StepError` (the engine's type) carries a whole `Diagnostic`; boxing it is the engine's call.
#![allow(clippy::result_large_err)]

mod auth;
mod command;
pub mod config;
mod connect;
mod dial;
mod host_key;
mod jump;
pub mod known_hosts;
mod proxy;
mod session;
mod sftp;
mod ssh_config;
pub mod via;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use command::ExecOutput;
pub use session::{Ctl, OpError, Stop};
pub use sftp::{
    Finished, Listing, READ_BUFFER, Remote, RemoteFile, TRANSFERS_AT_ONCE, WRITE_IN_FLIGHT,
    transfer_turn,
};
pub use ssh2::FileStat;

use crate::error::StepError;
use crate::inventory::{Host, Inventory};
use config::Target;
use session::Live;

/// `host:port`, with brackets around an IPv6 address.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// How long `close` lets cancelled steps finish stopping their remote commands.
const CLOSE_WAIT: Duration = Duration::from_secs(3);

/// The SSH connection of one host during a run.
pub struct HostConn {
    pub host: Host,
    target: Result<Target, String>,
    live: tokio::sync::OnceCell<Result<Arc<Live>, StepError>>,
    keepalive: std::sync::Mutex<Option<(Arc<Stop>, tokio::task::JoinHandle<()>)>>,
}

/// Sets an operation's stop when the step's future goes away (a timeout, an interrupt): the
/// task doing it then stops the remote command and closes its channel.
struct StopOnDrop(Arc<Stop>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.set();
    }
}

impl HostConn {
    /// A connection whose `jump` is a `user@host:port` spec or comes from ssh_config.
    pub fn new(host: &Host) -> HostConn {
        HostConn::build(host, config::resolve(host, None))
    }

    /// A connection whose `jump` may name another inventory host.
    pub fn new_in(host: &Host, inventory: &Inventory) -> HostConn {
        HostConn::build(host, config::resolve(host, Some(inventory)))
    }

    fn build(host: &Host, target: Result<Target, String>) -> HostConn {
        HostConn {
            host: host.clone(),
            target,
            live: tokio::sync::OnceCell::new(),
            keepalive: std::sync::Mutex::new(None),
        }
    }

    /// The resolved connection settings (or why they could not be resolved).
    pub fn target(&self) -> Result<&Target, &str> {
        self.target.as_ref().map_err(String::as_str)
    }

    /// The session, opened on first use; an error once it failed or died.
    async fn session(&self) -> Result<Arc<Live>, StepError> {
        let target = match &self.target {
            Ok(t) => t.clone(),
            Err(e) => {
                return Err(StepError::Connect {
                    addr: self.host.name.clone(),
                    reason: e.clone(),
                });
            }
        };
        let live = self
            .live
            .get_or_init(|| async move { connect::connect(&target).await.map(Arc::new) })
            .await
            .clone()?;
        if let Some(reason) = live.dead_reason() {
            return Err(StepError::Connect {
                addr: live.addr.clone(),
                reason,
            });
        }
        self.start_keepalive(&live);
        Ok(live)
    }

    /// Keepalives while the session is idle between steps (one call each interval; stopped
    /// between calls, never half-way through one).
    fn start_keepalive(&self, live: &Arc<Live>) {
        let mut k = self.keepalive.lock().unwrap_or_else(|p| p.into_inner());
        if k.is_some() {
            return;
        }
        let weak = Arc::downgrade(live);
        let every = live.keepalive.max(Duration::from_secs(1));
        let stop = Stop::new();
        let s = stop.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = s.wait() => break,
                }
                let Some(live) = weak.upgrade() else { break };
                if live.dead_reason().is_some() || live.keepalive_tick().await.is_err() {
                    break;
                }
            }
        });
        *k = Some((stop, task));
    }

    /// Runs a command (already a complete shell command line) on a channel of its own.
    pub async fn exec(
        &self,
        command: &str,
        stdin: Option<Vec<u8>>,
        max_output: usize,
    ) -> Result<ExecOutput, StepError> {
        let live = self.session().await?;
        let stop = Stop::new();
        let _stop = StopOnDrop(stop.clone());
        let command = command.to_string();
        let l = live.clone();
        // A task of its own: dropped (a timeout), the step leaves it to stop the command.
        let r = tokio::spawn(async move {
            l.exec(&Ctl::new(stop), &command, stdin.as_deref(), max_output)
                .await
        })
        .await;
        match r {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(OpError::Cancelled)) => Err(StepError::Cancelled),
            Ok(Err(OpError::Dead(reason))) => Err(StepError::Connect {
                addr: live.addr.clone(),
                reason,
            }),
            Ok(Err(OpError::Failed { msg, .. })) => Err(StepError::Protocol(format!(
                "cannot run the command: {msg}"
            ))),
            Err(e) => Err(StepError::Io(format!("the command's task failed: {e}"))),
        }
    }

    /// Runs the future `f` makes, with SFTP (and commands) over the host's session, as a task
    /// of its own: dropped (a timeout), the step leaves it to stop where it waits.
    pub async fn remote<T, F, Fut>(&self, f: F) -> Result<T, StepError>
    where
        T: Send + 'static,
        F: FnOnce(Remote) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StepError>> + Send + 'static,
    {
        let live = self.session().await?;
        let stop = Stop::new();
        let _stop = StopOnDrop(stop.clone());
        let remote = Remote::new(live, Ctl::new(stop));
        match tokio::spawn(f(remote)).await {
            Ok(r) => r,
            Err(e) => Err(StepError::Io(format!("the transfer's task failed: {e}"))),
        }
    }

    /// Closes the session if one was opened (after cancelled steps stopped their commands).
    pub async fn close(&self) {
        let keepalive = self
            .keepalive
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some((stop, task)) = keepalive {
            stop.set();
            let _ = task.await;
        }
        let Some(Ok(live)) = self.live.get() else {
            return;
        };
        let live = live.clone();
        let start = Instant::now();
        while live.active() > 0 && start.elapsed() < CLOSE_WAIT {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        live.shutdown().await;
    }
}
