//! The three user jobs of the design, end to end on the lab fleet, each with the example
//! playbook the README shows: a rolling deploy with batches and a failure threshold, nightly
//! log collection over SFTP, and config validation for CI with JUnit output.

use std::path::Path;
use std::process::Command;

use crate::harness::{Case, TestLab, repo};

fn example(name: &str) -> String {
    std::fs::read_to_string(repo().join("playbooks").join(name)).expect("example playbook")
}

fn lab_var(t: &TestLab, name: &str) -> String {
    match &t.lab.vars()[name] {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The lab's inventory plus a `web` group made of the lab's hosts.
fn web_case(t: &TestLab, playbook: &str) -> Case {
    Case::new(playbook)
        .inventory_file(t.inventory())
        .inventory("groups:\n  web:\n    children: [lab]\n  canary: {}\n")
}

#[test]
fn rolling_deploy_stops_after_the_batch_where_too_many_hosts_failed() {
    let t = TestLab::start(10);
    let root = tempfile::tempdir().expect("tmp");
    let case = web_case(&t, &example("deploy.yml"));
    // The release: a tarball with a restart script that records the version it started.
    let pkg = case.path("pkg");
    std::fs::create_dir_all(&pkg).expect("mkdir");
    std::fs::write(
        pkg.join("restart.sh"),
        "#!/bin/sh\necho \"$APP_VERSION\" > \"$(dirname \"$0\")/running\"\n",
    )
    .expect("w");
    Command::new("chmod")
        .arg("+x")
        .arg(pkg.join("restart.sh"))
        .status()
        .expect("chmod");
    std::fs::create_dir_all(case.path("files")).expect("mkdir");
    let ok = Command::new("tar")
        .arg("-czf")
        .arg(case.path("files/app-2.4.1.tar.gz"))
        .arg("-C")
        .arg(&pkg)
        .arg("restart.sh")
        .status()
        .expect("tar");
    assert!(ok.success());
    // h03 and h04 (both in the second batch) have a broken disk: `current` is a plain file.
    for h in ["h03", "h04"] {
        std::fs::create_dir_all(root.path().join(h)).expect("mkdir");
        std::fs::write(root.path().join(h).join("current"), "not a directory").expect("w");
    }
    let case = case.args([
        "-e",
        &format!("app_dir={}/{{{{ host.name }}}}", root.path().display()),
        "-e",
        &format!("http_port={}", lab_var(&t, "http_port")),
    ]);
    let out = case.run();
    assert_eq!(out.code, 1, "{}", out.all());
    // Batch 1 (h01) and batch 2 (h02–h04) ran; 2 failures > 10% of 10 hosts stops batch 3.
    for h in ["h01", "h02"] {
        assert_eq!(out.host_status(h), "changed", "{}", out.all());
        let running = std::fs::read_to_string(root.path().join(h).join("current/running"))
            .expect("restarted");
        assert_eq!(running.trim(), "2.4.1");
        assert_eq!(out.task(h, "health")["output"]["json"]["status"], "ok");
    }
    for h in ["h03", "h04"] {
        assert_eq!(out.host_status(h), "failed");
        assert_eq!(out.status(h, "Unpack"), "failed");
        assert_eq!(out.status(h, "health"), "skipped");
    }
    for i in 5..=10 {
        let h = format!("h{i:02}");
        assert_eq!(out.host_status(&h), "skipped");
        assert!(!root.path().join(&h).exists(), "{h} was never touched");
    }
    assert!(
        out.stderr
            .contains("max_failures (10%) was exceeded: 2 hosts failed"),
        "{}",
        out.all()
    );
    // The recap lists failures first.
    let recap = out.stdout.split("RECAP").nth(1).expect("recap");
    let first_host_line = recap.lines().nth(2).unwrap_or("");
    assert!(
        first_host_line.starts_with("h03") || first_host_line.starts_with("h04"),
        "{recap}"
    );
}

fn sha256(p: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(p).expect("read")))
}

