//! Connecting to one hop (`connect`, called by `HostConn` in `mod.rs` on a blocking thread,
//! with a `Target` from `config.rs`): the TCP connection with its timeout (or, behind a jump
//! host, a tunnel through the jump host's own session from `jump.rs`; or a ProxyCommand's
//! stdin and stdout from `proxy.rs`, whose failure explains a failed handshake), the SSH
//! handshake with the host key types known_hosts expects (and AES-GCM asked for before
//! libssh2's slower first choice of cipher) and the host key check (`host_key.rs`), the login
//! (`auth.rs`); the result is a non-blocking `Live` session (`session.rs`), or the `StepError`
//! that makes the host unreachable.

// `StepError` (the engine's type) carries a whole `Diagnostic`; boxing it is the engine's call.
#![allow(clippy::result_large_err)]

use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use ssh2::{ErrorCode, Session};

use super::config::Target;
use super::known_hosts::{self, Entry};
use super::proxy::{self, Proxy};
use super::session::{BLOCKING_LIMIT, Live};
use super::{auth, host_key, jump};
use crate::error::StepError;

/// Connects, checks the host key and logs in. Blocking: run it on one of the runtime's
/// blocking threads (the session it returns is registered with the runtime's reactor).
pub fn connect(t: &Target) -> Result<Live, StepError> {
    let (poll_fd, stream, proxy) = open_stream(t)?;
    let mut sess = new_session(t, stream)?;
    let entries = known_hosts::load(&t.known_hosts).map_err(|e| t.connect_error(e))?;
    let name = known_hosts::host_name(&t.host, t.port);
    let known = known_hosts::for_host(&entries, &name);
    handshake(t, &mut sess, &name, &known).map_err(|e| match (e, &proxy) {
        // What the command did is the likely reason the handshake found nobody.
        (StepError::Connect { addr, reason }, Some(p)) => StepError::Connect {
            addr,
            reason: p.explain(&reason),
        },
        (e, _) => e,
    })?;
    host_key::check(t, &sess, &name, &known)?;
    auth::authenticate(t, &sess)?;
    // Blocking calls left (ssh2's destructors, on the runtime's workers) are bounded by this.
    sess.set_timeout(BLOCKING_LIMIT);
    sess.set_keepalive(
        false,
        u32::try_from(t.keepalive.as_secs()).unwrap_or(30).max(2),
    );
    sess.set_blocking(false);
    Live::new(sess, poll_fd, t.label.clone(), t.addr(), t.keepalive)
        .map_err(|e| t.connect_error(format!("cannot wait on the session's socket: {e}")))
}

/// A session over `stream`, blocking (bounded by `connect_timeout`) until it is logged in.
fn new_session(
    t: &Target,
    stream: Box<dyn std::os::fd::AsRawFd + Send>,
) -> Result<Session, StepError> {
    let mut sess = Session::new().map_err(|e| t.connect_error(e.to_string()))?;
    sess.set_tcp_stream(BoxedFd(stream));
    sess.set_timeout(
        u32::try_from(t.connect_timeout.as_millis())
            .unwrap_or(u32::MAX)
            .max(1),
    );
    sess.set_compress(false);
    prefer_aes_gcm(&sess);
    Ok(sess)
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
fn handshake(
    t: &Target,
    sess: &mut Session,
    name: &str,
    known: &[&Entry],
) -> Result<(), StepError> {
    let prefs = host_key::prefer_known_types(sess, known);
    let Err(e) = sess.handshake() else {
        return Ok(());
    };
    if let Some(refused) = host_key::kex_refused(t, &e, name, known, &prefs, || offered_key(t)) {
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
fn offered_key(t: &Target) -> Option<(String, Vec<u8>)> {
    let (_fd, stream, _proxy) = open_stream(t).ok()?;
    let mut sess = new_session(t, stream).ok()?;
    sess.handshake().ok()?;
    let (key, _) = sess.host_key()?;
    let key_type = known_hosts::blob_key_type(key)?;
    Some((key_type, key.to_vec()))
}

/// The stream a session runs over: a descriptor to poll, the stream itself, and the
/// ProxyCommand that carries it, if one does.
type Opened = (OwnedFd, Box<dyn std::os::fd::AsRawFd + Send>, Option<Proxy>);

/// Opens the TCP connection (or the tunnel through the jump hosts, or the ProxyCommand) for
/// `t`.
fn open_stream(t: &Target) -> Result<Opened, StepError> {
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
        let jump = connect(j)?;
        let mine = jump::tunnel(jump, &t.host, t.port)
            .map_err(|e| t.connect_error(format!("through jump host {}: {e}", j.label)))?;
        let dup = mine
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| t.connect_error(e.to_string()))?;
        return Ok((dup, Box::new(mine), None));
    }
    let deadline = Instant::now() + t.connect_timeout;
    let addrs: Vec<_> = (t.host.as_str(), t.port)
        .to_socket_addrs()
        .map_err(|e| t.connect_error(format!("cannot resolve {}: {e}", t.host)))?
        .collect();
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
        match TcpStream::connect_timeout(&a, left) {
            Ok(s) => {
                // Without it every round trip waits for delayed ACKs (~40 ms each).
                let _ = s.set_nodelay(true);
                set_keepalive(&s, t.keepalive);
                let dup = s
                    .as_fd()
                    .try_clone_to_owned()
                    .map_err(|e| t.connect_error(e.to_string()))?;
                return Ok((dup, Box::new(s), None));
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                last = format!(
                    "no connection within {} (connect_timeout)",
                    crate::units::Duration(t.connect_timeout)
                );
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(t.connect_error(last))
}

/// TCP keepalives notice a peer that vanished without closing (power cut, network gone).
fn set_keepalive(s: &TcpStream, every: Duration) {
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
