//! `via` on `tcp`, `http` and `dns`: probes run from a host through an SSH session to it.
//! Against the lab's inside network (`sortie_lab::inside`): every sshd lives in a private
//! network namespace where a database, an HTTP(S) API and a DNS server listen, and the runner
//! reaches only the sshds. So a probe that gets an answer there went through the host; the same
//! probe without `via` must fail. Also: a host whose sshd forbids forwarding, one session per
//! via host, a silent address that does not hold up the next probe, and `check`'s diagnostics.

use crate::harness::{Case, Output, TestLab};

fn field(out: &Output, host: &str, step: &str, name: &str) -> serde_json::Value {
    out.task(host, step)["output"][name].clone()
}

#[test]
fn via_host_reaches_what_only_the_hosts_reach_and_direct_probes_do_not() {
    let lab = TestLab::start_with(3, |o| o.with_inside());
    let out = Case::new(
        r#"
name: inside
hosts: lab
steps:
  - id: db
    tcp: { host: db.internal, port: "{{ inside_db_port }}", via: host, read: { line: true } }
    expect: { open: true, response: { contains: "db-ok" } }
  - id: db_direct
    tcp: { host: db.internal, port: "{{ inside_db_port }}" }
    timeout: 5s
    expect: { open: false }
  - id: api
    http: { url: "http://api.internal:{{ inside_http_port }}/health", via: host }
    expect: { status: 200 }
  - id: api_tls
    http:
      url: "https://api.internal:{{ inside_https_port }}/health"
      via: host
      tls: { ca: "{{ lab_ca }}" }
    expect: { status: 200 }
  - id: redirected
    http:
      url: "http://api.internal:{{ inside_http_port }}/redirect-to?url=https://api.internal:{{ inside_https_port }}/health"
      via: host
      tls: { ca: "{{ lab_ca }}" }
    expect: { status: 200, redirects: { len: 1 }, url: { contains: "https://api.internal" } }
  - id: tls_probe
    tcp: { host: api.internal, port: "{{ inside_https_port }}", via: host, tls: { ca: "{{ lab_ca }}" } }
  - id: dns
    dns: { name: db.internal, via: host }
    expect: { rcode: NOERROR, answers: ["127.0.0.1"] }
  - id: dns_listed
    dns: { name: api.internal, servers: ["127.0.0.1:{{ inside_dns_port }}"], via: h02 }
    expect: { answers: ["127.0.0.1"] }
"#,
    )
    .inventory_file(lab.inventory())
    .run();
    assert_eq!(out.code, 0, "{}", out.all());
    for h in ["h01", "h02", "h03"] {
        for step in ["db", "api", "api_tls", "redirected", "tls_probe", "dns"] {
            assert_eq!(
                out.status(h, step),
                "ok",
                "{h} {step}: {}",
                out.task(h, step)
            );
            assert_eq!(field(&out, h, step, "via"), h, "{}", out.task(h, step));
        }
        assert_eq!(field(&out, h, "dns_listed", "via"), "h02");
        // The same database, asked from the runner: the name is not even known here.
        assert_eq!(field(&out, h, "db_direct", "open"), false);
        assert!(field(&out, h, "db_direct", "via").is_null());
        // The via host's resolv.conf names its own resolver.
        assert_eq!(field(&out, h, "dns", "server"), "127.0.0.1:53");
        assert_eq!(field(&out, h, "dns", "protocol"), "tcp");
    }
    // Verified against the lab CA for the name `api.internal`, end to end through h01.
    let tls = field(&out, "h01", "tls_probe", "tls");
    assert_eq!(tls["issuer"], "CN=sortie lab CA", "{tls}");

    // Without `via`, the API and its DNS server are out of reach too.
    let direct = Case::new(
        r#"
name: direct
hosts: h01
steps:
  - id: api
    http: { url: "http://api.internal:{{ inside_http_port }}/health", timeout: 5s }
  - id: dns
    dns: { name: db.internal, servers: ["127.0.0.1:{{ inside_dns_port }}"], protocol: tcp, timeout: 3s }
    needs: []
"#,
    )
    .inventory_file(lab.inventory())
    .run();
    assert_eq!(direct.code, 1, "{}", direct.all());
    assert_eq!(direct.status("h01", "api"), "failed");
    assert_eq!(direct.status("h01", "dns"), "failed");
}

