//! The `sftp_get` kind: remote files (a path, a glob — in any path component — or a directory
//! with `recursive`) fetched from the host over its SSH session (`conn::Remote`) into a local
//! folder that differs per host (relative to the playbook's folder). Each file is written to a
//! temporary beside it and renamed to its name only when the size the server reported at the
//! start has fully arrived — a failed transfer never leaves a file under its final name (its
//! temporary is removed); one that a killed run left is resumed by the next run when its
//! prefix is still the remote file's. The local file gets the remote mtime, so a later run
//! skips files of the same size and mtime.
//!
//! The parts: the arguments, the `Kind` impl and the run here; `expand` (which remote files:
//! links are not followed out of `src`'s tree, and whatever is not fetched is said, in
//! `skipped` and a warning), `local` (where they go: never through a link, temporaries created
//! exclusively under random names), `resume` (an earlier run's leftover, verified before it is
//! continued). Results: `files` [{`path`, `local`, `bytes`, `sha256`, `changed`,
//! `resumed_from` when resumed}], `skipped` [{`path`, `reason`}], `bytes` (fetched), `changed`.

// `StepError` (the engine's type) carries a whole `Diagnostic`; boxing it is the engine's call.
#![allow(clippy::result_large_err)]

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::json;
use sha2::Digest;

use super::temp_name::get_key;
use super::{CheckCx, Kind, RunsOn, StepError, StepOutput};
use crate::conn::Remote;
use crate::diag::Diagnostic;
use crate::expect::ExpectFields;
use crate::units::ByteSize;

mod expand;
mod local;
mod resume;

