//! What people and CI see of a run: the live view in a real pseudo-terminal (under util-linux
//! `script`, read back through a terminal emulator), plain lines off a terminal, JSON events,
//! JUnit validated against `tests/fixtures/junit.xsd` with xmllint, TAP parsed by tap-parser
//! (the TAP 14 reference parser, `tests/tap/`), `--retry-failed`, and redaction of secrets
//! searched byte for byte in every output.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Case, Output, TestLab, finish, repo, sortie_bin};

/// An inventory of `n` hosts `h01…` that all point at 127.0.0.1.
fn local_hosts(n: usize) -> String {
    let mut s = String::from("groups:\n  fleet:\n    hosts:\n");
    for i in 1..=n {
        s.push_str(&format!("      h{i:02}: {{ address: 127.0.0.1 }}\n"));
    }
    s
}

/// Three hosts warm up side by side for 1.5 s, then h02 fails its check at once while the
/// others take one more second (so the failure shows above bars still drawn).
const THREE_HOSTS: &str = r#"
name: live
hosts: fleet
steps:
  - name: Warm up
    local: "sleep 1.5"
  - name: Check
    local: "echo broken-on-{{ host.name }} >&2; test {{ host.name }} != h02 && sleep 1"
"#;

/// Runs `sortie run ARGS` under `script` in a pseudo-terminal of `rows`×120, with `env` set
/// for sortie. Returns its exit code, every byte the terminal received, and the screens seen while
/// the run was going (one per 50 ms poll, read back through a vt100 emulator).
fn run_in_pty(
    dir: &Path,
    args: &[String],
    env: &[(String, String)],
    no_color: bool,
    rows: u16,
) -> (i32, Vec<u8>, Vec<String>) {
    let mut cmd = format!("stty rows {rows} cols 120; exec env");
    for (k, v) in env {
        cmd.push_str(&format!(" {k}={}", shlex::try_quote(v).expect("quotable")));
    }
    cmd.push_str(&format!(" {} run", sortie_bin().display()));
    for a in args {
        cmd.push(' ');
        cmd.push_str(&shlex::try_quote(a).expect("quotable"));
    }
    let mut c = Command::new("script");
    c.args(["-qefc", &cmd, "/dev/null"])
        .current_dir(dir)
        .env("TERM", "xterm-256color")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if no_color {
        c.env("NO_COLOR", "1");
    }
    let mut child = c
        .spawn()
        .expect("util-linux `script` runs (scripts/setup installs it)");
    let bytes = Arc::new(Mutex::new(Vec::new()));
    let mut stdout = child.stdout.take().expect("stdout");
    let sink = bytes.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().expect("lock").extend_from_slice(&buf[..n]);
        }
    });
    let mut screens = Vec::new();
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("sortie under script did not finish in 30s");
        }
        screens.push(screen_of(&bytes.lock().expect("lock"), rows));
        std::thread::sleep(Duration::from_millis(50));
    };
    reader.join().expect("reader");
    let all = bytes.lock().expect("lock").clone();
    (status.code().unwrap_or(-1), all, screens)
}

/// `playbook -i inventory… args…` of a case, for `run_in_pty`.
fn case_args(case: &Case) -> Vec<String> {
    let mut a = vec![case.playbook.display().to_string()];
    for i in &case.inventory {
        a.push("-i".into());
        a.push(i.display().to_string());
    }
    a.extend(case.args.iter().cloned());
    a
}

