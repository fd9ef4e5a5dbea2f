//! Playbooks: the typed model (`Playbook` → `Play` → `StepDef` + `StepSpec`) and its loader.
//! Input is a YAML file (parsed with positions by `yaml`); steps are read in two stages —
//! common keys off, exactly one known kind key, then a strict read of that kind's arguments
//! (`steps`) — and `validate` then checks ids, `needs`, cycles, templates, regexes and kind
//! rules. Output is a `Playbook` for `plan` and the runner, or every problem as `Diagnostics`.

pub mod model;
pub mod validate;

use std::path::{Path, PathBuf};

use indexmap::IndexMap;

pub use model::*;

use crate::diag::{Diagnostic, Diagnostics, Span, did_you_mean, register_source};
use crate::expect;
use crate::steps::{KIND_NAMES, StepSpec, lifts_step_fields};
use crate::yaml::{self, Node, NodeKind, decode};

/// Reads a file and registers its text for diagnostics.
pub fn read_source(path: &Path, what: &str) -> Result<(crate::diag::FileId, String), Diagnostic> {
    match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => {
                let id = register_source(path.display().to_string(), text.as_str());
                Ok((id, text))
            }
            Err(e) => Err(Diagnostic::error(format!(
                "{what} `{}` is not UTF-8 text",
                path.display()
            ))
            .label(format!(
                "invalid byte at offset {}",
                e.utf8_error().valid_up_to()
            ))
            .help("save the file as UTF-8")),
        },
        Err(e) => {
            let help = match e.kind() {
                std::io::ErrorKind::NotFound => {
                    "check the path; relative paths start from the current directory"
                }
                std::io::ErrorKind::PermissionDenied => "check the file's permissions",
                _ => "check that the path names a readable file",
            };
            Err(Diagnostic::error(format!(
                "cannot read {what} `{}`: {}",
                path.display(),
                io_reason(&e)
            ))
            .help(help))
        }
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        std::io::ErrorKind::IsADirectory => "it is a directory".into(),
        _ => e.to_string(),
    }
}

/// Loads and validates a playbook file.
pub fn load(path: &Path) -> Result<Playbook, Diagnostics> {
    let (file, text) = read_source(path, "playbook")?;
    load_text(path, file, &text)
}

/// Loads and validates playbook text (already registered as `file`); `path` places it.
pub fn load_str(path: &Path, text: &str) -> Result<Playbook, Diagnostics> {
    let file = register_source(path.display().to_string(), text);
    load_text(path, file, text)
}

fn load_text(path: &Path, file: crate::diag::FileId, text: &str) -> Result<Playbook, Diagnostics> {
    let root = yaml::parse(file, text)?;
    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    let mut diags = Diagnostics::default();
    let play_nodes: Vec<&Node> = match &root.kind {
        NodeKind::Map(_) => vec![&root],
        NodeKind::Seq(items) => items.iter().collect(),
        _ if root.is_null() => {
            return Err(Diagnostic::error("the playbook is empty")
                .at(root.span)
                .label("no play here")
                .help("a playbook is a play (`hosts:` and `steps:`) or a list of plays")
                .into());
        }
        _ => {
            return Err(
                Diagnostic::error("a playbook must be a play or a list of plays")
                    .at(root.span)
                    .label(format!("found {}", root.describe()))
                    .help("start with `name:`, `hosts:` and `steps:` keys")
                    .into(),
            );
        }
    };
    if play_nodes.is_empty() {
        diags.push(
            Diagnostic::error("the playbook has no plays")
                .at(root.span)
                .label("empty list")
                .help("add a play with `hosts:` and `steps:`"),
        );
    }
    let mut plays = Vec::new();
    for (i, node) in play_nodes.into_iter().enumerate() {
        if let Some(play) = read_play(i, node, &dir, &mut diags) {
            plays.push(play);
        }
    }
    let playbook = Playbook {
        path: path.to_path_buf(),
        dir,
        file,
        plays,
        warnings: Vec::new(),
    };
    validate::validate(&playbook, &mut diags);
    if diags.has_errors() {
        return Err(diags);
    }
    let mut playbook = playbook;
    playbook.warnings = diags.0;
    Ok(playbook)
}

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

fn read_play(index: usize, node: &Node, dir: &Path, diags: &mut Diagnostics) -> Option<Play> {
    let Some(entries) = node.as_map() else {
        diags.push(
            Diagnostic::error("a play must be a mapping")
                .at(node.span)
                .label(format!("found {}", node.describe()))
                .help("a play has `hosts:` and `steps:` keys"),
        );
        return None;
    };
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
    let mut vars_files = Vec::new();
    for f in raw.vars_files.map(|v| v.into_vec()).unwrap_or_default() {
        let path = if Path::new(f.value.as_str()).is_absolute() || dir == Path::new(".") {
            PathBuf::from(f.value.as_str())
        } else {
            dir.join(f.value.as_str())
        };
        match load_vars_file(&path, Some(f.span)) {
            Ok(v) => vars_files.push(VarsFile { path: f, vars: v }),
            Err(d) => diags.extend(d),
        }
    }
    let defaults = raw.defaults.unwrap_or_default();
    let mut steps = Vec::new();
    let step_nodes = match &raw.steps {
        Some(yaml::RawNode(n)) => match &n.kind {
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
                    .at(node.span)
                    .label("this play does nothing")
                    .help("add `steps:` with a list of steps"),
            );
            Vec::new()
        }
    };
    for (i, s) in step_nodes.iter().enumerate() {
        if let Some(step) = read_step(i, s, &defaults, diags) {
            steps.push(step);
        }
    }
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