#[test]
fn nightly_logs_from_twelve_hosts_then_nothing_new_then_a_dead_host() {
    let mut t = TestLab::start(12);
    let logs = tempfile::tempdir().expect("tmp");
    // Each host has its own logs (the lab's hosts share one filesystem, so one folder each).
    for i in 1..=12 {
        let d = logs.path().join(format!("h{i:02}"));
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(d.join("app.log"), format!("host {i}\n").repeat(1000 * i)).expect("w");
        std::fs::write(d.join("error.log"), format!("error on {i}\n")).expect("w");
        std::fs::write(d.join("skip.txt"), "not a log").expect("w");
    }
    let case = Case::new(&example("nightly-logs.yml"))
        .inventory_file(t.inventory())
        .args([
            "-e",
            &format!(
                "log_glob={}/{{{{ host.name }}}}/*.log",
                logs.path().display()
            ),
        ]);
    let out = case.run();
    assert_eq!(out.code, 0, "{}", out.all());
    for i in 1..=12 {
        let h = format!("h{i:02}");
        for f in ["app.log", "error.log"] {
            let got = case.path(&format!("collected/{h}/{f}"));
            assert_eq!(
                sha256(&got),
                sha256(&logs.path().join(&h).join(f)),
                "{h}/{f}"
            );
        }
        assert!(!case.path(&format!("collected/{h}/skip.txt")).exists());
        let files = out.task(&h, "collect")["output"]["files"]
            .as_array()
            .map(|a| a.len());
        assert_eq!(files, Some(2));
    }
    let no_parts = walk(&case.path("collected"))
        .iter()
        .all(|p| !p.ends_with(".part"));
    assert!(no_parts, "no half-written file is left");
    // The next night nothing changed: nothing is transferred.
    let out = case.run();
    assert_eq!(out.code, 0, "{}", out.all());
    for i in 1..=12 {
        let h = format!("h{i:02}");
        assert_eq!(out.status(&h, "collect"), "ok");
        assert_eq!(out.task(&h, "collect")["output"]["bytes"], 0);
    }
    // A host dies: it is reported unreachable, the others are collected, exit code 2.
    std::fs::write(logs.path().join("h01/app.log"), "rotated\n").expect("w");
    std::fs::write(logs.path().join("h02/app.log"), "rotated\n").expect("w");
    t.lab.ssh.kill_host(6).expect("kill h07");
    let out = case.run();
    assert_eq!(out.code, 2, "{}", out.all());
    assert_eq!(out.host_status("h07"), "unreachable");
    assert_eq!(
        std::fs::read_to_string(case.path("collected/h01/app.log")).expect("r"),
        "rotated\n"
    );
    assert_eq!(
        std::fs::read_to_string(case.path("collected/h02/app.log")).expect("r"),
        "rotated\n"
    );
    assert_eq!(out.status("h01", "collect"), "changed");
    assert_eq!(out.status("h03", "collect"), "ok");
    assert!(out.stdout.contains("h07"), "{}", out.stdout);
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

#[test]
fn ci_validation_passes_then_one_broken_check_exits_1_with_junit() {
    let t = TestLab::start(4);
    let conf = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(conf.path(), "listen = 8080\nworkers = 4\n").expect("w");
    let good = sha256(conf.path());
    let base = |sha: &str| {
        web_case(&t, &example("ci-validate.yml")).args([
            "-e",
            &format!("dns_server={}", lab_var(&t, "dns_server")),
            "-e",
            &format!("http_port={}", lab_var(&t, "http_port")),
            "-e",
            &format!("config_file={}", conf.path().display()),
            "-e",
            &format!("config_sha256={sha}"),
            "--junit",
            "checks.xml",
        ])
    };
    let case = base(&good);
    let out = case.run();
    assert_eq!(out.code, 0, "{}", out.all());
    let junit = std::fs::read_to_string(case.path("checks.xml")).expect("junit");
    assert_eq!(junit.matches("<testcase ").count(), 4 * 5, "{junit}");
    assert!(!junit.contains("<failure"), "{junit}");
    // One check broken on purpose: the approved checksum changed.
    let case = base("0000000000000000000000000000000000000000000000000000000000000000");
    let out = case.run();
    assert_eq!(out.code, 1, "{}", out.all());
    for i in 1..=4 {
        let h = format!("h{i:02}");
        assert_eq!(out.status(&h, "config"), "failed");
        assert_eq!(out.status(&h, "dns"), "ok");
        assert_eq!(out.status(&h, "health"), "ok");
    }
    let junit = std::fs::read_to_string(case.path("checks.xml")).expect("junit");
    assert_eq!(junit.matches("<failure").count(), 4, "{junit}");
    assert!(
        junit.contains(&good),
        "the failure shows the checksum found: {junit}"
    );
}
