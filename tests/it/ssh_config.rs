//! sortie's ssh_config reader held to OpenSSH's own: for every file of the corpus
//! (`tests/fixtures/ssh_config/*.conf`, each naming the hosts to ask about in its first line,
//! `[user@]host[#port]`), the real `ssh -G -F FILE [-l user] [-p port] HOST` and
//! `sortie inventory --host` (with `ssh: { config_file: FILE }`) must agree on the address,
//! port, user, identity files (in order), ProxyJump chain, ProxyCommand (its tokens
//! expanded as ssh expands them when it runs it), UserKnownHostsFile and
//! StrictHostKeyChecking. Each file of `bad/` must be refused by both, sortie with exit 3 and
//! a diagnostic at the `# error:` place. Nothing here connects; `ssh.rs` holds the end-to-end
//! test through a lab sshd.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::harness::{repo, sortie_bin};

/// What `ssh -G` printed, keyword → values (in order).
struct Dump(Vec<(String, String)>);

impl Dump {
    fn one(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str())
    }
    fn all(&self, k: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(x, _)| x == k)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// The real passwd home, which ssh uses for `~` and `%d` whatever HOME says.
fn pw_home() -> String {
    let uid =
        String::from_utf8(Command::new("id").arg("-u").output().expect("id").stdout).expect("utf8");
    let passwd = std::fs::read_to_string("/etc/passwd").expect("passwd");
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 5 && f[2] == uid.trim())
        .map(|f| f[5].to_string())
        .expect("passwd entry")
}

fn pw_name() -> String {
    String::from_utf8(Command::new("id").arg("-un").output().expect("id").stdout)
        .expect("utf8")
        .trim()
        .to_string()
}

/// A query: `[user@]host[#port]`.
#[derive(Clone, Debug)]
struct Q {
    user: Option<String>,
    host: String,
    port: Option<u16>,
    /// `-J`, for the hops.
    jump: Option<String>,
}

fn parse_q(s: &str) -> Q {
    let (user, rest) = match s.split_once('@') {
        Some((u, r)) => (Some(u.to_string()), r),
        None => (None, s),
    };
    let (host, port) = match rest.split_once('#') {
        Some((h, p)) => (h.to_string(), Some(p.parse().expect("port"))),
        None => (rest.to_string(), None),
    };
    Q {
        user,
        host,
        port,
        jump: None,
    }
}

fn ssh_g(file: &Path, q: &Q, home: &Path) -> Result<Dump, String> {
    let mut c = Command::new("ssh");
    c.arg("-G").arg("-F").arg(file);
    if let Some(u) = &q.user {
        c.arg("-l").arg(u);
    }
    if let Some(p) = q.port {
        c.arg("-p").arg(p.to_string());
    }
    if let Some(j) = &q.jump {
        c.arg("-J").arg(j);
    }
    c.arg(&q.host).env("HOME", home).env("USER", pw_name());
    let out = c.output().expect("run ssh");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    Ok(Dump(
        text.lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    ))
}

/// `~/…` for paths under either home, so ssh's (passwd) and sortie's (HOME) compare.
fn norm(p: &str, homes: &[&str]) -> String {
    for h in homes {
        if let Some(rest) = p.strip_prefix(&format!("{h}/")) {
            return format!("~/{rest}");
        }
    }
    p.to_string()
}

const OPENSSH_DEFAULT_KEYS: [&str; 7] = [
    "~/.ssh/id_rsa",
    "~/.ssh/id_ecdsa",
    "~/.ssh/id_ecdsa_sk",
    "~/.ssh/id_ed25519",
    "~/.ssh/id_ed25519_sk",
    "~/.ssh/id_xmss",
    "~/.ssh/id_dsa",
];

