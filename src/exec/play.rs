//! Plays, one after another, and within a play its hosts in rolling batches: `batch` sizes in
//! order, at most `concurrency` hosts in flight, no further batch once `max_failures` is
//! exceeded or the run is stopped. Hosts never wait for each other except at batch boundaries
//! and `run_once`. A host that failed one play sits out the later ones. Input: the prepared
//! plays; output: a `PlayReport` per play, hosts in inventory order.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{OnceCell, Semaphore};
use tokio::task::JoinHandle;

use super::context::PlayRun;
use super::prepare::{Prepared, PreparedPlay};
use super::{DEFAULT_CONCURRENCY, Events, RunRequest, is_dead};
use crate::inventory::Host;
use crate::playbook::Play;
use crate::report::event::Event;
use crate::report::{HostReport, PlayReport, Status};
use crate::steps::Limits;
use crate::steps::fleet::Slots;
use crate::units::CountOrPercent;
use crate::vars::Scope;

/// Runs every prepared play in order.
pub(crate) async fn run_plays(
    req: &RunRequest,
    prepared: Prepared,
    events: &Events,
    run_started: std::time::Instant,
) -> Vec<PlayReport> {
    let dir = Arc::new(req.playbook.dir.clone());
    let inventory = Arc::new(req.inventory.clone());
    let mut reports = Vec::new();
    let mut dead: HashSet<String> = HashSet::new();
    for p in prepared.plays {
        events.send(Event::PlayStarted {
            name: p.play.display_name(),
            hosts: p.hosts.len(),
        });
        let n = p.play.steps.len();
        let pr = Arc::new(PlayRun {
            play: p.play.clone(),
            graph: p.graph.clone(),
            dir: dir.clone(),
            once: (0..n).map(|_| OnceCell::new()).collect(),
            tags: req.tags.clone(),
            skip_tags: req.skip_tags.clone(),
            dry_run: req.dry_run,
            once_elsewhere: p.once_elsewhere,
            events: events.clone(),
            cancel: req.cancel.clone(),
            limits: Limits::default(),
            inventory: inventory.clone(),
            redactor: events.redactor.clone(),
            throttles: p
                .play
                .steps
                .iter()
                .map(|s| {
                    s.throttle
                        .as_ref()
                        .map(|t| Arc::new(Semaphore::new(t.value)))
                })
                .collect(),
            group_limits: group_limits(&p.play),
            fleets: std::sync::Mutex::new(Vec::new()),
            run_started,
            gateways: Arc::new(crate::conn::via::Gateways::new(inventory.clone())),
        });
        let concurrency = req
            .concurrency
            .or(p.play.strategy.concurrency)
            .unwrap_or(DEFAULT_CONCURRENCY)
            .max(1);
        let gateways = pr.gateways.clone();
        let report = run_play(pr, p, concurrency, &dead).await;
        gateways.close_all().await;
        dead.extend(
            report
                .hosts
                .iter()
                .filter(|h| is_dead(h.status))
                .map(|h| h.name.clone()),
        );
        reports.push(report);
    }
    reports
}

/// `strategy.limits` as semaphores, sorted by group name.
fn group_limits(play: &Play) -> Vec<(String, Arc<Semaphore>)> {
    let mut limits: Vec<(String, Arc<Semaphore>)> = play
        .strategy
        .limits
        .iter()
        .flatten()
        .map(|(g, n)| (g.clone(), Arc::new(Semaphore::new(n.value.max(1)))))
        .collect();
    limits.sort_by(|a, b| a.0.cmp(&b.0));
    limits
}

/// The batches and failure bound of one play.
struct Batches {
    sizes: Vec<CountOrPercent>,
    /// Failed hosts past which no further batch starts.
    threshold: Option<usize>,
    failures: Arc<AtomicUsize>,
}

impl Batches {
    /// The size of batch `n` (the last size repeats; no sizes: one batch of every host).
    fn size(&self, n: usize, total: usize) -> usize {
        match self.sizes.get(n).or(self.sizes.last()) {
            Some(s) => s.of(total).max(1),
            None => total,
        }
    }

    fn exceeded(&self) -> bool {
        self.threshold
            .is_some_and(|t| self.failures.load(Ordering::SeqCst) > t)
    }
}

