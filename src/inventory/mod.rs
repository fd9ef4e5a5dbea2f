//! Inventories: which hosts exist, how to reach them, which groups they form, and the variables
//! each one sees. Files named with `-i` are read here — sortie's native YAML (`native`), or
//! Ansible INI and YAML inventories as they are (`ansible`), told apart by their shape — into one
//! raw model, merged in order, then resolved into `Inventory`: groups linked to parents and
//! children (checked for unknown names and cycles), host ranges expanded (`range`), and for every
//! host its groups, merged vars and SSH settings. Host patterns (`pattern`) pick hosts from it for
//! plays and `-l`. Nothing here opens a connection; `sortie check`, `plan` and `inventory` use it
//! alone, the runner reads `Host` for addresses, SSH settings and the template `host`/vars.
//!
//! Variable precedence inside an inventory, lowest first: the `all` group's vars (native:
//! top-level `vars:`), then every other group the host belongs to, ordered by depth (distance
//! from `all`, longest path) and, at equal depth, by name — so a child's vars beat its parent's
//! — then the host's own vars. SSH settings merge the same way, key by key.

// `Diagnostic` is this crate's error value everywhere; it is returned by value on purpose.
#![allow(clippy::result_large_err)]

mod ansible;
mod native;
mod pattern;
mod range;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use indexmap::{IndexMap, IndexSet};
use serde_json::Value;

use crate::diag::{Diagnostic, Diagnostics, Span, did_you_mean, register_source};
use crate::units::Duration;
use crate::yaml;

pub use native::{GroupDef, HostDef, InventoryFile};
pub use pattern::Pattern;

/// A resolved inventory: hosts in the order they were first defined, groups (`all` first,
/// `ungrouped` last), and the files it was read from.
#[derive(Clone, Debug, Default)]
pub struct Inventory {
    pub hosts: Vec<Host>,
    pub groups: IndexMap<String, Group>,
    pub sources: Vec<String>,
    /// Host name → index into `hosts`, for `host()`.
    index: HashMap<String, usize>,
}

/// A group as defined: its direct parents, children and hosts, and its own vars (not merged).
/// Groups without a parent are children of `all`; hosts in no group are in `ungrouped`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Group {
    pub name: String,
    pub parents: Vec<String>,
    pub children: Vec<String>,
    pub hosts: Vec<String>,
    pub vars: IndexMap<String, Value>,
    pub span: Option<Span>,
}

/// One target host, resolved: where to connect, every group it belongs to, the vars it sees.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Host {
    pub name: String,
    /// What to connect to: the `address` given (Ansible: `ansible_host`), else the name.
    pub address: String,
    pub port: Option<u16>,
    pub user: Option<String>,
    /// Every group it belongs to, directly or through children, in the order their vars apply:
    /// `all` first, then by depth and name.
    pub groups: Vec<String>,
    /// Merged: all vars < group vars (parent before child; same depth by name) < host vars.
    pub vars: IndexMap<String, Value>,
    /// Inventory-level `ssh:` merged with group-level and host-level settings; `user` and
    /// `port` here equal `Host::user` / `Host::port`.
    pub ssh: SshSettings,
    /// Where the host was (first) defined.
    pub span: Option<Span>,
}

/// How sortie connects to a host over SSH. Set for every host at the top of the inventory,
/// per group, or per host; the more specific level wins, key by key.
#[derive(
    Default, Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct SshSettings {
    /// Login user (default: the user running sortie).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// SSH port (default 22).
    #[serde(
        default,
        deserialize_with = "de_port",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u16>,
    /// Private key file to log in with. `~` is your home directory; a relative path is relative
    /// to the inventory file's folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_file: Option<PathBuf>,
    /// known_hosts file that host keys are checked against (default `~/.ssh/known_hosts`).
    /// `~` is your home directory; a relative path is relative to the inventory file's folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_hosts: Option<PathBuf>,
    /// What to do with host keys: `strict` (the default) treats an unknown or changed key as
    /// unreachable; `accept-new` records unknown keys but refuses changed ones; `off` accepts
    /// any key, with a loud warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key_checking: Option<HostKeyChecking>,
    /// How long to wait for the TCP connection and the SSH handshake, e.g. `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<Duration>,
    /// Name of the environment variable that holds the login password. Passwords are never
    /// written in files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// Name of the environment variable that holds the passphrase of `identity_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase_env: Option<String>,
    /// Host to connect through (like `ssh -J`): an inventory host name, or `user@host:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jump: Option<String>,
    /// Interval between keepalive messages on an idle SSH session, e.g. `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive: Option<Duration>,
}

