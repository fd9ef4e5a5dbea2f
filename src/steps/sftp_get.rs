//! The `sftp_get` kind: remote files (a path, a glob or a directory) fetched from the host over
//! SFTP into a local folder that differs per host, written as `NAME.part` and renamed when
//! complete; unchanged files (same size and mtime) are skipped; a remote name can never write
//! outside `dest`. Results: `files`, `bytes`.

use serde::Deserialize;

use super::{CheckCx, Kind, RunsOn};
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
    fn run<'a>(&'a self, _cx: &'a super::TaskCx<'a>) -> super::StepFuture<'a> {
        Box::pin(async {
            Err(super::StepError::Protocol(
                "the `sftp_get` step is being built".into(),
            ))
        })
    }

    const NAME: &'static str = "sftp_get";
    const SUMMARY: &'static str =
        "Download files from the host over SFTP into a per-host folder, atomically.";
    const RUNS_ON: RunsOn = RunsOn::Host;
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
