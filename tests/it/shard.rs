//! Scale-out: `--shard I/N` and `--shard auto` on `inventory --list` and `run`, and `sortie
//! report merge`. The partition over 1,000 hosts through the CLI; shards run on real lab
//! sshd hosts with the environment a Kubernetes Indexed Job and a GitLab parallel job give
//! each pod or job, merged, and compared with one unsharded run (hosts, statuses, exit code,
//! `run_once`); every refusal of the merge. The real Slurm job array is in `slurm.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::harness::{Case, Output, TestLab, finish, sortie, sortie_bin};

/// Host names in the `inventory --list` JSON.
fn listed(out: &Output) -> Vec<String> {
    let v: Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.all()));
    v["hosts"]
        .as_object()
        .unwrap_or_else(|| panic!("hosts: {}", out.all()))
        .keys()
        .cloned()
        .collect()
}

fn inventory_with(env: &[(&str, &str)], dir: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(sortie_bin());
    c.arg("inventory")
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1");
    for k in SCHEDULER_VARS {
        c.env_remove(k);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    finish(c, None)
}

/// Every variable `--shard auto` reads: cleared so the test's own environment (a CI job)
/// cannot choose the shard.
const SCHEDULER_VARS: [&str; 12] = [
    "JOB_COMPLETION_INDEX",
    "SORTIE_SHARDS",
    "SORTIE_RUN_ID",
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_COUNT",
    "SLURM_ARRAY_TASK_MIN",
    "SLURM_ARRAY_TASK_MAX",
    "SLURM_ARRAY_TASK_STEP",
    "SLURM_ARRAY_JOB_ID",
    "CI_NODE_INDEX",
    "CI_NODE_TOTAL",
    "CI_PIPELINE_ID",
];

#[test]
fn inventory_shards_of_1000_hosts_are_disjoint_complete_and_balanced() {
    let dir = tempfile::tempdir().expect("tmp");
    let inv = dir.path().join("fleet.yml");
    std::fs::write(
        &inv,
        "groups:\n  web:\n    hosts:\n      \"web[0000:0999].example.com\": {}\n",
    )
    .expect("write");
    let inv = inv.display().to_string();
    let all = listed(&sortie(dir.path(), &["inventory", "-i", &inv, "--list"]));
    assert_eq!(all.len(), 1000);
    let n = 4;
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut sizes = Vec::new();
    for i in 0..n {
        let shard = format!("{i}/{n}");
        let out = sortie(
            dir.path(),
            &["inventory", "-i", &inv, "--list", "--shard", &shard],
        );
        assert_eq!(out.code, 0, "{}", out.all());
        let hosts = listed(&out);
        sizes.push(hosts.len());
        for h in hosts {
            if let Some(j) = seen.insert(h.clone(), i) {
                panic!("{h} is in shard {j} and shard {i}");
            }
        }
        // `--shard auto` under a Kubernetes Indexed Job lists the same slice.
        let index = i.to_string();
        let k8s = inventory_with(
            &[("JOB_COMPLETION_INDEX", &index), ("SORTIE_SHARDS", "4")],
            dir.path(),
            &["-i", &inv, "--list", "--shard", "auto"],
        );
        assert_eq!(listed(&k8s), listed(&out), "{}", k8s.all());
    }
    let all: BTreeSet<String> = all.into_iter().collect();
    assert_eq!(
        seen.keys().cloned().collect::<BTreeSet<_>>(),
        all,
        "complete"
    );
    for s in &sizes {
        assert!((200..=300).contains(s), "within 20% of 250: {sizes:?}");
    }
    // Adding a host to the inventory moves none of the others.
    std::fs::write(
        dir.path().join("more.yml"),
        "groups:\n  web:\n    hosts:\n      \"web[0000:1000].example.com\": {}\n",
    )
    .expect("write");
    let mut moved = 0;
    for i in 0..n {
        let shard = format!("{i}/{n}");
        let out = sortie(
            dir.path(),
            &["inventory", "-i", "more.yml", "--list", "--shard", &shard],
        );
        for h in listed(&out) {
            if seen.get(&h).is_some_and(|j| *j != i) {
                moved += 1;
            }
        }
    }
    assert_eq!(moved, 0, "hosts moved when one was added");
}

/// Environment, `--shard` value, and the message expected.
type BadShard<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);

