//! `sortie check` on every example playbook and inventory, and on every file in
//! `playbooks/invalid/` against the exact diagnostic stored beside it.

use crate::harness::{repo, sortie};

fn yml_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "yml")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("inventory"))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn every_example_playbook_passes_check() {
    let dir = repo().join("playbooks");
    let files = yml_files(&dir);
    assert!(files.len() >= 4, "examples: {files:?}");
    for f in files {
        let name = f
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let out = sortie(&dir, &["check", &name]);
        assert_eq!(out.code, 0, "{name}:\n{}", out.all());
        assert!(
            out.stdout.starts_with(&format!("ok: {name}")),
            "{}",
            out.all()
        );
        assert!(out.stderr.is_empty(), "{}", out.all());
        // The examples declare their schema for editors.
        let text = std::fs::read_to_string(&f).expect("read");
        assert!(
            text.starts_with("# yaml-language-server: $schema=../schemas/playbook.schema.json"),
            "{name}"
        );
    }
}

#[test]
fn examples_check_against_both_example_inventories() {
    let dir = repo().join("playbooks");
    for inv in ["inventory.yml", "inventory.ini"] {
        for pb in ["deploy.yml", "nightly-logs.yml", "ci-validate.yml"] {
            let out = sortie(&dir, &["check", pb, "-i", inv]);
            assert_eq!(out.code, 0, "{pb} with {inv}:\n{}", out.all());
            assert!(out.stdout.contains("hosts"), "{}", out.all());
        }
    }
}

#[test]
fn every_invalid_playbook_gives_its_exact_diagnostic() {
    let dir = repo().join("playbooks/invalid");
    let files = yml_files(&dir);
    assert!(files.len() >= 20, "only {} invalid examples", files.len());
    for f in files {
        let name = f
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let expected_path = f.with_extension("expected");
        // `{KINDS}` stands for the registry's list of kinds, so a new kind edits no example.
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|_| panic!("{} has no .expected file", name))
            .replace("{KINDS}", &sortie::steps::KIND_NAMES.join(", "));
        let out = sortie(&dir, &["check", &name]);
        assert_eq!(out.code, 3, "{name} must be rejected:\n{}", out.all());
        assert_eq!(out.stdout, "", "{name}: nothing on stdout");
        assert_eq!(out.stderr, expected, "{name}: diagnostic differs");
        // Every diagnostic names the file, line and column, and says what to do.
        assert!(
            out.stderr.contains(&format!("--> {name}:")),
            "{name}: no location\n{}",
            out.stderr
        );
        assert!(
            out.stderr.contains("= help: "),
            "{name}: no help line\n{}",
            out.stderr
        );
        assert!(!out.stderr.contains("panicked"), "{name}");
    }
}

#[test]
fn several_mistakes_are_reported_together() {
    let dir = repo().join("playbooks/invalid");
    let out = sortie(&dir, &["check", "several-mistakes.yml"]);
    assert_eq!(out.code, 3);
    assert!(out.stderr.matches("error: ").count() >= 3, "{}", out.stderr);
}

