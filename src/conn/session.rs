//! One live SSH session (`Live`) and the one way every call goes through it. `connect.rs`
//! makes it (connected, host key checked, logged in) and hands it here; from then on every
//! step of its host uses it from blocking threads: commands (`command.rs`), SFTP (`sftp.rs`),
//! and a jump host's tunnel (`jump.rs`). `HostConn` (`mod.rs`) owns it.
//!
//! libssh2 is blocking or non-blocking per session, not per call, and a blocking read holds the
//! session while it waits — one long command would stall every other step of the host. So the
//! session runs non-blocking and every call goes through `Live::run`: it retries on EAGAIN,
//! waiting with `poll` on the socket. libssh2 requires that a call which left a packet half-sent
//! is repeated, unchanged, before any other call sends; so a per-session lock (`op`) is held
//! across the retries of such a call (and of calls whose state lives in the session, such as
//! opening a channel), and released while a call only waits for data — that is when steps
//! sharing the session interleave, and when a cancelled step (timeout) notices and stops.
//! A session whose socket is gone is marked dead: every later call fails at once with the
//! reason, and the host is reported unreachable.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ssh2::{BlockDirections, Channel, ErrorCode, Session, Sftp};

/// libssh2's "would block".
const EAGAIN: i32 = -37;
/// libssh2 errors that mean the transport itself is broken.
const DEAD_CODES: &[i32] = &[
    -2,  // banner receive
    -7,  // socket send
    -8,  // key exchange
    -9,  // timeout (blocking calls)
    -12, // decrypt
    -13, // socket disconnect
    -14, // protocol
    -30, // socket timeout
    -43, // socket receive
];
/// How long one call may keep the session to itself before the server is declared gone.
pub const HOLD_LIMIT: Duration = Duration::from_secs(30);
/// SFTP status codes "no such file" and "no such path".
const FX_NO_SUCH_FILE: i32 = 2;
const FX_NO_SUCH_PATH: i32 = 10;

/// Tells a blocking operation to stop: set when its step's future is dropped (a timeout, an
/// interrupt), or at a deadline.
#[derive(Clone, Debug)]
pub struct Ctl {
    flag: Arc<AtomicBool>,
    deadline: Option<Instant>,
}

impl Ctl {
    pub fn new(flag: Arc<AtomicBool>) -> Ctl {
        Ctl {
            flag,
            deadline: None,
        }
    }

    /// Stops by itself after `d`.
    pub fn within(d: Duration) -> Ctl {
        Ctl {
            flag: Arc::new(AtomicBool::new(false)),
            deadline: Some(Instant::now() + d),
        }
    }

    pub fn stopped(&self) -> bool {
        self.flag.load(Ordering::SeqCst) || self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

/// Why a session operation did not finish.
#[derive(Clone, Debug)]
pub enum OpError {
    Cancelled,
    /// The session is gone (the reason says how); the host is unreachable.
    Dead(String),
    /// This operation failed; the session is fine.
    Failed {
        msg: String,
        not_found: bool,
    },
}

/// The result of one call attempt, sorted.
pub enum E {
    Again,
    Ssh(ssh2::Error),
    Io(std::io::Error),
}

impl From<ssh2::Error> for E {
    fn from(e: ssh2::Error) -> E {
        if e.code() == ErrorCode::Session(EAGAIN) {
            E::Again
        } else {
            E::Ssh(e)
        }
    }
}

impl From<std::io::Error> for E {
    fn from(e: std::io::Error) -> E {
        if e.kind() == std::io::ErrorKind::WouldBlock {
            E::Again
        } else {
            E::Io(e)
        }
    }
}

/// Call modes: `Hold` keeps the session across retries (calls with session-wide state);
/// `Stream` lets go while waiting for data, and stops when cancelled.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Hold,
    Stream,
    Try,
}

/// An authenticated session and what it needs to be shared by the steps of one host.
pub struct Live {
    pub(super) sess: Session,
    /// A duplicate of the session's socket, for `poll` and for telling a dead socket.
    poll_fd: OwnedFd,
    op: Mutex<()>,
    dead: Mutex<Option<String>>,
    pub(super) active: AtomicUsize,
    /// SFTP channels of finished steps, for the next step to reuse.
    pub(super) idle_sftp: Mutex<Vec<Sftp>>,
    /// The name the user knows the host by.
    pub label: String,
    /// `user@host:port`.
    pub addr: String,
    pub keepalive: Duration,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Counts an operation in flight on a session while it lives.
pub(super) struct Active<'a>(&'a AtomicUsize);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Live {
    /// A session just logged in (`connect.rs`), set non-blocking.
    pub(super) fn new(
        sess: Session,
        poll_fd: OwnedFd,
        label: String,
        addr: String,
        keepalive: Duration,
    ) -> Live {
        Live {
            sess,
            poll_fd,
            op: Mutex::new(()),
            dead: Mutex::new(None),
            active: AtomicUsize::new(0),
            idle_sftp: Mutex::new(Vec::new()),
            label,
            addr,
            keepalive,
        }
    }

