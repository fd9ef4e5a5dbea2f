//! `ssh`, `sftp_put` and `sftp_get` against the lab's real sshd hosts: command results, sudo,
//! creates/removes, bounded output, timeouts; host keys (unknown, accept-new, changed), auth
//! (wrong key, agent, encrypted key, password_env right/wrong/unset), hashed known_hosts, refused
//! and silent listeners, jump hosts, ProxyCommand, ~/.ssh/config;
//! transfers across 10 hosts with checksums, unchanged files, an interrupted download,
//! traversal; one session per host; the nightly-logs example.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::Digest;

use crate::harness::{Case, Output, TestLab, repo, sortie_bin};

/// Settings of a test inventory over the lab's hosts.
struct Inv<'a> {
    t: &'a TestLab,
    identity: PathBuf,
    known_hosts: PathBuf,
    checking: &'a str,
    timeout: &'a str,
    /// More lines under `ssh:`.
    extra: String,
    /// (name, lab host index, more inline keys).
    hosts: Vec<(String, usize, String)>,
}

impl<'a> Inv<'a> {
    fn new(t: &'a TestLab) -> Inv<'a> {
        let n = t.lab.ssh.hosts().len();
        Inv {
            t,
            identity: t.lab.ssh.identity_file().to_path_buf(),
            known_hosts: t.lab.ssh.known_hosts(),
            checking: "strict",
            timeout: "5s",
            extra: String::new(),
            hosts: (0..n)
                .map(|i| (format!("h{:02}", i + 1), i, String::new()))
                .collect(),
        }
    }

    fn yaml(&self) -> String {
        let mut s = format!(
            "ssh:\n  user: root\n  identity_file: \"{}\"\n  known_hosts: \"{}\"\n  host_key_checking: {}\n  connect_timeout: {}\n{}",
            self.identity.display(),
            self.known_hosts.display(),
            self.checking,
            self.timeout,
            self.extra
        );
        s.push_str(&format!(
            "vars:\n  lab_dir: \"{}\"\ngroups:\n  lab:\n    hosts:\n",
            self.t.lab.dir().display()
        ));
        for (name, i, more) in &self.hosts {
            let h = &self.t.lab.ssh.hosts()[*i];
            s.push_str(&format!(
                "      {name}: {{ address: \"{}\", port: {}{more} }}\n",
                h.address, h.port
            ));
        }
        s
    }
}

/// A case whose runs see no agent and no ~/.ssh of the machine.
fn case(playbook: &str) -> Case {
    let mut c = Case::new(playbook);
    let home = c.dir.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    c.env.push(("HOME".into(), home.display().to_string()));
    c.env.push(("SSH_AUTH_SOCK".into(), String::new()));
    c
}

fn out(o: &Output, host: &str, step: &str) -> Value {
    o.task(host, step)["output"].clone()
}

fn sha256_file(p: &Path) -> String {
    hex::encode(sha2::Sha256::digest(std::fs::read(p).expect("read")))
}

/// `ssh-keygen -lf` of a public key: its `SHA256:…` fingerprint.
fn keygen_fingerprint(pubkey: &Path) -> String {
    let o = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(pubkey)
        .output()
        .expect("ssh-keygen");
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .nth(1)
        .expect("fingerprint")
        .to_string()
}

fn keygen(path: &Path, passphrase: &str) {
    let st = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            passphrase,
            "-C",
            "sortie-test",
            "-f",
        ])
        .arg(path)
        .status()
        .expect("ssh-keygen");
    assert!(st.success());
}

#[test]
fn exec_results_env_stdin_cwd_and_failures() {
    let t = TestLab::start(2);
    let c = case(
        r#"
name: exec
hosts: all
steps:
  - id: basic
    ssh: "echo out; echo err >&2; id -u"
  - id: shaped
    ssh:
      cmd: 'printf "%s|%s|%s\n" "$GREETING" "$DOLLAR" "$(pwd)"; cat'
      env: { GREETING: "it's \"quoted\"", DOLLAR: "$HOME; rm -rf /nothing" }
      cwd: /tmp
      stdin: "from stdin\nline 2\n"
  - id: rc
    ssh: "echo partial; exit 3"
    ignore_errors: true
  - id: expected
    ssh: "exit 3"
    expect: { rc: 3 }
"#,
    )
    .inventory(&Inv::new(&t).yaml());
    let o = c.run();
    assert_eq!(o.code, 0, "{}", o.all());
    for h in ["h01", "h02"] {
        let b = out(&o, h, "basic");
        assert_eq!(b["rc"], 0);
        assert_eq!(b["stdout"], "out\n0");
        // The PID line sortie uses to stop timed-out commands never shows.
        assert_eq!(b["stderr"], "err");
        let s = out(&o, h, "shaped");
        assert_eq!(
            s["stdout"],
            "it's \"quoted\"|$HOME; rm -rf /nothing|/tmp\nfrom stdin\nline 2"
        );
        assert_eq!(o.status(h, "rc"), "failed");
        assert_eq!(out(&o, h, "rc")["rc"], 3);
        assert_eq!(out(&o, h, "rc")["stdout"], "partial");
        assert_eq!(o.status(h, "expected"), "changed");
    }
}

#[test]
fn sudo_that_is_refused_fails_at_once() {
    let t = TestLab::start(1);
    let c = case(
        r#"
name: sudo
hosts: all
steps:
  - id: sudo
    ssh: { cmd: "echo ran", sudo: nobody-sortie-test }
    timeout: 20s
"#,
    )
    .inventory(&Inv::new(&t).yaml());
    let start = Instant::now();
    let o = c.run();
    // Whether the host has no sudo or sudo refuses the user, `-n` means no prompt: it fails
    // fast, says so, and the command never ran.
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "sudo waited: {}",
        o.all()
    );
    assert_eq!(o.code, 1, "{}", o.all());
    let task = o.task("h01", "sudo");
    assert_eq!(task["status"], "failed");
    let msg = task["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("sudo refused") && msg.contains("NOPASSWD"),
        "{msg}"
    );
    assert_ne!(task["output"]["stdout"], "ran");
}

#[test]
fn creates_and_removes_are_tested_on_the_host() {
    let t = TestLab::start(1);
    let marker = t.lab.dir().join("made-by-step");
    let c = case(&format!(
        r#"
name: creates
hosts: all
steps:
  - id: exists
    ssh: {{ cmd: "echo should not run", creates: /etc/passwd }}
  - id: missing
    ssh: {{ cmd: "echo should not run", removes: "{lab}/no-such-file" }}
  - id: make
    ssh: {{ cmd: "touch {m}", creates: "{m}" }}
  - id: again
    ssh: {{ cmd: "echo should not run", creates: "{m}" }}
"#,
        lab = t.lab.dir().display(),
        m = marker.display()
    ))
    .inventory(&Inv::new(&t).yaml());
    let o = c.run();
    assert_eq!(o.code, 0, "{}", o.all());
    assert_eq!(o.status("h01", "exists"), "ok");
    assert!(
        o.task("h01", "exists")["message"]
            .as_str()
            .unwrap_or("")
            .contains("exists")
    );
    assert_eq!(o.status("h01", "missing"), "ok");
    assert_eq!(o.status("h01", "make"), "changed");
    assert!(marker.exists());
    assert_eq!(o.status("h01", "again"), "ok");
}

