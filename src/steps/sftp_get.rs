//! The `sftp_get` kind: remote files (a path, a glob — in any path component — or a directory
//! with `recursive`) fetched from the host over its SSH session (`conn::Remote`) into a local
//! folder that differs per host (relative to the playbook's folder). Each file is written as
//! `NAME.part`, and renamed to `NAME` only when the size the server reported at the start has
//! fully arrived — an interrupted or failed transfer never leaves a file under its final name
//! (its `.part` is removed). The local file gets the remote mtime, so a later run skips files
//! of the same size and mtime. Names come from the server: each must be a plain name (no `/`,
//! `..`, `.`), and no local folder on the way may be a symlink, so nothing is ever written
//! outside `dest`; remote symlinks to files are fetched as files, to folders not followed.
//! Results: `files` [{`path`, `local`, `bytes`, `sha256`, `changed`}], `bytes` (fetched),
//! `changed`.

// `StepError` (the engine's type) carries a whole `Diagnostic`; boxing it is the engine's call.
#![allow(clippy::result_large_err)]

use std::path::{Component, Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::json;
use sha2::Digest;

use super::sftp_put::{CHUNK, has_glob, join_remote};
use super::{CheckCx, Kind, RunsOn, StepError, StepOutput};
use crate::conn::{FileStat, Remote};
use crate::diag::Diagnostic;
use crate::expect::ExpectFields;
use crate::units::ByteSize;

/// Download files from the host over SFTP.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SftpGet {
    /// Remote path or glob (`/var/log/app/*.log`), or a directory with `recursive: true`.
    pub src: String,
    /// Local directory, different for every host (e.g. `logs/{{ host.name }}/`).
    pub dest: String,
    /// Fetch directories recursively.
    #[serde(default)]
    pub recursive: bool,
    /// Refuse (fail) files larger than this (`100MiB`).
    pub max_size: Option<ByteSize>,
}

impl Kind for SftpGet {
    fn run<'a>(&'a self, cx: &'a super::TaskCx<'a>) -> super::StepFuture<'a> {
        Box::pin(run_get(self, cx))
    }

    const NAME: &'static str = "sftp_get";
    const SUMMARY: &'static str =
        "Download files from the host over SFTP into a per-host folder, atomically.";
    const RUNS_ON: RunsOn = RunsOn::Host;
    const NAME_FIELDS: &'static [&'static str] = &["src", "dest"];
    const EXPECT: ExpectFields = ExpectFields {
        plain: &["files", "bytes", "changed"],
        keyed: &[],
    };
    const DEFAULT_EXPECT: &'static str = "";

    fn check(&self, cx: &CheckCx<'_>, out: &mut Vec<Diagnostic>) {
        let per_host = self.dest.contains("host") || self.dest.contains("item");
        if !cx.run_once && !per_host {
            out.push(
                Diagnostic::error("`sftp_get` dest is the same for every host")
                    .at(cx.args.get("dest").map(|n| n.span).unwrap_or(cx.kind_span))
                    .label("hosts would overwrite each other's files here")
                    .help("make it differ per host, e.g. `dest: \"logs/{{ host.name }}/\"`"),
            );
        }
        if self.src.trim().is_empty() {
            out.push(
                Diagnostic::error("empty `src`")
                    .at(cx.args.get("src").map(|n| n.span).unwrap_or(cx.kind_span))
                    .label("which remote files?")
                    .help("give a remote path or glob such as `/var/log/app/*.log`"),
            );
        }
    }
}

/// One remote file to fetch.
struct Wanted {
    remote: String,
    /// Relative local name under `dest` (checked: plain names joined by `/`).
    rel: String,
    size: u64,
    mtime: u64,
}

impl Wanted {
    /// The file at `remote`, fetched to `rel`, as `st` describes it.
    fn of(remote: String, rel: String, st: &FileStat) -> Wanted {
        Wanted {
            remote,
            rel,
            size: st.size.unwrap_or(0),
            mtime: st.mtime.unwrap_or(0),
        }
    }
}

