//! A task's problems as `Diagnostic`s, so a run shows them the way `sortie check` does: the
//! place in the playbook, the source line, a caret and a label. Input: a `TaskReport` (its
//! locations are data, found again in the registered source or the file on disk); output: the
//! diagnostics that `diag::render` turns into text for the plain and live views, the recap and
//! warnings.

use serde_json::Value as Json;

use super::{CheckReport, ErrorReport, Status, TaskReport};
use crate::diag::{Diagnostic, Location, render};
use crate::expect::short;

/// Lines of a failed command's stderr shown under its failure.
pub const STDERR_TAIL: usize = 5;

/// `expected 200, found 503` — what a failed check's caret says.
pub fn expected_found(c: &CheckReport) -> String {
    let expected = short(&c.expected);
    if c.matcher == "eq" {
        format!("expected {expected}, found {}", short(&c.actual))
    } else {
        format!(
            "expected {} {expected}, found {}",
            c.matcher,
            short(&c.actual)
        )
    }
}

fn check_diagnostic(t: &TaskReport, c: &CheckReport) -> Diagnostic {
    let d = Diagnostic::error(format!("expectation failed: {}", c.field));
    match &c.location {
        Some(loc) => d.at(loc.span()).label(expected_found(c)),
        None => d
            .at(t.location.span())
            .label(format!("{} (by default)", expected_found(c)))
            .help(format!(
                "`{}` steps expect this unless `expect` names `{}`",
                t.kind, c.field
            )),
    }
}

fn error_diagnostic(t: &TaskReport, e: &ErrorReport) -> Diagnostic {
    let at = e.location.as_ref().unwrap_or(&t.location);
    let label = e.label.clone().unwrap_or_else(|| match e.kind.as_str() {
        "connect" | "auth" | "host_key" => "the host is unreachable".into(),
        "timeout" => "this step timed out".into(),
        _ => String::new(),
    });
    let mut d = Diagnostic::error(e.message.clone())
        .at(at.span())
        .label(label);
    if let Some(h) = &e.help {
        d = d.help(h.clone());
    }
    d
}

/// The tail of a failed command's stderr, as a note.
fn stderr_note(t: &TaskReport) -> Option<String> {
    let stderr = t.output.get("stderr").and_then(Json::as_str)?;
    if stderr.trim().is_empty() {
        return None;
    }
    let lines: Vec<&str> = stderr.lines().collect();
    let skip = lines.len().saturating_sub(STDERR_TAIL);
    let mut note = String::from(if skip > 0 {
        "stderr (last lines):"
    } else {
        "stderr:"
    });
    for l in &lines[skip..] {
        note.push_str("\n| ");
        note.push_str(l);
    }
    Some(note)
}

/// What went wrong in a failed or unreachable task: its error, else each failed check, else
/// its message at the place it names; the kind's context and a command's stderr as notes.
pub fn failure(t: &TaskReport) -> Vec<Diagnostic> {
    let mut out: Vec<Diagnostic> = Vec::new();
    if let Some(e) = &t.error {
        out.push(error_diagnostic(t, e));
    } else {
        out.extend(
            t.checks
                .iter()
                .filter(|c| !c.passed)
                .map(|c| check_diagnostic(t, c)),
        );
    }
    if out.is_empty()
        && let Some(m) = &t.message
    {
        let at = t.failure_location.as_ref().unwrap_or(&t.location);
        out.push(Diagnostic::error(m.clone()).at(at.span()));
    }
    if let Some(last) = out.last_mut() {
        if let Some(c) = &t.context {
            last.notes.push(c.clone());
        }
        if let Some(n) = stderr_note(t) {
            last.notes.push(n);
        }
    }
    out
}

/// A task's warnings, each at the step.
pub fn warnings(t: &TaskReport) -> Vec<Diagnostic> {
    t.warnings
        .iter()
        .map(|w| Diagnostic::warning(w.clone()).at(t.location.span()))
        .collect()
}

/// Whether a task's failure is shown (failed or unreachable, and not ignored).
pub fn is_failure(t: &TaskReport) -> bool {
    matches!(t.status, Status::Failed | Status::Unreachable) && !t.ignored
}

/// The text of a failed task's diagnostics (empty when it did not fail).
pub fn failure_text(t: &TaskReport, color: bool) -> String {
    if !is_failure(t) {
        return String::new();
    }
    render(&failure(t), color)
}

