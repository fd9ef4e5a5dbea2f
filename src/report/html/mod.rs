//! The HTML report: one self-contained page (inline CSS and script, a Content-Security-Policy
//! that forbids every fetch) rendered from a `RunReport` — the summary, the failures first with
//! the diagnostic renderer's text (`report::diagnose`, HTML-escaped), and a timeline with a row
//! per host and a bar per task on one time axis, with filters by status and host name. Input:
//! a finished (redacted) report and the run's `Redactor` for the playbook lines the diagnostics
//! quote; output: the page's text, which `app` writes (`--html`, `sortie report html`) and
//! `serve` answers `/` with. The page is static HTML: the script only filters rows and shows a
//! bar's details on keyboard focus, so it reads the same with scripts off.

use std::fmt::Write;

use super::diagnose;
use super::plain::human_ms;
use super::redact::Redactor;
use super::{HostReport, RunReport, Status, TaskReport};

const STYLE: &str = include_str!("page.css");
const SCRIPT: &str = include_str!("page.js");
/// Nothing on the page may load anything: no fetch, image, font, frame or form target.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
                   img-src data:; form-action 'none'; base-uri 'none'";
/// Every status, in the order the summary and the filters show them.
const STATUSES: [Status; 5] = [
    Status::Failed,
    Status::Unreachable,
    Status::Changed,
    Status::Ok,
    Status::Skipped,
];

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One task placed on the time axis.
struct Bar<'a> {
    play: &'a str,
    task: &'a TaskReport,
    start: u64,
}

/// One host over every play: its worst status and its tasks on the axis.
struct Row<'a> {
    name: &'a str,
    status: Status,
    /// Position in the inventory (first appearance), to keep that order within a rank.
    order: usize,
    bars: Vec<Bar<'a>>,
    /// Each play's report of this host, for the failures.
    plays: Vec<(&'a str, &'a HostReport)>,
}

/// Failed and unreachable hosts come first, then the rest in inventory order.
fn rank(s: Status) -> u8 {
    match s {
        Status::Unreachable => 0,
        Status::Failed => 1,
        _ => 2,
    }
}

/// The hosts as rows, failures first. A task without a recorded start (a report from before
/// starts were recorded) is laid after the host's previous one.
fn rows(report: &RunReport) -> Vec<Row<'_>> {
    let mut rows: Vec<Row> = Vec::new();
    for p in &report.plays {
        for h in &p.hosts {
            let i = match rows.iter().position(|r| r.name == h.name) {
                Some(i) => i,
                None => {
                    rows.push(Row {
                        name: &h.name,
                        status: h.status,
                        order: rows.len(),
                        bars: Vec::new(),
                        plays: Vec::new(),
                    });
                    rows.len() - 1
                }
            };
            let row = &mut rows[i];
            // The host's run status, as `RunReport::finish` counts it.
            if h.status > row.status || row.status == Status::Skipped {
                row.status = row.status.max(h.status);
            }
            row.plays.push((&p.name, h));
            let mut cursor = row
                .bars
                .last()
                .map(|b| b.start + b.task.duration_ms)
                .unwrap_or(0);
            for t in &h.tasks {
                let start = t.started_ms.unwrap_or(cursor);
                cursor = cursor.max(start + t.duration_ms);
                row.bars.push(Bar {
                    play: &p.name,
                    task: t,
                    start,
                });
            }
        }
    }
    rows.sort_by_key(|r| (rank(r.status), r.order));
    rows
}

/// The page of a finished run.
pub fn render(report: &RunReport, redactor: &Redactor) -> String {
    let rows = rows(report);
    let span = rows
        .iter()
        .flat_map(|r| r.bars.iter().map(|b| b.start + b.task.duration_ms))
        .max()
        .unwrap_or(0)
        .max(report.duration_ms)
        .max(1);
    let mut out = String::with_capacity(256 + rows.len() * 1200);
    head(&mut out, report);
    summary(&mut out, report);
    filters(&mut out, report);
    failures(&mut out, &rows, report.plays.len() > 1, redactor);
    timeline(&mut out, &rows, span, report.plays.len() > 1);
    let _ = write!(
        out,
        "<div id=\"tip\" role=\"tooltip\" hidden></div>\n<script>{SCRIPT}</script>\n</body>\n</html>\n"
    );
    out
}

fn head(out: &mut String, r: &RunReport) {
    let title = escape(&r.playbook);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>sortie · {title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
    );
}

