//! What identifies one version of a local file (`FileVersion`), for what a run reads once and
//! shares between its hosts while the file stays the same: `sftp_put`'s sources
//! (`steps/sftp_put/local.rs`) and the known_hosts files every connection checks
//! (`conn/known_hosts.rs`). A rewrite, an append, a `touch` or a `chmod` makes a new version —
//! except a rewrite to the same size within one tick of the kernel's file clock (a few ms),
//! which `make` and `rsync` would miss as well.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Path, device and inode, size, and mtime and ctime to the nanosecond.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FileVersion {
    path: PathBuf,
    id: [i64; 7],
}

impl FileVersion {
    /// The version of `path` now (following links).
    pub fn of(path: &Path) -> std::io::Result<FileVersion> {
        Ok(FileVersion::from_metadata(path, &std::fs::metadata(path)?))
    }

    fn from_metadata(path: &Path, m: &std::fs::Metadata) -> FileVersion {
        FileVersion {
            path: path.to_path_buf(),
            id: [
                m.dev() as i64,
                m.ino() as i64,
                m.size() as i64,
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec(),
            ],
        }
    }

    /// The file's size in bytes.
    pub fn size(&self) -> u64 {
        self.id[2] as u64
    }

    /// Whether the file is still this version.
    pub fn current(&self) -> bool {
        FileVersion::of(&self.path).is_ok_and(|v| v == *self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewrite_or_an_append_is_a_new_version() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("a");
        std::fs::write(&f, "one").unwrap();
        let v = FileVersion::of(&f).unwrap();
        assert_eq!(v.size(), 3);
        assert!(v.current());
        assert_eq!(FileVersion::of(&f).unwrap(), v);
        std::fs::write(&f, "three").unwrap();
        let w = FileVersion::of(&f).unwrap();
        assert!(!v.current());
        assert_ne!(v, w);
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(&f)
            .unwrap()
            .write_all(b"!")
            .unwrap();
        assert!(!w.current());
        assert!(FileVersion::of(&d.path().join("missing")).is_err());
    }
}
