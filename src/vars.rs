//! Variable scopes: the `-e` extra vars from the command line, and a host's variables merged by
//! precedence — inventory (all < groups < host, merged by `inventory`) < play `vars` <
//! `vars_files` < `set` < loop `item` < `-e` — then turned into the minijinja context with
//! `host`, `steps`, `item`, `env` and `run`. Used by `plan` and by the runner.

use std::path::Path;

use indexmap::IndexMap;
use minijinja::Value;
use serde_json::Value as Json;

use crate::diag::{Diagnostic, Diagnostics, Span, register_source};
use crate::inventory::Host;
use crate::playbook::Play;
use crate::template::{json_to_value, templates};
use crate::yaml::{self, Node};

/// Variables as JSON values, in definition order.
pub type VarMap = IndexMap<String, Json>;

/// Reads `-e` arguments: `KEY=VALUE` (a string), `@file.yml` (a YAML mapping), or an inline
/// YAML/JSON mapping (`'{"a": 1}'`). Later arguments win.
pub fn parse_extra(args: &[String]) -> Result<VarMap, Diagnostics> {
    let mut out = VarMap::new();
    let mut diags = Diagnostics::default();
    for (i, a) in args.iter().enumerate() {
        if let Some(path) = a.strip_prefix('@') {
            match crate::playbook::load_vars_file(Path::new(path), None) {
                Ok(v) => {
                    for (k, n) in v {
                        out.insert(k, n.to_json());
                    }
                }
                Err(d) => diags.extend(d),
            }
        } else if a.trim_start().starts_with('{') {
            let file = register_source(format!("-e argument {}", i + 1), a.as_str());
            match yaml::parse(file, a) {
                Ok(n) => match n.as_map() {
                    Some(m) => {
                        for (k, v) in m {
                            out.insert(k.key_text(), v.to_json());
                        }
                    }
                    None => diags.push(
                        Diagnostic::error("an inline `-e` value must be a mapping")
                            .at(n.span)
                            .help("write `-e '{\"name\": \"value\"}'` or `-e name=value`"),
                    ),
                },
                Err(d) => diags.push(d),
            }
        } else if let Some((k, v)) = a.split_once('=') {
            let k = k.trim();
            if k.is_empty() {
                diags.push(
                    Diagnostic::error(format!("`-e {a}` has no variable name"))
                        .help("write `-e NAME=VALUE`"),
                );
            } else {
                out.insert(k.to_string(), Json::String(v.to_string()));
            }
        } else {
            diags.push(
                Diagnostic::error(format!("`-e {a}` is not a variable"))
                    .help("write `-e NAME=VALUE`, `-e @vars.yml` or `-e '{\"name\": \"value\"}'`"),
            );
        }
    }
    diags.into_result(out)
}

/// The run's identity, visible to templates as `run`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RunInfo {
    pub id: String,
    pub started_at: String,
}

/// The host's merged variables (inventory, play vars, vars files; templates rendered), plus
/// the extra vars kept apart because they outrank `set` and `item`.
#[derive(Clone, Debug)]
pub struct Scope {
    pub base: VarMap,
    pub extra: VarMap,
    pub host: Json,
    pub run: Json,
    /// `base`, `extra`, `host` and `run` as template values, converted once per host so that
    /// building a task's context costs a few reference counts, not a copy of every value.
    values: ScopeValues,
}

#[derive(Clone, Debug, Default)]
struct ScopeValues {
    /// `groups` (group → host names), one value shared by every host of the run.
    groups: Value,
    base: ValueMap,
    extra: ValueMap,
    host: Value,
    run: Value,
}

/// Template values by name. Cloning a `Value` only bumps a reference count.
pub type ValueMap = std::collections::BTreeMap<String, Value>;

/// Converts variables to template values once.
pub fn to_values(vars: &VarMap) -> ValueMap {
    vars.iter()
        .map(|(k, v)| (k.clone(), json_to_value(v)))
        .collect()
}

/// The `host` object templates see.
pub fn host_object(h: &Host) -> Json {
    serde_json::json!({
        "name": h.name,
        "address": h.address,
        "port": h.port.or(h.ssh.port).unwrap_or(22),
        "user": h.user.clone().or_else(|| h.ssh.user.clone()),
        "groups": h.groups,
        "vars": h.vars,
    })
}

/// The process environment as a template value (read once: it does not change during a run).
fn env_value() -> Value {
    static ENV: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    ENV.get_or_init(|| json_to_value(&env_object())).clone()
}

fn env_object() -> Json {
    Json::Object(
        std::env::vars()
            .map(|(k, v)| (k, Json::String(v)))
            .collect(),
    )
}

