//! The web face against real servers: the HTML report of a lab run (real sshd hosts) opened in
//! Debian's headless Chromium with the network off (`tests/web/page.mjs`, playwright-core),
//! and `sortie serve` over a lab fleet scraped by a real Prometheus (Debian's `prometheus`)
//! whose HTTP API the test reads back, with `promtool check metrics` on `/metrics` and
//! `/healthz` flipping as a host fails and recovers.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Case, TestLab, repo, sortie, sortie_bin};

/// A playbook over the lab's hosts whose `flag` step fails on a host while the file
/// `broken-HOST` exists in `flags`.
fn playbook(flags: &Path) -> String {
    format!(
        r#"name: fleet health
hosts: lab
steps:
  - id: uptime
    name: uptime
    ssh: "cat /proc/uptime"
    changed_when: false
  - id: disk
    name: disk is healthy
    ssh: "test ! -e {}/broken-{{{{ host.name }}}}"
    changed_when: false
    expect: {{ rc: 0 }}
  - id: echo
    name: tcp echo
    tcp: {{ host: "{{{{ host.address }}}}", port: "{{{{ echo_port }}}}", timeout: 2s }}
"#,
        flags.display()
    )
}

fn node_script() -> PathBuf {
    let dir = repo().join("tests/web");
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is missing: run scripts/setup"
    );
    dir.join("page.mjs")
}

