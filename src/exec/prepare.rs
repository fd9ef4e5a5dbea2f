//! Before a run contacts anything: each play's hosts (its pattern, `--limit`, only-these-hosts
//! and the shard), each host's variable scope, each play's task graph, which shard runs its
//! `run_once` steps, and the warnings to show first (an empty shard's note among them). Every
//! problem is collected, so bad input stops the run with all its diagnostics at once. The same
//! selection serves `sortie plan` and dry runs (`plans`).

use std::sync::Arc;

use serde_json::Value as Json;

use super::RunRequest;
use crate::diag::{Diagnostic, Diagnostics, Span};
use crate::inventory::{Host, HostKeyChecking, Inventory};
use crate::plan::{Graph, HostPlan};
use crate::playbook::Play;
use crate::report::redact::Redactor;
use crate::vars::{self, RunInfo, Scope, VarMap};

/// One play, ready to run: its graph and its hosts with their scopes, in inventory order.
pub(crate) struct PreparedPlay {
    pub play: Arc<Play>,
    pub graph: Arc<Graph>,
    pub hosts: Vec<(Arc<Host>, Scope)>,
    /// Under sharding, the shard that runs the play's `run_once` steps when it is another
    /// one: the lowest shard holding any of the play's hosts, which every shard can tell.
    pub once_elsewhere: Option<u32>,
}

/// Every play of a request, ready to run, and the warnings to show before it starts.
pub(crate) struct Prepared {
    pub plays: Vec<PreparedPlay>,
    pub warnings: Vec<Diagnostic>,
}

impl Prepared {
    pub fn total_hosts(&self) -> usize {
        self.plays.iter().map(|p| p.hosts.len()).sum()
    }
}

/// The hosts a play runs on, narrowed by `--limit`.
pub fn select_hosts<'a>(
    inv: &'a Inventory,
    pattern: &str,
    span: Option<Span>,
    limit: Option<&str>,
) -> Result<Vec<&'a Host>, Diagnostic> {
    let hosts = inv.select(pattern, span)?;
    match limit {
        None => Ok(hosts),
        Some(l) => {
            let allowed = inv.select(l, None)?;
            Ok(hosts
                .into_iter()
                .filter(|h| allowed.iter().any(|a| a.name == h.name))
                .collect())
        }
    }
}

/// What a play asks of the inventory it runs on: its host pattern matches, and every group
/// its `strategy.limits` names exists (all of them are reported, for `check` and `run`).
pub fn check_against_inventory(play: &Play, inv: &Inventory) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    if let Err(e) = inv.select(&play.hosts.value, Some(play.hosts.span)) {
        out.push(e);
    }
    for (group, n) in play.strategy.limits.iter().flatten() {
        if !inv.groups.contains_key(group) && group != "all" && group != "ungrouped" {
            out.push(
                Diagnostic::error(format!(
                    "`strategy.limits` names group `{group}`, which the inventory does not have"
                ))
                .at(n.span)
                .label("limit for an unknown group")
                .help(format!(
                    "the inventory's groups: {}",
                    inv.groups.keys().cloned().collect::<Vec<_>>().join(", ")
                )),
            );
        }
    }
    for s in &play.steps {
        via_names_a_host(s, inv, &mut out);
    }
    out
}

/// A literal `via` names a host of the inventory (`host` is the current one).
fn via_names_a_host(step: &crate::playbook::StepDef, inv: &Inventory, out: &mut Vec<Diagnostic>) {
    if !crate::steps::via::KINDS.contains(&step.kind) {
        return;
    }
    let Some(node) = step.args.get("via") else {
        return;
    };
    let Some(name) = crate::steps::literal(Some(node)) else {
        return;
    };
    if name == crate::steps::via::CURRENT_HOST || inv.host(name).is_some() {
        return;
    }
    out.push(
        Diagnostic::error(format!("`via: {name}`: the inventory has no host `{name}`"))
            .at(node.span)
            .label("not an inventory host")
            .help("`via: host` probes from the current host; any other value names an inventory host (a template works: `via: \"{{ groups.bastion[0] }}\"`)"),
    );
}

/// Checks the request's own settings (not its files, which were checked when loaded).
fn check_request(req: &RunRequest) -> Result<(), Diagnostics> {
    if let Some(l) = &req.limit {
        req.inventory.select(l, None)?;
    }
    if req.concurrency == Some(0) {
        return Err(Diagnostic::error("`-c 0` would run nothing")
            .help("give at least 1 host in flight")
            .into());
    }
    if let Some(s) = req.shard
        && (s.count == 0 || s.index >= s.count)
    {
        return Err(
            Diagnostic::error(format!("shard {} of {} does not exist", s.index, s.count))
                .help("shards are numbered from 0 to N-1: `--shard 0/4` … `--shard 3/4`")
                .into(),
        );
    }
    Ok(())
}

