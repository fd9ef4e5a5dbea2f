//! The `local` kind: a command run on the machine running sortie (`sh -c`), with the same
//! arguments and results as `ssh`. Arguments come from the step rendered for one host (paths
//! relative to the playbook's directory); the result fields `rc`, `stdout`, `stderr` (bounded,
//! shaped by `command.rs`) go back to the runner. A timed-out command's process group is killed.

use indexmap::IndexMap;
use serde::Deserialize;

use super::{CheckCx, Kind, RunsOn};
use crate::expect::ExpectFields;
use crate::yaml::Node;

/// Run a command on the runner.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Local {
    /// The command, run by `sh -c` on the runner. Templated values with shell
    /// metacharacters are refused unless they pass through `| quote` written outside quotes
    /// (`echo {{ v | quote }}`; inside `"…"` or `'…'` it does not protect and is refused too),
    /// or the step sets `unsafe_shell: true`.
    pub cmd: String,
    /// Environment variables set for the command.
    #[serde(default)]
    pub env: IndexMap<String, String>,
    /// Text written to the command's standard input.
    pub stdin: Option<String>,
    /// Directory to run the command in (relative to the playbook's directory).
    pub cwd: Option<String>,
    /// Skip the step (status ok) when this local path already exists.
    pub creates: Option<String>,
    /// Skip the step (status ok) when this local path does not exist.
    pub removes: Option<String>,
}

impl Kind for Local {
    const NAME: &'static str = "local";
    const SUMMARY: &'static str = "Run a command on the machine running sortie.";
    const RUNS_ON: RunsOn = RunsOn::Runner;
    const NAME_FIELDS: &'static [&'static str] = &["cmd"];
    const SHORT_FORM: bool = true;
    const EXPECT: ExpectFields = ExpectFields {
        plain: &["rc", "stdout", "stderr"],
        keyed: &[],
    };
    const DEFAULT_EXPECT: &'static str = "rc: 0";

    const COMMAND_FIELDS: &'static [&'static str] = &["cmd"];

    fn run<'a>(&'a self, cx: &'a super::TaskCx<'a>) -> super::StepFuture<'a> {
        Box::pin(run_local(self, cx))
    }

    fn from_scalar(node: &Node) -> Option<Self> {
        node.as_str().map(|cmd| Local {
            cmd: cmd.to_string(),
            env: IndexMap::new(),
            stdin: None,
            cwd: None,
            creates: None,
            removes: None,
        })
    }

    fn check(&self, cx: &CheckCx<'_>, out: &mut Vec<crate::diag::Diagnostic>) {
        super::command::check_command(&self.cmd, cx, out);
    }
}

/// Kills the command's whole process group unless it finished (timeouts drop the future).
struct GroupGuard {
    pgid: Option<u32>,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pid) = self
            .pgid
            .and_then(|p| rustix::process::Pid::from_raw(p as i32))
        {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

/// Reads a stream, keeping at most `limit` bytes and counting the rest.
pub async fn read_bounded<R: tokio::io::AsyncRead + Unpin>(
    mut r: R,
    limit: usize,
) -> (Vec<u8>, u64) {
    use tokio::io::AsyncReadExt;
    let mut kept = Vec::new();
    let mut dropped = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = limit.saturating_sub(kept.len());
                let take = room.min(n);
                kept.extend_from_slice(&buf[..take]);
                dropped += (n - take) as u64;
            }
        }
    }
    (kept, dropped)
}

/// Runs `spec` on the runner (also the `ssh` kind's way on a host that is
/// `ansible_connection: local`).
pub(super) async fn run_local(
    spec: &Local,
    cx: &super::TaskCx<'_>,
) -> Result<super::StepOutput, super::StepError> {
    use super::{StepError, StepOutput};
    use tokio::io::AsyncWriteExt;
    let resolve = |p: &str| {
        let path = std::path::Path::new(p);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            cx.dir.join(path)
        }
    };
    if let Some(c) = &spec.creates
        && resolve(c).exists()
    {
        return Ok(StepOutput {
            skipped: Some(format!("`{c}` exists")),
            ..Default::default()
        });
    }
    if let Some(r) = &spec.removes
        && !resolve(r).exists()
    {
        return Ok(StepOutput {
            skipped: Some(format!("`{r}` does not exist")),
            ..Default::default()
        });
    }
    let mut cmd = tokio::process::Command::new("/bin/sh");
    cmd.arg("-c").arg(&spec.cmd);
    cmd.current_dir(match &spec.cwd {
        Some(d) => resolve(d),
        None => cx.dir.to_path_buf(),
    });
    cmd.envs(&spec.env);
    cmd.stdin(if spec.stdin.is_some() {
        std::process::Stdio::piped()
    } else {
        std::process::Stdio::null()
    });
    cmd.stdout(std::process::Stdio::piped());
    cmd.stderr(std::process::Stdio::piped());
    cmd.process_group(0);
    cmd.kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| StepError::Io(format!("cannot start /bin/sh: {e}")))?;
    let mut guard = GroupGuard { pgid: child.id() };
    if let (Some(text), Some(mut stdin)) = (&spec.stdin, child.stdin.take()) {
        let bytes = text.clone().into_bytes();
        tokio::spawn(async move {
            let _ = stdin.write_all(&bytes).await;
            let _ = stdin.shutdown().await;
        });
    }
    let limit = cx.limits.max_output;
    let out = child.stdout.take();
    let err = child.stderr.take();
    let out_task = async move {
        match out {
            Some(o) => read_bounded(o, limit).await,
            None => (Vec::new(), 0),
        }
    };
    let err_task = async move {
        match err {
            Some(e) => read_bounded(e, limit).await,
            None => (Vec::new(), 0),
        }
    };
    let ((stdout, od), (stderr, ed), status) = tokio::join!(out_task, err_task, child.wait());
    let status = status.map_err(|e| StepError::Io(format!("waiting for the command: {e}")))?;
    guard.pgid = None;
    let rc = match status.code() {
        Some(c) => i64::from(c),
        None => {
            use std::os::unix::process::ExitStatusExt;
            128 + i64::from(status.signal().unwrap_or(0))
        }
    };
    Ok(super::command::command_output(rc, stdout, od, stderr, ed))
}