/// The text of a task's warnings.
pub fn warnings_text(t: &TaskReport, color: bool) -> String {
    render(&warnings(t), color)
}

/// The text of a run warning: a located diagnostic when it has a place, else one line.
pub fn warning_text(
    message: &str,
    location: Option<&Location>,
    help: Option<&str>,
    color: bool,
) -> String {
    let mut d = Diagnostic::warning(message);
    if let Some(l) = location {
        d = d.at(l.span());
    }
    if let Some(h) = help {
        d = d.help(h);
    }
    render(&[d], color)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::diag::{Span, register_source};

    /// A failed `local` step of a playbook registered as `file`: its `rc: 0` expectation
    /// (line 3) found 3; stderr has seven lines.
    pub(crate) fn task(file: &str) -> TaskReport {
        let f = register_source(
            file,
            "steps:\n  - local: exit 3\n    expect: { rc: 0 }\n  - http: { url: http://x }\n",
        );
        TaskReport {
            id: "#1".into(),
            name: "Build".into(),
            kind: "local".into(),
            status: Status::Failed,
            ignored: false,
            message: Some("rc: expected eq 0, found 3".into()),
            context: None,
            failure_location: None,
            error: None,
            checks: vec![CheckReport {
                field: "rc".into(),
                matcher: "eq".into(),
                expected: 0.into(),
                actual: 3.into(),
                passed: false,
                location: Some(Span::new(f, 3, 19, 3, 20).into()),
            }],
            output: serde_json::json!({"rc": 3, "stdout": "", "stderr": "a\nb\nc\nd\ne\nf\ng"}),
            attempts: 1,
            duration_ms: 15,
            started_ms: None,
            location: Span::new(f, 2, 5, 2, 10).into(),
            warnings: Vec::new(),
        }
    }

    #[test]
    fn a_failed_check_points_at_its_expectation() {
        let t = task("diagnose-1.yml");
        assert_eq!(
            failure_text(&t, false),
            "error: expectation failed: rc\n --> diagnose-1.yml:3:19\n  |\n3 |     expect: { rc: 0 }\n  |                   ^ expected 0, found 3\n  = note: stderr (last lines):\n          | c\n          | d\n          | e\n          | f\n          | g\n"
        );
    }

    #[test]
    fn a_default_expectation_points_at_the_step() {
        let mut t = task("diagnose-2.yml");
        t.checks[0].location = None;
        t.output = serde_json::json!({"rc": 3});
        assert_eq!(
            failure_text(&t, false),
            "error: expectation failed: rc\n --> diagnose-2.yml:2:5\n  |\n2 |   - local: exit 3\n  |     ^^^^^ expected 0, found 3 (by default)\n  = help: `local` steps expect this unless `expect` names `rc`\n"
        );
    }

    #[test]
    fn an_error_shows_its_help_and_no_check() {
        let mut t = task("diagnose-3.yml");
        t.status = Status::Unreachable;
        t.output = serde_json::json!({});
        t.error = Some(ErrorReport {
            kind: "connect".into(),
            message: "cannot connect to 127.0.0.1:1: refused".into(),
            help: Some("is sshd running?".into()),
            location: None,
            label: None,
        });
        assert_eq!(
            failure_text(&t, false),
            "error: cannot connect to 127.0.0.1:1: refused\n --> diagnose-3.yml:2:5\n  |\n2 |   - local: exit 3\n  |     ^^^^^ the host is unreachable\n  = help: is sshd running?\n"
        );
    }

    #[test]
    fn the_kind_context_is_a_note_and_ignored_failures_show_nothing() {
        let mut t = task("diagnose-4.yml");
        t.output = serde_json::json!({});
        t.context = Some("GET http://x → 503".into());
        assert!(failure_text(&t, false).ends_with("  = note: GET http://x → 503\n"));
        t.ignored = true;
        assert_eq!(failure_text(&t, false), "");
    }

    #[test]
    fn warnings_point_at_the_step() {
        let mut t = task("diagnose-5.yml");
        t.warnings = vec!["TLS is not verified".into()];
        assert_eq!(
            warnings_text(&t, false),
            "warning: TLS is not verified\n --> diagnose-5.yml:2:5\n  |\n2 |   - local: exit 3\n  |     ^^^^^\n"
        );
    }
}
