//! The `assert` kind: conditions (minijinja expressions) over the host's variables and earlier
//! step results; the step fails with `message` (or the first false condition) when any is false.

use serde::Deserialize;

use super::{Kind, OneOrMany, RunsOn};
use crate::expect::ExpectFields;
use crate::yaml::{Node, Spanned};

/// Check conditions; fail the host when one is false.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Assert {
    /// Expressions that must all be true, e.g. `steps.health.status == 200`.
    pub that: OneOrMany<Spanned<String>>,
    /// The failure message (templated).
    pub message: Option<String>,
}

impl Assert {
    pub fn conditions(&self) -> Vec<Spanned<String>> {
        self.that.clone().into_vec()
    }
}

impl Kind for Assert {
    const NAME: &'static str = "assert";
    const SUMMARY: &'static str = "Check conditions over variables and earlier results.";
    const RUNS_ON: RunsOn = RunsOn::Engine;
    const SHORT_FORM: bool = true;

    /// Its first condition.
    fn describe(args: &Node) -> Option<String> {
        if let Some(text) = args.as_str() {
            return Some(text.to_string());
        }
        let that = args.get("that")?;
        match that.as_seq() {
            Some(items) => items.first().and_then(|i| i.as_str()).map(str::to_string),
            None => that.as_str().map(str::to_string),
        }
    }
    const EXPECT: ExpectFields = ExpectFields::NONE;
    const DEFAULT_EXPECT: &'static str = "";
    const RAW_FIELDS: &'static [&'static str] = &["that"];

    fn run<'a>(&'a self, cx: &'a super::TaskCx<'a>) -> super::StepFuture<'a> {
        Box::pin(async move {
            use crate::template::{Place, templates};
            let mut results = Vec::new();
            let mut failed: Option<String> = None;
            for c in self.conditions() {
                let ok = templates()
                    .truthy(&c.value, Place::of_span(c.span), cx.ctx)
                    .map_err(super::StepError::Template)?;
                results.push(serde_json::json!({"that": c.value, "ok": ok}));
                if !ok && failed.is_none() {
                    failed = Some(match &self.message {
                        Some(m) => m.clone(),
                        None => format!("assertion failed: {}", c.value),
                    });
                }
            }
            Ok(super::StepOutput {
                failure: failed,
                ..Default::default()
            }
            .with("assertions", results))
        })
    }

    fn from_scalar(node: &Node) -> Option<Self> {
        node.as_str().map(|t| Assert {
            that: OneOrMany::One(Spanned::new(t.to_string(), node.span)),
            message: None,
        })
    }
}
