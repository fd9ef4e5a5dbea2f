//! The playbook's typed model: what a user writes (`PlayRaw`, `StepCommon`, `Strategy`,
//! `Retry`, read from YAML with serde, whose doc comments become the JSON Schema) and what the
//! loader makes of it (`Playbook`, `Play`, `StepDef`) for `plan` and the runner.

use std::path::PathBuf;

use indexmap::IndexMap;
use serde::Deserialize;

use crate::diag::{FileId, Span};
use crate::expect::Expectation;
use crate::steps::{OneOrMany, StepSpec};
use crate::units::{CountOrPercent, Duration};
use crate::yaml::{Node, RawNode, Spanned, Tpl};

/// Variables as written: name → YAML node (strings are templates, rendered per host).
pub type Vars = IndexMap<String, Node>;

/// A loaded, validated playbook.
#[derive(Clone, Debug)]
pub struct Playbook {
    pub path: PathBuf,
    /// The playbook's directory: relative paths in steps start here.
    pub dir: PathBuf,
    pub file: FileId,
    pub plays: Vec<Play>,
    /// Warnings found while loading (an insecure TLS setting, …): shown, never fatal.
    pub warnings: Vec<crate::diag::Diagnostic>,
}

/// One play: hosts, vars, strategy and steps.
#[derive(Clone, Debug)]
pub struct Play {
    pub index: usize,
    pub span: Span,
    pub name: Option<String>,
    pub hosts: Spanned<String>,
    pub vars: Vars,
    pub vars_files: Vec<VarsFile>,
    pub strategy: Strategy,
    pub steps: Vec<StepDef>,
    /// Names of variables whose values are secrets (`secrets:`).
    pub secrets: Vec<String>,
}

impl Play {
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("play {}", self.index + 1))
    }

    pub fn step(&self, id: &str) -> Option<&StepDef> {
        self.steps.iter().find(|s| s.id == id)
    }
}

/// A vars file named in `vars_files`, already read.
#[derive(Clone, Debug)]
pub struct VarsFile {
    pub path: Spanned<String>,
    pub vars: Vars,
}

/// A play as written.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlayRaw {
    /// The play's name, shown in output and reports.
    pub name: Option<Spanned<String>>,
    /// Inventory pattern of the hosts to run on (`web`, `web:!canary`, `all`). Default `all`.
    pub hosts: Option<Spanned<String>>,
    /// Play variables (above inventory vars, below `set`, loop `item` and `-e`).
    pub vars: Option<IndexMap<String, RawNode>>,
    /// YAML files of variables, relative to the playbook (above play `vars`).
    pub vars_files: Option<OneOrMany<Spanned<String>>>,
    /// How hosts are scheduled.
    pub strategy: Option<Strategy>,
    /// Names of variables whose values are secrets, wherever they are defined (inventory,
    /// `vars`, `vars_files`, `set`, `-e`): their values are shown as `***` in every output —
    /// the terminal, the JSON report and events, JUnit and TAP.
    pub secrets: Option<OneOrMany<Spanned<String>>>,
    /// Step fields applied to every step that does not set them.
    pub defaults: Option<StepDefaults>,
    /// The steps, in order; each follows the one before unless it says `needs`.
    #[schemars(with = "Vec<serde_json::Value>")]
    pub steps: Option<RawNode>,
}

/// How a play schedules hosts.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Strategy {
    /// Hosts in flight at once (default 50; `-c N` overrides). A number, not a template:
    /// the strategy is read before any variable is known.
    pub concurrency: Option<usize>,
    /// Rolling batches: a size, a percentage, or a list of them (the last repeats):
    /// `[1, "25%", "100%"]`.
    pub batch: Option<OneOrMany<CountOrPercent>>,
    /// Once more hosts than this have failed, no further batch starts (`3` or `"10%"`).
    pub max_failures: Option<CountOrPercent>,
    /// Hosts in flight at once per group, on top of `concurrency`: `{ lb_pool_a: 2, db: 1 }`
    /// runs at most two hosts of `lb_pool_a` (and one of `db`) at a time.
    #[schemars(with = "Option<std::collections::BTreeMap<String, usize>>")]
    pub limits: Option<IndexMap<String, Spanned<usize>>>,
}

/// Step fields a play applies to all its steps.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepDefaults {
    /// Default step timeout.
    pub timeout: Option<Tpl<Duration>>,
    /// Default retry policy.
    pub retry: Option<Retry>,
    /// Default for `ignore_errors`.
    pub ignore_errors: Option<bool>,
    /// Tags added to every step.
    pub tags: Option<OneOrMany<String>>,
    /// Default for `secret`.
    pub secret: Option<bool>,
    /// Default for `unsafe_shell`.
    pub unsafe_shell: Option<bool>,
}

