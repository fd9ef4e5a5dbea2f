//! The engine, as a library: a typed `RunRequest` (playbook, inventory, extra vars, host
//! selection, concurrency, tags, cancellation, shard) and an `EventSink` go in; the
//! `RunReport` comes out. `prepare` resolves each play's hosts and scopes before anything is
//! contacted (bad input stops the run there); then plays run one after another (`play`):
//! hosts in rolling batches bounded by `concurrency`, each host's task graph with ready steps
//! side by side (`host`), each step on one host a task (`task`). Events and the report leave
//! the engine redacted. Nothing here knows the command line, the terminal, signals or exit
//! codes: `app` builds the request, owns the reporter and maps the report to an exit code, so
//! `run`, `serve` and a shard are thin fronts over this one engine.

mod context;
mod host;
mod play;
mod prepare;
pub mod task;

use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::diag::{Diagnostic, Diagnostics};
use crate::inventory::Inventory;
use crate::playbook::Playbook;
use crate::report::event::{Event, EventSink};
use crate::report::redact::Redactor;
use crate::report::{RunReport, Status, Summary};
use crate::vars::{RunInfo, VarMap};

use prepare::prepare;
pub use prepare::{HostPlans, plans, select_hosts};

/// Default hosts in flight at once.
pub const DEFAULT_CONCURRENCY: usize = 50;
/// Steps of one host running side by side at most.
pub const PER_HOST_PARALLEL: usize = 8;

/// What to run: everything the engine needs, already loaded and parsed.
pub struct RunRequest {
    pub playbook: Playbook,
    pub inventory: Inventory,
    /// `-e` variables (highest precedence).
    pub extra: VarMap,
    /// Only hosts matching this pattern (`--limit`).
    pub limit: Option<String>,
    /// Only these hosts, by name (`--retry-failed`).
    pub only: Option<Vec<String>>,
    /// Only this slice of the selected hosts.
    pub shard: Option<Shard>,
    /// Hosts in flight at once; overrides each play's `strategy.concurrency`.
    pub concurrency: Option<usize>,
    /// Run only steps with one of these tags (`always` always runs).
    pub tags: Vec<String>,
    /// Skip steps with any of these tags.
    pub skip_tags: Vec<String>,
    /// Render and plan every task without connecting to anything.
    pub dry_run: bool,
    /// The run's id; a fresh one when `None`.
    pub run_id: Option<String>,
    /// Warnings the front found while building the request (shown with the run's own).
    pub warnings: Vec<Diagnostic>,
    pub cancel: Cancel,
    /// Masks the run's secrets in everything that leaves the engine; it learns more as the
    /// run goes (secret steps' values). Fronts keep a clone to mask what they render
    /// themselves from events (diagnostics quote playbook lines, which may hold a secret).
    pub redactor: Arc<Redactor>,
}

impl RunRequest {
    /// A request to run every play of `playbook` on its hosts, with defaults for the rest.
    pub fn new(playbook: Playbook, inventory: Inventory) -> RunRequest {
        let redactor = Arc::new(Redactor::for_run(&playbook, &inventory));
        RunRequest {
            redactor,
            playbook,
            inventory,
            extra: VarMap::new(),
            limit: None,
            only: None,
            shard: None,
            concurrency: None,
            tags: Vec::new(),
            skip_tags: Vec::new(),
            dry_run: false,
            run_id: None,
            warnings: Vec::new(),
            cancel: Cancel::default(),
        }
    }
}

/// How a run is stopped from outside. `stop_new`: no new task starts, running ones finish
/// (the report says `interrupted`); `hard`: running tasks are cancelled too.
#[derive(Clone, Debug, Default)]
pub struct Cancel {
    pub stop_new: CancellationToken,
    pub hard: CancellationToken,
}

