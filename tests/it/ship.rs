//! What ships beside the binary and is generated from its command line: the bash completion,
//! driven in a real `bash` the way readline drives it (COMP_WORDS, COMP_CWORD, COMPREPLY); the
//! zsh and fish scripts; the man pages, rendered by a real `man -l`; and `--version`, which
//! names the git commit of the checkout the binary was built from.

use std::path::Path;
use std::process::Command;

use clap::CommandFactory;

use crate::harness::{repo, sortie_bin};

/// `sortie ARGS`: its stdout, after checking that it exited 0.
fn sortie_stdout(args: &[&str]) -> String {
    let out = Command::new(sortie_bin())
        .args(args)
        .output()
        .expect("sortie runs");
    assert!(
        out.status.success(),
        "sortie {args:?} exited {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// The command names the CLI declares (not clap's `help`).
fn commands() -> Vec<String> {
    sortie::cli::Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect()
}

/// Sources the bash completion in a fresh `bash` and asks it to complete `words` (the last
/// one is the word under the cursor, possibly empty) the way readline would: the function
/// that `complete -p sortie` names is called with COMP_WORDS and COMP_CWORD set. Returns
/// COMPREPLY.
fn bash_complete(script: &Path, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let driver = format!(
        r#"set -u
source '{script}'
spec="$(complete -p sortie)" || {{ echo "no completion registered for sortie" >&2; exit 1; }}
func="$(sed -n 's/.* -F \([^ ]*\) .*/\1/p' <<<"$spec")"
[ -n "$func" ] || {{ echo "no completion function in: $spec" >&2; exit 1; }}
COMP_WORDS=({words})
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
COMP_LINE="${{COMP_WORDS[*]}}"
COMP_POINT=${{#COMP_LINE}}
COMP_TYPE=9
COMPREPLY=()
cur="${{COMP_WORDS[COMP_CWORD]}}"
prev="${{COMP_WORDS[COMP_CWORD-1]}}"
"$func" sortie "$cur" "$prev"
printf '%s\n' "${{COMPREPLY[@]}}"
"#,
        script = script.display(),
        words = quoted.join(" "),
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &driver])
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "bash completion driver failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.trim_end().to_string())
        .collect()
}

#[test]
fn bash_completes_commands_options_and_their_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("sortie.bash");
    std::fs::write(&script, sortie_stdout(&["completions", "bash"])).expect("write script");

    assert_eq!(bash_complete(&script, &["sortie", "ru"]), ["run"]);
    assert_eq!(bash_complete(&script, &["sortie", "r"]), ["run", "report"]);
    assert_eq!(
        bash_complete(&script, &["sortie", "run", "--fo"]),
        ["--format"]
    );
    assert_eq!(
        bash_complete(&script, &["sortie", "run", "--format", ""]),
        ["auto", "human", "plain", "json"]
    );
    let top = bash_complete(&script, &["sortie", ""]);
    for c in commands() {
        assert!(top.contains(&c), "`sortie <TAB>` lacks {c}: {top:?}");
    }
    assert_eq!(
        bash_complete(&script, &["sortie", "completions", "f"]),
        ["fish"]
    );
}

#[test]
fn zsh_and_fish_completions_name_every_command() {
    for (shell, marker) in [("zsh", "#compdef sortie"), ("fish", "complete -c sortie")] {
        let script = sortie_stdout(&["completions", shell]);
        assert!(script.contains(marker), "{shell} script lacks {marker:?}");
        for c in commands() {
            assert!(script.contains(&c), "{shell} script does not name {c}");
        }
    }
}

/// Renders a page with `man -l` (formatting off, one long line per paragraph) and collapses
/// runs of white space, so justified text reads as written.
fn man_text(roff: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let page = dir.path().join("page.1");
    std::fs::write(&page, roff).expect("write page");
    let out = Command::new("man")
        .arg("-l")
        .arg(&page)
        .env("MANWIDTH", "300")
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .env_remove("MAN_KEEP_FORMATTING")
        .output()
        .expect("man runs (man-db: scripts/setup installs it)");
    assert!(
        out.status.success(),
        "man -l failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn the_man_page_has_the_commands_and_the_exit_codes() {
    let text = man_text(&sortie_stdout(&["man"]));
    for section in [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "SUBCOMMANDS",
        "EXIT STATUS",
        "VERSION",
    ] {
        assert!(text.contains(section), "no {section} in:\n{text}");
    }
    assert!(
        text.contains("sortie - Run declarative YAML playbooks"),
        "{text}"
    );
    for c in commands() {
        assert!(
            text.contains(&format!("sortie-{c}(1)")),
            "{c} missing:\n{text}"
        );
    }
    let status = &text[text.find("EXIT STATUS").expect("exit status")..];
    for (code, meaning) in sortie::exit::MEANINGS {
        assert!(
            status.contains(&format!("{code} {meaning}")),
            "exit code {code} ({meaning}) missing:\n{status}"
        );
    }
    assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");
}

#[test]
fn every_command_has_a_page_of_its_own() {
    let run = man_text(&sortie_stdout(&["man", "run"]));
    assert!(run.contains("sortie-run - Run a playbook"), "{run}");
    for flag in ["--inventory", "--format", "--junit", "--retry-failed"] {
        assert!(
            run.contains(flag),
            "{flag} missing from sortie-run(1):\n{run}"
        );
    }

    let dir = tempfile::tempdir().expect("tempdir");
    sortie_stdout(&["man", "--dir", &dir.path().display().to_string()]);
    let mut pages: Vec<String> = std::fs::read_dir(dir.path())
        .expect("read pages")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    let mut expected: Vec<String> = commands().iter().map(|c| format!("sortie-{c}.1")).collect();
    expected.push("sortie.1".into());
    expected.sort();
    assert_eq!(pages, expected);

    let out = Command::new(sortie_bin())
        .args(["man", "nonsense"])
        .output()
        .expect("sortie runs");
    assert_eq!(out.status.code(), Some(sortie::exit::INVALID));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("commands: run, check"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `git ARGS` in the repository: trimmed stdout, or `None` when git fails or is missing.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(repo())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn version_names_the_commit_of_the_checkout() {
    let text = sortie_stdout(&["--version"]);
    let line = text.trim_end();
    let prefix = format!("sortie {} (commit ", env!("CARGO_PKG_VERSION"));
    let commit = line
        .strip_prefix(&prefix)
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("`sortie --version` said {line:?}"));
    let own_checkout = git(&["rev-parse", "--show-toplevel"])
        .and_then(|top| Path::new(&top).canonicalize().ok())
        .is_some_and(|top| repo().canonicalize().is_ok_and(|r| r == top));
    if !own_checkout {
        assert_eq!(commit, "unknown", "not built from a git checkout");
        return;
    }
    let head = git(&["rev-parse", "HEAD"]).expect("HEAD");
    let short = commit.strip_suffix("-dirty").unwrap_or(commit);
    assert!(
        short.len() >= 7 && head.starts_with(short),
        "`sortie --version` names {commit}, the checkout is at {head}"
    );
    // The other `-V` spelling says the same.
    assert_eq!(sortie_stdout(&["-V"]), text);
}
