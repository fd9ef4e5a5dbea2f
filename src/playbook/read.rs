//! Reading plays and steps from their YAML nodes. A play's keys are sorted (play keys kept,
//! step keys and unknown keys reported with Ansible hints), then read into `PlayRaw`; each
//! step is read in two stages — common keys off and exactly one known kind key, then a strict
//! read of that kind's arguments (`steps`) and its expectations (`expect`).
//!
//! Input is one node of the parsed playbook (from `load_text` in the parent module); output is
//! a `Play` of `StepDef`s for `validate`, or nothing, with every problem pushed to `Diagnostics`.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;

use super::{Play, PlayRaw, StepCommon, StepDef, StepDefaults, VarsFile, load_vars_file};
use crate::diag::{Diagnostic, Diagnostics, Span, did_you_mean};
use crate::expect;
use crate::steps::{KIND_NAMES, StepSpec, lifts_step_fields};
use crate::yaml::{self, Node, NodeKind, decode};

/// Keys a play may have.
pub const PLAY_KEYS: &[&str] = &[
    "name",
    "hosts",
    "vars",
    "vars_files",
    "strategy",
    "defaults",
    "steps",
    "secrets",
];

/// Keys every step may have beside its kind.
pub const STEP_KEYS: &[&str] = &[
    "name",
    "id",
    "needs",
    "when",
    "loop",
    "retry",
    "timeout",
    "expect",
    "ignore_errors",
    "changed_when",
    "run_once",
    "throttle",
    "tags",
    "secret",
    "unsafe_shell",
];

/// What an Ansible user most likely meant by a key sortie does not have.
fn ansible_hint(key: &str) -> Option<&'static str> {
    Some(match key {
        "tasks" | "pre_tasks" | "post_tasks" => "sortie calls them `steps`",
        "register" => "every step's result is `steps.<id>`: give the step an `id`",
        "with_items" | "with_list" | "loop_control" => "use `loop:` (the element is `item`)",
        "become" | "become_user" => "use `sudo: true` (or `sudo: USER`) inside an `ssh` step",
        "serial" => "use `strategy: { batch: … }`",
        "max_fail_percentage" => "use `strategy: { max_failures: \"10%\" }`",
        "gather_facts" => "sortie gathers no facts; remove it",
        "until" | "retries" | "delay" => "use `retry: { attempts, delay, until }`",
        "failed_when" => "use `expect:` (or an `assert` step)",
        "command" | "shell" | "raw" => "use `ssh:` (on the host) or `local:` (on the runner)",
        "copy" => "use `sftp_put:`",
        "fetch" => "use `sftp_get:`",
        "uri" => "use `http:`",
        "wait_for" => "use `tcp:` with `retry:`",
        "handlers" | "roles" | "import_tasks" | "include_tasks" => {
            "sortie has no handlers, roles or includes; use steps with `when:` and `needs:`"
        }
        "forks" => "use `strategy: { concurrency: N }` or `-c N`",
        "groups" | "children" => "this looks like an inventory: pass it with `-i FILE`",
        _ => return None,
    })
}

fn unknown_key(what: &str, key: &Node, candidates: &[&str], extra: &[&str]) -> Diagnostic {
    let name = key.key_text();
    let all = candidates.iter().chain(extra.iter()).copied();
    let mut d = Diagnostic::error(format!("unknown {what} key `{name}`")).at(key.span);
    d = match did_you_mean(&name, all) {
        Some(s) => d.label(format!("did you mean `{s}`?")),
        None => d.label(format!("not a {what} key")),
    };
    match ansible_hint(&name) {
        Some(h) => d.help(h),
        None => d.help(format!("{what} keys: {}", candidates.join(", "))),
    }
}

// ---------------------------------------------------------------------------------------------
// Plays
// ---------------------------------------------------------------------------------------------

