//! The runner against real listeners on loopback: the concurrency bound, parallel `needs`
//! branches, batches and `max_failures`, the `tcp` step against every kind of listener, and
//! step semantics (retry/until, when, loop, timeout, ignore_errors, run_once, dry run, tags,
//! extra vars), exit codes and SIGINT.

use std::time::Duration;

use sortie_lab::tcp::{TcpKind, TcpServer};

use crate::harness::{Case, repo, sortie};

/// An inventory of `n` hosts `h01…` that all point at 127.0.0.1.
fn local_hosts(n: usize) -> String {
    let mut s = String::from("groups:\n  fleet:\n    hosts:\n");
    for i in 1..=n {
        s.push_str(&format!("      h{i:02}: {{ address: 127.0.0.1 }}\n"));
    }
    s
}

#[test]
fn concurrency_bound_is_reached_and_never_exceeded() {
    let counter = TcpServer::start_local(TcpKind::Counter {
        hold: Duration::from_millis(400),
    })
    .expect("listener");
    let pb = format!(
        "name: bounded\nhosts: fleet\nstrategy: {{ concurrency: 8 }}\nsteps:\n  - tcp: {{ port: {}, read: {{ until: \"ok\" }}, timeout: 10s }}\n    expect: {{ response: {{ contains: ok }} }}\n",
        counter.port()
    );
    let case = Case::new(&pb).inventory(&local_hosts(40));
    let out = case.run();
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(counter.accepted(), 40);
    assert_eq!(
        counter.max_open(),
        8,
        "at most and at least 8 hosts in flight"
    );
    // -c overrides the play's strategy.
    counter.reset_max_open();
    let out = case.arg("-c").arg("3").run();
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(counter.max_open(), 3);
}

#[test]
fn a_needs_branch_runs_beside_its_sibling() {
    let counter = TcpServer::start_local(TcpKind::Counter {
        hold: Duration::from_millis(300),
    })
    .expect("listener");
    let p = counter.port();
    let parallel = format!(
        "hosts: all\nsteps:\n  - id: a\n    tcp: {{ port: {p}, read: {{ until: ok }} }}\n  - id: b\n    needs: []\n    tcp: {{ port: {p}, read: {{ until: ok }} }}\n  - id: c\n    needs: [a, b]\n    assert: {{ that: [\"steps.a.open and steps.b.open\"] }}\n"
    );
    let out = Case::new(&parallel).run();
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(counter.max_open(), 2, "a and b ran side by side");
    assert_eq!(out.status("localhost", "c"), "ok");
    counter.reset_max_open();
    let sequential = format!(
        "hosts: all\nsteps:\n  - tcp: {{ port: {p}, read: {{ until: ok }} }}\n  - tcp: {{ port: {p}, read: {{ until: ok }} }}\n"
    );
    let out = Case::new(&sequential).run();
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(
        counter.max_open(),
        1,
        "by default a step follows the one before"
    );
}

#[test]
fn batches_run_in_order_and_max_failures_stops_the_next_batch() {
    let pb = r#"
name: rolling
hosts: fleet
strategy:
  batch: [1, 2, "100%"]
  max_failures: 0
steps:
  - local: "echo {{ host.name }} >> order.txt; sleep 0.2; test {{ host.name }} != h03"
"#;
    let case = Case::new(pb).inventory(&local_hosts(6));
    let out = case.run();
    assert_eq!(out.code, 1, "{}", out.all());
    let order = std::fs::read_to_string(case.path("order.txt")).expect("order");
    let lines: Vec<&str> = order.lines().collect();
    assert_eq!(lines[0], "h01", "batch 1 first: {lines:?}");
    let mut second = lines[1..3].to_vec();
    second.sort();
    assert_eq!(second, ["h02", "h03"], "then batch 2: {lines:?}");
    assert_eq!(lines.len(), 3, "batch 3 never started: {lines:?}");
    assert_eq!(out.host_status("h03"), "failed");
    for h in ["h04", "h05", "h06"] {
        assert_eq!(out.host_status(h), "skipped");
        let t = &out.task(h, "#1");
        assert!(
            t["message"].as_str().unwrap_or("").contains("max_failures"),
            "{t}"
        );
    }
    assert!(
        out.stderr.contains("max_failures (0) was exceeded"),
        "{}",
        out.all()
    );
}

