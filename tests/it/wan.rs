//! Round trips, held: each step kind run across the lab's WAN (a known round trip between the
//! runner and the host) and, side by side, on loopback; the difference of the two durations,
//! divided by the round trip, is the step's round trips — the CPU both runs spend cancels out
//! — held at what the protocol needs (plus one for noise on a loaded machine). A step that starts waiting once
//! more per request — a stat it does not need, a small SFTP buffer, a question it could skip —
//! fails here, where loopback would hide it. The contents are checked too: transfers across
//! a delayed link arrive whole.

use std::time::{Duration, Instant};

use crate::harness::{Case, TestLab};

const RTT: Duration = Duration::from_millis(300);

fn millis(task: &serde_json::Value) -> f64 {
    task["duration_ms"].as_f64().expect("duration_ms")
}

#[test]
fn openssh_across_the_wan_pays_its_round_trips() {
    // The emulation is real: a plain `ssh host true` waits for every packet exchange.
    let lab = TestLab::start_with_rtt(1, RTT);
    let start = Instant::now();
    let out = lab
        .lab
        .ssh
        .ssh_command(0)
        .expect("ssh command")
        .arg("true")
        .output()
        .expect("ssh runs");
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        took >= RTT * 6,
        "ssh took {took:?}: the WAN is not in the way"
    );
}

/// Runs the round-trip playbook against a lab; returns its output (checked for whole files).
fn run_steps(lab: &TestLab) -> crate::harness::Output {
    // A folder of its own each run, so `put_new` always puts a new file.
    let remote = tempfile::tempdir_in(lab.dir.path()).unwrap().keep();
    let blob: Vec<u8> = (0..1024 * 1024u32)
        .map(|i| (i * 7 + i / 4096) as u8)
        .collect();
    let case = Case::new(&format!(
        r#"
name: round trips
hosts: lab
steps:
  - {{ id: connect_and_exec, ssh: "true" }}
  - {{ id: exec, ssh: "echo hello" }}
  - {{ id: put_new, sftp_put: {{ src: blob.bin, dest: "{r}/blob.bin" }} }}
  - {{ id: put_same, sftp_put: {{ src: blob.bin, dest: "{r}/blob.bin" }} }}
  - {{ id: get, sftp_get: {{ src: "{r}/blob.bin", dest: "got/{{{{ host.name }}}}/" }} }}
  - {{ id: tcp, tcp: {{ port: "{{{{ host.port }}}}", timeout: 5s }} }}
  - {{ id: http_first, http: {{ url: "http://{{{{ host.address }}}}:{{{{ http_port }}}}/health" }} }}
  - {{ id: http_again, http: {{ url: "http://{{{{ host.address }}}}:{{{{ http_port }}}}/health" }} }}
"#,
        r = remote.display()
    ))
    .inventory_file(lab.inventory());
    std::fs::write(case.path("blob.bin"), &blob).unwrap();
    let out = case.run();
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(std::fs::read(remote.join("blob.bin")).unwrap(), blob);
    assert_eq!(std::fs::read(case.path("got/h01/blob.bin")).unwrap(), blob);
    assert_eq!(out.task("h01", "put_same")["output"]["changed"], false);
    out
}