fn summary(out: &mut String, r: &RunReport) {
    let outcome = if r.interrupted {
        "interrupted"
    } else if r.hosts.unreachable > 0 {
        "unreachable"
    } else if r.hosts.failed > 0 {
        "failed"
    } else {
        "ok"
    };
    let _ = write!(
        out,
        "<header>\n<h1>{} <span class=\"outcome s-{outcome}\">{outcome}</span></h1>\n\
         <p class=\"meta\">run <code>{}</code> · started {} · {} · {} host{} · exit {}{}</p>\n",
        escape(&r.playbook),
        escape(&r.run_id),
        escape(&r.started_at),
        human_ms(r.duration_ms),
        r.hosts.hosts,
        if r.hosts.hosts == 1 { "" } else { "s" },
        r.exit_code,
        if r.dry_run { " · dry run" } else { "" },
    );
    out.push_str("<ul id=\"summary\">\n");
    for s in STATUSES {
        let n = count(&r.hosts, s);
        let _ = writeln!(
            out,
            "<li class=\"s-{0}\" data-status=\"{0}\"><b>{n}</b> {0}</li>",
            s.as_str()
        );
    }
    out.push_str("</ul>\n");
    let t = &r.tasks;
    let _ = writeln!(
        out,
        "<p class=\"meta\">tasks: {} ok · {} changed · {} failed · {} unreachable · {} skipped</p>",
        t.ok, t.changed, t.failed, t.unreachable, t.skipped
    );
    for w in &r.warnings {
        let _ = writeln!(out, "<p class=\"warning\">warning: {}</p>", escape(w));
    }
    out.push_str("</header>\n");
}

fn count(s: &super::Summary, st: Status) -> usize {
    match st {
        Status::Ok => s.ok,
        Status::Changed => s.changed,
        Status::Skipped => s.skipped,
        Status::Failed => s.failed,
        Status::Unreachable => s.unreachable,
    }
}

fn filters(out: &mut String, r: &RunReport) {
    out.push_str("<form id=\"filters\" role=\"search\" onsubmit=\"return false\">\n<fieldset><legend>status</legend>\n");
    for s in STATUSES {
        let _ = writeln!(
            out,
            "<label class=\"s-{0}\"><input type=\"checkbox\" name=\"status\" value=\"{0}\" checked> {0} ({1})</label>",
            s.as_str(),
            count(&r.hosts, s)
        );
    }
    out.push_str(
        "</fieldset>\n<label>host <input type=\"search\" id=\"host-filter\" \
         placeholder=\"name contains…\" autocomplete=\"off\"></label>\n\
         <output id=\"shown\" aria-live=\"polite\"></output>\n</form>\n",
    );
}

fn failures(out: &mut String, rows: &[Row], plays: bool, redactor: &Redactor) {
    let mut body = String::new();
    let mut n = 0;
    for row in rows.iter().filter(|r| rank(r.status) < 2) {
        for (play, h) in &row.plays {
            for t in h.tasks.iter().filter(|t| diagnose::is_failure(t)) {
                n += 1;
                let text = redactor.redact(&diagnose::failure_text(t, false));
                let _ = write!(
                    body,
                    "<article class=\"failure s-{st}\" data-host=\"{host}\" data-status=\"{st}\">\n\
                     <h3><span class=\"host\">{host}</span> · {name}{play} <span class=\"badge s-{ts}\">{ts}</span></h3>\n\
                     <pre>{text}</pre>\n</article>\n",
                    st = row.status.as_str(),
                    host = escape(row.name),
                    name = escape(&t.name),
                    play = if plays {
                        format!(" <small>({})</small>", escape(play))
                    } else {
                        String::new()
                    },
                    ts = t.status.as_str(),
                    text = escape(&text),
                );
            }
        }
    }
    let _ = write!(
        out,
        "<section id=\"failures\">\n<h2>Failures ({n})</h2>\n{}</section>\n",
        if n == 0 {
            "<p class=\"none\">No host failed.</p>\n".to_string()
        } else {
            body
        }
    );
}

/// Ticks at a round step that gives about six of them.
fn ticks(span: u64) -> Vec<u64> {
    let rough = (span / 6).max(1);
    let step = [
        1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 15_000, 30_000,
    ]
    .into_iter()
    .chain((1..).map(|m| m * 60_000))
    .find(|&s| s >= rough)
    .unwrap_or(rough);
    (0..=span / step).map(|i| i * step).collect()
}

fn pct(ms: u64, span: u64) -> String {
    format!("{:.2}", ms as f64 * 100.0 / span as f64)
}

fn timeline(out: &mut String, rows: &[Row], span: u64, plays: bool) {
    let _ = write!(
        out,
        "<section id=\"timeline\">\n<h2>Timeline <small>{} host{}, 0 – {}</small></h2>\n\
         <div class=\"row axis\" aria-hidden=\"true\"><span class=\"host\"></span><span class=\"track\">",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" },
        human_ms(span)
    );
    for t in ticks(span) {
        let _ = write!(
            out,
            "<i style=\"left:{}%\">{}</i>",
            pct(t, span),
            human_ms(t)
        );
    }
    out.push_str("</span></div>\n<div id=\"rows\">\n");
    for row in rows {
        let host = escape(row.name);
        let _ = write!(
            out,
            "<div class=\"row\" data-host=\"{host}\" data-status=\"{st}\"><span class=\"host s-{st}\" title=\"{host}: {st}\">{host}</span><span class=\"track\">",
            st = row.status.as_str()
        );
        for b in &row.bars {
            bar(out, b, &host, span, plays);
        }
        out.push_str("</span></div>\n");
    }
    out.push_str("</div>\n</section>\n");
}

