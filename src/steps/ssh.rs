//! The `ssh` kind: a command run on the host over its SSH session (a channel of the host's one
//! session, `conn::HostConn::exec`). Arguments come from the playbook (`ssh: "cmd"` or a
//! mapping); `env`, `cwd` and `sudo` become part of the command line sent (sshd's `AcceptEnv`
//! refuses most variable names, so they are exported by the remote shell); `creates`/`removes`
//! are tested on the host first. Results are `rc`, `stdout`, `stderr` (bounded; what was cut is
//! counted), and `signal` when a signal ended the command.

// `StepError` (the engine's type) carries a whole `Diagnostic`; boxing it is the engine's call.
#![allow(clippy::result_large_err)]

use indexmap::IndexMap;
use serde::Deserialize;

use super::{CheckCx, Kind, RunsOn, StepError, StepOutput};
use crate::expect::ExpectFields;
use crate::yaml::Node;

/// Run a command on the host over SSH.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ssh {
    /// The command, run by the login shell (`sh -c`). Templated values with shell
    /// metacharacters are refused unless they pass through `| quote` written outside quotes
    /// (`echo {{ v | quote }}`; inside `"…"` or `'…'` it does not protect and is refused too),
    /// or the step sets `unsafe_shell: true`.
    pub cmd: String,
    /// Environment variables set for the command (exported by the remote shell, so any name
    /// works whatever sshd's `AcceptEnv` says).
    #[serde(default)]
    pub env: IndexMap<String, String>,
    /// Text written to the command's standard input.
    pub stdin: Option<String>,
    /// Directory to run the command in (on the host; relative to the login directory).
    pub cwd: Option<String>,
    /// Run through `sudo -n` (never prompts: a sudo that wants a password fails the step at
    /// once): `true` for root, or a user name.
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
    fn run<'a>(&'a self, cx: &'a super::TaskCx<'a>) -> super::StepFuture<'a> {
        Box::pin(run_ssh(self, cx))
    }

    const NAME: &'static str = "ssh";
    const SUMMARY: &'static str = "Run a command on the host over its SSH session.";
    const RUNS_ON: RunsOn = RunsOn::Host;
    const NAME_FIELDS: &'static [&'static str] = &["cmd"];
    const SHORT_FORM: bool = true;
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
        super::command::check_command(&self.cmd, cx, out);
        let env_node = cx.args.get("env").and_then(Node::as_map);
        for name in self.env.keys() {
            if crate::yaml::is_template(name) || env_name_ok(name) {
                continue;
            }
            let span = env_node
                .and_then(|m| m.iter().find(|(k, _)| k.key_text() == *name))
                .map(|(k, _)| k.span)
                .unwrap_or(cx.kind_span);
            out.push(
                crate::diag::Diagnostic::error(format!(
                    "`{name}` is not an environment variable name"
                ))
                .at(span)
                .label("letters, digits and `_`, not starting with a digit")
                .help("name variables like `APP_ENV`; the value may hold anything"),
            );
        }
    }
}

