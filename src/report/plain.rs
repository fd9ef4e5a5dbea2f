//! Plain text for people: one line per finished task with its warnings and failure rendered
//! as diagnostics (`report::diagnose`), a task's outputs (`-v`), and the recap — the per-host
//! table (failures first) and every failure again, pointing at the line that failed. The same
//! text is printed on a terminal and off one; the live view (`report::human`) only adds bars
//! and color. Input is `TaskReport`s from events and the final `RunReport`, both redacted by
//! the engine.

use console::Style;
use serde_json::Value as Json;

use super::diagnose;
use super::event::Event;
use super::{HostReport, RunReport, Status, TaskReport};

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

/// A finished task as the plain and live views print it: its line, its warnings, its failure
/// as diagnostics, and with `-v` its outputs.
pub fn task_block(host: &str, t: &TaskReport, width: usize, color: bool, verbose: u8) -> String {
    let mut s = task_line(host, t, width, color);
    s.push('\n');
    s.push_str(&diagnose::warnings_text(t, color));
    s.push_str(&diagnose::failure_text(t, color));
    if verbose > 0 {
        s.push_str(&outputs(t, width + 2));
    }
    s
}

/// `h01 · Health check · failed` — a failure's header line in the recap.
pub fn failure_header(host: &str, t: &TaskReport) -> String {
    format!("{host} · {} · {}", t.name, t.status.as_str())
}

/// The recap: a table per play (hosts with failures first), then each failure in full, then
/// the totals.
pub fn recap(r: &RunReport, color: bool) -> String {
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
        .filter(|(_, t)| diagnose::is_failure(t))
        .collect();
    if !failures.is_empty() {
        out.push_str(&format!("\nFAILURES ({})\n", failures.len()));
        for (i, (host, t)) in failures.into_iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str(&failure_header(host, t));
            out.push('\n');
            out.push_str(&diagnose::failure_text(t, color));
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

/// Text shared by the plain and live views for events that are not per task: the run's
/// header, a play's header, a dry run's plan and the recap.
pub fn common_text(ev: &Event, color: bool) -> String {
    match ev {
        Event::RunStarted {
            playbook,
            hosts,
            dry_run,
            ..
        } => format!(
            "sortie: {playbook} on {hosts} host{}{}\n",
            if *hosts == 1 { "" } else { "s" },
            if *dry_run { " (dry run)" } else { "" }
        ),
        Event::PlayStarted { name, hosts } => format!(
            "\nPLAY {name} ({hosts} host{})\n",
            if *hosts == 1 { "" } else { "s" }
        ),
        Event::Plan { text } => format!("\n{text}"),
        Event::RunFinished { report } => recap(report, color),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::diagnose::tests::task as failed_task;

    fn task(status: Status) -> TaskReport {
        let mut t = failed_task("plain-test.yml");
        t.name = "Health".into();
        t.status = status;
        t.duration_ms = 1500;
        t.output = serde_json::json!({"rc": 3, "stdout": "", "stderr": "a\nb"});
        t
    }

    #[test]
    fn a_failed_task_is_its_line_then_its_diagnostic() {
        let t = task(Status::Failed);
        assert_eq!(failure_header("h01", &t), "h01 · Health · failed");
        assert_eq!(
            task_block("h01", &t, 5, false, 0),
            "h01    failed      Health  (1.5s) — rc: expected eq 0, found 3\n\
             error: expectation failed: rc\n \
             --> plain-test.yml:3:19\n  |\n\
             3 |     expect: { rc: 0 }\n  \
             |                   ^ expected 0, found 3\n  \
             = note: stderr:\n          | a\n          | b\n"
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
            "  rc: 3\n  stdout: \n  stderr: |\n    a\n    b\n"
        );
        assert_eq!(
            task_block("h01", &t, 5, false, 0),
            "h01    ok          Health  (1.5s)\n"
        );
    }
}