    pub(super) fn enter(&self) -> Active<'_> {
        self.active.fetch_add(1, Ordering::SeqCst);
        Active(&self.active)
    }

    /// Operations in flight (steps running, or a cancelled one cleaning up).
    pub fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    pub fn dead_reason(&self) -> Option<String> {
        lock(&self.dead).clone()
    }

    fn mark_dead(&self, reason: String) -> OpError {
        let mut d = lock(&self.dead);
        if d.is_none() {
            *d = Some(reason);
        }
        OpError::Dead(d.clone().unwrap_or_default())
    }

    /// Whether the socket under the session has closed or failed.
    fn socket_gone(&self) -> bool {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        use rustix::net::{RecvFlags, recv};
        // A reset or closed peer shows as HUP/ERR/RDHUP even while unread data is queued.
        let mut fds = [PollFd::new(&self.poll_fd, PollFlags::RDHUP)];
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        if poll(&mut fds, Some(&zero)).is_ok()
            && fds[0]
                .revents()
                .intersects(PollFlags::HUP | PollFlags::ERR | PollFlags::RDHUP)
        {
            return true;
        }
        let mut b = [0u8; 1];
        match recv(&self.poll_fd, &mut b, RecvFlags::PEEK | RecvFlags::DONTWAIT) {
            Ok((0, _)) => true,
            Ok(_) => false,
            Err(e) => e != rustix::io::Errno::AGAIN && e != rustix::io::Errno::INTR,
        }
    }

    fn classify(&self, e: E) -> OpError {
        let (msg, code, not_found) = match e {
            E::Again => ("interrupted".to_string(), None, false),
            E::Ssh(e) => {
                let nf = matches!(
                    e.code(),
                    ErrorCode::SFTP(FX_NO_SUCH_FILE) | ErrorCode::SFTP(FX_NO_SUCH_PATH)
                );
                let code = match e.code() {
                    ErrorCode::Session(c) => Some(c),
                    ErrorCode::SFTP(_) => None,
                };
                (e.message().to_string(), code, nf)
            }
            // ssh2's `Read`/`Write` keep only the message: ask the session for the code.
            E::Io(e) => (
                e.to_string(),
                ssh2::Error::last_session_error(&self.sess).and_then(|l| match l.code() {
                    ErrorCode::Session(c) => Some(c),
                    ErrorCode::SFTP(_) => None,
                }),
                e.kind() == std::io::ErrorKind::NotFound,
            ),
        };
        if code.is_some_and(|c| DEAD_CODES.contains(&c)) || self.socket_gone() {
            return self.mark_dead(format!("connection to {} lost: {msg}", self.label));
        }
        OpError::Failed { msg, not_found }
    }

    /// Waits until the socket can go the way libssh2 is blocked, at most `max`.
    fn poll(&self, dirs: BlockDirections, max: Duration) {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let flags = match dirs {
            BlockDirections::Inbound => PollFlags::IN,
            BlockDirections::Outbound => PollFlags::OUT,
            BlockDirections::Both => PollFlags::IN | PollFlags::OUT,
            BlockDirections::None => PollFlags::IN,
        };
        let mut fds = [PollFd::new(&self.poll_fd, flags)];
        let ts = Timespec {
            tv_sec: max.as_secs() as _,
            tv_nsec: max.subsec_nanos() as _,
        };
        let _ = poll(&mut fds, Some(&ts));
    }

    /// Waits for data while other calls may use the session. Shorter when other operations
    /// share it: one of them may read our data off the socket, and poll would not see it.
    pub(super) fn wait_inbound(&self) {
        let max = if self.active() > 1 {
            Duration::from_millis(5)
        } else {
            Duration::from_millis(50)
        };
        self.poll(BlockDirections::Inbound, max);
    }

