//! `tcp` dialogs and the `udp` kind against real servers from Debian packages, started by the
//! lab on loopback with configurations of their own (`sortie_lab::daemons`): the example
//! playbooks (`smtp.yml`, `mail-login.yml`, `caches.yml`, `ntp.yml`, `binary-protocol.yml`)
//! pass against the right servers and fail, saying where, against wrong ones (a wrong banner,
//! no STARTTLS, an expired or expiring certificate, plaintext logins allowed, a password
//! demanded, an unsynchronised clock, stratum 16).

use std::net::{IpAddr, Ipv4Addr};

use sortie_lab::daemons;
use sortie_lab::pki::TestPki;
use sortie_lab::tcp::{TcpKind, TcpServer};
use sortie_lab::udp::{UdpKind, UdpServer};

use crate::harness::{Output, finish, repo, sortie_bin};

/// `sortie run playbooks/NAME -e K=V…` with a report.
fn example(name: &str, vars: &[(&str, String)]) -> Output {
    let report = tempfile::NamedTempFile::new().expect("tmp");
    let mut c = std::process::Command::new(sortie_bin());
    c.args(["run", name, "--format", "plain", "--report"])
        .arg(report.path())
        .current_dir(repo().join("playbooks"))
        .env("NO_COLOR", "1");
    for (k, v) in vars {
        c.arg("-e").arg(format!("{k}={v}"));
    }
    finish(c, Some(report.path()))
}

fn pki(dir: &std::path::Path) -> TestPki {
    let ips: [IpAddr; 2] = [
        Ipv4Addr::LOCALHOST.into(),
        Ipv4Addr::new(127, 0, 0, 2).into(),
    ];
    TestPki::generate(&dir.join("pki"), &ips).expect("pki")
}