#[test]
fn big_output_is_bounded_and_the_rest_counted() {
    let t = TestLab::start(1);
    let c = case(
        r#"
name: big
hosts: all
steps:
  - id: big
    ssh: "head -c 3000000 /dev/zero | tr '\\0' x; seq 1 300000 >&2"
"#,
    )
    .inventory(&Inv::new(&t).yaml());
    let o = c.run();
    assert_eq!(o.code, 0, "{}", o.all());
    let b = out(&o, "h01", "big");
    assert_eq!(b["stdout"].as_str().map(str::len), Some(1 << 20));
    assert_eq!(b["stdout_truncated_bytes"], 3_000_000 - (1 << 20));
    let seq_len: u64 = (1..=300000u64)
        .map(|n| n.to_string().len() as u64 + 1)
        .sum();
    assert_eq!(b["stderr_truncated_bytes"], seq_len - (1 << 20));
}

#[test]
fn a_timeout_closes_the_channel_and_stops_the_command() {
    let t = TestLab::start(1);
    let marker = t.lab.dir().join("should-not-exist");
    let c = case(&format!(
        r#"
name: timeout
hosts: all
steps:
  - id: slow
    ssh: "sleep 3; touch {m}"
    timeout: 500ms
    ignore_errors: true
  - id: after
    ssh: "echo same session"
"#,
        m = marker.display()
    ))
    .inventory(&Inv::new(&t).yaml());
    let o = c.run();
    assert_eq!(o.code, 0, "{}", o.all());
    let slow = o.task("h01", "slow");
    assert_eq!(slow["status"], "failed");
    assert_eq!(slow["error"]["kind"], "timeout");
    assert!(slow["duration_ms"].as_u64().unwrap_or(0) < 2000, "{slow}");
    assert_eq!(out(&o, "h01", "after")["stdout"], "same session");
    // The command's process group got TERM: it never reaches `touch`.
    std::thread::sleep(Duration::from_millis(3500));
    assert!(!marker.exists(), "the timed-out command kept running");
    assert_eq!(t.lab.ssh.accepted_connections(0).expect("log"), 1);
}

#[test]
fn unknown_key_strict_refuses_accept_new_records_then_strict_passes() {
    let t = TestLab::start(2);
    let kh = t.dir.path().join("empty_known_hosts");
    std::fs::write(&kh, "").expect("write");
    let pb = "name: keys\nhosts: all\nsteps:\n  - id: s\n    ssh: \"true\"\n";
    let mut inv = Inv::new(&t);
    inv.known_hosts = kh.clone();
    let o = case(pb).inventory(&inv.yaml()).run();
    assert_eq!(o.code, 2, "{}", o.all());
    for (i, h) in ["h01", "h02"].iter().enumerate() {
        let task = o.task(h, "s");
        assert_eq!(task["status"], "unreachable");
        let fp = keygen_fingerprint(&t.lab.ssh.hosts()[i].host_key.with_extension("pub"));
        let msg = task["message"].as_str().unwrap_or("");
        assert!(msg.contains("unknown") && msg.contains(&fp), "{msg} / {fp}");
        assert!(
            task["error"]["help"]
                .as_str()
                .unwrap_or("")
                .contains("accept-new")
        );
    }
    assert!(o.stdout.contains("SHA256:"), "{}", o.all());
    assert_eq!(std::fs::read_to_string(&kh).expect("read"), "");

    inv.checking = "accept-new";
    let o = case(pb).inventory(&inv.yaml()).run();
    assert_eq!(o.code, 0, "{}", o.all());
    let recorded = std::fs::read_to_string(&kh).expect("read");
    assert_eq!(recorded.lines().count(), 2, "{recorded}");
    for h in t.lab.ssh.hosts() {
        assert!(
            recorded.contains(&format!("[{}]:{} ssh-ed25519 ", h.address, h.port)),
            "{recorded}"
        );
    }

    inv.checking = "strict";
    let o = case(pb).inventory(&inv.yaml()).run();
    assert_eq!(o.code, 0, "{}", o.all());
}

#[test]
fn a_changed_key_is_always_refused() {
    let mut t = TestLab::start(1);
    let kh = t.dir.path().join("kh");
    std::fs::copy(t.lab.ssh.known_hosts(), &kh).expect("copy");
    t.lab.ssh.regenerate_host_key(0).expect("new key");
    let pb = "name: keys\nhosts: all\nsteps:\n  - id: s\n    ssh: \"true\"\n";
    for checking in ["strict", "accept-new"] {
        let mut inv = Inv::new(&t);
        inv.known_hosts = kh.clone();
        inv.checking = checking;
        let before = std::fs::read_to_string(&kh).expect("read");
        let o = case(pb).inventory(&inv.yaml()).run();
        assert_eq!(o.code, 2, "{checking}: {}", o.all());
        let task = o.task("h01", "s");
        assert_eq!(task["error"]["kind"], "host_key");
        let msg = task["message"].as_str().unwrap_or("");
        let fp = keygen_fingerprint(&t.lab.ssh.hosts()[0].host_key.with_extension("pub"));
        assert!(msg.contains("changed") && msg.contains(&fp), "{msg}");
        assert!(
            task["error"]["help"]
                .as_str()
                .unwrap_or("")
                .contains("ssh-keygen -R")
        );
        assert_eq!(
            std::fs::read_to_string(&kh).expect("read"),
            before,
            "a changed key was recorded"
        );
    }
}

