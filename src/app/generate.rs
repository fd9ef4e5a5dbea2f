//! What is generated from the command line itself, so it never drifts from it: shell
//! completion scripts (`sortie completions bash|zsh|fish`, clap_complete) and the man pages
//! (`sortie man [COMMAND]`, clap_mangen): sortie(1) with the commands, the options, the exit
//! codes and the version, and a page of its own for each command (sortie-run(1), …).

use std::io::Write;

use clap::CommandFactory;
use roff::{Roff, bold, roman};

use crate::cli::{Cli, CompletionsArgs, ManArgs, Shell};
use crate::exit;

/// `sortie completions SHELL`: the script on stdout.
pub fn completions(args: &CompletionsArgs) -> i32 {
    let shell = match args.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "sortie", &mut out);
    write_stdout(&out)
}

/// `sortie man [COMMAND]`: a page in roff on stdout; `sortie man --dir DIR`: every page.
pub fn man(args: &ManArgs) -> i32 {
    if let Some(dir) = &args.dir {
        return match write_pages(dir) {
            Ok(()) => exit::OK,
            Err(e) => {
                eprintln!(
                    "error: cannot write the man pages into {}: {e}",
                    dir.display()
                );
                exit::FAILED
            }
        };
    }
    let mut out = Vec::new();
    let rendered = match args.command.as_deref() {
        None => main_page(&mut out),
        Some(name) => match command_page(name, &mut out) {
            Some(r) => r,
            None => {
                eprintln!(
                    "error: `{name}` is not a sortie command\n  = help: commands: {}",
                    command_names().join(", ")
                );
                return exit::INVALID;
            }
        },
    };
    if let Err(e) = rendered {
        // Rendering writes into memory; this is not expected to happen.
        eprintln!("error: cannot render the man page: {e}");
        return exit::FAILED;
    }
    write_stdout(&out)
}

/// The command tree as the pages see it: built, without clap's `help` command; the NAME line
/// is the package's one-line description, the DESCRIPTION the `--help` text.
fn command() -> clap::Command {
    let cmd = Cli::command();
    let long = cmd.get_about().cloned().unwrap_or_default();
    let mut cmd = cmd
        .about(env!("CARGO_PKG_DESCRIPTION"))
        .long_about(long)
        .disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// The names of the commands, in the order the CLI declares them.
pub fn command_names() -> Vec<String> {
    command()
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| s.get_name().to_string())
        .collect()
}

/// sortie(1): clap_mangen's sections, with EXIT STATUS and SEE ALSO before the version.
fn main_page(out: &mut dyn Write) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(command());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    man.render_subcommands_section(out)?;

    let mut roff = Roff::new();
    roff.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in exit::MEANINGS {
        roff.control("TP", []);
        roff.text([bold(code.to_string())]);
        roff.text([roman(meaning)]);
    }
    roff.control("SH", ["SEE ALSO"]);
    let pages: Vec<String> = command_names()
        .iter()
        .map(|n| format!("sortie-{n}(1)"))
        .collect();
    roff.text([roman(pages.join(", "))]);
    roff.to_writer(out)?;

    man.render_version_section(out)
}

/// sortie.1 and sortie-NAME.1 for every command, into `dir` (created when missing).
fn write_pages(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut page = Vec::new();
    main_page(&mut page)?;
    std::fs::write(dir.join("sortie.1"), &page)?;
    for name in command_names() {
        let mut page = Vec::new();
        if let Some(r) = command_page(&name, &mut page) {
            r?;
            std::fs::write(dir.join(format!("sortie-{name}.1")), &page)?;
        }
    }
    Ok(())
}

/// sortie-NAME(1), or `None` when there is no such command.
fn command_page(name: &str, out: &mut dyn Write) -> Option<std::io::Result<()>> {
    let cmd = command();
    let sub = cmd
        .get_subcommands()
        .find(|s| s.get_name() == name && !s.is_hide_set())?
        .clone();
    Some(clap_mangen::Man::new(sub).render(out))
}

/// Writes generated text to stdout; a closed pipe (`| head`) is not an error worth a message.
pub(super) fn write_stdout(bytes: &[u8]) -> i32 {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => exit::OK,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => exit::OK,
        Err(e) => {
            eprintln!("error: cannot write to stdout: {e}");
            exit::FAILED
        }
    }
}
