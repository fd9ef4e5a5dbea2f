//! The `sftp_put` kind: files from the runner (a file, a directory, a glob — relative to the
//! playbook's folder —, inline `content` or a per-host `template`) written to the host over the
//! host's SSH session (`conn::Remote`), atomically: each file goes to a temporary name in its
//! folder, then is renamed into place (SFTP rename for new files; `mv -f`, i.e. rename(2), over
//! the same session for files that exist, since OpenSSH's SFTP rename refuses to replace one).
//! A file whose remote size and SHA-256 already match is not sent: same-size candidates are
//! hashed on the host with one `sha256sum` per step (reading them back over SFTP when the host
//! has no `sha256sum`). Results: `files` [{`path`, `bytes`, `sha256`, `changed`}], `bytes`
//! (sent), `changed`.

// `StepError` (the engine's type) carries a whole `Diagnostic`; boxing it is the engine's call.
#![allow(clippy::result_large_err)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::json;
use sha2::Digest;

use super::{CheckCx, Kind, RunsOn, StepError, StepOutput};
use crate::conn::{FileStat, Remote};
use crate::diag::Diagnostic;
use crate::expect::ExpectFields;

/// Upload files to the host over SFTP.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SftpPut {
    /// Local source: a file, a directory (copied recursively) or a glob, relative to the
    /// playbook's directory.
    pub src: Option<String>,
    /// Inline text to write instead of a file.
    pub content: Option<String>,
    /// A local file rendered as a minijinja template for each host, then written.
    pub template: Option<String>,
    /// Remote destination. Ending in `/` (or with several sources) it is a directory.
    pub dest: String,
    /// Permissions of written files, in octal (`"0644"`).
    pub mode: Option<Mode>,
    /// Create missing remote directories.
    #[serde(default)]
    pub mkdir: bool,
}

/// File permissions written in octal: `"0644"`, `0755`, `"644"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[schemars(with = "String")]
pub struct Mode(pub u32);

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let crate::yaml::RawNode(n) = crate::yaml::RawNode::deserialize(d)?;
        let text = n.as_str().unwrap_or("").trim().to_string();
        if crate::yaml::lenient_template(&text) {
            return Ok(Mode(0o644));
        }
        let digits = text.strip_prefix("0o").unwrap_or(&text);
        match u32::from_str_radix(digits, 8) {
            Ok(m) if m <= 0o7777 && !digits.is_empty() => Ok(Mode(m)),
            _ => Err(serde::de::Error::custom(crate::yaml::carry(
                crate::yaml::DeError {
                    message: format!("`{text}` is not a file mode"),
                    span: Some(n.span),
                    label: "expected octal permissions such as \"0644\"".into(),
                    help: Some(
                        "quote the mode so YAML keeps it as written: `mode: \"0644\"`".into(),
                    ),
                },
            ))),
        }
    }
}

impl Kind for SftpPut {
    fn run<'a>(&'a self, cx: &'a super::TaskCx<'a>) -> super::StepFuture<'a> {
        Box::pin(run_put(self, cx))
    }

    const NAME: &'static str = "sftp_put";
    const SUMMARY: &'static str =
        "Upload files to the host over SFTP, atomically, skipping unchanged ones.";
    const RUNS_ON: RunsOn = RunsOn::Host;
    const EXPECT: ExpectFields = ExpectFields {
        plain: &["files", "bytes", "changed"],
        keyed: &[],
    };
    const DEFAULT_EXPECT: &'static str = "";

    fn check(&self, cx: &CheckCx<'_>, out: &mut Vec<Diagnostic>) {
        let given: Vec<&str> = [
            ("src", self.src.is_some()),
            ("content", self.content.is_some()),
            ("template", self.template.is_some()),
        ]
        .iter()
        .filter(|(_, g)| *g)
        .map(|(n, _)| *n)
        .collect();
        if given.len() != 1 {
            let span = given
                .get(1)
                .and_then(|k| cx.args.get(k))
                .map(|n| n.span)
                .unwrap_or(cx.kind_span);
            let title = if given.is_empty() {
                "`sftp_put` needs something to upload".to_string()
            } else {
                format!(
                    "`sftp_put` takes one of `src`, `content`, `template`, not {}",
                    given
                        .iter()
                        .map(|g| format!("`{g}`"))
                        .collect::<Vec<_>>()
                        .join(" and ")
                )
            };
            out.push(
                Diagnostic::error(title)
                    .at(span)
                    .label(if given.is_empty() { "no `src`, `content` or `template`" } else { "second source" })
                    .help("give exactly one of `src` (file, directory or glob), `content` (inline text) or `template` (rendered per host)"),
            );
        }
        if self.content.is_some() && self.dest.ends_with('/') {
            out.push(
                Diagnostic::error("`content` needs a file name in `dest`")
                    .at(cx.args.get("dest").map(|n| n.span).unwrap_or(cx.kind_span))
                    .label("this is a directory")
                    .help("name the file to write, e.g. `dest: /etc/app/app.conf`"),
            );
        }
        if self.dest.trim().is_empty() {
            out.push(
                Diagnostic::error("empty `dest`")
                    .at(cx.args.get("dest").map(|n| n.span).unwrap_or(cx.kind_span))
                    .label("where should the file go?")
                    .help("give a remote path; end it with `/` for a directory"),
            );
        }
    }
}