/// known_hosts holds only a key of another type for the host (ecdsa; the server has
/// ed25519): the host is unreachable with both keys named, as OpenSSH names them — not a bare
/// "Unable to exchange encryption keys".
#[test]
fn a_known_key_of_another_type_names_both_keys() {
    let t = TestLab::start(1);
    let other = t.dir.path().join("other_ecdsa");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ecdsa", "-N", "", "-f"])
        .arg(&other)
        .status()
        .expect("ssh-keygen");
    assert!(made.success());
    let h = &t.lab.ssh.hosts()[0];
    let pubkey = std::fs::read_to_string(other.with_extension("pub")).expect("pub");
    let key: Vec<&str> = pubkey.split_whitespace().take(2).collect();
    let kh = t.dir.path().join("kh");
    std::fs::write(
        &kh,
        format!("[{}]:{} {}\n", h.address, h.port, key.join(" ")),
    )
    .expect("kh");
    let mut inv = Inv::new(&t);
    inv.known_hosts = kh.clone();
    let o = case("name: keys\nhosts: all\nsteps:\n  - id: s\n    ssh: \"true\"\n")
        .inventory(&inv.yaml())
        .run();
    assert_eq!(o.code, 2, "{}", o.all());
    let task = o.task("h01", "s");
    assert_eq!(task["error"]["kind"], "host_key");
    let msg = task["message"].as_str().unwrap_or("");
    let server = keygen_fingerprint(&h.host_key.with_extension("pub"));
    let known = keygen_fingerprint(&other.with_extension("pub"));
    assert!(
        msg.contains(&format!("ssh-ed25519 {server}"))
            && msg.contains(&format!("ecdsa-sha2-nistp256 {known}"))
            && msg.contains("another type"),
        "{msg}"
    );
    assert!(!msg.contains("Unable to exchange"), "{msg}");
}

#[test]
fn a_key_the_server_does_not_know_is_an_auth_failure() {
    let t = TestLab::start(1);
    let key = t.dir.path().join("stranger");
    keygen(&key, "");
    let mut inv = Inv::new(&t);
    inv.identity = key.clone();
    let o = case("name: auth\nhosts: all\nsteps:\n  - id: s\n    ssh: \"true\"\n")
        .inventory(&inv.yaml())
        .run();
    assert_eq!(o.code, 2, "{}", o.all());
    let task = o.task("h01", "s");
    assert_eq!(task["status"], "unreachable");
    assert_eq!(task["error"]["kind"], "auth");
    let msg = task["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("authentication failed for root@") && msg.contains(&key.display().to_string()),
        "{msg}"
    );
}

#[test]
fn an_encrypted_key_opens_with_passphrase_env() {
    let t = TestLab::start(1);
    let key = t.dir.path().join("locked");
    keygen(&key, "open sesame");
    let pubkey = std::fs::read_to_string(key.with_extension("pub")).expect("pub");
    let auth = t.lab.dir().join("authorized_keys");
    let mut keys = std::fs::read_to_string(&auth).expect("authorized_keys");
    keys.push_str(&pubkey);
    std::fs::write(&auth, keys).expect("write");
    let mut inv = Inv::new(&t);
    inv.identity = key;
    inv.extra = "  passphrase_env: SORTIE_TEST_PASSPHRASE\n".into();
    let pb = "name: auth\nhosts: all\nsteps:\n  - id: s\n    ssh: \"echo in\"\n";
    let o = case(pb).inventory(&inv.yaml()).run();
    assert_eq!(o.code, 2, "{}", o.all());
    assert!(
        o.task("h01", "s")["message"]
            .as_str()
            .unwrap_or("")
            .contains("SORTIE_TEST_PASSPHRASE"),
        "{}",
        o.all()
    );
    let mut c = case(pb).inventory(&inv.yaml());
    c.env
        .push(("SORTIE_TEST_PASSPHRASE".into(), "open sesame".into()));
    let o = c.run();
    assert_eq!(o.code, 0, "{}", o.all());
    assert_eq!(out(&o, "h01", "s")["stdout"], "in");
}

#[test]
fn ssh_agent_logs_in_when_no_key_is_named() {
    let t = TestLab::start(1);
    let sock = t.dir.path().join("agent.sock");
    let mut agent = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("ssh-agent");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let added = Command::new("ssh-add")
        .arg(t.lab.ssh.identity_file())
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .expect("ssh-add");
    let mut inv = Inv::new(&t);
    inv.identity = t.dir.path().join("not-a-key");
    let yaml = inv.yaml().replace(
        &format!("  identity_file: \"{}\"\n", inv.identity.display()),
        "",
    );
    let mut c = case("name: agent\nhosts: all\nsteps:\n  - id: s\n    ssh: \"echo agent\"\n")
        .inventory(&yaml);
    c.env.retain(|(k, _)| k != "SSH_AUTH_SOCK");
    c.env
        .push(("SSH_AUTH_SOCK".into(), sock.display().to_string()));
    let o = c.run();
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    assert_eq!(o.code, 0, "{}", o.all());
    assert_eq!(out(&o, "h01", "s")["stdout"], "agent");
}

#[test]
fn refused_and_silent_listeners_are_unreachable_within_the_connect_timeout() {
    let t = TestLab::start(1);
    let inv = format!(
        "ssh:\n  user: root\n  identity_file: \"{id}\"\n  known_hosts: \"{kh}\"\n  connect_timeout: 1s\ngroups:\n  g:\n    hosts:\n      refused: {{ address: 127.0.0.1, port: {closed} }}\n      blackhole: {{ address: 127.0.0.1, port: {hole} }}\n      mute: {{ address: 127.0.0.1, port: {open} }}\n",
        id = t.lab.ssh.identity_file().display(),
        kh = t.lab.ssh.known_hosts().display(),
        closed = t.lab.tcp.closed_port,
        hole = t.lab.tcp.blackhole.port(),
        open = t.lab.tcp.open.port(),
    );
    let start = Instant::now();
    let o = case("name: dead\nhosts: all\nsteps:\n  - id: s\n    ssh: \"true\"\n")
        .inventory(&inv)
        .run();
    assert!(start.elapsed() < Duration::from_secs(6), "{}", o.all());
    assert_eq!(o.code, 2, "{}", o.all());
    for h in ["refused", "blackhole", "mute"] {
        let task = o.task(h, "s");
        assert_eq!(task["status"], "unreachable", "{h}");
        assert_eq!(task["error"]["kind"], "connect", "{h}");
    }
    assert!(
        o.task("refused", "s")["message"]
            .as_str()
            .unwrap_or("")
            .contains("refused"),
        "{}",
        o.all()
    );
    // A SYN that is never answered, and a listener that accepts but never says `SSH-2.0`.
    assert!(
        o.task("blackhole", "s")["message"]
            .as_str()
            .unwrap_or("")
            .contains("connect_timeout"),
        "{}",
        o.all()
    );
    assert!(
        o.task("mute", "s")["message"]
            .as_str()
            .unwrap_or("")
            .contains("connect_timeout"),
        "{}",
        o.all()
    );
}

