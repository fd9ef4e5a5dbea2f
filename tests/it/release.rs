//! The release tarball, as a user gets it: `scripts/release` builds
//! `sortie-VERSION-TARGET.tar.gz` and its `.sha256`; this unpacks it on this machine, checks
//! the checksum and the contents, that the binary needs only the C library, and runs the
//! binary from inside it (`--version`, `check` on every example playbook it ships).
//!
//! The optimized build takes minutes, so the test is ignored by default: `scripts/test` runs
//! it after the rest of the suite when `SORTIE_RELEASE_TEST=1` (`.ci/run` sets it), handing
//! over the tarball it built in `SORTIE_RELEASE_TARBALL`; without that variable the test runs
//! `scripts/release` itself.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::repo;

/// The tarball to test: the one named by `SORTIE_RELEASE_TARBALL`, or a fresh build.
fn tarball(scratch: &Path) -> PathBuf {
    if let Some(p) = std::env::var_os("SORTIE_RELEASE_TARBALL") {
        return PathBuf::from(p);
    }
    let out = Command::new(repo().join("scripts/release"))
        .arg("--out")
        .arg(scratch)
        .current_dir(repo())
        .output()
        .expect("scripts/release runs");
    assert!(
        out.status.success(),
        "scripts/release failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().expect("command runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The shared libraries a binary needs, by soname, from `ldd`.
fn needed_libraries(bin: &Path) -> Vec<String> {
    let (code, out, err) = run(Command::new("ldd").arg(bin));
    assert_eq!(code, 0, "ldd failed: {err}");
    out.lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(|l| l.rsplit('/').next().unwrap_or(l).to_string())
        .collect()
}

#[test]
#[ignore = "builds an optimized release (minutes); scripts/test runs it with SORTIE_RELEASE_TEST=1"]
fn the_release_tarball_unpacks_and_runs_here() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let tarball = tarball(scratch.path());
    let file = tarball
        .file_name()
        .expect("a file name")
        .to_string_lossy()
        .into_owned();
    let version = env!("CARGO_PKG_VERSION");
    let name = file
        .strip_suffix(".tar.gz")
        .filter(|n| n.starts_with(&format!("sortie-{version}-")))
        .unwrap_or_else(|| panic!("{file} is not sortie-{version}-TARGET.tar.gz"))
        .to_string();

    // The checksum file sits beside it and holds.
    let (code, _, err) = run(Command::new("sha256sum")
        .args(["-c", &format!("{file}.sha256")])
        .current_dir(tarball.parent().expect("a directory")));
    assert_eq!(code, 0, "sha256sum -c failed: {err}");

    let unpacked = tempfile::tempdir().expect("tempdir");
    let (code, _, err) = run(Command::new("tar")
        .arg("-xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(unpacked.path()));
    assert_eq!(code, 0, "tar failed: {err}");
    let top = unpacked.path().join(&name);
    for f in [
        "sortie",
        "README.md",
        "LICENSE",
        "complete/sortie.bash",
        "complete/_sortie",
        "complete/sortie.fish",
        "doc/sortie.1",
        "doc/sortie-run.1",
        "examples/demo.yml",
        "examples/inventory.yml",
        "schemas/playbook.schema.json",
    ] {
        assert!(top.join(f).is_file(), "{f} is not in {file}");
    }

    // Only the C library (and the runtime it comes with) is needed.
    let libs = needed_libraries(&top.join("sortie"));
    let allowed = [
        "linux-vdso.so.1",
        "libc.so.6",
        "libm.so.6",
        "libgcc_s.so.1",
        "libpthread.so.0",
        "libdl.so.2",
        "librt.so.1",
        "ld-linux-x86-64.so.2",
        "ld-linux-aarch64.so.1",
    ];
    let other: Vec<&String> = libs
        .iter()
        .filter(|l| !allowed.contains(&l.as_str()))
        .collect();
    assert!(
        other.is_empty(),
        "the binary needs {other:?}; all: {libs:?}"
    );

    let (code, out, err) = run(Command::new(top.join("sortie")).arg("--version"));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!("sortie {version} (commit ")),
        "{out}"
    );

    let mut examples: Vec<String> = std::fs::read_dir(top.join("examples"))
        .expect("examples")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yml") && !n.starts_with("inventory"))
        .collect();
    examples.sort();
    assert!(examples.len() >= 5, "{examples:?}");
    for ex in &examples {
        let (code, out, err) = run(Command::new(top.join("sortie"))
            .args(["check", &format!("examples/{ex}")])
            .current_dir(&top));
        assert_eq!(code, 0, "sortie check examples/{ex}:\n{out}{err}");
    }
    let (code, out, err) = run(Command::new(top.join("sortie"))
        .args([
            "check",
            "examples/deploy.yml",
            "-i",
            "examples/inventory.yml",
        ])
        .current_dir(&top));
    assert_eq!(code, 0, "check with the inventory:\n{out}{err}");
}
