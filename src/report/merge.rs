//! `sortie report merge`: shard reports (`run --shard I/N --report F`) joined into one report,
//! as if one run had done it all. Input: the reports, each with the file it came from;
//! output: the merged `RunReport` (its summaries and exit code computed as for one run), or
//! every reason to refuse — reports of different playbooks or inventories (by their hashes),
//! different shard counts, a shard given twice, a host in two shards, a missing shard (unless
//! `partial`: the merged report then lists the missing shards and exits as if their hosts were
//! unreachable). Hosts of one play are ordered by name (no shard knows the inventory's order
//! of the others). A play's `run_once` steps ran on one shard (0, or the lowest holding any of
//! the play's hosts); the others skipped them (`RUN_ONCE_ELSEWHERE`), and the merge gives their
//! hosts that shard's result, as one run gives every host the first host's. `fleet` steps are judged again over every
//! shard's values by `exec::rejudge_fleets`, which the app front calls with the playbook; the
//! front also reads and writes the files.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{HostReport, PlayReport, RunReport, TaskReport};
use crate::diag::{Diagnostic, Diagnostics};

/// How the message of a `run_once` step skipped on a shard starts: another shard ran it.
pub const RUN_ONCE_ELSEWHERE: &str = "run_once: runs on shard ";

/// The message of a `run_once` step skipped because shard `k` runs it.
pub fn run_once_elsewhere(k: u32) -> String {
    format!("{RUN_ONCE_ELSEWHERE}{k}")
}

/// What the warning of a shard with no host says (after `shard I/N`).
pub const EMPTY_SHARD: &str = "has none of the selected hosts: nothing to run";

/// Whether a task is a `run_once` step another shard ran.
fn ran_elsewhere(t: &TaskReport) -> bool {
    t.message
        .as_deref()
        .is_some_and(|m| m.starts_with(RUN_ONCE_ELSEWHERE))
}

/// One shard report a merged report was made of.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema, PartialEq, Eq)]
pub struct MergedShard {
    /// The report file, as given to `sortie report merge`.
    pub file: String,
    pub shard: u32,
    pub run_id: String,
    pub started_at: String,
    pub duration_ms: u64,
    /// Hosts the shard ran.
    pub hosts: usize,
    pub exit_code: i32,
}

/// Joins shard reports (`file`, report) into one; see the module's text for the rules.
pub fn merge(
    mut reports: Vec<(String, RunReport)>,
    partial: bool,
) -> Result<RunReport, Diagnostics> {
    let mut d = Diagnostics::default();
    if reports.is_empty() {
        return Err(Diagnostic::error("no report to merge")
            .help("give every shard's `--report` file: `sortie report merge shard-*.json`")
            .into());
    }
    check_same_run(&reports, &mut d);
    reports.sort_by_key(|(_, r)| r.shard);
    let shards = reports[0].1.shards.max(1);
    let missing = check_shards(&reports, shards, partial, &mut d);
    check_plays(&reports, &mut d);
    if d.has_errors() {
        return Err(d);
    }
    let mut out = reports[0].1.clone();
    out.version = super::VERSION;
    out.shard = 0;
    out.shards = 1;
    out.missing_shards = missing.clone();
    out.started_at = reports
        .iter()
        .map(|(_, r)| r.started_at.clone())
        .min()
        .unwrap_or_default();
    out.duration_ms = reports
        .iter()
        .map(|(_, r)| r.duration_ms)
        .max()
        .unwrap_or(0);
    out.interrupted = reports.iter().any(|(_, r)| r.interrupted);
    out.merged = reports
        .iter()
        .map(|(file, r)| MergedShard {
            file: file.clone(),
            shard: r.shard,
            run_id: r.run_id.clone(),
            started_at: r.started_at.clone(),
            duration_ms: r.duration_ms,
            hosts: r.hosts.hosts,
            exit_code: r.exit_code,
        })
        .collect();
    out.warnings = merged_warnings(&reports, shards, &missing);
    out.plays = (0..out.plays.len())
        .map(|i| merge_play(&reports, i, &mut out.warnings))
        .collect();
    out.finish();
    Ok(out)
}

