//! The local side of `sftp_get`: where each fetched file goes under `dest`, reached without
//! ever going through a link. `dest` itself is the user's: it is created when missing and
//! opened as named, links and all (`collected -> /data/collected` is theirs to make). Under it,
//! everything goes through directory descriptors: each folder on a file's way is entered with
//! `O_NOFOLLOW|O_DIRECTORY` from the one before (created first when missing), so a folder that
//! is — or is swapped for — a symlink is refused, never followed, and the final rename
//! (`renameat`) happens in the folder that was checked. A temporary file is created there
//! under a new random name (`temp_name`) with `O_CREAT|O_EXCL|O_NOFOLLOW` — never opened
//! through anything planted at that name —, locked (`flock`) while it is written, so another
//! run never takes it for an abandoned one, and renamed onto the file's name when complete. A
//! symlink at the file's own name is refused, not replaced.

// `StepError` (the engine's type) carries a whole `Diagnostic`; boxing it is the engine's call.
#![allow(clippy::result_large_err)]

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use rustix::fs::{AtFlags, FileType, FlockOperation, Mode, OFlags, Stat};
use rustix::io::Errno;
use sha2::Digest;

use crate::error::StepError;
use crate::steps::sftp_put::CHUNK;
use crate::steps::temp_name::get_temp;

/// Names tried for a new temporary before giving up (each is random).
const TEMP_TRIES: usize = 8;

/// Why a remote name may not become a local one; `None` when it is a plain relative path.
pub(super) fn unsafe_name(rel: &str) -> Option<String> {
    if rel.is_empty() {
        return Some("an empty name".into());
    }
    if rel.starts_with('/') || Path::new(rel).is_absolute() {
        return Some(format!("`{rel}` is absolute"));
    }
    if rel.contains('\0') {
        return Some(format!("`{}` holds a NUL byte", rel.escape_debug()));
    }
    for part in rel.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Some(format!("`{rel}` has a `{part}` component"));
        }
    }
    if Path::new(rel)
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Some(format!("`{rel}` is not a plain relative path"));
    }
    None
}

fn io(what: impl std::fmt::Display, e: impl Into<std::io::Error>) -> StepError {
    StepError::Io(format!("{what}: {}", e.into()))
}

/// An open local folder, and its path (for messages and results).
pub(super) struct Folder {
    fd: OwnedFd,
    pub path: PathBuf,
}

/// `dest`, created when missing and opened as the user named it.
pub(super) fn open_dest(dest: &Path) -> Result<Folder, StepError> {
    std::fs::create_dir_all(dest)
        .map_err(|e| io(format!("cannot create {}", dest.display()), e))?;
    let fd = rustix::fs::open(
        dest,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io(format!("cannot open {}", dest.display()), e))?;
    Ok(Folder {
        fd,
        path: dest.to_path_buf(),
    })
}

impl Folder {
    /// The folder `name` inside this one, created when missing, entered only when it is a
    /// real folder.
    fn enter(&self, name: &str, dest: &Path) -> Result<Folder, StepError> {
        let path = self.path.join(name);
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let open = || rustix::fs::openat(&self.fd, name, flags, Mode::empty());
        let fd = match open() {
            Err(Errno::NOENT) => {
                match rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o777)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(io(format!("cannot create {}", path.display()), e)),
                }
                open()
            }
            r => r,
        };
        // With `O_DIRECTORY`, Linux says ENOTDIR rather than ELOOP for a link.
        let is_link = || {
            rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink)
        };
        match fd {
            Ok(fd) => Ok(Folder { fd, path }),
            Err(Errno::LOOP) | Err(Errno::NOTDIR) if is_link() => {
                Err(StepError::Protocol(format!(
                    "refusing to write through {}: it is a symlink (it could lead outside `{}`)",
                    path.display(),
                    dest.display()
                )))
            }
            Err(Errno::NOTDIR) => Err(StepError::Io(format!(
                "{} exists and is not a directory",
                path.display()
            ))),
            Err(e) => Err(io(format!("cannot open {}", path.display()), e)),
        }
    }

    /// Where the file `rel` (plain names joined by `/`) goes: its folders entered (and
    /// created) one by one from here, never through a symlink.
    pub(super) fn place(&self, rel: &str) -> Result<Place, StepError> {
        if let Some(why) = unsafe_name(rel) {
            return Err(StepError::Protocol(format!(
                "refusing remote name {why}: it would write outside `{}`",
                self.path.display()
            )));
        }
        let parts: Vec<&str> = rel.split('/').collect();
        let mut dir: Option<Folder> = None;
        for name in &parts[..parts.len() - 1] {
            let next = dir.as_ref().unwrap_or(self).enter(name, &self.path)?;
            dir = Some(next);
        }
        let dir = match dir {
            Some(d) => d,
            None => Folder {
                fd: self
                    .fd
                    .try_clone()
                    .map_err(|e| io(format!("cannot open {}", self.path.display()), e))?,
                path: self.path.clone(),
            },
        };
        let name = parts[parts.len() - 1].to_string();
        let place = Place {
            path: dir.path.join(&name),
            dir,
            name,
        };
        if place
            .lstat()
            .is_some_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink)
        {
            return Err(StepError::Protocol(format!(
                "refusing to replace {}: it is a symlink",
                place.path.display()
            )));
        }
        Ok(place)
    }
}

