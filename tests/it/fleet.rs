//! The `fleet` kind: hosts of a batch compared with each other. Drift is checked against the
//! lab's real sshd hosts (a file on each, hashed there); the judging rules (`same`, `unique`,
//! `quorum`, `that`, who is left out) and the waiting (hosts give their slots back while they
//! wait, so `-c 1` and group limits cannot deadlock a barrier) with engine-only steps on
//! inventory hosts that are never contacted.

use crate::harness::{Case, TestLab};

/// Five hosts that nothing connects to (the steps run in the engine).
const FIVE: &str = "hosts:\n  h1: { address: 127.0.0.1 }\n  h2: { address: 127.0.0.1 }\n  h3: { address: 127.0.0.1 }\n  h4: { address: 127.0.0.1 }\n  h5: { address: 127.0.0.1 }\ngroups:\n  pool:\n    hosts: [h1, h2, h3, h4, h5]\n";

fn run(playbook: &str, args: &[&str]) -> crate::harness::Output {
    Case::new(playbook)
        .inventory(FIVE)
        .args(args.iter().copied())
        .run()
}

#[test]
fn drift_fails_the_odd_host_only_and_names_both_values() {
    let lab = TestLab::start(10);
    let dir = lab.dir.path().join("conf");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 1..=10 {
        let text = if i == 7 {
            "port = 8081\n"
        } else {
            "port = 8080\n"
        };
        std::fs::write(dir.join(format!("h{i:02}.conf")), text).unwrap();
    }
    let out = Case::new(&format!(
        r#"
name: drift
hosts: lab
steps:
  - id: conf
    ssh: "sha256sum {d}/{{{{ host.name }}}}.conf | cut -d' ' -f1"
  - id: drift
    name: one config everywhere
    fleet: {{ value: "{{{{ steps.conf.stdout | trim }}}}", same: true }}
"#,
        d = dir.display()
    ))
    .inventory_file(lab.inventory())
    .run();
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    let odd = out.task("h07", "drift");
    assert_eq!(odd["status"], "failed", "{odd}");
    let message = odd["message"].as_str().unwrap_or_default();
    let mine = out.task("h07", "conf")["output"]["stdout"]
        .as_str()
        .unwrap()
        .trim()
        .to_string();
    let theirs = out.task("h01", "conf")["output"]["stdout"]
        .as_str()
        .unwrap()
        .trim()
        .to_string();
    assert_ne!(mine, theirs);
    assert!(message.contains(&format!("h07: {mine}")), "{message}");
    assert!(
        message.contains(&format!("9 other hosts: {theirs}")),
        "{message}"
    );
    for i in (1..=10).filter(|i| *i != 7) {
        let t = out.task(&format!("h{i:02}"), "drift");
        assert_eq!(t["status"], "ok", "{t}");
        assert_eq!(t["output"]["outliers"], serde_json::json!(["h07"]), "{t}");
        assert_eq!(t["output"]["majority"], serde_json::json!(theirs), "{t}");
    }
}

#[test]
fn quorum_unique_and_that_judge_the_whole_batch() {
    let value = r#"value: "{{ 'a' if host.name in ['h1', 'h2', 'h3'] else 'b' }}""#;
    // Three of five share `a`: a quorum of 3 holds on every host, 80% on none.
    let met = run(
        &format!("name: q\nhosts: pool\nsteps:\n  - fleet: {{ {value}, quorum: 3 }}\n"),
        &[],
    );
    assert_eq!(met.code, 0, "{}\n{}", met.stdout, met.stderr);
    assert_eq!(
        met.task("h4", "#1")["output"]["outliers"],
        serde_json::json!(["h4", "h5"])
    );
    let short = run(
        &format!("name: q\nhosts: pool\nsteps:\n  - fleet: {{ {value}, quorum: \"80%\" }}\n"),
        &[],
    );
    assert_eq!(short.code, 1);
    for h in ["h1", "h2", "h3", "h4", "h5"] {
        let m = short.task(h, "#1")["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            m.contains("no quorum: at most 3 of 5 hosts agree (on a), 4 needed"),
            "{h}: {m}"
        );
    }
    // unique: h2 and h4 share a value and fail; the others pass.
    let uniq = run(
        "name: u\nhosts: pool\nsteps:\n  - fleet: { value: \"{{ 'same' if host.name in ['h2', 'h4'] else host.name }}\", unique: true }\n",
        &[],
    );
    assert_eq!(uniq.status("h2", "#1"), "failed");
    assert!(
        uniq.task("h2", "#1")["message"]
            .as_str()
            .unwrap()
            .contains("not unique: h2 has same, as does h4")
    );
    assert_eq!(uniq.status("h4", "#1"), "failed");
    for h in ["h1", "h3", "h5"] {
        assert_eq!(uniq.status(h, "#1"), "ok", "{h}");
    }
    // that: expressions over every host's value.
    let that = run(
        "name: t\nhosts: pool\nsteps:\n  - fleet: { value: \"{{ host.name[1:] | int }}\", that: [\"values | length == 5\", \"values.h5 == 5\"] }\n  - fleet: { value: 1, that: \"values | length == 4\" }\n",
        &[],
    );
    assert_eq!(that.status("h1", "#1"), "ok", "{}", that.stdout);
    assert_eq!(that.status("h1", "#2"), "failed");
    assert!(
        that.task("h3", "#2")["message"]
            .as_str()
            .unwrap()
            .contains("fleet check failed: values | length == 4")
    );
}

