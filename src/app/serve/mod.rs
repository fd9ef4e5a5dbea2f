//! `sortie serve`: checks as a service. The playbook and inventory are loaded and checked once
//! at start (bad input exits 3 before anything listens); then the engine (`exec::run`) runs
//! the playbook at start and every `--every`, one run after another, never two at once, and
//! each finished run replaces the last one that `http` answers from: `/healthz`, `/metrics`,
//! `/report.json`, `/` and `/probe?host=H` (one host run now, bounded and cached). One line on
//! stderr per run. The first SIGTERM or SIGINT lets the current run finish, then the server
//! stops (exit 0); a second one cancels the run.

mod http;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;

use super::{load_all, report_diagnostics};
use crate::cli::ServeArgs;
use crate::diag::{Diagnostic, Diagnostics};
use crate::exec::{self, Cancel, RunRequest};
use crate::exit;
use crate::inventory::Inventory;
use crate::playbook::Playbook;
use crate::report::event::Discard;
use crate::report::metrics::RunCounters;
use crate::report::plain::human_ms;
use crate::report::{RunReport, Status, html};
use crate::vars::{self, VarMap};

/// How long open connections get to finish once the server stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What `serve` was asked to do, loaded and checked.
pub(super) struct Config {
    playbook: Playbook,
    inventory: Inventory,
    extra: VarMap,
    limit: Option<String>,
    concurrency: Option<usize>,
    tags: Vec<String>,
    skip_tags: Vec<String>,
    listen: SocketAddr,
    every: Duration,
    probe_cache: Duration,
    probe_concurrency: usize,
}

fn duration_flag(flag: &str, text: &str) -> Result<Duration, Diagnostic> {
    match crate::units::Duration::parse(text) {
        Ok(d) if !d.std().is_zero() => Ok(d.std()),
        Ok(_) => Err(Diagnostic::error(format!("`{flag}` must be longer than 0"))),
        Err(e) => Err(Diagnostic::error(format!("`{flag} {text}`: {e}"))
            .help("write a duration such as `30s`, `5m` or `1h`")),
    }
}

impl Config {
    fn load(args: &ServeArgs) -> Result<Config, Diagnostics> {
        let mut d = Diagnostics::default();
        let listen = args.listen.parse::<SocketAddr>().map_err(|e| {
            Diagnostic::error(format!("`--listen {}`: {e}", args.listen))
                .help("write an address and a port, such as `127.0.0.1:9108` or `[::1]:9108`")
        });
        let every = duration_flag("--every", &args.every);
        let probe_cache = match crate::units::Duration::parse(&args.probe_cache) {
            Ok(x) => Ok(x.std()),
            Err(e) => Err(Diagnostic::error(format!(
                "`--probe-cache {}`: {e}",
                args.probe_cache
            ))),
        };
        let loaded = load_all(&args.playbook, &args.inventory);
        let extra = vars::parse_extra(&args.extra_vars);
        for r in [
            listen.as_ref().err(),
            every.as_ref().err(),
            probe_cache.as_ref().err(),
        ]
        .into_iter()
        .flatten()
        {
            d.push(r.clone());
        }
        if args.probe_concurrency == 0 {
            d.push(Diagnostic::error(
                "`--probe-concurrency` must be at least 1",
            ));
        }
        let (loaded, extra) = match (loaded, extra) {
            (Ok(l), Ok(e)) => (Some(l), Some(e)),
            (l, e) => {
                for x in [l.err(), e.err()].into_iter().flatten() {
                    d.extend(x);
                }
                (None, None)
            }
        };
        match (loaded, extra, listen, every, probe_cache) {
            (Some((playbook, inventory)), Some(extra), Ok(listen), Ok(every), Ok(probe_cache))
                if d.0.is_empty() =>
            {
                Ok(Config {
                    playbook,
                    inventory,
                    extra,
                    limit: args.limit.clone(),
                    concurrency: args.concurrency,
                    tags: args.tags.clone(),
                    skip_tags: args.skip_tags.clone(),
                    listen,
                    every,
                    probe_cache,
                    probe_concurrency: args.probe_concurrency,
                })
            }
            _ => Err(d),
        }
    }

    /// A fresh request for one run: every selected host, or only `host`.
    fn request(&self, host: Option<&str>) -> RunRequest {
        let mut req = RunRequest::new(self.playbook.clone(), self.inventory.clone());
        req.extra = self.extra.clone();
        req.limit = self.limit.clone();
        req.concurrency = self.concurrency;
        req.tags = self.tags.clone();
        req.skip_tags = self.skip_tags.clone();
        req.only = host.map(|h| vec![h.to_string()]);
        req
    }
}

/// A finished run as the server answers it, rendered once.
pub(super) struct Last {
    report: RunReport,
    /// The report's JSON, redacted.
    json: String,
    html: String,
    /// Which scheduled run this was (1 for the first).
    number: u64,
    finished: Instant,
}

/// What the scheduler and the HTTP side share.
pub(super) struct Shared {
    cfg: Config,
    last: RwLock<Option<Arc<Last>>>,
    counters: Mutex<RunCounters>,
    probes: http::Probes,
    /// The scheduled run in progress, for a second signal to cancel.
    current: Mutex<Option<Cancel>>,
}

impl Shared {
    fn last(&self) -> Option<Arc<Last>> {
        self.last.read().ok().and_then(|l| l.clone())
    }

    fn counters(&self) -> RunCounters {
        self.counters.lock().map(|c| *c).unwrap_or_default()
    }
}