/// A file's place: its (open) folder and its name there.
pub(super) struct Place {
    pub dir: Folder,
    pub name: String,
    pub path: PathBuf,
}

/// A temporary file being written, locked, under its name in the place's folder.
pub(super) struct Temp {
    pub file: std::fs::File,
    pub name: String,
    ino: u64,
}

impl Temp {
    /// A temporary opened by `open_leftover` or created here, with its inode.
    pub(super) fn new(file: std::fs::File, name: String, st: &Stat) -> Temp {
        Temp {
            file,
            name,
            ino: st.st_ino,
        }
    }
}

/// Whether `flock` took the lock (`false`: another process holds it).
pub(super) fn try_lock(fd: impl AsFd) -> Result<bool, Errno> {
    match rustix::fs::flock(fd, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(Errno::WOULDBLOCK) => Ok(false),
        Err(e) => Err(e),
    }
}

impl Place {
    /// What is at `name` in the folder (a link described, not followed).
    pub(super) fn lstat(&self) -> Option<Stat> {
        self.lstat_of(&self.name)
    }

    pub(super) fn lstat_of(&self, name: &str) -> Option<Stat> {
        rustix::fs::statat(&self.dir.fd, name, AtFlags::SYMLINK_NOFOLLOW).ok()
    }

    /// Whether the local file already is the remote one: a regular file of the same size and
    /// mtime (seconds).
    pub(super) fn unchanged(&self, size: u64, mtime: u64) -> bool {
        self.lstat().is_some_and(|st| {
            FileType::from_raw_mode(st.st_mode) == FileType::RegularFile
                && st.st_size as u64 == size
                && st.st_mtime as u64 == mtime
        })
    }

    /// Opens a file of this folder for reading or writing, never through a link, never
    /// blocking (on a FIFO planted there).
    pub(super) fn open_at(&self, name: &str, flags: OFlags) -> Result<std::fs::File, Errno> {
        let flags = flags | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
        rustix::fs::openat(&self.dir.fd, name, flags, Mode::empty()).map(std::fs::File::from)
    }

    /// SHA-256 of the file at the place.
    pub(super) fn sha256(&self) -> Result<String, StepError> {
        use std::io::Read;
        let what = || format!("cannot read {}", self.path.display());
        let mut f = self
            .open_at(&self.name, OFlags::RDONLY)
            .map_err(|e| io(what(), e))?;
        let mut h = sha2::Sha256::new();
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = f.read(&mut buf).map_err(|e| io(what(), e))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(hex::encode(h.finalize()))
    }

    /// A new temporary beside the file, under a random name (download key `key`), created
    /// exclusively and locked.
    pub(super) fn create_temp(&self, key: &str) -> Result<Temp, StepError> {
        let flags = OFlags::WRONLY
            | OFlags::CREATE
            | OFlags::EXCL
            | OFlags::NOFOLLOW
            | OFlags::CLOEXEC
            | OFlags::NOCTTY;
        for _ in 0..TEMP_TRIES {
            let name = get_temp(&self.name, key)?;
            let what = || format!("cannot create {}", self.dir.path.join(&name).display());
            match rustix::fs::openat(
                &self.dir.fd,
                name.as_str(),
                flags,
                Mode::from_raw_mode(0o666),
            ) {
                Ok(fd) => {
                    let st = rustix::fs::fstat(&fd).map_err(|e| io(what(), e))?;
                    try_lock(&fd).map_err(|e| io(what(), e))?;
                    return Ok(Temp::new(std::fs::File::from(fd), name, &st));
                }
                Err(Errno::EXIST) => continue,
                Err(e) => return Err(io(what(), e)),
            }
        }
        Err(StepError::Io(format!(
            "cannot create a temporary file in {}: {TEMP_TRIES} random names were taken",
            self.dir.path.display()
        )))
    }

