//! TAP 14 output (`--tap FILE`): one test point per host × step, with a YAML diagnostic block
//! for failures; skipped tasks are `# SKIP`. Built from the final `RunReport`.

use super::{RunReport, Status};

pub fn render(r: &RunReport) -> String {
    let tasks: Vec<(&str, &str, &super::TaskReport)> = r
        .plays
        .iter()
        .flat_map(|p| p.hosts.iter().map(move |h| (p.name.as_str(), h)))
        .flat_map(|(p, h)| h.tasks.iter().map(move |t| (p, h.name.as_str(), t)))
        .collect();
    let mut out = format!("TAP version 14\n1..{}\n", tasks.len());
    for (n, (play, host, t)) in tasks.iter().enumerate() {
        let desc = format!("{host} - {} - {}", play, t.name).replace('#', "\\#");
        let ok = !matches!(t.status, Status::Failed | Status::Unreachable) || t.ignored;
        let directive = match t.status {
            Status::Skipped => format!(
                " # SKIP {}",
                t.message.clone().unwrap_or_default().replace('#', "\\#")
            ),
            _ if t.ignored => " # TODO ignored failure".to_string(),
            _ => String::new(),
        };
        out.push_str(&format!(
            "{} {} - {}{}\n",
            if ok { "ok" } else { "not ok" },
            n + 1,
            desc,
            directive
        ));
        if !ok || t.ignored {
            out.push_str("  ---\n");
            out.push_str(&format!("  status: {}\n", t.status.as_str()));
            if let Some(m) = &t.message {
                out.push_str(&format!(
                    "  message: {}\n",
                    serde_json::Value::String(m.clone())
                ));
            }
            out.push_str(&format!(
                "  at: {}\n",
                serde_json::Value::String(t.location.clone())
            ));
            for c in t.checks.iter().filter(|c| !c.passed) {
                out.push_str(&format!(
                    "  - field: {}\n    expected: {}\n    found: {}\n",
                    serde_json::Value::String(format!("{} {}", c.field, c.matcher)),
                    c.expected,
                    c.actual
                ));
            }
            out.push_str("  ...\n");
        }
    }
    out
}
