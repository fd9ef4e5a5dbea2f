//! sortie: declarative network automation. A playbook (YAML) is read with positions
//! (`yaml`), checked into typed plays and steps (`playbook`, with each step kind's arguments
//! from the registry in `steps`), matched against an inventory (`inventory`), compiled per host
//! into a task graph (`plan`, over the one graph helper in `graph`) whose strings are minijinja
//! templates (`template`, with variable scopes from `vars`). The engine (`exec`) takes a typed
//! `RunRequest` and an event sink and returns the `RunReport` (`report`): it runs each task
//! through its kind (`steps`) over SSH sessions from `conn`, checks expectations (`expect`),
//! and fails with a `error::StepError` when a step cannot do its work. Every problem on the
//! way is a `diag::Diagnostic`, rendered one way. `app` holds the commands behind the CLI
//! (`cli`) — thin fronts that build requests and map reports to exit codes (`exit`).
//! `docs/architecture.md` draws the modules and their arrows.
//!
//! `diag`, `yaml`, `playbook`, `inventory`, `template`, `vars`, `graph` and `plan` never open a
//! connection: `sortie check` runs them alone. The test lab (real servers on loopback for the
//! tests, benchmarks and demos) is a crate of its own, `sortie-lab` (`lab/`), that sortie only
//! uses in its tests.

#![allow(clippy::result_large_err)]

pub mod app;
pub mod cli;
pub mod conn;
pub mod diag;
pub mod error;
pub mod exec;
pub mod exit;
pub mod expect;
pub mod file_version;
pub mod graph;
pub mod inventory;
pub mod plan;
pub mod playbook;
pub mod random;
pub mod report;
pub mod schema;
pub mod shell;
pub mod steps;
pub mod template;
pub mod tls;
pub mod units;
pub mod vars;
pub mod yaml;