/// Retrying a step until it passes.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// Total attempts, the first included (e.g. 10).
    pub attempts: Tpl<u32>,
    /// Wait between attempts (default 1s).
    pub delay: Option<Tpl<Duration>>,
    /// Multiply the delay by this after each attempt (default 1: constant).
    pub backoff: Option<Tpl<f64>>,
    /// Retry until these expressions hold (besides the step's expectations).
    pub until: Option<OneOrMany<Spanned<String>>>,
}

/// The keys every step may carry beside its kind.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepCommon {
    /// A name shown in output and reports.
    pub name: Option<Spanned<String>>,
    /// An identifier: later steps read this step's result as `steps.<id>` and can `needs` it.
    pub id: Option<Spanned<String>>,
    /// Ids this step waits for, replacing the default edge to the previous step
    /// (`needs: []` starts at once).
    pub needs: Option<OneOrMany<Spanned<String>>>,
    /// Run only when this expression (or all of these) is true; else skipped.
    pub when: Option<OneOrMany<Spanned<String>>>,
    /// Run once per element of a list (or an expression giving one), binding `item`.
    #[serde(rename = "loop")]
    #[schemars(with = "serde_json::Value")]
    pub loop_: Option<RawNode>,
    /// Retry the step until it passes.
    pub retry: Option<Retry>,
    /// Cancel the step and fail it after this long.
    pub timeout: Option<Tpl<Duration>>,
    /// Expectations on the step's result fields (replace the kind's default).
    #[schemars(with = "serde_json::Value")]
    pub expect: Option<RawNode>,
    /// A failure of this step does not stop the host.
    pub ignore_errors: Option<bool>,
    /// Report `changed` only when this expression is true.
    pub changed_when: Option<OneOrMany<Spanned<String>>>,
    /// Run on one host of the play only; every host sees its result.
    pub run_once: Option<bool>,
    /// At most this many hosts run this step at once (Ansible's `throttle`).
    #[schemars(with = "Option<usize>")]
    pub throttle: Option<Spanned<usize>>,
    /// Tags for `--tags` / `--skip-tags`.
    pub tags: Option<OneOrMany<String>>,
    /// Redact this step's arguments and outputs as `***` everywhere.
    pub secret: Option<bool>,
    /// Let templated values with shell metacharacters reach the shell unquoted.
    pub unsafe_shell: Option<bool>,
}

/// One step of a play, validated.
#[derive(Clone, Debug)]
pub struct StepDef {
    /// Position in the play (0-based).
    pub index: usize,
    pub span: Span,
    /// The user's `id`, or `#N` (N = position, 1-based).
    pub id: String,
    pub explicit_id: bool,
    pub id_span: Span,
    pub name: Option<Spanned<String>>,
    pub kind: &'static str,
    pub kind_span: Span,
    /// The kind's arguments as written (rendered per host before running).
    pub args: Node,
    /// The arguments as checked, templates unrendered.
    pub spec: StepSpec,
    pub needs: Option<Vec<Spanned<String>>>,
    pub when: Vec<Spanned<String>>,
    pub loop_: Option<Node>,
    pub retry: Option<Retry>,
    pub timeout: Option<Tpl<Duration>>,
    pub expect_node: Option<Node>,
    /// Declared expectations (empty: the kind's default applies).
    pub expect: Vec<Expectation>,
    pub ignore_errors: bool,
    pub changed_when: Option<Vec<Spanned<String>>>,
    pub run_once: bool,
    /// Hosts running this step at once, at most.
    pub throttle: Option<Spanned<usize>>,
    pub tags: Vec<String>,
    pub secret: bool,
    pub unsafe_shell: bool,
}

impl StepDef {
    /// The step's name, or a short description of what it does.
    pub fn display_name(&self) -> String {
        if let Some(n) = &self.name {
            return n.value.clone();
        }
        // A secret step's arguments may hold the secret itself, and its name is shown before
        // the redactor has seen its rendered arguments.
        if self.secret {
            return format!("{} ***", self.kind);
        }
        let summary = self.spec.describe(&self.args).unwrap_or_default();
        let summary: String = summary
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(60)
            .collect();
        if summary.is_empty() {
            self.kind.to_string()
        } else {
            format!("{} {}", self.kind, summary)
        }
    }
}
