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
mod rejudge;
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
pub use prepare::{HostPlans, check_against_inventory, plans, select_hosts};
pub use rejudge::rejudge_fleets;

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
/// stable hash of each host's name: every host falls in exactly one slice, adding or removing
/// a host moves no other, and going from N to N+1 slices moves about 1/(N+1) of the hosts
/// (jump consistent hashing over FNV-1a), not most of them as hash-mod-N would.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// Whether the host named `name` belongs to this slice.
    pub fn contains(&self, name: &str) -> bool {
        self.count <= 1 || Shard::of(name, self.count) == self.index
    }

    /// The slice (0-based, below `count`) the host named `name` falls in.
    pub fn of(name: &str, count: u32) -> u32 {
        jump(shard_hash(name), count)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
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

/// Jump consistent hash (Lamping and Veach, 2014): the bucket below `buckets` for `key`.
/// Growing `buckets` by one moves a key only into the new bucket, with probability
/// 1/(buckets+1). Each pass sets `j` past `b`, so the loop runs at most `buckets` times
/// (about ln(buckets) on average).
fn jump(mut key: u64, buckets: u32) -> u32 {
    let (mut b, mut j): (i64, i64) = (-1, 0);
    while j < i64::from(buckets) {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b.max(0) as u32
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
        shard: req.shard.map_or(0, |s| s.index),
        shards: req.shard.map_or(1, |s| s.count.max(1)),
        playbook_sha256: playbook_sha256(&req.playbook),
        inventory_sha256: inventory_sha256(&req.inventory),
        merged: Vec::new(),
        missing_shards: Vec::new(),
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
    let report = redactor.report(report);
    events.send(Event::RunFinished {
        report: Box::new(report.recap_copy()),
    });
    Ok(report)
}

/// SHA-256 of the playbook's text, as loaded, in hex.
pub fn playbook_sha256(pb: &Playbook) -> String {
    use sha2::Digest;
    let text = crate::diag::source_text(pb.file).unwrap_or_default();
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

/// SHA-256 of the resolved inventory (every host as `inventory --list` shows it), in hex.
pub fn inventory_sha256(inv: &Inventory) -> String {
    use sha2::Digest;
    let all: Vec<&crate::inventory::Host> = inv.hosts.iter().collect();
    let text = serde_json::to_string(&inv.to_json(&all)).unwrap_or_default();
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
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

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("web{i:04}.example.com")).collect()
    }

    #[test]
    fn shards_are_disjoint_complete_and_balanced_within_20_percent() {
        let names = names(1000);
        for count in 2..=8u32 {
            let mut sizes = vec![0usize; count as usize];
            for n in &names {
                let hits: Vec<u32> = (0..count)
                    .filter(|&i| Shard { index: i, count }.contains(n))
                    .collect();
                assert_eq!(hits.len(), 1, "{n} is in exactly one of {count}: {hits:?}");
                sizes[hits[0] as usize] += 1;
            }
            assert_eq!(sizes.iter().sum::<usize>(), names.len());
            let fair = names.len() as f64 / f64::from(count);
            for s in &sizes {
                let off = (*s as f64 - fair).abs() / fair;
                assert!(off <= 0.2, "{count} shards: {sizes:?} (fair {fair:.0})");
            }
        }
    }

    #[test]
    fn adding_a_host_moves_no_other() {
        let mut names = names(1000);
        for count in [2u32, 4, 7, 16] {
            let before: Vec<u32> = names.iter().map(|n| Shard::of(n, count)).collect();
            names.push("new-host.example.com".into());
            let moved = names
                .iter()
                .zip(&before)
                .filter(|(n, s)| Shard::of(n, count) != **s)
                .count();
            // The claim is at most 2/N of the others; the scheme moves none.
            assert!(moved as f64 <= 2.0 * 1000.0 / f64::from(count));
            assert_eq!(moved, 0, "{count} shards");
            names.pop();
        }
    }

    #[test]
    fn adding_a_shard_moves_about_one_in_n_plus_one() {
        let names = names(1000);
        for count in [2u32, 4, 8, 16] {
            let mut moved = 0usize;
            for n in &names {
                let (a, b) = (Shard::of(n, count), Shard::of(n, count + 1));
                if a != b {
                    // A host moves only into the new shard.
                    assert_eq!(b, count, "{n}: {a} → {b}");
                    moved += 1;
                }
            }
            let share = moved as f64 / names.len() as f64;
            let ideal = 1.0 / f64::from(count + 1);
            assert!(
                share > ideal / 2.0 && share < ideal * 2.0,
                "{count} → {}: {moved} of 1000 moved",
                count + 1
            );
        }
    }

    #[test]
    fn a_shard_is_fixed_by_the_name_alone() {
        assert_eq!(shard_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(shard_hash("a"), 0xaf63_dc4c_8601_ec8c);
        let one = Shard { index: 0, count: 1 };
        assert!(one.contains("anything"));
        // Pinned: a release that moved hosts between shards would break merges of reports
        // written by two versions and any per-worker state (resumed downloads).
        let got: Vec<u32> = ["h01", "h02", "h03", "web0001.example.com"]
            .iter()
            .map(|n| Shard::of(n, 4))
            .collect();
        assert_eq!(got, vec![1, 3, 2, 0], "pinned shard of 4");
        assert_eq!(jump(0, 1), 0);
        assert_eq!(Shard { index: 2, count: 4 }.to_string(), "2/4");
    }
}