/// What ssh resolves for `q`, in the shape of sortie's `connection`, paths normalised.
fn expected(file: &Path, q: &Q, home: &Path, depth: usize) -> Result<Value, String> {
    let d = ssh_g(file, q, home)?;
    let homes = [pw_home(), home.display().to_string()];
    let homes: Vec<&str> = homes.iter().map(String::as_str).collect();
    let raw_keys = d.all("identityfile");
    let keys: Vec<String> = if raw_keys == OPENSSH_DEFAULT_KEYS {
        // sortie tries ed25519, ecdsa and rsa (docs/ssh.md).
        ["id_ed25519", "id_ecdsa", "id_rsa"]
            .iter()
            .map(|k| format!("~/.ssh/{k}"))
            .collect()
    } else {
        expand_like_ssh(file, q, home, &raw_keys)?
            .iter()
            .map(|k| norm(k, &homes))
            .collect()
    };
    // `none` is printed as it was written; it means no file.
    let known: Vec<String> = d
        .one("userknownhostsfile")
        .unwrap_or("")
        .split(' ')
        .filter(|s| !s.is_empty() && *s != "none")
        .map(|k| norm(k, &homes))
        .collect();
    let checking = match d.one("stricthostkeychecking").unwrap_or("ask") {
        "accept-new" => "accept-new",
        "false" => "off",
        _ => "strict",
    };
    let hostname = d.one("hostname").expect("hostname").to_string();
    let port: u16 = d.one("port").expect("port").parse().expect("port");
    let user = d.one("user").expect("user").to_string();
    let mut jump = Vec::new();
    if let Some(pj) = d.one("proxyjump") {
        assert!(depth < 8, "jump loop");
        // ssh builds `ssh [-l u] [-p p] [-J extra] host` as a ProxyCommand, whose %h %n %p %r
        // are the target's.
        let pj = pj
            .replace("%h", &hostname)
            .replace("%n", &q.host)
            .replace("%p", &port.to_string())
            .replace("%r", &user);
        let (extra, last) = match pj.rsplit_once(',') {
            Some((e, l)) => (Some(e.to_string()), l.to_string()),
            None => (None, pj.clone()),
        };
        // `[1]`, `[::1]:22`: -G brackets numeric names.
        let last = match last.strip_prefix('[').and_then(|r| r.split_once(']')) {
            Some((h, rest)) => format!("{h}{}", rest.replacen(':', "#", 1)),
            None => last.replacen(':', "#", 1),
        };
        let mut hop = parse_q(&last);
        hop.jump = extra;
        let e = expected(file, &hop, home, depth + 1)?;
        jump.extend(e["jump"].as_array().cloned().unwrap_or_default());
        jump.push(serde_json::json!({
            "address": e["address"], "port": e["port"], "user": e["user"],
        }));
    }
    let mut out = serde_json::json!({
        "address": hostname,
        "port": port,
        "user": user,
        "identity_files": keys,
        "jump": jump,
        "known_hosts": known,
        "host_key_checking": checking,
    });
    // -G prints ProxyCommand as written; ssh expands %h %k %n %p %r and %% when it runs it.
    if let Some(pc) = d.one("proxycommand").filter(|pc| *pc != "none") {
        let alias = d.one("hostkeyalias").unwrap_or(&q.host);
        let (port, mut cmd, mut it) = (port.to_string(), String::new(), pc.chars());
        while let Some(c) = it.next() {
            if c != '%' {
                cmd.push(c);
                continue;
            }
            match it.next() {
                Some('h') => cmd.push_str(&hostname),
                Some('k') => cmd.push_str(alias),
                Some('n') => cmd.push_str(&q.host),
                Some('p') => cmd.push_str(&port),
                Some('r') => cmd.push_str(&user),
                Some(other) => cmd.push(other),
                None => cmd.push('%'),
            }
        }
        out["proxy_command"] = Value::String(cmd);
    }
    Ok(out)
}

/// ssh -G prints IdentityFile as written; ssh expands it later with the same `~` and tokens
/// as UserKnownHostsFile, which -G prints expanded. So ask ssh again, for each identity file,
/// with it as the first UserKnownHostsFile (the first value wins).
fn expand_like_ssh(file: &Path, q: &Q, home: &Path, raw: &[&str]) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(file).expect("read");
    let probe = file.with_extension("probe");
    let mut out = Vec::new();
    for k in raw.iter().filter(|k| !k.eq_ignore_ascii_case("none")) {
        let k = k.replace('\\', "\\\\").replace('"', "\\\"");
        std::fs::write(&probe, format!("UserKnownHostsFile \"{k}\"\n{text}")).expect("write");
        let d = ssh_g(&probe, q, home)?;
        out.push(d.one("userknownhostsfile").unwrap_or("").to_string());
    }
    Ok(out)
}

