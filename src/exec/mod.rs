//! The runner: `sortie run`. Loads the playbook and inventory, builds each host's scope, then
//! runs plays one after another; within a play, hosts in rolling batches bounded by
//! `concurrency` (hosts never wait for each other except at batch boundaries and `run_once`);
//! within a host, the task graph with ready steps side by side. Workers send `Event`s to the
//! one reporter (`report::live`), and the `RunReport` is built afterwards from the sorted
//! outcomes. Signals: the first SIGINT/SIGTERM stops new tasks and gives running ones a grace
//! period; a second cancels at once; the report is written either way (exit 4).

pub mod task;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde_json::Value as Json;
use tokio::sync::{OnceCell, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::app::{self, exit};
use crate::cli::RunArgs;
use crate::conn::HostConn;
use crate::diag::{Diagnostic, Diagnostics};
use crate::inventory::{Host, Inventory};
use crate::plan::Graph;
use crate::playbook::{Play, Playbook};
use crate::report::live::{Event, Reporter};
use crate::report::redact::Redactor;
use crate::report::{HostReport, PlayReport, RunReport, Status, Summary, TaskReport, write_atomic};
use crate::steps::Limits;
use crate::vars::{self, RunInfo, Scope, VarMap};

use task::{TaskInput, TaskResult};

/// Default hosts in flight at once.
pub const DEFAULT_CONCURRENCY: usize = 50;
/// Steps of one host running side by side at most.
pub const PER_HOST_PARALLEL: usize = 8;
/// How long running tasks may finish after the first interrupt.
pub const GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// What `sortie run` was asked to do, resolved.
pub struct RunPlan {
    pub playbook: Playbook,
    pub inventory: Inventory,
    pub extra: VarMap,
    pub args: RunArgs,
    /// Only these hosts (from `--retry-failed`).
    pub only: Option<Vec<String>>,
    pub warnings: Vec<String>,
}

/// `sortie run`: returns the exit code.
pub fn run_command(args: &RunArgs) -> i32 {
    let plan = match prepare(args) {
        Ok(p) => p,
        Err(d) => {
            app::report_diagnostics(&d);
            return exit::INVALID;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(512)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return exit::INVALID;
        }
    };
    let report = rt.block_on(run(plan));
    match report {
        Ok(r) => r.exit_code,
        Err(d) => {
            app::report_diagnostics(&d);
            exit::INVALID
        }
    }
}

/// Loads and checks everything `run` needs; nothing is contacted.
pub fn prepare(args: &RunArgs) -> Result<RunPlan, Diagnostics> {
    let (playbook, inventory) = app::load_all(&args.playbook, &args.inventory)?;
    let extra = vars::parse_extra(&args.extra_vars)?;
    let mut warnings = Vec::new();
    let only = match &args.retry_failed {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Diagnostics::from(
                    Diagnostic::error(format!("cannot read report `{}`: {e}", path.display()))
                        .help(
                            "give the JSON file an earlier `sortie run --report FILE.json` wrote",
                        ),
                )
            })?;
            let r: RunReport = serde_json::from_str(&text).map_err(|e| {
                let file = crate::diag::register_source(path.display().to_string(), text.as_str());
                Diagnostics::from(
                    Diagnostic::error(format!("`{}` is not a sortie report: {e}", path.display()))
                        .at(crate::diag::Span::point(
                            file,
                            e.line().max(1) as u32,
                            e.column().max(1) as u32,
                        ))
                        .help(
                            "give the JSON file an earlier `sortie run --report FILE.json` wrote",
                        ),
                )
            })?;
            let hosts = r.failed_hosts();
            if hosts.is_empty() {
                warnings.push(format!(
                    "{}: no host failed; nothing to retry",
                    path.display()
                ));
            }
            Some(hosts)
        }
    };
    if let Some(l) = &args.limit
        && let Err(d) = inventory.select(l, None)
    {
        return Err(d.into());
    }
    if args.concurrency == Some(0) {
        return Err(Diagnostic::error("`-c 0` would run nothing")
            .help("give at least 1 host in flight")
            .into());
    }
    Ok(RunPlan {
        playbook,
        inventory,
        extra,
        args: args.clone(),
        only,
        warnings,
    })
}

fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Runs a prepared plan and writes the requested reports.
pub async fn run(plan: RunPlan) -> Result<RunReport, Diagnostics> {
    let started = Instant::now();
    let started_at = now_rfc3339();
    let run_id = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let info = RunInfo {
        id: run_id.clone(),
        started_at: started_at.clone(),
    };
    let stop_new = CancellationToken::new();
    let hard = CancellationToken::new();
    let interrupted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Made first so that the signal handler reports through the reporter (it holds a weak
    // sender: the channel still closes when the run's senders are dropped).
    let (tx, rx) = mpsc::unbounded_channel::<Event>();
    spawn_signal_handler(
        stop_new.clone(),
        hard.clone(),
        interrupted.clone(),
        tx.downgrade(),
    );
    let redactor = Arc::new(Redactor::for_run(&plan.playbook, &plan.inventory));
    let load_warnings: Vec<String> = plan
        .playbook
        .warnings
        .iter()
        .map(|w| w.one_line())
        .collect();

    // Resolve hosts and scopes of every play first: bad input stops the run before anything.
    let mut prepared = Vec::new();
    let mut diags = Diagnostics::default();
    for play in &plan.playbook.plays {
        let hosts = match app::select_hosts(
            &plan.inventory,
            &play.hosts.value,
            Some(play.hosts.span),
            plan.args.limit.as_deref(),
        ) {
            Ok(h) => h,
            Err(d) => {
                diags.push(d);
                continue;
            }
        };
        let hosts: Vec<&Host> = hosts
            .into_iter()
            .filter(|h| plan.only.as_ref().is_none_or(|o| o.contains(&h.name)))
            .collect();
        let mut scoped = Vec::new();
        for h in hosts {
            match vars::host_scope(play, h, &plan.extra, &info) {
                Ok(s) => {
                    // The values of the play's `secrets:` for this host.
                    redactor.add_vars(&play.secrets, &s.base);
                    redactor.add_vars(&play.secrets, &s.extra);
                    scoped.push((Arc::new(h.clone()), s))
                }
                Err(d) => diags.push(d),
            }
        }
        let graph = match Graph::build(play) {
            Ok(g) => g,
            Err(d) => {
                diags.push(d);
                continue;
            }
        };
        prepared.push((play, Arc::new(graph), scoped));
    }
    if diags.has_errors() {
        return Err(diags);
    }

    let mut warnings = plan.warnings.clone();
    warnings.extend(load_warnings);
    for h in &plan.inventory.hosts {
        if h.ssh.host_key_checking == Some(crate::inventory::HostKeyChecking::Off) {
            let w = format!(
                "host key checking is OFF for {}: connections can be intercepted",
                h.name
            );
            if !warnings.contains(&w) {
                warnings.push(w);
            }
        }
    }
    let reporter = Reporter::new(plan.args.format, plan.args.verbose, redactor.clone());
    let total_hosts: usize = prepared.iter().map(|(_, _, s)| s.len()).sum();
    let reporter_task = tokio::spawn(reporter.run(rx, total_hosts));
    for w in &warnings {
        let _ = tx.send(Event::Warning { message: w.clone() });
    }
    let _ = tx.send(Event::RunStarted {
        run_id: run_id.clone(),
        playbook: plan.args.playbook.display().to_string(),
        hosts: total_hosts,
        dry_run: plan.args.dry_run,
    });

    if plan.args.dry_run {
        match dry_run_text(&plan) {
            Ok(text) => {
                let _ = tx.send(Event::Plan { text });
            }
            Err(d) => return Err(d.into()),
        }
    }
    let dir = Arc::new(plan.playbook.dir.clone());
    let mut play_reports = Vec::new();
    let mut dead: HashSet<String> = HashSet::new();
    for (play, graph, scoped) in prepared {
        let _ = tx.send(Event::PlayStarted {
            name: play.display_name(),
            hosts: scoped.len(),
        });
        let pr = run_play(
            Arc::new(play.clone()),
            graph,
            scoped,
            &plan,
            dir.clone(),
            &dead,
            tx.clone(),
            stop_new.clone(),
            hard.clone(),
            redactor.clone(),
        )
        .await;
        for h in &pr.hosts {
            if matches!(h.status, Status::Failed | Status::Unreachable) {
                dead.insert(h.name.clone());
            }
        }
        play_reports.push(pr);
    }
    let mut report = RunReport {
        version: 1,
        run_id,
        playbook: plan.args.playbook.display().to_string(),
        inventory: plan.inventory.sources.clone(),
        started_at,
        duration_ms: started.elapsed().as_millis() as u64,
        interrupted: interrupted.load(std::sync::atomic::Ordering::SeqCst),
        exit_code: 0,
        dry_run: plan.args.dry_run,
        warnings,
        plays: play_reports,
        tasks: Summary::default(),
        hosts: Summary::default(),
    };
    report.finish();
    let _ = tx.send(Event::RunFinished {
        report: Box::new(report.clone()),
    });
    drop(tx);
    let _ = reporter_task.await;
    write_reports(&plan.args, &redactor.report(&report));
    Ok(report)
}

fn write_reports(args: &RunArgs, report: &RunReport) {
    if let Some(p) = &args.report {
        let text = serde_json::to_vec_pretty(report).unwrap_or_default();
        if let Err(e) = write_atomic(p, &text) {
            eprintln!("error: cannot write report `{}`: {e}", p.display());
        }
    }
    if let Some(p) = &args.junit
        && let Err(e) = write_atomic(p, crate::report::junit::render(report).as_bytes())
    {
        eprintln!("error: cannot write JUnit file `{}`: {e}", p.display());
    }
    if let Some(p) = &args.tap
        && let Err(e) = write_atomic(p, crate::report::tap::render(report).as_bytes())
    {
        eprintln!("error: cannot write TAP file `{}`: {e}", p.display());
    }
}

fn spawn_signal_handler(
    stop_new: CancellationToken,
    hard: CancellationToken,
    flag: Arc<std::sync::atomic::AtomicBool>,
    events: mpsc::WeakUnboundedSender<Event>,
) {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        let mut count = 0;
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            count += 1;
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            if count == 1 {
                let message = format!(
                    "interrupted: no new steps start; running ones get {}s (interrupt again to stop now)",
                    GRACE.as_secs()
                );
                // Through the reporter, which owns the terminal; straight to stderr if the
                // run's reporting is already over.
                match events.upgrade() {
                    Some(tx) => {
                        let _ = tx.send(Event::Warning { message });
                    }
                    None => eprintln!("{message}"),
                }
                stop_new.cancel();
                let hard2 = hard.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(GRACE).await;
                    hard2.cancel();
                });
            } else {
                hard.cancel();
                break;
            }
        }
    });
}

