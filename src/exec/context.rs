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
    pub events: Events,
    pub cancel: Cancel,
    pub limits: Limits,
    /// For SSH connections whose `jump` names another inventory host.
    pub inventory: Arc<Inventory>,
    pub redactor: Arc<Redactor>,
    /// When the run started: tasks record their start as an offset from it.
    pub run_started: std::time::Instant,
}

impl PlayRun {
    /// Milliseconds since the run started.
    pub fn offset_ms(&self) -> u64 {
        self.run_started.elapsed().as_millis() as u64
    }
}

impl PlayRun {
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
