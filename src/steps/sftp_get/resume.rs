//! Resuming a download that an earlier run of the same step did not finish (killed, or the
//! machine went down: a failure sortie sees removes its temporary). Its temporary is
//! `.NAME.sortie-KEY-RAND.part` beside the file, KEY naming the host and remote path
//! (`temp_name`), so the leftover is found by name without being predictable. A leftover is
//! taken only when the listing and the opened file agree that it is a regular file (opened with
//! `O_NOFOLLOW`, never a link), with one link, owned by us, and nobody holds its lock (a run
//! still writing it does); others of the same download are removed (the same checks), anything
//! else with such a name is left alone. Its prefix — cut to whole `CHUNK`s, at most the remote
//! size — must then be the remote file's: the SHA-256 of the local prefix is compared with
//! the remote file's same range, hashed on the host (`dd | sha256sum`, no bytes cross the
//! network), or where the host runs no commands read back over SFTP. Only a prefix that
//! matches is kept and the download goes on from its end; otherwise it starts from zero.
//! Never a blind append.

// `StepError` (the engine's type) carries a whole `Diagnostic`; boxing it is the engine's call.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use rustix::fs::{FileType, OFlags};
use sha2::Digest;

use super::expand::Wanted;
use super::local::{Place, Temp, try_lock};
use crate::conn::{Remote, RemoteFile};
use crate::error::StepError;
use crate::steps::sftp_put::CHUNK;
use crate::steps::temp_name::is_get_temp;

/// How a download starts: into this temporary, at this offset, with the hash of what it holds
/// so far, and (when the prefix was read back over SFTP) the remote file open at the offset.
pub(super) struct Start {
    pub temp: Temp,
    pub at: u64,
    pub hash: sha2::Sha256,
    pub remote: Option<RemoteFile>,
}

/// The names in each local folder that look like downloads' temporaries, listed once per
/// step (the first time a file goes there), not once per file.
#[derive(Default)]
pub(super) struct Seen(HashMap<PathBuf, Vec<String>>);

impl Seen {
    fn temporaries(&mut self, place: &Place) -> &[String] {
        self.0.entry(place.dir.path.clone()).or_insert_with(|| {
            place
                .names()
                .into_iter()
                .filter(|n| n.starts_with('.') && n.contains(".sortie-") && n.ends_with(".part"))
                .collect()
        })
    }
}

/// The start of the download `w` to `place`: a verified leftover of an earlier run, or a new
/// temporary.
pub(super) async fn start(
    r: &mut Remote,
    w: &Wanted,
    place: &Place,
    key: &str,
    seen: &mut Seen,
) -> Result<Start, StepError> {
    if let Some(mut t) = leftover(place, key, seen) {
        match verify(r, w, &mut t).await? {
            Some((at, hash, remote)) => {
                return Ok(Start {
                    temp: t,
                    at,
                    hash,
                    remote,
                });
            }
            None => place.discard(&t),
        }
    }
    Ok(Start {
        temp: place.create_temp(key)?,
        at: 0,
        hash: sha2::Sha256::new(),
        remote: None,
    })
}

/// The longest usable leftover of this download; the others are removed.
fn leftover(place: &Place, key: &str, seen: &mut Seen) -> Option<Temp> {
    let mut found: Vec<(Temp, u64)> = seen
        .temporaries(place)
        .iter()
        .filter(|n| is_get_temp(n, &place.name, key))
        .filter_map(|n| open_leftover(place, n.clone()))
        .collect();
    found.sort_by_key(|(_, len)| std::cmp::Reverse(*len));
    let mut found = found.into_iter();
    let best = found.next();
    for (t, _) in found {
        place.discard(&t);
    }
    best.map(|(t, _)| t)
}