/// Shared state of one play's run.
struct PlayRun {
    play: Arc<Play>,
    graph: Arc<Graph>,
    dir: Arc<PathBuf>,
    once: Vec<OnceCell<TaskResult>>,
    tags: Vec<String>,
    skip_tags: Vec<String>,
    dry_run: bool,
    events: mpsc::UnboundedSender<Event>,
    stop_new: CancellationToken,
    hard: CancellationToken,
    limits: Limits,
    /// For SSH connections whose `jump` names another inventory host.
    inventory: Arc<Inventory>,
    redactor: Arc<Redactor>,
}

#[allow(clippy::too_many_arguments)]
async fn run_play(
    play: Arc<Play>,
    graph: Arc<Graph>,
    scoped: Vec<(Arc<Host>, Scope)>,
    plan: &RunPlan,
    dir: Arc<PathBuf>,
    dead: &HashSet<String>,
    events: mpsc::UnboundedSender<Event>,
    stop_new: CancellationToken,
    hard: CancellationToken,
    redactor: Arc<Redactor>,
) -> PlayReport {
    let n = play.steps.len();
    let pr = Arc::new(PlayRun {
        play: play.clone(),
        graph,
        dir,
        once: (0..n).map(|_| OnceCell::new()).collect(),
        tags: plan.args.tags.clone(),
        skip_tags: plan.args.skip_tags.clone(),
        dry_run: plan.args.dry_run,
        events: events.clone(),
        stop_new: stop_new.clone(),
        hard: hard.clone(),
        limits: Limits::default(),
        inventory: Arc::new(plan.inventory.clone()),
        redactor,
    });
    let total = scoped.len();
    let concurrency = plan
        .args
        .concurrency
        .or(play.strategy.concurrency)
        .unwrap_or(DEFAULT_CONCURRENCY)
        .max(1);
    let sizes: Vec<crate::units::CountOrPercent> = play
        .strategy
        .batch
        .clone()
        .map(|b| b.into_vec())
        .unwrap_or_default();
    let threshold = play.strategy.max_failures.map(|m| m.of(total));
    let sem = Arc::new(Semaphore::new(concurrency));
    let failures = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut results: Vec<Option<HostReport>> = vec![None; total];
    let mut next = 0;
    let mut batch_no = 0;
    let mut stop_reason: Option<String> = None;
    while next < total {
        let size = match sizes.get(batch_no).or(sizes.last()) {
            Some(s) => s.of(total).max(1),
            None => total,
        };
        let end = (next + size).min(total);
        if stop_reason.is_none() && stop_new.is_cancelled() {
            stop_reason = Some("the run was interrupted".into());
        }
        if stop_reason.is_some() {
            break;
        }
        let mut handles = Vec::new();
        for (idx, (host, scope)) in scoped.iter().enumerate().take(end).skip(next) {
            let host = host.clone();
            let scope = scope.clone();
            let pr = pr.clone();
            let sem = sem.clone();
            let failures = failures.clone();
            let excluded = dead.contains(&host.name);
            handles.push((
                idx,
                tokio::spawn(async move {
                    let permit = tokio::select! {
                        p = sem.acquire_owned() => p.ok(),
                        _ = pr.stop_new.cancelled() => None,
                    };
                    let too_many = threshold
                        .is_some_and(|t| failures.load(std::sync::atomic::Ordering::SeqCst) > t);
                    let report = if excluded {
                        skip_host(&pr, &host, "the host failed in an earlier play")
                    } else if permit.is_none() || pr.stop_new.is_cancelled() {
                        skip_host(&pr, &host, "the run was interrupted")
                    } else if too_many {
                        skip_host(&pr, &host, "max_failures was exceeded")
                    } else {
                        run_host(pr.clone(), host.clone(), scope).await
                    };
                    if matches!(report.status, Status::Failed | Status::Unreachable) {
                        failures.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    let _ = pr.events.send(Event::HostFinished {
                        host: report.name.clone(),
                        status: report.status,
                        duration_ms: report.duration_ms,
                    });
                    drop(permit);
                    report
                }),
            ));
        }
        for (idx, h) in handles {
            match h.await {
                Ok(r) => results[idx] = Some(r),
                Err(e) => {
                    let host = &scoped[idx].0;
                    let mut r = skip_host(&pr, host, "internal error");
                    r.status = Status::Failed;
                    if let Some(t) = r.tasks.first_mut() {
                        t.status = Status::Failed;
                        t.message = Some(format!("internal error: {e}"));
                    }
                    results[idx] = Some(r);
                }
            }
        }
        next = end;
        batch_no += 1;
        if let Some(t) = threshold {
            let f = failures.load(std::sync::atomic::Ordering::SeqCst);
            if f > t && next < total {
                stop_reason = Some(format!(
                    "max_failures ({}) was exceeded: {f} host{} failed",
                    play.strategy
                        .max_failures
                        .map(|m| m.to_string())
                        .unwrap_or_default(),
                    if f == 1 { "" } else { "s" }
                ));
                let _ = events.send(Event::Warning {
                    message: format!(
                        "{}; no further batch starts",
                        stop_reason.clone().unwrap_or_default()
                    ),
                });
            }
        }
    }
    let reason = stop_reason.unwrap_or_else(|| "not run".into());
    let hosts = results
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.unwrap_or_else(|| skip_host(&pr, &scoped[i].0, &reason)))
        .collect();
    PlayReport {
        name: play.display_name(),
        hosts,
    }
}

