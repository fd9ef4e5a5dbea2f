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
//! runs non-blocking from the start, each call made through `Dial::call`, which retries it
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

use ssh2::{BlockDirections, ErrorCode, Session};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::config::Target;
use super::known_hosts::{self, Entry};
use super::proxy::{self, Proxy};
use super::session::{BLOCKING_LIMIT, Live};
use super::{auth, host_key, jump};
use crate::error::StepError;

/// libssh2's "would block".
const EAGAIN: i32 = -37;
/// libssh2's timeout of a blocking call: what a call that took longer than `connect_timeout`
/// returns here too, so that the callers read it as they read libssh2's.
const TIMEOUT: i32 = -9;
/// The longest one wait lasts before the call is tried again anyway (libssh2 may be waiting
/// on data it already holds, which the socket would not show).
const WAIT_MAX: Duration = Duration::from_millis(100);

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

/// A session while it connects: libssh2 non-blocking from the start, its socket (a
/// duplicate of the stream's descriptor) registered with tokio's reactor.
pub(super) struct Dial {
    pub(super) sess: Session,
    afd: AsyncFd<OwnedFd>,
    /// How long one call may take (`connect_timeout`).
    limit: Duration,
}

impl Dial {
    /// A session over `stream`, non-blocking; `poll_fd` is a duplicate of its descriptor.
    fn new(
        t: &Target,
        stream: Box<dyn std::os::fd::AsRawFd + Send>,
        poll_fd: OwnedFd,
    ) -> Result<Dial, StepError> {
        let mut sess = Session::new().map_err(|e| t.connect_error(e.to_string()))?;
        sess.set_tcp_stream(BoxedFd(stream));
        // Bounds whatever ssh2 still does in blocking mode (its destructors).
        sess.set_timeout(
            u32::try_from(t.connect_timeout.as_millis())
                .unwrap_or(u32::MAX)
                .max(1),
        );
        sess.set_compress(false);
        prefer_aes_gcm(&sess);
        sess.set_blocking(false);
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(t.connect_error("cannot wait on the session's socket: no tokio runtime"));
        }
        // SAFETY: an `OwnedFd` is an open descriptor, it stays open and the same until the
        // `AsyncFd` drops it or gives it back (`into_parts`); it is never taken out, nor its
        // descriptor replaced.
        let afd = unsafe {
            AsyncFd::register_with_interest(poll_fd, Interest::READABLE | Interest::WRITABLE)
        }
        .map_err(|e| t.connect_error(format!("cannot wait on the session's socket: {e}")))?;
        Ok(Dial {
            sess,
            afd,
            limit: t.connect_timeout,
        })
    }

    /// The session and the descriptor to poll, for `Live::new` (the descriptor deregistered).
    fn into_parts(self) -> (Session, OwnedFd) {
        (self.sess, self.afd.into_inner())
    }

    /// Makes a libssh2 call, again (unchanged, as libssh2 requires) each time it would block,
    /// once the socket is ready the way libssh2 is blocked; within `connect_timeout`, after
    /// which it fails as libssh2's blocking timeout does (`TIMEOUT`).
    pub(super) async fn call<T, F>(&self, mut f: F) -> Result<T, ssh2::Error>
    where
        F: FnMut(&Session) -> Result<T, ssh2::Error>,
    {
        let deadline = tokio::time::Instant::now() + self.limit;
        loop {
            match f(&self.sess) {
                Err(e) if e.code() == ErrorCode::Session(EAGAIN) => {}
                r => return r,
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(ssh2::Error::new(
                    ErrorCode::Session(TIMEOUT),
                    "Timed out waiting on socket",
                ));
            }
            let interest = match self.sess.block_directions() {
                BlockDirections::Outbound => Interest::WRITABLE,
                BlockDirections::Both => Interest::READABLE | Interest::WRITABLE,
                BlockDirections::Inbound | BlockDirections::None => Interest::READABLE,
            };
            let until = deadline.min(now + WAIT_MAX);
            match tokio::time::timeout_at(until, self.afd.ready(interest)).await {
                // The next try reads or writes what there is; until it finds nothing more,
                // a new readiness is not needed.
                Ok(Ok(mut g)) => g.clear_ready(),
                Ok(Err(_)) => {
                    return Err(ssh2::Error::new(
                        ErrorCode::Session(-43),
                        "cannot wait on the socket (the runtime is shutting down)",
                    ));
                }
                Err(_) => {}
            }
        }
    }
}

/// Ciphers asked for first, when libssh2 has them: AES-GCM runs on the CPU's AES instructions
/// (through OpenSSL), while libssh2's own first choice, chacha20-poly1305, is its portable C
/// (issue 12: about 6% of the runner's CPU in the 200-host bench). Every other cipher libssh2
/// has follows, in its order, so a server without AES-GCM still finds its own.
const FAST_CIPHERS: &[&str] = &["aes128-gcm@openssh.com", "aes256-gcm@openssh.com"];

fn prefer_aes_gcm(sess: &Session) {
    for dir in [ssh2::MethodType::CryptCs, ssh2::MethodType::CryptSc] {
        let order = cipher_order(&sess.supported_algs(dir).unwrap_or_default());
        if !order.is_empty() {
            let _ = sess.method_pref(dir, &order.join(","));
        }
    }
}

/// libssh2's ciphers (`supported`, in its order) with those of `FAST_CIPHERS` it has first.
fn cipher_order<'a>(supported: &[&'a str]) -> Vec<&'a str> {
    FAST_CIPHERS
        .iter()
        .copied()
        .filter(|c| supported.contains(c))
        .chain(
            supported
                .iter()
                .copied()
                .filter(|c| !FAST_CIPHERS.contains(c)),
        )
        .collect()
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

/// Gives ssh2 the stream (a TCP socket or our end of a tunnel) as something with a raw fd.
struct BoxedFd(Box<dyn std::os::fd::AsRawFd + Send>);

impl std::os::fd::AsRawFd for BoxedFd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aes_gcm_goes_first_and_nothing_is_added_or_lost() {
        let libssh2 = [
            "chacha20-poly1305@openssh.com",
            "aes256-gcm@openssh.com",
            "aes128-gcm@openssh.com",
            "aes256-ctr",
            "aes128-ctr",
        ];
        assert_eq!(
            cipher_order(&libssh2),
            [
                "aes128-gcm@openssh.com",
                "aes256-gcm@openssh.com",
                "chacha20-poly1305@openssh.com",
                "aes256-ctr",
                "aes128-ctr",
            ]
        );
        // A libssh2 built without AES-GCM keeps its own order.
        assert_eq!(
            cipher_order(&["chacha20-poly1305@openssh.com", "aes128-ctr"]),
            ["chacha20-poly1305@openssh.com", "aes128-ctr"]
        );
        assert!(cipher_order(&[]).is_empty());
    }
}
