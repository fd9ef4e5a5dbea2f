//! The local side of `sftp_put`: the files a `src` names on the runner (a file, a directory's
//! tree, a glob's matches; relative to the playbook's directory), each with the name it gets
//! under the destination, and SHA-256 of local files and bytes. Used by the run (`mod.rs`) to
//! plan the uploads, and by `sftp_get` (`has_glob`). A source file is read and hashed once per
//! run and version of the file (`shared_source`, `crate::file_version`), not once per host:
//! every host of a run uploads the same file, and a thousand hosts read and hashed it a
//! thousand times; a small one's bytes are kept and sent by every host's upload.

// `StepError` (the engine's type) carries a whole `Diagnostic`; boxing it is the engine's call.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use sha2::Digest;

use crate::file_version::FileVersion;

use super::CHUNK;
use crate::error::StepError;

/// Whether a path has glob characters.
pub(in crate::steps) fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// SHA-256 of bytes, in hex.
pub(super) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(data))
}

/// SHA-256 of a local file, and its size.
fn sha256_file(path: &Path) -> std::io::Result<(u64, String)> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((n, hex::encode(h.finalize())))
}

/// Sources up to this size are kept in memory once read, and every host's upload sends those
/// bytes (no copy, no read of its own).
const SHARED_MAX: u64 = 8 << 20;
/// The most bytes kept so for the whole run; larger or later sources are hashed once and
/// read from the file by each upload.
const SHARED_TOTAL: u64 = 64 << 20;

/// A local source as planned for upload: its size, SHA-256, and its bytes when they are kept
/// in memory (small sources).
#[derive(Clone)]
pub(super) struct Source {
    pub size: u64,
    pub sha256: String,
    pub bytes: Option<Arc<[u8]>>,
}

/// The size, SHA-256 and (when small) bytes of a local source, read once per run for each
/// version of the file: the hosts that ask at once wait for the first one's read. A file
/// that changes while it is read is read again by the next host, and not kept.
pub(super) fn shared_source(path: &Path) -> std::io::Result<Source> {
    type Cells = HashMap<FileVersion, Arc<OnceLock<Option<Source>>>>;
    static CELLS: OnceLock<Mutex<Cells>> = OnceLock::new();
    static KEPT: AtomicU64 = AtomicU64::new(0);
    let key = FileVersion::of(path)?;
    let cell = CELLS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(key.clone())
        .or_default()
        .clone();
    let read = cell.get_or_init(|| {
        let size = key.size();
        let keep =
            size <= SHARED_MAX && KEPT.fetch_add(size, Ordering::SeqCst) + size <= SHARED_TOTAL;
        let source = read_source(path, keep).ok()?;
        (source.size == size && key.current()).then_some(source)
    });
    match read {
        Some(source) => Ok(source.clone()),
        None => read_source(path, false),
    }
}

/// Reads a local source: its bytes kept (`keep`) or only hashed.
fn read_source(path: &Path, keep: bool) -> std::io::Result<Source> {
    if !keep {
        let (size, sha256) = sha256_file(path)?;
        return Ok(Source {
            size,
            sha256,
            bytes: None,
        });
    }
    let bytes = std::fs::read(path)?;
    Ok(Source {
        size: bytes.len() as u64,
        sha256: sha256_hex(&bytes),
        bytes: Some(Arc::from(bytes)),
    })
}

/// The local files of `src`: (path, name relative to the destination folder). A directory
/// brings its tree (under its own name, or its contents when `src` ends with `/`); a glob its
/// matches.
pub(super) fn local_sources(
    dir: &Path,
    src: &str,
) -> Result<(Vec<(PathBuf, String)>, bool), StepError> {
    let full = if Path::new(src).is_absolute() {
        PathBuf::from(src)
    } else {
        dir.join(src)
    };
    let mut out = Vec::new();
    if has_glob(src) {
        let pattern = full.to_string_lossy().to_string();
        let paths =
            glob::glob(&pattern).map_err(|e| StepError::Io(format!("bad glob `{src}`: {e}")))?;
        for p in paths {
            let p =
                p.map_err(|e| StepError::Io(format!("cannot read {}: {e}", e.path().display())))?;
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            if p.is_dir() {
                walk_local(&p, &name, &mut out)?;
            } else {
                out.push((p, name));
            }
        }
        if out.is_empty() {
            return Err(StepError::Io(format!(
                "`{src}` matches no file (in {})",
                dir.display()
            )));
        }
        return Ok((out, true));
    }
    let meta = std::fs::metadata(&full)
        .map_err(|e| StepError::Io(format!("cannot read `{src}` ({}): {e}", full.display())))?;
    if meta.is_dir() {
        let prefix = if src.ends_with('/') {
            String::new()
        } else {
            full.file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default()
        };
        walk_local(&full, &prefix, &mut out)?;
        return Ok((out, true));
    }
    let name = full
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    out.push((full, name));
    Ok((out, false))
}

/// Adds the files under `dir` (sorted by name, recursively) with names under `prefix`.
fn walk_local(dir: &Path, prefix: &str, out: &mut Vec<(PathBuf, String)>) -> Result<(), StepError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| StepError::Io(format!("cannot list {}: {e}", dir.display())))?
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().to_string();
        let rel = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let path = e.path();
        if path.is_dir() {
            walk_local(&path, &rel, out)?;
        } else if path.is_file() {
            out.push((path, rel));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_sources_dir_glob_and_file() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("site/css")).unwrap();
        std::fs::write(d.path().join("site/index.html"), "i").unwrap();
        std::fs::write(d.path().join("site/css/a.css"), "a").unwrap();
        std::fs::write(d.path().join("one.txt"), "1").unwrap();
        let (f, many) = local_sources(d.path(), "site").unwrap();
        assert!(many);
        let names: Vec<&str> = f.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(names, vec!["site/css/a.css", "site/index.html"]);
        let (f, _) = local_sources(d.path(), "site/").unwrap();
        assert_eq!(f[0].1, "css/a.css");
        let (f, many) = local_sources(d.path(), "*.txt").unwrap();
        assert!(many);
        assert_eq!(f[0].1, "one.txt");
        let (f, many) = local_sources(d.path(), "one.txt").unwrap();
        assert!(!many);
        assert_eq!(f[0].1, "one.txt");
        assert!(local_sources(d.path(), "*.none").is_err());
        assert!(local_sources(d.path(), "missing").is_err());
    }

    #[test]
    fn a_source_is_read_once_per_version_and_its_bytes_shared() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("blob");
        std::fs::write(&f, "first").unwrap();
        let a = shared_source(&f).unwrap();
        let b = shared_source(&f).unwrap();
        assert_eq!(a.size, 5);
        assert_eq!(a.sha256, sha256_hex(b"first"));
        let (Some(x), Some(y)) = (&a.bytes, &b.bytes) else {
            panic!("a small source keeps its bytes")
        };
        assert!(
            Arc::ptr_eq(x, y),
            "the second host got the first one's bytes"
        );
        // A new version is read again.
        std::fs::write(&f, "the second").unwrap();
        let c = shared_source(&f).unwrap();
        assert_eq!(c.sha256, sha256_hex(b"the second"));
        assert_eq!(c.bytes.as_deref(), Some(&b"the second"[..]));
        assert!(shared_source(&d.path().join("missing")).is_err());
    }
}