    pub(super) fn run<T>(
        &self,
        ctl: &Ctl,
        mode: Mode,
        f: &mut dyn FnMut() -> Result<T, E>,
    ) -> Result<Option<T>, OpError> {
        let start = Instant::now();
        let mut guard: Option<MutexGuard<'_, ()>> = None;
        loop {
            if guard.is_none() {
                if let Some(r) = self.dead_reason() {
                    return Err(OpError::Dead(r));
                }
                guard = Some(lock(&self.op));
            }
            match f() {
                Ok(v) => return Ok(Some(v)),
                Err(E::Again) => {
                    let dirs = self.sess.block_directions();
                    let outbound =
                        matches!(dirs, BlockDirections::Outbound | BlockDirections::Both);
                    if mode == Mode::Hold || outbound {
                        if start.elapsed() > HOLD_LIMIT {
                            return Err(self.mark_dead(format!(
                                "{} stopped answering ({} s without progress)",
                                self.label,
                                HOLD_LIMIT.as_secs()
                            )));
                        }
                        if self.socket_gone() {
                            return Err(
                                self.mark_dead(format!("connection to {} lost", self.label))
                            );
                        }
                        self.poll(dirs, Duration::from_millis(100));
                        continue;
                    }
                    guard = None;
                    if mode == Mode::Try {
                        return Ok(None);
                    }
                    if ctl.stopped() {
                        return Err(OpError::Cancelled);
                    }
                    self.wait_inbound();
                }
                Err(e) => {
                    // Still holding the session: its last error is this call's.
                    let e = self.classify(e);
                    drop(guard);
                    return Err(e);
                }
            }
        }
    }

    /// Runs a call to completion, keeping the session across its retries.
    pub(super) fn hold<T>(&self, mut f: impl FnMut() -> Result<T, E>) -> Result<T, OpError> {
        let ctl = Ctl::within(HOLD_LIMIT);
        self.run(&ctl, Mode::Hold, &mut f)?
            .ok_or(OpError::Cancelled)
    }

    /// Runs a call to completion, letting others use the session while it waits for data.
    pub(super) fn stream<T>(
        &self,
        ctl: &Ctl,
        mut f: impl FnMut() -> Result<T, E>,
    ) -> Result<T, OpError> {
        self.run(ctl, Mode::Stream, &mut f)?
            .ok_or(OpError::Cancelled)
    }

    /// One attempt: `None` when the call would wait for data.
    pub(super) fn attempt<T>(
        &self,
        mut f: impl FnMut() -> Result<T, E>,
    ) -> Result<Option<T>, OpError> {
        self.run(&Ctl::within(HOLD_LIMIT), Mode::Try, &mut f)
    }

    /// Drops something whose destructor talks to the server (ssh2 switches the session to
    /// blocking for it) while no other call is half-way.
    pub(super) fn drop_quietly<T>(&self, t: T) {
        let _g = lock(&self.op);
        drop(t);
    }

    /// Sends a keepalive when one is due.
    pub fn keepalive_tick(&self) -> Result<(), OpError> {
        self.hold(|| self.sess.keepalive_send().map_err(E::from))
            .map(|_| ())
    }

    /// Ends the session: SFTP handles, then an SSH disconnect (bounded: a few seconds).
    pub fn shutdown(&self) {
        self.sess.set_timeout(2000);
        let sftps: Vec<Sftp> = std::mem::take(&mut *lock(&self.idle_sftp));
        if self.dead_reason().is_none() {
            for s in sftps {
                self.drop_quietly(s);
            }
            let ctl = Ctl::within(Duration::from_secs(2));
            let _ = self.run(&ctl, Mode::Stream, &mut || {
                self.sess
                    .disconnect(None, "sortie is done", None)
                    .map_err(E::from)
            });
        }
        let _ = self.mark_dead(format!("the session to {} was closed", self.label));
    }

    // -----------------------------------------------------------------------------------------
    // A jump host's channels (for `jump.rs`)
    // -----------------------------------------------------------------------------------------

    /// Opens a direct-tcpip channel to `host:port` (this session is a jump host).
    pub fn tunnel(&self, host: &str, port: u16) -> Result<Channel, OpError> {
        self.hold(|| {
            self.sess
                .channel_direct_tcpip(host, port, None)
                .map_err(E::from)
        })
    }

    pub(crate) fn raw_fd(&self) -> &OwnedFd {
        &self.poll_fd
    }

    pub(crate) fn block_directions(&self) -> BlockDirections {
        self.sess.block_directions()
    }

    /// Pump helpers for `jump.rs` (the pump thread owns the jump session alone).
    pub(crate) fn try_write(
        &self,
        ch: &mut Channel,
        data: &[u8],
    ) -> Result<Option<usize>, OpError> {
        self.attempt(|| ch.write(data).map_err(E::from))
    }

    pub(crate) fn try_read(
        &self,
        ch: &mut Channel,
        buf: &mut [u8],
    ) -> Result<Option<usize>, OpError> {
        self.attempt(|| ch.read(buf).map_err(E::from))
    }

    pub(crate) fn send_eof(&self, ch: &mut Channel) -> Result<(), OpError> {
        self.hold(|| ch.send_eof().map_err(E::from))
    }

    pub(crate) fn close_channel(&self, ch: Channel) {
        let mut ch = ch;
        let ctl = Ctl::within(Duration::from_secs(1));
        let _ = self.run(&ctl, Mode::Stream, &mut || ch.close().map_err(E::from));
        self.drop_quietly(ch);
    }
}