/// A leftover opened for resuming, with its length, if it passes the checks.
fn open_leftover(place: &Place, name: String) -> Option<(Temp, u64)> {
    let listed = place.lstat_of(&name)?;
    if FileType::from_raw_mode(listed.st_mode) != FileType::RegularFile {
        return None;
    }
    let file = place.open_at(&name, OFlags::RDWR).ok()?;
    let st = rustix::fs::fstat(&file).ok()?;
    let ours = st.st_uid == rustix::process::geteuid().as_raw();
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile
        || st.st_ino != listed.st_ino
        || st.st_dev != listed.st_dev
        || st.st_nlink != 1
        || !ours
        || !try_lock(&file).ok()?
    {
        return None;
    }
    Some((Temp::new(file, name, &st), st.st_size as u64))
}

/// What a verified leftover brings: the offset to go on from, the hash so far, the remote
/// file when it was opened to read the prefix back.
type Verified = (u64, sha2::Sha256, Option<RemoteFile>);

/// Whether the leftover's prefix is the remote file's: then it is cut to that prefix, and
/// the download goes on from its end.
async fn verify(r: &mut Remote, w: &Wanted, t: &mut Temp) -> Result<Option<Verified>, StepError> {
    let len = t.file.metadata().map(|m| m.len()).unwrap_or(0);
    if len > w.size {
        return Ok(None);
    }
    let at = len - len % CHUNK as u64;
    if at == 0 {
        return Ok(None);
    }
    let Ok(hash) = local_prefix(t, at) else {
        return Ok(None);
    };
    let local = hex::encode(hash.clone().finalize());
    let (remote, handle) = match hashed_on_host(r, &w.open, at).await? {
        Some(h) => (h, None),
        None => {
            let (h, f) = read_back(r, &w.open, at).await?;
            (h, Some(f))
        }
    };
    if remote != local {
        if let Some(f) = handle {
            r.close(f).await?;
        }
        return Ok(None);
    }
    let cut = t
        .file
        .set_len(at)
        .and_then(|()| t.file.seek(SeekFrom::Start(at)));
    if cut.is_err() {
        return Ok(None);
    }
    Ok(Some((at, hash, handle)))
}

/// The SHA-256 state of the first `len` bytes of the leftover.
fn local_prefix(t: &mut Temp, len: u64) -> std::io::Result<sha2::Sha256> {
    t.file.seek(SeekFrom::Start(0))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut left = len;
    while left > 0 {
        let want = left.min(CHUNK as u64) as usize;
        t.file.read_exact(&mut buf[..want])?;
        h.update(&buf[..want]);
        left -= want as u64;
    }
    Ok(h)
}

/// SHA-256 of the remote file's first `len` bytes (a multiple of `CHUNK`), computed on the
/// host; `None` when the host cannot (no commands, no `dd` or `sha256sum`).
async fn hashed_on_host(r: &mut Remote, path: &str, len: u64) -> Result<Option<String>, StepError> {
    let quoted = crate::template::shell_quote(path)
        .map_err(|e| StepError::Protocol(format!("cannot quote `{path}` for the shell: {e}")))?;
    let cmd = format!(
        "dd if={quoted} bs={CHUNK} count={} 2>/dev/null | sha256sum",
        len / CHUNK as u64
    );
    let out = match r.exec(&cmd, 4096).await {
        Ok(o) => o,
        Err(StepError::Io(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let hash = text
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    // An empty input's hash means `dd` read nothing (missing, or refused).
    let empty = hex::encode(sha2::Sha256::digest(b""));
    let valid = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit());
    Ok((out.rc == 0 && valid && hash != empty).then_some(hash))
}

/// SHA-256 of the remote file's first `len` bytes read over SFTP, and the file left open there.
async fn read_back(
    r: &mut Remote,
    path: &str,
    len: u64,
) -> Result<(String, RemoteFile), StepError> {
    let mut f = r.open_read(path).await?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; crate::conn::READ_BUFFER];
    let mut got = 0u64;
    while got < len {
        let want = (len - got).min(buf.len() as u64) as usize;
        let n = r.read(&mut f, &mut buf[..want]).await?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        got += n as u64;
    }
    Ok((hex::encode(h.finalize()), f))
}