/// Why a remote name may not become a local one; `None` when it is a plain relative path.
pub(crate) fn unsafe_name(rel: &str) -> Option<String> {
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

/// Makes the folders of `rel` under `dest`, refusing any that is (or would go through) a
/// symlink; returns the file's local path.
fn local_target(dest: &Path, rel: &str) -> Result<PathBuf, StepError> {
    if let Some(why) = unsafe_name(rel) {
        return Err(StepError::Protocol(format!(
            "refusing remote name {why}: it would write outside `{}`",
            dest.display()
        )));
    }
    let parts: Vec<&str> = rel.split('/').collect();
    let mut at = dest.to_path_buf();
    for dir in &parts[..parts.len() - 1] {
        at.push(dir);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(StepError::Protocol(format!(
                    "refusing to write through {}: it is a symlink (it could lead outside `{}`)",
                    at.display(),
                    dest.display()
                )));
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(StepError::Io(format!(
                    "{} exists and is not a directory",
                    at.display()
                )));
            }
            Err(_) => std::fs::create_dir(&at)
                .map_err(|e| StepError::Io(format!("cannot create {}: {e}", at.display())))?,
        }
    }
    at.push(parts[parts.len() - 1]);
    if std::fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(StepError::Protocol(format!(
            "refusing to replace {}: it is a symlink",
            at.display()
        )));
    }
    Ok(at)
}

fn stat_kind(st: &FileStat) -> u32 {
    st.perm.unwrap_or(0) & 0o170000
}
const S_IFLNK: u32 = 0o120000;
const S_IFREG: u32 = 0o100000;
const S_IFDIR: u32 = 0o040000;

/// The remote files `src` names: a file, a directory (with `recursive`) or a glob.
fn expand(
    r: &mut Remote,
    src: &str,
    recursive: bool,
    warnings: &mut Vec<String>,
) -> Result<Vec<Wanted>, StepError> {
    if has_glob(src) {
        expand_glob(r, src, recursive, warnings)
    } else {
        expand_path(r, src, recursive, warnings)
    }
}

/// A path without glob characters: the file, or the directory's tree with `recursive`.
fn expand_path(
    r: &mut Remote,
    src: &str,
    recursive: bool,
    warnings: &mut Vec<String>,
) -> Result<Vec<Wanted>, StepError> {
    let st = r
        .stat(src)?
        .ok_or_else(|| StepError::Io(format!("{src}: no such file on the host")))?;
    if !st.is_dir() {
        return Ok(vec![Wanted::of(src.to_string(), last_name(src), &st)]);
    }
    if !recursive {
        return Err(StepError::Io(format!(
            "{src} is a directory: set `recursive: true` to fetch it"
        )));
    }
    // `dir/` fetches its contents, `dir` the folder itself (as rsync and cp do).
    let prefix = if src.ends_with('/') {
        String::new()
    } else {
        last_name(src)
    };
    let mut out = Vec::new();
    walk(r, src.trim_end_matches('/'), &prefix, &mut out, warnings, 0)?;
    Ok(out)
}

/// How glob components match names: case matters, `*` never crosses `/` nor matches a
/// leading dot.
const GLOB_OPTIONS: glob::MatchOptions = glob::MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: true,
};

/// A glob, walked one component at a time from its last literal folder: folders that match a
/// middle component are listed next; matches of the last one are taken (`take_match`).
fn expand_glob(
    r: &mut Remote,
    src: &str,
    recursive: bool,
    warnings: &mut Vec<String>,
) -> Result<Vec<Wanted>, StepError> {
    let absolute = src.starts_with('/');
    let parts: Vec<&str> = src.split('/').filter(|p| !p.is_empty()).collect();
    let first_glob = parts
        .iter()
        .position(|p| has_glob(p))
        .unwrap_or(parts.len());
    let base = {
        let b = parts[..first_glob].join("/");
        if absolute { format!("/{b}") } else { b }
    };
    let mut out = Vec::new();
    // (remote path, relative name)
    let mut level: Vec<(String, String)> = vec![(base, String::new())];
    for (k, part) in parts.iter().enumerate().skip(first_glob) {
        let last = k == parts.len() - 1;
        let pattern = glob::Pattern::new(part)
            .map_err(|e| StepError::Io(format!("bad glob `{src}`: {e}")))?;
        let mut next = Vec::new();
        for (dir, rel) in &level {
            for (name, st) in matching(r, dir, &pattern)? {
                let path = join_remote(dir, &name);
                let rel = if rel.is_empty() {
                    name.clone()
                } else {
                    format!("{rel}/{name}")
                };
                let st = if stat_kind(&st) == S_IFLNK {
                    r.stat(&path)?.unwrap_or(st)
                } else {
                    st
                };
                if last {
                    take_match(r, path, rel, &st, recursive, &mut out, warnings)?;
                } else if stat_kind(&st) == S_IFDIR {
                    next.push((path, rel));
                }
            }
        }
        level = next;
    }
    if out.is_empty() {
        warnings.push(format!("`{src}` matched no file on the host"));
    }
    Ok(out)
}