#[test]
fn bad_shards_are_invalid_input_that_says_what_to_set() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("inv.yml"), "hosts:\n  a: {}\n").expect("write");
    let cases: [BadShard; 6] = [
        (&[], "4/4", "shard 4 of 4 does not exist"),
        (&[], "two/4", "`--shard two/4` is not I/N or auto"),
        (
            &[],
            "auto",
            "`--shard auto` found no scheduler in the environment",
        ),
        (
            &[("JOB_COMPLETION_INDEX", "1")],
            "auto",
            "SORTIE_SHARDS is not set",
        ),
        (
            &[
                ("SLURM_ARRAY_TASK_ID", "7"),
                ("SLURM_ARRAY_TASK_COUNT", "3"),
                ("SLURM_ARRAY_TASK_MIN", "1"),
            ],
            "auto",
            "task 7 is not one of 3 evenly spaced tasks from 1",
        ),
        (
            &[("CI_NODE_INDEX", "0"), ("CI_NODE_TOTAL", "2")],
            "auto",
            "GitLab counts from 1",
        ),
    ];
    for (env, flag, says) in cases {
        let out = inventory_with(
            env,
            dir.path(),
            &["-i", "inv.yml", "--list", "--shard", flag],
        );
        assert_eq!(out.code, 3, "{flag} {env:?}: {}", out.all());
        assert!(out.stderr.contains(says), "{flag} {env:?}: {}", out.all());
        assert!(out.stdout.is_empty(), "{}", out.all());
    }
    let out = inventory_with(
        &[],
        dir.path(),
        &["-i", "inv.yml", "--list", "--shard", "auto"],
    );
    for var in [
        "JOB_COMPLETION_INDEX",
        "SORTIE_SHARDS",
        "SLURM_ARRAY_TASK_ID",
        "CI_NODE_INDEX",
    ] {
        assert!(out.stderr.contains(var), "{var}: {}", out.all());
    }
    // `run` refuses the same way, before contacting anything.
    let case =
        Case::new("- hosts: all\n  steps:\n    - local: \"true\"\n").inventory("hosts:\n  a: {}\n");
    let mut c = Command::new(sortie_bin());
    c.arg("run")
        .arg(&case.playbook)
        .arg("-i")
        .arg(&case.inventory[0]);
    c.args(["--shard", "auto"]).current_dir(case.dir.path());
    for k in SCHEDULER_VARS {
        c.env_remove(k);
    }
    let out = finish(c, None);
    assert_eq!(out.code, 3, "{}", out.all());
    assert!(out.stderr.contains("found no scheduler"), "{}", out.all());
}

/// Three steps: one `run_once` on the runner, one that says the host's name, one that
/// fails on h03 (so the exit code is 1, not a trivial 0).
pub const PLAYBOOK: &str = r#"- name: fleet check
  hosts: lab
  steps:
    - id: stamp
      run_once: true
      local: "echo stamped-once"
    - id: who
      ssh: "echo {{ host.name }}"
    - id: healthy
      ssh: "test {{ host.name }} != h03"
"#;

/// Each host's name → (its status, each task's status and stdout), the report's shape
/// that must not depend on sharding.
pub fn outcome(report: &Value) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for p in report["plays"].as_array().expect("plays") {
        for h in p["hosts"].as_array().expect("hosts") {
            let tasks: Vec<Value> = h["tasks"]
                .as_array()
                .expect("tasks")
                .iter()
                .map(|t| serde_json::json!([t["id"], t["status"], t["output"]["stdout"]]))
                .collect();
            let name = h["name"].as_str().expect("name").to_string();
            out.insert(name, serde_json::json!([h["status"], tasks]));
        }
    }
    out
}