/// Host key policy: `strict`, `accept-new` or `off`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyChecking {
    /// An unknown or changed host key makes the host unreachable.
    Strict,
    /// Unknown keys are recorded in known_hosts; changed keys are refused.
    AcceptNew,
    /// Any key is accepted (a loud warning is printed).
    Off,
}

/// Reads an optional port so that a bad one is reported at its own node.
pub(crate) fn de_port<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    use serde::Deserialize;
    Ok(Option::<Port>::deserialize(d)?.map(|p| p.0))
}

/// A TCP port, 1 to 65535.
struct Port(u16);

impl<'de> serde::Deserialize<'de> for Port {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Port;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a port from 1 to 65535")
            }
            fn visit_u64<E: serde::de::Error>(self, p: u64) -> Result<Port, E> {
                match u16::try_from(p) {
                    Ok(p) if p > 0 => Ok(Port(p)),
                    _ => Err(E::custom(format!(
                        "port {p} is out of range: expected a port from 1 to 65535"
                    ))),
                }
            }
            fn visit_i64<E: serde::de::Error>(self, p: i64) -> Result<Port, E> {
                Err(E::custom(format!(
                    "port {p} is out of range: expected a port from 1 to 65535"
                )))
            }
        }
        d.deserialize_u16(V)
    }
}

impl SshSettings {
    /// Overrides every key `over` sets.
    pub fn merge(&mut self, over: &SshSettings) {
        fn set<T: Clone>(a: &mut Option<T>, b: &Option<T>) {
            if b.is_some() {
                a.clone_from(b);
            }
        }
        set(&mut self.user, &over.user);
        set(&mut self.port, &over.port);
        set(&mut self.identity_file, &over.identity_file);
        set(&mut self.known_hosts, &over.known_hosts);
        set(&mut self.host_key_checking, &over.host_key_checking);
        set(&mut self.connect_timeout, &over.connect_timeout);
        set(&mut self.password_env, &over.password_env);
        set(&mut self.passphrase_env, &over.passphrase_env);
        set(&mut self.jump, &over.jump);
        set(&mut self.keepalive, &over.keepalive);
    }

    /// Expands `~` and makes relative key and known_hosts paths relative to `base`.
    fn resolve_paths(&mut self, base: &Path) {
        for p in [&mut self.identity_file, &mut self.known_hosts]
            .into_iter()
            .flatten()
        {
            *p = resolve_path(p, Some(base));
        }
    }
}

