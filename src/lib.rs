//! sortie: declarative network automation. A playbook (YAML) is read with positions
//! (`yaml`), checked into typed plays and steps (`playbook`, with each step kind's arguments
//! from `steps`), matched against an inventory (`inventory`), compiled per host into a task
//! graph (`plan`) whose strings are minijinja templates (`template`), then run.
//! Every problem on the way is a `diag::Diagnostic`, rendered one way.

pub mod diag;
pub mod template;
pub mod units;
pub mod yaml;