/// Reads play number `index` (from 0); `dir` is the playbook's folder, for `vars_files`.
pub(super) fn read_play(
    index: usize,
    node: &Node,
    dir: &Path,
    diags: &mut Diagnostics,
) -> Option<Play> {
    let Some(entries) = node.as_map() else {
        diags.push(
            Diagnostic::error("a play must be a mapping")
                .at(node.span)
                .label(format!("found {}", node.describe()))
                .help("a play has `hosts:` and `steps:` keys"),
        );
        return None;
    };
    let (known, unknown) = play_entries(entries, diags);
    let clean = Node {
        span: node.span,
        kind: NodeKind::Map(known),
    };
    let raw: PlayRaw = match decode(&clean) {
        Ok(r) => r,
        Err(e) => {
            diags.push(e.into_diagnostic());
            return None;
        }
    };
    let hosts = raw
        .hosts
        .unwrap_or_else(|| yaml::Spanned::new("all".to_string(), node.span));
    let mut vars = IndexMap::new();
    for (k, v) in raw.vars.unwrap_or_default() {
        vars.insert(k, v.0);
    }
    let vars_files = read_vars_files(raw.vars_files.map(|v| v.into_vec()), dir, diags);
    let defaults = raw.defaults.unwrap_or_default();
    let step_nodes = step_nodes(raw.steps.as_ref(), unknown, node.span, diags);
    let steps = step_nodes
        .iter()
        .enumerate()
        .filter_map(|(i, s)| read_step(i, s, &defaults, diags))
        .collect();
    Some(Play {
        index,
        span: node.span,
        name: raw.name.map(|n| n.value),
        hosts,
        vars,
        vars_files,
        strategy: raw.strategy.unwrap_or_default(),
        steps,
        secrets: raw
            .secrets
            .map(|s| s.into_vec().into_iter().map(|n| n.value).collect())
            .unwrap_or_default(),
    })
}

/// The play's own entries, kept; a step key at play level and an unknown key are reported.
/// Also says whether an unknown key was seen (then a missing `steps` is not reported too).
fn play_entries(entries: &[(Node, Node)], diags: &mut Diagnostics) -> (Vec<(Node, Node)>, bool) {
    let mut known = Vec::new();
    let mut unknown = false;
    for (k, v) in entries {
        if PLAY_KEYS.contains(&k.key_text().as_str()) {
            known.push((k.clone(), v.clone()));
        } else if KIND_NAMES.contains(&k.key_text().as_str())
            || STEP_KEYS.contains(&k.key_text().as_str())
        {
            diags.push(
                Diagnostic::error(format!(
                    "`{}` belongs to a step, not to the play",
                    k.key_text()
                ))
                .at(k.span)
                .label("step key at play level")
                .help("put steps in a list under `steps:`, each starting with `- `"),
            );
        } else {
            unknown = true;
            diags.push(unknown_key("play", k, PLAY_KEYS, &[]));
        }
    }
    (known, unknown)
}

/// Reads every file of `vars_files`; relative paths start at the playbook's folder `dir`.
fn read_vars_files(
    files: Option<Vec<yaml::Spanned<String>>>,
    dir: &Path,
    diags: &mut Diagnostics,
) -> Vec<VarsFile> {
    let mut out = Vec::new();
    for f in files.unwrap_or_default() {
        let path = if Path::new(f.value.as_str()).is_absolute() || dir == Path::new(".") {
            PathBuf::from(f.value.as_str())
        } else {
            dir.join(f.value.as_str())
        };
        match load_vars_file(&path, Some(f.span)) {
            Ok(v) => out.push(VarsFile { path: f, vars: v }),
            Err(d) => diags.extend(d),
        }
    }
    out
}

/// The most steps one play may have (a play's graph and every host's walk are sized by it).
pub const MAX_STEPS: usize = 10_000;

