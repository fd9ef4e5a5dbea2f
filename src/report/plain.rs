//! Plain text for people: one line per finished task, a task's outputs (`-v`), a failure's
//! details, and the recap — the per-host table (failures first) and every failure with its
//! place and expected-vs-actual. The same text is printed on a terminal and off one; the live
//! view (`report::human`) only adds bars and color. Input is `TaskReport`s from events and the
//! final `RunReport`; callers redact what this returns before printing it.

use console::Style;
use serde_json::Value as Json;

use super::{HostReport, RunReport, Status, TaskReport};

/// Lines of a failed command's stderr shown under its failure.
const STDERR_TAIL: usize = 5;

/// The status word padded to a column, colored when `color`.
pub fn status_word(s: Status, color: bool) -> String {
    let padded = format!("{:<11}", s.as_str());
    if !color {
        return padded;
    }
    let style = match s {
        Status::Ok => Style::new().green(),
        Status::Changed => Style::new().yellow(),
        Status::Skipped => Style::new().dim(),
        Status::Failed => Style::new().red().bold(),
        Status::Unreachable => Style::new().magenta().bold(),
    };
    style.force_styling(true).apply_to(padded).to_string()
}

/// `h01   ok          Health check  (12ms)` — one finished task.
pub fn task_line(host: &str, t: &TaskReport, width: usize, color: bool) -> String {
    let mut line = format!(
        "{host:<width$}  {} {}  ({})",
        status_word(t.status, color),
        t.name,
        human_ms(t.duration_ms)
    );
    if t.ignored {
        line.push_str("  [ignored]");
    }
    if let Some(m) = &t.message
        && matches!(
            t.status,
            Status::Failed | Status::Unreachable | Status::Skipped
        )
    {
        line.push_str(" — ");
        line.push_str(&one_line(m));
    }
    line
}

fn one_line(s: &str) -> String {
    let mut lines = s.lines();
    let first = lines.next().unwrap_or("").to_string();
    if lines.next().is_some() {
        format!("{first} …")
    } else {
        first
    }
}

/// A task's result fields (`-v`), one per line under the task, multi-line strings indented.
pub fn outputs(t: &TaskReport, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = String::new();
    match &t.output {
        Json::Object(map) if map.is_empty() => {}
        Json::Object(map) => {
            for (k, v) in map {
                field(&mut out, &pad, k, v);
            }
        }
        other => field(&mut out, &pad, "output", other),
    }
    out
}

fn field(out: &mut String, pad: &str, key: &str, v: &Json) {
    match v {
        Json::String(s) if s.contains('\n') => {
            out.push_str(&format!("{pad}{key}: |\n"));
            for l in s.lines() {
                out.push_str(&format!("{pad}  {l}\n"));
            }
        }
        Json::String(s) => out.push_str(&format!("{pad}{key}: {s}\n")),
        other => out.push_str(&format!("{pad}{key}: {other}\n")),
    }
}

pub fn human_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    }
}

fn counts(h: &HostReport) -> [usize; 5] {
    let mut c = [0usize; 5];
    for t in &h.tasks {
        let i = match t.status {
            Status::Ok => 0,
            Status::Changed => 1,
            Status::Failed => 2,
            Status::Skipped => 3,
            Status::Unreachable => 4,
        };
        c[i] += 1;
    }
    c
}

/// What went wrong in a failed task, indented under its header: the error (and its help),
/// each failed check with expected and found, else the message; then the tail of a
/// command's stderr.
pub fn failure_details(t: &TaskReport) -> String {
    let mut out = String::new();
    if let Some(e) = &t.error {
        out.push_str(&format!("  {}: {}\n", e.kind, e.message));
        if let Some(h) = &e.help {
            out.push_str(&format!("  help: {h}\n"));
        }
    }
    for c in t.checks.iter().filter(|c| !c.passed) {
        // A kind's default expectation has no place in the playbook.
        let place = if c.location.starts_with("<default") {
            "default expectation"
        } else {
            c.location.as_str()
        };
        out.push_str(&format!(
            "  {}: expected {} {}, found {}  ({place})\n",
            c.field,
            c.matcher,
            crate::expect::short(&c.expected),
            crate::expect::short(&c.actual),
        ));
    }
    if t.error.is_none()
        && t.checks.iter().all(|c| c.passed)
        && let Some(m) = &t.message
    {
        out.push_str(&format!("  {m}\n"));
    } else if t.checks.iter().any(|c| !c.passed)
        && let Some((_, context)) = t.message.as_deref().and_then(|m| m.split_once(" — "))
    {
        // What the kind adds to a failed check: the request and its answer, the refused port.
        out.push_str(&format!("  {context}\n"));
    }
    if let Some(stderr) = t.output.get("stderr").and_then(Json::as_str)
        && !stderr.trim().is_empty()
    {
        let lines: Vec<&str> = stderr.lines().collect();
        let skip = lines.len().saturating_sub(STDERR_TAIL);
        out.push_str(if skip > 0 {
            "  stderr (last lines):\n"
        } else {
            "  stderr:\n"
        });
        for l in &lines[skip..] {
            out.push_str(&format!("  | {l}\n"));
        }
    }
    out
}