/// Runs `sortie run` in `case` with exactly these scheduler variables and writes `report`.
fn run_shard(case: &Case, env: &[(&str, &str)], extra: &[&str], report: &Path) -> Output {
    let mut c = Command::new(sortie_bin());
    c.arg("run").arg(&case.playbook);
    for i in &case.inventory {
        c.arg("-i").arg(i);
    }
    c.args(["--format", "plain", "--report"])
        .arg(report)
        .args(extra);
    c.current_dir(case.dir.path()).env("NO_COLOR", "1");
    for k in SCHEDULER_VARS {
        c.env_remove(k);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    finish(c, Some(report))
}

fn merge(dir: &Path, reports: &[PathBuf], extra: &[&str]) -> Output {
    let out = dir.join("merged.json");
    let _ = std::fs::remove_file(&out);
    let mut c = Command::new(sortie_bin());
    c.args(["report", "merge"])
        .args(reports)
        .arg("--report")
        .arg(&out)
        .args(extra);
    c.current_dir(dir).env("NO_COLOR", "1");
    finish(c, Some(&out))
}

#[test]
fn kubernetes_indexed_job_shards_merge_into_the_unsharded_run() {
    let t = TestLab::start(6);
    let case = Case::new(PLAYBOOK).inventory_file(t.inventory());
    let dir = case.dir.path().to_path_buf();
    let whole = run_shard(&case, &[], &[], &dir.join("whole.json"));
    assert_eq!(whole.code, 1, "{}", whole.all());
    let whole_r = whole.report.clone().expect("report");
    assert_eq!(
        (whole_r["shard"].as_u64(), whole_r["shards"].as_u64()),
        (Some(0), Some(1))
    );

    // What a pod of an Indexed Job with `completions: 3` sees: its index from the
    // controller, SORTIE_SHARDS and SORTIE_RUN_ID from the manifest (the Job's uid).
    let mut reports = Vec::new();
    let mut hosts_seen = 0;
    for i in 0..3 {
        let index = i.to_string();
        let p = dir.join(format!("shard-{i}.json"));
        let env = [
            ("JOB_COMPLETION_INDEX", index.as_str()),
            ("SORTIE_SHARDS", "3"),
            ("SORTIE_RUN_ID", "3f6c0a52-job-uid"),
        ];
        let out = run_shard(&case, &env, &["--shard", "auto"], &p);
        let r = out
            .report
            .clone()
            .unwrap_or_else(|| panic!("{}", out.all()));
        assert_eq!(r["shard"], i, "{}", out.all());
        assert_eq!(r["shards"], 3);
        assert_eq!(r["run_id"], "3f6c0a52-job-uid");
        assert_eq!(r["playbook_sha256"], whole_r["playbook_sha256"]);
        assert_eq!(r["inventory_sha256"], whole_r["inventory_sha256"]);
        assert_eq!(r["playbook_sha256"].as_str().map(str::len), Some(64));
        let n = r["hosts"]["hosts"].as_u64().unwrap_or(0);
        hosts_seen += n;
        let h03_here = outcome(&r).contains_key("h03");
        assert_eq!(out.code, if h03_here { 1 } else { 0 }, "{}", out.all());
        // run_once runs on shard 0 only; the others say so.
        for (name, o) in outcome(&r) {
            let stamp = &o[1][0];
            if i == 0 {
                assert_eq!(stamp[2], "stamped-once", "{name}: {o}");
            } else {
                assert_eq!(stamp[1], "skipped", "{name}: {o}");
                let task = out.task(&name, "stamp");
                assert_eq!(task["message"], "run_once: runs on shard 0", "{name}");
            }
        }
        reports.push(p);
    }
    assert_eq!(hosts_seen, 6);

    let merged = merge(
        &dir,
        &reports,
        &[
            "--junit",
            "merged.xml",
            "--tap",
            "merged.tap",
            "--html",
            "merged.html",
        ],
    );
    assert_eq!(merged.code, whole.code, "{}", merged.all());
    let m = merged.report.clone().expect("merged report");
    assert_eq!(outcome(&m), outcome(&whole_r), "{}", merged.all());
    assert_eq!(m["hosts"], whole_r["hosts"]);
    assert_eq!(m["tasks"], whole_r["tasks"]);
    assert_eq!(m["exit_code"], 1);
    assert_eq!(m["run_id"], "3f6c0a52-job-uid");
    assert_eq!(m["merged"].as_array().map(Vec::len), Some(3));
    assert!(
        merged.stderr.contains("merged 3 shard reports: 6 hosts"),
        "{}",
        merged.all()
    );
    let junit = std::fs::read_to_string(dir.join("merged.xml")).expect("junit");
    assert_eq!(junit.matches("<testcase").count(), 18, "{junit}");
    let tap = std::fs::read_to_string(dir.join("merged.tap")).expect("tap");
    assert!(tap.contains("\n1..18\n") && tap.contains("not ok"), "{tap}");
    // The merged page has every host of every shard.
    let html = std::fs::read_to_string(dir.join("merged.html")).expect("html");
    for h in m["plays"][0]["hosts"].as_array().expect("hosts") {
        let name = h["name"].as_str().expect("name");
        assert!(html.contains(name), "{name} not in the merged page");
    }

    refusals(&dir, &reports, &dir.join("whole.json"));
}

/// Every way the merge refuses: exit 3, with what is wrong.
fn refusals(dir: &Path, shards: &[PathBuf], whole: &Path) {
    // A missing shard.
    let out = merge(dir, &shards[..2], &[]);
    assert_eq!(out.code, 3, "{}", out.all());
    assert!(
        out.stderr.contains("1 of 3 shards missing: 2"),
        "{}",
        out.all()
    );
    assert!(out.stderr.contains("--partial"), "{}", out.all());
    assert!(out.report.is_none());
    // --partial merges what there is, names the missing shard, and exits 2.
    let out = merge(dir, &shards[..2], &["--partial"]);
    assert_eq!(out.code, 2, "{}", out.all());
    let r = out.report.clone().expect("report");
    assert_eq!(r["missing_shards"], serde_json::json!([2]));
    assert!(
        out.stderr
            .contains("partial merge: 1 of 3 shards missing (2)"),
        "{}",
        out.all()
    );
    // A shard twice.
    let twice = [
        shards[0].clone(),
        shards[0].clone(),
        shards[1].clone(),
        shards[2].clone(),
    ];
    let out = merge(dir, &twice, &[]);
    assert_eq!(out.code, 3, "{}", out.all());
    assert!(
        out.stderr.contains("shard 0/3 is given twice"),
        "{}",
        out.all()
    );
    // A host in two reports: an unsharded run beside a shard.
    let out = merge(dir, &[whole.to_path_buf(), shards[1].clone()], &[]);
    assert_eq!(out.code, 3, "{}", out.all());
    assert!(out.stderr.contains("is shard 1 of 3, but"), "{}", out.all());
    let copy = edited(dir, &shards[1], "copy.json", |r| {
        r["shard"] = 2.into();
        let h = r["plays"][0]["hosts"][0].clone();
        r["plays"][0]["hosts"] = serde_json::json!([h]);
    });
    let own = edited(dir, &shards[0], "own.json", |r| {
        let h = serde_json::from_str::<Value>(&std::fs::read_to_string(&shards[1]).expect("r"))
            .expect("json")["plays"][0]["hosts"][0]
            .clone();
        r["plays"][0]["hosts"]
            .as_array_mut()
            .expect("hosts")
            .push(h);
    });
    let out = merge(dir, &[own, shards[1].clone(), copy], &[]);
    assert_eq!(out.code, 3, "{}", out.all());
    assert!(
        out.stderr.contains("is in more than one shard"),
        "{}",
        out.all()
    );
    // Another playbook, another inventory.
    let other_pb = edited(dir, &shards[2], "pb.json", |r| {
        r["playbook_sha256"] = "0".repeat(64).into();
    });
    let other_inv = edited(dir, &shards[2], "inv.json", |r| {
        r["inventory_sha256"] = "1".repeat(64).into();
    });
    let out = merge(dir, &[shards[0].clone(), shards[1].clone(), other_pb], &[]);
    assert_eq!(out.code, 3, "{}", out.all());
    assert!(
        out.stderr
            .contains("the reports come from different playbooks"),
        "{}",
        out.all()
    );
    let out = merge(dir, &[shards[0].clone(), shards[1].clone(), other_inv], &[]);
    assert_eq!(out.code, 3, "{}", out.all());
    assert!(
        out.stderr
            .contains("the reports come from different inventories"),
        "{}",
        out.all()
    );
    // Not a report at all.
    std::fs::write(dir.join("junk.json"), "{\"version\": 2,").expect("w");
    let out = merge(dir, &[dir.join("junk.json")], &[]);
    assert_eq!(out.code, 3, "{}", out.all());
    assert!(
        out.stderr.contains("is not a sortie report"),
        "{}",
        out.all()
    );
}

/// A copy of the report at `from`, changed by `f`, saved as `name` in `dir`.
fn edited(dir: &Path, from: &Path, name: &str, f: impl FnOnce(&mut Value)) -> PathBuf {
    let mut r: Value =
        serde_json::from_str(&std::fs::read_to_string(from).expect("read")).expect("json");
    f(&mut r);
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_string_pretty(&r).expect("json")).expect("write");
    p
}

