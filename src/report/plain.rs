//! Plain text for people: one line per finished task, and the recap — the per-host table
//! (failures first) and every failure with its place and expected-vs-actual. The same text is
//! printed on a terminal and off one; the live view (when there is a terminal) only adds bars.

use super::{HostReport, RunReport, Status, TaskReport};

/// `h01  ✓ ok       Health check  (12ms)` — one finished task.
pub fn task_line(host: &str, t: &TaskReport, width: usize) -> String {
    let mut line = format!(
        "{host:<width$}  {:<11} {}  ({})",
        t.status.as_str(),
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
        line.push_str(m);
    }
    line
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

/// The recap: a table per play (hosts with failures first), then each failure in full.
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
            out.push_str(&format!(
                "{host} · {} · {} ({})\n",
                t.name,
                t.status.as_str(),
                t.location
            ));
            if let Some(e) = &t.error {
                out.push_str(&format!("  {}: {}\n", e.kind, e.message));
                if let Some(h) = &e.help {
                    out.push_str(&format!("  help: {h}\n"));
                }
            }
            for c in t.checks.iter().filter(|c| !c.passed) {
                out.push_str(&format!(
                    "  {}: expected {} {}, found {}  ({})\n",
                    c.field,
                    c.matcher,
                    crate::expect::short(&c.expected),
                    crate::expect::short(&c.actual),
                    c.location
                ));
            }
            if t.error.is_none()
                && t.checks.iter().all(|c| c.passed)
                && let Some(m) = &t.message
            {
                out.push_str(&format!("  {m}\n"));
            }
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