/// `~` and `~/x` become the home directory; other relative paths are joined to `base` if given.
pub(crate) fn resolve_path(p: &Path, base: Option<&Path>) -> PathBuf {
    if let Ok(rest) = p.strip_prefix("~") {
        if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            return PathBuf::from(home).join(rest);
        }
        return p.to_path_buf();
    }
    let joined = match base {
        Some(b) if p.is_relative() => b.join(p),
        _ => p.to_path_buf(),
    };
    // `dir/./known_hosts` → `dir/known_hosts`.
    joined
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

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
    let Ok(text) = String::from_utf8(bytes) else {
        diags.push(
            Diagnostic::error(format!("cannot read inventory `{name}`"))
                .label("the file is not UTF-8 text")
                .help("give `-i` an inventory file: sortie YAML, Ansible INI or Ansible YAML"),
        );
        return None;
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
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'));
        if first.is_some_and(|l| l.starts_with('[')) {
            return Ok(Format::Ini);
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

// ---------------------------------------------------------------------------------------------
// The raw model the loaders fill
// ---------------------------------------------------------------------------------------------

/// Everything the loaders read, before resolution. `all` holds the inventory-wide vars and SSH
/// settings.
#[derive(Default, Debug)]
pub(crate) struct Raw {
    pub groups: IndexMap<String, RawGroup>,
    pub hosts: IndexMap<String, RawHost>,
}

#[derive(Default, Debug)]
pub(crate) struct RawGroup {
    pub span: Option<Span>,
    /// Child group names with where each was named.
    pub children: Vec<(String, Option<Span>)>,
    pub hosts: IndexSet<String>,
    pub vars: IndexMap<String, Value>,
    pub ssh: SshSettings,
}

#[derive(Default, Debug)]
pub(crate) struct RawHost {
    pub span: Option<Span>,
    pub address: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub ssh: SshSettings,
    pub vars: IndexMap<String, Value>,
}

impl Raw {
    /// The group `name`, created (without a place) if it does not exist yet.
    pub fn group(&mut self, name: &str) -> &mut RawGroup {
        self.groups.entry(name.to_string()).or_default()
    }

    /// The group `name`, noting `span` as where it is defined if nothing was noted before.
    pub fn define_group(&mut self, name: &str, span: Option<Span>) -> &mut RawGroup {
        let g = self.group(name);
        if g.span.is_none() {
            g.span = span;
        }
        g
    }

    /// The host `name`, created if needed; `span` is kept from its first definition.
    pub fn host(&mut self, name: &str, span: Option<Span>) -> &mut RawHost {
        let h = self.hosts.entry(name.to_string()).or_default();
        if h.span.is_none() {
            h.span = span;
        }
        h
    }

    pub fn add_member(&mut self, group: &str, host: &str) {
        self.group(group).hosts.insert(host.to_string());
    }

    pub fn add_child(&mut self, parent: &str, child: &str, span: Option<Span>) {
        let g = self.group(parent);
        if !g.children.iter().any(|(c, _)| c == child) {
            g.children.push((child.to_string(), span));
        }
    }
}

/// Why a group name cannot be used, if it cannot: patterns split on `:` and `,`, treat `*?[]`
/// as globs and a leading `!`, `&` or `~` as operators.
pub(crate) fn bad_group_name(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("a group name cannot be empty".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_whitespace() || matches!(c, ':' | ',' | '[' | ']' | '*' | '?'))
    {
        return Some(if c.is_whitespace() {
            "a group name cannot contain spaces".into()
        } else {
            format!("`{c}` cannot appear in a group name")
        });
    }
    if let Some(c) = name.chars().next().filter(|c| matches!(c, '!' | '&' | '~')) {
        return Some(format!("a group name cannot start with `{c}`"));
    }
    None
}

pub(crate) fn group_name_error(name: &str, label: String, span: Option<Span>) -> Diagnostic {
    Diagnostic::error(format!("invalid group name `{name}`"))
        .at_opt(span)
        .label(label)
        .help("group names appear in host patterns: use letters, digits, `_`, `-` and `.`")
}

/// Most hosts one inventory may hold (all files together).
pub const MAX_HOSTS: usize = 1_000_000;

/// Checks and expands one written host name (ranges included), for an inventory that holds
/// `known` hosts so far. `at(start, len)` places a character range of the name in its file.
pub(crate) fn expand_host_name(
    name: &str,
    known: usize,
    at: impl Fn(usize, usize) -> Option<Span>,
) -> Result<Vec<String>, Diagnostic> {
    let len = name.chars().count();
    if name.trim().is_empty() {
        return Err(Diagnostic::error("empty host name")
            .at_opt(at(0, len))
            .label("a host needs a name")
            .help("write the host's name or address"));
    }
    if let Some((i, c)) = name
        .chars()
        .enumerate()
        .find(|(_, c)| c.is_whitespace() || *c == ',')
    {
        let what = if c == ',' { "commas" } else { "spaces" };
        return Err(Diagnostic::error(format!("invalid host name `{name}`"))
            .at_opt(at(i, 1))
            .label(format!("host names cannot contain {what}"))
            .help("give each host its own entry; put its IP or DNS name in `address` if needed"));
    }
    if !range::has_range(name) {
        return Ok(vec![name.to_string()]);
    }
    let names = range::expand(name).map_err(|e| {
        Diagnostic::error(e.title)
            .at_opt(at(e.start, e.len))
            .label(e.label)
            .help(e.help)
    })?;
    if known.saturating_add(names.len()) > MAX_HOSTS {
        return Err(Diagnostic::error("the inventory has too many hosts")
            .at_opt(at(0, len))
            .label(format!("this range takes it past {MAX_HOSTS} hosts"))
            .help("split the inventory, or narrow its ranges"));
    }
    Ok(names)
}

/// The span of characters `start..start+len` inside a one-line YAML scalar.
pub(crate) fn inside(node: &yaml::Node, start: usize, len: usize) -> Option<Span> {
    let quoted = matches!(
        node.kind,
        yaml::NodeKind::Scalar {
            style: yaml::Style::Quoted,
            ..
        }
    );
    let col = u32::try_from(start).ok()? + 1 + u32::from(quoted);
    Some(node.span.offset(1, col, u32::try_from(len).ok()?))
}

// ---------------------------------------------------------------------------------------------
// Resolution
// ---------------------------------------------------------------------------------------------

fn resolve(mut raw: Raw, sources: Vec<String>) -> Result<Inventory, Diagnostics> {
    let mut diags = Diagnostics::default();
    raw.group("all");
    raw.group("ungrouped");
    // Order: `all`, groups as defined, `ungrouped`.
    let mut order: Vec<String> = vec!["all".into()];
    order.extend(
        raw.groups
            .keys()
            .filter(|g| *g != "all" && *g != "ungrouped")
            .cloned(),
    );
    order.push("ungrouped".into());
    let idx: HashMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, g)| (g.as_str(), i))
        .collect();
    let n = order.len();

    // Children edges, checked.
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut edge_span: HashMap<(usize, usize), Option<Span>> = HashMap::new();
    for (p, name) in order.iter().enumerate() {
        let Some(g) = raw.groups.get(name) else {
            continue;
        };
        for (child, span) in &g.children {
            if child == "all" {
                diags.push(
                    Diagnostic::error("the group `all` cannot be a child of another group")
                        .at_opt(*span)
                        .label("`all` already contains every group")
                        .help(format!("remove `all` from the children of `{name}`")),
                );
                continue;
            }
            match idx.get(child.as_str()) {
                Some(&c) => {
                    if !children[p].contains(&c) {
                        children[p].push(c);
                        edge_span.insert((p, c), *span);
                    }
                }
                None => {
                    let label = match did_you_mean(child, order.iter().map(String::as_str)) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => "no group of this name is defined".to_string(),
                    };
                    diags.push(
                        Diagnostic::error(format!("unknown child group `{child}`"))
                            .at_opt(*span)
                            .label(label)
                            .help(format!(
                                "define the group `{child}`, or remove it from the children of `{name}`"
                            )),
                    );
                }
            }
        }
    }
    if let Some(d) = find_cycle(&children, &order, &edge_span) {
        diags.push(d);
    }
    if diags.has_errors() {
        return Err(diags);
    }

    // Parents; groups without one hang under `all`.
    let mut parents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (p, cs) in children.iter().enumerate() {
        for &c in cs {
            parents[c].push(p);
        }
    }
    for (g, ps) in parents.iter_mut().enumerate().skip(1) {
        if ps.is_empty() {
            ps.push(0);
            children[0].push(g);
        }
    }

    // Depth (longest path from `all`) and ancestors, in topological order.
    let topo = topo_order(&children, &parents);
    let mut depth = vec![0usize; n];
    let mut ancestors: Vec<Vec<usize>> = vec![Vec::new(); n];
    for &g in &topo {
        let mut anc: Vec<usize> = Vec::new();
        for &p in &parents[g] {
            depth[g] = depth[g].max(depth[p] + 1);
            anc.push(p);
            anc.extend_from_slice(&ancestors[p]);
        }
        anc.sort_unstable();
        anc.dedup();
        ancestors[g] = anc;
    }

    // Direct membership, with `ungrouped` reconciled as Ansible does.
    let host_names: Vec<String> = raw.hosts.keys().cloned().collect();
    let host_idx: HashMap<&str, usize> = host_names
        .iter()
        .enumerate()
        .map(|(i, h)| (h.as_str(), i))
        .collect();
    let mut direct: Vec<Vec<usize>> = vec![Vec::new(); host_names.len()];
    let mut group_hosts: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (g, name) in order.iter().enumerate().skip(1) {
        if let Some(rg) = raw.groups.get(name) {
            for h in &rg.hosts {
                if let Some(&hi) = host_idx.get(h.as_str()) {
                    direct[hi].push(g);
                    group_hosts[g].push(hi);
                }
            }
        }
    }
    let ungrouped = n - 1;
    for (hi, gs) in direct.iter_mut().enumerate() {
        if gs.is_empty() {
            gs.push(ungrouped);
            group_hosts[ungrouped].push(hi);
        } else if gs.len() > 1 && gs.contains(&ungrouped) {
            gs.retain(|g| *g != ungrouped);
            group_hosts[ungrouped].retain(|h| *h != hi);
        }
    }

    // Groups.
    let mut groups = IndexMap::new();
    for (g, name) in order.iter().enumerate() {
        let rg = raw.groups.get(name);
        let mut hosts = group_hosts[g].clone();
        hosts.sort_unstable();
        groups.insert(
            name.clone(),
            Group {
                name: name.clone(),
                parents: parents[g].iter().map(|p| order[*p].clone()).collect(),
                children: children[g].iter().map(|c| order[*c].clone()).collect(),
                hosts: hosts.iter().map(|h| host_names[*h].clone()).collect(),
                vars: rg.map(|r| r.vars.clone()).unwrap_or_default(),
                span: rg.and_then(|r| r.span),
            },
        );
    }

    // Hosts.
    let mut hosts = Vec::with_capacity(host_names.len());
    for (hi, (name, rh)) in raw.hosts.iter().enumerate() {
        let mut member: Vec<usize> = vec![0];
        for &g in &direct[hi] {
            member.push(g);
            member.extend_from_slice(&ancestors[g]);
        }
        member.sort_unstable();
        member.dedup();
        member.sort_by(|a, b| (depth[*a], &order[*a]).cmp(&(depth[*b], &order[*b])));
        let mut vars = IndexMap::new();
        let mut ssh = SshSettings::default();
        for &g in &member {
            if let Some(rg) = raw.groups.get(&order[g]) {
                vars.extend(rg.vars.iter().map(|(k, v)| (k.clone(), v.clone())));
                ssh.merge(&rg.ssh);
            }
        }
        vars.extend(rh.vars.iter().map(|(k, v)| (k.clone(), v.clone())));
        ssh.merge(&rh.ssh);
        let user = rh.user.clone().or_else(|| ssh.user.clone());
        let port = rh.port.or(ssh.port);
        ssh.user.clone_from(&user);
        ssh.port = port;
        hosts.push(Host {
            name: name.clone(),
            address: rh.address.clone().unwrap_or_else(|| name.clone()),
            port,
            user,
            groups: member.iter().map(|g| order[*g].clone()).collect(),
            vars,
            ssh,
            span: rh.span,
        });
    }
    let index = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| (h.name.clone(), i))
        .collect();
    Ok(Inventory {
        hosts,
        groups,
        sources,
        index,
    })
}

