//! The `sortie` binary: parse the command line, call the library, exit with its code.

use clap::Parser;
use sortie::{app, cli};

fn main() {
    let args = cli::Cli::parse();
    let code = match &args.command {
        cli::Command::Run(a) => app::run(a),
        cli::Command::Check(a) => app::check(a),
        cli::Command::Plan(a) => app::plan(a),
        cli::Command::Inventory(a) => app::inventory(a),
        cli::Command::Schema(a) => app::schema(a),
        cli::Command::Completions(a) => app::completions(a),
        cli::Command::Man(a) => app::man(a),
    };
    std::process::exit(code);
}