#[test]
fn a_host_that_forbids_forwarding_says_so_and_the_probe_fails_whatever_expect_says() {
    let lab = TestLab::start_with(2, |o| o.with_no_forwarding(&[1]));
    let out = Case::new(
        r#"
name: forwarding
hosts: lab
steps:
  - id: banner
    tcp: { host: 127.0.0.1, port: "{{ banner_port }}", via: host, read: { line: true } }
    expect: { open: false }
  - id: api
    http: { url: "{{ http_url }}/health", via: host }
    needs: []
"#,
    )
    .inventory_file(lab.inventory())
    .run();
    assert_eq!(out.code, 1, "{}", out.all());
    // h01 forwards: the port is open, so `open: false` fails there, on its merits.
    assert_eq!(field(&out, "h01", "banner", "open"), true);
    assert_eq!(out.status("h01", "api"), "ok");
    for step in ["banner", "api"] {
        let t = out.task("h02", step);
        assert_eq!(t["status"], "failed", "{t}");
        let m = t["message"].as_str().unwrap_or_default();
        assert!(m.contains("h02 does not forward connections"), "{m}");
        assert!(m.contains("AllowTcpForwarding no"), "{m}");
    }
    assert_eq!(out.host_status("h02"), "failed");
}

#[test]
fn one_session_per_via_host_and_the_hosts_probed_for_are_not_contacted() {
    let lab = TestLab::start(3);
    let out = Case::new(
        r#"
name: via one
hosts: lab
steps:
  - id: banner
    tcp: { host: 127.0.0.1, port: "{{ banner_port }}", via: h01, read: { line: true } }
    expect: { response: { matches: "^SSH-2.0" } }
  - id: again
    tcp: { host: 127.0.0.1, port: "{{ echo_port }}", via: h01, send: "{{ host.name }}\\n", read: { line: true } }
    expect: { response: { contains: "{{ host.name }}" } }
"#,
    )
    .inventory_file(lab.inventory())
    .run();
    assert_eq!(out.code, 0, "{}", out.all());
    for h in ["h01", "h02", "h03"] {
        assert_eq!(field(&out, h, "banner", "via"), "h01");
    }
    // One login to h01 serves every host's probes (its gateway stays while other hosts use it,
    // even after h01 itself is done); h02 and h03 are never logged in to.
    assert_eq!(lab.lab.ssh.accepted_connections(0).unwrap(), 1);
    assert_eq!(lab.lab.ssh.accepted_connections(1).unwrap(), 0);
    assert_eq!(lab.lab.ssh.accepted_connections(2).unwrap(), 0);
}

#[test]
fn a_silent_address_does_not_hold_up_the_next_probe_nor_the_hosts_commands() {
    let lab = TestLab::start(1);
    let out = Case::new(
        r#"
name: silent
hosts: h01
steps:
  - id: silent
    tcp: { port: "{{ blackhole_port }}", via: host }
    timeout: 2s
    expect: { open: false }
  - id: next
    tcp: { host: 127.0.0.1, port: "{{ banner_port }}", via: host, read: { line: true } }
    expect: { response: { matches: "^SSH-2.0" } }
  - id: closed
    tcp: { host: 127.0.0.1, port: "{{ closed_port }}", via: host }
    expect: { open: false }
  - id: command
    ssh: "echo fine"
    expect: { stdout: "fine" }
"#,
    )
    .inventory_file(lab.inventory())
    .run();
    assert_eq!(out.code, 0, "{}", out.all());
    let closed = field(&out, "h01", "closed", "error");
    assert!(
        closed
            .as_str()
            .unwrap_or_default()
            .contains("h01 could not connect to 127.0.0.1:"),
        "{closed}"
    );
}

