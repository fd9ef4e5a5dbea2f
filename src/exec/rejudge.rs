//! `fleet` steps judged again over every shard's hosts, for `sortie report merge`: each shard
//! judged its own hosts (a shard is a batch of its own); the merged report takes every host's
//! `value` from its shard's result, builds one outcome (hosts that did not bring a value are
//! left out, with their step's message), and gives each host the verdict and the result fields
//! one unsharded run would have given. Input: the merged report and the playbook it ran (the
//! steps' `same`/`unique`/`quorum`/`that`); output: the report, changed in place.

use serde_json::Value as Json;

use crate::playbook::Playbook;
use crate::report::{HostReport, RunReport, Status};
use crate::steps::StepSpec;
use crate::steps::fleet::Outcome;

/// Judges the report's fleet steps again over all its hosts; returns how many steps it judged.
/// A `that` sees the fleet's own names only (no host's variables: they are not in a report).
pub fn rejudge_fleets(report: &mut RunReport, playbook: &Playbook) -> usize {
    let mut judged = 0;
    for (play_r, play) in report.plays.iter_mut().zip(&playbook.plays) {
        for step in &play.steps {
            let StepSpec::Fleet(spec) = &step.spec else {
                continue;
            };
            let outcome = outcome_of(&play_r.hosts, &step.id);
            let scope = minijinja::Value::from(());
            for h in &mut play_r.hosts {
                let Some(t) = h.tasks.iter_mut().find(|t| t.id == step.id) else {
                    continue;
                };
                if !outcome.values.iter().any(|(n, _)| n == &h.name) {
                    continue;
                }
                let (failure, fields) = match spec.judge(&h.name, &outcome, &scope) {
                    Ok(v) => v,
                    Err(e) => (Some(e.to_string()), Json::Null),
                };
                t.status = if failure.is_some() {
                    Status::Failed
                } else {
                    Status::Ok
                };
                t.message = failure;
                if let (Json::Object(out), Json::Object(new)) = (&mut t.output, fields) {
                    out.extend(new);
                }
                h.status = HostReport::compute_status(&h.tasks);
            }
            judged += 1;
        }
    }
    if judged > 0 {
        report.finish();
    }
    judged
}

/// Every host's value for step `id` (a host whose step ran and brought one), or why not.
fn outcome_of(hosts: &[HostReport], id: &str) -> Outcome {
    let mut o = Outcome::default();
    for h in hosts {
        let Some(t) = h.tasks.iter().find(|t| t.id == id) else {
            continue;
        };
        let ran = matches!(t.status, Status::Ok | Status::Failed);
        match t.output.get("value") {
            Some(v) if ran && t.output.get("values").is_some() => {
                o.values.push((h.name.clone(), v.clone()))
            }
            _ => o.left_out.push((
                h.name.clone(),
                t.message
                    .clone()
                    .unwrap_or_else(|| t.status.as_str().to_string()),
            )),
        }
    }
    o
}