/// A name the remote shell can `export`.
fn env_name_ok(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn quote(s: &str) -> Result<String, StepError> {
    crate::template::shell_quote(s)
        .map_err(|e| StepError::Protocol(format!("cannot quote `{s}` for the shell: {e}")))
}

impl Ssh {
    /// The user to `sudo` to, if any.
    fn sudo_user(&self) -> Option<&str> {
        match &self.sudo {
            Some(Sudo::Root(true)) => Some("root"),
            Some(Sudo::User(u)) if !u.is_empty() => Some(u),
            _ => None,
        }
    }

    /// The command line sent to the host: `cmd` alone, or a script that changes directory and
    /// exports variables first, run through `sudo -n` when asked.
    pub fn command_line(&self) -> Result<String, StepError> {
        let mut script = String::new();
        if let Some(dir) = &self.cwd {
            script.push_str(&format!("cd {} || exit 1\n", quote(dir)?));
        }
        for (k, v) in &self.env {
            if !env_name_ok(k) {
                return Err(StepError::Protocol(format!(
                    "`{k}` is not an environment variable name"
                )));
            }
            script.push_str(&format!("export {k}={}\n", quote(v)?));
        }
        script.push_str(&self.cmd);
        Ok(match self.sudo_user() {
            None => script,
            Some(user) => sudo_wrap(user, &script)?,
        })
    }
}

/// `sudo -n` (never prompts: fails at once when a password would be needed) running the
/// script in `/bin/sh`, so `cd` and exports happen as the target user after sudo's
/// environment reset.
fn sudo_wrap(user: &str, script: &str) -> Result<String, StepError> {
    Ok(format!(
        "sudo -n -u {} -- /bin/sh -c {}",
        quote(user)?,
        quote(script)?
    ))
}

async fn run_ssh(spec: &Ssh, cx: &super::TaskCx<'_>) -> Result<StepOutput, StepError> {
    if cx.host.local {
        // `ansible_connection: local`: the same script, run by `sh -c` on the runner.
        let local = super::local::Local {
            cmd: spec.command_line()?,
            env: indexmap::IndexMap::new(),
            stdin: spec.stdin.clone(),
            cwd: None,
            creates: spec.creates.clone(),
            removes: spec.removes.clone(),
        };
        return super::local::run_local(&local, cx).await;
    }
    if let Some(path) = &spec.creates
        && remote_exists(spec, cx, path).await?
    {
        return Ok(StepOutput {
            skipped: Some(format!("`{path}` exists on the host")),
            ..Default::default()
        });
    }
    if let Some(path) = &spec.removes
        && !remote_exists(spec, cx, path).await?
    {
        return Ok(StepOutput {
            skipped: Some(format!("`{path}` does not exist on the host")),
            ..Default::default()
        });
    }
    let command = spec.command_line()?;
    let stdin = spec.stdin.as_ref().map(|s| s.clone().into_bytes());
    let out = cx.conn.exec(&command, stdin, cx.limits.max_output).await?;
    let stderr_text = String::from_utf8_lossy(&out.stderr).to_string();
    let mut o = super::command::command_output(
        out.rc,
        out.stdout,
        out.stdout_dropped,
        out.stderr,
        out.stderr_dropped,
    );
    if let Some(sig) = out.signal {
        o = o.with("signal", sig);
    }
    if spec.sudo_user().is_some()
        && let Some(why) = sudo_refusal(out.rc, &stderr_text)
    {
        // The command never ran: whatever `expect` says, the step failed.
        o.failure = Some(format!(
            "sudo refused ({why}): `sudo -n` never asks for a password; allow the command with \
             NOPASSWD in the host's sudoers, or log in as a user who may run it"
        ));
    }
    Ok(o)
}

/// sudo's own refusal in a command's result: rc 1 with sudo's complaint first on stderr
/// (`sudo: a password is required`, `sudo: unknown user …`, `Sorry, user …`), or rc 127
/// when there is no sudo.
fn sudo_refusal(rc: i64, stderr: &str) -> Option<String> {
    let first = stderr.lines().map(str::trim).find(|l| !l.is_empty())?;
    match rc {
        1 if first.starts_with("sudo:") || first.starts_with("Sorry, user") => {
            Some(first.to_string())
        }
        127 if first.ends_with("sudo: not found") || first.ends_with("sudo: command not found") => {
            Some("sudo is not installed on the host".into())
        }
        _ => None,
    }
}

/// `test -e PATH` on the host (as the `sudo` user when the step has one).
async fn remote_exists(spec: &Ssh, cx: &super::TaskCx<'_>, path: &str) -> Result<bool, StepError> {
    let test = format!("test -e {}", quote(path)?);
    let command = match spec.sudo_user() {
        Some(u) => sudo_wrap(u, &test)?,
        None => test,
    };
    let out = cx.conn.exec(&command, None, 4096).await?;
    match out.rc {
        0 => Ok(true),
        1 => Ok(false),
        rc => Err(StepError::Protocol(format!(
            "cannot test whether `{path}` exists on the host (rc {rc}): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(cmd: &str) -> Ssh {
        Ssh {
            cmd: cmd.into(),
            env: IndexMap::new(),
            stdin: None,
            cwd: None,
            sudo: None,
            creates: None,
            removes: None,
        }
    }

    #[test]
    fn a_plain_command_goes_as_written() {
        assert_eq!(spec("uptime").command_line().unwrap(), "uptime");
    }

    #[test]
    fn cwd_and_env_reach_the_command_exactly() {
        let mut s = spec(r#"printf '%s|%s|%s' "$A" "$B" "$(pwd)""#);
        let dir = tempfile::tempdir().unwrap();
        let odd = dir.path().join("my app");
        std::fs::create_dir(&odd).unwrap();
        s.cwd = Some(odd.display().to_string());
        s.env
            .insert("A".into(), "it's \"$HOME\" `id` ; rm -rf /x".into());
        s.env.insert("B".into(), "line1\nline2".into());
        // What a POSIX remote shell makes of it.
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(s.command_line().unwrap())
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!(
                "it's \"$HOME\" `id` ; rm -rf /x|line1\nline2|{}",
                odd.display()
            )
        );
        s.env.insert("1BAD".into(), "x".into());
        assert!(s.command_line().is_err());
    }

    #[test]
    fn sudo_wraps_the_whole_script() {
        let mut s = spec("id -u");
        s.sudo = Some(Sudo::Root(true));
        assert_eq!(
            s.command_line().unwrap(),
            "sudo -n -u root -- /bin/sh -c 'id -u'"
        );
        s.sudo = Some(Sudo::User("app".into()));
        s.env.insert("X".into(), "1".into());
        assert_eq!(
            s.command_line().unwrap(),
            "sudo -n -u app -- /bin/sh -c 'export X=1\nid -u'"
        );
        s.sudo = Some(Sudo::Root(false));
        assert_eq!(s.command_line().unwrap(), "export X=1\nid -u");
    }

    #[test]
    fn sudo_refusals_are_told_apart_from_command_failures() {
        assert!(sudo_refusal(1, "sudo: a password is required\n").is_some());
        assert!(
            sudo_refusal(
                1,
                "Sorry, user deploy is not allowed to execute '/bin/sh'\n"
            )
            .is_some()
        );
        assert!(sudo_refusal(127, "sh: 1: sudo: not found\n").is_some());
        assert!(sudo_refusal(1, "grep: no match\n").is_none());
        assert!(sudo_refusal(2, "sudo: whatever\n").is_none());
    }
}