/// Bytes written to or read from the server in one SFTP call.
pub(super) const CHUNK: usize = 64 * 1024;
/// Paths given to one `sha256sum` or `mv` command (well under any argument limit).
const PER_COMMAND: usize = 200;

/// What one file to upload holds.
enum Body {
    File(PathBuf),
    Bytes(Vec<u8>),
}

struct Upload {
    body: Body,
    /// Where it goes on the host.
    remote: String,
    size: u64,
    sha256: String,
}

/// Whether a path has glob characters.
pub(super) fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// `dir/name` for remote paths (`/` only).
pub(super) fn join_remote(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// The folder part of a remote path (`""` for a bare name).
pub(super) fn remote_parent(p: &str) -> &str {
    match p.trim_end_matches('/').rfind('/') {
        Some(0) => "/",
        Some(i) => &p[..i],
        None => "",
    }
}

pub(super) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(data))
}

/// SHA-256 of a local file, and its size.
pub(super) fn sha256_file(path: &Path) -> std::io::Result<(u64, String)> {
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

pub(super) fn quote(s: &str) -> Result<String, StepError> {
    crate::template::shell_quote(s)
        .map_err(|e| StepError::Protocol(format!("cannot quote `{s}` for the shell: {e}")))
}

/// The local files of `src`: (path, name relative to the destination folder). A directory
/// brings its tree (under its own name, or its contents when `src` ends with `/`); a glob its
/// matches.
fn local_sources(dir: &Path, src: &str) -> Result<(Vec<(PathBuf, String)>, bool), StepError> {
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

async fn run_put(spec: &SftpPut, cx: &super::TaskCx<'_>) -> Result<StepOutput, StepError> {
    // Inline bodies are made here (templates need the context); files are read on the
    // transfer's blocking thread.
    let inline: Option<(Vec<u8>, String)> = if let Some(c) = &spec.content {
        Some((c.clone().into_bytes(), String::new()))
    } else if let Some(t) = &spec.template {
        let path = if Path::new(t).is_absolute() {
            PathBuf::from(t)
        } else {
            cx.dir.join(t)
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| StepError::Io(format!("cannot read template {}: {e}", path.display())))?;
        let file = crate::diag::register_source(path.display().to_string(), text.as_str());
        let place = crate::template::Place {
            span: crate::diag::Span::point(file, 1, 1),
            style: crate::yaml::Style::Plain,
        };
        let mut body = crate::template::templates()
            .render(&text, place, cx.ctx)
            .map_err(StepError::Template)?;
        // Jinja drops a template's last newline; a config file keeps it.
        if text.ends_with('\n') && !body.ends_with('\n') {
            body.push('\n');
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let name = name
            .strip_suffix(".j2")
            .or_else(|| name.strip_suffix(".jinja"))
            .unwrap_or(&name)
            .to_string();
        Some((body.into_bytes(), name))
    } else {
        None
    };
    let src = spec.src.clone();
    let dest = spec.dest.clone();
    let dir = cx.dir.to_path_buf();
    let mode = spec.mode.map(|m| m.0);
    let mkdir = spec.mkdir;
    let max_output = cx.limits.max_output;
    cx.conn
        .remote(move |r| {
            let mut uploads = Vec::new();
            match (inline, src) {
                (Some((bytes, name)), _) => {
                    let into_dir = dest.ends_with('/') || r.stat(&dest)?.is_some_and(|st| st.is_dir());
                    let remote = match (into_dir, name.is_empty()) {
                        (false, _) => dest.clone(),
                        (true, false) => join_remote(&dest, &name),
                        (true, true) => {
                            return Err(StepError::Io(format!(
                                "{dest} is a directory on the host: `content` needs a file name in `dest`"
                            )));
                        }
                    };
                    uploads.push(Upload {
                        size: bytes.len() as u64,
                        sha256: sha256_hex(&bytes),
                        body: Body::Bytes(bytes),
                        remote,
                    });
                }
                (None, Some(src)) => {
                    let (files, many) = local_sources(&dir, &src)?;
                    let into_dir =
                        many || dest.ends_with('/') || r.stat(&dest)?.is_some_and(|st| st.is_dir());
                    for (path, rel) in files {
                        let (size, sha256) = sha256_file(&path).map_err(|e| {
                            StepError::Io(format!("cannot read {}: {e}", path.display()))
                        })?;
                        let remote = if into_dir {
                            join_remote(&dest, &rel)
                        } else {
                            dest.clone()
                        };
                        uploads.push(Upload {
                            body: Body::File(path),
                            remote,
                            size,
                            sha256,
                        });
                    }
                }
                (None, None) => return Err(StepError::Protocol("nothing to upload".into())),
            }
            put_all(r, uploads, mode, mkdir, &dest, max_output)
        })
        .await
}

/// The state of one destination on the host before the upload.
struct Before {
    stat: Option<FileStat>,
    same: bool,
}

fn put_all(
    r: &mut Remote,
    uploads: Vec<Upload>,
    mode: Option<u32>,
    mkdir: bool,
    dest: &str,
    max_output: usize,
) -> Result<StepOutput, StepError> {
    // What is there already.
    let mut before = Vec::with_capacity(uploads.len());
    for u in &uploads {
        let stat = r.stat(&u.remote)?;
        if stat.as_ref().is_some_and(|s| s.is_dir()) {
            return Err(StepError::Io(format!(
                "{} is a directory on the host",
                u.remote
            )));
        }
        before.push(Before { stat, same: false });
    }
    let candidates: Vec<usize> = (0..uploads.len())
        .filter(|&i| {
            before[i]
                .stat
                .as_ref()
                .is_some_and(|s| s.size == Some(uploads[i].size))
        })
        .collect();
    let sums = remote_sha256(
        r,
        &candidates
            .iter()
            .map(|&i| uploads[i].remote.clone())
            .collect::<Vec<_>>(),
        max_output,
    )?;
    for (k, &i) in candidates.iter().enumerate() {
        before[i].same = sums[k].as_deref() == Some(uploads[i].sha256.as_str());
    }

    let mut files = Vec::new();
    let mut sent = 0u64;
    let mut changed_any = false;
    let mut known_dirs: HashSet<String> = HashSet::new();
    // (temporary, final) pairs whose final name exists: renamed together with `mv -f`.
    let mut replace: Vec<(String, String)> = Vec::new();
    let mut temps: Vec<String> = Vec::new();
    let mut warnings = Vec::new();
    let result = (|| -> Result<(), StepError> {
        for (i, u) in uploads.iter().enumerate() {
            let b = &before[i];
            let old_mode = b.stat.as_ref().and_then(|s| s.perm).map(|p| p & 0o7777);
            if b.same {
                let mut changed = false;
                if let Some(m) = mode
                    && old_mode != Some(m)
                {
                    r.chmod(&u.remote, m)?;
                    changed = true;
                }
                changed_any |= changed;
                files.push(json!({"path": u.remote, "bytes": u.size, "sha256": u.sha256, "changed": changed}));
                continue;
            }
            let parent = remote_parent(&u.remote).to_string();
            ensure_dir(r, &parent, mkdir, dest, &mut known_dirs)?;
            let name = u.remote.rsplit('/').next().unwrap_or(&u.remote);
            let tmp = join_remote(
                &parent,
                &format!(".{name}.sortie-{}-{i}.tmp", std::process::id()),
            );
            temps.push(tmp.clone());
            let file_mode = mode.or(old_mode).unwrap_or(0o644);
            let mut f = r.create(&tmp, file_mode as i32)?;
            match &u.body {
                Body::Bytes(b) => {
                    for c in b.chunks(CHUNK) {
                        r.write_all(&mut f, c)?;
                    }
                }
                Body::File(p) => {
                    use std::io::Read;
                    let mut lf = std::fs::File::open(p)
                        .map_err(|e| StepError::Io(format!("cannot read {}: {e}", p.display())))?;
                    let mut buf = vec![0u8; CHUNK];
                    let mut n = 0u64;
                    loop {
                        let k = lf.read(&mut buf).map_err(|e| {
                            StepError::Io(format!("cannot read {}: {e}", p.display()))
                        })?;
                        if k == 0 {
                            break;
                        }
                        r.write_all(&mut f, &buf[..k])?;
                        n += k as u64;
                    }
                    if n != u.size {
                        return Err(StepError::Io(format!(
                            "{} changed while it was being sent",
                            p.display()
                        )));
                    }
                }
            }
            r.close(f)?;
            // The server's umask applied at creation; the mode asked for is exact.
            r.chmod(&tmp, file_mode)?;
            if b.stat.is_some() {
                replace.push((tmp.clone(), u.remote.clone()));
            } else if r.rename(&tmp, &u.remote).is_err() {
                // Created meanwhile by someone else: replace it like an existing file.
                replace.push((tmp.clone(), u.remote.clone()));
            } else {
                temps.retain(|t| t != &tmp);
            }
            sent += u.size;
            changed_any = true;
            files.push(
                json!({"path": u.remote, "bytes": u.size, "sha256": u.sha256, "changed": true}),
            );
        }
        for batch in replace.chunks(PER_COMMAND) {
            let mut cmd = String::new();
            for (tmp, fin) in batch {
                if !cmd.is_empty() {
                    cmd.push_str(" && ");
                }
                cmd.push_str(&format!("mv -f -- {} {}", quote(tmp)?, quote(fin)?));
            }
            let out = match r.exec(&cmd, max_output) {
                Ok(o) => Some(o),
                // A login without commands (SFTP only): fall back below.
                Err(StepError::Io(_)) => None,
                Err(e) => return Err(e),
            };
            match out {
                Some(o) if o.rc == 0 => {}
                Some(o) if o.rc != 126 && o.rc != 127 => {
                    return Err(StepError::Io(format!(
                        "cannot rename the uploaded files into place (`mv -f` rc {}): {}",
                        o.rc,
                        String::from_utf8_lossy(&o.stderr).trim()
                    )));
                }
                _ => {
                    // No shell or no `mv`: remove, then rename. Not atomic — say so.
                    for (tmp, fin) in batch {
                        r.unlink(fin)?;
                        r.rename(tmp, fin)?;
                    }
                    warnings.push(
                        "the host runs no commands: existing files were removed, then replaced \
                         (not atomically)"
                            .to_string(),
                    );
                }
            }
            for (tmp, _) in batch {
                temps.retain(|t| t != tmp);
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        // Nothing half-written stays behind under a final name; temporaries go too.
        for t in &temps {
            if matches!(e, StepError::Connect { .. }) {
                break;
            }
            let _ = r.unlink(t);
        }
        return Err(e);
    }
    Ok(StepOutput {
        changed: changed_any,
        warnings,
        ..Default::default()
    }
    .with("files", files)
    .with("bytes", sent)
    .with("changed", changed_any))
}

/// Makes sure a remote folder exists: created (with its parents) when `mkdir` is set or when
/// it is inside `dest` (a copied tree's subfolders).
fn ensure_dir(
    r: &mut Remote,
    dir: &str,
    mkdir: bool,
    dest: &str,
    known: &mut HashSet<String>,
) -> Result<(), StepError> {
    if dir.is_empty() || dir == "/" || known.contains(dir) {
        return Ok(());
    }
    match r.stat(dir)? {
        Some(st) if st.is_dir() => {
            known.insert(dir.to_string());
            return Ok(());
        }
        Some(_) => {
            return Err(StepError::Io(format!(
                "{dir} exists on the host and is not a directory"
            )));
        }
        None => {}
    }
    let dest_dir = dest.trim_end_matches('/');
    let inside_dest = dir.len() > dest_dir.len()
        && dir.starts_with(dest_dir)
        && dir.as_bytes()[dest_dir.len()] == b'/';
    if !mkdir && !inside_dest {
        return Err(StepError::Io(format!(
            "the remote directory {dir} does not exist (set `mkdir: true` to create it)"
        )));
    }
    ensure_dir(r, remote_parent(dir), mkdir, dest, known)?;
    if let Err(e) = r.mkdir(dir, 0o755) {
        // Another step (or host sharing a filesystem) may have made it meanwhile.
        if !r.stat(dir)?.is_some_and(|s| s.is_dir()) {
            return Err(e);
        }
    }
    known.insert(dir.to_string());
    Ok(())
}

/// SHA-256 of remote files (`None` for one that cannot be read): `sha256sum` on the host —
/// one command for many files, hashed where they are —, or, without it, the bytes read back
/// over SFTP.
pub(super) fn remote_sha256(
    r: &mut Remote,
    paths: &[String],
    max_output: usize,
) -> Result<Vec<Option<String>>, StepError> {
    let mut out = vec![None; paths.len()];
    let mut missing_tool = false;
    for (b, batch) in paths.chunks(PER_COMMAND).enumerate() {
        let mut cmd = "sha256sum --".to_string();
        for p in batch {
            cmd.push(' ');
            cmd.push_str(&quote(p)?);
        }
        let res = match r.exec(&cmd, max_output.max(batch.len() * (PATH_LINE))) {
            Ok(res) => res,
            // No commands on this login: read the files back instead.
            Err(StepError::Io(_)) => {
                missing_tool = true;
                break;
            }
            Err(e) => return Err(e),
        };
        if res.rc == 127 || res.rc == 126 {
            missing_tool = true;
            break;
        }
        let text = String::from_utf8_lossy(&res.stdout);
        for line in text.lines() {
            // `HASH  NAME`, or `\HASH  NAME-with-escapes` for names with `\` or newlines.
            let (escaped, line) = match line.strip_prefix('\\') {
                Some(l) => (true, l),
                None => (false, line),
            };
            let Some((hash, name)) = line.split_once("  ").or_else(|| line.split_once(" *")) else {
                continue;
            };
            let name = if escaped {
                name.replace("\\n", "\n").replace("\\\\", "\\")
            } else {
                name.to_string()
            };
            if let Some(k) = batch.iter().position(|p| *p == name) {
                out[b * PER_COMMAND + k] = Some(hash.to_ascii_lowercase());
            }
        }
    }
    if missing_tool {
        for (i, p) in paths.iter().enumerate() {
            out[i] = read_sha256(r, p).ok();
        }
    }
    Ok(out)
}

/// Room for one `sha256sum` output line.
const PATH_LINE: usize = 4096 + 80;

/// SHA-256 of a remote file read over SFTP.
fn read_sha256(r: &mut Remote, path: &str) -> Result<String, StepError> {
    let mut f = r.open_read(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = r.read(&mut f, &mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    r.close(f)?;
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_paths() {
        assert_eq!(join_remote("/a/", "b"), "/a/b");
        assert_eq!(join_remote("/a", "b/c"), "/a/b/c");
        assert_eq!(join_remote("", "b"), "b");
        assert_eq!(remote_parent("/a/b/c"), "/a/b");
        assert_eq!(remote_parent("/a"), "/");
        assert_eq!(remote_parent("a"), "");
        assert!(has_glob("logs/*.log") && !has_glob("logs/app.log"));
    }

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
}
