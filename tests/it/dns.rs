//! The `dns` step against the lab's authoritative DNS server (hickory-server on loopback, zone
//! `lab.test.` and its reverse zones): every record type, reverse lookups, rcodes, TTLs, UDP and
//! TCP, truncation, consistency across two servers, zone transfers, timeouts, and the
//! `playbooks/dns-validate.yml` example against a whole lab.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sortie_lab::dns::{BIG_RECORDS, DnsBlackhole, DnsOptions, DnsServer};

use crate::harness::{Case, Output, TestLab, repo};

const INVENTORY: &str = "groups:\n  probes:\n    hosts:\n      probe: { address: 127.0.0.1 }\n";

fn server() -> DnsServer {
    DnsServer::start(DnsOptions::with_hosts(&[(
        "h01".into(),
        Ipv4Addr::new(127, 64, 9, 1),
    )]))
    .expect("the DNS server starts")
}

/// Runs `steps` (YAML list items, indented by 2) on one host, with `dns` set to the server's
/// address and `dns2` to a second one's.
fn run(dns: &str, dns2: &str, steps: &str) -> Output {
    let playbook = format!(
        "name: dns\nhosts: all\nvars:\n  dns: \"{dns}\"\n  dns2: \"{dns2}\"\nsteps:\n{steps}"
    );
    Case::new(&playbook).inventory(INVENTORY).run()
}

fn output(out: &Output, step: &str) -> Value {
    out.task("probe", step)["output"].clone()
}

#[test]
fn every_record_type_normalised_and_compared_as_sets() {
    let s = server();
    let out = run(
        &s.addr().to_string(),
        "",
        r#"
  - id: a
    dns: { name: www.lab.test, type: A, servers: ["{{ dns }}"] }
    expect: { answers: ["127.0.0.1"], rcode: noerror, authoritative: true }
  - id: aaaa
    dns: { name: ns1.lab.test, type: AAAA, servers: ["{{ dns }}"] }
    expect: { answers: ["2001:DB8:0:0::53"] }
  - id: mx
    dns: { name: lab.test, type: MX, servers: ["{{ dns }}"] }
    expect: { answers: ["20 backup.lab.test", "10 mail.lab.test."] }
  - id: txt
    dns: { name: lab.test, type: TXT, servers: ["{{ dns }}"] }
    expect: { answers: ["v=spf1 ip4:127.0.0.0/8 -all"] }
  - id: multi
    dns: { name: multi.lab.test, type: TXT, servers: ["{{ dns }}"] }
    expect: { answers: ["part onepart two"], txt: [["part one", "part two"]] }
  - id: cname
    dns: { name: alias.lab.test, type: CNAME, servers: ["{{ dns }}"] }
    expect: { answers: ["www.lab.test"], ttl: 60 }
  - id: ns
    dns: { name: lab.test, type: NS, servers: ["{{ dns }}"] }
    expect: { answers: ["ns2.lab.test", "ns1.lab.test"] }
  - id: soa
    dns: { name: lab.test, type: SOA, servers: ["{{ dns }}"] }
    expect: { answers: ["ns1.lab.test hostmaster.lab.test 2024010101 3600 600 86400 300"], serial: 2024010101 }
  - id: ptr
    dns: { name: 1.0.0.127.in-addr.arpa, type: PTR, servers: ["{{ dns }}"] }
    expect: { answers: ["ns1.lab.test."] }
  - id: srv
    dns: { name: _http._tcp.lab.test, type: SRV, servers: ["{{ dns }}"] }
    expect: { answers: ["20 5 8081 backup.lab.test", "10 5 8080 www.lab.test"] }
  - id: caa
    dns: { name: lab.test, type: CAA, servers: ["{{ dns }}"] }
    expect: { answers: { contains: '0 issue "letsencrypt.org"', len: 2 } }
  - id: host
    dns: { name: h01.lab.test, servers: ["{{ dns }}"] }
    expect: { answers: ["127.64.9.1"] }
"#,
    );
    assert_eq!(out.code, 0, "{}", out.all());
    // What a later step or the report sees: normalised text, sorted.
    assert_eq!(
        output(&out, "mx")["answers"],
        json!(["10 mail.lab.test.", "20 backup.lab.test."])
    );
    assert_eq!(output(&out, "aaaa")["answers"], json!(["2001:db8::53"]));
    assert_eq!(
        output(&out, "multi")["answers"],
        json!(["part onepart two"])
    );
    assert_eq!(
        output(&out, "multi")["txt"],
        json!([["part one", "part two"]])
    );
    assert_eq!(
        output(&out, "srv")["answers"],
        json!(["10 5 8080 www.lab.test.", "20 5 8081 backup.lab.test."])
    );
    assert_eq!(
        output(&out, "caa")["answers"],
        json!([
            "0 iodef \"mailto:security@lab.test\"",
            "0 issue \"letsencrypt.org\""
        ])
    );
    assert_eq!(output(&out, "soa")["serial"], json!(2024010101));
    assert_eq!(output(&out, "a")["ttl"], json!(300));
    assert_eq!(output(&out, "a")["rcode"], json!("NOERROR"));
}

