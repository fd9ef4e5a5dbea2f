//! Validation of a loaded playbook before anything runs: unique and well-formed ids, `needs`
//! that name existing steps, no cycles (the whole cycle is shown, found by `needs`), every
//! template compiled, every expression compiled, kind-specific rules. Input is the `Playbook`
//! the loader just read; problems are collected into its `Diagnostics`, never thrown.

use std::collections::HashMap;

use crate::diag::{Diagnostic, Diagnostics, did_you_mean};
use crate::playbook::{Play, Playbook, StepDef, needs};
use crate::steps::CheckCx;
use crate::template::{Place, templates};

pub fn validate(pb: &Playbook, diags: &mut Diagnostics) {
    for play in &pb.plays {
        validate_play(play, diags);
    }
}

fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `strategy.limits` and `throttle` give at least one host; a `fleet` step neither loops nor
/// retries.
fn check_limits(play: &Play, out: &mut Vec<Diagnostic>) {
    for (group, n) in play.strategy.limits.iter().flatten() {
        if n.value == 0 {
            out.push(
                Diagnostic::error(format!(
                    "a limit of 0 hosts of `{group}` would run none of them"
                ))
                .at(n.span)
                .label("at least 1")
                .help("give the most hosts of the group to run at once, or drop the entry"),
            );
        }
    }
    for s in play.steps.iter() {
        if s.kind == "fleet" && (s.loop_.is_some() || s.retry.is_some()) {
            out.push(
                Diagnostic::error("a `fleet` step cannot `loop` or `retry`")
                    .at(s.kind_span)
                    .label("each host brings one value, once")
                    .help(
                        "compare a list as one value, or move the loop to the step that makes it",
                    ),
            );
        }
        if let Some(n) = s.throttle.as_ref().filter(|n| n.value == 0) {
            out.push(
                Diagnostic::error("`throttle: 0` would never run the step")
                    .at(n.span)
                    .label("at least 1")
                    .help("give the most hosts that may run this step at once"),
            );
        }
    }
}

/// Step ids: well formed and unique; returns every id, to check `needs` against.
fn check_ids<'p>(play: &'p Play, out: &mut Vec<Diagnostic>) -> HashMap<&'p str, &'p StepDef> {
    let mut seen: HashMap<&str, &StepDef> = HashMap::new();
    for s in &play.steps {
        if !s.explicit_id {
            continue;
        }
        if !valid_id(&s.id) {
            let suggestion: String =
                s.id.chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect();
            out.push(
                Diagnostic::error(format!("`{}` is not a valid step id", s.id))
                    .at(s.id_span)
                    .label("letters, digits and `_`, not starting with a digit")
                    .help(format!(
                        "templates read results as `steps.<id>`; try `{suggestion}`"
                    )),
            );
        }
        if let Some(first) = seen.get(s.id.as_str()) {
            out.push(
                Diagnostic::error(format!("duplicate step id `{}`", s.id))
                    .at(s.id_span)
                    .label("used again here")
                    .also(first.id_span, "first used here")
                    .help("give every step a different id"),
            );
        } else {
            seen.insert(&s.id, s);
        }
    }
    seen
}

fn validate_play(play: &Play, diags: &mut Diagnostics) {
    let t = templates();
    let mut out: Vec<Diagnostic> = Vec::new();
    if let Err(d) = crate::inventory::Pattern::parse(&play.hosts.value, Some(play.hosts.span)) {
        out.push(d);
    }
    for v in play.vars.values() {
        t.check_node(v, &mut out);
    }
    check_limits(play, &mut out);
    let seen = check_ids(play, &mut out);
    // Needs: known ids.
    for s in &play.steps {
        for n in s.needs.iter().flatten() {
            if n.value == s.id {
                out.push(
                    Diagnostic::error(format!("step `{}` needs itself", s.id))
                        .at(n.span)
                        .label("a step cannot wait for itself")
                        .help("name the steps it depends on, or `needs: []` to start at once"),
                );
            } else if !seen.contains_key(n.value.as_str()) {
                let mut d =
                    Diagnostic::error(format!("`needs` names an unknown step `{}`", n.value))
                        .at(n.span);
                d = match did_you_mean(&n.value, seen.keys().copied()) {
                    Some(c) => d.label(format!("did you mean `{c}`?")),
                    None => d.label("no step has this id"),
                };
                out.push(d.help("`needs` takes the `id`s of steps in the same play"));
            }
        }
    }
    if out.is_empty()
        && let Err(d) = needs::step_order(play, &needs::waits_for(play))
    {
        out.push(d);
    }
    // Templates and expressions, kind rules.
    for s in &play.steps {
        if let Some(n) = &s.name {
            check_str(&n.value, Place::of_span(n.span), &mut out);
        }
        t.check_node(&s.args, &mut out);
        crate::steps::check_guard(s.kind, &s.args, s.unsafe_shell, &mut out);
        if let Some(e) = &s.expect_node {
            t.check_node(e, &mut out);
        }
        if let Some(l) = &s.loop_ {
            t.check_node(l, &mut out);
        }
        let mut exprs: Vec<crate::yaml::Spanned<String>> = s.when.clone();
        exprs.extend(s.changed_when.clone().unwrap_or_default());
        if let Some(until) = s.retry.as_ref().and_then(|r| r.until.clone()) {
            exprs.extend(until.into_vec());
        }
        check_exprs(&exprs, &mut out);
        for tpl in [s.timeout.as_ref().map(|x| &x.node)].into_iter().flatten() {
            t.check_node(tpl, &mut out);
        }
        let cx = CheckCx {
            run_once: s.run_once,
            args: &s.args,
            kind_span: s.kind_span,
            expect: &s.expect,
        };
        s.spec.check(&cx, &mut out);
    }
    diags.0.extend(out);
}

/// `when`, `changed_when` and `until` compile as expressions, with their filter and test
/// names checked, as the run would read them.
fn check_exprs(exprs: &[crate::yaml::Spanned<String>], out: &mut Vec<Diagnostic>) {
    for e in exprs {
        if let Err(d) = templates().check_expr(&e.value, Place::of_span(e.span)) {
            out.push(d);
        }
    }
}

fn check_str(text: &str, place: Place, out: &mut Vec<Diagnostic>) {
    if let Err(d) = templates().check(text, place) {
        out.push(d);
    }
}

impl Place {
    /// A place for a string known only by its span (plain style assumed).
    pub fn of_span(span: crate::diag::Span) -> Place {
        Place {
            span,
            style: crate::yaml::Style::Plain,
        }
    }
}