#[test]
fn jump_hosts_by_inventory_name_and_by_address() {
    let t = TestLab::start(3);
    let h1 = &t.lab.ssh.hosts()[0];
    let mut inv = Inv::new(&t);
    inv.hosts[1].2 = ", jump: h01".into();
    inv.hosts[2].2 = format!(", jump: \"root@{}:{}\"", h1.address, h1.port);
    let c = case("name: jump\nhosts: h02:h03\nsteps:\n  - id: s\n    ssh: \"echo through\"\n  - id: t\n    ssh: \"echo again\"\n")
        .inventory(&inv.yaml());
    let o = c.run();
    assert_eq!(o.code, 0, "{}", o.all());
    assert_eq!(out(&o, "h02", "s")["stdout"], "through");
    assert_eq!(out(&o, "h03", "t")["stdout"], "again");
    // h01 was only ever a jump host: one login for each host behind it.
    assert_eq!(t.lab.ssh.accepted_connections(0).expect("log"), 2);
    assert_eq!(t.lab.ssh.accepted_connections(1).expect("log"), 1);
    assert_eq!(t.lab.ssh.accepted_connections(2).expect("log"), 1);
}

#[test]
fn a_dead_jump_host_makes_the_host_unreachable() {
    let mut t = TestLab::start(2);
    t.lab.ssh.kill_host(0).expect("kill");
    let mut inv = Inv::new(&t);
    inv.hosts[1].2 = ", jump: h01".into();
    let o = case("name: jump\nhosts: h02\nsteps:\n  - id: s\n    ssh: \"true\"\n")
        .inventory(&inv.yaml())
        .run();
    assert_eq!(o.code, 2, "{}", o.all());
    assert_eq!(o.task("h02", "s")["error"]["kind"], "connect");
}

#[test]
fn ssh_config_gives_hostname_port_user_key_known_hosts_and_proxyjump() {
    let t = TestLab::start(3);
    let (a, b, c3) = (
        &t.lab.ssh.hosts()[0],
        &t.lab.ssh.hosts()[1],
        &t.lab.ssh.hosts()[2],
    );
    let fresh_kh = t.dir.path().join("fresh_known_hosts");
    let config = format!(
        "Host web1\n  HostName {a}\n  Port {p}\n  User root\n  IdentityFile {id}\n  UserKnownHostsFile {kh}\n\
         Host web2\n  HostName {b}\n  Port {p}\n  User root\n  IdentityFile {id}\n  UserKnownHostsFile {kh}\n  ProxyJump web1\n\
         Host web3\n  HostName {c}\n  Port {p}\n  User root\n  IdentityFile {id}\n  UserKnownHostsFile {fresh}\n  StrictHostKeyChecking accept-new\n",
        a = a.address,
        b = b.address,
        c = c3.address,
        p = a.port,
        id = t.lab.ssh.identity_file().display(),
        kh = t.lab.ssh.known_hosts().display(),
        fresh = fresh_kh.display(),
    );
    let c = case("name: cfg\nhosts: all\nsteps:\n  - id: s\n    ssh: \"echo configured\"\n")
        .inventory("groups:\n  web:\n    hosts:\n      web1: {}\n      web2: {}\n      web3: {}\n");
    let ssh_dir = c.dir.path().join("home/.ssh");
    std::fs::create_dir_all(&ssh_dir).expect("mkdir");
    std::fs::write(ssh_dir.join("config"), config).expect("config");
    let o = c.run();
    assert_eq!(o.code, 0, "{}", o.all());
    for h in ["web1", "web2", "web3"] {
        assert_eq!(out(&o, h, "s")["stdout"], "configured");
    }
    assert_eq!(
        t.lab.ssh.accepted_connections(0).expect("log"),
        2,
        "web1 directly and as web2's jump"
    );
    assert!(
        std::fs::read_to_string(&fresh_kh)
            .expect("accept-new wrote it")
            .contains(&format!("[{}]:{}", c3.address, c3.port))
    );
}

/// Files to send: a tree, a glob's worth, and one of a few hundred KiB.
fn local_files(c: &Case) {
    let base = c.dir.path().join("files");
    std::fs::create_dir_all(base.join("site/css/deep")).expect("mkdir");
    std::fs::write(base.join("site/index.html"), "<h1>hi</h1>\n").expect("w");
    std::fs::write(base.join("site/css/a.css"), "body{}\n").expect("w");
    std::fs::write(base.join("site/css/deep/b.css"), "p{}\n").expect("w");
    std::fs::create_dir_all(base.join("conf")).expect("mkdir");
    for i in 0..4 {
        std::fs::write(base.join(format!("conf/{i}.conf")), format!("n={i}\n")).expect("w");
    }
    std::fs::write(base.join("conf/skip.txt"), "no").expect("w");
    let blob: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(base.join("blob.bin"), blob).expect("w");
}