#[test]
fn tcp_against_open_closed_echo_banner_slow_and_silent_listeners() {
    let open = TcpServer::start_local(TcpKind::Open).expect("open");
    let echo = TcpServer::start_local(TcpKind::Echo).expect("echo");
    let banner = TcpServer::start_local(TcpKind::Banner("SSH-2.0-lab\r\n".into())).expect("banner");
    let slow = TcpServer::start_local(TcpKind::Slow {
        delay: Duration::from_millis(1500),
        banner: "late\r\n".into(),
    })
    .expect("slow");
    let hole = TcpServer::start_local(TcpKind::Blackhole).expect("blackhole");
    let closed = sortie_lab::tcp::closed_port(std::net::Ipv4Addr::LOCALHOST)
        .expect("closed")
        .port();
    let pb = format!(
        r#"
hosts: all
steps:
  - id: open
    tcp: {{ port: {open} }}
  - id: closed
    tcp: {{ port: {closed}, timeout: 2s }}
    expect: {{ open: false }}
  - id: echo
    tcp: {{ port: {echo}, send: "hello\r\n", read: {{ until: "\r\n" }}, timeout: 2s }}
    expect: {{ response: "hello\r\n" }}
  - id: banner
    tcp: {{ port: {banner}, read: {{ until: "\n" }}, timeout: 2s }}
    expect: {{ response: {{ matches: "^SSH-2\\.0-" }}, connect_ms: {{ lt: 2000 }} }}
  - id: slow_in_time
    tcp: {{ port: {slow}, read: {{ until: "\n" }}, timeout: 5s }}
    expect: {{ response: {{ contains: late }} }}
  - id: slow_too_slow
    tcp: {{ port: {slow}, read: {{ until: "\n" }}, timeout: 300ms }}
    ignore_errors: true
  - id: silent
    tcp: {{ port: {hole}, timeout: 500ms }}
    expect: {{ open: false }}
  - id: wrong_expectation
    tcp: {{ port: {closed}, timeout: 1s }}
"#,
        open = open.port(),
        echo = echo.port(),
        banner = banner.port(),
        slow = slow.port(),
        hole = hole.port(),
    );
    let out = Case::new(&pb).run();
    assert_eq!(out.code, 1, "{}", out.all());
    for ok in ["open", "closed", "echo", "banner", "slow_in_time", "silent"] {
        assert_eq!(
            out.status("localhost", ok),
            "ok",
            "{ok}: {}",
            out.task("localhost", ok)
        );
    }
    assert_eq!(
        out.task("localhost", "echo")["output"]["response"],
        "hello\r\n"
    );
    let slow_t = out.task("localhost", "slow_too_slow");
    assert_eq!(slow_t["status"], "failed");
    assert_eq!(slow_t["ignored"], true);
    assert!(
        slow_t["message"]
            .as_str()
            .unwrap_or("")
            .contains("timed out"),
        "{slow_t}"
    );
    let wrong = out.task("localhost", "wrong_expectation");
    assert_eq!(wrong["status"], "failed");
    assert_eq!(wrong["checks"][0]["field"], "open");
    assert_eq!(wrong["checks"][0]["expected"], true);
    assert_eq!(wrong["checks"][0]["actual"], false);
    assert!(
        out.stdout.contains("open: expected eq true, found false"),
        "{}",
        out.stdout
    );
}

#[test]
fn retry_until_passes_on_a_later_attempt_and_gives_up_after_the_last() {
    let pb = r#"
hosts: all
steps:
  - id: flaky
    local: "n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; echo $n"
    retry: { attempts: 5, delay: 50ms, until: "steps.flaky.stdout | int >= 3" }
  - id: hopeless
    local: "exit 7"
    retry: { attempts: 3, delay: 10ms, backoff: 2 }
"#;
    let case = Case::new(pb);
    let out = case.run();
    assert_eq!(out.code, 1, "{}", out.all());
    let flaky = out.task("localhost", "flaky");
    assert_eq!(flaky["status"], "changed", "{flaky}");
    assert_eq!(flaky["attempts"], 3);
    assert_eq!(flaky["output"]["stdout"], "3");
    let hopeless = out.task("localhost", "hopeless");
    assert_eq!(hopeless["attempts"], 3);
    assert_eq!(hopeless["status"], "failed");
    assert!(
        out.stdout.contains("rc: expected eq 0, found 7"),
        "{}",
        out.stdout
    );
}