/// The nodes of the play's `steps` list (placed at `play` when the key is missing; not
/// reported missing when the play had an unknown key, likely the steps misnamed).
fn step_nodes(
    steps: Option<&yaml::RawNode>,
    unknown: bool,
    play: Span,
    diags: &mut Diagnostics,
) -> Vec<Node> {
    match steps {
        Some(yaml::RawNode(n)) => match &n.kind {
            NodeKind::Seq(items) if items.len() > MAX_STEPS => {
                diags.push(
                    Diagnostic::error(format!(
                        "a play of {} steps: sortie takes at most {MAX_STEPS} per play",
                        items.len()
                    ))
                    .at(items[MAX_STEPS].span)
                    .label(format!("step {} starts past the limit", MAX_STEPS + 1))
                    .help("split the play, or use `loop:` for steps that differ only in a value"),
                );
                Vec::new()
            }
            NodeKind::Seq(items) => items.clone(),
            _ if n.is_null() => Vec::new(),
            _ => {
                diags.push(
                    Diagnostic::error("`steps` must be a list")
                        .at(n.span)
                        .label(format!("found {}", n.describe()))
                        .help("write each step on its own line starting with `- `"),
                );
                Vec::new()
            }
        },
        None if unknown => Vec::new(),
        None => {
            diags.push(
                Diagnostic::error("the play has no `steps`")
                    .at(play)
                    .label("this play does nothing")
                    .help("add `steps:` with a list of steps"),
            );
            Vec::new()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Steps
// ---------------------------------------------------------------------------------------------

/// Reads step number `index` (from 0) of a play whose `defaults` apply to it.
fn read_step(
    index: usize,
    node: &Node,
    defaults: &StepDefaults,
    diags: &mut Diagnostics,
) -> Option<StepDef> {
    let Some(entries) = node.as_map() else {
        diags.push(not_a_mapping(node));
        return None;
    };
    // Stage 1: common keys off, exactly one kind key.
    let StepKeys {
        mut common,
        kinds,
        mut ok,
    } = step_entries(entries, diags);
    let (kind_key, kind_node) = one_kind(&kinds, ok, node.span, diags)?;
    let kind = kind_key.key_text();
    let mut args = kind_node.clone();
    ok &= lift_step_fields(&kind, &mut args, &mut common, diags);
    let common_node = Node {
        span: node.span,
        kind: NodeKind::Map(common),
    };
    let c: StepCommon = match decode(&common_node) {
        Ok(c) => c,
        Err(e) => {
            diags.push(e.into_diagnostic());
            return None;
        }
    };
    // Stage 2: the kind's arguments, strictly (templates may stand for any value).
    let spec = read_spec(&kind, &args, diags)?;
    let mut exp_diags = Vec::new();
    let expect_node = c.expect.map(|r| r.0);
    let expectations = match &expect_node {
        Some(n) => expect::parse(n, &kind, spec.expect_fields(), &mut exp_diags),
        None => Vec::new(),
    };
    diags.0.extend(exp_diags);
    if !ok {
        return None;
    }
    let (id, explicit_id, id_span) = match c.id {
        Some(s) => (s.value.clone(), true, s.span),
        None => (format!("#{}", index + 1), false, kind_key.span),
    };
    let mut tags = defaults
        .tags
        .clone()
        .map(|t| t.into_vec())
        .unwrap_or_default();
    tags.extend(c.tags.map(|t| t.into_vec()).unwrap_or_default());
    Some(StepDef {
        index,
        span: node.span,
        id,
        explicit_id,
        id_span,
        name: c.name,
        kind: spec.name(),
        kind_span: kind_key.span,
        args,
        spec,
        needs: c.needs.map(|n| n.into_vec()),
        when: c.when.map(|w| w.into_vec()).unwrap_or_default(),
        loop_: c.loop_.map(|l| l.0),
        retry: c.retry.or_else(|| defaults.retry.clone()),
        timeout: c.timeout.or_else(|| defaults.timeout.clone()),
        expect_node,
        expect: expectations,
        ignore_errors: c.ignore_errors.or(defaults.ignore_errors).unwrap_or(false),
        changed_when: c.changed_when.map(|w| w.into_vec()),
        run_once: c.run_once.unwrap_or(false),
        throttle: c.throttle,
        tags,
        secret: c.secret.or(defaults.secret).unwrap_or(false),
        unsafe_shell: c.unsafe_shell.or(defaults.unsafe_shell).unwrap_or(false),
    })
}

/// A step that is not a mapping: a bare string gets an example of the step form.
fn not_a_mapping(node: &Node) -> Diagnostic {
    let d = Diagnostic::error("a step must be a mapping")
        .at(node.span)
        .label(format!("found {}", node.describe()));
    if node.as_str().is_some() {
        d.help("write the kind and its arguments, e.g. `- ssh: \"uptime\"`")
    } else {
        d.help("a step is a mapping with one kind key (ssh, http, …) and optional common keys")
    }
}

/// A step's entries sorted by `step_entries`.
struct StepKeys<'a> {
    /// The common keys and their values (copied: `expect` and `timeout` may join them).
    common: Vec<(Node, Node)>,
    /// The kind keys and their arguments (one, unless the step is wrong).
    kinds: Vec<(&'a Node, &'a Node)>,
    /// Every key was known.
    ok: bool,
}

/// Sorts a step's entries into common keys and kind keys; an unknown key is reported, as a
/// misspelt kind when it looks like one.
fn step_entries<'a>(entries: &'a [(Node, Node)], diags: &mut Diagnostics) -> StepKeys<'a> {
    let mut common = Vec::new();
    let mut kinds = Vec::new();
    let mut ok = true;
    for (k, v) in entries {
        let key = k.key_text();
        if STEP_KEYS.contains(&key.as_str()) {
            common.push((k.clone(), v.clone()));
        } else if KIND_NAMES.contains(&key.as_str()) {
            kinds.push((k, v));
        } else {
            ok = false;
            diags.push(unknown_step_key(k, &key));
        }
    }
    StepKeys { common, kinds, ok }
}

