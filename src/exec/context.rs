//! What every host of one play shares while it runs — the play and its graph, the
//! `run_once` results, tags, cancellation, the event stream, the inventory (for jump hosts)
//! and the redactor — with the rules that hold for any host: which tags skip a step, and the
//! report of a host that did not run. Built by `play`, read by `host` and `task`.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::OnceCell;

use super::task::{self, TaskResult};
use super::{Cancel, Events};
use crate::inventory::{Host, Inventory};
use crate::plan::Graph;
use crate::playbook::Play;
use crate::report::redact::Redactor;
use crate::report::{HostReport, Status, TaskReport};
use crate::steps::Limits;
use crate::steps::fleet::Barrier;

/// The kind name of cross-host checks.
const FLEET: &str = <crate::steps::fleet::Fleet as crate::steps::Kind>::NAME;

/// What every host of one play shares while it runs.
pub(crate) struct PlayRun {
    pub play: Arc<Play>,
    pub graph: Arc<Graph>,
    pub dir: Arc<PathBuf>,
    /// The result of each `run_once` step, computed by the first host that gets there.
    pub once: Vec<OnceCell<TaskResult>>,
    pub tags: Vec<String>,
    pub skip_tags: Vec<String>,
    pub dry_run: bool,
    /// Under sharding, the shard that runs `run_once` steps when it is not this one.
    pub once_elsewhere: Option<u32>,
    pub events: Events,
    pub cancel: Cancel,
    pub limits: Limits,
    /// For SSH connections whose `jump` names another inventory host.
    pub inventory: Arc<Inventory>,
    pub redactor: Arc<Redactor>,
    /// Per step: its `throttle`, hosts running it at once.
    pub throttles: Vec<Option<Arc<tokio::sync::Semaphore>>>,
    /// `strategy.limits`: group → hosts of it in flight at once, in name order (the order
    /// permits are taken in, so two hosts never wait on each other).
    pub group_limits: Vec<(String, Arc<tokio::sync::Semaphore>)>,
    /// Per step: a `fleet` step's barrier for the current batch (set as each batch starts).
    pub fleets: std::sync::Mutex<Vec<Option<Arc<Barrier>>>>,
    /// When the run started: tasks record their start as an offset from it.
    pub run_started: std::time::Instant,
    /// The SSH gateways that `via` probes go through, one per via host.
    pub gateways: Arc<crate::conn::via::Gateways>,
}

impl PlayRun {
    /// Milliseconds since the run started.
    pub fn offset_ms(&self) -> u64 {
        self.run_started.elapsed().as_millis() as u64
    }

    /// New barriers for the play's `fleet` steps: the fleet is this batch's hosts.
    pub fn start_batch(&self, hosts: Vec<String>) {
        let mut f = self.fleets.lock().unwrap_or_else(|p| p.into_inner());
        *f = self
            .play
            .steps
            .iter()
            .map(|s| (s.kind == FLEET).then(|| Barrier::new(hosts.clone())))
            .collect();
    }

    /// Step `i`'s barrier, when it is a `fleet` step.
    pub fn barrier(&self, i: usize) -> Option<Arc<Barrier>> {
        let f = self.fleets.lock().unwrap_or_else(|p| p.into_inner());
        f.get(i).cloned().flatten()
    }

    /// Leaves a host out of the fleet steps it has not arrived at (it will bring no value).
    pub fn leave_out(&self, host: &str, reason: &str) {
        let f = self.fleets.lock().unwrap_or_else(|p| p.into_inner());
        for b in f.iter().flatten() {
            b.absent(host, reason);
        }
    }

    /// Leaves a host out of step `i`'s barrier, if it is a `fleet` step.
    pub fn leave_out_of(&self, i: usize, host: &str, reason: &str) {
        if let Some(b) = self.barrier(i) {
            b.absent(host, reason);
        }
    }

    /// Why a step's tags keep it from running, if they do.
    pub fn tag_skip(&self, tags: &[String]) -> Option<String> {
        if !self.tags.is_empty() && !tags.iter().any(|t| self.tags.contains(t) || t == "always") {
            return Some(format!("not tagged {}", self.tags.join(",")));
        }
        if let Some(t) = tags.iter().find(|t| self.skip_tags.contains(t)) {
            return Some(format!("tag `{t}` is skipped"));
        }
        None
    }

    /// The report of a host that did not run this play, every step skipped for `reason`.
    pub fn skip_host(&self, host: &Host, reason: &str) -> HostReport {
        let tasks: Vec<TaskReport> = self
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
}