#[test]
fn put_and_get_files_dirs_and_globs_across_ten_hosts() {
    let t = TestLab::start(10);
    let pb = r#"
name: transfer
hosts: all
steps:
  - id: tree
    sftp_put: { src: files/site, dest: "{{ lab_dir }}/remote/{{ host.name }}/", mkdir: true }
  - id: glob
    sftp_put: { src: "files/conf/*.conf", dest: "{{ lab_dir }}/remote/{{ host.name }}/conf/", mkdir: true, mode: "0600" }
  - id: blob
    sftp_put: { src: files/blob.bin, dest: "{{ lab_dir }}/remote/{{ host.name }}/blob.bin" }
  - id: inline
    sftp_put: { content: "host={{ host.name }}", dest: "{{ lab_dir }}/remote/{{ host.name }}/host.txt" }
  - id: rendered
    sftp_put: { template: files/app.conf.j2, dest: "{{ lab_dir }}/remote/{{ host.name }}/" }
  - id: back_tree
    sftp_get: { src: "{{ lab_dir }}/remote/{{ host.name }}/", dest: "back/{{ host.name }}", recursive: true }
  - id: back_glob
    sftp_get: { src: "{{ lab_dir }}/remote/{{ host.name }}/*/*.conf", dest: "globbed/{{ host.name }}" }
"#;
    let c = case(pb).inventory(&Inv::new(&t).yaml()).file(
        "files/app.conf.j2",
        "name={{ host.name }}\nport={{ 8000 + 1 }}\n",
    );
    local_files(&c);
    let o = c.run();
    assert_eq!(o.code, 0, "{}", o.all());
    let files = c.dir.path().join("files");
    for (i, h) in t.lab.ssh.hosts().iter().enumerate() {
        let name = &h.name;
        let remote = t.lab.dir().join("remote").join(name);
        // What was sent is on the host, byte for byte, with the reported checksums.
        for (local, rel) in [
            ("site/index.html", "site/index.html"),
            ("site/css/deep/b.css", "site/css/deep/b.css"),
            ("conf/3.conf", "conf/3.conf"),
            ("blob.bin", "blob.bin"),
        ] {
            assert_eq!(
                sha256_file(&files.join(local)),
                sha256_file(&remote.join(rel)),
                "{name} {rel}"
            );
        }
        assert!(!remote.join("conf/skip.txt").exists());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(remote.join("conf/0.conf"))
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            std::fs::read_to_string(remote.join("host.txt")).expect("r"),
            format!("host={name}")
        );
        assert_eq!(
            std::fs::read_to_string(remote.join("app.conf")).expect("r"),
            format!("name={name}\nport=8001\n")
        );
        let blob = out(&o, name, "blob");
        assert_eq!(
            blob["files"][0]["sha256"],
            sha256_file(&files.join("blob.bin"))
        );
        assert_eq!(blob["bytes"], 300_000);
        assert_eq!(
            out(&o, name, "glob")["files"].as_array().map(Vec::len),
            Some(4)
        );
        // What came back is the same again, in the host's own folder.
        let back = c.dir.path().join("back").join(name);
        let got = out(&o, name, "back_tree");
        let listed = got["files"].as_array().expect("files");
        assert_eq!(listed.len(), 3 + 4 + 3, "{got}");
        for f in listed {
            let local = PathBuf::from(f["local"].as_str().expect("local"));
            assert!(
                local.starts_with(c.dir.path().join("back").join(name))
                    || local.starts_with(Path::new("back").join(name)),
                "{local:?}"
            );
            let local = if local.is_absolute() {
                local
            } else {
                c.dir.path().join(local)
            };
            assert_eq!(f["sha256"], sha256_file(&local));
        }
        assert_eq!(
            sha256_file(&back.join("blob.bin")),
            sha256_file(&files.join("blob.bin"))
        );
        assert_eq!(
            sha256_file(&back.join("site/css/deep/b.css")),
            sha256_file(&files.join("site/css/deep/b.css"))
        );
        let globbed = c.dir.path().join("globbed").join(name).join("conf/2.conf");
        assert_eq!(std::fs::read_to_string(globbed).expect("r"), "n=2\n");
        // No temporary names stay behind on either side.
        let leftovers = Command::new("find")
            .arg(&remote)
            .arg(c.dir.path().join("back"))
            .args(["-name", "*.part", "-o", "-name", ".*.tmp"])
            .output()
            .expect("find");
        assert!(
            leftovers.stdout.is_empty(),
            "{}",
            String::from_utf8_lossy(&leftovers.stdout)
        );
        assert_eq!(t.lab.ssh.accepted_connections(i).expect("log"), 1);
    }

    // Again: nothing is sent or fetched.
    let o = c.run();
    assert_eq!(o.code, 0, "{}", o.all());
    for h in t.lab.ssh.hosts() {
        for step in [
            "tree",
            "glob",
            "blob",
            "inline",
            "rendered",
            "back_tree",
            "back_glob",
        ] {
            assert_eq!(
                o.status(&h.name, step),
                "ok",
                "{} {step}: {}",
                h.name,
                o.all()
            );
            let r = out(&o, &h.name, step);
            assert_eq!(r["bytes"], 0, "{step}");
            assert!(
                r["files"]
                    .as_array()
                    .expect("files")
                    .iter()
                    .all(|f| f["changed"] == false),
                "{r}"
            );
        }
    }
}

#[test]
fn a_file_that_differs_is_replaced_atomically_and_a_mode_change_is_a_change() {
    let t = TestLab::start(1);
    let target = t.lab.dir().join("replace.txt");
    std::fs::write(&target, "old contents\n").expect("w");
    let pb = format!(
        "name: r\nhosts: all\nsteps:\n  - id: put\n    sftp_put: {{ content: \"new contents\\n\", dest: \"{}\", mode: \"0640\" }}\n",
        target.display()
    );
    let c = case(&pb).inventory(&Inv::new(&t).yaml());
    let o = c.run();
    assert_eq!(o.code, 0, "{}", o.all());
    assert_eq!(o.status("h01", "put"), "changed");
    assert_eq!(
        std::fs::read_to_string(&target).expect("r"),
        "new contents\n"
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let o = c.run();
    assert_eq!(o.status("h01", "put"), "changed", "{}", o.all());
    assert_eq!(out(&o, "h01", "put")["bytes"], 0);
    assert_eq!(
        std::fs::metadata(&target).expect("m").permissions().mode() & 0o777,
        0o640
    );
    let o = c.run();
    assert_eq!(o.status("h01", "put"), "ok");
}

#[test]
fn an_interrupted_get_leaves_no_file_under_its_final_name() {
    let mut t = TestLab::start(1);
    let big = t.lab.dir().join("big.bin");
    // Sparse: costs no disk, still streams 256 MiB through the session.
    std::fs::File::create(&big)
        .expect("create")
        .set_len(256 << 20)
        .expect("len");
    let c = case(&format!(
        "name: get\nhosts: all\nsteps:\n  - id: get\n    sftp_get: {{ src: \"{}\", dest: \"got/{{{{ host.name }}}}\" }}\n",
        big.display()
    ))
    .inventory(&Inv::new(&t).yaml());
    let report = c.dir.path().join("report.json");
    let mut cmd = Command::new(sortie_bin());
    cmd.arg("run")
        .arg(&c.playbook)
        .arg("-i")
        .arg(&c.inventory[0])
        .args(["--format", "plain", "--report"])
        .arg(&report);
    cmd.current_dir(c.dir.path())
        .envs(c.env.iter().map(|(k, v)| (k, v)));
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().expect("sortie");
    // The temporary's name is random: `.big.bin.sortie-KEY-RAND.part`.
    let got = c.dir.path().join("got/h01");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut part = None;
    while Instant::now() < deadline {
        part = temporaries(&got, ".big.bin.sortie-").into_iter().next();
        if part
            .as_ref()
            .is_some_and(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0) >= 1 << 20)
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let part = part.expect("a temporary file was being written");
    let seen = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    t.lab.ssh.kill_host_and_sessions(0).expect("kill");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        seen > 0 && seen < (256 << 20),
        "the transfer was not caught in the middle ({seen} bytes)"
    );
    let status = status.expect("sortie ended after its server died");
    let report_text = std::fs::read_to_string(&report).unwrap_or_default();
    assert_eq!(status.code(), Some(2), "{report_text}");
    assert!(
        !c.dir.path().join("got/h01/big.bin").exists(),
        "a partial file got its final name"
    );
    assert!(!part.exists(), "the partial file was left behind");
    assert!(temporaries(&got, ".").is_empty(), "no temporary is left");
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
    let task = &r["plays"][0]["hosts"][0]["tasks"][0];
    assert_eq!(task["status"], "unreachable", "{task}");
    assert!(
        task["message"].as_str().unwrap_or("").contains("lost"),
        "{task}"
    );
}

