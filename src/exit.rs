//! Exit codes, as the design fixes them: the one place that knows the numbers. `report`
//! derives a run's code from its hosts' statuses; the CLI fronts (`app`) return these.

/// Every host ok.
pub const OK: i32 = 0;
/// A step failed on some host.
pub const FAILED: i32 = 1;
/// Some host was unreachable (connect, authentication or host-key failure).
pub const UNREACHABLE: i32 = 2;
/// Invalid input (playbook, inventory, vars, flags): nothing was run.
pub const INVALID: i32 = 3;
/// Interrupted (SIGINT/SIGTERM); reports were still written.
pub const INTERRUPTED: i32 = 4;