/// One task's bar: its status colour, and name, host, duration and outcome in its title.
fn bar(out: &mut String, b: &Bar, host: &str, span: u64, plays: bool) {
    let t = b.task;
    let mut outcome = t.status.as_str().to_string();
    if t.ignored {
        outcome.push_str(" (ignored)");
    }
    if let Some(m) = &t.message {
        let m: String = m.chars().take(160).collect();
        let _ = write!(outcome, ": {m}");
    }
    let play = if plays {
        format!(" [{}]", escape(b.play))
    } else {
        String::new()
    };
    let _ = write!(
        out,
        "<i class=\"bar s-{}\" style=\"left:{}%;width:{}%\" tabindex=\"0\" title=\"{} · {host} · {} · {}{play}\"></i>",
        t.status.as_str(),
        pct(b.start, span),
        pct(t.duration_ms, span),
        escape(&t.name),
        human_ms(t.duration_ms),
        escape(&outcome),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{PlayReport, Summary};

    fn report(tasks: Vec<(&str, Status, u64)>) -> RunReport {
        let host = |name: &str, status: Status| HostReport {
            name: name.into(),
            address: "127.0.0.1".into(),
            status,
            duration_ms: 30,
            tasks: tasks
                .iter()
                .enumerate()
                .map(|(i, (n, s, d))| {
                    let mut t = diagnose::tests::task("html-test.yml");
                    t.name = (*n).into();
                    t.status = if status == Status::Failed {
                        *s
                    } else {
                        Status::Ok
                    };
                    t.duration_ms = *d;
                    t.started_ms = Some(i as u64 * 10);
                    t
                })
                .collect(),
        };
        let mut r = RunReport {
            version: 2,
            run_id: "r1".into(),
            playbook: "<pb>.yml".into(),
            inventory: vec![],
            shard: 0,
            shards: 1,
            playbook_sha256: String::new(),
            inventory_sha256: String::new(),
            merged: vec![],
            missing_shards: vec![],
            started_at: "2026-12-02T00:00:00Z".into(),
            duration_ms: 40,
            interrupted: false,
            exit_code: 0,
            dry_run: false,
            warnings: vec![],
            plays: vec![PlayReport {
                name: "p".into(),
                hosts: vec![host("a", Status::Ok), host("b<&>", Status::Failed)],
            }],
            tasks: Summary::default(),
            hosts: Summary::default(),
        };
        r.finish();
        r
    }

    #[test]
    fn failing_hosts_come_first_and_everything_is_escaped() {
        let r = report(vec![
            ("one", Status::Ok, 5),
            ("two \"x\"", Status::Failed, 7),
        ]);
        let page = render(&r, &Redactor::new());
        assert!(page.contains("<title>sortie · &lt;pb&gt;.yml</title>"));
        assert!(!page.contains("b<&>"));
        let b = page.find("data-host=\"b&lt;&amp;&gt;\" data-status=\"failed\"><span");
        let a = page.find("data-host=\"a\" data-status=\"ok\"><span");
        assert!(b.is_some() && a.is_some() && b < a, "{page}");
        // The failure quotes the playbook line through the diagnostic renderer.
        assert!(page.contains("<pre>error: expectation failed: rc\n --&gt; html-test.yml:3:19"));
        assert!(page.contains("title=\"two &quot;x&quot; · b&lt;&amp;&gt; · 7ms · failed: rc: expected eq 0, found 3\""), "{page}");
        assert!(
            page.contains("style=\"left:25.00%;width:17.50%\""),
            "{page}"
        );
    }

    #[test]
    fn quoted_playbook_lines_are_redacted() {
        let r = report(vec![("one", Status::Failed, 5)]);
        let redactor = Redactor::new();
        redactor.add("expect: { rc");
        let page = render(&r, &redactor);
        assert!(!page.contains("expect: { rc"));
        assert!(page.contains("3 |     ***: 0 }"), "{page}");
    }

    #[test]
    fn tasks_without_a_start_follow_each_other() {
        let mut r = report(vec![("one", Status::Ok, 10), ("two", Status::Ok, 30)]);
        for t in &mut r.plays[0].hosts[0].tasks {
            t.started_ms = None;
        }
        let rows = rows(&r);
        let a = rows.iter().find(|r| r.name == "a").expect("a");
        assert_eq!(a.bars.iter().map(|b| b.start).collect::<Vec<_>>(), [0, 10]);
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(ticks(1000), [0, 200, 400, 600, 800, 1000]);
        assert_eq!(ticks(7), [0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(ticks(130_000).len(), 5);
    }
}
