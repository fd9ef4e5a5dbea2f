//! Loading inventories: the files and folders named with `-i` (or text held by a caller) are
//! read, told apart by their shape — sortie's native YAML (`native`), Ansible INI or YAML
//! (`ansible`) — and read into one `Raw` model in order, Ansible `group_vars/` and
//! `host_vars/` folders included; then `resolve` makes the `Inventory`.
//!
//! Input comes from the CLI (`app`) and tests; output is an `Inventory` or every problem found,
//! located, as `Diagnostics`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::raw::Raw;
use super::resolve::resolve;
use super::{Inventory, InventoryFile, ansible, native};
use crate::diag::{Diagnostic, Diagnostics, Span, register_source};
use crate::yaml;

/// Reads the inventories named with `-i`, in order (a later file adds hosts and groups and
/// overrides vars and settings key by key), and resolves them. A directory reads every
/// inventory file in it, by name. Every problem found is returned, located.
pub fn load(paths: &[PathBuf]) -> Result<Inventory, Diagnostics> {
    let mut raw = Raw::default();
    let mut diags = Diagnostics::default();
    let mut var_dirs: Vec<PathBuf> = Vec::new();
    let mut sources = Vec::new();
    for path in paths {
        sources.push(path.display().to_string());
        if path.is_dir() {
            load_dir(path, &mut raw, &mut diags, &mut var_dirs);
        } else if let Some(true) = load_file(path, &mut raw, &mut diags) {
            let dir = path.parent().unwrap_or(Path::new(""));
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            var_dirs.push(dir.to_path_buf());
        }
    }
    let mut seen = HashSet::new();
    for dir in var_dirs {
        if seen.insert(dir.clone()) {
            ansible::load_var_dirs(&dir, &mut raw, &mut diags);
        }
    }
    if diags.has_errors() {
        return Err(diags);
    }
    resolve(raw, sources)
}

/// Reads one inventory from text (registered under `name`), as `load` reads a file; relative
/// paths in it are relative to the current directory. For tests and callers holding the text.
pub fn load_str(name: &str, text: &str) -> Result<Inventory, Diagnostics> {
    let mut raw = Raw::default();
    let mut diags = Diagnostics::default();
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    load_text(name, text, &cwd, &mut raw, &mut diags);
    if diags.has_errors() {
        return Err(diags);
    }
    resolve(raw, vec![name.to_string()])
}

/// When no `-i` is given: one host `localhost` at 127.0.0.1, in `all` (and `ungrouped`).
pub fn implicit_localhost() -> Inventory {
    let mut raw = Raw::default();
    raw.host("localhost", None).address = Some("127.0.0.1".into());
    raw.add_member("ungrouped", "localhost");
    resolve(raw, Vec::new()).unwrap_or_default()
}

/// The JSON Schema of the native inventory format.
pub fn schema() -> schemars::Schema {
    schemars::schema_for!(InventoryFile)
}

/// Files in an inventory directory that are not inventories (Ansible's default ignore list).
const IGNORED_EXTENSIONS: &[&str] = &[
    "orig", "cfg", "retry", "pyc", "pyo", "swp", "bak", "rpm", "md", "txt", "rst",
];

fn load_dir(dir: &Path, raw: &mut Raw, diags: &mut Diagnostics, var_dirs: &mut Vec<PathBuf>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            diags.push(unreadable(dir, &e));
            return;
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
            !name.starts_with('.') && !name.ends_with('~') && !IGNORED_EXTENSIONS.contains(&ext)
        })
        .collect();
    files.sort();
    for f in files {
        load_file(&f, raw, diags);
    }
    var_dirs.push(dir.to_path_buf());
}

