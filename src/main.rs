//! The `sortie` binary: parse the command line, call the library, exit with its code.
//! A command line clap refuses is invalid input (exit 3, clap's message on stderr), not
//! clap's own exit 2, which is sortie's code for an unreachable host; `--help` and
//! `--version` print on stdout and exit 0.

use clap::Parser;
use sortie::{app, cli, exit};

fn main() {
    // Before any other thread exists (see `app::tune_malloc`).
    app::tune_malloc();
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