/// The reports come from one playbook, one inventory, one kind of run.
fn check_same_run(reports: &[(String, RunReport)], d: &mut Diagnostics) {
    for (file, r) in reports {
        if r.playbook_sha256.is_empty() || r.inventory_sha256.is_empty() {
            d.push(
                Diagnostic::error(format!(
                    "`{file}` has no playbook or inventory hash: it was written by a sortie without shards"
                ))
                .help("run the shards again with this sortie (`sortie run --shard I/N --report F`)"),
            );
        }
    }
    let differ = |what: &str,
                  key: &dyn Fn(&RunReport) -> String,
                  shown: &dyn Fn(&RunReport) -> String| {
        let first = key(&reports[0].1);
        if reports.iter().all(|(_, r)| key(r) == first) {
            return None;
        }
        let mut e = Diagnostic::error(format!("the reports come from different {what}"))
            .help("merge only the shards of one run: the same playbook and inventory, unchanged, on every shard");
        for (file, r) in reports {
            e = e.note(format!("{file}: {}", shown(r)));
        }
        Some(e)
    };
    let short = |h: &str| h.chars().take(12).collect::<String>();
    let pb = differ("playbooks", &|r| r.playbook_sha256.clone(), &|r| {
        format!("{} (sha256 {}…)", r.playbook, short(&r.playbook_sha256))
    });
    let inv = differ("inventories", &|r| r.inventory_sha256.clone(), &|r| {
        format!(
            "{} (sha256 {}…)",
            r.inventory.join(", "),
            short(&r.inventory_sha256)
        )
    });
    let dry = differ(
        "kinds of run (dry and real)",
        &|r| r.dry_run.to_string(),
        &|r| if r.dry_run { "a dry run" } else { "a real run" }.into(),
    );
    d.0.extend([pb, inv, dry].into_iter().flatten());
}

/// Every report cuts the hosts the same way; no shard twice; the missing ones (an error
/// unless `partial`).
fn check_shards(
    reports: &[(String, RunReport)],
    shards: u32,
    partial: bool,
    d: &mut Diagnostics,
) -> Vec<u32> {
    let mut seen: BTreeMap<u32, &str> = BTreeMap::new();
    for (file, r) in reports {
        if r.shards.max(1) != shards {
            d.push(
                Diagnostic::error(format!(
                    "`{file}` is shard {} of {}, but `{}` is of {shards}",
                    r.shard, r.shards, reports[0].0
                ))
                .help("merge the shards of one run: every shard run with the same N"),
            );
            continue;
        }
        if let Some(other) = seen.insert(r.shard, file) {
            d.push(
                Diagnostic::error(format!(
                    "shard {}/{shards} is given twice: `{other}` and `{file}`",
                    r.shard
                ))
                .help("give each shard's report once"),
            );
        }
    }
    let missing: Vec<u32> = (0..shards).filter(|i| !seen.contains_key(i)).collect();
    if !missing.is_empty() && !partial && !d.has_errors() {
        d.push(
            Diagnostic::error(format!(
                "{} of {shards} shards missing: {}",
                missing.len(),
                list(&missing)
            ))
            .help("give every shard's report, or `--partial` to merge what there is (the hosts of missing shards count as unreachable: exit 2)"),
        );
    }
    missing
}