fn screen_of(bytes: &[u8], rows: u16) -> String {
    let rows = std::num::NonZeroU16::new(rows).expect("rows");
    let cols = std::num::NonZeroU16::new(120).expect("cols");
    let mut p = vt100::Parser::new(rows, cols, 0);
    p.process(bytes);
    // Row by row: indicatif fills whole rows, which `contents()` would join as one wrapped line.
    p.screen()
        .rows(0, cols.get())
        .map(|r| r.trim_end().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_live_view_shows_a_line_per_host_then_the_recap_in_a_terminal() {
    let case = Case::new(THREE_HOSTS).inventory(&local_hosts(3));
    let (code, bytes, screens) = run_in_pty(case.dir.path(), &case_args(&case), &[], true, 30);
    assert_eq!(code, 1, "h02 failed");
    let host_line =
        regex::Regex::new(r"(?m)^\S+ h0(\d)\s+Warm up\s+\d+(ms|\.\ds)\s*$").expect("re");
    // While the hosts warm up, the screen shows each of them on its own line with its step
    // and elapsed time, above the overall bar.
    let during = screens
        .iter()
        .find(|s| host_line.captures_iter(s).count() == 3)
        .unwrap_or_else(|| {
            panic!(
                "no screen showed the three hosts in flight; last screens:\n{}",
                screens
                    .iter()
                    .rev()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n-----\n")
            )
        });
    assert!(during.contains("0/3 hosts"), "{during}");
    assert!(during.contains("ETA"), "{during}");
    // The failure is printed above the bars as it happens, while other hosts are in flight
    // or the bar is still drawn.
    let failure_seen = screens
        .iter()
        .find(|s| s.contains("h02   failed") && s.contains("hosts"))
        .unwrap_or_else(|| panic!("the failure never showed above the bars"));
    assert!(
        failure_seen.contains("rc: expected eq 0, found 1"),
        "{failure_seen}"
    );
    // At the end the bars are gone and the recap is on the screen.
    let end = screen_of(&bytes, 30);
    assert!(end.contains("RECAP live"), "{end}");
    assert!(end.contains("FAILURES (1)"), "{end}");
    assert!(end.contains("h02 · Check · failed"), "{end}");
    assert!(end.contains("3 hosts: 0 ok, 2 changed, 1 failed"), "{end}");
    assert!(
        !end.contains("hosts ·"),
        "the overall bar was cleared:\n{end}"
    );
    assert!(!host_line.is_match(&end), "host lines were cleared:\n{end}");
    // NO_COLOR: cursor movement, but no color.
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("\u{1b}[2K"), "the view redraws in place");
    assert!(!text.contains("\u{1b}[31m"), "NO_COLOR means no color");
    // Without NO_COLOR, statuses are colored on the terminal.
    let (_, colored, _) = run_in_pty(case.dir.path(), &case_args(&case), &[], false, 30);
    assert!(
        String::from_utf8_lossy(&colored).contains("\u{1b}[31m"),
        "a failure is red on a color terminal"
    );
}

#[test]
fn the_live_view_keeps_to_a_screenful_of_hosts() {
    let pb = "hosts: fleet\nsteps:\n  - name: Wait\n    local: \"sleep 1.5\"\n";
    let case = Case::new(pb).inventory(&local_hosts(12));
    // 10 rows: 7 host lines, "… and 5 more", the overall bar, and a line to spare.
    let (code, bytes, screens) = run_in_pty(case.dir.path(), &case_args(&case), &[], true, 10);
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&bytes));
    let host_line = regex::Regex::new(r"(?m)^\S+ h\d\d\s+Wait\s").expect("re");
    let full = screens
        .iter()
        .find(|s| s.contains("… and 5 more hosts in flight"))
        .unwrap_or_else(|| {
            panic!(
                "no \"and 5 more\" line:\n{}",
                screens.last().cloned().unwrap_or_default()
            )
        });
    assert_eq!(host_line.find_iter(full).count(), 7, "{full}");
    assert!(full.contains("0/12 hosts"), "{full}");
    for s in &screens {
        assert!(
            host_line.find_iter(s).count() <= 7,
            "more than a screenful:\n{s}"
        );
    }
    assert!(screen_of(&bytes, 10).contains("12 hosts: 0 ok, 12 changed"));
}