#[test]
fn missing_playbook_is_a_clear_error() {
    let dir = repo();
    let out = sortie(&dir, &["check", "no/such/playbook.yml"]);
    assert_eq!(out.code, 3);
    assert!(
        out.stderr
            .starts_with("error: cannot read playbook `no/such/playbook.yml`: no such file"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("help:"), "{}", out.stderr);
}

#[test]
fn inventory_list_resolves_native_and_ini() {
    let dir = repo().join("playbooks");
    for inv in ["inventory.yml", "inventory.ini"] {
        let out = sortie(&dir, &["inventory", "-i", inv, "--list"]);
        assert_eq!(out.code, 0, "{}", out.all());
        let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
        let hosts = v["hosts"].as_object().expect("hosts");
        assert!(
            hosts.contains_key("web01.example.com") && hosts.contains_key("web04.example.com"),
            "{inv}: {hosts:?}"
        );
        assert_eq!(v["hosts"]["canary"]["address"], "10.0.0.9", "{inv}");
        assert_eq!(v["hosts"]["canary"]["port"], 2222, "{inv}");
        assert_eq!(
            v["hosts"]["web02.example.com"]["vars"]["role"], "frontend",
            "{inv}"
        );
        assert_eq!(v["hosts"]["db1"]["vars"]["env"], "prod", "{inv}");
        let out = sortie(
            &dir,
            &["inventory", "-i", inv, "--list", "-l", "web:!canary"],
        );
        let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
        assert_eq!(v["hosts"].as_object().map(|o| o.len()), Some(4), "{inv}");
    }
}

#[test]
fn plan_renders_steps_per_host_in_three_formats() {
    let dir = repo().join("playbooks");
    let out = sortie(
        &dir,
        &[
            "plan",
            "deploy.yml",
            "-i",
            "inventory.yml",
            "--host",
            "web02.example.com",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.contains("web02.example.com"), "{}", out.stdout);
    assert!(
        out.stdout.contains("http://web02.example.com:8080/health"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("canary"), "{}", out.stdout);
    let out = sortie(
        &dir,
        &[
            "plan",
            "ci-validate.yml",
            "-i",
            "inventory.yml",
            "--format",
            "json",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
    let first = &v[0];
    assert_eq!(first["steps"][0]["needs"], serde_json::json!([]));
    let out = sortie(
        &dir,
        &[
            "plan",
            "deploy.yml",
            "-i",
            "inventory.yml",
            "--format",
            "dot",
        ],
    );
    assert!(out.stdout.starts_with("digraph sortie {"), "{}", out.stdout);
    assert!(out.stdout.contains("->"), "{}", out.stdout);
    let out = sortie(
        &dir,
        &[
            "plan",
            "deploy.yml",
            "-i",
            "inventory.yml",
            "--host",
            "web2",
        ],
    );
    assert_eq!(out.code, 3);
    assert!(
        out.stderr.contains("no play runs on host `web2`"),
        "{}",
        out.stderr
    );
}

#[test]
fn schemas_in_the_repo_match_the_types() {
    for which in ["playbook", "inventory", "report"] {
        let out = sortie(&repo(), &["schema", which]);
        assert_eq!(out.code, 0);
        let path = repo().join(format!("schemas/{which}.schema.json"));
        let stored = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            stored == out.stdout,
            "schemas/{which}.schema.json is out of date: run `cargo run -- schema {which} > schemas/{which}.schema.json`"
        );
    }
}

#[test]
fn readme_shows_the_example_files_as_they_are() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README");
    for f in [
        "playbooks/deploy.yml",
        "playbooks/nightly-logs.yml",
        "playbooks/ci-validate.yml",
        "playbooks/inventory.yml",
        "playbooks/inventory.ini",
    ] {
        let text = std::fs::read_to_string(repo().join(f)).expect("example");
        assert!(
            readme.contains(text.trim_end()),
            "README.md does not show {f} as it is"
        );
    }
    assert!(readme.contains("scripts/demo") && readme.contains("scripts/test"));
}

/// The registry is the one list of kinds: the README's kind table has a row for each, in
/// registry order, saying where it runs as the kind does; and each kind has an example
/// playbook that uses it.
#[test]
fn the_readme_table_and_the_examples_follow_the_registry() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README");
    let table = readme
        .split("### Step kinds")
        .nth(1)
        .expect("a `### Step kinds` section");
    let rows: Vec<(String, String)> = table
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (cells[1].trim_matches('`').to_string(), cells[2].to_string())
        })
        .collect();
    let names: Vec<&str> = rows.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, sortie::steps::KIND_NAMES, "the README's kind table");
    for ((kind, runs), (name, on)) in rows.iter().zip(sortie::steps::KIND_RUNS_ON) {
        assert_eq!(kind, name);
        assert!(
            runs.starts_with(on.describe()),
            "README says `{kind}` runs `{runs}`; the kind says `{}`",
            on.describe()
        );
    }
    let mut used = std::collections::BTreeSet::new();
    for f in yml_files(&repo().join("playbooks")) {
        if let Ok(pb) = sortie::playbook::load(&f) {
            used.extend(pb.plays.iter().flat_map(|p| p.steps.iter().map(|s| s.kind)));
        }
    }
    for k in sortie::steps::KIND_NAMES {
        assert!(used.contains(k), "no example playbook uses `{k}`");
    }
}

/// Input built to cost: thousands of mistakes on one long line print a bounded report (the
/// first problems, each line cut around its caret, then a count); an inventory of too many
/// hosts is refused at the range that passes the limit.
#[test]
fn costly_input_gets_a_bounded_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let needs: Vec<String> = (0..5000).map(|i| format!("missing{i}")).collect();
    let pb = format!(
        "steps:\n  - local: \"true\"\n    needs: [{}]\n",
        needs.join(", ")
    );
    std::fs::write(dir.path().join("many.yml"), pb).expect("write");
    let out = sortie(dir.path(), &["check", "many.yml"]);
    assert_eq!(out.code, 3, "{}", out.all());
    assert!(
        out.stderr.len() < 64 * 1024,
        "{} bytes of errors",
        out.stderr.len()
    );
    assert!(
        out.stderr
            .contains("… and 4950 more problems not shown: fix these first"),
        "{}",
        &out.stderr[out.stderr.len().saturating_sub(300)..]
    );
    assert!(
        out.stderr.contains("\n5000 errors\n"),
        "the count is still right"
    );

    let inv: String = (0..3)
        .map(|g| format!("      g{g}-[000000:099999].example.com: {{}}\n"))
        .collect();
    std::fs::write(
        dir.path().join("huge.yml"),
        format!("groups:\n  big:\n    hosts:\n{inv}"),
    )
    .expect("write");
    let out = sortie(dir.path(), &["inventory", "-i", "huge.yml", "--list"]);
    assert_eq!(out.code, 3, "{}", out.all());
    assert!(
        out.stderr.contains("the inventory has too many hosts")
            && out.stderr.contains("huge.yml:6:"),
        "{}",
        out.stderr
    );
}

