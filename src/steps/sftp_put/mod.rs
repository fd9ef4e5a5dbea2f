//! The `sftp_put` kind: files from the runner (a file, a directory, a glob — relative to the
//! playbook's folder —, inline `content` or a per-host `template`) written to the host over the
//! host's SSH session (`conn::Remote`), atomically: each file goes to a temporary name in its
//! folder, then is renamed into place (SFTP rename for new files; `mv -f`, i.e. rename(2), over
//! the same session for files that exist, since OpenSSH's SFTP rename refuses to replace one).
//! A file whose remote size and SHA-256 already match is not sent: same-size candidates are
//! hashed on the host with one `sha256sum` per step (reading them back over SFTP when the host
//! has no `sha256sum`). Results: `files` [{`path`, `bytes`, `sha256`, `changed`}], `bytes`
//! (sent), `changed`.
//!
//! The parts: the arguments, the `Kind` impl and the run here (what goes where); `local`
//! (the local sources and their hashes), `write` (the upload itself: unchanged files skipped,
//! the others written and renamed into place), `remote` (remote paths, folders and hashes),
//! `stale` (temporaries that killed earlier runs left behind).
//! `sftp_get` shares the helpers it needs through the re-exports below.

// `StepError` (the engine's type) carries a whole `Diagnostic`; boxing it is the engine's call.
#![allow(clippy::result_large_err)]

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{CheckCx, Kind, RunsOn, StepError, StepOutput};
use crate::conn::Remote;
use crate::diag::Diagnostic;
use crate::expect::ExpectFields;

mod local;
mod remote;
mod stale;
mod write;

pub(super) use local::has_glob;
pub(super) use remote::join_remote;

use local::{local_sources, sha256_hex, shared_source};
use write::put_all;

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
        Box::pin(async move {
            super::local_host_refuses(cx, Self::NAME)?;
            run_put(self, cx).await
        })
    }

    const NAME: &'static str = "sftp_put";
    const SUMMARY: &'static str =
        "Upload files to the host over SFTP, atomically, skipping unchanged ones.";
    const RUNS_ON: RunsOn = RunsOn::Host;
    const NAME_FIELDS: &'static [&'static str] = &["src", "dest"];
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

/// What one file to upload holds: a local file read as it is sent, or bytes (inline ones,
/// or a small source file's, shared by every host).
enum Body {
    File(PathBuf),
    Bytes(std::sync::Arc<[u8]>),
}

struct Upload {
    body: Body,
    /// Where it goes on the host.
    remote: String,
    size: u64,
    sha256: String,
    /// What `stat` found at `remote`, when planning asked already (one round trip saved).
    seen: Option<Option<crate::conn::FileStat>>,
}

async fn run_put(spec: &SftpPut, cx: &super::TaskCx<'_>) -> Result<StepOutput, StepError> {
    // Inline bodies are made here (templates need the context); files are read by the
    // transfer (a task of its own on the runtime).
    let inline = inline_body(spec, cx)?;
    let src = spec.src.clone();
    let dest = spec.dest.clone();
    let dir = cx.dir.to_path_buf();
    let mode = spec.mode.map(|m| m.0);
    let mkdir = spec.mkdir;
    let max_output = cx.limits.max_output;
    cx.conn
        .remote(move |mut r| async move {
            let uploads = plan_uploads(&mut r, inline, src, &dir, &dest).await?;
            put_all(&mut r, uploads, mode, mkdir, &dest, max_output).await
        })
        .await
}

/// The body of `content`, or of `template` rendered for this host, with the file name it
/// brings (`""` for `content`; the template's name without `.j2`/`.jinja`). `None` for `src`.
fn inline_body(
    spec: &SftpPut,
    cx: &super::TaskCx<'_>,
) -> Result<Option<(Vec<u8>, String)>, StepError> {
    if let Some(c) = &spec.content {
        return Ok(Some((c.clone().into_bytes(), String::new())));
    }
    let Some(t) = &spec.template else {
        return Ok(None);
    };
    let path = if Path::new(t).is_absolute() {
        PathBuf::from(t)
    } else {
        cx.dir.join(t)
    };
    let bytes = std::fs::read(&path)
        .map_err(|e| StepError::Io(format!("cannot read template {}: {e}", path.display())))?;
    let text = crate::diag::utf8_text(&path.display().to_string(), bytes, "template")
        .map_err(StepError::Template)?;
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
    Ok(Some((body.into_bytes(), name)))
}

/// What is at `dest` (`None` for a `dest` ending in `/`, which is a folder by definition).
async fn dest_stat(r: &mut Remote, dest: &str) -> Result<Option<crate::conn::FileStat>, StepError> {
    if dest.ends_with('/') {
        return Ok(None);
    }
    r.stat(dest).await
}

/// What goes where: the inline body, or each local file of `src` (hashed), with its remote
/// path — under `dest` when `dest` is a directory (ends with `/`, is one on the host, or
/// `src` brings several files).
async fn plan_uploads(
    r: &mut Remote,
    inline: Option<(Vec<u8>, String)>,
    src: Option<String>,
    dir: &Path,
    dest: &str,
) -> Result<Vec<Upload>, StepError> {
    let mut uploads = Vec::new();
    match (inline, src) {
        (Some((bytes, name)), _) => {
            let at_dest = dest_stat(r, dest).await?;
            let into_dir = dest.ends_with('/') || at_dest.as_ref().is_some_and(|s| s.is_dir());
            let remote = match (into_dir, name.is_empty()) {
                (false, _) => dest.to_string(),
                (true, false) => join_remote(dest, &name),
                (true, true) => {
                    return Err(StepError::Io(format!(
                        "{dest} is a directory on the host: `content` needs a file name in `dest`"
                    )));
                }
            };
            uploads.push(Upload {
                size: bytes.len() as u64,
                sha256: sha256_hex(&bytes),
                body: Body::Bytes(bytes.into()),
                remote,
                seen: (!into_dir).then_some(at_dest),
            });
        }
        (None, Some(src)) => {
            let (files, many) = local_sources(dir, &src)?;
            let at_dest = if many {
                None
            } else {
                dest_stat(r, dest).await?
            };
            let into_dir =
                many || dest.ends_with('/') || at_dest.as_ref().is_some_and(|s| s.is_dir());
            for (path, rel) in files {
                let source = shared_source(&path)
                    .map_err(|e| StepError::Io(format!("cannot read {}: {e}", path.display())))?;
                let remote = if into_dir {
                    join_remote(dest, &rel)
                } else {
                    dest.to_string()
                };
                uploads.push(Upload {
                    body: match source.bytes {
                        Some(b) => Body::Bytes(b),
                        None => Body::File(path),
                    },
                    remote,
                    size: source.size,
                    sha256: source.sha256,
                    seen: (!into_dir).then(|| at_dest.clone()),
                });
            }
        }
        (None, None) => return Err(StepError::Protocol("nothing to upload".into())),
    }
    Ok(uploads)
}