#[test]
fn when_loop_set_and_assert() {
    let pb = r#"
hosts: all
vars: { colours: [red, green, blue], enabled: false }
steps:
  - id: skipped
    when: enabled
    local: "exit 1"
  - id: each
    loop: "{{ colours }}"
    local: "echo {{ item | quote }}"
  - set: { count: "{{ steps.each.results | length }}", first: "{{ steps.each.results[0].stdout }}" }
  - id: check
    assert:
      that: ["count == 3", "first == 'red'"]
  - id: some
    loop: [1, 2, 3, 4]
    when: item is even
    local: "echo {{ item }}"
"#;
    let out = Case::new(pb).run();
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(out.status("localhost", "skipped"), "skipped");
    let each = out.task("localhost", "each");
    let results = each["output"]["results"].as_array().expect("results");
    let seen: Vec<&str> = results
        .iter()
        .map(|r| r["stdout"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(seen, ["red", "green", "blue"]);
    assert_eq!(out.status("localhost", "check"), "ok");
    let some = out.task("localhost", "some");
    let ran: Vec<&str> = some["output"]["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|r| r["stdout"].as_str())
        .collect();
    assert_eq!(ran, ["2", "4"]);
}

#[test]
fn a_failed_assert_fails_with_its_message() {
    let pb = "hosts: all\nvars: { n: 2 }\nsteps:\n  - id: a\n    assert: { that: [\"n > 5\"], message: \"n is only {{ n }}\" }\n";
    let out = Case::new(pb).run();
    assert_eq!(out.code, 1);
    assert_eq!(out.task("localhost", "a")["message"], "n is only 2");
}

#[test]
fn timeout_kills_the_command_and_fails_the_step() {
    let pb = r#"
hosts: all
steps:
  - id: slow
    local: "sleep 30 & echo $! > child.pid; wait"
    timeout: 500ms
  - id: after
    local: "true"
"#;
    let case = Case::new(pb);
    let started = std::time::Instant::now();
    let out = case.run();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "timed out promptly"
    );
    assert_eq!(out.code, 1, "{}", out.all());
    let t = out.task("localhost", "slow");
    assert_eq!(t["error"]["kind"], "timeout", "{t}");
    assert_eq!(
        out.status("localhost", "after"),
        "skipped",
        "a failed step stops its host"
    );
    // The whole process group was killed, the background sleep included.
    let pid: i32 = std::fs::read_to_string(case.path("child.pid"))
        .expect("pid")
        .trim()
        .parse()
        .expect("number");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(" Z "),
        "sleep {pid} still runs"
    );
}

#[test]
fn ignore_errors_lets_the_host_go_on() {
    let pb = "hosts: all\nsteps:\n  - id: bad\n    local: \"exit 3\"\n    ignore_errors: true\n  - id: next\n    local: \"echo on\"\n";
    let out = Case::new(pb).run();
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(out.task("localhost", "bad")["ignored"], true);
    assert_eq!(out.status("localhost", "next"), "changed");
}

#[test]
fn run_once_runs_on_one_host_and_everyone_sees_the_result() {
    let pb = r#"
hosts: fleet
steps:
  - id: once
    run_once: true
    local: "echo {{ host.name }} >> once.txt; echo {{ host.name }}"
  - id: see
    assert: { that: ["steps.once.stdout | length == 3"] }
"#;
    let case = Case::new(pb).inventory(&local_hosts(5));
    let out = case.run();
    assert_eq!(out.code, 0, "{}", out.all());
    let ran = std::fs::read_to_string(case.path("once.txt")).expect("once");
    assert_eq!(ran.lines().count(), 1, "{ran}");
    for i in 1..=5 {
        assert_eq!(out.status(&format!("h{i:02}"), "see"), "ok");
    }
}

#[test]
fn dry_run_renders_and_runs_nothing() {
    let pb = "hosts: fleet\nvars: { greeting: hi }\nsteps:\n  - local: \"echo {{ greeting }} > touched.txt\"\n";
    let case = Case::new(pb).inventory(&local_hosts(2)).arg("--dry-run");
    let out = case.run();
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(!case.path("touched.txt").exists(), "a dry run runs nothing");
    assert_eq!(out.status("h01", "#1"), "skipped");
    assert!(
        out.stdout.contains("echo hi > touched.txt"),
        "the plan is shown rendered: {}",
        out.stdout
    );
}

#[test]
fn tags_select_steps() {
    let pb = "hosts: all\nsteps:\n  - id: a\n    tags: [web]\n    local: \"true\"\n  - id: b\n    tags: db\n    local: \"true\"\n  - id: c\n    local: \"true\"\n";
    let out = Case::new(pb).args(["--tags", "web"]).run();
    assert_eq!(out.status("localhost", "a"), "changed");
    assert_eq!(out.status("localhost", "b"), "skipped");
    assert_eq!(out.status("localhost", "c"), "skipped");
    let out = Case::new(pb).args(["--skip-tags", "web,db"]).run();
    assert_eq!(out.status("localhost", "a"), "skipped");
    assert_eq!(out.status("localhost", "c"), "changed");
}

#[test]
fn extra_vars_outrank_everything_and_files_work() {
    let pb = "hosts: all\nvars: { who: play }\nsteps:\n  - set: { who: set }\n  - id: say\n    local: \"echo {{ who }} {{ n }}\"\n";
    let case =
        Case::new(pb)
            .file("extra.yml", "n: 42\n")
            .args(["-e", "who=cli", "-e", "@extra.yml"]);
    let out = case.run();
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(out.task("localhost", "say")["output"]["stdout"], "cli 42");
}

#[test]
fn undefined_variable_at_run_time_is_located() {
    let pb = "hosts: all\nsteps:\n  - id: a\n    local: \"echo {{ verison }}\"\n";
    let out = Case::new(pb).arg("-e").arg("version=1").run();
    assert_eq!(out.code, 1, "{}", out.all());
    let t = out.task("localhost", "a");
    let msg = t["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("playbook.yml:4:21: undefined variable `verison`"),
        "{msg}"
    );
}

#[test]
fn invalid_input_exits_3_and_runs_nothing() {
    let case = Case::new("hosts: all\nsteps:\n  - local: \"touch ran\"\n  - htp: {}\n");
    let out = case.run();
    assert_eq!(out.code, 3);
    assert!(
        out.report.is_none(),
        "no report for a run that never started"
    );
    assert!(!case.path("ran").exists());
    let out = Case::new("hosts: nosuchgroup\nsteps:\n  - local: \"true\"\n")
        .inventory(&local_hosts(1))
        .run();
    assert_eq!(out.code, 3, "{}", out.all());
    assert!(out.stderr.contains("nosuchgroup"), "{}", out.stderr);
}

#[test]
fn usage_errors_exit_3_with_clap_s_message_and_help_exits_0() {
    let dir = repo();
    for (args, says) in [
        (
            &["run", "x.yml", "--no-such-flag"][..],
            "unexpected argument '--no-such-flag'",
        ),
        (
            &["run", "x.yml", "--format", "fancy"][..],
            "invalid value 'fancy' for '--format",
        ),
        (&["run"][..], "required arguments were not provided"),
        (&["inventory"][..], "required arguments were not provided"),
        (
            &["plan", "x.yml", "-c", "3"][..],
            "unexpected argument '-c'",
        ),
        (&["launch"][..], "unrecognized subcommand 'launch'"),
        (&[][..], "Usage: sortie"),
    ] {
        let out = sortie(&dir, args);
        assert_eq!(out.code, 3, "{args:?}: invalid input\n{}", out.all());
        assert!(out.stderr.contains(says), "{args:?}\n{}", out.stderr);
        assert!(out.stdout.is_empty(), "{args:?}\n{}", out.all());
    }
    for args in [
        &["--help"][..],
        &["run", "--help"][..],
        &["-h"][..],
        &["--version"][..],
    ] {
        let out = sortie(&dir, args);
        assert_eq!(out.code, 0, "{args:?}\n{}", out.all());
        assert!(
            !out.stdout.is_empty() && out.stderr.is_empty(),
            "{args:?}\n{}",
            out.all()
        );
    }
    assert!(sortie(&dir, &["--help"]).stdout.contains("3 invalid input"));
}

#[test]
fn sigint_writes_a_complete_report_and_exits_4() {
    let case = Case::new("hosts: fleet\nsteps:\n  - id: long\n    local: \"sleep 20\"\n  - id: later\n    local: \"true\"\n")
        .inventory(&local_hosts(3));
    let report = case.path("report.json");
    let mut child = std::process::Command::new(crate::harness::sortie_bin())
        .arg("run")
        .arg(&case.playbook)
        .arg("-i")
        .arg(&case.inventory[0])
        .arg("--format")
        .arg("plain")
        .arg("--report")
        .arg(&report)
        .current_dir(case.dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(700));
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, rustix::process::Signal::INT).expect("SIGINT");
    std::thread::sleep(Duration::from_millis(300));
    rustix::process::kill_process(pid, rustix::process::Signal::INT).expect("second SIGINT");
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "sortie did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(4));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report written"))
            .expect("JSON");
    assert_eq!(r["interrupted"], true);
    assert_eq!(r["exit_code"], 4);
    let hosts = r["plays"][0]["hosts"].as_array().expect("hosts");
    assert_eq!(hosts.len(), 3, "every host is in the report");
    for h in hosts {
        assert_eq!(h["tasks"].as_array().map(|t| t.len()), Some(2));
        assert_eq!(h["tasks"][1]["status"], "skipped");
    }
}

