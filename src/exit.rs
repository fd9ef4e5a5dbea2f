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

/// Every code with what it means, in order: for the man page (`sortie man`).
pub const MEANINGS: [(i32, &str); 5] = [
    (OK, "every host ok"),
    (FAILED, "a step failed on some host"),
    (
        UNREACHABLE,
        "some host unreachable (connect, authentication or host-key failure)",
    ),
    (
        INVALID,
        "invalid input (playbook, inventory, vars, flags): nothing was run",
    ),
    (
        INTERRUPTED,
        "interrupted (SIGINT/SIGTERM); reports were still written",
    ),
];