/// The first cycle among children edges, as a diagnostic naming every group on it.
fn find_cycle(
    children: &[Vec<usize>],
    order: &[String],
    edge_span: &HashMap<(usize, usize), Option<Span>>,
) -> Option<Diagnostic> {
    // Iterative DFS: 0 = new, 1 = on the stack, 2 = done.
    let n = children.len();
    let mut state = vec![0u8; n];
    for root in 0..n {
        if state[root] != 0 {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        state[root] = 1;
        while let Some(top) = stack.last_mut() {
            let g = top.0;
            if let Some(&c) = children[g].get(top.1) {
                top.1 += 1;
                match state[c] {
                    0 => {
                        state[c] = 1;
                        stack.push((c, 0));
                    }
                    1 => {
                        let from = stack.iter().position(|(s, _)| *s == c).unwrap_or(0);
                        let cycle: Vec<usize> = stack[from..].iter().map(|(s, _)| *s).collect();
                        return Some(cycle_diagnostic(&cycle, order, edge_span));
                    }
                    _ => {}
                }
            } else {
                state[g] = 2;
                stack.pop();
            }
        }
    }
    None
}

fn cycle_diagnostic(
    cycle: &[usize],
    order: &[String],
    edge_span: &HashMap<(usize, usize), Option<Span>>,
) -> Diagnostic {
    let mut path: Vec<String> = cycle.iter().map(|g| format!("`{}`", order[*g])).collect();
    path.push(format!("`{}`", order[cycle[0]]));
    let last = cycle[cycle.len() - 1];
    let first = cycle[0];
    let mut d = Diagnostic::error(format!("cycle in group children: {}", path.join(" → ")))
        .at_opt(edge_span.get(&(last, first)).copied().flatten())
        .label(format!(
            "`{}` is a child of `{}` here, which closes the cycle",
            order[first], order[last]
        ))
        .help("a group cannot contain itself: remove one of these `children` entries");
    for w in cycle.windows(2) {
        if let Some(Some(s)) = edge_span.get(&(w[0], w[1])) {
            d = d.also(
                *s,
                format!("`{}` is a child of `{}` here", order[w[1]], order[w[0]]),
            );
        }
    }
    d
}

/// Kahn's order over the (acyclic) children graph, starting from `all`.
fn topo_order(children: &[Vec<usize>], parents: &[Vec<usize>]) -> Vec<usize> {
    let n = children.len();
    let mut missing: Vec<usize> = parents.iter().map(Vec::len).collect();
    let mut queue: std::collections::VecDeque<usize> =
        (0..n).filter(|g| missing[*g] == 0).collect();
    let mut out = Vec::with_capacity(n);
    while let Some(g) = queue.pop_front() {
        out.push(g);
        for &c in &children[g] {
            missing[c] -= 1;
            if missing[c] == 0 {
                queue.push_back(c);
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Queries and output
// ---------------------------------------------------------------------------------------------

impl Inventory {
    /// The hosts `pattern` selects (see `Pattern`), in inventory order. `span` is where the
    /// pattern was written, for the diagnostic when it names nothing known.
    pub fn select(&self, pattern: &str, span: Option<Span>) -> Result<Vec<&Host>, Diagnostic> {
        Pattern::parse(pattern, span)?.resolve(self)
    }

    pub fn host(&self, name: &str) -> Option<&Host> {
        match self.index.get(name).and_then(|i| self.hosts.get(*i)) {
            Some(h) if h.name == name => Some(h),
            _ => self.hosts.iter().find(|h| h.name == name),
        }
    }

    /// `sortie inventory --list`: the selected hosts with everything resolved, and the groups
    /// that hold them.
    pub fn to_json(&self, selected: &[&Host]) -> Value {
        let shown = self.shown_groups(selected);
        let names: HashSet<&str> = selected.iter().map(|h| h.name.as_str()).collect();
        let hosts: serde_json::Map<String, Value> = selected
            .iter()
            .map(|h| (h.name.clone(), h.to_json()))
            .collect();
        let groups: serde_json::Map<String, Value> = self
            .groups
            .values()
            .filter(|g| shown.contains(g.name.as_str()))
            .map(|g| {
                let mut o = serde_json::Map::new();
                o.insert(
                    "children".into(),
                    g.children
                        .iter()
                        .filter(|c| shown.contains(c.as_str()))
                        .cloned()
                        .collect(),
                );
                o.insert(
                    "hosts".into(),
                    g.hosts
                        .iter()
                        .filter(|h| names.contains(h.as_str()))
                        .cloned()
                        .collect(),
                );
                o.insert(
                    "vars".into(),
                    Value::Object(g.vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
                );
                (g.name.clone(), Value::Object(o))
            })
            .collect();
        serde_json::json!({ "hosts": hosts, "groups": groups })
    }

    /// `sortie inventory --graph`: groups and hosts as a tree, the way `ansible-inventory
    /// --graph` draws it; only groups holding a selected host appear.
    pub fn graph(&self, selected: &[&Host]) -> String {
        let shown = self.shown_groups(selected);
        let names: HashSet<&str> = selected.iter().map(|h| h.name.as_str()).collect();
        let mut out = String::new();
        let mut lines = 0usize;
        // (group, depth); a group under several parents is drawn under each.
        let mut stack: Vec<(&str, usize)> = vec![("all", 0)];
        while let Some((g, d)) = stack.pop() {
            let Some(group) = self.groups.get(g) else {
                continue;
            };
            lines += 1;
            if lines > GRAPH_MAX_LINES {
                out.push_str("  …\n");
                break;
            }
            out.push_str(&graph_line(&format!("@{g}:"), d));
            for h in group.hosts.iter().filter(|h| names.contains(h.as_str())) {
                out.push_str(&graph_line(h, d + 1));
            }
            for c in group.children.iter().rev() {
                if shown.contains(c.as_str()) && d < 64 {
                    stack.push((c, d + 1));
                }
            }
        }
        out
    }

    fn shown_groups<'a>(&'a self, selected: &[&'a Host]) -> HashSet<&'a str> {
        let mut shown: HashSet<&str> = HashSet::from(["all"]);
        for h in selected {
            shown.extend(h.groups.iter().map(String::as_str));
        }
        shown
    }
}

/// Past this many groups drawn, `graph` stops (groups under many parents multiply).
const GRAPH_MAX_LINES: usize = 100_000;

fn graph_line(name: &str, depth: usize) -> String {
    if depth == 0 {
        format!("{name}\n")
    } else {
        format!("{}--{name}\n", "  |".repeat(depth))
    }
}

impl Host {
    /// Everything resolved about this host, as JSON (for `sortie inventory` and reports).
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "name": self.name,
            "address": self.address,
            "port": self.port,
            "user": self.user,
            "groups": self.groups,
            "vars": Value::Object(self.vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
            "ssh": serde_json::to_value(&self.ssh).unwrap_or(Value::Null),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// Loads an inventory from text, panicking with the rendered diagnostics on failure.
    pub(crate) fn inv(text: &str) -> Inventory {
        match load_str("inv.yml", text) {
            Ok(i) => i,
            Err(d) => panic!("inventory did not load:\n{d}"),
        }
    }

    pub(crate) fn err(name: &str, text: &str) -> Vec<Diagnostic> {
        match load_str(name, text) {
            Ok(_) => panic!("inventory loaded but should not"),
            Err(d) => d.0,
        }
    }

    fn host<'a>(i: &'a Inventory, name: &str) -> &'a Host {
        i.host(name).expect("host exists")
    }

    #[test]
    fn precedence_all_vars_are_the_base() {
        let i = inv("vars: { env: prod, tier: base }\nhosts: { h1: {} }\n");
        assert_eq!(host(&i, "h1").vars["env"], json!("prod"));
        assert_eq!(host(&i, "h1").vars["tier"], json!("base"));
    }

    #[test]
    fn precedence_group_over_all() {
        let i = inv(
            "vars: { tier: base }\ngroups: { web: { hosts: { h1: {} }, vars: { tier: web } } }\n",
        );
        assert_eq!(host(&i, "h1").vars["tier"], json!("web"));
    }

    #[test]
    fn precedence_child_over_parent() {
        // `prod` is defined first and lists `web` as a child: web's vars still win.
        let i = inv(
            "groups:\n  prod: { children: [web], vars: { tier: prod, only_prod: 1 } }\n  web: { hosts: { h1: {} }, vars: { tier: web } }\n",
        );
        let h = host(&i, "h1");
        assert_eq!(h.vars["tier"], json!("web"));
        assert_eq!(h.vars["only_prod"], json!(1));
        assert_eq!(h.groups, ["all", "prod", "web"]);
    }

    #[test]
    fn precedence_depth_is_the_longest_path() {
        // c sits under a (all→a→c, depth 2) and under b (all→a→b→c, depth 3): the longest
        // path counts, so c (3) applies after b (2) and wins.
        let i = inv(
            "groups:\n  a: { children: [b, c], vars: { x: a } }\n  b: { children: [c], vars: { x: b } }\n  c: { hosts: { h1: {} }, vars: { x: c } }\n",
        );
        assert_eq!(host(&i, "h1").vars["x"], json!("c"));
        assert_eq!(host(&i, "h1").groups, ["all", "a", "b", "c"]);
    }

    #[test]
    fn precedence_equal_depth_by_name_later_wins() {
        // zeta is defined first, but at equal depth alphabetical order applies: zeta wins.
        let i = inv(
            "groups:\n  zeta: { hosts: { h1: {} }, vars: { x: zeta } }\n  alpha: { hosts: { h1: {} }, vars: { x: alpha } }\n",
        );
        let h = host(&i, "h1");
        assert_eq!(h.vars["x"], json!("zeta"));
        assert_eq!(h.groups, ["all", "alpha", "zeta"]);
    }

    #[test]
    fn precedence_host_over_groups() {
        let i = inv(
            "vars: { x: all }\ngroups:\n  web: { hosts: { h1: { vars: { x: host } } }, vars: { x: web } }\n",
        );
        assert_eq!(host(&i, "h1").vars["x"], json!("host"));
    }

    #[test]
    fn ssh_settings_merge_by_level() {
        let i = inv(
            "ssh: { user: deploy, port: 22, connect_timeout: 10s, host_key_checking: strict }\ngroups:\n  web:\n    ssh: { port: 2200, host_key_checking: accept-new }\n    hosts:\n      w1: {}\n      w2: { port: 2222, ssh: { user: root, keepalive: 30s } }\n      w3: { user: admin, jump: bastion }\n",
        );
        let w1 = host(&i, "w1");
        assert_eq!(w1.port, Some(2200));
        assert_eq!(w1.user.as_deref(), Some("deploy"));
        assert_eq!(w1.ssh.host_key_checking, Some(HostKeyChecking::AcceptNew));
        assert_eq!(w1.ssh.connect_timeout, Some(Duration::from_secs(10)));
        let w2 = host(&i, "w2");
        assert_eq!((w2.port, w2.ssh.port), (Some(2222), Some(2222)));
        assert_eq!(w2.user.as_deref(), Some("root"));
        assert_eq!(w2.ssh.keepalive, Some(Duration::from_secs(30)));
        let w3 = host(&i, "w3");
        assert_eq!(w3.user.as_deref(), Some("admin"));
        assert_eq!(w3.ssh.user.as_deref(), Some("admin"));
        assert_eq!(w3.ssh.jump.as_deref(), Some("bastion"));
    }

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

    fn names(r: Result<Vec<&Host>, Diagnostic>) -> Vec<String> {
        r.expect("selects").iter().map(|h| h.name.clone()).collect()
    }

    #[test]
    fn groups_link_to_all_and_ungrouped() {
        let i = inv(
            "hosts: { lone: {}, w1: {} }\ngroups:\n  web: { hosts: [w1] }\n  prod: { children: [web] }\n",
        );
        assert_eq!(
            i.groups.keys().collect::<Vec<_>>(),
            ["all", "web", "prod", "ungrouped"]
        );
        assert_eq!(i.groups["all"].children, ["prod", "ungrouped"]);
        assert_eq!(i.groups["web"].parents, ["prod"]);
        assert_eq!(i.groups["prod"].parents, ["all"]);
        assert_eq!(i.groups["ungrouped"].hosts, ["lone"]);
        assert_eq!(i.groups["web"].hosts, ["w1"]);
        assert_eq!(host(&i, "w1").groups, ["all", "prod", "web"]);
        assert_eq!(host(&i, "lone").groups, ["all", "ungrouped"]);
    }

    #[test]
    fn unknown_child_group_suggests() {
        let d = err("c.yml", "groups:\n  web: {}\n  prod: { children: [wev] }\n");
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].title, "unknown child group `wev`");
        assert_eq!(d[0].label, "did you mean `web`?");
        assert_eq!(
            d[0].help.as_deref(),
            Some("define the group `wev`, or remove it from the children of `prod`")
        );
        let s = d[0].span.expect("span");
        assert_eq!((s.line, s.col, s.end_col), (3, 22, 25));
    }

    #[test]
    fn cycles_show_the_whole_cycle() {
        let d = err(
            "cy.yml",
            "groups:\n  a: { children: [b] }\n  b: { children: [c] }\n  c: { children: [a] }\n",
        );
        assert_eq!(d[0].title, "cycle in group children: `a` → `b` → `c` → `a`");
        assert_eq!(
            d[0].label,
            "`a` is a child of `c` here, which closes the cycle"
        );
        assert_eq!(d[0].span.map(|s| s.line), Some(4));
        assert_eq!(d[0].secondary.len(), 2);
        assert_eq!(d[0].secondary[0].1, "`b` is a child of `a` here");
        let d = err("self.yml", "groups:\n  a: { children: [a] }\n");
        assert_eq!(d[0].title, "cycle in group children: `a` → `a`");
    }

    #[test]
    fn all_cannot_be_a_child() {
        let d = err("all.yml", "groups:\n  web: { children: [all] }\n");
        assert_eq!(
            d[0].title,
            "the group `all` cannot be a child of another group"
        );
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

    #[test]
    fn list_json_and_graph() {
        let i = inv(
            "hosts: { lone: {} }\ngroups:\n  web: { hosts: { w1: { address: 10.0.0.1 } }, vars: { role: fe } }\n  prod: { children: [web] }\n  db: { hosts: { d1: {} } }\n",
        );
        let all: Vec<&Host> = i.hosts.iter().collect();
        assert_eq!(
            i.graph(&all),
            "@all:\n  |--@prod:\n  |  |--@web:\n  |  |  |--w1\n  |--@db:\n  |  |--d1\n  |--@ungrouped:\n  |  |--lone\n"
        );
        let web = i.select("web", None).expect("web");
        assert_eq!(
            i.graph(&web),
            "@all:\n  |--@prod:\n  |  |--@web:\n  |  |  |--w1\n"
        );
        let j = i.to_json(&web);
        assert_eq!(j["hosts"]["w1"]["address"], json!("10.0.0.1"));
        assert_eq!(j["hosts"]["w1"]["vars"]["role"], json!("fe"));
        assert_eq!(j["hosts"]["w1"]["groups"], json!(["all", "prod", "web"]));
        assert_eq!(j["groups"]["all"]["children"], json!(["prod"]));
        assert_eq!(j["groups"]["web"]["vars"], json!({"role": "fe"}));
        assert!(j["groups"].get("db").is_none());
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