fn skip_host(pr: &PlayRun, host: &Host, reason: &str) -> HostReport {
    let tasks: Vec<TaskReport> = pr
        .play
        .steps
        .iter()
        .map(|s| task::skip(s, reason).report)
        .collect();
    HostReport {
        name: host.name.clone(),
        address: host.address.clone(),
        status: Status::Skipped,
        duration_ms: 0,
        tasks,
    }
}

fn tag_skip(pr: &PlayRun, tags: &[String]) -> Option<String> {
    if !pr.tags.is_empty() && !tags.iter().any(|t| pr.tags.contains(t) || t == "always") {
        return Some(format!("not tagged {}", pr.tags.join(",")));
    }
    if let Some(t) = tags.iter().find(|t| pr.skip_tags.contains(t)) {
        return Some(format!("tag `{t}` is skipped"));
    }
    None
}

/// Runs one host's task graph.
async fn run_host(pr: Arc<PlayRun>, host: Arc<Host>, scope: Scope) -> HostReport {
    let started = Instant::now();
    let play = &pr.play;
    let graph = &pr.graph;
    let n = play.steps.len();
    let conn = HostConn::new_in(&host, &pr.inventory);
    let cancel = pr.hard.child_token();
    let mut done: Vec<Option<TaskResult>> = vec![None; n];
    let mut started_flags = vec![false; n];
    let mut outputs = crate::vars::ValueMap::new();
    let mut set_vars = crate::vars::ValueMap::new();
    let mut stopped: Option<String> = None;
    let mut running = FuturesUnordered::new();
    let _ = pr.events.send(Event::HostStarted {
        host: host.name.clone(),
    });
    loop {
        // Start every ready step (bounded), unless the host has stopped.
        if stopped.is_none() && !pr.stop_new.is_cancelled() {
            for &i in &graph.order {
                if running.len() >= PER_HOST_PARALLEL {
                    break;
                }
                if started_flags[i] || !graph.deps[i].iter().all(|&d| done[d].is_some()) {
                    continue;
                }
                started_flags[i] = true;
                let step = &play.steps[i];
                let failed_dep = graph.deps[i].iter().find(|&&d| {
                    done[d].as_ref().is_some_and(|r| {
                        matches!(r.report.status, Status::Failed | Status::Unreachable)
                            && !r.report.ignored
                    })
                });
                let skip_reason = if let Some(&d) = failed_dep {
                    Some(format!(
                        "needs `{}`, which failed",
                        play.steps[d].display_name()
                    ))
                } else if let Some(r) = tag_skip(&pr, &step.tags) {
                    Some(r)
                } else if pr.dry_run {
                    Some("dry run".to_string())
                } else {
                    None
                };
                if let Some(reason) = skip_reason {
                    let r = task::skip(step, reason);
                    let _ = pr.events.send(Event::TaskFinished {
                        host: host.name.clone(),
                        task: Box::new(r.report.clone()),
                    });
                    done[i] = Some(r);
                    continue;
                }
                let _ = pr.events.send(Event::TaskStarted {
                    host: host.name.clone(),
                    id: step.id.clone(),
                    step: step.display_name(),
                });
                let input = TaskInput {
                    step,
                    host: &host,
                    scope: &scope,
                    set_vars: set_vars.clone(),
                    steps: outputs.clone(),
                    conn: &conn,
                    dir: pr.dir.as_path(),
                    cancel: &cancel,
                    limits: pr.limits,
                    redactor: &pr.redactor,
                };
                let once = step.run_once.then(|| &pr.once[i]);
                running.push(async move {
                    let r = match once {
                        Some(cell) => {
                            let mut r = cell.get_or_init(|| task::run(input)).await.clone();
                            if r.report.message.is_none() {
                                r.report.message = Some("run_once".into());
                            }
                            r
                        }
                        None => task::run(input).await,
                    };
                    (i, r)
                });
            }
        }
        if running.is_empty() {
            break;
        }
        let Some((i, r)) = running.next().await else {
            break;
        };
        outputs.insert(
            play.steps[i].id.clone(),
            crate::template::json_to_value(&r.output),
        );
        for (k, v) in &r.set {
            set_vars.insert(k.clone(), crate::template::json_to_value(v));
        }
        pr.redactor.add_vars(&play.secrets, &r.set);
        let _ = pr.events.send(Event::TaskFinished {
            host: host.name.clone(),
            task: Box::new(r.report.clone()),
        });
        match r.report.status {
            Status::Unreachable => {
                stopped = Some(format!(
                    "the host is unreachable ({})",
                    r.report.message.clone().unwrap_or_default()
                ));
                cancel.cancel();
            }
            Status::Failed if !r.report.ignored && stopped.is_none() => {
                stopped = Some(format!("step `{}` failed", play.steps[i].display_name()));
            }
            _ => {}
        }
        done[i] = Some(r);
    }
    drop(running);
    conn.close().await;
    let reason = stopped.unwrap_or_else(|| "the run was interrupted".into());
    let tasks: Vec<TaskReport> = done
        .into_iter()
        .enumerate()
        .map(|(i, r)| match r {
            Some(r) => r.report,
            None => {
                let r = task::skip(&play.steps[i], reason.clone()).report;
                let _ = pr.events.send(Event::TaskFinished {
                    host: host.name.clone(),
                    task: Box::new(r.clone()),
                });
                r
            }
        })
        .collect();
    let status = HostReport::compute_status(&tasks);
    HostReport {
        name: host.name.clone(),
        address: host.address.clone(),
        status,
        duration_ms: started.elapsed().as_millis() as u64,
        tasks,
    }
}

/// Output of a dry run: the plan text of each host (used by tests and `--dry-run`).
pub fn dry_run_text(plan: &RunPlan) -> Result<String, Diagnostic> {
    let info = RunInfo {
        id: "dry-run".into(),
        started_at: String::new(),
    };
    let mut plans = Vec::new();
    for play in &plan.playbook.plays {
        let graph = Graph::build(play)?;
        for h in app::select_hosts(
            &plan.inventory,
            &play.hosts.value,
            Some(play.hosts.span),
            plan.args.limit.as_deref(),
        )? {
            let scope = vars::host_scope(play, h, &plan.extra, &info)?;
            let ctx = scope.context(&VarMap::new(), &Json::Object(Default::default()), None);
            plans.push(crate::plan::host_plan(play, &graph, h, &ctx));
        }
    }
    Ok(crate::plan::render_text(&plans))
}
