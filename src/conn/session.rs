//! One live SSH session (`Live`): connected from a resolved `Target` (TCP with a timeout, or a
//! jump host's direct-tcpip channel bridged by `jump.rs`), its host key checked against
//! known_hosts (`known_hosts.rs`), authenticated (keys, ssh-agent, password), then used by every
//! step of its host from blocking threads: commands (`exec`) and SFTP (`Remote`).
//!
//! libssh2 is blocking or non-blocking per session, not per call, and a blocking read holds the
//! session while it waits — one long command would stall every other step of the host. So the
//! session runs non-blocking and every call goes through `Live::call`: it retries on EAGAIN,
//! waiting with `poll` on the socket. libssh2 requires that a call which left a packet half-sent
//! is repeated, unchanged, before any other call sends; so a per-session lock (`op`) is held
//! across the retries of such a call (and of calls whose state lives in the session, such as
//! opening a channel), and released while a call only waits for data — that is when steps
//! sharing the session interleave, and when a cancelled step (timeout) notices and stops.
//! A session whose socket is gone is marked dead: every later call fails at once with the
//! reason, and the host is reported unreachable.

// `StepError` (the engine's type) carries a whole `Diagnostic`; boxing it is the engine's call.
#![allow(clippy::result_large_err)]

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ssh2::{
    BlockDirections, Channel, ErrorCode, FileStat, MethodType, OpenFlags, OpenType, Session, Sftp,
};

use super::config::{Target, home};
use super::known_hosts::{self, Verdict};
use crate::inventory::HostKeyChecking;
use crate::steps::StepError;

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
enum Mode {
    Hold,
    Stream,
    Try,
}

/// An authenticated session and what it needs to be shared by the steps of one host.
pub struct Live {
    sess: Session,
    /// A duplicate of the session's socket, for `poll` and for telling a dead socket.
    poll_fd: OwnedFd,
    op: Mutex<()>,
    dead: Mutex<Option<String>>,
    active: AtomicUsize,
    idle_sftp: Mutex<Vec<Sftp>>,
    /// The name the user knows the host by.
    pub label: String,
    /// `user@host:port`.
    pub addr: String,
    pub keepalive: Duration,
}

/// What a remote command left.
#[derive(Clone, Debug, Default)]
pub struct ExecOutput {
    /// The exit status; with a signal, 128 + its number (as shells report it).
    pub rc: i64,
    /// The signal that ended the command (`TERM`, `KILL`, …).
    pub signal: Option<String>,
    pub stdout: Vec<u8>,
    pub stdout_dropped: u64,
    pub stderr: Vec<u8>,
    pub stderr_dropped: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Counts an operation in flight on a session while it lives.
struct Active<'a>(&'a AtomicUsize);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Live {
    fn enter(&self) -> Active<'_> {
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
    fn wait_inbound(&self) {
        let max = if self.active() > 1 {
            Duration::from_millis(5)
        } else {
            Duration::from_millis(50)
        };
        self.poll(BlockDirections::Inbound, max);
    }