#[test]
fn hosts_that_failed_earlier_are_left_out_and_named() {
    let out = run(
        "name: l\nhosts: pool\nsteps:\n  - assert: \"host.name != 'h2'\"\n  - id: same\n    fleet: { value: 1, same: true }\n",
        &[],
    );
    assert_eq!(out.code, 1);
    assert_eq!(out.status("h2", "same"), "skipped");
    let t = out.task("h1", "same");
    assert_eq!(t["status"], "ok", "{t}");
    assert!(t["output"]["left_out"]["h2"].is_string(), "{t}");
    assert_eq!(t["output"]["values"].as_object().unwrap().len(), 4, "{t}");
}

#[test]
fn a_barrier_never_deadlocks_on_concurrency_or_group_limits() {
    // One host in flight at a time, and a group limit of one: each waiting host gives its
    // slots back so the next can start and arrive. A deadlock would hit the step's timeout.
    let pb = "name: d\nhosts: pool\nstrategy: { limits: { pool: 1 } }\nsteps:\n  - { fleet: { value: 1, same: true }, timeout: 30s }\n  - { fleet: { value: 2, same: true }, timeout: 30s }\n";
    let out = run(pb, &["-c", "1"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    for h in ["h1", "h2", "h3", "h4", "h5"] {
        assert_eq!(out.status(h, "#2"), "ok", "{h}");
    }
    // Rolling batches: the fleet is the batch.
    let out = run(
        "name: b\nhosts: pool\nstrategy: { batch: 2 }\nsteps:\n  - id: f\n    fleet: { value: 1, same: true }\n",
        &[],
    );
    assert_eq!(out.code, 0);
    assert_eq!(
        out.task("h1", "f")["output"]["values"]
            .as_object()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        out.task("h5", "f")["output"]["values"]
            .as_object()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn a_fleet_step_with_nothing_to_check_or_a_loop_is_a_located_error() {
    let out = Case::new(
        "name: p\nhosts: all\nsteps:\n  - fleet: { value: 1 }\n  - fleet: { value: 1, same: true }\n    loop: [1, 2]\n  - fleet: { value: 1, same: true }\n    run_once: true\n",
    )
    .check();
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr.contains("a `fleet` step with nothing to check"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("playbook.yml:4:5"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("a `fleet` step cannot `loop` or `retry`"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("a `fleet` step cannot be `run_once`"),
        "{}",
        out.stderr
    );
}

/// Shards judge their own hosts; `report merge` judges the fleet again over every shard's
/// values, so the merged report says what one unsharded run says.
#[test]
fn a_merged_report_judges_the_fleet_over_every_shard() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut inv = String::from("hosts:\n");
    for i in 1..=8 {
        inv.push_str(&format!("  n{i}: {{ address: 127.0.0.1 }}\n"));
    }
    std::fs::write(d.join("inv.yml"), inv).unwrap();
    std::fs::write(
        d.join("pb.yml"),
        "name: drift\nhosts: all\nsteps:\n  - id: drift\n    fleet: { value: \"{{ 'odd' if host.name == 'n8' else 'same' }}\", same: true }\n",
    )
    .unwrap();
    let sortie = |args: &[&str]| {
        let mut c = std::process::Command::new(crate::harness::sortie_bin());
        c.args(args).current_dir(d).env("NO_COLOR", "1");
        c.output().expect("sortie runs")
    };
    sortie(&[
        "run",
        "pb.yml",
        "-i",
        "inv.yml",
        "--format",
        "plain",
        "--report",
        "whole.json",
    ]);
    let mut reports = Vec::new();
    for k in 0..4 {
        let file = format!("s{k}.json");
        let shard = format!("{k}/4");
        sortie(&[
            "run", "pb.yml", "-i", "inv.yml", "--format", "plain", "--shard", &shard, "--report",
            &file,
        ]);
        reports.push(file);
    }
    let mut args = vec!["report", "merge", "--report", "merged.json"];
    args.extend(reports.iter().map(String::as_str));
    let merged = sortie(&args);
    let read = |f: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(d.join(f)).expect("report")).expect("json")
    };
    let (whole, m) = (read("whole.json"), read("merged.json"));
    let verdicts = |r: &serde_json::Value| -> Vec<(String, String, usize)> {
        let mut v: Vec<(String, String, usize)> = r["plays"][0]["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                let t = &h["tasks"][0];
                (
                    h["name"].as_str().unwrap().to_string(),
                    t["status"].as_str().unwrap().to_string(),
                    t["output"]["values"].as_object().map_or(0, |o| o.len()),
                )
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        verdicts(&m),
        verdicts(&whole),
        "{}",
        String::from_utf8_lossy(&merged.stderr)
    );
    assert_eq!(m["exit_code"], whole["exit_code"]);
    assert_eq!(whole["exit_code"], 1);
    let n8 = verdicts(&m).into_iter().find(|v| v.0 == "n8").unwrap();
    assert_eq!((n8.1.as_str(), n8.2), ("failed", 8));
}