fn message(out: &Output, step: &str) -> String {
    out.task("localhost", step)["message"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[test]
fn smtp_example_against_aiosmtpd_with_starttls_and_against_wrong_servers() {
    let dir = tempfile::tempdir().expect("tmp");
    let pki = pki(dir.path());
    let ca = pki.path("ca.pem").display().to_string();
    let vars = |port: u16| vec![("smtp_port", port.to_string()), ("ca_file", ca.clone())];

    let good = daemons::smtp(&dir.path().join("smtp"), Some(&pki.server)).expect("aiosmtpd");
    let out = example("smtp.yml", &vars(good.port()));
    assert_eq!(out.code, 0, "{}", out.all());
    let t = out.task("localhost", "smtp");
    let o = &t["output"];
    assert_eq!(o["exchanges"].as_array().map(Vec::len), Some(5), "{t}");
    assert!(
        o["exchanges"][0]["response"]
            .as_str()
            .unwrap_or("")
            .starts_with("220 "),
        "{t}"
    );
    assert_eq!(o["exchanges"][2]["starttls"], true, "{t}");
    assert!(
        o["tls"]["version"]
            .as_str()
            .unwrap_or("")
            .starts_with("TLSv1."),
        "{t}"
    );
    assert_eq!(o["tls"]["subject"], "CN=sortie lab server", "{t}");
    assert!(o["tls"]["days_left"].as_i64().unwrap_or(0) > 30, "{t}");
    assert!(
        o["tls"]["not_after"].as_str().unwrap_or("").ends_with('Z'),
        "{t}"
    );
    drop(good);

    // A server that greets with a refusal.
    let refusing = TcpServer::start_local(TcpKind::Banner("554 5.3.2 no service here\r\n".into()))
        .expect("banner");
    let out = example("smtp.yml", &vars(refusing.port()));
    assert_eq!(out.code, 1, "{}", out.all());
    let m = message(&out, "smtp");
    assert!(
        m.starts_with("exchange 1: response: expected matches \"^220 \""),
        "{m}"
    );

    // STARTTLS not offered.
    let plain = daemons::smtp(&dir.path().join("smtp-plain"), None).expect("aiosmtpd");
    let out = example("smtp.yml", &vars(plain.port()));
    assert_eq!(out.code, 1, "{}", out.all());
    let m = message(&out, "smtp");
    assert!(
        m.starts_with("exchange 2 (`EHLO sortie.invalid`): response: expected matches"),
        "{m}"
    );
    drop(plain);

    // An expired certificate: the upgrade's handshake fails and says why.
    let expired =
        daemons::smtp(&dir.path().join("smtp-expired"), Some(&pki.expired)).expect("aiosmtpd");
    let out = example("smtp.yml", &vars(expired.port()));
    assert_eq!(out.code, 1, "{}", out.all());
    let m = message(&out, "smtp");
    assert!(m.contains("the certificate has expired"), "{m}");
    let t = out.task("localhost", "smtp");
    assert_eq!(
        t["output"]["exchanges"].as_array().map(Vec::len),
        Some(3),
        "{t}"
    );
    drop(expired);

    // A certificate that is valid but expires in ten days.
    let soon = daemons::smtp(&dir.path().join("smtp-soon"), Some(&pki.expiring)).expect("aiosmtpd");
    let out = example("smtp.yml", &vars(soon.port()));
    assert_eq!(out.code, 1, "{}", out.all());
    let m = message(&out, "smtp");
    // Ten days from the certificate's making, counted in whole days from now: 9 or 10
    // depending on the time of day the validity dates were rounded to.
    let found = m
        .strip_prefix("tls[\"days_left\"]: expected gte 30, found ")
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<i64>().ok());
    assert!(matches!(found, Some(9 | 10)), "{m}");
}

#[test]
fn mail_login_example_against_dovecot_refusing_and_allowing_plaintext() {
    let dir = tempfile::tempdir().expect("tmp");
    let pki = pki(dir.path());
    let ca = pki.path("ca.pem").display().to_string();
    let run = |d: &daemons::Dovecot| {
        example(
            "mail-login.yml",
            &[
                ("mail_host", d.daemon.addr().ip().to_string()),
                ("imap_port", d.daemon.port().to_string()),
                ("pop3_port", d.pop3.port().to_string()),
                ("ca_file", ca.clone()),
            ],
        )
    };
    let good = daemons::dovecot(
        &dir.path().join("dovecot"),
        &pki.server,
        &Default::default(),
    )
    .expect("dovecot");
    let out = run(&good);
    assert_eq!(out.code, 0, "{}\n{}", out.all(), good.daemon.log());
    let imap = out.task("localhost", "IMAP refuses a login without TLS");
    assert!(
        imap["output"]["exchanges"][1]["response"]
            .as_str()
            .unwrap_or("")
            .contains("a1 NO"),
        "{imap}"
    );
    assert!(imap["output"]["tls"]["version"].is_string(), "{imap}");
    drop(good);

    let lax = daemons::DovecotOptions {
        refuse_plaintext: false,
        ..Default::default()
    };
    let wrong =
        daemons::dovecot(&dir.path().join("dovecot-lax"), &pki.server, &lax).expect("dovecot");
    let out = run(&wrong);
    assert_eq!(out.code, 1, "{}", out.all());
    let m = message(&out, "IMAP refuses a login without TLS");
    assert!(
        m.starts_with("exchange 1: response: expected contains \"LOGINDISABLED\""),
        "{m}"
    );
    let m = message(&out, "POP3 refuses a login without TLS");
    assert!(
        m.starts_with("exchange 3 (`USER sortie-probe`): response: expected matches \"^-ERR\""),
        "{m}"
    );
}

#[test]
fn caches_example_against_redis_and_memcached() {
    let dir = tempfile::tempdir().expect("tmp");
    let redis = daemons::redis(&dir.path().join("redis"), None).expect("redis");
    let memcached = daemons::memcached(&dir.path().join("memcached")).expect("memcached");
    let out = example(
        "caches.yml",
        &[
            ("redis_port", redis.port().to_string()),
            ("memcached_port", memcached.port().to_string()),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    let stats = out.task("localhost", "memcached reports its stats");
    assert!(
        stats["output"]["exchanges"][0]["response"]
            .as_str()
            .unwrap_or("")
            .ends_with("END\r\n"),
        "{stats}"
    );

    // A Redis that wants a password first, and "memcached" that is really Redis.
    let locked = daemons::redis(&dir.path().join("redis-locked"), Some("s3cret")).expect("redis");
    let out = example(
        "caches.yml",
        &[
            ("redis_port", locked.port().to_string()),
            ("memcached_port", redis.port().to_string()),
        ],
    );
    assert_eq!(out.code, 1, "{}", out.all());
    let m = message(&out, "Redis answers PING");
    assert!(
        m.contains("expected eq \"+PONG\\r\\n\", found \"-NOAUTH"),
        "{m}"
    );
    let m = message(&out, "memcached reports its stats");
    assert!(m.contains("exchange 1 (`stats`): timed out after"), "{m}");
}

#[test]
fn ntp_example_against_chrony_and_an_unsynchronised_server() {
    let dir = tempfile::tempdir().expect("tmp");
    let chrony = daemons::chrony(&dir.path().join("chrony"), Some(10)).expect("chronyd");
    let out = example("ntp.yml", &[("ntp_port", chrony.port().to_string())]);
    assert_eq!(out.code, 0, "{}", out.all());
    let t = out.task("localhost", "NTP answers at a real stratum");
    assert_eq!(t["output"]["length"], 48, "{t}");
    assert_eq!(
        &t["output"]["hex"].as_str().unwrap_or("")[2..4],
        "0a",
        "{t}"
    );

    // chronyd with no source and no local reference, and a responder at stratum 16.
    let unsynced = daemons::chrony(&dir.path().join("chrony-unsynced"), None).expect("chronyd");
    let out = example("ntp.yml", &[("ntp_port", unsynced.port().to_string())]);
    assert_eq!(out.code, 1, "{}", out.all());
    let m = message(&out, "NTP answers at a real stratum");
    assert!(m.starts_with("byte[\"1\"]: expected gte 1, found 0"), "{m}");
    let sixteen = UdpServer::start_local(UdpKind::Ntp { stratum: 16 }).expect("ntp");
    let out = example("ntp.yml", &[("ntp_port", sixteen.port().to_string())]);
    assert_eq!(out.code, 1, "{}", out.all());
    let m = message(&out, "NTP answers at a real stratum");
    assert!(
        m.starts_with("byte[\"1\"]: expected lt 16, found 16"),
        "{m}"
    );
}

#[test]
fn binary_protocol_example_against_the_echo_servers() {
    let echo = TcpServer::start_local(TcpKind::Echo).expect("echo");
    let udp = UdpServer::start_local(UdpKind::Echo).expect("udp echo");
    let closed = sortie_lab::udp::closed_udp_port().expect("port");
    let vars = |tcp: u16| {
        vec![
            ("echo_port", tcp.to_string()),
            ("udp_echo_port", udp.port().to_string()),
            ("udp_closed_port", closed.to_string()),
        ]
    };
    let out = example("binary-protocol.yml", &vars(echo.port()));
    assert_eq!(out.code, 0, "{}", out.all());
    let t = out.task("localhost", "A UDP port nobody serves says so");
    assert_eq!(t["output"]["error"], "port unreachable (ICMP)", "{t}");
    let t = out.task("localhost", "A frame comes back byte for byte");
    assert_eq!(
        t["output"]["exchanges"][0]["send"], "hex:535254010004deadbeef",
        "{t}"
    );

    let banner = TcpServer::start_local(TcpKind::Banner("SSH-2.0-lab\r\n".into())).expect("banner");
    let out = example("binary-protocol.yml", &vars(banner.port()));
    assert_eq!(out.code, 1, "{}", out.all());
    let m = message(&out, "A frame comes back byte for byte");
    assert!(
        m.contains("hex: expected eq \"535254010004deadbeef\", found \"5353482d"),
        "{m}"
    );
}

/// Bytes that arrive in clear text after the answer to STARTTLS are never taken into the TLS
/// session: the upgrade is refused (the STARTTLS command-injection flaw).
#[test]
fn starttls_with_bytes_pending_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let pki = pki(dir.path());
    let server = TcpServer::start_local(TcpKind::Banner(
        "220 ready for TLS\r\n250 injected\r\n".into(),
    ))
    .expect("banner");
    let pb = format!(
        r#"
hosts: all
steps:
  - id: up
    tcp:
      port: {port}
      tls: {{ ca: "{ca}" }}
      timeout: 3s
      dialog:
        - read: {{ line: true }}
          expect: {{ response: {{ matches: "^220 " }} }}
          starttls: true
"#,
        port = server.port(),
        ca = pki.path("ca.pem").display()
    );
    let out = crate::harness::Case::new(&pb).run();
    assert_eq!(out.code, 1, "{}", out.all());
    let m = message(&out, "up");
    assert!(
        m.starts_with(
            "exchange 1: the server sent 14 bytes after its answer and before TLS started"
        ),
        "{m}"
    );
}

/// `udp` waits for as many replies as asked, and tells a silent port from one that answers
/// with ICMP port-unreachable.
#[test]
fn udp_replies_silence_and_unreachable() {
    let echo = UdpServer::start_local(UdpKind::Echo).expect("udp echo");
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let silent_port = silent.local_addr().expect("addr").port();
    let pb = format!(
        r#"
hosts: all
steps:
  - id: echo
    udp: {{ port: {echo}, send: "hello\n", timeout: 2s }}
    expect: {{ response: "hello\n", length: 6, replies: {{ len: 1 }} }}
  - id: two
    udp: {{ port: {echo}, send: "x", replies: 2, timeout: 1s }}
    expect: {{ replies: {{ len: 2 }} }}
  - id: silent
    needs: []
    udp: {{ port: {silent_port}, send: "anyone?", timeout: 1s }}
    expect: {{ open: false, unreachable: false }}
"#,
        echo = echo.port()
    );
    let out = crate::harness::Case::new(&pb).run();
    assert_eq!(out.code, 1, "{}", out.all());
    assert_eq!(out.status("localhost", "echo"), "ok", "{}", out.all());
    assert_eq!(out.status("localhost", "silent"), "ok", "{}", out.all());
    let t = out.task("localhost", "silent");
    assert!(
        t["output"]["error"]
            .as_str()
            .unwrap_or("")
            .starts_with("no reply within"),
        "{t}"
    );
    // One datagram gets one echo: waiting for two ends at the timeout with one.
    let m = message(&out, "two");
    assert!(m.starts_with("len(replies): expected eq 2, found 1"), "{m}");
    drop(silent);
}