#[test]
fn via_mistakes_are_located() {
    let inventory = "hosts:\n  web1: { address: 127.0.0.1 }\n";
    let cases = [
        (
            "- ssh: { cmd: \"true\", via: host }",
            "`ssh` cannot take `via`",
            "1:23",
        ),
        (
            "- udp: { port: 53, via: host }",
            "`udp` cannot take `via`",
            "1:20",
        ),
        (
            "- tcp: { port: 22 }\n  via: host",
            "unknown step key `via`",
            "2:3",
        ),
        (
            "- dns: { name: a.example, protocol: udp, via: host }",
            "`protocol: udp` cannot go `via` a host",
            "1:37",
        ),
        (
            "- tcp: { port: 22, via: bastion }",
            "the inventory has no host `bastion`",
            "1:25",
        ),
    ];
    for (steps, title, at) in cases {
        let playbook = format!("name: p\nhosts: all\nsteps:\n{}\n", indent(steps));
        let out = Case::new(&playbook).inventory(inventory).check();
        assert_eq!(out.code, 3, "{steps}\n{}", out.all());
        assert!(out.stderr.contains(title), "{steps}\n{}", out.stderr);
        // Each step line is indented by two under `steps:`, three lines down.
        let (line, col) = at.split_once(':').unwrap();
        let line: usize = line.parse::<usize>().unwrap() + 3;
        let col: usize = col.parse::<usize>().unwrap() + 2;
        assert!(
            out.stderr.contains(&format!("playbook.yml:{line}:{col}")),
            "{steps}: expected at {line}:{col}\n{}",
            out.stderr
        );
    }
    // A template is rendered per host: no complaint at check time.
    let ok =
        Case::new("name: p\nhosts: all\nsteps:\n  - tcp: { port: 22, via: \"{{ host.name }}\" }\n")
            .inventory(inventory)
            .check();
    assert_eq!(ok.code, 0, "{}", ok.all());
}

fn indent(steps: &str) -> String {
    steps
        .lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The README's connectivity matrix, as written, against the inside network with one host
/// that forwards nothing.
#[test]
fn the_connectivity_example_runs_as_the_readme_shows() {
    let lab = TestLab::start_with(3, |o| o.with_inside().with_no_forwarding(&[2]));
    let example = crate::harness::repo().join("playbooks/connectivity.yml");
    let out = Case::new(&std::fs::read_to_string(example).unwrap())
        .inventory_file(lab.inventory())
        .run();
    assert_eq!(out.code, 1, "{}", out.all());
    assert_eq!(out.host_status("h01"), "ok", "{}", out.all());
    assert_eq!(out.host_status("h02"), "ok", "{}", out.all());
    assert_eq!(out.host_status("h03"), "failed", "{}", out.all());
    let m = out.task("h03", "the database answers from the host")["message"].clone();
    assert!(
        m.to_string().contains("h03 does not forward connections"),
        "{m}"
    );
    assert_eq!(
        out.task("h01", "and from the first host, as a bastion would see it")["output"]["via"],
        "h01"
    );
}

/// The via host's key is checked as for its own steps: a changed key refuses the gateway (the
/// host itself is unreachable for `via: host`; other hosts' probes through it fail, naming it).
#[test]
fn a_via_host_with_a_changed_key_is_refused() {
    let mut lab = TestLab::start(2);
    lab.lab.ssh.regenerate_host_key(1).expect("new key");
    let out = Case::new(
        r#"
name: keys
hosts: lab
steps:
  - id: through
    tcp: { host: 127.0.0.1, port: "{{ banner_port }}", via: h02 }
"#,
    )
    .inventory_file(lab.inventory())
    .run();
    assert_eq!(out.code, 2, "{}", out.all());
    let own = out.task("h02", "through");
    assert_eq!(own["status"], "unreachable", "{own}");
    let other = out.task("h01", "through");
    assert_eq!(other["status"], "failed", "{other}");
    let m = other["message"].as_str().unwrap_or_default();
    assert!(
        m.contains("cannot go via h02") && m.contains("changed"),
        "{m}"
    );
    assert_eq!(lab.lab.ssh.accepted_connections(1).unwrap(), 0);
}