/// `sortie serve`: returns the exit code.
pub fn serve(args: &ServeArgs) -> i32 {
    let cfg = match Config::load(args) {
        Ok(c) => c,
        Err(d) => {
            report_diagnostics(&d);
            return exit::INVALID;
        }
    };
    // Everything a run would refuse (templates, vars, host selection) is refused now.
    match exec::plans(&cfg.request(None)) {
        Ok(p) if p.plans.is_empty() => {
            report_diagnostics(&Diagnostic::error("no play selects any host").into());
            return exit::INVALID;
        }
        Ok(_) => {}
        Err(d) => {
            report_diagnostics(&d);
            return exit::INVALID;
        }
    }
    let Some(rt) = crate::app::runtime() else {
        return exit::INVALID;
    };
    rt.block_on(main_loop(cfg))
}

async fn main_loop(cfg: Config) -> i32 {
    let listener = match tokio::net::TcpListener::bind(cfg.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", cfg.listen);
            return exit::INVALID;
        }
    };
    let addr = listener.local_addr().unwrap_or(cfg.listen);
    eprintln!(
        "sortie serve: listening on http://{addr} (a run every {})",
        human_ms(cfg.every.as_millis() as u64)
    );
    let shared = Arc::new(Shared {
        probes: http::Probes::new(cfg.probe_concurrency, cfg.probe_cache),
        cfg,
        last: RwLock::new(None),
        counters: Mutex::new(RunCounters::default()),
        current: Mutex::new(None),
    });
    let stop = CancellationToken::new();
    let server_stop = CancellationToken::new();
    spawn_signal_handler(shared.clone(), stop.clone());
    let server = tokio::spawn(http::serve(listener, shared.clone(), server_stop.clone()));
    let result = schedule(&shared, &stop).await;
    server_stop.cancel();
    let _ = server.await;
    match result {
        Ok(()) => {
            eprintln!("sortie serve: stopped");
            exit::OK
        }
        Err(d) => {
            report_diagnostics(&d);
            exit::INVALID
        }
    }
}

/// Runs the playbook now and every `every` until `stop`: one run at a time, a run that takes
/// longer than `every` delays the next. `Err` when the first run refuses its input.
async fn schedule(shared: &Arc<Shared>, stop: &CancellationToken) -> Result<(), Diagnostics> {
    let mut number = 0u64;
    while !stop.is_cancelled() {
        number += 1;
        let began = Instant::now();
        let start_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let req = shared.cfg.request(None);
        let redactor = req.redactor.clone();
        if let Ok(mut c) = shared.current.lock() {
            *c = Some(req.cancel.clone());
        }
        let result = exec::run(req, Arc::new(Discard)).await;
        if let Ok(mut c) = shared.current.lock() {
            *c = None;
        }
        match result {
            Ok(report) => {
                let failed = report.hosts.failed + report.hosts.unreachable > 0;
                if let Ok(mut c) = shared.counters.lock() {
                    c.runs += 1;
                    c.failed_runs += u64::from(failed);
                    c.last_start_unix = start_unix;
                }
                eprintln!("{}", run_line(number, &report));
                let json = serde_json::to_string_pretty(&report).unwrap_or_default();
                let last = Last {
                    json: redactor.redact(&json),
                    html: html::render(&report, &redactor),
                    report,
                    number,
                    finished: Instant::now(),
                };
                if let Ok(mut l) = shared.last.write() {
                    *l = Some(Arc::new(last));
                }
            }
            Err(d) if number == 1 => return Err(d),
            Err(d) => eprintln!(
                "{} run {number}: refused: {}",
                crate::units::utc_now_rfc3339(),
                d.0.first().map(Diagnostic::one_line).unwrap_or_default()
            ),
        }
        tokio::select! {
            _ = tokio::time::sleep_until((began + shared.cfg.every).into()) => {}
            _ = stop.cancelled() => {}
        }
    }
    Ok(())
}

/// The line a finished run logs.
fn run_line(number: u64, r: &RunReport) -> String {
    format!(
        "{} run {number}: {}, in {} (exit {}{})",
        crate::units::utc_now_rfc3339(),
        counts(r),
        human_ms(r.duration_ms),
        r.exit_code,
        if r.interrupted { ", interrupted" } else { "" }
    )
}

/// `5 hosts: 4 ok, 1 failed` — the non-zero counts of a run's hosts.
fn counts(r: &RunReport) -> String {
    let h = &r.hosts;
    let parts: Vec<String> = [
        (Status::Ok, h.ok),
        (Status::Changed, h.changed),
        (Status::Failed, h.failed),
        (Status::Unreachable, h.unreachable),
        (Status::Skipped, h.skipped),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .map(|(s, n)| format!("{n} {}", s.as_str()))
    .collect();
    format!(
        "{} host{}: {}",
        h.hosts,
        if h.hosts == 1 { "" } else { "s" },
        if parts.is_empty() {
            "none".to_string()
        } else {
            parts.join(", ")
        }
    )
}

/// The first SIGTERM/SIGINT stops the schedule after the current run; a second cancels it.
fn spawn_signal_handler(shared: Arc<Shared>, stop: CancellationToken) {
    crate::app::on_two_signals(move |count| {
        let current = shared.current.lock().ok().and_then(|c| c.clone());
        if count == 1 {
            eprintln!(
                "sortie serve: stopping{} (signal again to cancel it)",
                if current.is_some() {
                    " after the current run"
                } else {
                    ""
                }
            );
            stop.cancel();
        } else if let Some(c) = current {
            eprintln!("sortie serve: cancelling the current run");
            c.stop_new.cancel();
            c.hard.cancel();
        }
    });
}
