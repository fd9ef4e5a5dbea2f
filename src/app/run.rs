//! `sortie run`, the engine's command-line front: loads the playbook, inventory, extra vars,
//! `--retry-failed` report, `--shard` (`app::shard`) and `--run-id` into a `RunRequest`;
//! starts the runtime, the reporter that owns the terminal and the signal handler (the first
//! SIGINT/SIGTERM stops new tasks and gives running ones a grace period, a second cancels at
//! once); runs the engine; writes the `--report`, `--junit`, `--tap` and `--html` files;
//! returns the report's exit code.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::{load_all, report_diagnostics};
use crate::cli::{Format, RunArgs};
use crate::diag::{Diagnostic, Diagnostics, Span, register_source};
use crate::exec::{self, Cancel, RunRequest};
use crate::exit;
use crate::report::event::{Event, EventSink};
use crate::report::live::{Mode, Reporter};
use crate::report::redact::Redactor;
use crate::report::{RunReport, html, junit, tap, write_atomic, write_atomic_with};
use crate::vars;

/// How long running tasks may finish after the first interrupt.
pub const GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// `sortie run`: returns the exit code.
pub fn run(args: &RunArgs) -> i32 {
    let req = match request(args) {
        Ok(r) => r,
        Err(d) => {
            report_diagnostics(&d);
            return exit::INVALID;
        }
    };
    let Some(rt) = super::runtime() else {
        return exit::INVALID;
    };
    rt.block_on(drive(req, args))
}

/// The request `run`'s flags describe; nothing is contacted.
fn request(args: &RunArgs) -> Result<RunRequest, Diagnostics> {
    let (playbook, inventory) = load_all(&args.playbook, &args.inventory)?;
    let mut req = RunRequest::new(playbook, inventory);
    req.extra = vars::parse_extra(&args.extra_vars)?;
    req.limit = args.limit.clone();
    req.concurrency = args.concurrency;
    req.tags = args.tags.clone();
    req.skip_tags = args.skip_tags.clone();
    req.dry_run = args.dry_run;
    if let Some(flag) = &args.shard {
        req.shard = Some(super::shard::parse(flag, &super::shard::process_env)?.shard);
    }
    req.run_id = args
        .run_id
        .clone()
        .or_else(|| super::shard::env_run_id(&super::shard::process_env));
    if let Some(path) = &args.retry_failed {
        let hosts = read_report(path)?.failed_hosts();
        if hosts.is_empty() {
            req.warnings.push(Diagnostic::warning(format!(
                "{}: no host failed; nothing to retry",
                path.display()
            )));
        }
        req.only = Some(hosts);
    }
    Ok(req)
}

/// A saved report: an earlier run's, for `--retry-failed`, or a shard's, for `report merge`.
pub(super) fn read_report(path: &Path) -> Result<RunReport, Diagnostics> {
    let help = "give the JSON file an earlier `sortie run --report FILE.json` wrote";
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diagnostic::error(format!("cannot read report `{}`: {e}", path.display())).help(help)
    })?;
    serde_json::from_str(&text).map_err(|e| {
        let file = register_source(path.display().to_string(), text.as_str());
        Diagnostic::error(format!("`{}` is not a sortie report: {e}", path.display()))
            .at(Span::point(
                file,
                e.line().max(1) as u32,
                e.column().max(1) as u32,
            ))
            .help(help)
            .into()
    })
}

/// Runs the request with the reporter watching, then writes the report files.
async fn drive(req: RunRequest, args: &RunArgs) -> i32 {
    let (tx, rx) = mpsc::unbounded_channel::<Event>();
    spawn_signal_handler(req.cancel.clone(), tx.downgrade());
    let mode = match args.format {
        Format::Auto => Mode::detect(),
        Format::Human => Mode::Human,
        Format::Plain => Mode::Plain,
        Format::Json => Mode::Json,
    };
    let redactor = req.redactor.clone();
    let reporter = tokio::spawn(Reporter::new(mode, args.verbose, redactor.clone()).run(rx));
    let sink: Arc<dyn EventSink> = Arc::new(tx);
    // The engine holds the only strong sender: the reporter ends when the run does.
    let result = exec::run(req, sink).await;
    let _ = reporter.await;
    match result {
        Ok(report) => {
            write_reports(args, &report, &redactor);
            report.exit_code
        }
        Err(d) => {
            report_diagnostics(&d);
            exit::INVALID
        }
    }
}

/// Writes the report files. The report is redacted already; JUnit's text quotes playbook
/// lines too, so every file's text is masked once more (the JSON report's a line at a time,
/// as it is written: it is never whole in memory).
fn write_reports(args: &RunArgs, report: &RunReport, redactor: &Redactor) {
    if let Some(p) = &args.report {
        let written = write_atomic_with(p, |f| {
            let mut w = redactor.lines(f);
            serde_json::to_writer_pretty(&mut w, report)?;
            w.finish()
        });
        if let Err(e) = written {
            eprintln!("error: cannot write report `{}`: {e}", p.display());
        }
    }
    if let Some(p) = &args.junit
        && let Err(e) = write_atomic(p, redactor.redact(&junit::render(report)).as_bytes())
    {
        eprintln!("error: cannot write JUnit file `{}`: {e}", p.display());
    }
    if let Some(p) = &args.tap
        && let Err(e) = write_atomic(p, redactor.redact(&tap::render(report)).as_bytes())
    {
        eprintln!("error: cannot write TAP file `{}`: {e}", p.display());
    }
    if let Some(p) = &args.html
        && let Err(e) = write_atomic(p, html::render(report, redactor).as_bytes())
    {
        eprintln!("error: cannot write HTML file `{}`: {e}", p.display());
    }
}

/// SIGINT/SIGTERM: the first stops new tasks (and says so through the reporter, which owns
/// the terminal), the grace period later or a second signal cancels what still runs.
fn spawn_signal_handler(cancel: Cancel, events: mpsc::WeakUnboundedSender<Event>) {
    super::on_two_signals(move |count| {
        if count == 2 {
            cancel.hard.cancel();
            return;
        }
        let message = format!(
            "interrupted: no new steps start; running ones get {}s (interrupt again to stop now)",
            GRACE.as_secs()
        );
        // Straight to stderr if the run's reporting is already over.
        match events.upgrade() {
            Some(tx) => EventSink::send(
                &tx,
                Event::Warning {
                    message,
                    location: None,
                    help: None,
                },
            ),
            None => eprintln!("{message}"),
        }
        cancel.stop_new.cancel();
        let hard = cancel.hard.clone();
        tokio::spawn(async move {
            tokio::time::sleep(GRACE).await;
            hard.cancel();
        });
    });
}