/// `h01 · Health check · failed (deploy.yml:12:5)` — a failure's header line.
pub fn failure_header(host: &str, t: &TaskReport) -> String {
    format!(
        "{host} · {} · {} ({})",
        t.name,
        t.status.as_str(),
        t.location
    )
}

/// The recap: a table per play (hosts with failures first), then each failure in full, then
/// the totals.
pub fn recap(r: &RunReport) -> String {
    let mut out = String::new();
    for p in &r.plays {
        out.push_str(&format!("\nRECAP {}\n", p.name));
        let width = p
            .hosts
            .iter()
            .map(|h| h.name.chars().count())
            .max()
            .unwrap_or(4)
            .max(4);
        out.push_str(&format!(
            "{:<width$}  {:<11} {:>4} {:>7} {:>6} {:>7} {:>11} {:>8}\n",
            "host", "status", "ok", "changed", "failed", "skipped", "unreachable", "time"
        ));
        let mut hosts: Vec<&HostReport> = p.hosts.iter().collect();
        hosts.sort_by_key(|h| match h.status {
            Status::Unreachable => 0,
            Status::Failed => 1,
            _ => 2,
        });
        for h in hosts {
            let c = counts(h);
            out.push_str(&format!(
                "{:<width$}  {:<11} {:>4} {:>7} {:>6} {:>7} {:>11} {:>8}\n",
                h.name,
                h.status.as_str(),
                c[0],
                c[1],
                c[2],
                c[3],
                c[4],
                human_ms(h.duration_ms)
            ));
        }
    }
    let failures: Vec<(&str, &TaskReport)> = r
        .plays
        .iter()
        .flat_map(|p| p.hosts.iter())
        .flat_map(|h| h.tasks.iter().map(move |t| (h.name.as_str(), t)))
        .filter(|(_, t)| matches!(t.status, Status::Failed | Status::Unreachable) && !t.ignored)
        .collect();
    if !failures.is_empty() {
        out.push_str(&format!("\nFAILURES ({})\n", failures.len()));
        for (host, t) in failures {
            out.push_str(&failure_header(host, t));
            out.push('\n');
            out.push_str(&failure_details(t));
        }
    }
    let s = &r.hosts;
    out.push_str(&format!(
        "\n{} host{}: {} ok, {} changed, {} failed, {} unreachable{} — {}\n",
        s.hosts,
        if s.hosts == 1 { "" } else { "s" },
        s.ok,
        s.changed,
        s.failed,
        s.unreachable,
        if s.skipped > 0 {
            format!(", {} skipped", s.skipped)
        } else {
            String::new()
        },
        human_ms(r.duration_ms)
    ));
    if r.interrupted {
        out.push_str("interrupted: results are what was known when the run stopped\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{CheckReport, ErrorReport};

    fn task(status: Status) -> TaskReport {
        TaskReport {
            id: "#1".into(),
            name: "Health".into(),
            kind: "local".into(),
            status,
            ignored: false,
            message: Some("rc: expected eq 0, found 3".into()),
            error: None,
            checks: vec![CheckReport {
                field: "rc".into(),
                matcher: "eq".into(),
                expected: 0.into(),
                actual: 3.into(),
                passed: false,
                location: "pb.yml:4:5".into(),
            }],
            output: serde_json::json!({"rc": 3, "stdout": "", "stderr": "a\nb\nc\nd\ne\nf\ng"}),
            attempts: 1,
            duration_ms: 1500,
            location: "pb.yml:3:5".into(),
            warnings: Vec::new(),
        }
    }

    #[test]
    fn a_failure_shows_expected_found_place_and_stderr_tail() {
        let t = task(Status::Failed);
        assert_eq!(
            failure_header("h01", &t),
            "h01 · Health · failed (pb.yml:3:5)"
        );
        assert_eq!(
            failure_details(&t),
            "  rc: expected eq 0, found 3  (pb.yml:4:5)\n  stderr (last lines):\n  | c\n  | d\n  | e\n  | f\n  | g\n"
        );
    }

    #[test]
    fn an_error_shows_kind_message_and_help() {
        let mut t = task(Status::Unreachable);
        t.checks.clear();
        t.output = serde_json::json!({});
        t.error = Some(ErrorReport {
            kind: "connect".into(),
            message: "cannot connect to 127.0.0.1:1: refused".into(),
            help: Some("is sshd running?".into()),
        });
        assert_eq!(
            failure_details(&t),
            "  connect: cannot connect to 127.0.0.1:1: refused\n  help: is sshd running?\n"
        );
    }

    #[test]
    fn task_lines_have_no_escape_codes_without_color() {
        let t = task(Status::Failed);
        let line = task_line("h01", &t, 5, false);
        assert_eq!(
            line,
            "h01    failed      Health  (1.5s) — rc: expected eq 0, found 3"
        );
        assert!(task_line("h01", &t, 5, true).contains('\u{1b}'));
    }

    #[test]
    fn outputs_put_each_field_on_its_line() {
        let t = task(Status::Ok);
        assert_eq!(
            outputs(&t, 2),
            "  rc: 3\n  stdout: \n  stderr: |\n    a\n    b\n    c\n    d\n    e\n    f\n    g\n"
        );
    }
}
