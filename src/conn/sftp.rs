//! SFTP for one step (`Remote`, with its open files `RemoteFile`), over the host's `Live`
//! session (`session.rs`). `HostConn::remote` (`mod.rs`) hands one to a task of its own for
//! the `sftp_put` and `sftp_get` kinds, which call `stat`, `lstat`, `realpath`, `readdir`,
//! `open_read`, `create_new`/`create_unique` (exclusive: never through a planted link),
//! `read`, `write_all`, `rename`, … on it; failures come back as `StepError`s that say what
//! was being done. The SFTP channel is taken from the session's idle ones, or opened, and
//! handed back when the step is done.

// `StepError` (the engine's type) carries a whole `Diagnostic`; boxing it is the engine's call.
#![allow(clippy::result_large_err)]

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use ssh2::{FileStat, OpenFlags, OpenType, Sftp};

use super::command::ExecOutput;

/// Bytes one SFTP write call hands libssh2: it sends them all as 32 KiB requests before it
/// waits for the first answer, so this is what a transfer keeps in flight (OpenSSH's sftp:
/// 64 × 32 KiB). Over a 50 ms link a 64 KiB buffer made a 1 MiB upload cost 16 round trips.
pub const WRITE_IN_FLIGHT: usize = 1 << 20;
/// Files whose bytes are on the wire at once, across the whole run. Each keeps about 1 MiB in
/// flight (libssh2's packets) and a buffer of its own, so a thousand hosts transferring at once
/// would hold over a GiB (issue 12: 295 MiB peak at 1,000 hosts once no thread pool capped
/// them); 32 keep that near 40 MiB and still move 32 MiB per round trip.
pub const TRANSFERS_AT_ONCE: usize = 32;
static TRANSFERS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(TRANSFERS_AT_ONCE);

/// Waits for a turn to move a file's bytes (`TRANSFERS_AT_ONCE`); held until dropped.
pub async fn transfer_turn() -> Option<tokio::sync::SemaphorePermit<'static>> {
    TRANSFERS.acquire().await.ok()
}

/// Bytes one SFTP read call asks for: libssh2 reads ahead four times that (1 MiB in flight).
pub const READ_BUFFER: usize = 256 << 10;
use super::session::{ActiveOwned, Ctl, E, IdleSftp, Live, Mode, OpError, lock};
use crate::error::StepError;

/// Files of a step dropped without `close`: closed, in order, before its SFTP channel is
/// handed on (`None` once the step's `Remote` is gone).
type Orphans = Arc<std::sync::Mutex<Option<Vec<ssh2::File>>>>;

/// SFTP (and commands) for one step, in a task of its own. The SFTP channel is taken from the
/// session's idle ones, or opened, and handed back when the step is done.
pub struct Remote {
    live: Arc<Live>,
    ctl: Ctl,
    sftp: Option<Sftp>,
    /// A cancelled call left the SFTP channel half-way: it is closed, not reused.
    poisoned: bool,
    orphans: Orphans,
    /// Counts the step as an operation on the session while it lives.
    active: Option<ActiveOwned>,
    /// A folder listing sent ahead (`list_ahead`), taken in between the step's other calls.
    ahead: Option<Ahead>,
}

/// A folder listing on its way beside a step's other requests (`Remote::list_ahead`): its
/// next request is sent whenever the step makes a call, and its answers taken then, so the
/// listing waits for no round trip of its own. libssh2 keeps one open and one readdir in
/// flight per channel, so every other open first waits for the listing (`settle_ahead`).
struct Ahead {
    dir: String,
    /// The directory handle, once the server answered the opendir.
    handle: Option<ssh2::File>,
    entries: Vec<(String, FileStat)>,
    /// `None` while requests are on their way.
    outcome: Option<Result<(), OpError>>,
}

/// What a listing sent ahead found: the folder, and its entries (or why it could not be
/// listed).
pub type Listing = (String, Result<Vec<(String, FileStat)>, StepError>);

/// An open remote file.
pub struct RemoteFile {
    file: Option<ssh2::File>,
    orphans: Orphans,
    live: Arc<Live>,
    pub path: String,
}

