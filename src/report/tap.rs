//! TAP 14 output (`--tap FILE`): one test point per host × step, in play, host and step order
//! (`ok 3 - h01 - Deploy - Health`), with a YAML diagnostic block for failures (message,
//! severity, where, failed checks with expected and found, the error); skipped tasks are
//! `# SKIP reason`, failures that `ignore_errors` let pass are `not ok … # TODO ignored`.
//! Built from the final, redacted `RunReport`. Checked in tests with tap-parser, the TAP 14
//! reference parser.

use serde_json::{Value as Json, json};

use super::{RunReport, Status, TaskReport};

pub fn render(r: &RunReport) -> String {
    let tasks: Vec<(&str, &str, &TaskReport)> = r
        .plays
        .iter()
        .flat_map(|p| p.hosts.iter().map(move |h| (p.name.as_str(), h)))
        .flat_map(|(p, h)| h.tasks.iter().map(move |t| (p, h.name.as_str(), t)))
        .collect();
    let mut out = String::from("TAP version 14\n");
    if tasks.is_empty() {
        out.push_str("1..0 # SKIP no host × step to run\n");
        return out;
    }
    out.push_str(&format!("1..{}\n", tasks.len()));
    for (n, (play, host, t)) in tasks.iter().enumerate() {
        let failed = matches!(t.status, Status::Failed | Status::Unreachable);
        let desc = escape(&format!("{host} - {play} - {}", t.name));
        let directive = match t.status {
            Status::Skipped => format!(
                " # SKIP {}",
                escape(t.message.as_deref().unwrap_or("skipped"))
            ),
            _ if failed && t.ignored => " # TODO ignored failure (ignore_errors)".to_string(),
            _ => String::new(),
        };
        out.push_str(&format!(
            "{} {} - {desc}{directive}\n",
            if failed { "not ok" } else { "ok" },
            n + 1,
        ));
        if failed {
            out.push_str(&diagnostic(t));
        }
    }
    out
}

/// A test point's description or directive text: one line, with `\` and `#` escaped (TAP 14).
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('#', "\\#")
        .replace(['\n', '\r'], " ")
}

/// The YAML block under a failed test point, indented two spaces. Values are written as JSON,
/// which YAML reads as flow scalars, sequences and mappings.
fn diagnostic(t: &TaskReport) -> String {
    let mut lines: Vec<(String, Json)> = vec![
        (
            "message".into(),
            Json::String(
                t.message
                    .clone()
                    .unwrap_or_else(|| t.status.as_str().into()),
            ),
        ),
        (
            "severity".into(),
            Json::String(if t.ignored { "todo" } else { "fail" }.into()),
        ),
        ("status".into(), Json::String(t.status.as_str().into())),
        ("step".into(), Json::String(t.id.clone())),
        ("kind".into(), Json::String(t.kind.clone())),
        ("at".into(), Json::String(t.location.to_string())),
        ("attempts".into(), json!(t.attempts)),
        ("duration_ms".into(), json!(t.duration_ms)),
    ];
    if let Some(e) = &t.error {
        lines.push((
            "error".into(),
            json!({ "kind": e.kind, "message": e.message, "help": e.help }),
        ));
    }
    let checks: Vec<Json> = t
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| {
            json!({
                "field": c.field,
                "matcher": c.matcher,
                "expected": c.expected,
                "found": c.actual,
                "at": c.location.as_ref().map_or("default expectation".to_string(), |l| l.to_string()),
            })
        })
        .collect();
    if !checks.is_empty() {
        lines.push(("checks".into(), Json::Array(checks)));
    }
    let mut out = String::from("  ---\n");
    for (k, v) in lines {
        out.push_str(&format!("  {k}: {v}\n"));
    }
    out.push_str("  ...\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_escape_hash_backslash_and_newlines() {
        assert_eq!(escape("a #1 \\ b\nc"), "a \\#1 \\\\ b c");
    }
}