#[test]
fn the_probes_example_runs() {
    let echo = TcpServer::start_local(TcpKind::Echo).expect("echo");
    let closed = sortie_lab::tcp::closed_port(std::net::Ipv4Addr::LOCALHOST)
        .expect("closed")
        .port();
    let dir = repo().join("playbooks");
    let mut c = std::process::Command::new(crate::harness::sortie_bin());
    let report = tempfile::NamedTempFile::new().expect("tmp");
    c.args(["run", "probes.yml", "--format", "plain", "-e"])
        .arg(format!("echo_port={}", echo.port()))
        .arg("-e")
        .arg(format!("closed_port={closed}"))
        .arg("--report")
        .arg(report.path())
        .current_dir(&dir);
    let out = crate::harness::finish(c, Some(report.path()));
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.contains("RECAP"), "{}", out.stdout);
    let r = out.report.as_ref().expect("report");
    assert_eq!(
        (r["hosts"]["failed"].clone(), r["hosts"]["changed"].clone()),
        (serde_json::json!(0), serde_json::json!(1)),
        "{}",
        out.all()
    );
}

#[test]
fn variable_precedence_level_by_level() {
    // Each variable is defined at every level up to its own; the highest defined level wins.
    let inventory = r#"
vars: { a: all, b: all, c: all, d: all, e: all, f: all, g: all }
groups:
  parent:
    children: [child]
    vars: { b: parent, c: parent, d: parent, e: parent, f: parent, g: parent }
  child:
    hosts:
      h1: { address: 127.0.0.1, vars: { d: host, e: host, f: host, g: host } }
    vars: { c: child, d: child, e: child, f: child, g: child }
"#;
    let pb = r#"
hosts: h1
vars: { e: play, f: play, g: play, h: play, i: play, j: play }
vars_files: [more.yml]
steps:
  - set: { g: set, i: set, j: set }
  - id: show
    loop: [item]
    local: "echo {{ a }} {{ b }} {{ c }} {{ d }} {{ e }} {{ f }} {{ g }} {{ h }} {{ i }} {{ j }} {{ item }}"
"#;
    let case = Case::new(pb)
        .inventory(inventory)
        .file("more.yml", "f: vars_file\ng: vars_file\nh: vars_file\n")
        .args(["-e", "j=extra", "-e", "item=extra-loses-to-nothing"]);
    let out = case.run();
    assert_eq!(out.code, 0, "{}", out.all());
    let t = out.task("h1", "show");
    assert_eq!(
        t["output"]["results"][0]["stdout"],
        "all parent child host play vars_file set vars_file set extra extra-loses-to-nothing",
        "all < parent < child < host < play < vars_files < set < item < -e"
    );
}