impl Drop for RemoteFile {
    /// A file dropped without `close` (an error, a cancelled step) is closed by the step's
    /// `Remote` when it goes, or by a task of its own when the `Remote` went first: never by
    /// ssh2's destructor, which blocks.
    fn drop(&mut self) {
        let Some(f) = self.file.take() else {
            return;
        };
        let f = match lock(&self.orphans).as_mut() {
            Some(list) => {
                list.push(f);
                return;
            }
            None => f,
        };
        let live = self.live.clone();
        spawn_or_block(&self.live, async move {
            let _ = live.close_file(f).await;
        });
    }
}

impl Drop for Remote {
    /// Hands the SFTP channel to the next step with the files whose close is on its way (or
    /// that the step dropped unclosed), or, when a cancelled call left the channel half-way,
    /// closes those files and the channel in a task, as both talk to the server.
    fn drop(&mut self) {
        let mut orphans = lock(&self.orphans).take().unwrap_or_default();
        if let Some(a) = self.ahead.take() {
            // A listing still on its way holds libssh2's open or readdir state: the channel
            // cannot serve another step.
            if a.outcome.is_none() {
                self.poisoned = true;
            }
            orphans.extend(a.handle);
        }
        let reuse = !self.poisoned && self.live.dead_reason().is_none();
        let sftp = match self.sftp.take() {
            Some(s) if reuse => {
                lock(&self.live.idle_sftp).push(IdleSftp {
                    sftp: s,
                    pending: orphans,
                });
                return;
            }
            other => other,
        };
        if orphans.is_empty() && sftp.is_none() {
            return;
        }
        // The task counts as the step still running: the session's close waits for it.
        let active = self.active.take();
        let live = self.live.clone();
        spawn_or_block(&self.live, async move {
            let _active = active;
            for f in orphans {
                let _ = live.close_file(f).await;
            }
            if let Some(s) = sftp {
                live.close_sftp(s).await;
            }
        });
    }
}

/// Runs a clean-up on the runtime; with none (the process is ending), right here.
fn spawn_or_block(_live: &Live, fut: impl std::future::Future<Output = ()> + Send + 'static) {
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            rt.spawn(fut);
        }
        Err(_) => {
            // No runtime: nothing else runs on the session any more; drop what it holds
            // (ssh2's destructors, bounded by the session's blocking timeout).
            drop(fut);
        }
    }
}

impl Remote {
    pub fn new(live: Arc<Live>, ctl: Ctl) -> Remote {
        Remote {
            active: Some(ActiveOwned::new(live.clone())),
            live,
            ctl,
            sftp: None,
            poisoned: false,
            orphans: Arc::new(std::sync::Mutex::new(Some(Vec::new()))),
            ahead: None,
        }
    }

    /// Starts listing `dir` (names, with attributes not following symlinks) beside the step's
    /// next calls — a write, a close — instead of after them; `take_ahead` hands the entries
    /// over. Needs the SFTP channel open already; one listing at a time (a second is not
    /// started while one is held).
    pub async fn list_ahead(&mut self, dir: &str) {
        if self.ahead.is_some() || self.sftp.is_none() {
            return;
        }
        self.ahead = Some(Ahead {
            dir: dir.into(),
            handle: None,
            entries: Vec::new(),
            outcome: None,
        });
        self.advance_ahead(false).await;
    }

    /// Waits for the listing sent ahead, if one is on its way, and hands it over.
    pub async fn take_ahead(&mut self) -> Option<Listing> {
        self.advance_ahead(true).await;
        let a = self.ahead.take()?;
        let found = match a.outcome {
            Some(Ok(())) => Ok(a.entries),
            Some(Err(e)) => Err(self.err(&format!("cannot list {}", a.dir), e)),
            None => Err(StepError::Io(format!("cannot list {}", a.dir))),
        };
        Some((a.dir, found))
    }

    /// Before another open: lets the listing sent ahead finish (libssh2 has one open state
    /// per channel, shared with opendir). A listing cancelled half-way leaves that state
    /// taken: the step is cancelled too, and its channel not reused.
    async fn settle_ahead(&mut self) -> Result<(), StepError> {
        self.advance_ahead(true).await;
        match self.ahead.as_ref().map(|a| &a.outcome) {
            Some(Some(Err(OpError::Cancelled))) => {
                self.poisoned = true;
                Err(StepError::Cancelled)
            }
            _ => Ok(()),
        }
    }