/// The same plays in every report, and no host in two of them.
fn check_plays(reports: &[(String, RunReport)], d: &mut Diagnostics) {
    let names = |r: &RunReport| r.plays.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
    let first = names(&reports[0].1);
    for (file, r) in &reports[1..] {
        if names(r) != first {
            d.push(Diagnostic::error(format!(
                "`{file}` has plays {:?}, `{}` has {:?}",
                names(r),
                reports[0].0,
                first
            )));
        }
    }
    let mut owner: BTreeMap<&str, &str> = BTreeMap::new();
    let mut twice: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (file, r) in reports {
        let mut mine: Vec<&str> = r
            .plays
            .iter()
            .flat_map(|p| p.hosts.iter().map(|h| h.name.as_str()))
            .collect();
        mine.sort_unstable();
        mine.dedup();
        for h in mine {
            if let Some(prev) = owner.insert(h, file) {
                let files = twice.entry(h).or_default();
                if files.is_empty() {
                    files.push(prev);
                }
                files.push(file);
            }
        }
    }
    for (host, files) in twice {
        d.push(
            Diagnostic::error(format!("host `{host}` is in more than one shard: {}", files.join(", ")))
                .help("merge the shards of one run (each host falls in exactly one shard of N); a report of an unsharded run cannot join them"),
        );
    }
}

/// Play `i` of every shard: its hosts by name, `run_once` results from the shard that ran them.
fn merge_play(reports: &[(String, RunReport)], i: usize, warnings: &mut Vec<String>) -> PlayReport {
    let name = reports[0].1.plays[i].name.clone();
    let source: Vec<Option<TaskReport>> = once_results(reports, i);
    let mut hosts: Vec<HostReport> = reports
        .iter()
        .flat_map(|(_, r)| r.plays[i].hosts.iter().cloned())
        .collect();
    hosts.sort_by(|a, b| a.name.cmp(&b.name));
    let mut unfilled = false;
    for h in &mut hosts {
        let mut changed = false;
        for (k, t) in h.tasks.iter_mut().enumerate() {
            if !ran_elsewhere(t) {
                continue;
            }
            match source.get(k).cloned().flatten() {
                Some(s) if s.id == t.id => {
                    *t = s;
                    changed = true;
                }
                _ => unfilled = true,
            }
        }
        if changed {
            h.status = HostReport::compute_status(&h.tasks);
        }
    }
    if unfilled {
        warnings.push(format!(
            "play `{name}`: the shard that ran its run_once steps is missing"
        ));
    }
    PlayReport { name, hosts }
}

/// For each step of play `i`, the result its first host took on the shard that ran it: the
/// first host, in shard order, that did not skip it as run elsewhere.
fn once_results(reports: &[(String, RunReport)], i: usize) -> Vec<Option<TaskReport>> {
    let hosts: Vec<&HostReport> = reports
        .iter()
        .flat_map(|(_, r)| &r.plays[i].hosts)
        .collect();
    let steps = hosts.iter().map(|h| h.tasks.len()).max().unwrap_or(0);
    (0..steps)
        .map(|k| {
            hosts
                .iter()
                .filter_map(|h| h.tasks.get(k))
                .find(|t| !ran_elsewhere(t))
                .cloned()
        })
        .collect()
}

/// Every shard's warnings once each, and what the merge itself has to say.
fn merged_warnings(reports: &[(String, RunReport)], shards: u32, missing: &[u32]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (_, r) in reports {
        // An empty shard's note says nothing about the whole run.
        for w in r.warnings.iter().filter(|w| !w.contains(EMPTY_SHARD)) {
            if !out.contains(w) {
                out.push(w.clone());
            }
        }
    }
    let mut ids: Vec<&str> = Vec::new();
    for (_, r) in reports {
        if !ids.contains(&r.run_id.as_str()) {
            ids.push(&r.run_id);
        }
    }
    if ids.len() > 1 {
        out.push(format!(
            "the shards have different run ids ({}): the merged report keeps shard {}'s; give every shard the same `--run-id` (or SORTIE_RUN_ID)",
            ids.join(", "),
            reports[0].1.shard
        ));
    }
    if !missing.is_empty() {
        out.push(format!(
            "partial merge: {} of {shards} shards missing ({}); their hosts are not in this report",
            missing.len(),
            list(missing)
        ));
    }
    out
}

fn list(shards: &[u32]) -> String {
    shards
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