/// A TLS listener with a fresh self-signed certificate for 127.0.0.1: it sends a greeting line
/// on every connection. Returns the port and the certificate (PEM) to trust.
fn tls_listener() -> (u16, String, std::sync::mpsc::Sender<()>) {
    use tokio::io::AsyncWriteExt;
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("cert");
    let pem = cert.cert.pem();
    let der = cert.cert.der().clone();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(rustls_pki_types::PrivatePkcs8KeyDer::from(
        cert.signing_key.serialize_der(),
    ));
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(vec![der], key)
    .expect("server config");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    listener.set_nonblocking(true).expect("nonblocking");
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
            for _ in 0..50 {
                if stop_rx.try_recv().is_ok() {
                    break;
                }
                let Ok(Ok((tcp, _))) =
                    tokio::time::timeout(Duration::from_millis(200), listener.accept()).await
                else {
                    continue;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut tls) = acceptor.accept(tcp).await {
                        let _ = tls.write_all(b"hello-tls\n").await;
                        let _ = tls.shutdown().await;
                    }
                });
            }
        });
    });
    (port, pem, stop_tx)
}

#[test]
fn tcp_over_tls_with_a_test_ca_an_unknown_ca_and_verification_off() {
    let (port, pem, _stop) = tls_listener();
    let pb = format!(
        r#"
hosts: all
steps:
  - id: trusted
    needs: []
    tcp: {{ port: {port}, tls: {{ ca: ca.pem }}, read: {{ until: "\n" }}, timeout: 3s }}
    expect: {{ response: "hello-tls\n" }}
  - id: unknown_ca
    needs: []
    tcp: {{ port: {port}, tls: true, read: {{ until: "\n" }}, timeout: 3s }}
    ignore_errors: true
  - id: unverified
    needs: []
    tcp: {{ port: {port}, tls: {{ verify: false }}, read: {{ until: "\n" }}, timeout: 3s }}
    expect: {{ response: {{ contains: hello }} }}
"#
    );
    let out = Case::new(&pb).file("ca.pem", &pem).run();
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(out.status("localhost", "trusted"), "ok");
    assert_eq!(out.status("localhost", "unverified"), "ok");
    let bad = out.task("localhost", "unknown_ca");
    assert_eq!(bad["status"], "failed");
    let msg = bad["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("TLS handshake") && msg.contains("UnknownIssuer"),
        "{msg}"
    );
}