/// The entries of `dir` whose names match `pattern`, sorted by name. A folder that vanished
/// or cannot be read matches nothing.
fn matching(
    r: &mut Remote,
    dir: &str,
    pattern: &glob::Pattern,
) -> Result<Vec<(String, FileStat)>, StepError> {
    let listing = if dir.is_empty() { "." } else { dir };
    let entries = match r.readdir(listing) {
        Ok(e) => e,
        Err(StepError::Io(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names: Vec<(String, FileStat)> = entries
        .into_iter()
        .filter(|(n, _)| pattern.matches_with(n, GLOB_OPTIONS))
        .collect();
    names.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(names)
}

/// A match of the glob's last component (`st` with symlinks followed): a file is wanted, a
/// folder walked with `recursive`, else skipped with a warning.
fn take_match(
    r: &mut Remote,
    path: String,
    rel: String,
    st: &FileStat,
    recursive: bool,
    out: &mut Vec<Wanted>,
    warnings: &mut Vec<String>,
) -> Result<(), StepError> {
    match stat_kind(st) {
        S_IFREG => out.push(Wanted::of(path, rel, st)),
        S_IFDIR if recursive => walk(r, &path, &rel, out, warnings, 0)?,
        S_IFDIR => warnings.push(format!(
            "{path} is a directory: skipped (set `recursive: true` to fetch it)"
        )),
        _ => {}
    }
    Ok(())
}

/// The last component of a remote path.
fn last_name(p: &str) -> String {
    p.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(p)
        .to_string()
}

fn walk(
    r: &mut Remote,
    dir: &str,
    rel: &str,
    out: &mut Vec<Wanted>,
    warnings: &mut Vec<String>,
    depth: usize,
) -> Result<(), StepError> {
    if depth > 64 {
        return Err(StepError::Io(format!(
            "{dir}: folders nested more than 64 deep"
        )));
    }
    let mut entries = r.readdir(dir)?;
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, st) in entries {
        let path = join_remote(dir, &name);
        let sub = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        match stat_kind(&st) {
            S_IFREG => out.push(Wanted::of(path, sub, &st)),
            S_IFDIR => walk(r, &path, &sub, out, warnings, depth + 1)?,
            S_IFLNK => match r.stat(&path)? {
                Some(t) if stat_kind(&t) == S_IFREG => out.push(Wanted::of(path, sub, &t)),
                Some(t) if stat_kind(&t) == S_IFDIR => {
                    warnings.push(format!("{path} is a symlink to a folder: not followed"))
                }
                _ => {}
            },
            _ => {}
        }
    }
    Ok(())
}

/// Whether the local file already is the remote one: same size, same mtime (seconds).
fn unchanged(local: &Path, w: &Wanted) -> bool {
    let Ok(m) = std::fs::symlink_metadata(local) else {
        return false;
    };
    let mtime = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs());
    m.is_file() && m.len() == w.size && mtime == Some(w.mtime)
}

/// The `NAME.part` beside a local file.
fn part_path(local: &Path) -> PathBuf {
    let mut name = local
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".part");
    local.with_file_name(name)
}