/// A file that is not UTF-8 — a playbook, a vars file, `-e @file`, each kind of inventory, a
/// `group_vars` file — is placed at the line and column of its first invalid byte.
#[test]
fn files_that_are_not_utf8_are_placed_at_their_first_invalid_byte() {
    use crate::harness::Case;
    let latin1: &[u8] = b"# Configuration\nname: caf\xe9\n";
    let write = |c: &Case, name: &str, bytes: &[u8]| {
        let p = c.path(name);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        std::fs::write(p, bytes).expect("write");
    };
    let expect = |out: &crate::harness::Output, what: &str, at: &str, help: &str| {
        assert_eq!(out.code, 3, "{what}\n{}", out.all());
        assert!(
            out.stderr.contains("` is not UTF-8 text\n --> "),
            "{what}\n{}",
            out.stderr
        );
        let place = out
            .stderr
            .lines()
            .find_map(|l| l.trim().strip_prefix("--> "))
            .unwrap_or("");
        assert!(place.ends_with(at), "{what}: {place}\n{}", out.stderr);
        assert!(
            out.stderr.contains(&format!("= help: {help}")),
            "{what}\n{}",
            out.stderr
        );
    };
    let utf8 = "save the file as UTF-8";
    let ok_pb = "hosts: all\nsteps:\n  - local: \"true\"\n";

    let c = Case::new(ok_pb);
    write(&c, "playbook.yml", &[b"hosts: all\n", latin1].concat());
    expect(&c.check(), "playbook", "playbook.yml:3:10", utf8);

    let c = Case::new("hosts: all\nvars_files: [vars.yml]\nsteps:\n  - local: \"true\"\n");
    write(&c, "vars.yml", latin1);
    let out = c.check();
    expect(&out, "vars file", "vars.yml:2:10", utf8);
    assert!(out.stderr.contains("listed here"), "{}", out.stderr);

    let c = Case::new(ok_pb).arg("-e").arg("@extra.yml");
    write(&c, "extra.yml", latin1);
    expect(&c.run(), "-e @file", "extra.yml:2:10", utf8);

    for (name, text) in [
        (
            "hosts.yml",
            &b"hosts:\n  web1: { address: 10.0.0.1 }\n# caf\xe9\n"[..],
        ),
        (
            "hosts.ini",
            &b"[web]\nweb1 ansible_host=10.0.0.1 # caf\xe9\n"[..],
        ),
        (
            "ansible.yml",
            &b"all:\n  hosts:\n    web1:\n      role: caf\xe9\n"[..],
        ),
    ] {
        let c = Case::new(ok_pb);
        write(&c, name, text);
        let p = c.path(name);
        let c = c.inventory_file(p);
        let at = match name {
            "hosts.yml" => "hosts.yml:3:6",
            "hosts.ini" => "hosts.ini:2:33",
            _ => "ansible.yml:4:16",
        };
        expect(&c.check(), name, at, utf8);
    }

    let c = Case::new(ok_pb);
    write(&c, "hosts.ini", b"[web]\nweb1\n");
    write(&c, "group_vars/web.yml", latin1);
    let p = c.path("hosts.ini");
    let c = c.inventory_file(p);
    expect(&c.check(), "group_vars", "group_vars/web.yml:2:10", utf8);

    // A binary file given as an inventory: placed too, and called what it is.
    let c = Case::new(ok_pb);
    write(
        &c,
        "inventory.bin",
        b"\x7fELF\x02\x01\x01\x00\x00\xff\xfe\x1b[31m",
    );
    let p = c.path("inventory.bin");
    let c = c.inventory_file(p);
    let out = c.check();
    expect(
        &out,
        "binary",
        "inventory.bin:1:10",
        "this looks like a binary file; the inventory must be UTF-8 text",
    );
    assert!(!out.stderr.contains('\x1b'), "{:?}", out.stderr);
}

/// Output into a pipe that closes early (`| head -c 1`) ends quietly, without a panic: an
/// inventory listing of megabytes, far more than a pipe holds.
#[test]
fn a_closed_pipe_is_no_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("big.yml"),
        "groups:\n  web:\n    hosts:\n      web[00000:19999].example.com: {}\n",
    )
    .expect("write");
    for args in [
        "inventory -i big.yml --list",
        "inventory -i big.yml --graph",
    ] {
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!(
                "{} {args} | head -c 1 >/dev/null; echo \"rc=${{PIPESTATUS[0]}}\" >&2",
                crate::harness::sortie_bin().display()
            ))
            .current_dir(dir.path())
            .output()
            .expect("bash");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args}: {stderr}");
        assert!(stderr.contains("rc=0"), "{args}: {stderr}");
    }
}