    /// Gives the complete temporary the remote mtime and renames it onto the file's name, in
    /// the folder checked.
    pub(super) fn commit(&self, t: &Temp, mtime: u64) -> Result<(), StepError> {
        let tmp = self.dir.path.join(&t.name);
        t.file
            .set_modified(UNIX_EPOCH + Duration::from_secs(mtime))
            .map_err(|e| io(format!("cannot set the mtime of {}", tmp.display()), e))?;
        rustix::fs::renameat(
            &self.dir.fd,
            t.name.as_str(),
            &self.dir.fd,
            self.name.as_str(),
        )
        .map_err(|e| {
            io(
                format!("cannot rename {} to {}", tmp.display(), self.path.display()),
                e,
            )
        })
    }

    /// Removes a temporary of ours — only if its name still holds the same file.
    pub(super) fn discard(&self, t: &Temp) {
        self.remove_if(&t.name, t.ino);
    }

    /// Removes `name` when it is the file `ino` (never whatever was swapped in meanwhile).
    pub(super) fn remove_if(&self, name: &str, ino: u64) {
        if self.lstat_of(name).is_some_and(|st| st.st_ino == ino) {
            let _ = rustix::fs::unlinkat(&self.dir.fd, name, AtFlags::empty());
        }
    }

    /// The names in the folder, as they are (for finding leftovers).
    pub(super) fn names(&self) -> Vec<String> {
        let Ok(dir) = rustix::fs::Dir::read_from(&self.dir.fd) else {
            return Vec::new();
        };
        dir.filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str().ok().map(str::to_string))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_would_leave_dest_are_refused() {
        assert!(unsafe_name("app.log").is_none());
        assert!(unsafe_name("a/b/c.log").is_none());
        assert!(unsafe_name("..").is_some());
        assert!(unsafe_name("../x").is_some());
        assert!(unsafe_name("a/../../x").is_some());
        assert!(unsafe_name("/etc/passwd").is_some());
        assert!(unsafe_name("a//b").is_some());
        assert!(unsafe_name("./a").is_some());
        assert!(unsafe_name("").is_some());
    }

    #[test]
    fn places_never_go_through_symlinks() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("dest");
        let outside = d.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        let top = open_dest(&dest).unwrap();
        std::os::unix::fs::symlink(&outside, dest.join("sub")).unwrap();
        let refused = top.place("sub/x.log").err().map(|e| e.to_string());
        assert!(
            refused.as_deref().unwrap_or("").contains("symlink"),
            "{refused:?}"
        );
        assert!(top.place("../outside/x.log").is_err());
        let ok = top.place("new/dir/x.log").unwrap();
        assert_eq!(ok.path, dest.join("new/dir/x.log"));
        assert!(dest.join("new/dir").is_dir());
        std::os::unix::fs::symlink(outside.join("f"), dest.join("link.log")).unwrap();
        assert!(top.place("link.log").is_err());
        std::fs::write(dest.join("file"), "x").unwrap();
        assert!(top.place("file/x.log").is_err());
    }

    #[test]
    fn temporaries_are_new_files_renamed_in_the_folder_checked() {
        use std::io::Write;
        let d = tempfile::tempdir().unwrap();
        let top = open_dest(d.path()).unwrap();
        let place = top.place("a/app.log").unwrap();
        let mut t = place.create_temp("0123abcd").unwrap();
        assert!(
            t.name.starts_with(".app.log.sortie-0123abcd-"),
            "{}",
            t.name
        );
        let other = place.create_temp("0123abcd").unwrap();
        assert_ne!(t.name, other.name);
        // A second lock on a temporary being written is refused.
        let again = place.open_at(&t.name, OFlags::RDONLY).unwrap();
        assert!(!try_lock(&again).unwrap());
        t.file.write_all(b"hello").unwrap();
        place.commit(&t, 1_000_000).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("a/app.log")).unwrap(),
            "hello"
        );
        assert!(place.unchanged(5, 1_000_000));
        place.discard(&other);
        assert_eq!(std::fs::read_dir(d.path().join("a")).unwrap().count(), 1);
        // Swapping the folder for a link after it was checked leads the rename nowhere else.
        let place = top.place("b/x.log").unwrap();
        let t = place.create_temp("0123abcd").unwrap();
        std::fs::rename(d.path().join("b"), d.path().join("b-real")).unwrap();
        let elsewhere = d.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, d.path().join("b")).unwrap();
        place.commit(&t, 0).unwrap();
        assert!(d.path().join("b-real/x.log").is_file());
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    }
}
