//! A session while it connects (`Dial`): libssh2 non-blocking from the start, its socket (a
//! duplicate of the stream's descriptor) registered with tokio's reactor, every call made
//! through `Dial::call`, which retries it — unchanged, as libssh2 requires — once the socket
//! is ready the way libssh2 is blocked, within `connect_timeout`. `connect.rs` makes one per
//! hop and runs the handshake on it, `auth.rs` the login; `into_parts` hands the session and
//! its descriptor to `Live` (`session.rs`) once logged in.

use std::os::fd::OwnedFd;
use std::time::Duration;

use ssh2::{BlockDirections, ErrorCode, Session};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::config::Target;
use crate::error::StepError;

/// libssh2's "would block".
const EAGAIN: i32 = -37;
/// libssh2's timeout of a blocking call: what a call that took longer than `connect_timeout`
/// returns here too, so that the callers read it as they read libssh2's.
const TIMEOUT: i32 = -9;
/// The longest one wait lasts before the call is tried again anyway (libssh2 may be waiting
/// on data it already holds, which the socket would not show).
const WAIT_MAX: Duration = Duration::from_millis(100);

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
    pub(super) fn new(
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
    pub(super) fn into_parts(self) -> (Session, OwnedFd) {
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