    /// Takes the listing's answers that have come and sends its next request; with `wait`,
    /// until it is whole.
    async fn advance_ahead(&mut self, wait: bool) {
        if self.ahead.as_ref().is_none_or(|a| a.outcome.is_some()) {
            return;
        }
        match self.sftp.take() {
            Some(s) => {
                self.advance_on(&s, wait).await;
                self.sftp = Some(s);
            }
            None => {
                if let Some(a) = self.ahead.as_mut() {
                    a.outcome = Some(Err(OpError::Failed {
                        msg: "the SFTP channel is gone".into(),
                        not_found: false,
                    }));
                }
            }
        }
    }

    /// `advance_ahead` on the step's SFTP channel, taken out of the `Remote` by the caller.
    async fn advance_on(&mut self, sftp: &Sftp, wait: bool) {
        let live = self.live.clone();
        let ctl = self.ctl.clone();
        let Some(a) = self.ahead.as_mut() else {
            return;
        };
        let mode = if wait { Mode::Stream } else { Mode::Try };
        let mut done = None;
        while a.outcome.is_none() {
            let dir = Path::new(if a.dir.is_empty() { "." } else { &a.dir });
            match a.handle.as_mut() {
                None => match live
                    .run(&ctl, mode, || sftp.opendir(dir).map_err(E::from))
                    .await
                {
                    Ok(None) => break,
                    Ok(Some(h)) => a.handle = Some(h),
                    Err(e) => a.outcome = Some(Err(e)),
                },
                Some(h) => match live.run(&ctl, mode, || h.readdir().map_err(E::from)).await {
                    Ok(None) => break,
                    Ok(Some((name, st))) => {
                        let name = name.to_string_lossy().into_owned();
                        if name != "." && name != ".." {
                            a.entries.push((name, st));
                        }
                    }
                    // The end of the listing comes as an SFTP "EOF" status.
                    Err(OpError::Failed { .. }) => {
                        a.outcome = Some(Ok(()));
                        done = a.handle.take();
                    }
                    Err(e) => a.outcome = Some(Err(e)),
                },
            }
        }
        if let Some(h) = done {
            let dir = a.dir.clone();
            self.close_later(self.file(h, &dir)).await;
        }
    }

