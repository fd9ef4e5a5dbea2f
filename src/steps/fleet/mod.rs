//! The `fleet` kind: a check across the hosts of a batch. Each host renders `value` in its own
//! scope and arrives at the step's barrier (`barrier.rs`, made per batch by `exec::play`);
//! once every host of the batch has arrived or been left out (it failed earlier, was skipped
//! or stopped), each host judges the same set of values: `same`, `unique`, `quorum`, `that`.
//! Every host's result (`steps.<id>`) holds `values`, `groups`, `majority`, `outliers` and
//! `left_out`; `same` and `unique` fail on the odd hosts only, each saying what it has and what
//! the others have; a `quorum` or `that` that does not hold fails every host.

pub mod barrier;

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::{CheckCx, Kind, OneOrMany, RunsOn, StepError, StepOutput};
use crate::diag::Diagnostic;
use crate::expect::ExpectFields;
use crate::units::CountOrPercent;
use crate::yaml::Spanned;
pub use barrier::{Barrier, Outcome, Slots};

/// How many characters of a value a message shows.
const SHOWN: usize = 64;

/// Compare one value across the hosts of the batch.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Fleet {
    /// What each host brings, rendered in its own scope: `"{{ steps.conf.stdout | trim }}"`.
    pub value: Json,
    /// All hosts must have the same value; the odd ones fail.
    pub same: Option<bool>,
    /// No two hosts may have the same value; those that share one fail.
    pub unique: Option<bool>,
    /// At least this many hosts (a number, or a percentage of the batch) share the most
    /// common value; else every host fails.
    pub quorum: Option<CountOrPercent>,
    /// Expressions over `values` (host → value), `groups`, `majority`, `outliers`,
    /// `left_out`; any false fails every host.
    pub that: Option<OneOrMany<Spanned<String>>>,
}

/// The values grouped: (value as written, its hosts), largest group first, then batch order.
struct Groups(Vec<(Json, Vec<String>)>);

impl Groups {
    fn of(o: &Outcome) -> Groups {
        let mut groups: Vec<(Json, Vec<String>)> = Vec::new();
        for (host, v) in &o.values {
            match groups.iter_mut().find(|(g, _)| g == v) {
                Some((_, hosts)) => hosts.push(host.clone()),
                None => groups.push((v.clone(), vec![host.clone()])),
            }
        }
        // Stable: equal sizes keep the order their first host had.
        groups.sort_by_key(|g| std::cmp::Reverse(g.1.len()));
        Groups(groups)
    }

    /// The value most hosts share, when one group is larger than every other.
    fn majority(&self) -> Option<&(Json, Vec<String>)> {
        match self.0.as_slice() {
            [] => None,
            [only] => Some(only),
            [first, second, ..] if first.1.len() > second.1.len() => Some(first),
            _ => None,
        }
    }

    fn of_host(&self, host: &str) -> Option<&(Json, Vec<String>)> {
        self.0.iter().find(|(_, hs)| hs.iter().any(|h| h == host))
    }
}

fn show(v: &Json) -> String {
    let text = match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    };
    let cut: String = text.chars().take(SHOWN).collect();
    if cut.len() < text.len() {
        format!("{cut}…")
    } else {
        cut
    }
}

fn hosts(n: usize) -> String {
    format!("{n} other host{}", if n == 1 { "" } else { "s" })
}

impl Fleet {
    /// Why this host fails (`None`: it passes), from the batch's outcome.
    fn verdict(
        &self,
        host: &str,
        o: &Outcome,
        g: &Groups,
        scope: &minijinja::Value,
        fields: &Json,
    ) -> Result<Option<String>, StepError> {
        if self.same == Some(true) && g.0.len() > 1 {
            match g.majority() {
                Some((value, members)) if !members.iter().any(|h| h == host) => {
                    let mine = g.of_host(host).map(|m| show(&m.0)).unwrap_or_default();
                    return Ok(Some(format!(
                        "not the same as the others: {host}: {mine}; {}: {}",
                        hosts(members.len()),
                        show(value)
                    )));
                }
                Some(_) => {}
                None => {
                    let split: Vec<String> =
                        g.0.iter()
                            .map(|(v, hs)| format!("{} ({})", show(v), hs.join(", ")))
                            .collect();
                    return Ok(Some(format!(
                        "the hosts disagree and no value has a majority: {}",
                        split.join("; ")
                    )));
                }
            }
        }
        if self.unique == Some(true)
            && let Some((value, members)) = g.of_host(host)
            && members.len() > 1
        {
            let others: Vec<&str> = members
                .iter()
                .map(String::as_str)
                .filter(|h| *h != host)
                .collect();
            return Ok(Some(format!(
                "not unique: {host} has {}, as {} {}",
                show(value),
                if others.len() == 1 { "does" } else { "do" },
                others.join(", ")
            )));
        }
        if let Some(q) = self.quorum {
            let total = o.values.len() + o.left_out.len();
            let needed = q.of(total);
            let best = g.0.first().map(|(_, hs)| hs.len()).unwrap_or(0);
            if best < needed {
                let most =
                    g.0.first()
                        .map(|(v, _)| format!(" (on {})", show(v)))
                        .unwrap_or_default();
                return Ok(Some(format!(
                    "no quorum: at most {best} of {total} hosts agree{most}, {needed} needed ({q})"
                )));
            }
        }
        for c in self.that.iter().flat_map(|t| t.clone().into_vec()) {
            let ctx = minijinja::context! {
                values => crate::template::json_to_value(&fields["values"]),
                groups => crate::template::json_to_value(&fields["groups"]),
                majority => crate::template::json_to_value(&fields["majority"]),
                outliers => crate::template::json_to_value(&fields["outliers"]),
                left_out => crate::template::json_to_value(&fields["left_out"]),
                ..scope.clone()
            };
            let ok = crate::template::templates()
                .truthy(&c.value, crate::template::Place::of_span(c.span), &ctx)
                .map_err(StepError::Template)?;
            if !ok {
                return Ok(Some(format!("fleet check failed: {}", c.value)));
            }
        }
        Ok(None)
    }
}