use expand::{Skipped, Wanted, expand};
use local::{Folder, Place, open_dest};
use resume::{Seen, Start};

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
        Box::pin(async move {
            super::local_host_refuses(cx, Self::NAME)?;
            run_get(self, cx).await
        })
    }

    const NAME: &'static str = "sftp_get";
    const SUMMARY: &'static str =
        "Download files from the host over SFTP into a per-host folder, atomically.";
    const RUNS_ON: RunsOn = RunsOn::Host;
    const NAME_FIELDS: &'static [&'static str] = &["src", "dest"];
    const EXPECT: ExpectFields = ExpectFields {
        plain: &["files", "skipped", "bytes", "changed"],
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

/// Skipped entries named in the step's warning; the rest are counted (all are in `skipped`).
const SKIPPED_NAMED: usize = 5;

/// What fetching one file did.
struct Fetched {
    sha256: String,
    /// Bytes that crossed the network.
    bytes: u64,
    /// Where a leftover of an earlier run was resumed from (0: from the start).
    resumed_from: u64,
}

/// Fetches one file into a temporary beside it (a verified leftover of an earlier run, or a
/// new one), checks its size, sets its mtime, renames it. On failure the temporary is removed.
async fn fetch(
    r: &mut Remote,
    w: &Wanted,
    place: &Place,
    key: &str,
    seen: &mut Seen,
) -> Result<Fetched, StepError> {
    use std::io::Write;
    let Start {
        mut temp,
        at,
        mut hash,
        remote,
    } = resume::start(r, w, place, key, seen).await?;
    let tmp_path = place.dir.path.join(&temp.name);
    let result = async {
        // A turn among the run's transfers: what is in flight is bounded, however many hosts.
        let _turn = crate::conn::transfer_turn().await;
        let mut rf = match remote {
            Some(f) => f,
            None => {
                let mut f = r.open_read(&w.open).await?;
                r.seek(&mut f, at)?;
                f
            }
        };
        let mut buf = vec![0u8; crate::conn::READ_BUFFER];
        let mut got = at;
        // The size at listing time is what we take: a log still being written is fetched as it
        // was then, and its mtime tells the next run to fetch it again.
        while got < w.size {
            let want = (w.size - got).min(buf.len() as u64) as usize;
            let n = r.read(&mut rf, &mut buf[..want]).await?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            temp.file
                .write_all(&buf[..n])
                .map_err(|e| StepError::Io(format!("cannot write {}: {e}", tmp_path.display())))?;
            got += n as u64;
        }
        // Every byte wanted is here: the close is not waited for.
        r.close_later(rf).await;
        if got != w.size {
            return Err(StepError::Io(format!(
                "{}: got {got} bytes of {} (the file shrank on the host)",
                w.remote, w.size
            )));
        }
        place.commit(&temp, w.mtime)?;
        Ok::<_, StepError>(Fetched {
            sha256: hex::encode(hash.clone().finalize()),
            bytes: w.size - at,
            resumed_from: at,
        })
    }
    .await;
    if result.is_err() {
        place.discard(&temp);
    }
    result
}

/// The step's warning about what was skipped: the first few named with the reason, the rest
/// counted.
fn skipped_warning(skipped: &[Skipped]) -> Option<String> {
    if skipped.is_empty() {
        return None;
    }
    let mut named: Vec<String> = skipped
        .iter()
        .take(SKIPPED_NAMED)
        .map(|s| format!("{} ({})", s.path, s.reason))
        .collect();
    if skipped.len() > SKIPPED_NAMED {
        named.push(format!(
            "and {} more (the result's `skipped` lists them all)",
            skipped.len() - SKIPPED_NAMED
        ));
    }
    Some(format!(
        "skipped {} entr{} that {} not fetched: {}",
        skipped.len(),
        if skipped.len() == 1 { "y" } else { "ies" },
        if skipped.len() == 1 { "is" } else { "are" },
        named.join("; ")
    ))
}

/// What the step found and did, as its result.
#[derive(Default)]
struct Tally {
    files: Vec<serde_json::Value>,
    fetched: u64,
    changed: bool,
    refused: Vec<String>,
    /// Earlier runs' temporaries in the folders written to.
    seen: Seen,
}

impl Tally {
    /// Fetches (or finds unchanged) one wanted file.
    async fn one(
        &mut self,
        r: &mut Remote,
        dest: &Folder,
        w: &Wanted,
        host: &str,
        max: Option<u64>,
    ) -> Result<(), StepError> {
        if let Some(m) = max
            && w.size > m
        {
            self.refused.push(format!(
                "{} is {} bytes, over max_size ({m} bytes)",
                w.remote, w.size
            ));
            return Ok(());
        }
        let place = dest.place(&w.rel)?;
        let mut entry = json!({
            "path": w.remote,
            "local": place.path.display().to_string(),
            "bytes": w.size,
        });
        if place.unchanged(w.size, w.mtime) {
            entry["sha256"] = place.sha256()?.into();
            entry["changed"] = false.into();
        } else {
            let f = fetch(r, w, &place, &get_key(host, &w.remote), &mut self.seen).await?;
            self.fetched += f.bytes;
            self.changed = true;
            entry["sha256"] = f.sha256.into();
            entry["changed"] = true.into();
            if f.resumed_from > 0 {
                entry["resumed_from"] = f.resumed_from.into();
            }
        }
        self.files.push(entry);
        Ok(())
    }
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
    let host = cx.host.name.clone();
    cx.conn
        .remote(move |mut r| async move {
            let found = expand(&mut r, &src, recursive).await?;
            let dest = open_dest(&dest)?;
            let mut tally = Tally::default();
            for w in &found.wanted {
                tally.one(&mut r, &dest, w, &host, max).await?;
            }
            let mut warnings = found.warnings;
            warnings.extend(skipped_warning(&found.skipped));
            let skipped: Vec<serde_json::Value> = found
                .skipped
                .iter()
                .map(|s| json!({"path": s.path, "reason": s.reason}))
                .collect();
            let mut out = StepOutput {
                changed: tally.changed,
                warnings,
                ..Default::default()
            }
            .with("files", tally.files)
            .with("skipped", skipped)
            .with("bytes", tally.fetched)
            .with("changed", tally.changed);
            if !tally.refused.is_empty() {
                out.failure = Some(tally.refused.join("; "));
            }
            Ok(out)
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skipped(n: usize) -> Vec<Skipped> {
        (0..n)
            .map(|i| Skipped {
                path: format!("/d/f{i}"),
                reason: "a FIFO".into(),
            })
            .collect()
    }

    #[test]
    fn the_skipped_warning_names_a_few_and_counts_the_rest() {
        assert_eq!(skipped_warning(&[]), None);
        let one = skipped_warning(&skipped(1)).unwrap();
        assert_eq!(one, "skipped 1 entry that is not fetched: /d/f0 (a FIFO)");
        let w = skipped_warning(&skipped(9)).unwrap();
        assert!(
            w.starts_with("skipped 9 entries that are not fetched: /d/f0 (a FIFO); "),
            "{w}"
        );
        assert!(
            w.contains("/d/f4 (a FIFO); and 4 more") && !w.contains("/d/f5"),
            "{w}"
        );
    }
}