    fn run<T>(
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
    fn hold<T>(&self, mut f: impl FnMut() -> Result<T, E>) -> Result<T, OpError> {
        let ctl = Ctl::within(HOLD_LIMIT);
        self.run(&ctl, Mode::Hold, &mut f)?
            .ok_or(OpError::Cancelled)
    }

    /// Runs a call to completion, letting others use the session while it waits for data.
    fn stream<T>(&self, ctl: &Ctl, mut f: impl FnMut() -> Result<T, E>) -> Result<T, OpError> {
        self.run(ctl, Mode::Stream, &mut f)?
            .ok_or(OpError::Cancelled)
    }

    /// One attempt: `None` when the call would wait for data.
    fn attempt<T>(&self, mut f: impl FnMut() -> Result<T, E>) -> Result<Option<T>, OpError> {
        self.run(&Ctl::within(HOLD_LIMIT), Mode::Try, &mut f)
    }

    /// Drops something whose destructor talks to the server (ssh2 switches the session to
    /// blocking for it) while no other call is half-way.
    fn drop_quietly<T>(&self, t: T) {
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
    // Commands
    // -----------------------------------------------------------------------------------------

    /// Runs `command` on a channel of its own: feeds `stdin`, keeps at most `limit` bytes of
    /// each output stream. Cancelled, it signals the command's process group and closes the
    /// channel.
    pub fn exec(
        &self,
        ctl: &Ctl,
        command: &str,
        stdin: Option<&[u8]>,
        limit: usize,
    ) -> Result<ExecOutput, OpError> {
        let _a = self.enter();
        let mut ch = self.hold(|| self.sess.channel_session().map_err(E::from))?;
        // The login shell's PID is the process group sshd made for the command (sshd calls
        // setsid): printed first on stderr (and taken off it), it lets a timeout stop the
        // whole command the way `ssh` does for a "signal" request.
        let script = format!("printf '{PID_MARK}%s\\n' \"$$\" >&2\n{command}");
        self.hold(|| ch.exec(&script).map_err(E::from))?;
        let mut st = ExecState::new(limit);
        match self.exec_io(ctl, &mut ch, stdin, &mut st) {
            Ok(()) => {
                let signal = ch.exit_signal().ok().and_then(|s| s.exit_signal);
                let rc = match &signal {
                    Some(s) => 128 + i64::from(signal_number(s)),
                    None => i64::from(ch.exit_status().unwrap_or(-1)),
                };
                let _ = self.hold(|| ch.close().map_err(E::from));
                self.drop_quietly(ch);
                Ok(st.finish(rc, signal))
            }
            Err(OpError::Cancelled) => {
                self.abort(&mut ch, st.pid);
                self.drop_quietly(ch);
                Err(OpError::Cancelled)
            }
            Err(e) => {
                self.drop_quietly(ch);
                Err(e)
            }
        }
    }

    fn exec_io(
        &self,
        ctl: &Ctl,
        ch: &mut Channel,
        stdin: Option<&[u8]>,
        st: &mut ExecState,
    ) -> Result<(), OpError> {
        let input = stdin.unwrap_or_default();
        let mut off = 0;
        let mut eof_sent = false;
        let (mut out_eof, mut err_eof) = (false, false);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let mut progress = false;
            if !eof_sent {
                if off < input.len() {
                    let end = (off + 32 * 1024).min(input.len());
                    match self.attempt(|| ch.write(&input[off..end]).map_err(E::from)) {
                        Ok(Some(n)) => {
                            off += n;
                            progress |= n > 0;
                        }
                        Ok(None) => {}
                        // The command closed its input: the rest is not wanted.
                        Err(OpError::Failed { .. }) => off = input.len(),
                        Err(e) => return Err(e),
                    }
                } else {
                    match self.hold(|| ch.send_eof().map_err(E::from)) {
                        Ok(()) | Err(OpError::Failed { .. }) => {}
                        Err(e) => return Err(e),
                    }
                    eof_sent = true;
                    progress = true;
                }
            }
            if !out_eof && let Some(n) = self.attempt(|| ch.read(&mut buf).map_err(E::from))? {
                if n == 0 {
                    out_eof = true;
                } else {
                    st.out.push(&buf[..n]);
                }
                progress = true;
            }
            if !err_eof
                && let Some(n) = self.attempt(|| ch.stderr().read(&mut buf).map_err(E::from))?
            {
                if n == 0 {
                    err_eof = true;
                    st.err_head(&[], true);
                } else {
                    st.err_head(&buf[..n], false);
                }
                progress = true;
            }
            if out_eof && err_eof {
                break;
            }
            if !progress {
                if ctl.stopped() {
                    return Err(OpError::Cancelled);
                }
                self.wait_inbound();
            }
        }
        self.stream(ctl, || ch.wait_close().map_err(E::from))
    }

    /// Stops a cancelled command: TERM to its process group (over a channel of its own), then
    /// closes its channel, waiting a little for the server's side of the close.
    fn abort(&self, ch: &mut Channel, pid: Option<u32>) {
        if let Some(pid) = pid {
            let kill = format!(
                "kill -s TERM -- -{pid} 2>/dev/null || kill -s TERM {pid} 2>/dev/null; true"
            );
            let _ = self.exec(&Ctl::within(Duration::from_secs(3)), &kill, None, 4096);
        }
        let ctl = Ctl::within(Duration::from_secs(2));
        let _ = self.run(&ctl, Mode::Stream, &mut || ch.close().map_err(E::from));
    }

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

/// Marks the PID line on stderr: a control character no program prints there by chance.
const PID_MARK: &str = "\\036sortie-pid=";
const PID_MARK_BYTES: &[u8] = b"\x1esortie-pid=";

/// Output kept so far, within a limit; the rest counted.
struct Capture {
    kept: Vec<u8>,
    dropped: u64,
    limit: usize,
}

impl Capture {
    fn push(&mut self, b: &[u8]) {
        let room = self.limit.saturating_sub(self.kept.len());
        let take = room.min(b.len());
        self.kept.extend_from_slice(&b[..take]);
        self.dropped += (b.len() - take) as u64;
    }
}

struct ExecState {
    out: Capture,
    err: Capture,
    /// stderr until the PID line was found (or could no longer come).
    head: Option<Vec<u8>>,
    pid: Option<u32>,
}

impl ExecState {
    fn new(limit: usize) -> ExecState {
        ExecState {
            out: Capture {
                kept: Vec::new(),
                dropped: 0,
                limit,
            },
            err: Capture {
                kept: Vec::new(),
                dropped: 0,
                limit,
            },
            head: Some(Vec::new()),
            pid: None,
        }
    }

    fn err_head(&mut self, b: &[u8], eof: bool) {
        let Some(head) = self.head.as_mut() else {
            self.err.push(b);
            return;
        };
        head.extend_from_slice(b);
        // Shell start-up files may print before it, so look for it, not just at the start.
        if let Some(at) = head
            .windows(PID_MARK_BYTES.len())
            .position(|w| w == PID_MARK_BYTES)
        {
            let digits_at = at + PID_MARK_BYTES.len();
            if let Some(nl) = head[digits_at..].iter().position(|c| *c == b'\n') {
                self.pid = std::str::from_utf8(&head[digits_at..digits_at + nl])
                    .ok()
                    .and_then(|s| s.parse().ok());
                let mut rest = head[..at].to_vec();
                rest.extend_from_slice(&head[digits_at + nl + 1..]);
                self.head = None;
                self.err.push(&rest);
                return;
            }
        }
        if eof || head.len() > 4096 {
            let rest = std::mem::take(head);
            self.head = None;
            self.err.push(&rest);
        }
    }

    fn finish(mut self, rc: i64, signal: Option<String>) -> ExecOutput {
        if self.head.is_some() {
            self.err_head(&[], true);
        }
        ExecOutput {
            rc,
            signal,
            stdout: self.out.kept,
            stdout_dropped: self.out.dropped,
            stderr: self.err.kept,
            stderr_dropped: self.err.dropped,
        }
    }
}

/// The number of a signal named as SSH names them (`TERM`, `KILL`, …); Linux numbering.
fn signal_number(name: &str) -> i32 {
    match name.trim_start_matches("SIG") {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "ILL" => 4,
        "ABRT" => 6,
        "FPE" => 8,
        "KILL" => 9,
        "USR1" => 10,
        "SEGV" => 11,
        "USR2" => 12,
        "PIPE" => 13,
        "ALRM" => 14,
        "TERM" => 15,
        _ => 0,
    }
}

// ---------------------------------------------------------------------------------------------
// SFTP
// ---------------------------------------------------------------------------------------------

/// SFTP (and commands) for one step, on a blocking thread. The SFTP channel is taken from the
/// session's idle ones, or opened, and handed back when the step is done.
pub struct Remote {
    live: Arc<Live>,
    ctl: Ctl,
    sftp: Option<Sftp>,
    /// A cancelled call left the SFTP channel half-way: it is closed, not reused.
    poisoned: bool,
}

/// An open remote file.
pub struct RemoteFile {
    file: Option<ssh2::File>,
    live: Arc<Live>,
    pub path: String,
}

impl Drop for RemoteFile {
    fn drop(&mut self) {
        if let Some(f) = self.file.take() {
            self.live.drop_quietly(f);
        }
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        if let Some(s) = self.sftp.take() {
            if self.poisoned || self.live.dead_reason().is_some() {
                self.live.drop_quietly(s);
            } else {
                lock(&self.live.idle_sftp).push(s);
            }
        }
        self.live.active.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Remote {
    pub fn new(live: Arc<Live>, ctl: Ctl) -> Remote {
        live.active.fetch_add(1, Ordering::SeqCst);
        Remote {
            live,
            ctl,
            sftp: None,
            poisoned: false,
        }
    }

    /// Turns an operation's failure into the step's error, saying what was being done.
    pub fn err(&mut self, what: &str, e: OpError) -> StepError {
        match e {
            OpError::Cancelled => {
                self.poisoned = true;
                StepError::Cancelled
            }
            OpError::Dead(reason) => StepError::Connect {
                addr: self.live.addr.clone(),
                reason,
            },
            OpError::Failed { msg, .. } => StepError::Io(format!("{what}: {msg}")),
        }
    }

    /// Runs `f` with the step's SFTP channel (opened on first use), as a streaming call.
    fn with_sftp<T>(
        &mut self,
        mut f: impl FnMut(&Sftp) -> Result<T, E>,
    ) -> Result<Result<T, OpError>, StepError> {
        let s = match self.sftp.take() {
            Some(s) => s,
            None => {
                let idle = lock(&self.live.idle_sftp).pop();
                match idle {
                    Some(s) => s,
                    None => {
                        let live = self.live.clone();
                        live.hold(|| live.sess.sftp().map_err(E::from))
                            .map_err(|e| self.err("cannot start SFTP", e))?
                    }
                }
            }
        };
        let r = self.live.stream(&self.ctl, || f(&s));
        self.sftp = Some(s);
        Ok(r)
    }

    fn call<T>(
        &mut self,
        what: impl FnOnce() -> String,
        f: impl FnMut(&Sftp) -> Result<T, E>,
    ) -> Result<T, StepError> {
        match self.with_sftp(f)? {
            Ok(v) => Ok(v),
            Err(e) => Err(self.err(&what(), e)),
        }
    }

    /// `stat` (following symlinks); `None` when there is no such file.
    pub fn stat(&mut self, path: &str) -> Result<Option<FileStat>, StepError> {
        self.stat_with(path, false)
    }

    /// `lstat`: a symlink is described, not followed.
    pub fn lstat(&mut self, path: &str) -> Result<Option<FileStat>, StepError> {
        self.stat_with(path, true)
    }

    fn stat_with(&mut self, path: &str, link: bool) -> Result<Option<FileStat>, StepError> {
        let r = self.with_sftp(|s| {
            if link {
                s.lstat(Path::new(path))
            } else {
                s.stat(Path::new(path))
            }
            .map_err(E::from)
        })?;
        match r {
            Ok(st) => Ok(Some(st)),
            Err(OpError::Failed {
                not_found: true, ..
            }) => Ok(None),
            Err(e) => Err(self.err(&format!("cannot stat {path}"), e)),
        }
    }

    /// The names in a directory (without `.` and `..`) with their attributes (not following
    /// symlinks).
    pub fn readdir(&mut self, dir: &str) -> Result<Vec<(String, FileStat)>, StepError> {
        let handle = self.call(
            || format!("cannot list {dir}"),
            |s| s.opendir(Path::new(dir)).map_err(E::from),
        )?;
        let mut handle = RemoteFile {
            file: Some(handle),
            live: self.live.clone(),
            path: dir.to_string(),
        };
        let mut out = Vec::new();
        let live = self.live.clone();
        while let Some(h) = handle.file.as_mut() {
            match live.stream(&self.ctl, || h.readdir().map_err(E::from)) {
                Ok((name, st)) => {
                    let name = name.to_string_lossy().into_owned();
                    if name != "." && name != ".." {
                        out.push((name, st));
                    }
                }
                // The end of the listing comes as an SFTP "EOF" status.
                Err(OpError::Failed { .. }) => break,
                Err(e) => return Err(self.err(&format!("cannot list {dir}"), e)),
            }
        }
        self.close(handle)?;
        Ok(out)
    }

    pub fn mkdir(&mut self, path: &str, mode: i32) -> Result<(), StepError> {
        self.call(
            || format!("cannot create directory {path}"),
            |s| s.mkdir(Path::new(path), mode).map_err(E::from),
        )
    }

    pub fn unlink(&mut self, path: &str) -> Result<(), StepError> {
        self.call(
            || format!("cannot remove {path}"),
            |s| s.unlink(Path::new(path)).map_err(E::from),
        )
    }

    /// Sets the permission bits.
    pub fn chmod(&mut self, path: &str, mode: u32) -> Result<(), StepError> {
        let stat = FileStat {
            size: None,
            uid: None,
            gid: None,
            perm: Some(mode),
            atime: None,
            mtime: None,
        };
        self.call(
            || format!("cannot set the mode of {path}"),
            |s| s.setstat(Path::new(path), stat.clone()).map_err(E::from),
        )
    }

    /// SFTP rename: fails when `to` exists (OpenSSH speaks SFTP version 3).
    pub fn rename(&mut self, from: &str, to: &str) -> Result<(), StepError> {
        self.call(
            || format!("cannot rename {from} to {to}"),
            |s| {
                s.rename(Path::new(from), Path::new(to), None)
                    .map_err(E::from)
            },
        )
    }

    pub fn open_read(&mut self, path: &str) -> Result<RemoteFile, StepError> {
        let f = self.call(
            || format!("cannot open {path}"),
            |s| s.open(Path::new(path)).map_err(E::from),
        )?;
        Ok(RemoteFile {
            file: Some(f),
            live: self.live.clone(),
            path: path.to_string(),
        })
    }

    /// Creates (or truncates) a file for writing.
    pub fn create(&mut self, path: &str, mode: i32) -> Result<RemoteFile, StepError> {
        let f = self.call(
            || format!("cannot create {path}"),
            |s| {
                s.open_mode(
                    Path::new(path),
                    OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE,
                    mode,
                    OpenType::File,
                )
                .map_err(E::from)
            },
        )?;
        Ok(RemoteFile {
            file: Some(f),
            live: self.live.clone(),
            path: path.to_string(),
        })
    }

    /// Reads into `buf`; 0 at the end of the file.
    pub fn read(&mut self, f: &mut RemoteFile, buf: &mut [u8]) -> Result<usize, StepError> {
        let Some(file) = f.file.as_mut() else {
            return Ok(0);
        };
        let live = self.live.clone();
        match live.stream(&self.ctl, || file.read(buf).map_err(E::from)) {
            Ok(n) => Ok(n),
            Err(e) => Err(self.err(&format!("cannot read {}", f.path), e)),
        }
    }

    pub fn write_all(&mut self, f: &mut RemoteFile, mut data: &[u8]) -> Result<(), StepError> {
        let Some(file) = f.file.as_mut() else {
            return Err(StepError::Io(format!("{} is closed", f.path)));
        };
        let live = self.live.clone();
        while !data.is_empty() {
            let n = match live.stream(&self.ctl, || file.write(data).map_err(E::from)) {
                Ok(n) => n,
                Err(e) => return Err(self.err(&format!("cannot write {}", f.path), e)),
            };
            if n == 0 {
                return Err(StepError::Io(format!(
                    "cannot write {}: the server took no data",
                    f.path
                )));
            }
            data = &data[n..];
        }
        Ok(())
    }

    /// Closes a file (the server confirms; for a written file, that all data arrived).
    pub fn close(&mut self, mut f: RemoteFile) -> Result<(), StepError> {
        let Some(mut file) = f.file.take() else {
            return Ok(());
        };
        let live = self.live.clone();
        let r = live.hold(|| file.close().map_err(E::from));
        live.drop_quietly(file);
        r.map_err(|e| self.err(&format!("cannot close {}", f.path), e))
    }

    /// A command over the same session (e.g. `sha256sum`, `mv`).
    pub fn exec(&mut self, command: &str, limit: usize) -> Result<ExecOutput, StepError> {
        let live = self.live.clone();
        live.exec(&self.ctl, command, None, limit)
            .map_err(|e| self.err("remote command", e))
    }
}

// ---------------------------------------------------------------------------------------------
// Connecting
// ---------------------------------------------------------------------------------------------

fn connect_error(t: &Target, reason: impl Into<String>) -> StepError {
    StepError::Connect {
        addr: t.addr(),
        reason: reason.into(),
    }
}

/// Opens the TCP connection (or the tunnel through the jump hosts) for `t`.
fn open_stream(t: &Target) -> Result<(OwnedFd, Box<dyn std::os::fd::AsRawFd + Send>), StepError> {
    if let Some(j) = &t.jump {
        let jump = connect(j)?;
        let mine = super::jump::tunnel(jump, &t.host, t.port)
            .map_err(|e| connect_error(t, format!("through jump host {}: {e}", j.label)))?;
        let dup = mine
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| connect_error(t, e.to_string()))?;
        return Ok((dup, Box::new(mine)));
    }
    let deadline = Instant::now() + t.connect_timeout;
    let addrs: Vec<_> = (t.host.as_str(), t.port)
        .to_socket_addrs()
        .map_err(|e| connect_error(t, format!("cannot resolve {}: {e}", t.host)))?
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
                    .map_err(|e| connect_error(t, e.to_string()))?;
                return Ok((dup, Box::new(s)));
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
    Err(connect_error(t, last))
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

/// Connects, checks the host key and logs in. Blocking: run it on a blocking thread.
pub fn connect(t: &Target) -> Result<Live, StepError> {
    let (poll_fd, stream) = open_stream(t)?;
    let mut sess = Session::new().map_err(|e| connect_error(t, e.to_string()))?;
    sess.set_tcp_stream(BoxedFd(stream));
    sess.set_timeout(
        u32::try_from(t.connect_timeout.as_millis())
            .unwrap_or(u32::MAX)
            .max(1),
    );
    sess.set_compress(false);

    let entries = known_hosts::load(&t.known_hosts).map_err(|e| connect_error(t, e))?;
    let name = known_hosts::host_name(&t.host, t.port);
    let known = known_hosts::for_host(&entries, &name);
    let supported = sess.supported_algs(MethodType::HostKey).unwrap_or_default();
    let prefs: Vec<&str> = known_hosts::algorithms(&known)
        .unwrap_or_else(|| {
            vec![
                "ssh-ed25519",
                "ecdsa-sha2-nistp256",
                "ecdsa-sha2-nistp384",
                "ecdsa-sha2-nistp521",
                "rsa-sha2-512",
                "rsa-sha2-256",
                "ssh-rsa",
            ]
        })
        .into_iter()
        .filter(|a| supported.contains(a))
        .collect();
    let restricted = known_hosts::algorithms(&known).is_some();
    if !prefs.is_empty() {
        let _ = sess.method_pref(MethodType::HostKey, &prefs.join(","));
    }
    if let Err(e) = sess.handshake() {
        let code = e.code();
        if restricted && code == ErrorCode::Session(-8) && t.checking != HostKeyChecking::Off {
            return Err(StepError::HostKey {
                host: t.label.clone(),
                problem: "changed".into(),
                fingerprint: format!(
                    "the server offers none of the known key types: {}",
                    prefs.join(", ")
                ),
                help: changed_help(&known, &name),
            });
        }
        let reason = match code {
            ErrorCode::Session(-9) | ErrorCode::Session(-2) | ErrorCode::Session(-30) => format!(
                "no SSH answer within {} (connect_timeout): {}",
                crate::units::Duration(t.connect_timeout),
                e.message()
            ),
            _ => format!("SSH handshake failed: {}", e.message()),
        };
        return Err(connect_error(t, reason));
    }
    check_host_key(t, &sess, &name, &known)?;
    authenticate(t, &sess)?;
    // Blocking calls left (ssh2's destructors) are bounded by this.
    sess.set_timeout(u32::try_from(HOLD_LIMIT.as_millis()).unwrap_or(u32::MAX));
    sess.set_keepalive(
        false,
        u32::try_from(t.keepalive.as_secs()).unwrap_or(30).max(2),
    );
    sess.set_blocking(false);
    Ok(Live {
        sess,
        poll_fd,
        op: Mutex::new(()),
        dead: Mutex::new(None),
        active: AtomicUsize::new(0),
        idle_sftp: Mutex::new(Vec::new()),
        label: t.label.clone(),
        addr: t.addr(),
        keepalive: t.keepalive,
    })
}

/// Gives ssh2 the stream (a TCP socket or our end of a tunnel) as something with a raw fd.
struct BoxedFd(Box<dyn std::os::fd::AsRawFd + Send>);

impl std::os::fd::AsRawFd for BoxedFd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }
}

/// What to say about a changed key; `known` are the entries about the host.
fn changed_help(known: &[&known_hosts::Entry], name: &str) -> String {
    let file = known
        .first()
        .map(|e| e.file.display().to_string())
        .unwrap_or_else(|| "~/.ssh/known_hosts".into());
    format!(
        "the key differs from the one recorded for {name}: someone may be intercepting the connection. \
         If the host was reinstalled, check its new key with its administrator, then remove the old \
         entry with `ssh-keygen -R '{name}' -f {file}` and run again (accept-new records it)"
    )
}

fn check_host_key(
    t: &Target,
    sess: &Session,
    name: &str,
    entries: &[&known_hosts::Entry],
) -> Result<(), StepError> {
    let Some((key, _)) = sess.host_key() else {
        return Err(connect_error(t, "the server sent no host key"));
    };
    let fingerprint = known_hosts::fingerprint(key);
    let key_type = known_hosts::blob_key_type(key).unwrap_or_else(|| "unknown".into());
    if t.checking == HostKeyChecking::Off {
        return Ok(());
    }
    match known_hosts::verdict(entries, key) {
        Verdict::Match => Ok(()),
        Verdict::Unknown if t.checking == HostKeyChecking::AcceptNew => {
            known_hosts::append(&t.known_hosts_write, name, key).map_err(|e| connect_error(t, e))
        }
        Verdict::Unknown => Err(StepError::HostKey {
            host: t.label.clone(),
            problem: "unknown".into(),
            fingerprint: format!("{key_type} {fingerprint}"),
            help: format!(
                "{name} is not in known_hosts ({}). Check the fingerprint with the host's administrator \
                 (`ssh-keygen -lf /etc/ssh/ssh_host_{}_key.pub` on the host), then add the key \
                 (`ssh-keyscan -p {} {} >> {}`), or run once with `host_key_checking: accept-new`",
                t.known_hosts
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                key_type
                    .trim_start_matches("ssh-")
                    .split('-')
                    .next()
                    .unwrap_or("ed25519"),
                t.port,
                t.host,
                t.known_hosts_write.display()
            ),
        }),
        Verdict::Revoked => Err(StepError::HostKey {
            host: t.label.clone(),
            problem: "revoked".into(),
            fingerprint: format!("{key_type} {fingerprint}"),
            help:
                "known_hosts marks this key @revoked: do not connect until the host has a new key"
                    .into(),
        }),
        Verdict::Changed { known } => Err(StepError::HostKey {
            host: t.label.clone(),
            problem: "changed".into(),
            fingerprint: format!("{key_type} {fingerprint}; known: {}", known.join(", ")),
            help: changed_help(entries, name),
        }),
    }
}

fn auth_error(t: &Target, reason: String, help: String) -> StepError {
    StepError::Auth {
        user: t.user.clone(),
        host: format!("{}:{}", t.host, t.port),
        reason,
        help,
    }
}

/// Logs in: named keys (with `passphrase_env`), ssh-agent, default keys, then `password_env`.
fn authenticate(t: &Target, sess: &Session) -> Result<(), StepError> {
    let methods = match sess.auth_methods(&t.user) {
        Ok(m) => m.to_string(),
        Err(_) if sess.authenticated() => return Ok(()),
        Err(e) => {
            return Err(connect_error(
                t,
                format!("the server does not answer the login: {}", e.message()),
            ));
        }
    };
    let offers = |m: &str| methods.split(',').any(|x| x == m);
    let mut tried: Vec<String> = Vec::new();
    // What to do about it, most specific first (a password problem is the last thing tried).
    let mut help: Option<String> = None;
    let passphrase = match &t.passphrase_env {
        Some(var) => match std::env::var(var) {
            Ok(p) => Some(p),
            Err(_) => {
                tried.push(format!("passphrase_env `{var}` is not set"));
                None
            }
        },
        None => None,
    };
    if offers("publickey") {
        for key in &t.identity_files {
            if !key.exists() {
                tried.push(format!("key {}: no such file", key.display()));
                continue;
            }
            match sess.userauth_pubkey_file(&t.user, None, key, passphrase.as_deref()) {
                Ok(()) if sess.authenticated() => return Ok(()),
                Ok(()) => tried.push(format!("key {}: not accepted", key.display())),
                Err(e) => tried.push(key_failure(key, &e, passphrase.is_some())),
            }
        }
        if let Some(sock) = std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty()) {
            match agent_login(sess, &t.user) {
                Ok(true) => return Ok(()),
                Ok(false) => tried.push(format!(
                    "ssh-agent ({}): no key accepted",
                    Path::new(&sock).display()
                )),
                Err(e) => tried.push(format!("ssh-agent: {e}")),
            }
        }
        if t.default_identities {
            for name in ["id_ed25519", "id_ecdsa", "id_rsa"] {
                let Some(key) = home().map(|h| h.join(".ssh").join(name)) else {
                    continue;
                };
                if !key.exists() {
                    continue;
                }
                match sess.userauth_pubkey_file(&t.user, None, &key, passphrase.as_deref()) {
                    Ok(()) if sess.authenticated() => return Ok(()),
                    Ok(()) => tried.push(format!("key {}: not accepted", key.display())),
                    Err(e) => tried.push(key_failure(&key, &e, passphrase.is_some())),
                }
            }
        }
    }
    if let Some(var) = &t.password_env {
        match std::env::var(var) {
            Err(_) => {
                tried.push(format!("password_env `{var}` is not set"));
                help = Some(format!(
                    "set the environment variable `{var}` to {}'s password before running sortie",
                    t.user
                ));
            }
            Ok(pw) if offers("password") => match sess.userauth_password(&t.user, &pw) {
                Ok(()) if sess.authenticated() => return Ok(()),
                _ => tried.push(format!("password from `{var}`: refused")),
            },
            Ok(pw) if offers("keyboard-interactive") => {
                let mut p = PasswordPrompt(pw);
                match sess.userauth_keyboard_interactive(&t.user, &mut p) {
                    Ok(()) if sess.authenticated() => return Ok(()),
                    _ => tried.push(format!(
                        "keyboard-interactive password from `{var}`: refused"
                    )),
                }
            }
            Ok(_) => tried.push("password: the server does not take passwords".into()),
        }
        if help.is_none() && tried.last().is_some_and(|l| l.ends_with("refused")) {
            help = Some(format!(
                "check the password in `{var}` for {}@{}, or log in with a key \
                 (`ssh.identity_file`)",
                t.user, t.host
            ));
        }
    }
    if tried.is_empty() {
        tried.push("no key, agent or password to try".into());
    }
    let help = help.unwrap_or_else(|| {
        format!(
            "check that {} is the right user and that the server accepts its key \
             (`ssh.identity_file`, ssh-agent) or password (`ssh.password_env`); \
             `ssh -v {}@{} -p {}` shows what the server takes",
            t.user, t.user, t.host, t.port
        )
    });
    Err(auth_error(
        t,
        format!("{} (server offers: {methods})", tried.join("; ")),
        help,
    ))
}

fn key_failure(key: &Path, e: &ssh2::Error, had_passphrase: bool) -> String {
    match e.code() {
        // Unreadable, or encrypted with no (or a wrong) passphrase.
        ErrorCode::Session(-16) | ErrorCode::Session(-19) if !had_passphrase => format!(
            "key {}: cannot be read ({}; an encrypted key needs `passphrase_env`)",
            key.display(),
            e.message()
        ),
        ErrorCode::Session(-16) | ErrorCode::Session(-19) => {
            format!(
                "key {}: cannot be read ({}; is the passphrase right?)",
                key.display(),
                e.message()
            )
        }
        _ => format!("key {}: refused by the server", key.display()),
    }
}

fn agent_login(sess: &Session, user: &str) -> Result<bool, String> {
    let mut agent = sess.agent().map_err(|e| e.message().to_string())?;
    agent
        .connect()
        .map_err(|e| format!("cannot connect: {}", e.message()))?;
    agent
        .list_identities()
        .map_err(|e| e.message().to_string())?;
    let ids = agent.identities().map_err(|e| e.message().to_string())?;
    for id in &ids {
        if agent.userauth(user, id).is_ok() && sess.authenticated() {
            let _ = agent.disconnect();
            return Ok(true);
        }
    }
    let _ = agent.disconnect();
    Ok(false)
}

/// Answers keyboard-interactive prompts with the password.
struct PasswordPrompt(String);

impl ssh2::KeyboardInteractivePrompt for PasswordPrompt {
    fn prompt<'a>(
        &mut self,
        _user: &str,
        _instructions: &str,
        prompts: &[ssh2::Prompt<'a>],
    ) -> Vec<String> {
        prompts.iter().map(|_| self.0.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_line_is_taken_off_stderr_wherever_it_starts() {
        let mut st = ExecState::new(1024);
        st.err_head(b"rc noise\n\x1esortie-pi", false);
        st.err_head(b"d=4242\nreal error\n", false);
        st.err_head(b"more\n", false);
        let out = st.finish(1, None);
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "rc noise\nreal error\nmore\n"
        );

        let mut st = ExecState::new(1024);
        st.err_head(b"\x1esortie-pid=77\n", false);
        assert_eq!(st.pid, Some(77));
        assert!(st.finish(0, None).stderr.is_empty());
    }

    #[test]
    fn capture_keeps_the_limit_and_counts_the_rest() {
        let mut st = ExecState::new(4);
        st.out.push(b"abcdef");
        st.out.push(b"gh");
        st.err_head(b"no marker at all", true);
        let out = st.finish(0, None);
        assert_eq!(out.stdout, b"abcd");
        assert_eq!(out.stdout_dropped, 4);
        assert_eq!(out.stderr, b"no m");
        assert_eq!(out.stderr_dropped, 12);
    }

    #[test]
    fn signals_by_name() {
        assert_eq!(signal_number("TERM"), 15);
        assert_eq!(signal_number("SIGKILL"), 9);
        assert_eq!(signal_number("WHAT"), 0);
    }
}