#[test]
fn off_a_terminal_auto_prints_plain_lines_without_escape_codes() {
    let case = Case::new(THREE_HOSTS).inventory(&local_hosts(3));
    // `Case::run` forces `--format plain`; here the default, `auto`, decides.
    let out = Command::new(sortie_bin())
        .arg("run")
        .arg(&case.playbook)
        .arg("-i")
        .arg(&case.inventory[0])
        .arg("-v")
        .current_dir(case.dir.path())
        .env_remove("NO_COLOR")
        .env("TERM", "xterm-256color")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains('\u{1b}'), "escape codes in:\n{stdout}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains('\u{1b}'));
    for h in ["h01", "h02", "h03"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(h) && l.contains("Warm up")),
            "{stdout}"
        );
    }
    assert!(stdout.contains("h02   failed      Check"), "{stdout}");
    // -v: each task's outputs under its line.
    assert!(stdout.contains("      stderr: broken-on-h01"), "{stdout}");
    // The recap is the same text as on a terminal.
    assert!(stdout.contains("RECAP live"), "{stdout}");
    // The failure, in the recap as when it happened: the step's line with a caret under the
    // kind (a default expectation has no line of its own), what was expected and found.
    let failure = format!(
        "h02 · Check · failed\n\
         error: expectation failed: rc\n \
         --> {}:8:5\n  |\n\
         8 |     local: \"echo broken-on-{{{{ host.name }}}} >&2; test {{{{ host.name }}}} != h02 && sleep 1\"\n  \
         |     ^^^^^ expected 0, found 1 (by default)\n  \
         = note: stderr:\n          | broken-on-h02\n  \
         = help: `local` steps expect this unless `expect` names `rc`\n",
        case.playbook.display()
    );
    assert!(stdout.contains(&failure), "{stdout}");
}

/// `Case::run` with `--format json` instead of `plain`.
fn run_json(case: &Case) -> Output {
    let report = case.path("report.json");
    let mut c = Command::new(sortie_bin());
    c.arg("run").arg(&case.playbook);
    for i in &case.inventory {
        c.arg("-i").arg(i);
    }
    c.args(["--format", "json", "--report"])
        .arg(&report)
        .args(&case.args)
        .current_dir(case.dir.path())
        .envs(case.env.iter().map(|(k, v)| (k, v)));
    finish(c, Some(&report))
}

fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[test]
fn json_format_streams_one_event_per_line() {
    let case = Case::new(THREE_HOSTS).inventory(&local_hosts(3));
    let out = run_json(&case);
    assert_eq!(out.code, 1, "{}", out.all());
    let events = json_lines(&out.stdout);
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().expect("every line has `event`"))
        .collect();
    assert_eq!(kinds.first(), Some(&"run_started"));
    assert_eq!(kinds[1], "play_started");
    assert_eq!(kinds.last(), Some(&"run_finished"));
    let count = |k: &str| kinds.iter().filter(|x| **x == k).count();
    assert_eq!(count("host_started"), 3);
    assert_eq!(count("host_finished"), 3);
    assert_eq!(count("task_started"), 6);
    assert_eq!(count("task_finished"), 6);
    for e in &events {
        assert!(e["elapsed_ms"].is_u64(), "{e}");
    }
    let started = &events[0];
    assert_eq!(started["hosts"], 3);
    assert_eq!(started["dry_run"], false);
    let failed = events
        .iter()
        .find(|e| e["event"] == "task_finished" && e["task"]["status"] == "failed")
        .expect("a failed task");
    assert_eq!(failed["host"], "h02");
    assert_eq!(failed["task"]["name"], "Check");
    assert_eq!(failed["task"]["checks"][0]["actual"], 1);
    let started_check = events
        .iter()
        .find(|e| e["event"] == "task_started" && e["host"] == "h02" && e["step"] == "Check")
        .expect("task_started");
    assert_eq!(started_check["id"], "#2");
    let finished = events.last().expect("last");
    assert_eq!(finished["exit_code"], 1);
    assert_eq!(finished["hosts"]["failed"], 1);
    assert_eq!(finished["tasks"]["changed"], 5);
    // Per host, task_started comes before its task_finished, and host_finished last.
    for h in ["h01", "h02", "h03"] {
        let of: Vec<&str> = events
            .iter()
            .filter(|e| e["host"] == h)
            .map(|e| e["event"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(of.first(), Some(&"host_started"), "{h}: {of:?}");
        assert_eq!(of.last(), Some(&"host_finished"), "{h}: {of:?}");
    }
    // docs/events.md documents every event kind the stream uses.
    let doc = std::fs::read_to_string(repo().join("docs/events.md")).expect("docs/events.md");
    for k in kinds {
        assert!(
            doc.contains(&format!("`{k}`")),
            "docs/events.md lacks `{k}`"
        );
    }
}

/// A play with every JUnit/TAP outcome: ok, changed, a failed expectation, a run-time error
/// (timeout), a skipped step, an ignored failure; names with XML and TAP metacharacters.
const MIXED: &str = r#"
name: "mixed <&> # plays"
hosts: fleet
steps:
  - name: "ok <step> & # one"
    assert: { that: ["true"] }
  - name: changed
    local: "echo out-{{ host.name }}; echo err-{{ host.name }} >&2; test {{ host.name }} != h02"
  - name: slow
    local: "sleep 5"
    timeout: 200ms
    when: "host.name == 'h01'"
  - name: ignored
    local: "exit 3"
    ignore_errors: true
"#;

#[test]
fn junit_validates_against_the_junit_schema() {
    let case = Case::new(MIXED)
        .inventory(&local_hosts(3))
        .args(["--junit", "junit.xml"]);
    let out = case.run();
    assert_eq!(out.code, 1, "{}", out.all());
    let xml = case.path("junit.xml");
    let check = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(repo().join("tests/fixtures/junit.xsd"))
        .arg(&xml)
        .output()
        .expect("xmllint runs (scripts/setup installs libxml2-utils)");
    assert!(
        check.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&check.stderr),
        std::fs::read_to_string(&xml).unwrap_or_default()
    );
    let text = std::fs::read_to_string(&xml).expect("junit");
    assert_eq!(text.matches("<testcase ").count(), 12, "3 hosts × 4 steps");
    assert!(
        text.contains(r#"<testsuite name="mixed &lt;&amp;&gt; # plays" tests="12""#),
        "{text}"
    );
    assert!(text.contains(r#"classname="h02""#));
    // h02's command failed its expectation; h01's slow step timed out (an error); h02 and h03
    // skipped `slow` (h02: its host stopped; h03: `when`); the ignored failure passes.
    assert_eq!(text.matches("<failure ").count(), 1, "{text}");
    assert!(
        text.contains(r#"<failure message="rc: expected eq 0, found 1" type="expectation">"#),
        "{text}"
    );
    assert!(
        text.contains(r#"<error message="timed out after 200ms" type="timeout">"#),
        "{text}"
    );
    // Skipped: h01's last step (its host stopped), h02's last two, h03's `slow` (`when`).
    assert_eq!(text.matches("<skipped ").count(), 4, "{text}");
    assert!(text.contains("<system-err>err-h02</system-err>"), "{text}");
    assert!(text.contains("failed, ignored (ignore_errors)"), "{text}");
}

/// Installs nothing: reads what `scripts/setup` put in tests/tap/node_modules.
fn parse_tap(file: &Path) -> Value {
    let out = Command::new("node")
        .arg(repo().join("tests/tap/check.mjs"))
        .arg(file)
        .output()
        .expect("node runs (scripts/setup installs tap-parser in tests/tap)");
    assert!(
        out.status.success(),
        "tap-parser: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("check.mjs prints JSON")
}

#[test]
fn tap_output_parses_as_tap_14() {
    let case = Case::new(MIXED)
        .inventory(&local_hosts(3))
        .args(["--tap", "run.tap"]);
    let out = case.run();
    assert_eq!(out.code, 1, "{}", out.all());
    let tap = case.path("run.tap");
    let text = std::fs::read_to_string(&tap).expect("tap");
    let p = parse_tap(&tap);
    assert_eq!(p["version"], 14, "{text}");
    assert_eq!(
        p["extra"],
        serde_json::json!([]),
        "every line is TAP:\n{text}"
    );
    assert_eq!(p["final"]["tapErrors"], serde_json::json!([]), "{text}");
    assert_eq!(p["final"]["count"], 12, "{text}");
    assert_eq!(p["final"]["plan"]["end"], 12);
    assert_eq!(p["final"]["skip"], 4, "{text}");
    assert_eq!(p["final"]["todo"], 1, "h03's ignored failure:\n{text}");
    // tap-parser counts the TODO among `fail`; without it: h01's timeout and h02's check.
    assert_eq!(p["final"]["fail"], 3, "{text}");
    let asserts = p["asserts"].as_array().expect("asserts");
    assert_eq!(
        asserts[0]["name"], "h01 - mixed <&> # plays - ok <step> & # one",
        "`#` in a description is escaped and read back"
    );
    let failed: Vec<&Value> = asserts
        .iter()
        .filter(|a| a["ok"] == false && a["todo"] == false)
        .collect();
    assert_eq!(failed.len(), 2, "{text}");
    let check = failed
        .iter()
        .find(|a| a["name"].as_str().unwrap_or("").starts_with("h02"))
        .expect("h02's failure");
    let diag = &check["diag"];
    assert_eq!(diag["message"], "rc: expected eq 0, found 1");
    assert_eq!(diag["checks"][0]["field"], "rc");
    assert_eq!(diag["checks"][0]["expected"], 0);
    assert_eq!(diag["checks"][0]["found"], 1);
    assert_eq!(diag["at"], format!("{}:8:5", case.playbook.display()));
    let timeout = failed
        .iter()
        .find(|a| a["name"].as_str().unwrap_or("").starts_with("h01"))
        .expect("h01's timeout");
    assert_eq!(timeout["diag"]["error"]["kind"], "timeout");
}

#[test]
fn retry_failed_reruns_exactly_the_failed_hosts() {
    let pb = r#"
hosts: fleet
steps:
  - local: "echo {{ host.name }} >> ran.txt; test {{ host.name }} != h02 && test {{ host.name }} != h04"
"#;
    let case = Case::new(pb).inventory(&local_hosts(5));
    let first = case.run();
    assert_eq!(first.code, 1, "{}", first.all());
    let mut ran: Vec<String> = std::fs::read_to_string(case.path("ran.txt"))
        .expect("ran")
        .lines()
        .map(String::from)
        .collect();
    ran.sort();
    assert_eq!(ran, ["h01", "h02", "h03", "h04", "h05"]);
    std::fs::copy(case.path("report.json"), case.path("first.json")).expect("copy");
    std::fs::remove_file(case.path("ran.txt")).expect("rm");

    let second = Case {
        args: vec!["--retry-failed".into(), "first.json".into()],
        ..case
    };
    let out = second.run();
    assert_eq!(out.code, 1, "they fail again: {}", out.all());
    let mut ran: Vec<String> = std::fs::read_to_string(second.path("ran.txt"))
        .expect("ran")
        .lines()
        .map(String::from)
        .collect();
    ran.sort();
    assert_eq!(ran, ["h02", "h04"], "only the failed hosts ran again");
    let hosts: Vec<&str> = out.report.as_ref().expect("report")["plays"][0]["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .map(|h| h["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(hosts, ["h02", "h04"]);
}

/// The hosts of the first play of a report, in order.
fn report_hosts(out: &Output) -> Vec<String> {
    out.report.as_ref().expect("report")["plays"][0]["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .map(|h| h["name"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn retry_failed_reruns_a_really_unreachable_host_and_a_failed_one() {
    // Four lab sshd hosts: h02's listener is killed (unreachable for real), h03 fails its step.
    let mut t = TestLab::start(4);
    t.lab.ssh.kill_host(1).expect("kill h02");
    let pb = r#"
hosts: all
steps:
  - id: s
    ssh: "echo {{ host.name }} >> {{ lab_dir }}/ran.txt; test {{ host.name }} != h03"
"#;
    let mut case = Case::new(pb).inventory_file(t.inventory());
    case.env.push(("SSH_AUTH_SOCK".into(), String::new()));
    // The remote commands run on this machine, so the hosts that ran are all in one file.
    let ran_file = t.lab.dir().join("ran.txt");
    let ran = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_to_string(&ran_file)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect();
        v.sort();
        let _ = std::fs::remove_file(&ran_file);
        v
    };
    let logins = |t: &TestLab| -> Vec<usize> {
        (0..4)
            .map(|i| t.lab.ssh.accepted_connections(i).expect("sshd log"))
            .collect()
    };

    let first = case.run();
    assert_eq!(first.code, 2, "an unreachable host: {}", first.all());
    assert_eq!(first.host_status("h02"), "unreachable");
    assert_eq!(first.status("h03", "s"), "failed");
    assert_eq!(first.status("h01", "s"), "changed");
    assert_eq!(ran(), ["h01", "h03", "h04"]);
    std::fs::copy(case.path("report.json"), case.path("first.json")).expect("copy");
    assert_eq!(logins(&t), [1, 0, 1, 1]);

    // Retried while h02 is still down: exactly h02 and h03, and h02 is unreachable again.
    let retry = Case {
        args: vec!["--retry-failed".into(), "first.json".into()],
        ..case
    };
    let out = retry.run();
    assert_eq!(out.code, 2, "{}", out.all());
    assert_eq!(report_hosts(&out), ["h02", "h03"]);
    assert_eq!(out.host_status("h02"), "unreachable");
    assert_eq!(out.task("h02", "s")["error"]["kind"], "connect");
    assert_eq!(ran(), ["h03"]);
    assert_eq!(logins(&t), [1, 0, 2, 1], "h01 and h04 were not contacted");

    // h02 back up: retried from the same report, it runs; h03 fails again.
    t.lab.ssh.start_host(1).expect("restart h02");
    let out = retry.run();
    assert_eq!(out.code, 1, "{}", out.all());
    assert_eq!(report_hosts(&out), ["h02", "h03"]);
    assert_eq!(out.status("h02", "s"), "changed");
    assert_eq!(out.status("h03", "s"), "failed");
    assert_eq!(ran(), ["h02", "h03"]);
    assert_eq!(logins(&t), [1, 1, 3, 1]);
}

/// Every kind of secret the design names, each used where it would otherwise show.
const SECRETS_PLAYBOOK: &str = r#"
name: secrets
hosts: fleet
secrets: [api_token, session]
vars:
  api_token: "{{ token_from_cli }}"
steps:
  - name: Uses the token outside any secret step
    local: "echo token={{ api_token }}; echo login={{ env.SORTIE_TEST_LOGIN_PW }}"
  - name: A failed expectation quotes the token
    local: "echo token={{ api_token }}; echo err-token={{ api_token }} >&2"
    expect: { stdout: { eq: "nope" } }
    ignore_errors: true
  - set: { session: "sess-{{ host.name }}-91ab" }
  - name: The session leaks into a name check
    local: "echo {{ session }}"
    expect: { stdout: { contains: "{{ session }}" } }
  - name: Deploy key
    secret: true
    local:
      cmd: "echo $DB_PASS {{ env.SORTIE_TEST_DEPLOY_KEY }}"
      env: { DB_PASS: "dbpass-7f3e9c1a" }
  - secret: true
    local: "echo literal-0bd2e7 > /dev/null; true; true; true; true; true; true; true; true"
  - name: Later steps print what the secret step used
    local: "echo $SORTIE_TEST_DEPLOY_KEY dbpass-7f3e9c1a >&2; test {{ host.name }} != h02"
"#;

const SECRET_VALUES: &[&str] = &[
    "tok-4d9a27c5e1",
    "sess-h01-91ab",
    "sess-h02-91ab",
    "loginpw-88b1d0",
    "deploykey-5c02aa",
    "dbpass-7f3e9c1a",
    "literal-0bd2e7",
];

fn secrets_case() -> Case {
    let inv = format!(
        "ssh: {{ password_env: SORTIE_TEST_LOGIN_PW }}\n{}",
        local_hosts(2)
    );
    let mut case = Case::new(SECRETS_PLAYBOOK)
        .inventory(&inv)
        .args(["-e", "token_from_cli=tok-4d9a27c5e1"]);
    case.env
        .push(("SORTIE_TEST_LOGIN_PW".into(), "loginpw-88b1d0".into()));
    case.env
        .push(("SORTIE_TEST_DEPLOY_KEY".into(), "deploykey-5c02aa".into()));
    case
}

fn assert_no_secret(what: &str, bytes: &[u8]) {
    for s in SECRET_VALUES {
        let needle = s.as_bytes();
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "secret {s} appears in {what}:\n{}",
            String::from_utf8_lossy(bytes)
        );
        // Nor its start, where a value was cut for a message.
        let start = &needle[..8];
        assert!(
            !bytes.windows(start.len()).any(|w| w == start),
            "the start of {s} appears in {what}:\n{}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn secrets_appear_in_no_output() {
    // Plain lines with -v, the report, JUnit and TAP.
    let case = secrets_case().args(["-v", "--junit", "junit.xml", "--tap", "run.tap"]);
    let out = case.run();
    assert_eq!(out.code, 1, "{}", out.all());
    // The secrets were used: redacted text stands where they would be.
    assert!(
        out.stdout
            .contains("stdout: |\n        token=***\n        login=***"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("stderr: *** ***"), "{}", out.stdout);
    assert!(
        out.stdout.contains("  | *** ***"),
        "the recap's stderr tail:\n{}",
        out.stdout
    );
    assert!(out.stdout.contains("      output: ***"), "{}", out.stdout);
    assert_no_secret("stdout", out.stdout.as_bytes());
    assert_no_secret("stderr", out.stderr.as_bytes());
    for f in ["report.json", "junit.xml", "run.tap"] {
        let bytes = std::fs::read(case.path(f)).unwrap_or_else(|_| panic!("{f} written"));
        assert_no_secret(f, &bytes);
        assert!(String::from_utf8_lossy(&bytes).contains("***"), "{f}");
    }
    assert_eq!(out.task("h01", "Deploy key")["output"], "***");
    assert_eq!(
        out.task("h01", "#6")["name"],
        "local ***",
        "an unnamed secret step"
    );

    // JSON events.
    let out = run_json(&secrets_case());
    assert_eq!(out.code, 1, "{}", out.all());
    let _ = json_lines(&out.stdout);
    assert!(out.stdout.contains("token=***"), "{}", out.stdout);
    assert_no_secret("JSON events", out.stdout.as_bytes());
    assert_no_secret("stderr", out.stderr.as_bytes());

    // The live view in a terminal, with -v.
    let live = secrets_case().arg("-v");
    let (code, bytes, screens) =
        run_in_pty(live.dir.path(), &case_args(&live), &live.env, true, 30);
    assert_eq!(code, 1, "{}", String::from_utf8_lossy(&bytes));
    assert!(String::from_utf8_lossy(&bytes).contains("token=***"));
    assert_no_secret("the live view", &bytes);
    for s in &screens {
        assert_no_secret("a screen of the live view", s.as_bytes());
    }
}

/// Run-time failures point at the line that failed, as `check` does: a template error under
/// the undefined name, a failed expectation under its expected value, a false `until` under
/// the expression; warnings under the setting that caused them (on stderr).
#[test]
fn run_time_failures_render_as_located_diagnostics() {
    let case = Case::new(
        r#"name: located
steps:
  - name: undefined
    local: "echo {{ nope }}"
  - name: expectation
    local: "echo hello"
    expect: { stdout: { contains: bye } }
    needs: []
  - name: until
    local: "true"
    retry: { attempts: 1, until: "false" }
    needs: []
"#,
    );
    let out = case.run();
    assert_eq!(out.code, 1, "{}", out.stderr);
    let pb = case.playbook.display().to_string();
    let template = format!(
        "error: undefined variable `nope`\n \
         --> {pb}:4:21\n  |\n\
         4 |     local: \"echo {{{{ nope }}}}\"\n  \
         |                     ^^^^ not defined for this host\n  \
         = help: define it in the play's `vars`, the inventory, with `set`, or with `-e NAME=VALUE`\n"
    );
    assert!(out.stdout.contains(&template), "{}", out.stdout);
    assert!(
        out.stdout.contains(&format!(
            "— {pb}:4:21: undefined variable `nope`\n{template}"
        )),
        "the task line comes first: {}",
        out.stdout
    );
    let expectation = format!(
        "error: expectation failed: stdout\n \
         --> {pb}:7:25\n  |\n\
         7 |     expect: {{ stdout: {{ contains: bye }} }}\n  \
         |                         ^^^^^^^^ expected contains \"bye\", found \"hello\"\n"
    );
    assert!(out.stdout.contains(&expectation), "{}", out.stdout);
    let until = format!(
        "error: until: `false` is false\n  \
         --> {pb}:11:34\n   |\n\
         11 |     retry: {{ attempts: 1, until: \"false\" }}\n   \
         |                                  ^^^^^^^"
    );
    assert!(out.stdout.contains(&until), "{}", out.stdout);
    // The recap shows each failure again, in the same words, one after another.
    let recap = out
        .stdout
        .split("FAILURES (3)\n")
        .nth(1)
        .expect("a failures section");
    assert!(
        recap.starts_with("localhost · undefined · failed\nerror: undefined variable `nope`"),
        "{recap}"
    );
    assert!(
        recap.contains(&expectation) && recap.contains(&until),
        "{recap}"
    );
    // The report keeps the places as data.
    let t = out.task("localhost", "expectation");
    assert_eq!(t["checks"][0]["location"]["line"], 7);
    assert_eq!(t["checks"][0]["location"]["column"], 25);
    let t = out.task("localhost", "undefined");
    assert_eq!(t["error"]["location"]["line"], 4);
    assert_eq!(t["error"]["label"], "not defined for this host");
}

/// What hosts and servers send cannot drive the reader's terminal: control bytes in remote
/// output, task lines, `-v` output and the recap are shown as visible escapes, in both views.
#[test]
fn control_bytes_from_hosts_are_escaped_on_screen() {
    let case = Case::new(
        r#"name: hostile
steps:
  - name: prints escapes
    local: 'printf "a\033]52;c;ZXZpbA==\007b\033]0;owned\007c\033[2Jd\re\n"; printf "err\033[31m\n" >&2; exit 1'
"#,
    )
    .args(["-v"]);
    let hostile = ["\x1b]52", "\x1b]0;", "\x1b[2J", "\x1b[31m", "\x07", "\r"];
    let out = case.run();
    assert_eq!(out.code, 1, "{}", out.stderr);
    for (what, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        for h in hostile {
            assert!(!text.contains(h), "{h:?} reached {what}:\n{text}");
        }
    }
    assert!(
        out.stdout.contains("a\\x1b]52;c;ZXZpbA==\\x07b"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("| err\\x1b[31m"),
        "stderr's tail, escaped: {}",
        out.stdout
    );
    // The live view, forced off a terminal, draws its own codes but none of the host's.
    let human = Command::new(sortie_bin())
        .args(["run", "--format", "human", "-v"])
        .arg(&case.playbook)
        .current_dir(case.dir.path())
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&human.stdout);
    for h in &hostile[..4] {
        assert!(!text.contains(h), "{h:?} reached the live view:\n{text}");
    }
    assert!(text.contains("\\x1b]0;owned"), "{text}");
    // JSON escapes them itself, as JSON does.
    let report = out.report.expect("report");
    let stdout = report["plays"][0]["hosts"][0]["tasks"][0]["output"]["stdout"]
        .as_str()
        .expect("stdout");
    assert!(
        stdout.contains("\x1b]52"),
        "the report keeps the bytes as they were"
    );
}

/// A URL's password is masked everywhere, declared secret or not; a secret cut by the output
/// cap loses its start too.
#[test]
fn url_passwords_and_cut_secrets_are_redacted() {
    let cap = 1 << 20;
    let case = Case::new(&format!(
        r#"name: leaks
vars: {{ token: "tok-cut-7a2c99f1" }}
secrets: [token]
steps:
  - name: login
    http: {{ url: "http://admin:S3cretPw@127.0.0.1:1/health", timeout: 2s }}
  - name: big output
    local: "head -c {} /dev/zero | tr '\\0' a; echo {{{{ token }}}}"
    needs: []
"#,
        cap - 6
    ))
    .args(["--junit", "junit.xml", "--tap", "out.tap"]);
    let out = case.run();
    assert_eq!(out.code, 1, "{}", out.stderr);
    let junit = std::fs::read_to_string(case.path("junit.xml")).expect("junit");
    let tap = std::fs::read_to_string(case.path("out.tap")).expect("tap");
    let report = std::fs::read_to_string(case.path("report.json")).expect("report");
    for (what, text) in [
        ("stdout", out.stdout.as_str()),
        ("stderr", out.stderr.as_str()),
        ("junit", junit.as_str()),
        ("tap", tap.as_str()),
        ("report", report.as_str()),
    ] {
        assert!(
            !text.contains("S3cretPw"),
            "the URL's password in {what}:\n{text}"
        );
        assert!(!text.contains("tok-cu"), "the cut secret's start in {what}");
    }
    assert!(
        out.stdout.contains("http://admin:***@127.0.0.1:1/health"),
        "{}",
        out.stdout
    );
    let t = out.task("localhost", "big output");
    assert!(
        t["output"]["stdout_truncated_bytes"]
            .as_u64()
            .is_some_and(|n| n > 0)
    );
    let stdout = t["output"]["stdout"].as_str().expect("stdout");
    assert!(
        stdout.ends_with("aaaa***"),
        "{}",
        &stdout[stdout.len() - 20..]
    );
}
