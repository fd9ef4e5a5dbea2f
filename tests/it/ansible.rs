//! sortie's reading of Ansible inventories, held to Ansible's own: for every inventory of the
//! corpus in tests/fixtures/ansible/ (INI and YAML, ranges, children, `:vars`, precedence,
//! `group_vars/` and `host_vars/` folders, YAML 1.1 scalars, connection variables at every
//! level), `ansible-inventory -i F --list` (ansible-core, pinned, installed by `scripts/setup`
//! into target/ansible-venv) and `sortie inventory -i F --list` must give the same hosts, the
//! same groups per host and the same merged variables per host, where sortie's `address`,
//! `port`, `user` and key file stand for the `ansible_*` variables Ansible keeps. The
//! inventories of tests/fixtures/ansible-refused/ are refused by sortie with a located error
//! (exit 3); the differences from Ansible there are deliberate (docs/decisions.md).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::harness::{repo, sortie};

/// The pinned `ansible-inventory`, from the virtualenv `scripts/setup` makes.
fn ansible_inventory() -> PathBuf {
    let p = repo().join("target/ansible-venv/bin/ansible-inventory");
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup (it installs the pinned ansible-core)",
        p.display()
    );
    p
}

/// The `-i` argument of a corpus case: its `hosts*` or `inventory*` file, else the folder.
fn inventory_of(case: &Path) -> PathBuf {
    let mut names: Vec<PathBuf> = std::fs::read_dir(case)
        .expect("case folder")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    names.sort();
    names
        .into_iter()
        .find(|p| {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            p.is_file() && (n.starts_with("hosts") || n.starts_with("inventory"))
        })
        .unwrap_or_else(|| case.to_path_buf())
}

/// `ansible-inventory -i inv --list`, with no configuration file of the machine's, failing
/// (rather than warning) when the inventory does not parse.
fn ansible_list(inv: &Path, home: &Path) -> Result<Value, String> {
    let cfg = home.join("ansible.cfg");
    std::fs::write(&cfg, "[defaults]\n").expect("write ansible.cfg");
    let out = Command::new(ansible_inventory())
        .arg("-i")
        .arg(inv)
        .arg("--list")
        .env("ANSIBLE_CONFIG", &cfg)
        .env("ANSIBLE_HOME", home)
        .env("ANSIBLE_INVENTORY_UNPARSED_FAILED", "1")
        .env("ANSIBLE_LOCALHOST_WARNING", "0")
        .env("ANSIBLE_NOCOLOR", "1")
        .output()
        .expect("ansible-inventory runs");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("not JSON: {e}"))
}

/// What both tools say of one host: its groups (all of them, direct or inherited) and its
/// variables, with the connection variables as sortie reads them.
#[derive(Debug, PartialEq)]
struct Seen {
    groups: BTreeSet<String>,
    vars: BTreeMap<String, Value>,
    address: String,
    port: Option<u64>,
    user: Option<String>,
    identity_file: Option<String>,
}

/// Variables that sortie turns into settings, in the order Ansible's ssh plugin reads them
/// (the last one set wins).
const CONN: [(&str, &str); 8] = [
    ("address", "ansible_host"),
    ("address", "ansible_ssh_host"),
    ("port", "ansible_port"),
    ("port", "ansible_ssh_port"),
    ("user", "ansible_user"),
    ("user", "ansible_ssh_user"),
    ("identity_file", "ansible_private_key_file"),
    ("identity_file", "ansible_ssh_private_key_file"),
];

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// Ansible's `--list`, per host.
fn from_ansible(list: &Value) -> BTreeMap<String, Seen> {
    let obj = list.as_object().expect("an object");
    let mut parents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (g, v) in obj.iter().filter(|(g, _)| *g != "_meta") {
        for c in v["children"].as_array().into_iter().flatten() {
            parents.entry(c.as_str().unwrap_or("")).or_default().push(g);
        }
    }
    let mut groups: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (g, v) in obj.iter().filter(|(g, _)| *g != "_meta") {
        for h in v["hosts"].as_array().into_iter().flatten() {
            let set = groups.entry(text(h)).or_default();
            // The group and every group above it (bounded: the corpus is small and acyclic).
            let mut todo = vec![g.as_str()];
            while let Some(x) = todo.pop() {
                if set.insert(x.to_string()) && set.len() < 1000 {
                    todo.extend(parents.get(x).into_iter().flatten());
                }
            }
        }
    }
    let hostvars = &list["_meta"]["hostvars"];
    groups
        .into_iter()
        .map(|(h, groups)| {
            let mut vars: BTreeMap<String, Value> = hostvars[&h]
                .as_object()
                .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
            let mut conn: BTreeMap<&str, Value> = BTreeMap::new();
            for (field, var) in CONN {
                if let Some(v) = vars.remove(var).filter(|v| !v.is_null()) {
                    conn.insert(field, v);
                }
            }
            let seen = Seen {
                groups,
                vars,
                address: conn.get("address").map_or_else(|| h.clone(), text),
                port: conn.get("port").map(|p| text(p).parse().expect("a port")),
                user: conn.get("user").map(text),
                identity_file: conn.get("identity_file").map(text),
            };
            (h, seen)
        })
        .collect()
}