/// The `index`-th (0-based) of `count` disjoint slices of the selected hosts, chosen by a
/// stable hash of each host's name: every host falls in exactly one slice, and adding a host
/// moves no other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// Whether the host named `name` belongs to this slice.
    pub fn contains(&self, name: &str) -> bool {
        self.count <= 1 || shard_hash(name) % u64::from(self.count) == u64::from(self.index)
    }
}

/// FNV-1a, 64-bit: fixed by its definition, so a name lands in the same shard on every
/// machine and release.
fn shard_hash(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The engine's side of the event stream: every event is redacted on its way to the sink.
#[derive(Clone)]
pub(crate) struct Events {
    sink: Arc<dyn EventSink>,
    redactor: Arc<Redactor>,
}

impl Events {
    pub(crate) fn send(&self, ev: Event) {
        self.sink.send(self.redactor.event(ev));
    }
}

/// Runs a request: every play, one after another. `Err` only for bad input found before
/// anything was contacted; a run that went wrong on its hosts is an `Ok` report that says so.
/// The report comes back redacted.
pub async fn run(req: RunRequest, sink: Arc<dyn EventSink>) -> Result<RunReport, Diagnostics> {
    let started = Instant::now();
    let info = RunInfo {
        id: req.run_id.clone().unwrap_or_else(fresh_run_id),
        started_at: crate::units::utc_now_rfc3339(),
    };
    let redactor = req.redactor.clone();
    let prepared = prepare(&req, &info, &redactor)?;
    let events = Events {
        sink,
        redactor: redactor.clone(),
    };
    let warnings = prepared.warnings.clone();
    events.send(Event::RunStarted {
        run_id: info.id.clone(),
        playbook: req.playbook.path.display().to_string(),
        hosts: prepared.total_hosts(),
        dry_run: req.dry_run,
    });
    for w in &warnings {
        events.send(Event::warning(w));
    }
    if req.dry_run {
        let text = crate::plan::render_text(&plans(&req)?.plans);
        events.send(Event::Plan { text });
    }
    let plays = play::run_plays(&req, prepared, &events, started).await;
    let mut report = RunReport {
        version: crate::report::VERSION,
        run_id: info.id,
        playbook: req.playbook.path.display().to_string(),
        inventory: req.inventory.sources.clone(),
        started_at: info.started_at,
        duration_ms: started.elapsed().as_millis() as u64,
        interrupted: req.cancel.stop_new.is_cancelled(),
        exit_code: 0,
        dry_run: req.dry_run,
        warnings: warnings.iter().map(Diagnostic::one_line).collect(),
        plays,
        tasks: Summary::default(),
        hosts: Summary::default(),
    };
    report.finish();
    let report = redactor.report(&report);
    events.send(Event::RunFinished {
        report: Box::new(report.clone()),
    });
    Ok(report)
}

/// A run id unique enough to tell runs apart: the time in nanoseconds, in hex.
fn fresh_run_id() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    )
}

/// Whether a host's status stops it from taking part in later plays.
fn is_dead(s: Status) -> bool {
    matches!(s, Status::Failed | Status::Unreachable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_disjoint_and_cover_every_host() {
        let names: Vec<String> = (0..1000)
            .map(|i| format!("web{i:04}.example.com"))
            .collect();
        let count = 7;
        let mut sizes = vec![0usize; count as usize];
        for n in &names {
            let hits: Vec<u32> = (0..count)
                .filter(|&i| Shard { index: i, count }.contains(n))
                .collect();
            assert_eq!(hits.len(), 1, "{n} is in exactly one shard: {hits:?}");
            sizes[hits[0] as usize] += 1;
        }
        // A fair hash gives each of 7 shards about 143 of 1000 hosts.
        assert!(sizes.iter().all(|&s| (100..190).contains(&s)), "{sizes:?}");
    }

    #[test]
    fn a_shard_is_fixed_by_the_name_alone() {
        assert_eq!(shard_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(shard_hash("a"), 0xaf63_dc4c_8601_ec8c);
        let one = Shard { index: 0, count: 1 };
        assert!(one.contains("anything"));
    }
}