fn unknown_step_key(k: &Node, key: &str) -> Diagnostic {
    let mut d = unknown_key("step", k, KIND_NAMES, STEP_KEYS);
    if key == "via" {
        d.label = "`via` belongs to the probe".into();
        d.help = Some(format!(
            "put it among the probe's arguments: `tcp: {{ host: db, port: 5432, {} }}` (tcp, http and dns take it)",
            "via: host"
        ));
    } else if let Some(s) = did_you_mean(key, KIND_NAMES.iter().copied()) {
        d.title = format!("unknown step kind `{key}`");
        d.label = format!("did you mean `{s}`?");
        d.help = Some(format!("step kinds: {}", KIND_NAMES.join(", ")));
    } else if ansible_hint(key).is_none() {
        d.help = Some(format!(
            "a step has one kind ({}) and optional keys ({})",
            KIND_NAMES.join(", "),
            STEP_KEYS.join(", ")
        ));
    }
    d
}

/// The step's one kind key and its arguments. None kind is reported only when every key was
/// known (`ok`: else the unknown key was probably the kind); two kinds are reported always.
fn one_kind<'a>(
    kinds: &[(&'a Node, &'a Node)],
    ok: bool,
    step: Span,
    diags: &mut Diagnostics,
) -> Option<(&'a Node, &'a Node)> {
    match kinds {
        [one] => Some(*one),
        [] => {
            if ok {
                diags.push(
                    Diagnostic::error("the step has no kind")
                        .at(step)
                        .label("what should this step do?")
                        .help(format!("add one of: {}", KIND_NAMES.join(", "))),
                );
            }
            None
        }
        [first, second, ..] => {
            diags.push(
                Diagnostic::error(format!(
                    "a step has one kind, found `{}` and `{}`",
                    first.0.key_text(),
                    second.0.key_text()
                ))
                .at(second.0.span)
                .label("second kind")
                .also(first.0.span, "first kind")
                .help("split this into two steps"),
            );
            None
        }
    }
}

/// `expect` and `timeout` may stand inside the kind's mapping too (for kinds that allow it),
/// but not in both places: moves them from `args` to `common`. False when one was given twice.
fn lift_step_fields(
    kind: &str,
    args: &mut Node,
    common: &mut Vec<(Node, Node)>,
    diags: &mut Diagnostics,
) -> bool {
    if !lifts_step_fields(kind) {
        return true;
    }
    let NodeKind::Map(kv) = &mut args.kind else {
        return true;
    };
    let mut ok = true;
    let mut kept = Vec::new();
    for (k, v) in kv.drain(..) {
        let key = k.key_text();
        if key != "expect" && key != "timeout" {
            kept.push((k, v));
        } else if let Some((other, _)) = common.iter().find(|(ck, _)| ck.key_text() == key) {
            diags.push(
                Diagnostic::error(format!("`{key}` is given twice"))
                    .at(k.span)
                    .label(format!("inside `{kind}`"))
                    .also(other.span, "and at step level")
                    .help(format!(
                        "keep one `{key}`: at the step level or inside `{kind}:`, not both"
                    )),
            );
            ok = false;
        } else {
            common.push((k, v));
        }
    }
    *kv = kept;
    ok
}

/// Stage 2: the kind's arguments, read strictly by the kind (`steps`).
fn read_spec(kind: &str, args: &Node, diags: &mut Diagnostics) -> Option<StepSpec> {
    if let Some(d) = crate::steps::via_misplaced(kind, args) {
        diags.push(d);
        return None;
    }
    match StepSpec::decode(kind, args)? {
        Ok(s) => Some(s),
        Err(e) => {
            let mut d = e.into_diagnostic().at_opt(Some(args.span));
            if d.title.starts_with("expected") && args.as_str().is_some() {
                d = d.help(format!(
                    "`{kind}` takes a mapping of arguments; see `sortie schema playbook`"
                ));
            }
            diags.push(d);
            None
        }
    }
}
