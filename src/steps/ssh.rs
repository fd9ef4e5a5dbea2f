//! The `ssh` kind: a command run on the host over its SSH session. Arguments come from the
//! playbook (`ssh: "cmd"` or a mapping); results are `rc`, `stdout`, `stderr`.

use indexmap::IndexMap;
use serde::Deserialize;

use super::{CheckCx, Kind, RunsOn};
use crate::expect::ExpectFields;
use crate::yaml::Node;

/// Run a command on the host over SSH.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ssh {
    /// The command, run by the login shell (`sh -c`). Templated values that contain shell
    /// metacharacters are refused unless they pass through `| quote` or `unsafe_shell: true`.
    pub cmd: String,
    /// Environment variables set for the command.
    #[serde(default)]
    pub env: IndexMap<String, String>,
    /// Text written to the command's standard input.
    pub stdin: Option<String>,
    /// Directory to run the command in.
    pub cwd: Option<String>,
    /// Run through `sudo -n` (non-interactive): `true` for root, or a user name.
    pub sudo: Option<Sudo>,
    /// Skip the step (status ok) when this remote path already exists.
    pub creates: Option<String>,
    /// Skip the step (status ok) when this remote path does not exist.
    pub removes: Option<String>,
}

/// `sudo: true` or `sudo: USER`.
#[derive(Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Sudo {
    Root(bool),
    User(String),
}

impl<'de> Deserialize<'de> for Sudo {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let crate::yaml::RawNode(n) = crate::yaml::RawNode::deserialize(d)?;
        let t = n.as_str().unwrap_or("");
        Ok(match (n.describe(), t) {
            ("a boolean", t) => Sudo::Root(matches!(t, "true" | "True" | "TRUE")),
            _ if n.as_str().is_some() => Sudo::User(t.to_string()),
            _ => {
                return Err(serde::de::Error::custom(crate::yaml::carry(
                    crate::yaml::DeError {
                        message: format!(
                            "expected true, false or a user name, found {}",
                            n.describe()
                        ),
                        span: Some(n.span),
                        label: "expected true, false or a user name".into(),
                        help: None,
                    },
                )));
            }
        })
    }
}

impl Kind for Ssh {
    fn run<'a>(&'a self, _cx: &'a super::TaskCx<'a>) -> super::StepFuture<'a> {
        Box::pin(async {
            Err(super::StepError::Protocol(
                "the `ssh` step is being built".into(),
            ))
        })
    }

    const NAME: &'static str = "ssh";
    const SUMMARY: &'static str = "Run a command on the host over its SSH session.";
    const RUNS_ON: RunsOn = RunsOn::Host;
    const EXPECT: ExpectFields = ExpectFields {
        plain: &["rc", "stdout", "stderr"],
        keyed: &[],
    };
    const DEFAULT_EXPECT: &'static str = "rc: 0";
    const COMMAND_FIELDS: &'static [&'static str] = &["cmd"];

    fn from_scalar(node: &Node) -> Option<Self> {
        node.as_str().map(|cmd| Ssh {
            cmd: cmd.to_string(),
            env: IndexMap::new(),
            stdin: None,
            cwd: None,
            sudo: None,
            creates: None,
            removes: None,
        })
    }

    fn check(&self, cx: &CheckCx<'_>, out: &mut Vec<crate::diag::Diagnostic>) {
        check_command(&self.cmd, cx, out);
    }
}

/// An empty command is always a mistake.
pub fn check_command(cmd: &str, cx: &CheckCx<'_>, out: &mut Vec<crate::diag::Diagnostic>) {
    if cmd.trim().is_empty() {
        let span = cx.args.get("cmd").map(|n| n.span).unwrap_or(cx.args.span);
        out.push(
            crate::diag::Diagnostic::error("empty command")
                .at(span)
                .label("nothing to run")
                .help("give the command to run, e.g. `ssh: \"uptime\"`"),
        );
    }
}
