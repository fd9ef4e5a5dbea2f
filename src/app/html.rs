//! `sortie report html REPORT.json [-o FILE]`: the HTML page (`report::html`) of a saved
//! report. The report is redacted already; the failures quote playbook lines, which are read
//! again from the playbook the report names, so the secrets a run of that playbook and
//! inventory would know are learned again (`exec::plans`) and masked in the page.

use std::path::PathBuf;

use super::{load_inventory, report_diagnostics, run::read_report};
use crate::cli::ReportHtmlArgs;
use crate::exec::{self, RunRequest};
use crate::exit;
use crate::report::redact::Redactor;
use crate::report::{RunReport, html, write_atomic};

/// `sortie report html`: returns the exit code.
pub fn report_html(args: &ReportHtmlArgs) -> i32 {
    let report = match read_report(&args.report) {
        Ok(r) => r,
        Err(d) => {
            report_diagnostics(&d);
            return exit::INVALID;
        }
    };
    let page = html::render(&report, &redactor(&report));
    match &args.output {
        Some(p) => match write_atomic(p, page.as_bytes()) {
            Ok(()) => exit::OK,
            Err(e) => {
                eprintln!("error: cannot write HTML file `{}`: {e}", p.display());
                exit::INVALID
            }
        },
        None => super::generate::write_stdout(page.as_bytes()),
    }
}

/// The secrets of the report's playbook and inventory, as far as they can still be loaded;
/// none when the playbook is gone (then no playbook line is quoted either).
pub(super) fn redactor(report: &RunReport) -> Redactor {
    let Ok(playbook) = crate::playbook::load(report.playbook.as_ref()) else {
        return Redactor::new();
    };
    let sources: Vec<PathBuf> = report.inventory.iter().map(PathBuf::from).collect();
    let inventory = load_inventory(&sources).unwrap_or_default();
    let req = RunRequest::new(playbook, inventory);
    match exec::plans(&req) {
        Ok(p) => p.redactor,
        Err(_) => Redactor::for_run(&req.playbook, &req.inventory),
    }
}