/// Loads a vars file (a YAML mapping) into variables.
pub fn load_vars_file(
    path: &Path,
    at: Option<Span>,
) -> Result<IndexMap<String, Node>, Diagnostics> {
    let (file, text) = read_source(path, "vars file").map_err(|d| {
        let Some(at) = at else { return d };
        let d = d.at(at).label("listed here");
        if d.help
            .as_deref()
            .is_some_and(|h| h.starts_with("check the path"))
        {
            d.help("`vars_files` paths are relative to the playbook's folder")
        } else {
            d
        }
    })?;
    let root = yaml::parse(file, &text)?;
    match &root.kind {
        NodeKind::Map(entries) => Ok(entries
            .iter()
            .map(|(k, v)| (k.key_text(), v.clone()))
            .collect()),
        _ if root.is_null() => Ok(IndexMap::new()),
        _ => Err(
            Diagnostic::error("a vars file must be a mapping of variables")
                .at(root.span)
                .label(format!("found {}", root.describe()))
                .help("write `name: value` lines")
                .into(),
        ),
    }
}

fn read_step(
    index: usize,
    node: &Node,
    defaults: &StepDefaults,
    diags: &mut Diagnostics,
) -> Option<StepDef> {
    let Some(entries) = node.as_map() else {
        let mut d = Diagnostic::error("a step must be a mapping")
            .at(node.span)
            .label(format!("found {}", node.describe()));
        d = if node.as_str().is_some() {
            d.help("write the kind and its arguments, e.g. `- ssh: \"uptime\"`")
        } else {
            d.help("a step is a mapping with one kind key (ssh, http, …) and optional common keys")
        };
        diags.push(d);
        return None;
    };
    // Stage 1: common keys off, exactly one kind key.
    let mut common = Vec::new();
    let mut kinds: Vec<(&Node, &Node)> = Vec::new();
    let mut ok = true;
    for (k, v) in entries {
        let key = k.key_text();
        if STEP_KEYS.contains(&key.as_str()) {
            common.push((k.clone(), v.clone()));
        } else if KIND_NAMES.contains(&key.as_str()) {
            kinds.push((k, v));
        } else {
            ok = false;
            let mut d = unknown_key("step", k, KIND_NAMES, STEP_KEYS);
            if let Some(s) = did_you_mean(&key, KIND_NAMES.iter().copied()) {
                d.title = format!("unknown step kind `{key}`");
                d.label = format!("did you mean `{s}`?");
                d.help = Some(format!("step kinds: {}", KIND_NAMES.join(", ")));
            } else if ansible_hint(&key).is_none() {
                d.help = Some(format!(
                    "a step has one kind ({}) and optional keys ({})",
                    KIND_NAMES.join(", "),
                    STEP_KEYS.join(", ")
                ));
            }
            diags.push(d);
        }
    }
    let (kind_key, kind_node) = match kinds.as_slice() {
        [one] => *one,
        [] => {
            if ok {
                diags.push(
                    Diagnostic::error("the step has no kind")
                        .at(node.span)
                        .label("what should this step do?")
                        .help(format!("add one of: {}", KIND_NAMES.join(", "))),
                );
            }
            return None;
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
            return None;
        }
    };
    let kind = kind_key.key_text();
    // `expect` and `timeout` may stand inside the kind's mapping too, but not in both places.
    let mut args = kind_node.clone();
    if lifts_step_fields(&kind)
        && let NodeKind::Map(kv) = &mut args.kind
    {
        let mut kept = Vec::new();
        for (k, v) in kv.drain(..) {
            let key = k.key_text();
            if key == "expect" || key == "timeout" {
                if let Some((other, _)) = common.iter().find(|(ck, _)| ck.key_text() == key) {
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
            } else {
                kept.push((k, v));
            }
        }
        *kv = kept;
    }
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
    let spec = match StepSpec::decode(&kind, &args) {
        Some(Ok(s)) => s,
        Some(Err(e)) => {
            let mut d = e.into_diagnostic().at_opt(Some(args.span));
            if d.title.starts_with("expected") && args.as_str().is_some() {
                d = d.help(format!(
                    "`{kind}` takes a mapping of arguments; see `sortie schema playbook`"
                ));
            }
            diags.push(d);
            return None;
        }
        None => return None,
    };
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
        tags,
        secret: c.secret.or(defaults.secret).unwrap_or(false),
        unsafe_shell: c.unsafe_shell.or(defaults.unsafe_shell).unwrap_or(false),
    })
}

/// Reads the expectation a kind uses when a step declares none.
pub fn default_expectations(spec: &StepSpec) -> Vec<expect::Expectation> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<HashMap<&'static str, Vec<expect::Expectation>>>> =
        OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut map = cache.lock().unwrap_or_else(|p| p.into_inner());
    map.entry(spec.name())
        .or_insert_with(|| {
            let text = spec.default_expect();
            if text.is_empty() {
                return Vec::new();
            }
            let file = register_source(format!("<default expectation of {}>", spec.name()), text);
            let Ok(node) = yaml::parse(file, text) else {
                return Vec::new();
            };
            let mut sink = Vec::new();
            expect::parse(&node, spec.name(), spec.expect_fields(), &mut sink)
        })
        .clone()
}
