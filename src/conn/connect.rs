//! Connecting to one hop (`connect`, awaited by `HostConn` in `mod.rs` and by a via gateway
//! in `via/`, with a `Target` from `config.rs`): the TCP connection with its timeout (or,
//! behind a jump host, a tunnel through the jump host's own session from `jump.rs`; or a
//! ProxyCommand's stdin and stdout from `proxy.rs`, whose failure explains a failed
//! handshake), the SSH handshake with the host key types known_hosts expects (and AES-GCM
//! asked for before libssh2's slower first choice of cipher) and the host key check
//! (`host_key.rs`), the login (`auth.rs`); the result is a non-blocking `Live` session
//! (`session.rs`), or the `StepError` that makes the host unreachable.
//!
//! Nothing here holds a thread while it waits on the network: TCP is tokio's, and libssh2
//! runs non-blocking from the start, each call made by `Dial::call` (`dial.rs`), retrying it
//! on EAGAIN once the socket is ready the way libssh2 is blocked (on tokio's reactor), each
//! call within `connect_timeout`, as libssh2's own timeout bounded a blocking call. Name
//! resolution is `tokio::net::lookup_host` (getaddrinfo on a blocking thread of tokio's,
//! for the moment it takes), within `connect_timeout` with the TCP connection. What still
//! runs on the task's thread is local and short: reading known_hosts, starting a
//! ProxyCommand, ssh-agent's answers (`auth.rs`).

// `StepError` (the engine's type) carries a whole `Diagnostic`; boxing it is the engine's call.
#![allow(clippy::result_large_err)]

use std::future::Future;
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::time::{Duration, Instant};

use ssh2::ErrorCode;

use super::config::Target;
use super::dial::Dial;
use super::known_hosts::{self, Entry};
use super::proxy::{self, Proxy};
use super::session::{BLOCKING_LIMIT, Live};
use super::{auth, host_key, jump};
use crate::error::StepError;

/// Connects, checks the host key and logs in; the session it returns is registered with the
/// runtime's reactor. A jump host's connect comes first (`open_stream`, boxed: `connect_boxed`).
pub async fn connect(t: &Target) -> Result<Live, StepError> {
    let (poll_fd, stream, proxy) = open_stream(t).await?;
    let dial = Dial::new(t, stream, poll_fd)?;
    let entries = known_hosts::load(&t.known_hosts).map_err(|e| t.connect_error(e))?;
    let name = known_hosts::host_name(&t.host, t.port);
    let known = known_hosts::for_host(&entries, &name);
    if let Err(e) = handshake(t, &dial, &name, &known).await {
        return Err(match (e, proxy) {
            // What the command did is the likely reason the handshake found nobody.
            (StepError::Connect { addr, reason }, Some(p)) => StepError::Connect {
                addr,
                reason: explain(p, reason).await,
            },
            (e, _) => e,
        });
    }
    host_key::check(t, &dial.sess, &name, &known)?;
    auth::authenticate(t, &dial).await?;
    let (sess, poll_fd) = dial.into_parts();
    // Blocking calls left (ssh2's destructors, on the runtime's workers) are bounded by this.
    sess.set_timeout(BLOCKING_LIMIT);
    sess.set_keepalive(
        false,
        u32::try_from(t.keepalive.as_secs()).unwrap_or(30).max(2),
    );
    Live::new(sess, poll_fd, t.label.clone(), t.addr(), t.keepalive)
        .map_err(|e| t.connect_error(format!("cannot wait on the session's socket: {e}")))
}

/// `connect` as a boxed future, for the recursion (a jump host's connect inside a connect).
fn connect_boxed(t: &Target) -> Pin<Box<dyn Future<Output = Result<Live, StepError>> + Send + '_>> {
    Box::pin(connect(t))
}

/// `reason` with what the ProxyCommand did (`Proxy::explain` waits a moment for the command
/// to finish, on a blocking thread: it sleeps).
async fn explain(p: Proxy, reason: String) -> String {
    let r = reason.clone();
    tokio::task::spawn_blocking(move || p.explain(&r))
        .await
        .unwrap_or(reason)
}