async fn run_play(
    pr: Arc<PlayRun>,
    p: PreparedPlay,
    concurrency: usize,
    dead: &HashSet<String>,
) -> PlayReport {
    let total = p.hosts.len();
    let batches = Batches {
        sizes: p
            .play
            .strategy
            .batch
            .clone()
            .map(|b| b.into_vec())
            .unwrap_or_default(),
        threshold: p.play.strategy.max_failures.map(|m| m.of(total)),
        failures: Arc::new(AtomicUsize::new(0)),
    };
    let sem = Arc::new(Semaphore::new(concurrency));
    let mut results: Vec<Option<HostReport>> = vec![None; total];
    let mut next = 0;
    let mut batch_no = 0;
    let mut stop_reason: Option<String> = None;
    while next < total {
        if pr.cancel.stop_new.is_cancelled() {
            stop_reason = Some("the run was interrupted".into());
            break;
        }
        let end = (next + batches.size(batch_no, total)).min(total);
        // The fleet of a `fleet` step is this batch.
        pr.start_batch((next..end).map(|i| p.hosts[i].0.name.clone()).collect());
        let handles: Vec<(usize, JoinHandle<HostReport>)> = (next..end)
            .map(|idx| {
                let (host, scope) = &p.hosts[idx];
                let excluded = dead.contains(&host.name);
                let h = spawn_host(&pr, &sem, &batches, host.clone(), scope.clone(), excluded);
                (idx, h)
            })
            .collect();
        for (idx, h) in handles {
            results[idx] = Some(match h.await {
                Ok(r) => r,
                Err(e) => internal_error(&pr, &p.hosts[idx].0, &e.to_string()),
            });
        }
        next = end;
        batch_no += 1;
        if batches.exceeded() && next < total {
            let reason = max_failures_reason(&p.play, batches.failures.load(Ordering::SeqCst));
            pr.events.send(Event::Warning {
                message: format!("{reason}; no further batch starts"),
                location: None,
                help: None,
            });
            stop_reason = Some(reason);
            break;
        }
    }
    let reason = stop_reason.unwrap_or_else(|| "not run".into());
    let hosts = results
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.unwrap_or_else(|| pr.skip_host(&p.hosts[i].0, &reason)))
        .collect();
    PlayReport {
        name: p.play.display_name(),
        hosts,
    }
}

/// Starts one host of a batch: it waits for a slot among those in flight, then runs — unless
/// it failed an earlier play, the run was stopped, or too many hosts have failed meanwhile.
fn spawn_host(
    pr: &Arc<PlayRun>,
    sem: &Arc<Semaphore>,
    batches: &Batches,
    host: Arc<Host>,
    scope: Scope,
    excluded: bool,
) -> JoinHandle<HostReport> {
    let pr = pr.clone();
    let sem = sem.clone();
    let failures = batches.failures.clone();
    let threshold = batches.threshold;
    tokio::spawn(async move {
        // The host's groups' limits first (in name order), then a slot among all hosts: a host
        // waiting for its group does not hold a slot another group's host could use.
        let mut sems: Vec<Arc<Semaphore>> = pr
            .group_limits
            .iter()
            .filter(|(group, _)| host.groups.iter().any(|g| g == group))
            .map(|(_, s)| s.clone())
            .collect();
        sems.push(sem);
        let slots = Slots::new(sems);
        let permit = tokio::select! {
            ok = slots.take() => ok.then_some(()),
            _ = pr.cancel.stop_new.cancelled() => None,
        };
        let too_many = threshold.is_some_and(|t| failures.load(Ordering::SeqCst) > t);
        let skip = if excluded {
            Some("the host failed in an earlier play")
        } else if permit.is_none() || pr.cancel.stop_new.is_cancelled() {
            Some("the run was interrupted")
        } else if too_many {
            Some("max_failures was exceeded")
        } else {
            None
        };
        let report = match skip {
            Some(reason) => {
                pr.leave_out(&host.name, reason);
                pr.skip_host(&host, reason)
            }
            None => super::host::run_host(pr.clone(), host.clone(), scope, slots.clone()).await,
        };
        if is_dead(report.status) {
            failures.fetch_add(1, Ordering::SeqCst);
        }
        pr.events.send(Event::HostFinished {
            host: report.name.clone(),
            status: report.status,
            duration_ms: report.duration_ms,
        });
        slots.give_back();
        report
    })
}

/// A host whose task panicked: failed, with the panic's message on its first step.
fn internal_error(pr: &PlayRun, host: &Host, error: &str) -> HostReport {
    let mut r = pr.skip_host(host, "internal error");
    r.status = Status::Failed;
    if let Some(t) = r.tasks.first_mut() {
        t.status = Status::Failed;
        t.message = Some(format!("internal error: {error}"));
    }
    r
}

fn max_failures_reason(play: &Play, failed: usize) -> String {
    format!(
        "max_failures ({}) was exceeded: {failed} host{} failed",
        play.strategy
            .max_failures
            .map(|m| m.to_string())
            .unwrap_or_default(),
        if failed == 1 { "" } else { "s" }
    )
}