#[test]
fn every_step_kind_spends_only_the_round_trips_it_needs() {
    let far = TestLab::start_with_rtt(1, RTT);
    let near = TestLab::start(1);
    let mut pairs = vec![(run_steps(&far), run_steps(&near))];

    // Budgets: the round trips each step needs through libssh2 (docs/lab.md, "Round
    // trips"); a step may take one more (CPU on a loaded machine), not two.
    let budgets = [
        // TCP and SSH banners (2), key exchange (1), new keys with the userauth service
        // request (1), the key offered then signed (2: libssh2 always asks first), a session
        // channel (1), exec (1); the output and exit status come with the exec's answer.
        ("connect_and_exec", 8.0),
        // A channel (1) and exec (1) on the open session.
        ("exec", 2.0),
        // SFTP channel, subsystem and version (3), stat of dest (1), exclusive open of the
        // temporary (1), 1 MiB in one flight (1), fsetstat (1), close and rename sent
        // together (1). The listing for stale temporaries (opendir, readdir, readdir to the
        // end) travels with the write, the fsetstat and the close: none of its own.
        ("put_new", 8.0),
        // The SFTP channel is kept: stat (1), and sha256sum of the same-size file on the
        // host: a channel (1), exec (1).
        ("put_same", 3.0),
        // stat (1), open (1), 1 MiB read ahead in one flight (1); the close is sent and its
        // answer taken after the step (every byte wanted has arrived).
        ("get", 3.0),
        // The kernel completes the handshake with the lab's proxy at once (docs/lab.md).
        ("tcp", 0.0),
        // TCP handshake (1), request and response (1).
        ("http_first", 2.0),
        // The pooled connection: one exchange.
        ("http_again", 1.0),
    ];
    // A step over budget is measured once more (a one-off stall of the loaded machine, such
    // as the first TLS roots read from a cold disk, is not a round trip); the fewer counts.
    let mut report = String::new();
    let mut over = Vec::new();
    for (step, budget) in budgets {
        let mut n = f64::INFINITY;
        for attempt in 0..2 {
            if attempt == pairs.len() {
                pairs.push((run_steps(&far), run_steps(&near)));
            }
            let (wan, loopback) = &pairs[attempt];
            let this = (millis(&wan.task("h01", step)) - millis(&loopback.task("h01", step)))
                / RTT.as_millis() as f64;
            n = n.min(this);
            if n <= budget + 1.0 {
                break;
            }
        }
        report.push_str(&format!("{step}: {n:.1} round trips (budget {budget})\n"));
        if n > budget + 1.0 {
            over.push(step);
        }
    }
    eprintln!("{report}");
    assert!(over.is_empty(), "over budget: {over:?}\n{report}");
}

#[test]
fn an_upload_cancelled_with_its_listing_on_the_way_leaves_the_channel_sound() {
    // The put's folder listing is sent ahead and taken between the writes; the folder holds
    // 3,000 files (about 30 readdirs, a round trip each), so a timeout while 16 MiB are still
    // crossing the WAN stops the step with the listing half-way in libssh2's state. The channel is not handed on then; the next SFTP steps on the same session
    // open their own and move whole files, and nothing of the upload is left under its name.
    let lab = TestLab::start_with_rtt(1, Duration::from_millis(200));
    let remote = tempfile::tempdir_in(lab.dir.path()).unwrap().keep();
    std::fs::write(remote.join("small.txt"), "still fine\n").unwrap();
    for i in 0..3000 {
        std::fs::write(remote.join(format!("f{i:04}")), "").unwrap();
    }
    let big: Vec<u8> = (0..16 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let blob: Vec<u8> = (0..300 * 1024u32).map(|i| (i % 253) as u8).collect();
    let case = Case::new(&format!(
        r#"
name: cancelled put
hosts: lab
steps:
  - {{ id: connect, ssh: "true" }}
  - {{ id: slow_put, timeout: 2500ms, ignore_errors: true, sftp_put: {{ src: big.bin, dest: "{r}/big.bin" }} }}
  - {{ id: get, sftp_get: {{ src: "{r}/small.txt", dest: "got/{{{{ host.name }}}}/" }} }}
  - {{ id: put, sftp_put: {{ src: blob.bin, dest: "{r}/blob.bin" }} }}
"#,
        r = remote.display()
    ))
    .inventory_file(lab.inventory());
    std::fs::write(case.path("big.bin"), &big).unwrap();
    std::fs::write(case.path("blob.bin"), &blob).unwrap();
    let out = case.run();
    assert_eq!(out.code, 0, "{}", out.all());
    let slow = out.task("h01", "slow_put");
    assert_eq!(slow["status"], "failed", "{}", out.all());
    assert!(
        slow["error"].to_string().contains("timed out")
            || slow["error"].to_string().contains("timeout"),
        "{slow}"
    );
    assert_eq!(out.task("h01", "get")["status"], "changed", "{}", out.all());
    assert_eq!(
        std::fs::read_to_string(case.path("got/h01/small.txt")).unwrap(),
        "still fine\n"
    );
    assert_eq!(std::fs::read(remote.join("blob.bin")).unwrap(), blob);
    assert!(
        !remote.join("big.bin").exists(),
        "a cancelled upload reached its name"
    );
}