impl Fleet {
    /// One host's verdict on an outcome (`None`: it passes) and the result fields every host
    /// sees; `scope` is what `that` sees besides the fleet's own names.
    pub fn judge(
        &self,
        host: &str,
        outcome: &Outcome,
        scope: &minijinja::Value,
    ) -> Result<(Option<String>, Json), StepError> {
        let groups = Groups::of(outcome);
        let fields = fields(outcome, &groups);
        let failure = self.verdict(host, outcome, &groups, scope, &fields)?;
        Ok((failure, fields))
    }
}

/// The result fields every host of the batch sees.
fn fields(o: &Outcome, g: &Groups) -> Json {
    let values: serde_json::Map<String, Json> = o.values.iter().cloned().collect();
    let groups: BTreeMap<String, Vec<String>> =
        g.0.iter()
            .map(|(v, hs)| (show_key(v), hs.clone()))
            .collect();
    let majority = g.majority();
    let outliers: Vec<&String> = match majority {
        Some((_, members)) => o
            .values
            .iter()
            .map(|(h, _)| h)
            .filter(|h| !members.contains(h))
            .collect(),
        None => Vec::new(),
    };
    let left_out: serde_json::Map<String, Json> = o
        .left_out
        .iter()
        .map(|(h, r)| (h.clone(), Json::from(r.as_str())))
        .collect();
    json!({
        "values": values,
        "groups": groups,
        "majority": majority.map(|m| m.0.clone()).unwrap_or(Json::Null),
        "outliers": outliers,
        "left_out": left_out,
    })
}

/// A value as a key of `groups`: strings as they are, anything else as JSON.
fn show_key(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Takes the host's slots back when the wait ends, however it ends (a timeout drops it).
struct Retake(Option<std::sync::Arc<Slots>>);

impl Drop for Retake {
    fn drop(&mut self) {
        if let Some(s) = self.0.take() {
            tokio::spawn(async move { s.take().await });
        }
    }
}

impl Kind for Fleet {
    const NAME: &'static str = "fleet";
    const SUMMARY: &'static str =
        "Compare a value across the hosts of the batch: same, unique, quorum, that.";
    const RUNS_ON: RunsOn = RunsOn::Engine;
    const NAME_FIELDS: &'static [&'static str] = &["value"];
    const EXPECT: ExpectFields = ExpectFields::NONE;
    const DEFAULT_EXPECT: &'static str = "";
    const RAW_FIELDS: &'static [&'static str] = &["that"];

    fn run<'a>(&'a self, cx: &'a super::TaskCx<'a>) -> super::StepFuture<'a> {
        Box::pin(async move {
            let Some(barrier) = cx.fleet.clone() else {
                return Err(StepError::Protocol(
                    "a fleet step runs only in a play run, among the hosts of a batch".into(),
                ));
            };
            let host = cx.host.name.as_str();
            // Waiting, the host holds no slot: hosts not started yet must reach the barrier.
            let outcome = {
                let retake = Retake(cx.slots.clone());
                if let Some(s) = &retake.0 {
                    s.give_back();
                }
                let o = barrier.arrive(host, self.value.clone()).await;
                let mut retake = retake;
                if let Some(s) = retake.0.take() {
                    s.take().await;
                }
                o
            };
            let (failure, fields) = self.judge(host, &outcome, cx.ctx)?;
            let mut out = StepOutput {
                failure,
                ..Default::default()
            };
            if let Json::Object(m) = fields {
                out.fields = m;
            }
            Ok(out.with("value", self.value.clone()))
        })
    }

    fn check(&self, cx: &CheckCx<'_>, out: &mut Vec<Diagnostic>) {
        let checks = self.same == Some(true)
            || self.unique == Some(true)
            || self.quorum.is_some()
            || self.that.is_some();
        if !checks {
            out.push(
                Diagnostic::error("a `fleet` step with nothing to check")
                    .at(cx.kind_span)
                    .label("compares nothing")
                    .help("add `same: true`, `unique: true`, `quorum: N` (or \"P%\") or `that:`"),
            );
        }
        if cx.run_once {
            out.push(
                Diagnostic::error("a `fleet` step cannot be `run_once`")
                    .at(cx.kind_span)
                    .label("every host of the batch brings its value")
                    .help("remove `run_once`"),
            );
        }
    }
}
