//! sortie: declarative network automation. A playbook (YAML) is read with positions
//! (`yaml`), checked into typed plays and steps (`playbook`, with each step kind's arguments
//! from `steps`), matched against an inventory (`inventory`), compiled per host into a task
//! graph (`plan`) whose strings are minijinja templates (`template`, with variable scopes from
//! `vars`), then run by `exec` over SSH sessions from `conn`, with expectations checked by
//! `expect` and results reported by `report`. Every problem on the way is a
//! `diag::Diagnostic`, rendered one way. `app` holds the commands behind the CLI (`cli`).
//!
//! `diag`, `yaml`, `playbook`, `inventory`, `template`, `vars` and `plan` never open a
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
pub mod graph;
pub mod inventory;
pub mod plan;
pub mod playbook;
pub mod report;
pub mod schema;
pub mod steps;
pub mod template;
pub mod tls;
pub mod units;
pub mod vars;
pub mod yaml;
