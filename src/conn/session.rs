//! One live SSH session (`Live`) and the one way every call goes through it. `connect.rs`
//! makes it (connected, host key checked, logged in) and hands it here; from then on every
//! step of its host uses it from tasks on tokio's runtime, none of them holding a thread while
//! it waits: commands (`command.rs`), SFTP (`sftp.rs`), and a jump host's or a via gateway's
//! channels (`jump.rs`, `via/`). `HostConn` (`mod.rs`) owns it.
//!
//! libssh2 runs non-blocking and every call goes through `Live::run`: it tries the call, and on
//! EAGAIN awaits the session's socket on tokio's reactor (`AsyncFd`, in the direction libssh2
//! is blocked) before it tries again — so a thousand sessions waiting on their servers cost
//! their buffers, not a thousand threads. libssh2 requires that a call which left a packet
//! half-sent is repeated, unchanged, before any other call sends; so a per-session lock (`op`)
//! is held across the retries of such a call (and of calls whose state lives in the session,
//! such as opening a channel), and released while a call only waits for data — that is when
//! steps sharing the session interleave, and when a cancelled step (`Ctl`: a timeout, an
//! interrupt) notices and stops. A session whose socket is gone is marked dead: every later
//! call fails at once with the reason, and the host is reported unreachable.
//!
//! ssh2's destructors switch the session to blocking and talk to the server; nothing here
//! lets one run with work to do: files and SFTP channels are closed by non-blocking calls
//! first (`close_file`, `close_sftp`), and the session's blocking timeout, which bounds any
//! left, is short (`BLOCKING_LIMIT`).

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ssh2::{BlockDirections, Channel, ErrorCode, File, Session, Sftp};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;

/// libssh2's "would block".
const EAGAIN: i32 = -37;
/// The code ssh2 gives a failed call when libssh2 set no error (`ssh2::Error::unknown`).
const NO_ERROR_SET: i32 = std::ffi::c_int::MIN;
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
/// The session's timeout for the blocking calls ssh2's destructors may still make (milliseconds).
pub const BLOCKING_LIMIT: u32 = 500;
/// How long a wait lasts at most when other calls share the session: one of them may read
/// this call's data off the socket, and the socket would then not wake it.
const SHARED_WAIT: Duration = Duration::from_millis(5);
/// SFTP status codes "no such file" and "no such path".
const FX_NO_SUCH_FILE: i32 = 2;
const FX_NO_SUCH_PATH: i32 = 10;

/// A stop signal shared by a step's future and the task doing its work: set when the step's
/// future is dropped (a timeout, an interrupt), it wakes the task wherever it waits.
#[derive(Debug, Default)]
pub struct Stop {
    flag: AtomicBool,
    notify: Notify,
}

impl Stop {
    pub fn new() -> Arc<Stop> {
        Arc::new(Stop::default())
    }

    pub fn set(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub fn is_set(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Resolves once the stop is set.
    pub async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_set() {
                return;
            }
            notified.await;
        }
    }
}

/// Tells an operation to stop: its `Stop` set, or a deadline passed.
#[derive(Clone, Debug)]
pub struct Ctl {
    stop: Option<Arc<Stop>>,
    deadline: Option<Instant>,
}

impl Ctl {
    pub fn new(stop: Arc<Stop>) -> Ctl {
        Ctl {
            stop: Some(stop),
            deadline: None,
        }
    }

    /// Stops by itself after `d`.
    pub fn within(d: Duration) -> Ctl {
        Ctl {
            stop: None,
            deadline: Some(Instant::now() + d),
        }
    }

    /// The same stop, and a deadline `d` from now if that comes first.
    pub fn bounded(&self, d: Duration) -> Ctl {
        let d = Instant::now() + d;
        Ctl {
            stop: self.stop.clone(),
            deadline: Some(self.deadline.map_or(d, |old| old.min(d))),
        }
    }