/// The hosts of one play this request runs, in inventory order.
fn play_hosts<'a>(req: &'a RunRequest, play: &Play) -> Result<Vec<&'a Host>, Diagnostic> {
    let hosts = select_hosts(
        &req.inventory,
        &play.hosts.value,
        Some(play.hosts.span),
        req.limit.as_deref(),
    )?;
    Ok(hosts
        .into_iter()
        .filter(|h| req.only.as_ref().is_none_or(|o| o.contains(&h.name)))
        .filter(|h| req.shard.is_none_or(|s| s.contains(&h.name)))
        .collect())
}

/// Resolves every play's hosts, scopes and graph; teaches the redactor each host's secrets.
pub(crate) fn prepare(
    req: &RunRequest,
    info: &RunInfo,
    redactor: &Redactor,
) -> Result<Prepared, Diagnostics> {
    check_request(req)?;
    let mut plays = Vec::new();
    let mut diags = Diagnostics::default();
    let groups = crate::template::json_to_value(&req.inventory.group_members());
    for play in &req.playbook.plays {
        let problems = check_against_inventory(play, &req.inventory);
        if !problems.is_empty() {
            diags.0.extend(problems);
            continue;
        }
        let hosts = match play_hosts(req, play) {
            Ok(h) => h,
            Err(d) => {
                diags.push(d);
                continue;
            }
        };
        let mut scoped = Vec::new();
        for h in hosts {
            match vars::host_scope(play, h, &req.extra, info, &groups) {
                Ok(s) => {
                    // The values of the play's `secrets:` for this host.
                    redactor.add_vars(&play.secrets, &s.base);
                    redactor.add_vars(&play.secrets, &s.extra);
                    scoped.push((Arc::new(h.clone()), s))
                }
                Err(d) => diags.push(d),
            }
        }
        match Graph::build(play) {
            Ok(g) => plays.push(PreparedPlay {
                play: Arc::new(play.clone()),
                graph: Arc::new(g),
                hosts: scoped,
                once_elsewhere: once_shard(req, play)
                    .filter(|k| req.shard.is_some_and(|s| s.index != *k)),
            }),
            Err(d) => diags.push(d),
        }
    }
    if diags.has_errors() {
        return Err(diags);
    }
    let mut warnings = warnings(req);
    if let Some(s) = req.shard {
        warnings.extend(empty_shard_note(s, &plays));
    }
    Ok(Prepared { plays, warnings })
}

/// The note of a shard with no host: it succeeds, doing nothing.
fn empty_shard_note(s: super::Shard, plays: &[PreparedPlay]) -> Option<Diagnostic> {
    plays.iter().all(|p| p.hosts.is_empty()).then(|| {
        Diagnostic::warning(format!("shard {s} {}", crate::report::merge::EMPTY_SHARD)).help(
            "with more shards than hosts some shards are empty; the merged report is still whole",
        )
    })
}

/// Under sharding, the lowest shard holding any host of `play` (before the shard's own
/// cut): where its `run_once` steps run.
fn once_shard(req: &RunRequest, play: &Play) -> Option<u32> {
    let s = req.shard?;
    let hosts = select_hosts(
        &req.inventory,
        &play.hosts.value,
        None,
        req.limit.as_deref(),
    )
    .ok()?;
    hosts
        .iter()
        .filter(|h| req.only.as_ref().is_none_or(|o| o.contains(&h.name)))
        .map(|h| super::Shard::of(&h.name, s.count))
        .min()
}

/// The front's warnings, the playbook's load-time warnings, and one per host whose host
/// keys go unchecked.
fn warnings(req: &RunRequest) -> Vec<Diagnostic> {
    let mut out: Vec<Diagnostic> = req.warnings.clone();
    out.extend(req.playbook.warnings.iter().cloned());
    for h in &req.inventory.hosts {
        if h.ssh.host_key_checking == Some(HostKeyChecking::Off) {
            let w = Diagnostic::warning(format!(
                "host key checking is OFF for {}: connections can be intercepted",
                h.name
            ));
            if !out.contains(&w) {
                out.push(w);
            }
        }
    }
    out
}

/// The rendered task graph of every host a request selects, and the redactor that masks
/// their secrets (for `sortie plan` and dry runs; nothing is contacted).
pub struct HostPlans {
    pub plans: Vec<HostPlan>,
    pub redactor: Redactor,
}

pub fn plans(req: &RunRequest) -> Result<HostPlans, Diagnostics> {
    let info = RunInfo {
        id: if req.dry_run { "dry-run" } else { "plan" }.into(),
        started_at: String::new(),
    };
    let redactor = Redactor::for_run(&req.playbook, &req.inventory);
    let prepared = prepare(req, &info, &redactor)?;
    let mut plans = Vec::new();
    for p in &prepared.plays {
        for (host, scope) in &p.hosts {
            let ctx = scope.context(&VarMap::new(), &Json::Object(Default::default()), None);
            plans.push(crate::plan::host_plan(&p.play, &p.graph, host, &ctx));
        }
    }
    Ok(HostPlans { plans, redactor })
}