/// Reads one file into `raw`. Returns whether it was an Ansible inventory (whose folder may
/// hold `group_vars/` and `host_vars/`), or None when it could not be read.
fn load_file(path: &Path, raw: &mut Raw, diags: &mut Diagnostics) -> Option<bool> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            diags.push(unreadable(path, &e));
            return None;
        }
    };
    let name = path.display().to_string();
    let text = match crate::diag::utf8_text(&name, bytes, "inventory") {
        Ok(text) => text,
        Err(d) => {
            diags.push(d);
            return None;
        }
    };
    if text.starts_with("#!") && is_executable(path) {
        let file = register_source(name.clone(), text.as_str());
        diags.push(
            Diagnostic::error(format!("`{name}` is a dynamic inventory script"))
                .at(Span::point(file, 1, 1))
                .label("sortie reads inventory files; it does not run scripts")
                .help("run the script once and save its output, e.g. as an Ansible YAML inventory"),
        );
        return None;
    }
    let base = std::path::absolute(path)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."));
    Some(load_text(&name, &text, &base, raw, diags))
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(_: &Path) -> bool {
    false
}

fn unreadable(path: &Path, e: &std::io::Error) -> Diagnostic {
    let why = match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    };
    Diagnostic::error(format!("cannot read inventory `{}`", path.display()))
        .label(why)
        .help("check the path given with `-i`")
}

/// The formats an inventory text can be in.
enum Format {
    Ini,
    AnsibleYaml(yaml::Node),
    Native(yaml::Node),
}

/// Parses `text` in whichever format it is. Returns whether it was an Ansible format.
fn load_text(name: &str, text: &str, base: &Path, raw: &mut Raw, diags: &mut Diagnostics) -> bool {
    let file = register_source(name, text);
    if let Some(d) = ansible::vault_error(file, text, "inventory") {
        diags.push(d);
        return false;
    }
    match detect(name, file, text) {
        Ok(Format::Ini) => {
            ansible::load_ini(file, text, raw, diags);
            true
        }
        Ok(Format::AnsibleYaml(node)) => {
            ansible::load_yaml(&node, raw, diags);
            true
        }
        Ok(Format::Native(node)) => {
            native::load(&node, base, raw, diags);
            false
        }
        Err(d) => {
            diags.push(d);
            false
        }
    }
}

/// Native top-level keys.
const NATIVE_KEYS: &[&str] = &["ssh", "vars", "groups", "hosts"];
/// Keys of an Ansible YAML group.
const ANSIBLE_GROUP_KEYS: &[&str] = &["hosts", "children", "vars"];