    pub fn stopped(&self) -> bool {
        self.stop.as_ref().is_some_and(|s| s.is_set())
            || self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Resolves once the operation should stop.
    pub async fn until_stopped(&self) {
        let flag = async {
            match &self.stop {
                Some(s) => s.wait().await,
                None => std::future::pending().await,
            }
        };
        match self.deadline {
            Some(d) => {
                tokio::select! {
                    _ = flag => {}
                    _ = tokio::time::sleep_until(d.into()) => {}
                }
            }
            None => flag.await,
        }
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

/// An SFTP channel between steps, with the files whose close a step sent and did not wait
/// for (the next step to take the channel collects the answers; the session's end, if none).
pub(super) struct IdleSftp {
    pub(super) sftp: Sftp,
    pub(super) pending: Vec<File>,
}

/// An authenticated session and what it needs to be shared by the steps of one host.
pub struct Live {
    pub(super) sess: Session,
    /// A duplicate of the session's socket, registered with tokio's reactor: awaited while
    /// libssh2 would block, and polled for telling a dead socket.
    afd: AsyncFd<OwnedFd>,
    op: tokio::sync::Mutex<()>,
    /// Held while a channel opens (libssh2 keeps one channel open's state in the session):
    /// unlike `op`, let go of nothing while it waits, but other channels flow meanwhile.
    opening: tokio::sync::Mutex<()>,
    /// Woken when a call made progress while others share the session.
    progress: Notify,
    dead: Mutex<Option<String>>,
    pub(super) active: AtomicUsize,
    /// SFTP channels of finished steps, for the next step to reuse.
    pub(super) idle_sftp: Mutex<Vec<IdleSftp>>,
    /// The name the user knows the host by.
    pub label: String,
    /// `user@host:port`.
    pub addr: String,
    pub keepalive: Duration,
}

unsafe extern "C" {
    /// libssh2's own setter of the session's last error (in the libssh2 that libssh2-sys
    /// builds and links; the ssh2 crate does not bind it).
    fn libssh2_session_set_last_error(
        session: *mut std::ffi::c_void,
        errcode: std::ffi::c_int,
        errmsg: *const std::ffi::c_char,
    ) -> std::ffi::c_int;
}

/// Clears the session's last error, so that a call returning failure without setting one is
/// told from one that would block.
fn clear_last_error(sess: &Session) {
    let mut raw = sess.raw();
    let p = std::ptr::from_mut(&mut *raw).cast::<std::ffi::c_void>();
    // SAFETY: `p` is the live session ssh2 owns, locked by `raw` for the call; a null message
    // is allowed (libssh2 stores it as is and copies nothing).
    unsafe {
        libssh2_session_set_last_error(p, 0, std::ptr::null());
    }
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

/// Counts an operation in flight on a session, for a task that owns the session's `Arc`.
pub(super) struct ActiveOwned(pub(super) Arc<Live>);

impl ActiveOwned {
    pub(super) fn new(live: Arc<Live>) -> ActiveOwned {
        live.active.fetch_add(1, Ordering::SeqCst);
        ActiveOwned(live)
    }
}

impl Drop for ActiveOwned {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Live {
    /// A session just logged in (`connect.rs`), set non-blocking; its socket is registered
    /// with the runtime's reactor (so this runs where a tokio runtime is: a blocking thread
    /// of it will do).
    pub(super) fn new(
        sess: Session,
        poll_fd: OwnedFd,
        label: String,
        addr: String,
        keepalive: Duration,
    ) -> std::io::Result<Live> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(std::io::Error::other("no tokio runtime to wait on"));
        }
        // SAFETY: an `OwnedFd` is an open descriptor, it stays open and the same until the
        // `AsyncFd` drops it (it is never taken out, nor its descriptor replaced).
        let afd = unsafe {
            AsyncFd::register_with_interest(poll_fd, Interest::READABLE | Interest::WRITABLE)
        }
        .map_err(std::io::Error::from)?;
        Ok(Live {
            sess,
            afd,
            op: tokio::sync::Mutex::new(()),
            opening: tokio::sync::Mutex::new(()),
            progress: Notify::new(),
            dead: Mutex::new(None),
            active: AtomicUsize::new(0),
            idle_sftp: Mutex::new(Vec::new()),
            label,
            addr,
            keepalive,
        })
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
        // Calls waiting on the session find out at once, and whatever ssh2 still does in
        // blocking mode (its destructors) fails at once instead of waiting for an answer.
        let _ = rustix::net::shutdown(self.afd.get_ref(), rustix::net::Shutdown::Both);
        self.progress.notify_waiters();
        OpError::Dead(d.clone().unwrap_or_default())
    }

    /// Whether the socket under the session has closed or failed.
    fn socket_gone(&self) -> bool {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        use rustix::net::{RecvFlags, recv};
        let fd = self.afd.get_ref();
        // A reset or closed peer shows as HUP/ERR/RDHUP even while unread data is queued.
        let mut fds = [PollFd::new(fd, PollFlags::RDHUP)];
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
        match recv(fd, &mut b, RecvFlags::PEEK | RecvFlags::DONTWAIT) {
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

    /// Waits until the socket can go the way libssh2 is blocked (`dirs`), or `ctl` says stop,
    /// or `max` passed; at most `SHARED_WAIT` when other calls share the session (one of them
    /// may have read this call's data off the socket) or one of them made progress.
    pub(super) async fn wait_io(
        &self,
        dirs: BlockDirections,
        ctl: Option<&Ctl>,
        max: Option<Duration>,
    ) {
        let interest = match dirs {
            BlockDirections::Outbound => Interest::WRITABLE,
            BlockDirections::Both => Interest::READABLE | Interest::WRITABLE,
            BlockDirections::Inbound | BlockDirections::None => Interest::READABLE,
        };
        let shared = self.active() > 1;
        let max = if shared {
            Some(max.map_or(SHARED_WAIT, |m| m.min(SHARED_WAIT)))
        } else {
            max
        };
        let io = async {
            match self.afd.ready(interest).await {
                // The next try reads or writes what there is; until it finds nothing more,
                // a new readiness is not needed.
                Ok(mut g) => g.clear_ready(),
                // The reactor is going away (the runtime shuts down): do not spin.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        };
        let stop = async {
            match ctl {
                Some(c) => c.until_stopped().await,
                None => std::future::pending().await,
            }
        };
        let timer = async {
            match max {
                Some(m) => tokio::time::sleep(m).await,
                None => std::future::pending().await,
            }
        };
        let progress = async {
            if shared {
                self.progress.notified().await
            } else {
                std::future::pending().await
            }
        };
        tokio::select! {
            _ = io => {}
            _ = stop => {}
            _ = timer => {}
            _ = progress => {}
        }
    }

    /// Waits for data while other calls may use the session.
    pub(super) async fn wait_inbound(&self, ctl: &Ctl) {
        self.wait_io(BlockDirections::Inbound, Some(ctl), None)
            .await;
    }

    pub(super) async fn run<T, F>(
        &self,
        ctl: &Ctl,
        mode: Mode,
        mut f: F,
    ) -> Result<Option<T>, OpError>
    where
        F: FnMut() -> Result<T, E> + Send,
    {
        let start = Instant::now();
        let mut guard: Option<tokio::sync::MutexGuard<'_, ()>> = None;
        loop {
            if guard.is_none() {
                if let Some(r) = self.dead_reason() {
                    return Err(OpError::Dead(r));
                }
                guard = Some(self.op.lock().await);
            }
            match f() {
                Ok(v) => {
                    drop(guard);
                    if self.active() > 1 {
                        self.progress.notify_waiters();
                    }
                    return Ok(Some(v));
                }
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
                        // Still holding the session: only this call may go on.
                        self.wait_io(dirs, None, Some(Duration::from_millis(100)))
                            .await;
                        continue;
                    }
                    guard = None;
                    if mode == Mode::Try {
                        return Ok(None);
                    }
                    if ctl.stopped() {
                        return Err(OpError::Cancelled);
                    }
                    self.wait_inbound(ctl).await;
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
    pub(super) async fn hold<T, F>(&self, f: F) -> Result<T, OpError>
    where
        F: FnMut() -> Result<T, E> + Send,
    {
        let ctl = Ctl::within(HOLD_LIMIT);
        self.run(&ctl, Mode::Hold, f)
            .await?
            .ok_or(OpError::Cancelled)
    }

    /// Runs a call to completion, letting others use the session while it waits for data.
    pub(super) async fn stream<T, F>(&self, ctl: &Ctl, f: F) -> Result<T, OpError>
    where
        F: FnMut() -> Result<T, E> + Send,
    {
        self.run(ctl, Mode::Stream, f)
            .await?
            .ok_or(OpError::Cancelled)
    }

    /// One attempt: `None` when the call would wait for data.
    pub(super) async fn attempt<T, F>(&self, f: F) -> Result<Option<T>, OpError>
    where
        F: FnMut() -> Result<T, E> + Send,
    {
        self.run(&Ctl::within(HOLD_LIMIT), Mode::Try, f).await
    }

    /// Opens a channel (`f`: a session channel, an SFTP channel, a direct-tcpip one), one at a
    /// time per session, letting the session's other channels flow while the server answers;
    /// a server that does not answer within `HOLD_LIMIT` leaves the session dead (the open is
    /// half-way in libssh2's state).
    pub(super) async fn open<T, F>(&self, f: F) -> Result<T, OpError>
    where
        F: FnMut() -> Result<T, E> + Send,
    {
        let _g = self.opening.lock().await;
        match self.stream(&Ctl::within(HOLD_LIMIT), f).await {
            Err(OpError::Cancelled) => Err(self.mark_dead(format!(
                "{} stopped answering ({} s without progress)",
                self.label,
                HOLD_LIMIT.as_secs()
            ))),
            r => r,
        }
    }

    /// Starts SFTP on the session (channel, subsystem, the server's version), one open at a
    /// time as `open` does, but stopping with the step (`ctl`): a server whose subsystem never
    /// answers fails the step — by the step's timeout, or after `HOLD_LIMIT` — not the
    /// session, whose commands go on (the transport answers; only the subsystem is silent).
    /// libssh2 keeps the start half-way in the session, and the next start resumes it.
    pub(super) async fn open_sftp(&self, ctl: &Ctl) -> Result<Sftp, OpError> {
        let _g = self.opening.lock().await;
        match self
            .stream(&ctl.bounded(HOLD_LIMIT), || self.sftp_init())
            .await
        {
            Err(OpError::Cancelled) if !ctl.stopped() => Err(OpError::Failed {
                msg: format!(
                    "the server's SFTP subsystem did not answer within {} s",
                    HOLD_LIMIT.as_secs()
                ),
                not_found: false,
            }),
            r => r,
        }
    }

    /// One `libssh2_sftp_init` call, and the clean-up of a start that failed. libssh2 frees a
    /// failed start's channel only on the next call, which then returns nothing and sets no
    /// error of its own — a stale "would block" read as its answer waited for data that never
    /// came. So the session's last error is cleared before every call, and a failed start is
    /// cleaned up at once by a second call.
    fn sftp_init(&self) -> Result<Sftp, E> {
        for _ in 0..2 {
            clear_last_error(&self.sess);
            match self.sess.sftp() {
                Ok(s) => return Ok(s),
                // No error set: an earlier failed start was cleaned up; start afresh.
                Err(e) if e.code() == ErrorCode::Session(NO_ERROR_SET) => continue,
                Err(e) => {
                    let e = E::from(e);
                    if matches!(e, E::Ssh(_)) {
                        clear_last_error(&self.sess);
                        let _ = self.sess.sftp();
                    }
                    return Err(e);
                }
            }
        }
        Err(E::Ssh(ssh2::Error::unknown()))
    }

    /// Drops something whose destructor frees libssh2 state (a channel) while no other call
    /// is half-way.
    pub(super) async fn release<T: Send>(&self, t: T) {
        let _g = self.op.lock().await;
        drop(t);
    }

    /// Closes an SFTP file handle (the server confirms) by non-blocking calls. One whose close
    /// did not finish in time is dropped anyway: ssh2's destructor then blocks, at most
    /// `BLOCKING_LIMIT` (at once on a dead session, whose socket is shut).
    pub(super) async fn close_file(&self, mut f: File) -> Result<(), OpError> {
        let r = self.close_file_ref(&mut f).await;
        self.release(f).await;
        r
    }

    /// Closes an SFTP file handle by non-blocking calls, leaving the `File` to the caller.
    pub(super) async fn close_file_ref(&self, f: &mut File) -> Result<(), OpError> {
        let ctl = Ctl::within(Duration::from_secs(5));
        self.stream(&ctl, || f.close().map_err(E::from)).await
    }

    /// Ends an SFTP channel by non-blocking calls (none of its files may be open), as
    /// `close_file` does a file.
    pub(super) async fn close_sftp(&self, mut s: Sftp) {
        if self.dead_reason().is_none() {
            let ctl = Ctl::within(Duration::from_secs(2));
            let _ = self.stream(&ctl, || s.shutdown().map_err(E::from)).await;
        }
        self.release(s).await;
    }

    /// Sends a keepalive when one is due.
    pub async fn keepalive_tick(&self) -> Result<(), OpError> {
        self.hold(|| self.sess.keepalive_send().map_err(E::from))
            .await
            .map(|_| ())
    }

    /// Ends the session: SFTP channels, then an SSH disconnect (bounded: a few seconds).
    pub async fn shutdown(&self) {
        let sftps: Vec<IdleSftp> = std::mem::take(&mut *lock(&self.idle_sftp));
        if self.dead_reason().is_none() {
            for s in sftps {
                for f in s.pending {
                    let _ = self.close_file(f).await;
                }
                self.close_sftp(s.sftp).await;
            }
            let ctl = Ctl::within(Duration::from_secs(2));
            let _ = self
                .run(&ctl, Mode::Stream, || {
                    self.sess
                        .disconnect(None, "sortie is done", None)
                        .map_err(E::from)
                })
                .await;
        } else {
            for s in sftps {
                self.release(s).await;
            }
        }
        let _ = self.mark_dead(format!("the session to {} was closed", self.label));
    }

    // -----------------------------------------------------------------------------------------
    // A jump host's and a via gateway's channels (for `jump.rs`, `via/`)
    // -----------------------------------------------------------------------------------------

    /// Opens a direct-tcpip channel to `host:port` (this session is a jump host).
    pub async fn tunnel(&self, host: &str, port: u16) -> Result<Channel, OpError> {
        self.open(|| {
            self.sess
                .channel_direct_tcpip(host, port, None)
                .map_err(E::from)
        })
        .await
    }

    pub(crate) fn block_directions(&self) -> BlockDirections {
        self.sess.block_directions()
    }

    /// Pump helpers for `jump.rs`.
    pub(crate) async fn try_write(
        &self,
        ch: &mut Channel,
        data: &[u8],
    ) -> Result<Option<usize>, OpError> {
        self.attempt(|| ch.write(data).map_err(E::from)).await
    }

    pub(crate) async fn try_read(
        &self,
        ch: &mut Channel,
        buf: &mut [u8],
    ) -> Result<Option<usize>, OpError> {
        self.attempt(|| ch.read(buf).map_err(E::from)).await
    }

    pub(crate) async fn send_eof(&self, ch: &mut Channel) -> Result<(), OpError> {
        self.hold(|| ch.send_eof().map_err(E::from)).await
    }

    pub(crate) async fn close_channel(&self, ch: Channel) {
        let mut ch = ch;
        let ctl = Ctl::within(Duration::from_secs(1));
        let _ = self
            .run(&ctl, Mode::Stream, || ch.close().map_err(E::from))
            .await;
        self.release(ch).await;
    }
}