/// The corpus copied into `dir`, `@DIR@` replaced by it (for absolute Includes).
fn corpus(dir: &Path) -> Vec<PathBuf> {
    let src = repo().join("tests/fixtures/ssh_config");
    let mut out = Vec::new();
    for sub in ["", "inc", "bad"] {
        std::fs::create_dir_all(dir.join(sub)).expect("mkdir");
        let mut names: Vec<PathBuf> = std::fs::read_dir(src.join(sub))
            .expect("fixtures")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.is_file())
            .collect();
        names.sort();
        for p in names {
            let text = std::fs::read_to_string(&p)
                .expect("read")
                .replace("@DIR@", &dir.display().to_string());
            let to = dir.join(sub).join(p.file_name().expect("name"));
            std::fs::write(&to, text).expect("write");
            if sub.is_empty() && to.extension().is_some_and(|e| e == "conf") {
                out.push(to);
            }
        }
    }
    out
}

fn header<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("# {key}: ")))
}

/// `sortie inventory --host` for `q` through an inventory that names `file`.
fn sortie_host(dir: &Path, file: &Path, q: &Q, home: &Path) -> std::process::Output {
    let mut extra = String::new();
    if let Some(u) = &q.user {
        extra.push_str(&format!(", user: {u}"));
    }
    if let Some(p) = q.port {
        extra.push_str(&format!(", port: {p}"));
    }
    let inv = dir.join("inventory.yml");
    std::fs::write(
        &inv,
        format!(
            "ssh: {{ config_file: \"{}\" }}\nhosts:\n  probe: {{ address: \"{}\"{extra} }}\n",
            file.display(),
            q.host
        ),
    )
    .expect("inventory");
    Command::new(sortie_bin())
        .args(["inventory", "-i"])
        .arg(&inv)
        .args(["--host", "probe"])
        .env("HOME", home)
        .env("USER", pw_name())
        .env("NO_COLOR", "1")
        .output()
        .expect("run sortie")
}