/// sortie's `--list`, per host.
fn from_sortie(list: &Value) -> BTreeMap<String, Seen> {
    let hosts = list["hosts"].as_object().expect("hosts");
    hosts
        .iter()
        .map(|(h, v)| {
            let key = v
                .pointer("/ssh/identity_file")
                .and_then(Value::as_str)
                .map(String::from);
            let seen = Seen {
                groups: v["groups"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(text)
                    .collect(),
                vars: v["vars"]
                    .as_object()
                    .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default(),
                address: text(&v["address"]),
                port: v["port"].as_u64(),
                user: v["user"].as_str().map(String::from),
                identity_file: key,
            };
            (h.clone(), seen)
        })
        .collect()
}

#[test]
fn ansible_inventories_read_as_ansible_inventory_lists_them() {
    let corpus = repo().join("tests/fixtures/ansible");
    let home = tempfile::tempdir().expect("tempdir");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&corpus)
        .expect("corpus")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    let mut disagree = Vec::new();
    for case in &cases {
        let inv = inventory_of(case);
        let name = case.file_name().and_then(|n| n.to_str()).unwrap_or("?");
        let ansible = match ansible_list(&inv, home.path()) {
            Ok(v) => from_ansible(&v),
            Err(e) => panic!("{name}: ansible-inventory refused it:\n{e}"),
        };
        let out = sortie(case, &["inventory", "-i", &inv.to_string_lossy(), "--list"]);
        if out.code != 0 {
            disagree.push(format!(
                "{name}: sortie exited {}:\n{}",
                out.code, out.stderr
            ));
            continue;
        }
        let list: Value = serde_json::from_str(&out.stdout).expect("sortie --list is JSON");
        let ours = from_sortie(&list);
        if ours != ansible {
            disagree.push(format!(
                "{name}:\n  ansible: {ansible:?}\n  sortie:  {ours:?}"
            ));
        }
    }
    let agree = cases.len() - disagree.len();
    eprintln!(
        "ansible corpus: {agree} of {} inventories agree",
        cases.len()
    );
    assert!(cases.len() >= 30, "the corpus has {} cases", cases.len());
    assert!(disagree.is_empty(), "{}", disagree.join("\n"));
}

/// Each refused inventory: sortie's located error (title, line) and whether Ansible refuses
/// it too (for the rest, sortie differs on purpose: docs/decisions.md).
#[test]
fn unsupported_ansible_inventories_are_located_errors() {
    let root = repo().join("tests/fixtures/ansible-refused");
    let home = tempfile::tempdir().expect("tempdir");
    let cases: [(&str, &str, &str, bool); 5] = [
        (
            "int-host-key",
            "host name `1234` is not a string",
            "hosts.yml:3:5",
            true,
        ),
        (
            "vault-inventory",
            "this inventory is vault-encrypted, which is not supported",
            "hosts:1:1",
            true,
        ),
        (
            "vault-group-vars",
            "this variables file is vault-encrypted, which is not supported",
            "web.yml:1:1",
            true,
        ),
        (
            "toml",
            "this format is not supported: a TOML inventory",
            "hosts.toml:2:1",
            false,
        ),
        (
            "plugin",
            "this format is not supported: an inventory plugin's configuration",
            "hosts.yml:1:1",
            true,
        ),
    ];
    for (name, title, place, ansible_refuses) in cases {
        let case = root.join(name);
        let inv = inventory_of(&case);
        let out = sortie(
            &case,
            &["inventory", "-i", &inv.to_string_lossy(), "--list"],
        );
        assert_eq!(out.code, 3, "{name}: {}", out.stderr);
        assert!(
            out.stderr.contains(&format!("error: {title}")),
            "{name}: {}",
            out.stderr
        );
        assert!(out.stderr.contains(place), "{name}: {}", out.stderr);
        let ansible = ansible_list(&inv, home.path());
        assert_eq!(ansible.is_err(), ansible_refuses, "{name}: {ansible:?}");
    }
}

/// `ansible_connection: local` hosts run `ssh` steps on the runner (their address is never
/// contacted: 192.0.2.1 is TEST-NET, nothing answers there), and an SFTP step says plainly
/// why it cannot run there.
#[test]
fn connection_local_hosts_run_on_the_runner() {
    let case = crate::harness::Case::new(
        "hosts: all\nsteps:\n  - id: who\n    ssh: { cmd: \"echo ran-here; cat\", stdin: piped, env: { X: \"1\" } }\n    timeout: 20s\n  - id: put\n    sftp_put: { content: x, dest: /tmp/never }\n    timeout: 20s\n",
    )
    .file(
        "hosts",
        "ctl ansible_connection=local ansible_host=192.0.2.1\n",
    );
    let hosts = case.path("hosts");
    let case = case.inventory_file(hosts);
    let out = case.run();
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.status("ctl", "who"), "changed", "{}", out.stderr);
    let who = out.task("ctl", "who");
    assert_eq!(who["output"]["stdout"], "ran-here\npiped", "{who}");
    assert_eq!(out.status("ctl", "put"), "failed");
    assert!(
        out.all()
            .contains("`sftp_put` needs SSH, and host `ctl` is `ansible_connection: local`"),
        "{}",
        out.all()
    );
}

/// `-o ProxyCommand=…` in `ansible_ssh_common_args` / `_extra_args` is the host's
/// ProxyCommand, tokens expanded for the address ssh would be given; `-J` before it wins, as
/// in ssh.
#[test]
fn proxy_command_in_ssh_args_is_the_connection_s() {
    let case = repo().join("tests/fixtures/ansible/39-proxycommand");
    let home = tempfile::tempdir().expect("tempdir");
    let host = |name: &str| -> Value {
        let out = Command::new(crate::harness::sortie_bin())
            .args(["inventory", "-i", "hosts", "--host", name])
            .current_dir(&case)
            .env("HOME", home.path())
            .output()
            .expect("sortie");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).expect("JSON")["connection"].clone()
    };
    assert_eq!(
        host("w1")["proxy_command"],
        "ssh -W w1:22 -q jump.example.com"
    );
    assert_eq!(host("w2")["proxy_command"], "nc 10.0.0.2 22");
    let w3 = host("w3");
    assert_eq!(w3["proxy_command"], Value::Null);
    assert_eq!(w3["jump"][0]["address"], "j1");
}