/// What Chromium saw of the page (see `tests/web/page.mjs`).
fn open_in_chromium(page: &Path, screenshot: Option<&Path>) -> Value {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut c = Command::new("node");
    c.arg(node_script()).arg(page).arg(profile.path());
    if let Some(s) = screenshot {
        c.arg(s);
    }
    let out = c.output().expect("node runs");
    assert!(
        out.status.success(),
        "page.mjs failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("page.mjs prints JSON")
}

fn hosts(rows: &Value, visible_only: bool) -> Vec<String> {
    rows.as_array()
        .expect("rows")
        .iter()
        .filter(|r| !visible_only || r["hidden"] == false)
        .map(|r| r["host"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn the_html_report_of_a_lab_run_renders_in_chromium_with_the_network_off() {
    let t = TestLab::start(4);
    let flags = tempfile::tempdir().expect("flags");
    std::fs::write(flags.path().join("broken-h03"), "").expect("flag");
    let case = Case::new(&playbook(flags.path()))
        .inventory_file(t.inventory())
        .args(["--html", "page.html"]);
    let o = case.run();
    assert_eq!(o.code, 1, "{}", o.all());
    let page = case.path("page.html");
    let html = std::fs::read_to_string(&page).expect("the page was written");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no URL in the page"
    );

    // The same page from the saved report.
    let again = sortie(
        case.dir.path(),
        &["report", "html", "report.json", "-o", "again.html"],
    );
    assert_eq!(again.code, 0, "{}", again.all());
    assert_eq!(
        std::fs::read_to_string(case.path("again.html")).expect("again.html"),
        html,
        "`sortie report html` renders what `run --html` wrote"
    );

    let shot = case.path("report.png");
    let seen = open_in_chromium(&page, Some(&shot));
    // Nothing but the file itself was requested, and nothing was refused or failed.
    assert_eq!(seen["requests"].as_array().map(Vec::len), Some(1), "{seen}");
    assert!(
        seen["requests"][0]
            .as_str()
            .unwrap_or("")
            .starts_with("file://")
    );
    assert_eq!(seen["blocked"], serde_json::json!([]), "{seen}");

    let before = &seen["before"];
    assert_eq!(
        hosts(&before["rows"], false),
        ["h03", "h01", "h02", "h04"],
        "one row per host, the failing one first: {before}"
    );
    assert!(
        before["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .all(|r| r["bars"] == 3)
    );
    let failures = before["failures"].as_array().expect("failures");
    assert_eq!(failures.len(), 1, "{before}");
    assert_eq!(failures[0]["host"], "h03");
    let text = failures[0]["text"].as_str().unwrap_or("");
    assert!(
        text.starts_with("error: expectation failed: rc\n  --> ")
            && text.contains("playbook.yml:12:19\n"),
        "the diagnostic renderer's text, unescaped by the browser: {text}"
    );
    assert!(text.contains("expect: { rc: 0 }"), "{text}");
    assert!(text.contains("expected 0, found 1"), "{text}");

    // Unchecking `ok` leaves the failing host; the host filter keeps what matches.
    assert_eq!(hosts(&seen["after_ok"]["rows"], true), ["h03"]);
    assert_eq!(seen["after_ok"]["shown"], "1 of 4 hosts shown");
    assert_eq!(hosts(&seen["after_host"]["rows"], true), ["h02"]);
    // A focused bar shows its task's name, host, duration and outcome.
    let tip = seen["tip"]["text"].as_str().unwrap_or("");
    assert_eq!(seen["tip"]["hidden"], false);
    assert!(
        tip.starts_with("uptime · h03 · ") && tip.ends_with(" · ok"),
        "{tip}"
    );
    assert!(
        seen["paint"]["first-contentful-paint"].as_f64().is_some(),
        "{seen}"
    );

    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    // `SORTIE_SCREENSHOT=docs/report.png` keeps it (the README shows it).
    if let Ok(keep) = std::env::var("SORTIE_SCREENSHOT") {
        std::fs::write(repo().join(keep), &png).expect("keep the screenshot");
    }
}

#[test]
fn report_html_refuses_what_is_not_a_report() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("bad.json"),
        "{\"version\": 2,\n \"plays\": 3}\n",
    )
    .expect("w");
    let o = sortie(dir.path(), &["report", "html", "bad.json"]);
    assert_eq!(o.code, 3, "{}", o.all());
    assert!(
        o.stderr
            .starts_with("error: `bad.json` is not a sortie report"),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("--> bad.json:"), "{}", o.stderr);
    let o = sortie(dir.path(), &["report", "html", "missing.json"]);
    assert_eq!(o.code, 3, "{}", o.all());
    assert!(
        o.stderr
            .starts_with("error: cannot read report `missing.json`"),
        "{}",
        o.stderr
    );
}

/// A child process stopped (by its PID) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `sortie serve`, its stderr collected.
struct Serve {
    proc: Proc,
    addr: String,
    log: Arc<Mutex<String>>,
}

impl Serve {
    fn start(case: &Case, args: &[&str]) -> Serve {
        let mut c = Command::new(sortie_bin());
        c.arg("serve").arg(&case.playbook);
        for i in &case.inventory {
            c.arg("-i").arg(i);
        }
        c.args(["--listen", "127.0.0.1:0"]).args(args);
        c.current_dir(case.dir.path()).env("NO_COLOR", "1");
        c.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = c.spawn().expect("sortie serve starts");
        let stderr = child.stderr.take().expect("stderr");
        let proc = Proc(child);
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let l = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(a) = line.split("listening on http://").nth(1) {
                    let _ = tx.send(a.split_whitespace().next().unwrap_or("").to_string());
                }
                let mut l = l.lock().expect("log");
                l.push_str(&line);
                l.push('\n');
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("serve never listened:\n{}", log.lock().expect("log")));
        Serve { proc, addr, log }
    }

    fn log(&self) -> String {
        self.log.lock().expect("log").clone()
    }
}

/// `curl` a URL: the status code and the body.
fn get(url: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-m", "30", "-w", "\n%{http_code}", url])
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// Waits (bounded) until `f` holds, else fails with what it last saw.
fn wait_for<T: std::fmt::Debug>(what: &str, secs: u64, mut f: impl FnMut() -> (bool, T)) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (ok, seen) = f();
        if ok {
            return seen;
        }
        assert!(Instant::now() < deadline, "{what}: last saw {seen:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Prometheus on loopback with its own config and data directory.
fn start_prometheus(dir: &Path, serve: &str, hosts: &[&str]) -> (Proc, String) {
    let targets: Vec<String> = hosts.iter().map(|h| format!("'{h}'")).collect();
    let config = format!(
        "global: {{ scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s }}
scrape_configs:
  - job_name: sortie
    static_configs: [{{ targets: ['{serve}'] }}]
  - job_name: sortie-probe
    metrics_path: /probe
    scrape_interval: 2s
    scrape_timeout: 2s
    static_configs: [{{ targets: [{}] }}]
    relabel_configs:
      - {{ source_labels: [__address__], target_label: __param_host }}
      - {{ source_labels: [__param_host], target_label: instance }}
      - {{ target_label: __address__, replacement: '{serve}' }}
",
        targets.join(", ")
    );
    std::fs::write(dir.join("prometheus.yml"), config).expect("config");
    let check = Command::new("promtool")
        .arg("check")
        .arg("config")
        .arg(dir.join("prometheus.yml"))
        .output()
        .expect("promtool (the prometheus package) is installed: run scripts/setup");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let addr = format!("127.0.0.1:{}", free_port());
    let child = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).expect("log"))
        .spawn()
        .expect("prometheus starts");
    (Proc(child), addr)
}

/// `query` at Prometheus: each series' `host` (or `instance`) label and value.
fn query(prom: &str, q: &str) -> Vec<(String, String)> {
    let url = format!("http://{prom}/api/v1/query?query={q}");
    let (code, body) = get(&url);
    if code != 200 {
        return Vec::new();
    }
    let v: Value = serde_json::from_str(&body).unwrap_or_default();
    let mut out: Vec<(String, String)> = v["data"]["result"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .map(|r| {
                    let m = &r["metric"];
                    let who = m["host"].as_str().or(m["instance"].as_str()).unwrap_or("");
                    (
                        who.to_string(),
                        r["value"][1].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn serve_is_scraped_by_prometheus_and_its_health_follows_the_fleet() {
    let t = TestLab::start(3);
    let flags = tempfile::tempdir().expect("flags");
    let broken = flags.path().join("broken-h02");
    std::fs::write(&broken, "").expect("flag");
    let case = Case::new(&playbook(flags.path())).inventory_file(t.inventory());
    let serve = Serve::start(&case, &["--every", "1s", "--probe-cache", "1s"]);
    let base = format!("http://{}", serve.addr);

    let health = wait_for("healthz says failing", 60, || {
        let (code, body) = get(&format!("{base}/healthz"));
        (code == 503 && body.starts_with("failing"), (code, body))
    });
    assert_eq!(
        health.1,
        health.1.lines().next().unwrap_or("").to_string() + "\n"
    );
    assert!(health.1.contains("3 hosts: 2 ok, 1 failed"), "{health:?}");

    // promtool accepts /metrics as it is served.
    let (code, metrics) = get(&format!("{base}/metrics"));
    assert_eq!(code, 200);
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    use std::io::Write;
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(metrics.as_bytes())
        .expect("write");
    let checked = promtool.wait_with_output().expect("promtool ends");
    assert!(
        checked.status.success(),
        "promtool check metrics:\n{}{}\n{metrics}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(metrics.contains(
        "sortie_step_success{host=\"h02\",play=\"fleet health\",step=\"disk\",name=\"disk is healthy\",kind=\"ssh\"} 0\n"
    ), "{metrics}");

    // /probe: the multi-target pattern; an unknown host is 404.
    let (code, probe) = get(&format!("{base}/probe?host=h02"));
    assert_eq!(code, 200, "{probe}");
    assert!(probe.contains("sortie_probe_success 0\n"), "{probe}");
    assert!(!probe.contains("host=\"h01\""), "{probe}");
    assert_eq!(get(&format!("{base}/probe?host=nope")).0, 404);
    let (code, page) = get(&format!("{base}/"));
    assert_eq!(code, 200);
    assert!(page.starts_with("<!doctype html>"));
    let (code, json) = get(&format!("{base}/report.json"));
    assert_eq!(code, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&json).expect("JSON")["hosts"]["failed"],
        1
    );

    // A real Prometheus scrapes both jobs; its API gives the series back.
    let pdir = tempfile::tempdir().expect("prometheus dir");
    let (_prom, prom) = start_prometheus(pdir.path(), &serve.addr, &["h01", "h02", "h03"]);
    let want = pairs(&[("h01", "1"), ("h02", "0"), ("h03", "1")]);
    wait_for("prometheus has sortie_host_success", 90, || {
        let got = query(&prom, "sortie_host_success");
        (got == want, got)
    });
    let disk = query(
        &prom,
        "sortie_step_success%7Bjob%3D%22sortie%22%2Cstep%3D%22disk%22%7D",
    );
    assert_eq!(disk, want);
    wait_for("prometheus has probe results", 90, || {
        let got = query(&prom, "sortie_probe_success");
        (got == want, got)
    });

    // The host recovers: healthy again without a restart; it fails again: 503.
    std::fs::remove_file(&broken).expect("unflag");
    wait_for("healthz recovers", 60, || {
        let (code, body) = get(&format!("{base}/healthz"));
        (
            code == 200 && body.starts_with("ok: 3 hosts: 3 ok"),
            (code, body),
        )
    });
    std::fs::write(&broken, "").expect("flag again");
    wait_for("healthz fails again", 60, || {
        let (code, body) = get(&format!("{base}/healthz"));
        (code == 503, (code, body))
    });
    std::fs::remove_file(&broken).expect("unflag");
    wait_for("healthz recovers again", 60, || {
        let (code, body) = get(&format!("{base}/healthz"));
        (code == 200, (code, body))
    });

    // SIGTERM: the current run finishes, then serve stops cleanly.
    let pid = serve.proc.0.id();
    let killed = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let mut serve = serve;
    let status = wait_for("serve stops", 60, || match serve.proc.0.try_wait() {
        Ok(Some(s)) => (true, Some(s)),
        _ => (false, None),
    });
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", serve.log());
    let log = serve.log();
    assert!(
        log.contains(" run 1: 3 hosts: 2 ok, 1 failed, in "),
        "{log}"
    );
    assert!(log.contains("probe h02: 1 host: 1 failed"), "{log}");
    assert!(log.trim_end().ends_with("sortie serve: stopped"), "{log}");
}

#[test]
fn serve_refuses_bad_input_before_it_listens() {
    let case = Case::new("name: x\nsteps:\n  - htp: { url: http://127.0.0.1:1 }\n");
    let mut c = Command::new(sortie_bin());
    c.arg("serve")
        .arg(&case.playbook)
        .args(["--listen", "127.0.0.1:0"]);
    let o = crate::harness::finish(c, None);
    assert_eq!(o.code, 3, "{}", o.all());
    assert!(
        o.stderr.starts_with("error: unknown step kind `htp`"),
        "{}",
        o.stderr
    );
    assert!(!o.stderr.contains("listening"), "{}", o.stderr);

    let good = Case::new("name: x\nsteps:\n  - local: \"true\"\n");
    for (args, message) in [
        (
            ["--listen", "nowhere"],
            "error: `--listen nowhere`: invalid socket address syntax",
        ),
        (["--every", "0s"], "error: `--every` must be longer than 0"),
        (["--every", "soon"], "error: `--every soon`: "),
    ] {
        let mut c = Command::new(sortie_bin());
        c.arg("serve").arg(&good.playbook).args(args);
        let o = crate::harness::finish(c, None);
        assert_eq!(o.code, 3, "{args:?}: {}", o.all());
        assert!(o.stderr.starts_with(message), "{args:?}: {}", o.stderr);
    }
}
