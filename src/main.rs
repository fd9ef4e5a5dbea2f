//! The `sortie` binary: parse the command line, call the library, exit with its code.
//! A command line clap refuses is invalid input (exit 3, clap's message on stderr), not
//! clap's own exit 2, which is sortie's code for an unreachable host; `--help` and
//! `--version` print on stdout and exit 0.

use clap::Parser;
use sortie::{app, cli, exit};

fn main() {
    large_allocations_mapped();
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() {
                exit::INVALID
            } else {
                exit::OK
            });
        }
    };
    let code = match &args.command {
        cli::Command::Run(a) => app::run(a),
        cli::Command::Check(a) => app::check(a),
        cli::Command::Plan(a) => app::plan(a),
        cli::Command::Inventory(a) => app::inventory(a),
        cli::Command::Schema(a) => app::schema(a),
        cli::Command::Report(a) => app::report(a),
        cli::Command::Completions(a) => app::completions(a),
        cli::Command::Man(a) => app::man(a),
        cli::Command::Serve(a) => app::serve(a),
    };
    std::process::exit(code);
}

/// glibc's malloc serves a block of 128 KiB or more from its own `mmap`, and gives it back on
/// `free`, only until the first such block is freed: then it raises that threshold to the
/// freed size and serves later ones from its per-thread arenas, where a freed MiB stays. A run
/// that reads a MiB of HTTP body per host then ends up holding every copy each step made
/// (BENCHMARKS.md: 50 hosts × 10 MB bodies peaked at 136 MiB; 90 MiB with this). Fixing the
/// threshold keeps big blocks mapped and returned; small ones are unaffected.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn large_allocations_mapped() {
    // SAFETY: mallopt only sets a malloc parameter; it is called first thing in `main`,
    // before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn large_allocations_mapped() {}