#[test]
fn sortie_agrees_with_ssh_g_on_the_whole_corpus() {
    let tmp = tempfile::tempdir().expect("tmp");
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let files = corpus(&tmp.path().join("corpus"));
    assert!(files.len() >= 40, "corpus has {} files", files.len());
    // `~user/` is the passwd home for both.
    let homes = [pw_home(), home.display().to_string()];
    let homes: Vec<&str> = homes.iter().map(String::as_str).collect();
    let (mut agree, mut cases, mut diffs) = (0, 0, Vec::new());
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read");
        let hosts = header(&text, "hosts").expect("# hosts: line");
        for h in hosts.split_whitespace() {
            cases += 1;
            let q = parse_q(h);
            let want = expected(f, &q, &home, 0)
                .unwrap_or_else(|e| panic!("ssh -G refused {}: {e}", f.display()));
            let out = sortie_host(tmp.path(), f, &q, &home);
            let got: Value = match serde_json::from_slice(&out.stdout) {
                Ok(v) => v,
                Err(_) => {
                    diffs.push(format!(
                        "{} {h}: sortie exit {:?}: {}",
                        f.display(),
                        out.status.code(),
                        String::from_utf8_lossy(&out.stderr)
                    ));
                    continue;
                }
            };
            let mut c = got["connection"].clone();
            for k in ["identity_files", "known_hosts"] {
                let v: Vec<Value> = c[k]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|p| Value::from(norm(p.as_str().unwrap_or(""), &homes)))
                    .collect();
                c[k] = Value::from(v);
            }
            if c == want {
                agree += 1;
            } else {
                diffs.push(format!(
                    "{} {h}:\n  ssh:    {want}\n  sortie: {c}",
                    f.file_name().unwrap_or_default().to_string_lossy()
                ));
            }
        }
    }
    eprintln!(
        "ssh_config corpus: {agree} of {cases} lookups over {} files agree",
        files.len()
    );
    assert!(
        diffs.is_empty(),
        "{} disagreements:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

#[test]
fn configs_ssh_refuses_are_refused_with_their_place() {
    let tmp = tempfile::tempdir().expect("tmp");
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let dir = tmp.path().join("corpus");
    corpus(&dir);
    let mut bad: Vec<PathBuf> = std::fs::read_dir(dir.join("bad"))
        .expect("bad")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    bad.sort();
    assert!(bad.len() >= 15, "{} bad files", bad.len());
    for f in &bad {
        let text = std::fs::read_to_string(f).expect("read");
        let q = parse_q(header(&text, "hosts").expect("hosts"));
        assert!(ssh_g(f, &q, &home).is_err(), "ssh accepts {}", f.display());
        let out = sortie_host(tmp.path(), f, &q, &home);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{}: {err}", f.display());
        let place = header(&text, "error").expect("# error: line");
        if place != "any" {
            let want = match place.rsplit_once(':') {
                Some((fl, c)) if fl.contains(':') => {
                    let (name, line) = fl.split_once(':').expect("file:line");
                    format!("{}:{line}:{c}", f.with_file_name(name).display())
                }
                _ => format!("{}:{place}", f.display()),
            };
            assert!(
                err.contains(&want),
                "{}: want {want} in:\n{err}",
                f.display()
            );
        }
        assert!(err.contains("error"), "{err}");
    }
}

/// A case whose runs see no agent and an empty HOME.
fn lab_case(playbook: &str) -> crate::harness::Case {
    let mut c = crate::harness::Case::new(playbook);
    let home = c.dir.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    c.env.push(("HOME".into(), home.display().to_string()));
    c.env.push(("SSH_AUTH_SOCK".into(), String::new()));
    c
}

#[test]
fn a_run_connects_where_ssh_config_says_through_match_tokens_and_a_jump() {
    let t = crate::harness::TestLab::start(2);
    let (a, b) = (&t.lab.ssh.hosts()[0], &t.lab.ssh.hosts()[1]);
    let addr = |h: &sortie_lab::ssh::SshHost| h.address.to_string();
    let (net, last_a) = addr(a)
        .rsplit_once('.')
        .map(|(n, l)| (n.to_string(), l.to_string()))
        .expect("ipv4");
    let last_b = addr(b)
        .rsplit_once('.')
        .map(|(_, l)| l.to_string())
        .expect("ipv4");
    assert!(
        addr(b).starts_with(&format!("{net}.")),
        "lab hosts share a /24"
    );
    // The inventory gives only the names ssh would be asked about (the last octets); the
    // config makes the address from them (%h), sends the second through the first in its
    // final pass, and gives port, user (to the jump host too), key and known_hosts.
    let config = format!(
        "Host {last_a} {last_b}\n  HostName {net}.%h\nMatch final host {b}\n  ProxyJump {last_a}\n\
         Match all\n  User root\n  Port {p}\n  IdentityFile {id}\n  UserKnownHostsFile {kh}\n",
        b = addr(b),
        p = a.port,
        id = t.lab.ssh.identity_file().display(),
        kh = t.lab.ssh.known_hosts().display(),
    );
    let c = lab_case("name: cfg\nhosts: all\nsteps:\n  - id: s\n    ssh: \"echo configured\"\n")
        .file("ssh_config", &config)
        .inventory(&format!(
            "ssh: {{ config_file: ssh_config, user: nobody-else }}\nhosts:\n  web-a: {{ address: \"{last_a}\", user: root }}\n  web-b: {{ address: \"{last_b}\", user: root }}\n"
        ));
    let shown = crate::harness::sortie(
        c.dir.path(),
        &["inventory", "-i", "inventory0.yml", "--host", "web-b"],
    );
    assert_eq!(shown.code, 0, "{}", shown.all());
    let v: Value = serde_json::from_str(&shown.stdout).expect("json");
    let conn = &v["connection"];
    assert_eq!(conn["address"], addr(b), "{v}");
    assert_eq!(conn["port"], a.port);
    assert_eq!(conn["jump"][0]["address"], addr(a), "{v}");
    let o = c.run();
    assert_eq!(o.code, 0, "{}", o.all());
    for h in ["web-a", "web-b"] {
        assert_eq!(
            o.task(h, "s")["output"]["stdout"],
            "configured",
            "{}",
            o.all()
        );
    }
    assert_eq!(
        t.lab.ssh.accepted_connections(0).expect("log"),
        2,
        "web-a directly and as web-b's jump"
    );
    assert_eq!(t.lab.ssh.accepted_connections(1).expect("log"), 1);
}

#[test]
fn check_and_run_refuse_a_bad_ssh_config_up_front() {
    let c = lab_case("name: cfg\nhosts: all\nsteps:\n  - ssh: \"true\"\n")
        .file(
            "ssh_config",
            "Host web1\n  HostName 127.0.0.1\n  Port 99999\nFrobnicate on\n",
        )
        .inventory("ssh: { config_file: ssh_config }\nhosts:\n  web1: {}\n");
    let conf = c.path("ssh_config").display().to_string();
    for o in [c.check(), c.run()] {
        assert_eq!(o.code, 3, "{}", o.all());
        assert!(o.stderr.contains(&format!("{conf}:3:8")), "{}", o.all());
        assert!(o.stderr.contains(&format!("{conf}:4:1")), "{}", o.all());
        assert!(o.stderr.contains("bad port `99999`"), "{}", o.all());
        assert!(
            o.stderr.contains("bad configuration option `frobnicate`"),
            "{}",
            o.all()
        );
    }
    // Tolerated as OpenSSH tolerates them: IgnoreUnknown; and a `Match exec` that hangs is
    // stopped after 5 s, with a warning, and does not match (OpenSSH would wait for it).
    let ok = lab_case("name: cfg\nhosts: all\nsteps:\n  - ssh: \"true\"\n")
        .file(
            "ssh_config",
            "IgnoreUnknown frob*\nFrobnicate on\nMatch exec \"sleep 30\"\n  User never\n",
        )
        .inventory("ssh: { config_file: ssh_config }\nhosts:\n  web1: {}\n");
    let started = std::time::Instant::now();
    let o = ok.check();
    assert_eq!(o.code, 0, "{}", o.all());
    assert!(
        o.stderr
            .contains("`Match exec`: `sleep 30` ran for more than 5s and was stopped"),
        "{}",
        o.all()
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(25));
    let missing = lab_case("name: cfg\nhosts: all\nsteps:\n  - ssh: \"true\"\n")
        .inventory("ssh: { config_file: nowhere.conf }\nhosts:\n  web1: {}\n");
    let o = missing.check();
    assert_eq!(o.code, 3, "{}", o.all());
    assert!(o.stderr.contains("does not exist"), "{}", o.all());
}

#[test]
fn inventory_list_shows_each_hosts_connection_and_refuses_a_bad_config() {
    let c = lab_case("name: x\nhosts: all\nsteps: []\n")
        .file("cfg", "Host 10.0.0.2\n  Port 2222\n  ProxyJump ops@bastion\n")
        .file("bad", "Host *\n  Port none\n")
        .inventory("ssh: { config_file: cfg }\nhosts:\n  web1: {}\n  db: { address: 10.0.0.2, user: pg }\n")
        .inventory("ssh: { config_file: bad }\nhosts:\n  web1: {}\n");
    let o = crate::harness::sortie(
        c.dir.path(),
        &["inventory", "-i", "inventory0.yml", "--list"],
    );
    assert_eq!(o.code, 0, "{}", o.all());
    let v: Value = serde_json::from_str(&o.stdout).expect("json");
    let db = &v["hosts"]["db"]["connection"];
    assert_eq!(db["address"], "10.0.0.2");
    assert_eq!(
        (db["port"].as_u64(), db["user"].as_str()),
        (Some(2222), Some("pg"))
    );
    assert_eq!(db["jump"][0]["user"], "ops");
    assert_eq!(v["hosts"]["web1"]["connection"]["port"], 22);
    let o = crate::harness::sortie(
        c.dir.path(),
        &["inventory", "-i", "inventory1.yml", "--list"],
    );
    assert_eq!(o.code, 3, "{}", o.all());
    assert!(o.stderr.contains("bad:2:8"), "{}", o.all());
    let o = crate::harness::sortie(
        c.dir.path(),
        &["inventory", "-i", "inventory1.yml", "--host", "web1"],
    );
    assert_eq!(o.code, 3, "{}", o.all());
    assert!(o.stderr.contains("bad port `none`"), "{}", o.all());
}
