//! Jump hosts (ProxyJump): libssh2 has none built in, so the target's session runs over one end
//! of a local socketpair, and a thread of its own copies bytes between the other end and a
//! direct-tcpip channel of the jump host's session (which that thread alone uses). When either
//! side closes, the thread closes the other and disconnects the jump session. `connect.rs` calls
//! `tunnel` with the jump host's `Live` session (`session.rs`) and gets the local end back.
//! The copying (`pump`) also serves the probes that go `via` a host (`via/`): there the local
//! end is a TCP connection from the runner's own SOCKS listener, and the session is shared.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ssh2::{BlockDirections, Channel};

use super::session::{Live, OpError};

/// Opens a channel from `jump` to `host:port` and returns the local end that carries it.
pub fn tunnel(jump: Live, host: &str, port: u16) -> Result<UnixStream, String> {
    let ch = jump.tunnel(host, port).map_err(|e| match e {
        OpError::Failed { msg, .. } => format!("cannot reach {host}:{port} from there ({msg})"),
        OpError::Dead(r) => r,
        OpError::Cancelled => "cancelled".into(),
    })?;
    let (mine, theirs) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
    theirs
        .set_nonblocking(true)
        .map_err(|e| format!("socketpair: {e}"))?;
    std::thread::Builder::new()
        .name(format!("sortie-jump-{}", jump.label))
        .spawn(move || {
            pump(&jump, ch, theirs, &AtomicBool::new(false), true);
            jump.shutdown();
        })
        .map_err(|e| format!("cannot start the jump thread: {e}"))?;
    Ok(mine)
}

/// The local end of a channel: a socket the pump reads from and writes to, non-blocking.
pub(super) trait LocalEnd: Read + Write + AsFd {
    fn shutdown_write(&self);
}

impl LocalEnd for UnixStream {
    fn shutdown_write(&self) {
        let _ = self.shutdown(Shutdown::Write);
    }
}

impl LocalEnd for TcpStream {
    fn shutdown_write(&self) {
        let _ = self.shutdown(Shutdown::Write);
    }
}

/// Copies bytes both ways between `pair` and the channel `ch` of `jump` until both sides have
/// closed (or `stop` is set, or the session dies); sends keepalives when `keepalive` (the
/// session is this pump's alone). Closes the channel at the end, not the session.
pub(super) fn pump<S: LocalEnd>(
    jump: &Live,
    mut ch: Channel,
    mut pair: S,
    stop: &AtomicBool,
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
            match pair.read(&mut buf) {
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
            match jump.try_write(&mut ch, &up) {
                Ok(Some(n)) => {
                    up.drain(..n);
                    progress |= n > 0;
                }
                Ok(None) => {}
                Err(_) => break,
            }
        }
        if pair_eof && up.is_empty() && !eof_sent {
            if jump.send_eof(&mut ch).is_err() {
                break;
            }
            eof_sent = true;
            closing_since = Some(Instant::now());
        }
        if down.is_empty() && !ch_eof {
            match jump.try_read(&mut ch, &mut buf) {
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
            match pair.write(&down) {
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
        if stop.load(Ordering::SeqCst) {
            break;
        }
        if keepalive && last_keepalive.elapsed() >= jump.keepalive {
            last_keepalive = Instant::now();
            if jump.keepalive_tick().is_err() {
                break;
            }
        }
        if !progress {
            wait(jump, &pair, up.is_empty() && !pair_eof, !down.is_empty());
        }
    }
    drop(pair);
    jump.close_channel(ch);
}

/// Sleeps until the jump socket or the pair has something for us (at most 200 ms: libssh2 may
/// have buffered data that poll cannot see; 5 ms when other calls share the session, as one of
/// them may read our data off the socket).
fn wait(jump: &Live, pair: &impl AsFd, pair_in: bool, pair_out: bool) {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let jflags = match jump.block_directions() {
        BlockDirections::Outbound => PollFlags::OUT,
        BlockDirections::Both => PollFlags::IN | PollFlags::OUT,
        _ => PollFlags::IN,
    };
    let mut pflags = PollFlags::empty();
    if pair_in {
        pflags |= PollFlags::IN;
    }
    if pair_out {
        pflags |= PollFlags::OUT;
    }
    let mut fds = [
        PollFd::new(jump.raw_fd(), jflags),
        PollFd::new(pair, pflags),
    ];
    let max_ms = if jump.active() > 1 { 5 } else { 200 };
    let _ = poll(
        &mut fds,
        Some(&Timespec {
            tv_sec: 0,
            tv_nsec: max_ms * 1_000_000,
        }),
    );
}