    fn file(&self, f: ssh2::File, path: &str) -> RemoteFile {
        RemoteFile {
            file: Some(f),
            orphans: self.orphans.clone(),
            live: self.live.clone(),
            path: path.to_string(),
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

    /// An idle SFTP channel of the session, if there is one. The closes earlier steps sent on
    /// it are looked at without waiting: those answered are done, the rest go on with this
    /// step (sent now, if a step dropped the file unclosed).
    async fn idle_sftp(&mut self) -> Option<Sftp> {
        let idle = lock(&self.live.idle_sftp).pop()?;
        let live = self.live.clone();
        for mut f in idle.pending {
            match live.attempt(|| f.close().map_err(E::from)).await {
                Ok(None) => {
                    if let Some(list) = lock(&self.orphans).as_mut() {
                        list.push(f);
                    }
                }
                Ok(Some(())) | Err(_) => live.release(f).await,
            }
        }
        Some(idle.sftp)
    }

    /// Lets go of a file that was only read: its close is sent now and its answer taken by
    /// the step's clean-up, off the step's way (nothing it says matters once every byte
    /// wanted has arrived).
    pub async fn close_later(&mut self, mut f: RemoteFile) {
        let Some(mut file) = f.file.take() else {
            return;
        };
        let live = self.live.clone();
        match live.attempt(|| file.close().map_err(E::from)).await {
            // On its way: the clean-up waits for the answer.
            Ok(None) => {
                if let Some(list) = lock(&self.orphans).as_mut() {
                    list.push(file);
                    return;
                }
                let _ = live.close_file(file).await;
            }
            Ok(Some(())) | Err(_) => live.release(file).await,
        }
    }

    /// Runs `f` with the step's SFTP channel (opened on first use), as a streaming call.
    async fn with_sftp<T, F>(&mut self, mut f: F) -> Result<Result<T, OpError>, StepError>
    where
        F: FnMut(&Sftp) -> Result<T, E> + Send,
    {
        // A listing sent ahead takes what has come for it and sends its next request, to
        // travel with this call's.
        self.advance_ahead(false).await;
        let s = match self.sftp.take() {
            Some(s) => s,
            None => {
                let idle = self.idle_sftp().await;
                match idle {
                    Some(s) => s,
                    None => {
                        let live = self.live.clone();
                        match live.open_sftp(&self.ctl).await {
                            Ok(s) => s,
                            Err(e) => {
                                return Err(self.err(
                                    "cannot start SFTP (does the host's sshd_config have a \
                                     working `Subsystem sftp`? `sftp` to it tells)",
                                    e,
                                ));
                            }
                        }
                    }
                }
            }
        };
        let live = self.live.clone();
        let r = live.stream(&self.ctl, || f(&s)).await;
        self.sftp = Some(s);
        Ok(r)
    }

    async fn call<T, F>(&mut self, what: impl FnOnce() -> String, f: F) -> Result<T, StepError>
    where
        F: FnMut(&Sftp) -> Result<T, E> + Send,
    {
        match self.with_sftp(f).await? {
            Ok(v) => Ok(v),
            Err(e) => Err(self.err(&what(), e)),
        }
    }

    /// `stat` (following symlinks); `None` when there is no such file.
    pub async fn stat(&mut self, path: &str) -> Result<Option<FileStat>, StepError> {
        self.stat_with(path, false).await
    }

    /// `lstat`: a symlink is described, not followed.
    pub async fn lstat(&mut self, path: &str) -> Result<Option<FileStat>, StepError> {
        self.stat_with(path, true).await
    }

    async fn stat_with(&mut self, path: &str, link: bool) -> Result<Option<FileStat>, StepError> {
        let r = self
            .with_sftp(|s| {
                if link {
                    s.lstat(Path::new(path))
                } else {
                    s.stat(Path::new(path))
                }
                .map_err(E::from)
            })
            .await?;
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
    pub async fn readdir(&mut self, dir: &str) -> Result<Vec<(String, FileStat)>, StepError> {
        self.settle_ahead().await?;
        let handle = self
            .call(
                || format!("cannot list {dir}"),
                |s| s.opendir(Path::new(dir)).map_err(E::from),
            )
            .await?;
        let mut handle = self.file(handle, dir);
        let mut out = Vec::new();
        let live = self.live.clone();
        while let Some(h) = handle.file.as_mut() {
            match live
                .stream(&self.ctl, || h.readdir().map_err(E::from))
                .await
            {
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
        // The listing is whole: its handle's close is not waited for.
        self.close_later(handle).await;
        Ok(out)
    }

    pub async fn mkdir(&mut self, path: &str, mode: i32) -> Result<(), StepError> {
        self.call(
            || format!("cannot create directory {path}"),
            |s| s.mkdir(Path::new(path), mode).map_err(E::from),
        )
        .await
    }

    pub async fn unlink(&mut self, path: &str) -> Result<(), StepError> {
        self.call(
            || format!("cannot remove {path}"),
            |s| s.unlink(Path::new(path)).map_err(E::from),
        )
        .await
    }

    /// Sets the permission bits.
    pub async fn chmod(&mut self, path: &str, mode: u32) -> Result<(), StepError> {
        let stat = mode_only(mode);
        self.call(
            || format!("cannot set the mode of {path}"),
            |s| s.setstat(Path::new(path), stat.clone()).map_err(E::from),
        )
        .await
    }

    /// SFTP rename: fails when `to` exists (OpenSSH speaks SFTP version 3).
    pub async fn rename(&mut self, from: &str, to: &str) -> Result<(), StepError> {
        self.call(
            || format!("cannot rename {from} to {to}"),
            |s| {
                s.rename(Path::new(from), Path::new(to), None)
                    .map_err(E::from)
            },
        )
        .await
    }

    pub async fn open_read(&mut self, path: &str) -> Result<RemoteFile, StepError> {
        self.settle_ahead().await?;
        let f = self
            .call(
                || format!("cannot open {path}"),
                |s| s.open(Path::new(path)).map_err(E::from),
            )
            .await?;
        Ok(self.file(f, path))
    }

    /// Creates a new file for writing, exclusively (SFTP `SSH_FXF_EXCL`, `O_CREAT|O_EXCL` on
    /// the server): anything already at `path` — a file, or a symlink, even a dangling one —
    /// makes it fail, so nothing is ever written through a link planted there.
    pub async fn create_new(&mut self, path: &str, mode: i32) -> Result<RemoteFile, StepError> {
        self.settle_ahead().await?;
        let f = self
            .call(
                || format!("cannot create {path}"),
                |s| {
                    s.open_mode(
                        Path::new(path),
                        OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::EXCLUSIVE,
                        mode,
                        OpenType::File,
                    )
                    .map_err(E::from)
                },
            )
            .await?;
        Ok(self.file(f, path))
    }

    /// Creates a new file (`create_new`) under the first of up to `tries` names from `name`
    /// that nothing has yet: a name that is taken (the server refuses it and `lstat` finds
    /// something there) is passed over; any other failure is the step's.
    pub async fn create_unique(
        &mut self,
        tries: usize,
        mode: i32,
        mut name: impl FnMut() -> Result<String, StepError> + Send,
    ) -> Result<RemoteFile, StepError> {
        let mut taken = Vec::new();
        for _ in 0..tries {
            let path = name()?;
            match self.create_new(&path, mode).await {
                Ok(f) => return Ok(f),
                Err(StepError::Io(msg)) => {
                    if self.lstat(&path).await?.is_none() {
                        return Err(StepError::Io(msg));
                    }
                    taken.push(path);
                }
                Err(e) => return Err(e),
            }
        }
        Err(StepError::Io(format!(
            "cannot create a temporary file: {} names were taken already ({})",
            taken.len(),
            taken.join(", ")
        )))
    }

    /// The canonical path of `path` on the server (symlinks resolved); `None` when it does not
    /// resolve (no such file, a dangling link).
    pub async fn realpath(&mut self, path: &str) -> Result<Option<String>, StepError> {
        let r = self
            .with_sftp(|s| s.realpath(Path::new(path)).map_err(E::from))
            .await?;
        match r {
            Ok(p) => Ok(Some(p.to_string_lossy().into_owned())),
            Err(OpError::Failed { .. }) => Ok(None),
            Err(e) => Err(self.err(&format!("cannot resolve {path}"), e)),
        }
    }

    /// Moves an open file's offset (no round trip: the next read asks from there).
    pub fn seek(&mut self, f: &mut RemoteFile, pos: u64) -> Result<(), StepError> {
        use std::io::Seek;
        if let Some(file) = f.file.as_mut() {
            file.seek(std::io::SeekFrom::Start(pos))
                .map_err(|e| StepError::Io(format!("cannot seek in {}: {e}", f.path)))?;
        }
        Ok(())
    }

    /// Reads into `buf`; 0 at the end of the file.
    pub async fn read(&mut self, f: &mut RemoteFile, buf: &mut [u8]) -> Result<usize, StepError> {
        let Some(file) = f.file.as_mut() else {
            return Ok(0);
        };
        let live = self.live.clone();
        match live
            .stream(&self.ctl, || file.read(buf).map_err(E::from))
            .await
        {
            Ok(n) => Ok(n),
            Err(e) => Err(self.err(&format!("cannot read {}", f.path), e)),
        }
    }

    pub async fn write_all(
        &mut self,
        f: &mut RemoteFile,
        mut data: &[u8],
    ) -> Result<(), StepError> {
        let Some(file) = f.file.as_mut() else {
            return Err(StepError::Io(format!("{} is closed", f.path)));
        };
        let live = self.live.clone();
        self.advance_ahead(false).await;
        while !data.is_empty() {
            let n = match live
                .stream(&self.ctl, || file.write(data).map_err(E::from))
                .await
            {
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
        self.advance_ahead(false).await;
        Ok(())
    }

    /// Closes a file (the server confirms; for a written file, that all data arrived).
    pub async fn close(&mut self, mut f: RemoteFile) -> Result<(), StepError> {
        let Some(file) = f.file.take() else {
            return Ok(());
        };
        let live = self.live.clone();
        live.close_file(file)
            .await
            .map_err(|e| self.err(&format!("cannot close {}", f.path), e))
    }

    /// Finishes a written file in two round trips instead of three: its mode set on the open
    /// handle (`fsetstat`: a path could have been swapped for a link meanwhile), then the
    /// handle closed (the server confirms all data arrived) and, with `to`, the file renamed
    /// there — those two requests sent back to back and their answers taken in order
    /// (OpenSSH's server handles a channel's requests one after another). The mode's answer
    /// is taken before the close goes: a close answered at once (a near server) would leave
    /// it where ssh2 can no longer take it.
    pub async fn finish_write(
        &mut self,
        mut f: RemoteFile,
        mode: u32,
        to: Option<&str>,
    ) -> Finished {
        let path = f.path.clone();
        self.advance_ahead(false).await;
        let (Some(mut file), Some(sftp)) = (f.file.take(), self.sftp.take()) else {
            let closed = Err(StepError::Io(format!("{path} is closed")));
            return Finished {
                mode: closed,
                close: Ok(()),
                renamed: None,
            };
        };
        let live = self.live.clone();
        let stat = mode_only(mode);
        let set = live
            .stream(&self.ctl, || file.setstat(stat.clone()).map_err(E::from))
            .await;
        // A listing sent ahead sends its next request beside the close.
        self.advance_on(&sftp, false).await;
        // Send the close (`attempt` returns once it is on its way, or answered), then the
        // rename behind it.
        let mut close = match set {
            Ok(()) => Some(live.attempt(|| file.close().map_err(E::from)).await),
            Err(_) => None,
        };
        let mut ren = match (&close, to) {
            (Some(Ok(_)), Some(to)) => Some(
                live.attempt(|| {
                    sftp.rename(Path::new(&path), Path::new(to), None)
                        .map_err(E::from)
                })
                .await,
            ),
            _ => None,
        };
        // Take the answers, in the order they come.
        if let Some(Ok(None)) = close {
            close = Some(
                live.stream(&self.ctl, || file.close().map_err(E::from))
                    .await
                    .map(Some),
            );
        }
        if let (Some(Ok(None)), Some(to)) = (&ren, to) {
            ren = Some(
                live.stream(&self.ctl, || {
                    sftp.rename(Path::new(&path), Path::new(to), None)
                        .map_err(E::from)
                })
                .await
                .map(Some),
            );
        }
        let close = match close {
            Some(r) => r.map(|_| ()),
            // The mode could not be asked for: close the file on its own.
            None => live.close_file_ref(&mut file).await,
        };
        self.live.release(file).await;
        self.sftp = Some(sftp);
        let mode = set.map_err(|e| self.err(&format!("cannot set the mode of {path}"), e));
        let close = close.map_err(|e| self.err(&format!("cannot close {path}"), e));
        Finished {
            mode,
            close,
            renamed: ren.map(|r| r.is_ok()),
        }
    }

    /// A command over the same session (e.g. `sha256sum`, `mv`).
    pub async fn exec(&mut self, command: &str, limit: usize) -> Result<ExecOutput, StepError> {
        let live = self.live.clone();
        match live.exec(&self.ctl, command, None, limit).await {
            Ok(out) => Ok(out),
            Err(e) => Err(self.err("remote command", e)),
        }
    }
}
/// What `Remote::finish_write` did: the mode, the close, and whether the file was renamed
/// (`None`: not asked, or not sent because the mode or the close already failed).
pub struct Finished {
    pub mode: Result<(), StepError>,
    pub close: Result<(), StepError>,
    pub renamed: Option<bool>,
}

/// Attributes that set the permission bits and nothing else.
fn mode_only(mode: u32) -> FileStat {
    FileStat {
        size: None,
        uid: None,
        gid: None,
        perm: Some(mode),
        atime: None,
        mtime: None,
    }
}
