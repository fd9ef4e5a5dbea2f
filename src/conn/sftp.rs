//! SFTP for one step (`Remote`, with its open files `RemoteFile`), over the host's `Live`
//! session (`session.rs`). `HostConn::remote` (`mod.rs`) makes one on a blocking thread for
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
use std::sync::atomic::Ordering;

use ssh2::{FileStat, OpenFlags, OpenType, Sftp};

use super::command::ExecOutput;

/// Bytes one SFTP write call hands libssh2: it sends them all as 32 KiB requests before it
/// waits for the first answer, so this is what a transfer keeps in flight (OpenSSH's sftp:
/// 64 × 32 KiB). Over a 50 ms link a 64 KiB buffer made a 1 MiB upload cost 16 round trips.
pub const WRITE_IN_FLIGHT: usize = 1 << 20;
/// Bytes one SFTP read call asks for: libssh2 reads ahead four times that (1 MiB in flight).
pub const READ_BUFFER: usize = 256 << 10;
use super::session::{Ctl, E, Live, OpError, lock};
use crate::error::StepError;

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
        let stat = mode_only(mode);
        self.call(
            || format!("cannot set the mode of {path}"),
            |s| s.setstat(Path::new(path), stat.clone()).map_err(E::from),
        )
    }

    /// Sets the permission bits of an open file (on its handle: whatever its path names now).
    pub fn fchmod(&mut self, f: &mut RemoteFile, mode: u32) -> Result<(), StepError> {
        let Some(file) = f.file.as_mut() else {
            return Err(StepError::Io(format!("{} is closed", f.path)));
        };
        let stat = mode_only(mode);
        let live = self.live.clone();
        match live.stream(&self.ctl, || file.setstat(stat.clone()).map_err(E::from)) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.err(&format!("cannot set the mode of {}", f.path), e)),
        }
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

    /// Creates a new file for writing, exclusively (SFTP `SSH_FXF_EXCL`, `O_CREAT|O_EXCL` on
    /// the server): anything already at `path` — a file, or a symlink, even a dangling one —
    /// makes it fail, so nothing is ever written through a link planted there.
    pub fn create_new(&mut self, path: &str, mode: i32) -> Result<RemoteFile, StepError> {
        let f = self.call(
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
        )?;
        Ok(RemoteFile {
            file: Some(f),
            live: self.live.clone(),
            path: path.to_string(),
        })
    }

    /// Creates a new file (`create_new`) under the first of up to `tries` names from `name`
    /// that nothing has yet: a name that is taken (the server refuses it and `lstat` finds
    /// something there) is passed over; any other failure is the step's.
    pub fn create_unique(
        &mut self,
        tries: usize,
        mode: i32,
        mut name: impl FnMut() -> Result<String, StepError>,
    ) -> Result<RemoteFile, StepError> {
        let mut taken = Vec::new();
        for _ in 0..tries {
            let path = name()?;
            match self.create_new(&path, mode) {
                Ok(f) => return Ok(f),
                Err(StepError::Io(msg)) => {
                    if self.lstat(&path)?.is_none() {
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
    pub fn realpath(&mut self, path: &str) -> Result<Option<String>, StepError> {
        let r = self.with_sftp(|s| s.realpath(Path::new(path)).map_err(E::from))?;
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