/// Fetches one file into `NAME.part`, checks its size, sets its mtime, renames it. Returns
/// its SHA-256.
fn fetch(r: &mut Remote, w: &Wanted, local: &Path) -> Result<String, StepError> {
    use std::io::Write;
    let part = part_path(local);
    let result = (|| -> Result<String, StepError> {
        let mut rf = r.open_read(&w.remote)?;
        let mut lf = std::fs::File::create(&part)
            .map_err(|e| StepError::Io(format!("cannot create {}: {e}", part.display())))?;
        let mut h = sha2::Sha256::new();
        let mut buf = vec![0u8; CHUNK];
        let mut got = 0u64;
        // The size at listing time is what we take: a log still being written is fetched as it
        // was then, and its mtime tells the next run to fetch it again.
        while got < w.size {
            let want = (w.size - got).min(buf.len() as u64) as usize;
            let n = r.read(&mut rf, &mut buf[..want])?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            lf.write_all(&buf[..n])
                .map_err(|e| StepError::Io(format!("cannot write {}: {e}", part.display())))?;
            got += n as u64;
        }
        r.close(rf)?;
        if got != w.size {
            return Err(StepError::Io(format!(
                "{}: got {got} bytes of {} (the file shrank on the host)",
                w.remote, w.size
            )));
        }
        lf.set_modified(UNIX_EPOCH + Duration::from_secs(w.mtime))
            .map_err(|e| {
                StepError::Io(format!("cannot set the mtime of {}: {e}", part.display()))
            })?;
        drop(lf);
        std::fs::rename(&part, local).map_err(|e| {
            StepError::Io(format!(
                "cannot rename {} to {}: {e}",
                part.display(),
                local.display()
            ))
        })?;
        Ok(hex::encode(h.finalize()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    result
}

async fn run_get(spec: &SftpGet, cx: &super::TaskCx<'_>) -> Result<StepOutput, StepError> {
    let dest = if Path::new(&spec.dest).is_absolute() {
        PathBuf::from(&spec.dest)
    } else {
        cx.dir.join(&spec.dest)
    };
    let src = spec.src.clone();
    let recursive = spec.recursive;
    let max = spec.max_size.map(|m| m.0);
    cx.conn
        .remote(move |r| {
            let mut warnings = Vec::new();
            let wanted = expand(r, &src, recursive, &mut warnings)?;
            std::fs::create_dir_all(&dest)
                .map_err(|e| StepError::Io(format!("cannot create {}: {e}", dest.display())))?;
            let mut files = Vec::new();
            let mut fetched = 0u64;
            let mut changed_any = false;
            let mut refused = Vec::new();
            for w in &wanted {
                if let Some(m) = max
                    && w.size > m
                {
                    refused.push(format!(
                        "{} is {} bytes, over max_size ({m} bytes)",
                        w.remote, w.size
                    ));
                    continue;
                }
                let local = local_target(&dest, &w.rel)?;
                let (sha256, changed) = if unchanged(&local, w) {
                    let (_, sha) = super::sftp_put::sha256_file(&local).map_err(|e| {
                        StepError::Io(format!("cannot read {}: {e}", local.display()))
                    })?;
                    (sha, false)
                } else {
                    let sha = fetch(r, w, &local)?;
                    fetched += w.size;
                    (sha, true)
                };
                changed_any |= changed;
                files.push(json!({
                    "path": w.remote,
                    "local": local.display().to_string(),
                    "bytes": w.size,
                    "sha256": sha256,
                    "changed": changed,
                }));
            }
            let mut out = StepOutput {
                changed: changed_any,
                warnings,
                ..Default::default()
            }
            .with("files", files)
            .with("bytes", fetched)
            .with("changed", changed_any);
            if !refused.is_empty() {
                out.failure = Some(refused.join("; "));
            }
            Ok(out)
        })
        .await
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
    fn local_targets_never_go_through_symlinks() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("dest");
        let outside = d.path().join("outside");
        std::fs::create_dir_all(&dest).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, dest.join("sub")).unwrap();
        assert!(local_target(&dest, "sub/x.log").is_err());
        assert!(local_target(&dest, "../outside/x.log").is_err());
        let ok = local_target(&dest, "new/dir/x.log").unwrap();
        assert_eq!(ok, dest.join("new/dir/x.log"));
        assert!(dest.join("new/dir").is_dir());
        std::os::unix::fs::symlink(outside.join("f"), dest.join("link.log")).unwrap();
        assert!(local_target(&dest, "link.log").is_err());
    }

    #[test]
    fn part_names() {
        assert_eq!(
            part_path(Path::new("/d/app.log")),
            PathBuf::from("/d/app.log.part")
        );
    }
}