/// Builds a host's scope for a play: merges by precedence and renders templated vars (a
/// variable may use any other, in any order, up to a few levels deep).
pub fn host_scope(
    play: &Play,
    host: &Host,
    extra: &VarMap,
    run: &RunInfo,
    groups: &Value,
) -> Result<Scope, Diagnostic> {
    let mut raw: IndexMap<String, Node> = IndexMap::new();
    for (k, v) in &host.vars {
        raw.insert(k.clone(), Node::from_json(v, host.span.unwrap_or_default()));
    }
    for (k, v) in &play.vars {
        raw.insert(k.clone(), v.clone());
    }
    for f in &play.vars_files {
        for (k, v) in &f.vars {
            raw.insert(k.clone(), v.clone());
        }
    }
    for k in extra.keys() {
        raw.shift_remove(k);
    }
    let host_json = host_object(host);
    let run_json = serde_json::to_value(run).unwrap_or(Json::Null);
    let mut scope = Scope {
        base: raw.iter().map(|(k, v)| (k.clone(), v.to_json())).collect(),
        extra: extra.clone(),
        host: host_json,
        run: run_json,
        values: ScopeValues {
            groups: groups.clone(),
            ..ScopeValues::default()
        },
    };
    scope.refresh_values();
    // Render templated vars — extra vars too, as Ansible does — repeating so that vars may
    // refer to vars defined later.
    let mut templated: Vec<(String, Node, bool)> = raw
        .iter()
        .filter(|(_, v)| v.has_template())
        .map(|(k, v)| (k.clone(), v.clone(), false))
        .collect();
    for (k, v) in extra {
        if let Json::String(text) = v
            && crate::yaml::is_template(text)
        {
            let node = Node::scalar(text.clone(), crate::yaml::Style::Quoted, Span::default());
            templated.push((k.clone(), node, true));
        }
    }
    let mut failure: Option<Diagnostic> = None;
    for _pass in 0..4 {
        let ctx = scope.context_values(&ValueMap::new(), &ValueMap::new(), None);
        let mut changed = false;
        failure = None;
        for (k, node, is_extra) in &templated {
            match templates().render_node(node, &ctx) {
                Ok(n) => {
                    let j = n.to_json();
                    let (map, values) = if *is_extra {
                        (&mut scope.extra, &mut scope.values.extra)
                    } else {
                        (&mut scope.base, &mut scope.values.base)
                    };
                    if map.get(k) != Some(&j) {
                        values.insert(k.clone(), json_to_value(&j));
                        map.insert(k.clone(), j);
                        changed = true;
                    }
                }
                Err(mut d) => {
                    if *is_extra {
                        d.span = None;
                        d.title = format!("{} (in `-e {k}`)", d.title);
                    }
                    failure.get_or_insert(d);
                }
            }
        }
        if !changed {
            break;
        }
    }
    if let Some(d) = failure {
        return Err(d);
    }
    Ok(scope)
}

impl Scope {
    fn refresh_values(&mut self) {
        self.values = ScopeValues {
            groups: self.values.groups.clone(),
            base: to_values(&self.base),
            extra: to_values(&self.extra),
            host: json_to_value(&self.host),
            run: json_to_value(&self.run),
        };
    }

    /// The template context from JSON data (converted here; for one-off uses).
    pub fn context(&self, set_vars: &VarMap, steps: &Json, item: Option<&Json>) -> Value {
        let steps: ValueMap = match steps {
            Json::Object(o) => o
                .iter()
                .map(|(k, v)| (k.clone(), json_to_value(v)))
                .collect(),
            _ => ValueMap::new(),
        };
        self.context_values(&to_values(set_vars), &steps, item.map(json_to_value))
    }

    /// The template context: vars < `set` vars < `item` < extra vars, and the runner's names
    /// `host`, `steps`, `run`, `env`. Built from values already converted.
    pub fn context_values(
        &self,
        set_vars: &ValueMap,
        steps: &ValueMap,
        item: Option<Value>,
    ) -> Value {
        let mut m = self.values.base.clone();
        // Below every variable: a variable named `groups` hides it.
        if !self.values.groups.is_undefined() {
            m.entry("groups".into())
                .or_insert_with(|| self.values.groups.clone());
        }
        for (k, v) in set_vars {
            m.insert(k.clone(), v.clone());
        }
        if let Some(i) = item {
            m.insert("item".into(), i);
        }
        for (k, v) in &self.values.extra {
            m.insert(k.clone(), v.clone());
        }
        m.insert("host".into(), self.values.host.clone());
        m.insert("steps".into(), Value::from(steps.clone()));
        m.insert("run".into(), self.values.run.clone());
        m.insert("env".into(), env_value());
        Value::from(m)
    }
}
