//! The `set` kind: host variables for later steps of the same host (templated values keep
//! their native types). Precedence: above play vars, below loop `item` and `-e` extra vars.

use indexmap::IndexMap;
use serde::Deserialize;

use super::{CheckCx, Kind, RunsOn};
use crate::diag::Diagnostic;
use crate::expect::ExpectFields;
use crate::yaml::{Node, RawNode};

/// Set host variables for later steps.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct Set {
    /// Variable name → value (any YAML value; strings are templates).
    pub vars: IndexMap<String, RawNode>,
}

/// Names that `set` may not replace: they are the runner's own.
pub const RESERVED: &[&str] = &["host", "steps", "item", "env", "run"];

impl Kind for Set {
    const NAME: &'static str = "set";
    const SUMMARY: &'static str = "Set host variables for later steps.";
    const RUNS_ON: RunsOn = RunsOn::Engine;
    const EXPECT: ExpectFields = ExpectFields::NONE;
    const DEFAULT_EXPECT: &'static str = "";
    const LIFTS_STEP_FIELDS: bool = false;
    const DEFINES_VARS: bool = true;

    /// The names of the variables it sets.
    fn describe(args: &Node) -> Option<String> {
        let keys: Vec<String> = args.as_map()?.iter().map(|(k, _)| k.key_text()).collect();
        Some(keys.join(", "))
    }

    fn run<'a>(&'a self, _cx: &'a super::TaskCx<'a>) -> super::StepFuture<'a> {
        Box::pin(async move {
            let mut out = super::StepOutput::default();
            for (k, v) in &self.vars {
                out.fields.insert(k.clone(), v.0.to_json());
            }
            Ok(out)
        })
    }

    fn check(&self, cx: &CheckCx<'_>, out: &mut Vec<Diagnostic>) {
        for (k, _) in cx.args.as_map().unwrap_or(&[]) {
            let name = k.key_text();
            let valid = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if RESERVED.contains(&name.as_str()) {
                out.push(
                    Diagnostic::error(format!("`{name}` cannot be set"))
                        .at(k.span)
                        .label("this name belongs to the runner")
                        .help(format!("reserved names: {}", RESERVED.join(", "))),
                );
            } else if !valid {
                out.push(
                    Diagnostic::error(format!("`{name}` is not a valid variable name"))
                        .at(k.span)
                        .label("letters, digits and `_`, not starting with a digit")
                        .help("templates could not refer to it"),
                );
            }
        }
        if cx.args.as_map().is_none_or(|m| m.is_empty()) {
            out.push(
                Diagnostic::error("`set` needs a mapping of variables")
                    .at(cx.args.span)
                    .label(format!("found {}", cx.args.describe()))
                    .help("write `set: { name: value }`"),
            );
        }
    }
}