/// The files in `dir` whose names start with `prefix` and end in `.part`.
pub(crate) fn temporaries(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    let n = p.file_name().map(|n| n.to_string_lossy().to_string());
                    n.is_some_and(|n| n.starts_with(prefix) && n.ends_with(".part"))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[test]
fn a_get_never_writes_outside_its_dest() {
    let t = TestLab::start(1);
    let remote = t.lab.dir().join("tree");
    std::fs::create_dir_all(remote.join("sub")).expect("mkdir");
    std::fs::write(remote.join("sub/secret.txt"), "s").expect("w");
    std::fs::write(remote.join("top.txt"), "t").expect("w");
    let c = case(&format!(
        "name: get\nhosts: all\nsteps:\n  - id: get\n    sftp_get: {{ src: \"{}/\", dest: \"got/{{{{ host.name }}}}\", recursive: true }}\n",
        remote.display()
    ))
    .inventory(&Inv::new(&t).yaml());
    // A symlink planted in dest would lead the write elsewhere.
    let outside = c.dir.path().join("outside");
    std::fs::create_dir_all(&outside).expect("mkdir");
    std::fs::create_dir_all(c.dir.path().join("got/h01")).expect("mkdir");
    std::os::unix::fs::symlink(&outside, c.dir.path().join("got/h01/sub")).expect("symlink");
    let o = c.run();
    assert_eq!(o.code, 1, "{}", o.all());
    let task = o.task("h01", "get");
    assert_eq!(task["status"], "failed");
    assert!(
        task["message"].as_str().unwrap_or("").contains("symlink"),
        "{task}"
    );
    assert!(
        std::fs::read_dir(&outside).expect("ls").next().is_none(),
        "something was written outside dest"
    );
}

#[test]
fn hosts_waiting_on_their_commands_hold_no_thread_each() {
    // Every host's command sleeps at once: with a thread per host in flight the runner would
    // grow one per host; awaited on the reactor, the runtime's few threads carry them all.
    const HOSTS: usize = 24;
    let t = TestLab::start(HOSTS);
    let c = case(
        r#"
name: waiting
hosts: all
steps:
  - ssh: "sleep 2"
  - sftp_put: { content: "x", dest: "{{ lab_dir }}/waiting-{{ host.name }}.txt" }
"#,
    )
    .inventory(&Inv::new(&t).yaml());
    let mut child = c.spawn_run();
    let task_dir = format!("/proc/{}/task", child.id());
    let mut most = 0;
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if let Ok(d) = std::fs::read_dir(&task_dir) {
            most = most.max(d.count());
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "the run did not end"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(status.success(), "the run failed: {status}");
    for h in t.lab.ssh.hosts() {
        let f = t.lab.dir().join(format!("waiting-{}.txt", h.name));
        assert_eq!(std::fs::read_to_string(&f).expect("uploaded"), "x");
    }
    // main, tokio's workers (2 here), and a few the runtime may start for a moment.
    assert!(most > 0, "the runner's threads were never seen");
    assert!(
        most <= 8,
        "{most} threads for {HOSTS} hosts waiting on their commands"
    );
}

#[test]
fn one_connection_per_host_for_five_ssh_steps() {
    let t = TestLab::start(3);
    let c = case(
        r#"
name: reuse
hosts: all
steps:
  - ssh: "echo 1"
  - ssh: "echo 2"
  - sftp_put: { content: "x", dest: "{{ lab_dir }}/reuse-{{ host.name }}.txt" }
  - ssh: "cat {{ lab_dir }}/reuse-{{ host.name }}.txt"
  - sftp_get: { src: "{{ lab_dir }}/reuse-{{ host.name }}.txt", dest: "got/{{ host.name }}" }
"#,
    )
    .inventory(&Inv::new(&t).yaml());
    let o = c.run();
    assert_eq!(o.code, 0, "{}", o.all());
    for i in 0..3 {
        assert_eq!(
            t.lab.ssh.accepted_connections(i).expect("log"),
            1,
            "host {i}"
        );
        assert_eq!(
            t.lab
                .ssh
                .log_count(i, "Disconnected from user")
                .expect("log"),
            1,
            "host {i} closed its session"
        );
    }
}

#[test]
fn nightly_logs_example_collects_every_host() {
    let t = TestLab::start(3);
    let logs = t.lab.dir().join("var-log-app");
    std::fs::create_dir_all(&logs).expect("mkdir");
    std::fs::write(logs.join("app.log"), "line 1\nline 2\n").expect("w");
    std::fs::write(logs.join("error.log"), "oops\n").expect("w");
    std::fs::write(logs.join("notes.txt"), "not a log\n").expect("w");
    let text = std::fs::read_to_string(repo().join("playbooks/nightly-logs.yml")).expect("example");
    let c = case(&text)
        .inventory(&Inv::new(&t).yaml())
        .args(["-e", &format!("log_glob={}/*.log", logs.display())]);
    let o = c.run();
    assert_eq!(o.code, 0, "{}", o.all());
    for h in t.lab.ssh.hosts() {
        let dir = c.dir.path().join("collected").join(&h.name);
        assert_eq!(
            std::fs::read_to_string(dir.join("app.log")).expect("r"),
            "line 1\nline 2\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("error.log")).expect("r"),
            "oops\n"
        );
        assert!(!dir.join("notes.txt").exists());
        assert_eq!(out(&o, &h.name, "collect")["bytes"], 19);
    }
    let manifest =
        std::fs::read_to_string(c.dir.path().join("collected/manifest.txt")).expect("manifest");
    assert_eq!(manifest.lines().count(), 3, "{manifest}");
    // The next night: unchanged files are not fetched again.
    let o = c.run();
    assert_eq!(o.code, 0, "{}", o.all());
    for h in t.lab.ssh.hosts() {
        assert_eq!(o.status(&h.name, "collect"), "ok");
        assert_eq!(out(&o, &h.name, "collect")["bytes"], 0);
    }
}

#[test]
fn steps_side_by_side_share_the_session_without_waiting_for_each_other() {
    let t = TestLab::start(1);
    let c = case(
        r#"
name: side
hosts: all
steps:
  - id: a
    ssh: "sleep 1; echo a"
  - id: b
    needs: []
    ssh: "sleep 1; echo b"
  - id: c
    needs: []
    sftp_put: { content: "while others sleep", dest: "{{ lab_dir }}/side.txt" }
  - id: d
    needs: [a, b, c]
    ssh: "cat {{ lab_dir }}/side.txt"
"#,
    )
    .inventory(&Inv::new(&t).yaml());
    let o = c.run();
    assert_eq!(o.code, 0, "{}", o.all());
    assert_eq!(out(&o, "h01", "a")["stdout"], "a");
    assert_eq!(out(&o, "h01", "b")["stdout"], "b");
    assert_eq!(out(&o, "h01", "d")["stdout"], "while others sleep");
    // Two one-second commands at once on one session: about one second, not two; the upload
    // did not wait for them either.
    let host_ms = o.report.as_ref().expect("report")["plays"][0]["hosts"][0]["duration_ms"]
        .as_u64()
        .unwrap_or(0);
    assert!(host_ms < 1800, "steps were serialized: {host_ms} ms");
    assert!(o.task("h01", "c")["duration_ms"].as_u64().unwrap_or(9999) < 800);
    assert_eq!(t.lab.ssh.accepted_connections(0).expect("log"), 1);
}

/// True when this process runs as root (the lab's password login needs a mount namespace).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[test]
fn password_env_logs_in_and_a_wrong_or_missing_password_says_what_to_do() {
    if !is_root() {
        eprintln!("skipped: the lab's password login needs root (a private mount namespace)");
        return;
    }
    const PASSWORD: &str = "lab-pw-6e1f93c0";
    let dir = tempfile::tempdir().expect("temp dir");
    let mut options = sortie_lab::ssh::SshLabOptions::for_test(1, dir.path().join("lab"));
    options.password = Some(PASSWORD.into());
    let lab = sortie_lab::ssh::SshLab::start(options).expect("the lab starts");
    let h = &lab.hosts()[0];
    // No identity file, and `case` gives the runs an empty HOME (no ~/.ssh/id_* to fall back
    // on) and no agent: the password is the only way in.
    let inv = format!(
        "ssh:\n  user: {user}\n  known_hosts: \"{kh}\"\n  host_key_checking: strict\n  connect_timeout: 5s\n  password_env: LAB_PW\ngroups:\n  lab:\n    hosts:\n      h01: {{ address: \"{addr}\", port: {port} }}\n",
        user = lab.user(),
        kh = lab.known_hosts().display(),
        addr = h.address,
        port = h.port,
    );
    let pb = "name: pw\nhosts: all\nsteps:\n  - id: s\n    ssh: \"echo in as $(id -un)\"\n";
    let assert_hidden = |o: &Output, secret: &str| {
        for (what, text) in [("stdout", &o.stdout), ("stderr", &o.stderr)] {
            assert!(
                !text.contains(secret),
                "the password is in {what}: {}",
                o.all()
            );
        }
        let report = serde_json::to_string(o.report.as_ref().expect("report")).expect("json");
        assert!(!report.contains(secret), "the password is in the report");
    };

    let mut c = case(pb).inventory(&inv);
    c.env.push(("LAB_PW".into(), PASSWORD.into()));
    let o = c.run();
    assert_eq!(o.code, 0, "{}", o.all());
    assert_eq!(
        out(&o, "h01", "s")["stdout"],
        format!("in as {}", lab.user())
    );
    assert_hidden(&o, PASSWORD);
    assert_eq!(lab.log_count(0, "Accepted password for").expect("log"), 1);
    assert_eq!(
        lab.accepted_connections(0).expect("log"),
        0,
        "no key got in"
    );

    let wrong = "not-the-pw-27d4";
    let mut c = case(pb).inventory(&inv);
    c.env.push(("LAB_PW".into(), wrong.into()));
    let o = c.run();
    assert_eq!(o.code, 2, "{}", o.all());
    let task = o.task("h01", "s");
    assert_eq!(task["status"], "unreachable");
    assert_eq!(task["error"]["kind"], "auth");
    let msg = task["message"].as_str().unwrap_or("");
    assert!(
        msg.contains(&format!("authentication failed for {}@", lab.user()))
            && msg.contains("`LAB_PW`: refused"),
        "{msg}"
    );
    let help = task["error"]["help"].as_str().unwrap_or("");
    assert!(help.contains("check the password in `LAB_PW`"), "{help}");
    assert!(
        o.stdout.contains("check the password in `LAB_PW`"),
        "{}",
        o.all()
    );
    assert_hidden(&o, wrong);
    assert_eq!(lab.log_count(0, "Failed password for").expect("log"), 1);

    let o = case(pb).inventory(&inv).run();
    assert_eq!(o.code, 2, "{}", o.all());
    let task = o.task("h01", "s");
    assert_eq!(task["error"]["kind"], "auth");
    let msg = task["message"].as_str().unwrap_or("");
    assert!(msg.contains("password_env `LAB_PW` is not set"), "{msg}");
    let help = task["error"]["help"].as_str().unwrap_or("");
    assert!(
        help.contains("set the environment variable `LAB_PW`"),
        "{help}"
    );
    assert_eq!(
        lab.log_count(0, "Failed password for").expect("log"),
        1,
        "no password was sent"
    );
}

#[test]
fn hashed_known_hosts_are_matched_and_a_missing_entry_is_unknown() {
    let t = TestLab::start(2);
    let kh = t.dir.path().join("hashed_known_hosts");
    std::fs::copy(t.lab.ssh.known_hosts(), &kh).expect("copy");
    let st = Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&kh)
        .output()
        .expect("ssh-keygen -H");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let hashed = std::fs::read_to_string(&kh).expect("read");
    assert_eq!(hashed.lines().count(), 2, "{hashed}");
    assert!(hashed.lines().all(|l| l.starts_with("|1|")), "{hashed}");
    let h02 = &t.lab.ssh.hosts()[1];
    assert!(!hashed.contains(&h02.address.to_string()), "{hashed}");

    let pb = "name: hashed\nhosts: all\nsteps:\n  - id: s\n    ssh: \"echo ok\"\n";
    let mut inv = Inv::new(&t);
    inv.known_hosts = kh.clone();
    let o = case(pb).inventory(&inv.yaml()).run();
    assert_eq!(o.code, 0, "{}", o.all());
    assert_eq!(out(&o, "h02", "s")["stdout"], "ok");

    // `ssh-keygen -R` finds the hashed entry by name and removes it.
    let st = Command::new("ssh-keygen")
        .arg("-R")
        .arg(format!("[{}]:{}", h02.address, h02.port))
        .arg("-f")
        .arg(&kh)
        .output()
        .expect("ssh-keygen -R");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&kh).expect("read").lines().count(),
        1
    );
    let o = case(pb).inventory(&inv.yaml()).run();
    assert_eq!(o.code, 2, "{}", o.all());
    assert_eq!(o.status("h01", "s"), "changed");
    let task = o.task("h02", "s");
    assert_eq!(task["status"], "unreachable");
    assert_eq!(task["error"]["kind"], "host_key");
    let fp = keygen_fingerprint(&h02.host_key.with_extension("pub"));
    let msg = task["message"].as_str().unwrap_or("");
    assert!(msg.contains("unknown") && msg.contains(&fp), "{msg} / {fp}");
}