#[test]
fn a_wrong_answer_set_fails_with_expected_and_found() {
    let s = server();
    let out = run(
        &s.addr().to_string(),
        "",
        r#"
  - id: mx
    dns: { name: lab.test, type: MX, servers: ["{{ dns }}"] }
    expect: { answers: ["10 mail.lab.test"] }
"#,
    );
    assert_eq!(out.code, 1, "{}", out.all());
    assert_eq!(out.status("probe", "mx"), "failed");
    assert!(
        out.stdout.contains(r#"answers: expected eq ["10 mail.lab.test."], found ["10 mail.lab.test.","20 backup.lab.test."]"#),
        "{}",
        out.all()
    );
}

#[test]
fn reverse_lookups_for_ipv4_and_ipv6() {
    let s = server();
    let out = run(
        &s.addr().to_string(),
        "",
        r#"
  - id: v4
    dns: { reverse: 127.0.0.1, servers: ["{{ dns }}"] }
    expect: { answers: ["ns1.lab.test"] }
  - id: host
    dns: { reverse: 127.64.9.1, servers: ["{{ dns }}"] }
    expect: { answers: ["h01.lab.test."] }
  - id: v6
    dns: { reverse: "2001:db8::53", servers: ["{{ dns }}"] }
    expect: { answers: ["ns1.lab.test."] }
"#,
    );
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(output(&out, "v4")["name"], json!("1.0.0.127.in-addr.arpa."));
    assert_eq!(output(&out, "v4")["type"], json!("PTR"));
    assert!(
        output(&out, "v6")["name"]
            .as_str()
            .unwrap()
            .ends_with(".8.b.d.0.1.0.0.2.ip6.arpa.")
    );
}

#[test]
fn nxdomain_nodata_refused_and_servfail_are_exact() {
    let s = server();
    let out = run(
        &s.addr().to_string(),
        "",
        r#"
  - id: nx
    needs: []
    dns: { name: nope.lab.test, servers: ["{{ dns }}"] }
    expect: { rcode: NXDOMAIN, answers: { len: 0 }, authoritative: true }
  - id: nodata
    needs: []
    dns: { name: www.lab.test, type: MX, servers: ["{{ dns }}"] }
    expect: { rcode: NOERROR, answers: { empty: true } }
  - id: refused
    needs: []
    dns: { name: www.example.com, servers: ["{{ dns }}"] }
    expect: { rcode: REFUSED }
  - id: servfail
    needs: []
    dns: { name: servfail.lab.test, servers: ["{{ dns }}"] }
    expect: { rcode: SERVFAIL }
  - id: default_on_nx
    needs: []
    dns: { name: nope.lab.test, servers: ["{{ dns }}"] }
  - id: default_on_nodata
    needs: []
    dns: { name: www.lab.test, type: MX, servers: ["{{ dns }}"] }
"#,
    );
    assert_eq!(out.code, 1, "{}", out.all());
    for ok in ["nx", "nodata", "refused", "servfail"] {
        assert_eq!(out.status("probe", ok), "ok", "{ok}: {}", out.all());
    }
    // The default expectation (NOERROR with at least one answer) catches both kinds of "nothing".
    assert_eq!(out.status("probe", "default_on_nx"), "failed");
    assert_eq!(
        out.task("probe", "default_on_nx")["message"],
        json!(r#"rcode: expected eq "NOERROR", found "NXDOMAIN""#)
    );
    assert_eq!(out.status("probe", "default_on_nodata"), "failed");
    assert_eq!(
        out.task("probe", "default_on_nodata")["message"],
        json!("len(answers): expected gte 1, found 0")
    );
}

#[test]
fn ttl_bounds_and_the_smallest_ttl_of_a_cname_chain() {
    let s = server();
    let out = run(
        &s.addr().to_string(),
        "",
        r#"
  - id: www
    needs: []
    dns: { name: www.lab.test, servers: ["{{ dns }}"] }
    expect: { ttl: [{ gte: 60 }, { lte: 300 }] }
  - id: short
    needs: []
    dns: { name: short.lab.test, servers: ["{{ dns }}"] }
    expect: { ttl: { lt: 60 } }
  - id: alias
    needs: []
    dns: { name: alias.lab.test, type: A, servers: ["{{ dns }}"] }
    expect: { answers: ["127.0.0.1"], ttl: 60, cname: ["www.lab.test."] }
  - id: too_short
    needs: []
    dns: { name: short.lab.test, servers: ["{{ dns }}"] }
    expect: { ttl: { gte: 300 } }
"#,
    );
    assert_eq!(out.code, 1, "{}", out.all());
    for ok in ["www", "short", "alias"] {
        assert_eq!(out.status("probe", ok), "ok", "{ok}: {}", out.all());
    }
    assert_eq!(
        out.task("probe", "too_short")["message"],
        json!("ttl: expected gte 300, found 5")
    );
}

#[test]
fn udp_tcp_and_the_recursion_bit() {
    let s = server();
    let out = run(
        &s.addr().to_string(),
        "",
        r#"
  - id: udp
    dns: { name: www.lab.test, servers: ["{{ dns }}"] }
    expect: { protocol: udp, truncated: false }
  - id: tcp
    dns: { name: mail.lab.test, protocol: tcp, recursion: false, servers: ["{{ dns }}"] }
    expect: { protocol: tcp, answers: ["127.0.0.25"] }
"#,
    );
    assert_eq!(out.code, 0, "{}", out.all());
    let seen = s.queries();
    let www: Vec<_> = seen.iter().filter(|q| q.name == "www.lab.test.").collect();
    assert_eq!(www.len(), 1, "{seen:?}");
    assert_eq!(
        (www[0].protocol.as_str(), www[0].recursion_desired),
        ("udp", true)
    );
    let mail: Vec<_> = seen.iter().filter(|q| q.name == "mail.lab.test.").collect();
    assert_eq!(mail.len(), 1, "{seen:?}");
    assert_eq!(
        (mail[0].protocol.as_str(), mail[0].recursion_desired),
        ("tcp", false)
    );
}

#[test]
fn a_truncated_udp_answer_is_asked_again_over_tcp() {
    let s = server();
    let out = run(
        &s.addr().to_string(),
        "",
        r#"
  - id: big
    dns: { name: big.lab.test, servers: ["{{ dns }}"] }
    expect: { truncated: true, protocol: tcp, answers: { len: 100, contains: 127.1.0.100 } }
"#,
    );
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(
        output(&out, "big")["answers"].as_array().map(Vec::len),
        Some(BIG_RECORDS as usize)
    );
    let big: Vec<String> = s
        .queries()
        .iter()
        .filter(|q| q.name == "big.lab.test.")
        .map(|q| q.protocol.clone())
        .collect();
    assert_eq!(big, ["udp", "tcp"]);
}

#[test]
fn servers_that_agree_are_consistent_and_servers_that_differ_are_not() {
    let a = server();
    let same = server();
    let differ = DnsServer::start(DnsOptions {
        serial: 2024010102,
        extra: vec!["www 300 IN A 127.0.0.9".into()],
        ..DnsOptions::default()
    })
    .expect("second server");
    let steps = r#"
  - id: www
    needs: []
    dns: { name: www.lab.test, servers: ["{{ dns }}", "{{ dns2 }}"] }
    expect: { consistent: true }
  - id: soa
    needs: []
    dns: { name: lab.test, type: SOA, servers: ["{{ dns }}", "{{ dns2 }}"] }
    expect: { consistent: true }
  - id: mx
    needs: []
    dns: { name: lab.test, type: MX, servers: ["{{ dns }}", "{{ dns2 }}"] }
    expect: { consistent: true }
"#;
    let agree = run(&a.addr().to_string(), &same.addr().to_string(), steps);
    assert_eq!(agree.code, 0, "{}", agree.all());
    let servers = &output(&agree, "www")["servers"];
    assert_eq!(
        servers[a.addr().to_string()]["answers"],
        json!(["127.0.0.1"])
    );
    assert_eq!(
        servers[same.addr().to_string()]["answers"],
        json!(["127.0.0.1"])
    );

    let disagree = run(&a.addr().to_string(), &differ.addr().to_string(), steps);
    assert_eq!(disagree.code, 1, "{}", disagree.all());
    assert_eq!(
        disagree.status("probe", "mx"),
        "ok",
        "same MX on both: {}",
        disagree.all()
    );
    assert_eq!(disagree.status("probe", "www"), "failed");
    assert_eq!(output(&disagree, "www")["consistent"], json!(false));
    // The failure shows both servers' answers.
    let message = disagree.task("probe", "www")["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        message.contains(&format!(r#""{}":["127.0.0.1"]"#, a.addr())),
        "{message}"
    );
    assert!(
        message.contains(&format!(r#""{}":["127.0.0.1","127.0.0.9"]"#, differ.addr())),
        "{message}"
    );
    // SOA: the serials differ.
    let message = disagree.task("probe", "soa")["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        message.contains(r#"{"serial":2024010101}"#)
            && message.contains(r#"{"serial":2024010102}"#),
        "{message}"
    );
    // Per-server expectations name the server.
    // (Keys under `servers` are written as they are: the address, not a template.)
    let out = run(
        &a.addr().to_string(),
        &differ.addr().to_string(),
        &format!(
            r#"
  - id: www
    dns: {{ name: www.lab.test, servers: ["{{{{ dns }}}}", "{{{{ dns2 }}}}"] }}
    expect:
      servers:
        "{differ}": {{ eq: {{ rcode: NOERROR, answers: ["127.0.0.9", "127.0.0.1"], ttl: 300, authoritative: true, truncated: false, protocol: udp }} }}
"#,
            differ = differ.addr()
        ),
    );
    assert_eq!(out.code, 0, "{}", out.all());
}

#[test]
fn axfr_lists_every_record_and_a_refused_transfer_fails_cleanly() {
    let s = server();
    let out = run(
        &s.addr().to_string(),
        "",
        r#"
  - id: zone
    needs: []
    dns: { axfr: lab.test, servers: ["{{ dns }}"] }
    expect:
      records: [{ contains: "www.lab.test A 127.0.0.1" }, { contains: "lab.test. MX 10 mail.lab.test" }]
      count: { gte: 100 }
      serial: 2024010101
  - id: default
    needs: []
    dns: { axfr: lab.test, servers: ["{{ dns }}"] }
  - id: refused
    needs: []
    dns: { axfr: other.test, servers: ["{{ dns }}"] }
  - id: must_refuse
    needs: []
    dns: { axfr: other.test, servers: ["{{ dns }}"] }
    expect: { rcode: REFUSED, records: { len: 0 } }
"#,
    );
    assert_eq!(out.code, 1, "{}", out.all());
    assert_eq!(out.status("probe", "zone"), "ok", "{}", out.all());
    assert_eq!(out.status("probe", "default"), "ok", "{}", out.all());
    assert_eq!(out.status("probe", "must_refuse"), "ok", "{}", out.all());

    // Every record of the zone file, each once (the closing SOA is not listed again).
    let zone = s.options().lab_zone();
    let expected = zone
        .lines()
        .filter(|l| !l.starts_with('$') && !l.trim().is_empty())
        .count();
    let records = output(&out, "zone")["records"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(records.len(), expected, "{records:?}");
    assert_eq!(output(&out, "zone")["count"], json!(expected));
    assert_eq!(
        records[0],
        json!("lab.test. SOA ns1.lab.test. hostmaster.lab.test. 2024010101 3600 600 86400 300")
    );
    for r in [
        "multi.lab.test. TXT part onepart two",
        "_http._tcp.lab.test. SRV 10 5 8080 www.lab.test.",
        "lab.test. CAA 0 issue \"letsencrypt.org\"",
        "alias.lab.test. CNAME www.lab.test.",
        "h01.lab.test. A 127.64.9.1",
        "big.lab.test. A 127.1.0.100",
        "ns1.lab.test. AAAA 2001:db8::53",
    ] {
        assert!(records.contains(&json!(r)), "{r} missing from {records:?}");
    }

    // Refused: a failed step with the rcode, not a crash or an error.
    assert_eq!(out.status("probe", "refused"), "failed");
    let refused = out.task("probe", "refused");
    assert_eq!(
        refused["message"],
        json!(r#"rcode: expected eq "NOERROR", found "REFUSED""#)
    );
    assert!(refused["error"].is_null(), "{refused}");
    assert_eq!(refused["output"]["count"], json!(0));
    assert_eq!(
        refused["output"]["error"],
        json!(format!(
            "{} refused the transfer of other.test. (REFUSED)",
            s.addr()
        ))
    );
}

#[test]
fn axfr_serials_compared_across_servers() {
    let a = server();
    let newer = DnsServer::start(DnsOptions {
        serial: 2024010102,
        ..DnsOptions::default()
    })
    .expect("second server");
    let out = run(
        &a.addr().to_string(),
        &newer.addr().to_string(),
        r#"
  - id: zone
    dns: { axfr: lab.test, servers: ["{{ dns }}", "{{ dns2 }}"] }
    expect: { consistent: true }
"#,
    );
    assert_eq!(out.code, 1, "{}", out.all());
    let servers = &output(&out, "zone")["servers"];
    assert_eq!(servers[a.addr().to_string()]["serial"], json!(2024010101));
    assert_eq!(
        servers[newer.addr().to_string()]["serial"],
        json!(2024010102)
    );
}

#[test]
fn a_server_that_never_answers_hits_the_timeout() {
    let hole = DnsBlackhole::start(Ipv4Addr::LOCALHOST).expect("blackhole");
    let s = server();
    for protocol in ["udp", "tcp"] {
        let started = Instant::now();
        let out = run(
            &hole.addr().to_string(),
            "",
            &format!(
                "\n  - id: q\n    dns: {{ name: www.lab.test, protocol: {protocol}, servers: [\"{{{{ dns }}}}\"], timeout: 1s }}\n"
            ),
        );
        let took = started.elapsed();
        assert_eq!(out.code, 1, "{}", out.all());
        let task = out.task("probe", "q");
        assert_eq!(task["error"]["kind"], json!("timeout"), "{task}");
        assert!(took < Duration::from_secs(5), "{protocol}: took {took:?}");
        assert!(
            (900..3000).contains(&task["duration_ms"].as_u64().unwrap_or(0)),
            "{task}"
        );
    }
    // One answering server and one silent one: the answer is kept, the silent one is named.
    let out = run(
        &s.addr().to_string(),
        &hole.addr().to_string(),
        "\n  - id: q\n    dns: { name: www.lab.test, servers: [\"{{ dns }}\", \"{{ dns2 }}\"], timeout: 1s }\n",
    );
    assert_eq!(out.code, 1, "{}", out.all());
    let task = out.task("probe", "q");
    assert_eq!(task["output"]["answers"], json!(["127.0.0.1"]));
    assert_eq!(task["output"]["consistent"], json!(false));
    let message = task["message"].as_str().unwrap_or("");
    assert_eq!(
        message,
        format!("{} (udp): no answer within 900ms", hole.addr())
    );
}

#[test]
fn the_dns_validation_example_runs_against_the_lab() {
    let lab = TestLab::start(2);
    let out = Case::new(
        &std::fs::read_to_string(repo().join("playbooks/dns-validate.yml")).expect("example"),
    )
    .inventory_file(lab.inventory())
    .run();
    assert_eq!(out.code, 0, "{}", out.all());
    for host in ["h01", "h02"] {
        assert_eq!(out.host_status(host), "ok", "{}", out.all());
    }
    let h02 = lab.lab.ssh.host(1).expect("h02");
    assert_eq!(
        out.task("h02", "forward")["output"]["answers"],
        json!([h02.address.to_string()])
    );
}