#[test]
fn empty_shards_succeed_with_a_note_and_gitlab_counts_from_one() {
    let t = TestLab::start(3);
    let case = Case::new(PLAYBOOK).inventory_file(t.inventory());
    let dir = case.dir.path().to_path_buf();
    let whole = run_shard(&case, &[], &[], &dir.join("whole.json"));
    assert_eq!(whole.code, 1, "{}", whole.all());
    // Eight GitLab parallel jobs over three hosts: at least five are empty.
    let mut reports = Vec::new();
    let mut empty = 0;
    for node in 1..=8 {
        let index = node.to_string();
        let p = dir.join(format!("node-{node}.json"));
        let env = [
            ("CI_NODE_INDEX", index.as_str()),
            ("CI_NODE_TOTAL", "8"),
            ("CI_PIPELINE_ID", "9001"),
        ];
        let out = run_shard(&case, &env, &["--shard", "auto"], &p);
        let r = out
            .report
            .clone()
            .unwrap_or_else(|| panic!("{}", out.all()));
        assert_eq!(r["shard"], node - 1);
        assert_eq!(r["run_id"], "9001");
        if r["hosts"]["hosts"] == 0 {
            empty += 1;
            assert_eq!(out.code, 0, "{}", out.all());
            let note = format!(
                "shard {}/8 has none of the selected hosts: nothing to run",
                node - 1
            );
            assert!(
                out.stderr.contains(&note) || out.stdout.contains(&note),
                "{}",
                out.all()
            );
        }
        reports.push(p);
    }
    assert!(empty >= 5, "{empty}");
    // The first shard with hosts ran the run_once step; the others with hosts skipped it.
    let ran: Vec<u64> = reports
        .iter()
        .filter_map(|p| {
            let r: Value = serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()?;
            let h = r["plays"][0]["hosts"].as_array()?.first()?.clone();
            (h["tasks"][0]["status"] != "skipped")
                .then(|| r["shard"].as_u64())
                .flatten()
        })
        .collect();
    assert_eq!(ran.len(), 1, "run_once ran on one shard: {ran:?}");
    let merged = merge(&dir, &reports, &[]);
    assert_eq!(merged.code, 1, "{}", merged.all());
    let m = merged.report.clone().expect("report");
    assert_eq!(outcome(&m), outcome(whole.report.as_ref().expect("r")));
    // The empty shards' notes stay in their own reports.
    assert!(!m["warnings"].to_string().contains("nothing to run"), "{m}");
    // Without --report the merged report goes to stdout.
    let mut c = Command::new(sortie_bin());
    c.args(["report", "merge"]).args(&reports).current_dir(&dir);
    let out = finish(c, None);
    assert_eq!(out.code, 1, "{}", out.all());
    let v: Value = serde_json::from_str(&out.stdout).expect("JSON on stdout");
    assert_eq!(outcome(&v), outcome(&m));
}