/// ProxyCommand, as ssh runs it: from ssh_config (`ssh -W` through another lab host, and a
/// bash `/dev/tcp` relay) and from the inventory's `ssh.proxy_command`, tokens expanded, the
/// host key still checked against the host's name; a command that exits at once makes the
/// host unreachable with the command and its stderr named; no command outlives the run.
#[test]
fn a_proxy_command_is_hung_up_even_when_sortie_runs_under_nohup() {
    // An ignored SIGHUP would be inherited by the ProxyCommand and keep it running after
    // sortie exits (the SIGKILL a second later dies with sortie when the run ends first).
    let t = TestLab::start(1);
    let h = &t.lab.ssh.hosts()[0];
    let pids = t.dir.path().join("proxy-pids");
    let config = format!(
        "Host lingers\n  HostName {a}\n  Port {p}\n  ProxyCommand bash -c 'echo $$ >> {pids}; exec 3<>/dev/tcp/%h/%p; cat <&3 & cat >&3; sleep 30'\n",
        a = h.address,
        p = h.port,
        pids = pids.display(),
    );
    let cfg = t.dir.path().join("proxy_config");
    std::fs::write(&cfg, config).expect("config");
    let mut inv = Inv::new(&t);
    inv.extra = format!("  config_file: \"{}\"\n", cfg.display());
    inv.hosts = vec![("lingers".to_string(), 0, String::new())];
    let yaml = inv.yaml().replace(
        &format!(
            "      lingers: {{ address: \"{}\", port: {} }}",
            h.address, h.port
        ),
        "      lingers: {}",
    );
    let c = case("name: pc\nhosts: all\nsteps:\n  - id: s\n    ssh: \"echo proxied\"\n")
        .inventory(&yaml);
    let o = c.run_ignoring_hangup();
    assert_eq!(o.code, 0, "{}", o.all());
    assert_eq!(out(&o, "lingers", "s")["stdout"], "proxied", "{}", o.all());
    let pid = std::fs::read_to_string(&pids).expect("the command ran");
    let pid = pid.trim();
    // The signal is delivered at once; give the shell a moment to go (bounded).
    let mut stat = String::new();
    for _ in 0..50 {
        stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.is_empty() || stat.contains(") Z ") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        stat.is_empty() || stat.contains(") Z "),
        "proxy command {pid} still runs after sortie exited: {stat}"
    );
}

