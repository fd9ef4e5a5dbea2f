//! `strategy.limits` (hosts in flight per group) and a step's `throttle` (hosts running that
//! step at once), measured where it matters: at the server, the lab's counter listener, which
//! holds every connection a while and records the most it ever had open at once. Each limit is
//! shown to bite by the same playbook without it going over.

use std::time::Duration;

use crate::harness::Case;

fn lab(hosts: usize) -> (tempfile::TempDir, sortie_lab::Lab) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut options = sortie_lab::LabOptions::for_test(hosts, dir.path().join("lab"));
    // Long enough that hosts started together overlap even on a loaded machine.
    options.counter_hold = Duration::from_millis(600);
    let lab = sortie_lab::Lab::start(options).expect("the lab starts");
    (dir, lab)
}

fn most_open(lab: &sortie_lab::Lab, playbook: &str) -> usize {
    lab.tcp.counter.reset_max_open();
    let out = Case::new(playbook)
        .inventory_file(lab.dir().join("inventory.yml"))
        .run();
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    lab.tcp.counter.max_open()
}

const PROBE: &str =
    r#"{ tcp: { port: "{{ counter_port }}", read: { until: "ok" }, timeout: 10s } }"#;

#[test]
fn a_group_limit_caps_the_hosts_of_that_group_in_flight() {
    let (_dir, lab) = lab(6);
    let free = most_open(
        &lab,
        &format!("name: free\nhosts: lab\nsteps:\n  - {PROBE}\n"),
    );
    assert!(
        free > 2,
        "without a limit the hosts overlap ({free} at once)"
    );
    let limited = most_open(
        &lab,
        &format!(
            "name: limited\nhosts: lab\nstrategy: {{ limits: {{ lab: 2 }} }}\nsteps:\n  - {PROBE}\n  - {PROBE}\n"
        ),
    );
    assert!(
        (1..=2).contains(&limited),
        "{limited} hosts of `lab` at once, limit 2"
    );
}

#[test]
fn a_step_throttle_caps_the_hosts_running_that_step() {
    let (_dir, lab) = lab(8);
    let free = most_open(
        &lab,
        &format!("name: free\nhosts: lab\nsteps:\n  - {PROBE}\n"),
    );
    assert!(
        free > 3,
        "without a throttle the hosts overlap ({free} at once)"
    );
    let throttled = most_open(
        &lab,
        "name: throttled\nhosts: lab\nsteps:\n  - { throttle: 3, tcp: { port: \"{{ counter_port }}\", read: { until: \"ok\" }, timeout: 10s } }\n",
    );
    assert!(
        (1..=3).contains(&throttled),
        "{throttled} hosts ran the step at once, throttle 3"
    );
}

#[test]
fn limits_on_unknown_groups_and_zero_limits_are_located_errors() {
    let inventory = "hosts:\n  a: { address: 127.0.0.1 }\ngroups:\n  web:\n    hosts: [a]\n";
    let out = Case::new(
        "name: p\nhosts: all\nstrategy:\n  limits: { web: 1, lb_pool: 2 }\nsteps:\n  - ssh: \"true\"\n",
    )
    .inventory(inventory)
    .check();
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("`strategy.limits` names group `lb_pool`, which the inventory does not have"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("playbook.yml:4:"), "{}", out.stderr);
    assert!(
        out.stderr.contains("the inventory's groups:"),
        "{}",
        out.stderr
    );

    let out = Case::new(
        "name: p\nhosts: all\nstrategy: { limits: { web: 0 } }\nsteps:\n  - { throttle: 0, ssh: \"true\" }\n",
    )
    .check();
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("a limit of 0 hosts of `web` would run none of them"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("`throttle: 0` would never run the step"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("playbook.yml:5:"), "{}", out.stderr);
}

/// Input built to cost memory: a file past its size limit is refused before it is parsed, at
/// its first line; a play past the step limit at the first step beyond it.
#[test]
fn oversized_files_and_plays_are_refused_at_their_place() {
    let dir = tempfile::tempdir().unwrap();
    let mut big = String::from("name: big\nhosts: all\nsteps:\n");
    while big.len() <= 4 << 20 {
        big.push_str("  - local: \"echo a fairly long line of padding to grow the file\"\n");
    }
    std::fs::write(dir.path().join("big.yml"), &big).unwrap();
    let out = crate::harness::sortie(dir.path(), &["check", "big.yml"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("sortie reads a playbook of at most 4 MiB"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("big.yml:1:1"), "{}", out.stderr);

    let mut inv = String::from("hosts:\n");
    let mut i = 0;
    while inv.len() <= 32 << 20 {
        inv.push_str(&format!(
            "  host{i:08}.a-long-domain-name.example.com: {{ address: 127.0.0.1 }}\n"
        ));
        i += 1;
    }
    std::fs::write(dir.path().join("inv.yml"), &inv).unwrap();
    std::fs::write(dir.path().join("ok.yml"), "steps:\n  - local: \"true\"\n").unwrap();
    let out = crate::harness::sortie(dir.path(), &["check", "ok.yml", "-i", "inv.yml"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("sortie reads an inventory of at most 32 MiB"),
        "{}",
        out.stderr
    );

    let mut many = String::from("name: many\nhosts: all\nsteps:\n");
    for i in 0..10_001 {
        many.push_str(&format!("  - local: \"echo {i}\"\n"));
    }
    std::fs::write(dir.path().join("many.yml"), &many).unwrap();
    let out = crate::harness::sortie(dir.path(), &["check", "many.yml"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("a play of 10001 steps: sortie takes at most 10000 per play"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("many.yml:10004:5"), "{}", out.stderr);
}

/// Template bombs are caught by `check`, where each one is, before any host: a range too long,
/// loops past the fuel, a macro that never ends, a repeat too large. Templates that only
/// need their host's variables pass.
#[test]
fn template_bombs_are_caught_at_check_time() {
    let out = Case::new(
        r#"name: bombs
hosts: all
steps:
  - local: "echo {{ range(10**9) | length }}"
  - local: "echo {% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
  - local: "echo {% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}"
  - local: "echo fine {{ host.name }} {% for h in groups.web %}{{ h }}{% endfor %}"
    when: "(range(100) | list | length) > 0 and host.name != 'x'"
"#,
    )
    .check();
    assert_eq!(out.code, 3, "{}", out.stderr);
    let bombs = out
        .stderr
        .matches("this template does more work than sortie allows")
        .count();
    assert_eq!(bombs, 3, "{}", out.stderr);
    for (line, what) in [
        (4, "range has too many elements"),
        (5, "ran out of fuel"),
        (6, "recursion limit"),
    ] {
        assert!(out.stderr.contains(what), "{what}: {}", out.stderr);
        assert!(
            out.stderr.contains(&format!("playbook.yml:{line}:")),
            "line {line}: {}",
            out.stderr
        );
    }
    assert!(!out.stderr.contains("playbook.yml:7:"), "{}", out.stderr);
}