/// The SSH handshake, asking for the host key types known_hosts has for the host.
async fn handshake(t: &Target, dial: &Dial, name: &str, known: &[&Entry]) -> Result<(), StepError> {
    let prefs = host_key::prefer_known_types(&dial.sess, known);
    // `handshake` wants `&mut`: a handle of the same session (ssh2's `Session` is shared).
    let mut sess = dial.sess.clone();
    let Err(e) = dial.call(|_| sess.handshake()).await else {
        return Ok(());
    };
    if let Some(refused) = host_key::kex_refused(t, &e, name, known, &prefs, offered_key(t)).await {
        return Err(refused);
    }
    let reason = match e.code() {
        ErrorCode::Session(-9) | ErrorCode::Session(-2) | ErrorCode::Session(-30) => format!(
            "no SSH answer within {} (connect_timeout): {}",
            crate::units::Duration(t.connect_timeout),
            e.message()
        ),
        _ => format!("SSH handshake failed: {}", e.message()),
    };
    Err(t.connect_error(reason))
}

/// The host key the server offers when nothing restricts the type, as `(type, blob)`: a
/// second connection, only to name the key a refused exchange did not show. Nothing is sent
/// past the key exchange.
async fn offered_key(t: &Target) -> Option<(String, Vec<u8>)> {
    let (fd, stream, _proxy) = open_stream(t).await.ok()?;
    let dial = Dial::new(t, stream, fd).ok()?;
    let mut sess = dial.sess.clone();
    dial.call(|_| sess.handshake()).await.ok()?;
    let (key, _) = dial.sess.host_key()?;
    let key_type = known_hosts::blob_key_type(key)?;
    Some((key_type, key.to_vec()))
}

/// The stream a session runs over: a descriptor to poll, the stream itself, and the
/// ProxyCommand that carries it, if one does.
type Opened = (OwnedFd, Box<dyn std::os::fd::AsRawFd + Send>, Option<Proxy>);

/// Opens the TCP connection (or the tunnel through the jump hosts, or the ProxyCommand) for
/// `t`.
async fn open_stream(t: &Target) -> Result<Opened, StepError> {
    if let Some(cmd) = &t.proxy_command {
        let (proxy, stream) = proxy::spawn(cmd)
            .map_err(|e| t.connect_error(format!("cannot run ProxyCommand `{cmd}`: {e}")))?;
        let dup = stream
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| t.connect_error(e.to_string()))?;
        return Ok((dup, Box::new(stream), Some(proxy)));
    }
    if let Some(j) = &t.jump {
        let jump = connect_boxed(j).await?;
        let mine = jump::tunnel(jump, &t.host, t.port)
            .await
            .map_err(|e| t.connect_error(format!("through jump host {}: {e}", j.label)))?;
        let dup = mine
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| t.connect_error(e.to_string()))?;
        return Ok((dup, Box::new(mine), None));
    }
    let deadline = Instant::now() + t.connect_timeout;
    let resolve = tokio::net::lookup_host((t.host.as_str(), t.port));
    let addrs: Vec<_> = match tokio::time::timeout(t.connect_timeout, resolve).await {
        Ok(r) => r
            .map_err(|e| t.connect_error(format!("cannot resolve {}: {e}", t.host)))?
            .collect(),
        Err(_) => {
            return Err(t.connect_error(format!(
                "cannot resolve {}: no answer within {} (connect_timeout)",
                t.host,
                crate::units::Duration(t.connect_timeout)
            )));
        }
    };
    let mut last = format!("{} has no address", t.host);
    for a in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            last = format!(
                "no connection within {}",
                crate::units::Duration(t.connect_timeout)
            );
            break;
        }
        let timed_out = || {
            format!(
                "no connection within {} (connect_timeout)",
                crate::units::Duration(t.connect_timeout)
            )
        };
        match tokio::time::timeout(left, tokio::net::TcpStream::connect(a)).await {
            Ok(Ok(s)) => {
                // Without it every round trip waits for delayed ACKs (~40 ms each).
                let _ = s.set_nodelay(true);
                set_keepalive(&s, t.keepalive);
                // libssh2 takes a plain socket (it sets it non-blocking itself).
                let s = s.into_std().map_err(|e| t.connect_error(e.to_string()))?;
                let dup = s
                    .as_fd()
                    .try_clone_to_owned()
                    .map_err(|e| t.connect_error(e.to_string()))?;
                return Ok((dup, Box::new(s), None));
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::TimedOut => last = timed_out(),
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = timed_out(),
        }
    }
    Err(t.connect_error(last))
}

/// TCP keepalives notice a peer that vanished without closing (power cut, network gone).
fn set_keepalive(s: &impl AsFd, every: Duration) {
    use rustix::net::sockopt;
    let every = every.max(Duration::from_secs(5));
    let _ = sockopt::set_socket_keepalive(s, true);
    let _ = sockopt::set_tcp_keepidle(s, every);
    let _ = sockopt::set_tcp_keepintvl(s, every);
    let _ = sockopt::set_tcp_keepcnt(s, 3);
}