#[test]
fn proxy_command_carries_the_connection_and_the_host_key_is_still_checked() {
    let t = TestLab::start(3);
    let (a, b, c3) = (
        &t.lab.ssh.hosts()[0],
        &t.lab.ssh.hosts()[1],
        &t.lab.ssh.hosts()[2],
    );
    let pids = t.dir.path().join("proxy-pids");
    let lab_config = t.lab.dir().join("ssh_config");
    let config = format!(
        "Host viassh\n  HostName {b}\n  Port {p}\n  ProxyCommand sh -c 'echo $$ >> {pids}; ssh -F {lab} -W %h:%p h01; sleep 20'\n\
         Host viabash\n  HostName {c}\n  Port {p}\n  ProxyCommand bash -c 'echo $$ >> {pids}; exec 3<>/dev/tcp/%h/%p; cat <&3 & cat >&3'\n\
         Host wrongkey\n  HostName {c}\n  Port {p}\n  ProxyCommand ssh -F {lab} -W {b}:%p h01\n\
         Host dies\n  HostName {c}\n  Port {p}\n  ProxyCommand sh -c 'echo no route to %h:%p >&2; exit 7'\n",
        b = b.address,
        c = c3.address,
        p = a.port,
        pids = pids.display(),
        lab = lab_config.display(),
    );
    let cfg = t.dir.path().join("proxy_config");
    std::fs::write(&cfg, config).expect("config");
    let mut inv = Inv::new(&t);
    inv.extra = format!("  config_file: \"{}\"\n", cfg.display());
    inv.hosts = ["viassh", "viabash", "wrongkey", "dies"]
        .iter()
        .map(|n| (n.to_string(), 0, String::new()))
        .collect();
    let mut yaml = inv.yaml();
    // The lab hosts' addresses are set by ssh_config here: the inventory names only.
    for n in ["viassh", "viabash", "wrongkey", "dies"] {
        yaml = yaml.replace(
            &format!(
                "      {n}: {{ address: \"{}\", port: {} }}",
                a.address, a.port
            ),
            &format!("      {n}: {{}}"),
        );
    }
    yaml.push_str(&format!(
        "      inv: {{ address: \"{}\", port: {}, ssh: {{ proxy_command: \"nc-free relay %h %p\" }} }}\n",
        c3.address, c3.port
    ));
    let yaml = yaml.replace(
        "nc-free relay %h %p",
        "bash -c 'exec 3<>/dev/tcp/%h/%p; cat <&3 & cat >&3'",
    );
    let c = case("name: pc\nhosts: all\nsteps:\n  - id: s\n    ssh: \"echo proxied\"\n")
        .inventory(&yaml);
    let o = c.run();
    assert_eq!(o.code, 2, "{}", o.all());
    for h in ["viassh", "viabash", "inv"] {
        assert_eq!(out(&o, h, "s")["stdout"], "proxied", "{}", o.all());
    }
    // `ssh -W` logged in to h01 for viassh and for wrongkey; nobody else went to h01.
    assert_eq!(t.lab.ssh.accepted_connections(0).expect("log"), 2);
    let wrong = o.task("wrongkey", "s");
    assert_eq!(wrong["error"]["kind"], "host_key", "{wrong}");
    let dies = o.task("dies", "s");
    assert_eq!(dies["error"]["kind"], "connect", "{dies}");
    let msg = dies["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains(&format!(
            "ProxyCommand `sh -c 'echo no route to {}:{} >&2; exit 7'`",
            c3.address, c3.port
        )) && msg.contains("exited (status 7)")
            && msg.contains(&format!("no route to {}:{}", c3.address, c3.port)),
        "{msg}"
    );
    // Every command sortie started is gone once it has returned: the one that would sleep
    // on after its `ssh -W` ended too (SIGHUP when its session closed).
    let started = std::fs::read_to_string(&pids).expect("the commands ran");
    for pid in started.split_whitespace() {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty() || stat.contains(") Z "),
            "proxy command {pid} still runs: {stat}"
        );
    }
    let shown = crate::harness::sortie(
        c.dir.path(),
        &["inventory", "-i", "inventory0.yml", "--host", "viassh"],
    );
    let shown: Value = serde_json::from_str(&shown.stdout).expect("JSON");
    assert_eq!(
        shown["connection"]["proxy_command"],
        format!(
            "sh -c 'echo $$ >> {}; ssh -F {} -W {}:{} h01; sleep 20'",
            pids.display(),
            lab_config.display(),
            b.address,
            a.port
        )
    );
}
