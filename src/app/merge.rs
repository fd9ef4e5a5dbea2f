//! `sortie report merge`: reads the shard reports named on the command line, joins them
//! (`report::merge`), writes the merged JSON (`--report`, else stdout), JUnit and TAP files,
//! prints the recap on stderr and returns the exit code one unsharded run would have had.
//! Unreadable or refused reports are invalid input (exit 3), every problem shown at once.

use std::io::Write;

use super::report_diagnostics;
use super::run::read_report;
use crate::cli::{MergeArgs, ReportArgs, ReportCommand};
use crate::diag::Diagnostics;
use crate::exit;
use crate::report::{junit, merge, plain, tap, write_atomic};

/// `sortie report …`: returns the exit code.
pub fn report(args: &ReportArgs) -> i32 {
    match &args.command {
        ReportCommand::Merge(m) => merge_reports(m),
        ReportCommand::Html(h) => super::report_html(h),
    }
}

/// Whether any task of the report is a `fleet` step (its result has `values`).
fn has_fleet_steps(r: &crate::report::RunReport) -> bool {
    r.plays
        .iter()
        .flat_map(|p| &p.hosts)
        .flat_map(|h| &h.tasks)
        .any(|t| t.kind == "fleet")
}

fn merge_reports(args: &MergeArgs) -> i32 {
    let mut reports = Vec::new();
    let mut d = Diagnostics::default();
    for p in &args.reports {
        match read_report(p) {
            Ok(r) => reports.push((p.display().to_string(), r)),
            Err(e) => d.extend(e),
        }
    }
    if d.has_errors() {
        report_diagnostics(&d);
        return exit::INVALID;
    }
    let mut merged = match merge::merge(reports, args.partial) {
        Ok(r) => r,
        Err(d) => {
            report_diagnostics(&d);
            return exit::INVALID;
        }
    };
    // Fleet steps: one verdict over every shard's hosts, as one run would have given.
    if has_fleet_steps(&merged) {
        match crate::playbook::load(std::path::Path::new(&merged.playbook)) {
            Ok(pb) => {
                crate::exec::rejudge_fleets(&mut merged, &pb);
            }
            Err(_) => merged.warnings.push(format!(
                "fleet steps keep each shard's verdict: the playbook `{}` cannot be loaded here",
                merged.playbook
            )),
        }
    }
    // Every shard's report is redacted already; the merge adds no value of a run.
    let json = serde_json::to_string_pretty(&merged).unwrap_or_default();
    let mut ok = true;
    let mut write = |path: &std::path::Path, what: &str, text: &str| {
        if let Err(e) = write_atomic(path, text.as_bytes()) {
            eprintln!("error: cannot write {what} `{}`: {e}", path.display());
            ok = false;
        }
    };
    match &args.report {
        Some(p) => write(p, "report", &json),
        None => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(json.as_bytes());
            let _ = out.write_all(b"\n");
        }
    }
    if let Some(p) = &args.junit {
        write(p, "JUnit file", &junit::render(&merged));
    }
    if let Some(p) = &args.tap {
        write(p, "TAP file", &tap::render(&merged));
    }
    if let Some(p) = &args.html {
        let page = crate::report::html::render(&merged, &super::html::redactor(&merged));
        write(p, "HTML file", &page);
    }
    let color = crate::report::live::stderr_color();
    let mut err = std::io::stderr().lock();
    for w in &merged.warnings {
        let _ = writeln!(err, "warning: {w}");
    }
    let _ = err.write_all(plain::recap(&merged, color).as_bytes());
    let _ = writeln!(
        err,
        "merged {} shard report{}: {} hosts",
        merged.merged.len(),
        if merged.merged.len() == 1 { "" } else { "s" },
        merged.hosts.hosts
    );
    if ok { merged.exit_code } else { exit::INVALID }
}