/// INI when the first meaningful line opens a `[section]` or the text is not a YAML mapping
/// (files named `.yml`, `.yaml` or `.json` are always YAML); Ansible YAML when the mapping is
/// made of groups (`all:` with `hosts`/`children`/`vars`); else sortie's native format.
fn detect(name: &str, file: crate::diag::FileId, text: &str) -> Result<Format, Diagnostic> {
    let lower = name.to_ascii_lowercase();
    let yaml_name = [".yml", ".yaml", ".json"]
        .iter()
        .any(|e| lower.ends_with(e));
    if !yaml_name {
        let first = text
            .split('\n')
            .enumerate()
            .map(|(n, l)| (n, l.trim()))
            .find(|(_, l)| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'));
        if let Some((n, l)) = first {
            if lower.ends_with(".toml") || toml_header(l) {
                let line = u32::try_from(n + 1).unwrap_or(1);
                return Err(unsupported(file, line, l, "a TOML inventory")
                    .help("convert it to an Ansible YAML or INI inventory, e.g. with `ansible-inventory -i FILE --list -y`"));
            }
            if l.starts_with('[') {
                return Ok(Format::Ini);
            }
        }
    }
    let node = match yaml::parse(file, text) {
        Ok(n) => n,
        Err(d) if yaml_name => return Err(d),
        Err(_) => return Ok(Format::Ini),
    };
    let Some(map) = node.as_map() else {
        if yaml_name || node.is_null() {
            return Ok(Format::Native(node));
        }
        return Ok(Format::Ini);
    };
    if let Some((k, v)) = map.iter().find(|(k, _)| k.key_text() == "plugin") {
        let plugin = v.as_str().unwrap_or("?");
        return Err(Diagnostic::error("this format is not supported: an inventory plugin's configuration")
            .at(Span::new(file, k.span.line, k.span.col, v.span.end_line, v.span.end_col.max(k.span.col + 1)))
            .label(format!("sortie cannot run the inventory plugin `{plugin}`"))
            .help("save what the plugin produces and point sortie at that: `ansible-inventory -i FILE --list -y > hosts.yml`"));
    }
    let group_shaped = |v: &yaml::Node| {
        v.is_null()
            || v.as_map().is_some_and(|m| {
                m.iter()
                    .all(|(k, _)| ANSIBLE_GROUP_KEYS.contains(&k.key_text().as_str()))
            })
    };
    let keys: Vec<String> = map.iter().map(|(k, _)| k.key_text()).collect();
    let has_all = map
        .iter()
        .any(|(k, v)| k.key_text() == "all" && v.as_map().is_some() && group_shaped(v));
    let no_native = !keys.iter().any(|k| NATIVE_KEYS.contains(&k.as_str()));
    if has_all || (no_native && map.iter().all(|(_, v)| group_shaped(v))) {
        return Ok(Format::AnsibleYaml(node));
    }
    Ok(Format::Native(node))
}

/// A TOML table header as Ansible's TOML inventories write them: `[web.hosts]`, `[all.vars]`,
/// `[prod.children]` (INI would read a group named `web.hosts`).
fn toml_header(line: &str) -> bool {
    let Some(inner) = line.strip_prefix('[').and_then(|l| l.split(']').next()) else {
        return false;
    };
    let inner = inner.trim_matches(['[', ' ']);
    [".hosts", ".vars", ".children"]
        .iter()
        .any(|s| inner.ends_with(s))
}

/// "this format is not supported", at the first meaningful line.
fn unsupported(file: crate::diag::FileId, line: u32, text: &str, what: &str) -> Diagnostic {
    let width = u32::try_from(text.chars().count()).unwrap_or(1).max(1);
    Diagnostic::error(format!("this format is not supported: {what}"))
        .at(Span::new(file, line, 1, line, 1 + width))
        .label("sortie reads Ansible INI and YAML inventories and its own YAML")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::tests::{host, names};
    use crate::units::Duration;
    use indexmap::IndexMap;
    use serde_json::json;

    #[test]
    fn implicit_localhost_is_one_host_in_all() {
        let i = implicit_localhost();
        assert_eq!(i.hosts.len(), 1);
        let h = host(&i, "localhost");
        assert_eq!(h.address, "127.0.0.1");
        assert_eq!(h.groups, ["all", "ungrouped"]);
        assert!(i.sources.is_empty());
        assert_eq!(names(i.select("all", None)), ["localhost"]);
    }

    #[test]
    fn several_files_merge_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a.yml");
        let b = dir.path().join("b.yml");
        std::fs::write(
            &a,
            "vars: { x: 1, y: 1 }\ngroups: { web: { hosts: { w1: {} } } }\n",
        )
        .expect("write");
        std::fs::write(
            &b,
            "vars: { y: 2 }\ngroups: { web: { hosts: { w2: {} } }, db: { hosts: { d1: {} } } }\n",
        )
        .expect("write");
        let i = load(&[a, b]).expect("loads");
        assert_eq!(
            i.hosts.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(),
            ["w1", "w2", "d1"]
        );
        assert_eq!(host(&i, "w1").vars["x"], json!(1));
        assert_eq!(host(&i, "w1").vars["y"], json!(2));
        assert_eq!(i.sources.len(), 2);
    }

    #[test]
    fn unreadable_file_is_a_diagnostic() {
        let d = load(&[PathBuf::from("/nonexistent/inv.yml")]).expect_err("missing");
        assert_eq!(d.0[0].title, "cannot read inventory `/nonexistent/inv.yml`");
        assert_eq!(d.0[0].label, "no such file or directory");
        assert_eq!(
            d.0[0].help.as_deref(),
            Some("check the path given with `-i`")
        );
    }

    #[cfg(unix)]
    #[test]
    fn dynamic_inventory_scripts_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("ec2.py");
        std::fs::write(&p, "#!/usr/bin/env python3\nprint('{}')\n").expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let d = load(&[p]).expect_err("script");
        assert!(
            d.0[0]
                .title
                .ends_with("ec2.py` is a dynamic inventory script")
        );
    }

    #[test]
    fn format_detection() {
        let f = register_source("d", "");
        let ini = |t: &str| matches!(detect("hosts", f, t), Ok(Format::Ini));
        let ans = |t: &str| matches!(detect("hosts", f, t), Ok(Format::AnsibleYaml(_)));
        let nat = |t: &str| matches!(detect("hosts", f, t), Ok(Format::Native(_)));
        assert!(ini("# c\n; c\n[web]\nw1\n"));
        assert!(ini("w1 ansible_host=10.0.0.1\nw2\n"));
        assert!(ini("w1:2222\n"));
        assert!(ans("all:\n  hosts:\n    w1:\n"));
        assert!(ans("web:\n  hosts: { w1: }\ndb:\n  children: { x: }\n"));
        assert!(nat("groups: { web: {} }\n"));
        assert!(nat("group: { web: { hosts: {} } }\n"));
        assert!(nat(""));
        assert!(matches!(
            detect("x.yml", f, "[a, b]\n"),
            Ok(Format::Native(_))
        ));
        assert!(detect("x.yml", f, "a: [\n").is_err());
    }

    #[test]
    fn schema_has_descriptions() {
        let s = serde_json::to_value(schema()).expect("json");
        let text = s.to_string();
        assert!(text.contains("known_hosts file that host keys are checked against"));
        assert!(text.contains("accept-new"));
        assert_eq!(s["title"], json!("sortie inventory"));
    }

    fn fixture(name: &str) -> Inventory {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/inventory")
            .join(name);
        match load(&[path]) {
            Ok(i) => i,
            Err(d) => panic!("{name} did not load:\n{d}"),
        }
    }

    /// (name, address, port, user, groups) of a host.
    type Summary = (String, String, Option<u16>, Option<String>, Vec<String>);

    fn summary(i: &Inventory) -> Vec<Summary> {
        i.hosts
            .iter()
            .map(|h| {
                (
                    h.name.clone(),
                    h.address.clone(),
                    h.port,
                    h.user.clone(),
                    h.groups.clone(),
                )
            })
            .collect()
    }

    #[test]
    fn fixture_native() {
        let i = fixture("native.yml");
        let names: Vec<&str> = i.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "web01.example.com",
                "web02.example.com",
                "web03.example.com",
                "canary",
                "db-a",
                "db-b",
                "bastion"
            ]
        );
        let web = host(&i, "web02.example.com");
        assert_eq!(web.groups, ["all", "prod", "web"]);
        assert_eq!(
            web.vars,
            IndexMap::from([
                ("env".to_string(), json!("prod")),
                ("http_port".to_string(), json!(8081)),
                ("role".to_string(), json!("frontend")),
                ("tier".to_string(), json!("production")),
            ])
        );
        assert_eq!(web.user.as_deref(), Some("deploy"));
        assert_eq!(web.ssh.connect_timeout, Some(Duration::from_secs(10)));
        let kh = web.ssh.known_hosts.as_ref().expect("known_hosts");
        assert!(
            kh.ends_with("tests/fixtures/inventory/known_hosts"),
            "{kh:?}"
        );
        assert!(kh.is_absolute());
        let canary = host(&i, "canary");
        assert_eq!(
            (canary.address.as_str(), canary.port),
            ("10.0.0.9", Some(2222))
        );
        assert_eq!(canary.vars["canary"], json!(true));
        let db = host(&i, "db-b");
        assert_eq!(db.user.as_deref(), Some("postgres"));
        assert_eq!(db.ssh.jump.as_deref(), Some("bastion"));
        assert_eq!(db.vars["role"], json!("database"));
        assert_eq!(db.vars["http_port"], json!(8080));
        let bastion = host(&i, "bastion");
        assert_eq!(bastion.groups, ["all", "ungrouped"]);
        assert_eq!(bastion.address, "203.0.113.10");
        assert_eq!(
            names_of(&i, "prod:!canary:!db-a"),
            [
                "web01.example.com",
                "web02.example.com",
                "web03.example.com",
                "db-b"
            ]
        );
    }

    fn names_of(i: &Inventory, pattern: &str) -> Vec<String> {
        names(i.select(pattern, None))
    }

    #[test]
    fn fixture_ansible_ini() {
        let i = fixture("ansible.ini");
        let s = summary(&i);
        let row = |n: &str| s.iter().find(|r| r.0 == n).cloned().expect("host");
        let grp = |g: &[&str]| g.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(s.len(), 7);
        assert_eq!(s[0].0, "bastion.example.com");
        assert_eq!(
            row("canary.example.com"),
            (
                "canary.example.com".into(),
                "10.0.0.9".into(),
                Some(2222),
                Some("deploy".into()),
                grp(&["all", "prod", "web"])
            )
        );
        assert_eq!(row("db-a.example.com").3.as_deref(), Some("postgres"));
        assert_eq!(row("bastion.example.com").1, "203.0.113.10");
        let canary = host(&i, "canary.example.com");
        assert_eq!(canary.vars["canary"], json!(true));
        assert_eq!(canary.vars["http_port"], json!(8080));
        assert_eq!(canary.vars["tier"], json!("production"));
        assert_eq!(canary.vars["env"], json!("prod"));
        assert!(!canary.vars.contains_key("ansible_host"));
        let db = host(&i, "db-b.example.com");
        assert_eq!(db.ssh.jump.as_deref(), Some("bastion.example.com"));
        assert_eq!(db.vars["role"], json!("database"));
    }

    #[test]
    fn fixture_ansible_yaml_matches_the_ini() {
        let ini = fixture("ansible.ini");
        let yml = fixture("ansible.yml");
        assert_eq!(summary(&yml), summary(&ini));
        for (a, b) in yml.hosts.iter().zip(&ini.hosts) {
            assert_eq!(a.vars.get("role"), b.vars.get("role"), "{}", a.name);
            assert_eq!(a.vars.get("canary"), b.vars.get("canary"), "{}", a.name);
            assert_eq!(a.vars.get("tier"), b.vars.get("tier"), "{}", a.name);
            assert_eq!(a.ssh.jump, b.ssh.jump, "{}", a.name);
        }
    }

    /// Mutated fixtures never panic, and every rejection is located.
    #[test]
    fn mutated_inventories_are_rejected_with_located_diagnostics() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inventory");
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rand = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            usize::try_from(seed % (n.max(1) as u64)).unwrap_or(0)
        };
        const BITS: &[char] = &[
            '[', ']', ':', '{', '}', ',', '=', '#', '\'', '"', '\n', ' ', '-', '!', '&', '~', '*',
            'x', '9', '\t',
        ];
        for name in ["native.yml", "ansible.ini", "ansible.yml"] {
            let text = std::fs::read_to_string(dir.join(name)).expect("fixture");
            let chars: Vec<char> = text.chars().collect();
            for round in 0..400 {
                let mut c = chars.clone();
                for _ in 0..1 + rand(3) {
                    let at = rand(c.len() + 1).min(c.len());
                    match rand(4) {
                        0 => c.truncate(at),
                        1 if at < c.len() => {
                            c.remove(at);
                        }
                        2 => c.insert(at, BITS[rand(BITS.len())]),
                        _ => {
                            let end = (at + rand(40)).min(c.len());
                            let piece: Vec<char> = c[at..end].to_vec();
                            c.splice(at..at, piece);
                        }
                    }
                }
                let mutated: String = c.into_iter().collect();
                let label = format!("{round}-{name}");
                if let Err(d) = load_str(&label, &mutated) {
                    for x in &d.0 {
                        assert!(x.span.is_some(), "unlocated: {x:?}\n---\n{mutated}");
                        assert!(!x.label.is_empty(), "no label: {x:?}\n---\n{mutated}");
                        assert!(x.help.is_some(), "no help: {x:?}\n---\n{mutated}");
                    }
                }
            }
        }
    }
}
