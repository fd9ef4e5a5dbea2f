//! Build script: records the git commit sortie is built from, for `sortie --version`.
//!
//! It sets `SORTIE_GIT_COMMIT` to `git rev-parse --short HEAD`, with `-dirty` appended when
//! tracked files differ from that commit, or to `unknown` when the package is not built from
//! its own git checkout (a source tarball, a crate unpacked inside some other repository, no
//! `git` on PATH). It re-runs when HEAD moves — the HEAD file, the ref it points to and
//! `packed-refs`, found through `git rev-parse --git-path` so that linked worktrees work — and
//! when the index or the binary's sources change, so the dirty mark follows them.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    for path in ["src", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={path}");
    }
    let commit = match own_checkout(&dir) {
        true => commit(&dir),
        false => None,
    };
    println!(
        "cargo:rustc-env=SORTIE_GIT_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );
}

/// `git` in the package's directory; its trimmed stdout when it succeeds.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8(out.stdout).ok()?.trim().to_string())
}

/// Whether the package directory is the top of a git work tree (and not a directory inside
/// some unrelated repository).
fn own_checkout(dir: &Path) -> bool {
    let Some(top) = git(dir, &["rev-parse", "--show-toplevel"]) else {
        return false;
    };
    match (Path::new(&top).canonicalize(), dir.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// The short commit of HEAD, `-dirty` when tracked files have changes; watches what moves HEAD.
fn commit(dir: &Path) -> Option<String> {
    let mut watch = vec!["HEAD".to_string(), "packed-refs".into(), "index".into()];
    if let Some(reference) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        watch.push(reference);
    }
    for name in &watch {
        if let Some(path) = git(dir, &["rev-parse", "--git-path", name]) {
            let path = dir.join(path);
            // A ref that is only in packed-refs has no file of its own, and watching a missing
            // file re-runs every build; a commit rewrites the index, which is watched.
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    let short = git(dir, &["rev-parse", "--short", "HEAD"])?;
    // `--no-optional-locks`: status must not refresh (rewrite) the index it watches.
    let status = git(
        dir,
        &[
            "--no-optional-locks",
            "status",
            "--porcelain",
            "--untracked-files=no",
        ],
    );
    Some(match status {
        Some(s) if !s.is_empty() => format!("{short}-dirty"),
        _ => short,
    })
}