/// The fenced block after `<!-- recipe: NAME -->` in docs/scale-out.md.
pub fn recipe(name: &str) -> String {
    let doc = std::fs::read_to_string(crate::harness::repo().join("docs/scale-out.md"))
        .expect("docs/scale-out.md");
    let marker = format!("<!-- recipe: {name} -->");
    let after = doc
        .split_once(&marker)
        .unwrap_or_else(|| panic!("no {marker} in docs/scale-out.md"))
        .1;
    let block = after.split_once("```").expect("a fenced block").1;
    let block = block.split_once('\n').expect("info string").1;
    block
        .split_once("```")
        .expect("the block's end")
        .0
        .to_string()
}

/// The recipe's lines that run `sortie …`, as a shell would get them.
fn commands(block: &str, what: &str) -> Vec<String> {
    block
        .lines()
        .map(|l| l.trim())
        .map(|l| {
            l.strip_prefix("- run: ")
                .or(l.strip_prefix("- "))
                .unwrap_or(l)
        })
        .filter(|l| l.starts_with(what))
        .map(str::to_string)
        .collect()
}

/// Runs `line` with `sh -c` in `dir`, `sortie` on PATH, exactly the scheduler variables `env`.
fn sh(dir: &Path, line: &str, env: &[(&str, String)]) -> Output {
    let bin = sortie_bin();
    let path = format!(
        "{}:{}",
        bin.parent().expect("bin dir").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(line)
        .current_dir(dir)
        .env("PATH", path)
        .env("NO_COLOR", "1");
    for k in SCHEDULER_VARS {
        c.env_remove(k);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    finish(c, None)
}

#[test]
fn recipes_in_docs_run_as_written_and_merge_into_the_unsharded_run() {
    let t = TestLab::start(8);
    let case = Case::new(PLAYBOOK).inventory_file(t.inventory());
    let whole = case.run();
    assert_eq!(whole.code, 1, "{}", whole.all());
    let whole_r = whole.report.clone().expect("report");
    let n = 4;
    for name in ["slurm", "kubernetes", "github", "gitlab"] {
        let dir = tempfile::tempdir().expect("tmp");
        let d = dir.path();
        std::fs::copy(&case.playbook, d.join("playbook.yml")).expect("copy");
        std::fs::copy(t.inventory(), d.join("inventory.yml")).expect("copy");
        std::fs::create_dir_all(d.join("reports")).expect("mkdir");
        let block = recipe(name);
        let abs = format!("{}/reports/", d.display());
        let fix = |l: &str, i: u32| {
            l.replace("\"/reports/", &format!("\"{abs}"))
                .replace(" /reports/", &format!(" {abs}"))
                .replace("${{ matrix.shard }}", &i.to_string())
                .replace("${{ github.run_id }}", "4242")
        };
        let run = commands(&block, "sortie run");
        assert_eq!(run.len(), 1, "{name}: one shard command in\n{block}");
        for i in 0..n {
            let env: Vec<(&str, String)> = match name {
                "slurm" => vec![
                    ("SLURM_ARRAY_TASK_ID", i.to_string()),
                    ("SLURM_ARRAY_TASK_COUNT", n.to_string()),
                    ("SLURM_ARRAY_TASK_MIN", "0".into()),
                    ("SLURM_ARRAY_TASK_MAX", (n - 1).to_string()),
                    ("SLURM_ARRAY_TASK_STEP", "1".into()),
                    ("SLURM_ARRAY_JOB_ID", "4242".into()),
                ],
                // The controller sets the index; the manifest sets the other two.
                "kubernetes" => vec![
                    ("JOB_COMPLETION_INDEX", i.to_string()),
                    ("SORTIE_SHARDS", n.to_string()),
                    ("SORTIE_RUN_ID", "4242".into()),
                ],
                "gitlab" => vec![
                    ("CI_NODE_INDEX", (i + 1).to_string()),
                    ("CI_NODE_TOTAL", n.to_string()),
                    ("CI_PIPELINE_ID", "4242".into()),
                ],
                _ => vec![],
            };
            let out = sh(d, &fix(&run[0], i), &env);
            assert_eq!(
                out.code,
                0,
                "{name} shard {i}: exit 1 and 2 pass: {}",
                out.all()
            );
        }
        let reports: Vec<Value> = std::fs::read_dir(d.join("reports"))
            .expect("reports")
            .filter_map(|e| {
                let text = std::fs::read_to_string(e.ok()?.path()).ok()?;
                serde_json::from_str(&text).ok()
            })
            .collect();
        assert_eq!(reports.len(), n as usize, "{name}: one report per shard");
        let mut shards: Vec<u64> = reports.iter().filter_map(|r| r["shard"].as_u64()).collect();
        shards.sort_unstable();
        assert_eq!(shards, vec![0, 1, 2, 3], "{name}");
        assert!(
            reports
                .iter()
                .all(|r| r["run_id"] == "4242" && r["shards"] == n),
            "{name}"
        );
        let merge = commands(&block, "sortie report merge");
        let merge = match name {
            // Slurm's merge is in the submit snippet, the block after the script.
            "slurm" => "sortie report merge reports/shard-*.json --report reports/all.json --junit reports/all.xml".to_string(),
            _ => {
                assert_eq!(merge.len(), 1, "{name}: one merge command in\n{block}");
                fix(&merge[0], 0)
            }
        };
        let out = sh(d, &merge, &[]);
        assert_eq!(out.code, whole.code, "{name} merge: {}", out.all());
        let m: Value = serde_json::from_str(
            &std::fs::read_to_string(d.join("reports/all.json")).expect("all.json"),
        )
        .expect("json");
        assert_eq!(outcome(&m), outcome(&whole_r), "{name}");
        assert!(d.join("reports/all.xml").exists(), "{name}");
    }
    // The Kubernetes manifest's SORTIE_SHARDS is its completions.
    let k8s = recipe("kubernetes");
    assert!(
        k8s.contains("completions: 4") && k8s.contains("value: \"4\""),
        "{k8s}"
    );
    let doc =
        std::fs::read_to_string(crate::harness::repo().join("docs/scale-out.md")).expect("doc");
    assert!(doc.contains("sbatch --dependency=afterany:$job --wrap 'sortie report merge reports/shard-*.json --report reports/all.json --junit reports/all.xml'"));
}
