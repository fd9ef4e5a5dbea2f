//! The `sftp_put` kind: files from the runner (a file, a directory, a glob, inline `content`
//! or a per-host `template`) written to the host over SFTP, atomically (temporary name, then
//! rename), skipping files whose size and SHA-256 already match. Results: `files`, `bytes`.

use serde::Deserialize;

use super::{CheckCx, Kind, RunsOn};
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
    fn run<'a>(&'a self, _cx: &'a super::TaskCx<'a>) -> super::StepFuture<'a> {
        Box::pin(async {
            Err(super::StepError::Protocol(
                "the `sftp_put` step is being built".into(),
            ))
        })
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