#[test]
fn changed_when_decides_changed() {
    let pb = r#"
hosts: all
steps:
  - id: quiet
    local: "echo nothing to do"
    changed_when: "'updated' in steps.quiet.stdout"
  - id: loud
    local: "echo updated 3 files"
    changed_when: "'updated' in steps.loud.stdout"
"#;
    let out = Case::new(pb).run();
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(out.status("localhost", "quiet"), "ok");
    assert_eq!(out.status("localhost", "loud"), "changed");
}

#[test]
fn limit_narrows_the_hosts() {
    let pb = "hosts: fleet\nsteps:\n  - local: \"echo {{ host.name }} >> ran.txt\"\n";
    let case = Case::new(pb)
        .inventory(&local_hosts(4))
        .args(["-l", "h02:h04"]);
    let out = case.run();
    assert_eq!(out.code, 0, "{}", out.all());
    let mut ran: Vec<String> = std::fs::read_to_string(case.path("ran.txt"))
        .expect("ran")
        .lines()
        .map(str::to_string)
        .collect();
    ran.sort();
    assert_eq!(ran, ["h02", "h04"]);
    let out = Case::new(pb)
        .inventory(&local_hosts(4))
        .args(["-l", "h9"])
        .run();
    assert_eq!(out.code, 3, "an unknown --limit is invalid input");
}

#[test]
fn templated_expectation_keys_and_trailing_newlines() {
    let http = sortie_lab::http::HttpServer::start().expect("http");
    let pb = format!(
        r#"
hosts: all
vars: {{ field: status, v: 1 }}
steps:
  - id: health
    http: {{ url: "http://127.0.0.1:{port}/health" }}
    expect:
      json: {{ "$.{{{{ field }}}}": ok }}
  - id: bytes
    local: {{ cmd: "wc -c", stdin: "a{{{{ v }}}}\n" }}
    expect: {{ stdout: {{ matches: "^ *3$" }} }}
"#,
        port = http.port()
    );
    let out = Case::new(&pb).run();
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(
        out.task("localhost", "health")["checks"][0]["field"],
        "json[\"$.status\"]"
    );
}

#[test]
fn a_closed_port_says_why_on_the_task_line_and_in_the_recap() {
    let closed = sortie_lab::tcp::closed_port(std::net::Ipv4Addr::LOCALHOST)
        .expect("closed")
        .port();
    let out = Case::new(&format!(
        "hosts: all\nsteps:\n  - id: p\n    tcp: {{ port: {closed}, timeout: 1s }}\n"
    ))
    .run();
    assert_eq!(out.code, 1, "{}", out.all());
    let why = format!("127.0.0.1:{closed}: Connection refused");
    assert!(
        out.task("localhost", "p")["message"]
            .as_str()
            .unwrap_or("")
            .contains(&why),
        "{}",
        out.all()
    );
    let recap = out.stdout.split("FAILURES").nth(1).unwrap_or("");
    assert!(recap.contains(&why), "{}", out.stdout);
}
