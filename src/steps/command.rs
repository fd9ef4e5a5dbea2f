//! What the shell-command kinds (`ssh` on the host, `local` on the runner) share: the rule
//! that a command is not empty (called from their `check`, reading the step's arguments from
//! the playbook), the shell-injection guard's check-time half (every command field of a step,
//! as written, read by `Templates::check_command`; the run-time half is `render_args`), and
//! the shape of their result (`rc`, `stdout`, `stderr`, with what was cut counted), built
//! from what the command left and returned as the step's output.

use super::{CheckCx, StepOutput};
use crate::diag::Diagnostic;
use crate::template::{Place, templates};
use crate::yaml::{Node, NodeKind};

/// The guard before anything runs, over a step's command fields (`cmd`, or the short form
/// `ssh: "…"`), unless the step sets `unsafe_shell`.
pub fn check_guard(kind: &str, args: &Node, unsafe_shell: bool, out: &mut Vec<Diagnostic>) {
    let (command, _) = super::field_rules(kind);
    if unsafe_shell || command.is_empty() {
        return;
    }
    let t = templates();
    let mut check = |node: &Node| {
        // A template that does not compile has its own diagnostic already.
        if let Some(text) = node.as_str()
            && t.check(text, Place::of(node)).is_ok()
        {
            out.extend(t.check_command(text, Place::of(node)));
        }
    };
    match &args.kind {
        NodeKind::Scalar { .. } => check(args),
        NodeKind::Map(entries) => entries
            .iter()
            .filter(|(k, _)| command.contains(&k.key_text().as_str()))
            .for_each(|(_, v)| check(v)),
        NodeKind::Seq(_) => {}
    }
}

/// An empty command is always a mistake.
pub fn check_command(cmd: &str, cx: &CheckCx<'_>, out: &mut Vec<Diagnostic>) {
    if cmd.trim().is_empty() {
        let span = cx.args.get("cmd").map(|n| n.span).unwrap_or(cx.args.span);
        out.push(
            Diagnostic::error("empty command")
                .at(span)
                .label("nothing to run")
                .help("give the command to run, e.g. `ssh: \"uptime\"`"),
        );
    }
}

/// The `rc`/`stdout`/`stderr` result of a command, with what was cut said.
pub fn command_output(
    rc: i64,
    stdout: Vec<u8>,
    out_dropped: u64,
    stderr: Vec<u8>,
    err_dropped: u64,
) -> StepOutput {
    let mut o = StepOutput {
        changed: true,
        ..Default::default()
    }
    .with("rc", rc)
    .with(
        "stdout",
        String::from_utf8_lossy(&stdout)
            .trim_end_matches('\n')
            .to_string(),
    )
    .with(
        "stderr",
        String::from_utf8_lossy(&stderr)
            .trim_end_matches('\n')
            .to_string(),
    );
    if out_dropped > 0 {
        o = o.with("stdout_truncated_bytes", out_dropped);
        o.warnings.push(format!(
            "stdout: kept the first {} bytes, {out_dropped} more not kept",
            stdout.len()
        ));
    }
    if err_dropped > 0 {
        o = o.with("stderr_truncated_bytes", err_dropped);
        o.warnings.push(format!(
            "stderr: kept the first {} bytes, {err_dropped} more not kept",
            stderr.len()
        ));
    }
    o
}
