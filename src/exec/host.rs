//! One host's run of one play: its task graph walked with every ready step started (up to
//! `PER_HOST_PARALLEL` at once) over the host's one SSH connection. A failed step (not
//! ignored) stops the host from starting more; an unreachable one cancels what still runs.
//! Steps that never ran are skipped with the reason. Input: the play's shared state, the host
//! and its scope; output: the `HostReport`, with task events sent as they happen.

use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio_util::sync::CancellationToken;

use super::PER_HOST_PARALLEL;
use super::context::PlayRun;
use super::task::{self, TaskInput, TaskResult};
use crate::conn::HostConn;
use crate::inventory::Host;
use crate::report::event::Event;
use crate::report::{HostReport, Status, TaskReport};
use crate::steps::fleet::Slots;
use crate::vars::{Scope, ValueMap};

/// What a host's tasks borrow while they run.
struct HostCx {
    pr: Arc<PlayRun>,
    host: Arc<Host>,
    scope: Scope,
    conn: HostConn,
    cancel: CancellationToken,
    slots: Arc<Slots>,
}

impl HostCx {
    fn send(&self, ev: Event) {
        self.pr.events.send(ev);
    }
}

/// The state of one host's graph walk.
struct Walk {
    done: Vec<Option<TaskResult>>,
    started: Vec<bool>,
    /// Every finished step's result fields, as `steps.<id>`.
    outputs: ValueMap,
    /// Variables `set` steps defined.
    set_vars: ValueMap,
    /// Why the host stopped starting steps, once it has.
    stopped: Option<String>,
}

/// Runs one host's task graph.
pub(crate) async fn run_host(
    pr: Arc<PlayRun>,
    host: Arc<Host>,
    scope: Scope,
    slots: Arc<Slots>,
) -> HostReport {
    let started = Instant::now();
    let n = pr.play.steps.len();
    let cx = HostCx {
        conn: HostConn::new_in(&host, &pr.inventory),
        cancel: pr.cancel.hard.child_token(),
        pr,
        host,
        scope,
        slots,
    };
    let mut w = Walk {
        done: vec![None; n],
        started: vec![false; n],
        outputs: ValueMap::new(),
        set_vars: ValueMap::new(),
        stopped: None,
    };
    cx.send(Event::HostStarted {
        host: cx.host.name.clone(),
    });
    walk(&cx, &mut w).await;
    cx.conn.close().await;
    cx.pr.gateways.close(&cx.host.name).await;
    let tasks = w.finish(&cx);
    HostReport {
        name: cx.host.name.clone(),
        address: cx.host.address.clone(),
        status: HostReport::compute_status(&tasks),
        duration_ms: started.elapsed().as_millis() as u64,
        tasks,
    }
}

/// Starts every ready step and takes in what finishes, until nothing runs.
async fn walk(cx: &HostCx, w: &mut Walk) {
    let mut running = FuturesUnordered::new();
    loop {
        // A skipped step is done at once and may make others ready: start until no pass
        // skips anything (bounded: each pass starts at least one step or ends).
        while w.stopped.is_none() && !cx.pr.cancel.stop_new.is_cancelled() {
            let ready = w.ready(cx, PER_HOST_PARALLEL.saturating_sub(running.len()));
            let mut skipped = false;
            for i in &ready {
                match w.start(cx, *i) {
                    Some(input) => {
                        let once = cx.pr.play.steps[*i].run_once.then(|| &cx.pr.once[*i]);
                        let throttle = cx.pr.throttles.get(*i).cloned().flatten();
                        running.push(run_task(*i, input, once, throttle, cx.pr.offset_ms()));
                    }
                    None => skipped = true,
                }
            }
            if !skipped {
                break;
            }
        }
        let Some((i, r)) = running.next().await else {
            break;
        };
        w.take(cx, i, r);
    }
}

impl Walk {
    /// Up to `room` steps whose dependencies are done and that have not started, in order.
    fn ready(&self, cx: &HostCx, room: usize) -> Vec<usize> {
        let g = &cx.pr.graph;
        g.order
            .iter()
            .copied()
            .filter(|&i| !self.started[i] && g.deps[i].iter().all(|&d| self.done[d].is_some()))
            .take(room)
            .collect()
    }

    /// Why a ready step will not run: a failed dependency, its tags, a dry run.
    fn skip_reason(&self, cx: &HostCx, i: usize) -> Option<String> {
        let play = &cx.pr.play;
        let failed_dep = cx.pr.graph.deps[i].iter().find(|&&d| {
            self.done[d].as_ref().is_some_and(|r| {
                matches!(r.report.status, Status::Failed | Status::Unreachable) && !r.report.ignored
            })
        });
        if let Some(&d) = failed_dep {
            return Some(format!(
                "needs `{}`, which failed",
                play.steps[d].display_name()
            ));
        }
        if let Some(r) = cx.pr.tag_skip(&play.steps[i].tags) {
            return Some(r);
        }
        if let Some(k) = cx.pr.once_elsewhere.filter(|_| play.steps[i].run_once) {
            return Some(crate::report::merge::run_once_elsewhere(k));
        }
        cx.pr.dry_run.then(|| "dry run".to_string())
    }

