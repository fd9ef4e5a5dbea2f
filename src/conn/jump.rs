//! Jump hosts (ProxyJump): libssh2 has none built in, so the target's session runs over one end
//! of a local socketpair, and a task on the runtime copies bytes between the other end and a
//! direct-tcpip channel of the jump host's session (which that task alone uses). When either
//! side closes, the task closes the other and disconnects the jump session. `connect.rs` calls
//! `tunnel` with the jump host's `Live` session (`session.rs`) and gets the local end back.
//! The copying (`pump`) also serves the probes that go `via` a host (`via/`): there the local
//! end is a TCP connection from the runner's own SOCKS listener, and the session is shared.
//! Neither holds a thread: both sides are awaited on tokio's reactor.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ssh2::Channel;
use tokio::io::Interest;

use super::session::{Live, OpError, Stop};

/// Opens a channel from `jump` to `host:port` and returns the local end that carries it; a
/// task of its own copies between the two until either closes, then ends `jump`.
pub async fn tunnel(
    jump: Live,
    host: &str,
    port: u16,
) -> Result<std::os::unix::net::UnixStream, String> {
    let ch = jump.tunnel(host, port).await.map_err(|e| match e {
        OpError::Failed { msg, .. } => format!("cannot reach {host}:{port} from there ({msg})"),
        OpError::Dead(r) => r,
        OpError::Cancelled => "cancelled".into(),
    })?;
    let (mine, theirs) =
        std::os::unix::net::UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
    theirs
        .set_nonblocking(true)
        .map_err(|e| format!("socketpair: {e}"))?;
    let theirs =
        tokio::net::UnixStream::from_std(theirs).map_err(|e| format!("socketpair: {e}"))?;
    tokio::spawn(async move {
        pump(&jump, ch, LocalEnd::Unix(theirs), &Stop::new(), true).await;
        jump.shutdown().await;
    });
    Ok(mine)
}

/// The local end of a channel: a socket the pump reads from and writes to.
pub(super) enum LocalEnd {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
}

impl LocalEnd {
    fn try_read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            LocalEnd::Unix(s) => s.try_read(buf),
            LocalEnd::Tcp(s) => s.try_read(buf),
        }
    }

    fn try_write(&self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            LocalEnd::Unix(s) => s.try_write(buf),
            LocalEnd::Tcp(s) => s.try_write(buf),
        }
    }

    async fn ready(&self, interest: Interest) {
        let _ = match self {
            LocalEnd::Unix(s) => s.ready(interest).await,
            LocalEnd::Tcp(s) => s.ready(interest).await,
        };
    }

    fn shutdown_write(&self) {
        use rustix::net::{Shutdown, shutdown};
        let _ = match self {
            LocalEnd::Unix(s) => shutdown(s, Shutdown::Write),
            LocalEnd::Tcp(s) => shutdown(s, Shutdown::Write),
        };
    }
}

/// Copies bytes both ways between `pair` and the channel `ch` of `jump` until both sides have
/// closed (or `stop` is set, or the session dies); sends keepalives when `keepalive` (the
/// session is this pump's alone). Closes the channel at the end, not the session.
pub(super) async fn pump(
    jump: &Live,
    mut ch: Channel,
    pair: LocalEnd,
    stop: &Arc<Stop>,
    keepalive: bool,
) {
    let _active = jump.enter();
    let mut up: Vec<u8> = Vec::new(); // from the target's session to the channel
    let mut down: Vec<u8> = Vec::new(); // from the channel to the target's session
    let mut buf = vec![0u8; 64 * 1024];
    let (mut pair_eof, mut ch_eof, mut eof_sent) = (false, false, false);
    let mut closing_since: Option<Instant> = None;
    let mut last_keepalive = Instant::now();
    loop {
        let mut progress = false;
        if up.is_empty() && !pair_eof {
            match pair.try_read(&mut buf) {
                Ok(0) => {
                    pair_eof = true;
                    progress = true;
                }
                Ok(n) => {
                    up.extend_from_slice(&buf[..n]);
                    progress = true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => break,
            }
        }
        if !up.is_empty() {
            match jump.try_write(&mut ch, &up).await {
                Ok(Some(n)) => {
                    up.drain(..n);
                    progress |= n > 0;
                }
                Ok(None) => {}
                Err(_) => break,
            }
        }
        if pair_eof && up.is_empty() && !eof_sent {
            if jump.send_eof(&mut ch).await.is_err() {
                break;
            }
            eof_sent = true;
            closing_since = Some(Instant::now());
        }
        if down.is_empty() && !ch_eof {
            match jump.try_read(&mut ch, &mut buf).await {
                Ok(Some(0)) => {
                    ch_eof = true;
                    pair.shutdown_write();
                    progress = true;
                }
                Ok(Some(n)) => {
                    down.extend_from_slice(&buf[..n]);
                    progress = true;
                }
                Ok(None) => {}
                Err(_) => break,
            }
        }
        if !down.is_empty() {
            match pair.try_write(&down) {
                Ok(n) => {
                    down.drain(..n);
                    progress |= n > 0;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => break,
            }
        }
        if pair_eof && ch_eof && up.is_empty() {
            break;
        }
        // The target's session is gone; its server need not answer our EOF for long.
        if closing_since.is_some_and(|t| t.elapsed() > Duration::from_secs(2)) {
            break;
        }
        if stop.is_set() {
            break;
        }
        if keepalive && last_keepalive.elapsed() >= jump.keepalive {
            last_keepalive = Instant::now();
            if jump.keepalive_tick().await.is_err() {
                break;
            }
        }
        if !progress {
            let pair_in = up.is_empty() && !pair_eof;
            let pair_out = !down.is_empty();
            wait(jump, &pair, pair_in, pair_out, stop).await;
        }
    }
    drop(pair);
    jump.close_channel(ch).await;
}

/// Waits until the jump socket or the pair has something for us, or `stop` is set (at most
/// 200 ms: libssh2 may have buffered data that the socket does not show; the session's own
/// wait is shorter when other calls share it, as one of them may read our data off it).
async fn wait(jump: &Live, pair: &LocalEnd, pair_in: bool, pair_out: bool, stop: &Stop) {
    let mut interest: Option<Interest> = None;
    if pair_in {
        interest = Some(Interest::READABLE);
    }
    if pair_out {
        interest = Some(interest.map_or(Interest::WRITABLE, |i| i | Interest::WRITABLE));
    }
    let local = async {
        match interest {
            Some(i) => pair.ready(i).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = jump.wait_io(jump.block_directions(), None, Some(Duration::from_millis(200))) => {}
        _ = local => {}
        _ = stop.wait() => {}
    }
}