    /// Marks a ready step started: skipped at once (returns `None`) or its task's input.
    fn start<'a>(&mut self, cx: &'a HostCx, i: usize) -> Option<TaskInput<'a>> {
        self.started[i] = true;
        let step = &cx.pr.play.steps[i];
        if let Some(reason) = self.skip_reason(cx, i) {
            cx.pr.leave_out_of(i, &cx.host.name, &reason);
            let mut r = task::skip(step, reason);
            r.report.started_ms = Some(cx.pr.offset_ms());
            cx.send(Event::TaskFinished {
                host: cx.host.name.clone(),
                task: Box::new(r.report.clone()),
            });
            self.done[i] = Some(r);
            return None;
        }
        cx.send(Event::TaskStarted {
            host: cx.host.name.clone(),
            id: step.id.clone(),
            step: step.display_name(),
        });
        Some(TaskInput {
            step,
            host: &cx.host,
            scope: &cx.scope,
            set_vars: self.set_vars.clone(),
            steps: self.outputs.clone(),
            conn: &cx.conn,
            dir: cx.pr.dir.as_path(),
            cancel: &cx.cancel,
            limits: cx.pr.limits,
            redactor: &cx.pr.redactor,
            fleet: cx.pr.barrier(i),
            slots: Some(cx.slots.clone()),
            gateways: &cx.pr.gateways,
        })
    }

    /// Takes in a finished task: its outputs for later steps (moved out of the result), its
    /// event, and whether the host stops.
    fn take(&mut self, cx: &HostCx, i: usize, mut r: TaskResult) {
        let play = &cx.pr.play;
        // Later steps read the fields as template values; the JSON copy goes now (the report
        // keeps its own), so a kept body is held twice while the host runs, not three times.
        let output = std::mem::take(&mut r.output);
        self.outputs.insert(
            play.steps[i].id.clone(),
            crate::template::json_to_value(&output),
        );
        drop(output);
        for (k, v) in &r.set {
            self.set_vars
                .insert(k.clone(), crate::template::json_to_value(v));
        }
        cx.pr.redactor.add_vars(&play.secrets, &r.set);
        // A fleet step that ended without arriving (`when` false, a template error, a
        // timeout) brings no value; one that arrived is unaffected.
        let why = r
            .report
            .message
            .clone()
            .unwrap_or_else(|| format!("its fleet step ended {}", r.report.status.as_str()));
        cx.pr.leave_out_of(i, &cx.host.name, &why);
        cx.send(Event::TaskFinished {
            host: cx.host.name.clone(),
            task: Box::new(r.report.clone()),
        });
        match r.report.status {
            Status::Unreachable => {
                self.stopped = Some(format!(
                    "the host is unreachable ({})",
                    r.report.message.clone().unwrap_or_default()
                ));
                cx.cancel.cancel();
            }
            Status::Failed if !r.report.ignored && self.stopped.is_none() => {
                self.stopped = Some(format!("step `{}` failed", play.steps[i].display_name()));
            }
            _ => {}
        }
        self.done[i] = Some(r);
    }

    /// Every step's report, those that never ran skipped with the reason the host stopped.
    fn finish(&mut self, cx: &HostCx) -> Vec<TaskReport> {
        let reason = self
            .stopped
            .clone()
            .unwrap_or_else(|| "the run was interrupted".into());
        let done = std::mem::take(&mut self.done);
        done.into_iter()
            .enumerate()
            .map(|(i, r)| match r {
                Some(r) => r.report,
                None => {
                    cx.pr.leave_out_of(i, &cx.host.name, &reason);
                    let mut r = task::skip(&cx.pr.play.steps[i], reason.clone()).report;
                    r.started_ms = Some(cx.pr.offset_ms());
                    cx.send(Event::TaskFinished {
                        host: cx.host.name.clone(),
                        task: Box::new(r.clone()),
                    });
                    r
                }
            })
            .collect()
    }
}

/// Runs one task; a `run_once` step runs on the first host that gets there and every other
/// host takes its result. `at` is when it started, in milliseconds after the run did.
async fn run_task(
    i: usize,
    input: TaskInput<'_>,
    once: Option<&tokio::sync::OnceCell<TaskResult>>,
    throttle: Option<Arc<tokio::sync::Semaphore>>,
    at: u64,
) -> (usize, TaskResult) {
    // `throttle`: wait for one of the step's slots (the wait counts in the step's time).
    let _slot = match throttle {
        Some(t) => t.acquire_owned().await.ok(),
        None => None,
    };
    let mut r = match once {
        Some(cell) => {
            let mut r = cell.get_or_init(|| task::run(input)).await.clone();
            if r.report.message.is_none() {
                r.report.message = Some("run_once".into());
            }
            r
        }
        None => task::run(input).await,
    };
    r.report.started_ms = Some(at);
    (i, r)
}
