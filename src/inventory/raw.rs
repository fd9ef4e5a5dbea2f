//! The raw model the loaders fill, before resolution: groups with their children, hosts and
//! vars, hosts with their settings, as read from every `-i` file in order. Also the rules every
//! loader shares for the names it reads: valid group names, host names (ranges expanded by
//! `range`, capped at `MAX_HOSTS`) and where a part of a name stands in its file.
//!
//! The native and Ansible loaders fill a `Raw`; `resolve` turns it into an `Inventory`.

use indexmap::{IndexMap, IndexSet};
use serde_json::Value;

use super::SshSettings;
use super::range;
use crate::diag::{Diagnostic, Span};
use crate::yaml;

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
    /// Variables from Ansible `group_vars/` files, which apply after every group's `vars`.
    pub dir_vars: IndexMap<String, Value>,
    /// Ansible's `ansible_group_priority`: orders groups of equal depth (default 1).
    pub priority: Option<i64>,
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
    /// Read from an Ansible inventory: its connection variables (`ansible_host`, …) become
    /// its settings once merged.
    pub ansible: bool,
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

/// Most hosts one inventory may hold (all files together): enough for the largest fleets one
/// runner serves (shards split bigger ones), few enough that loading stays within memory.
pub const MAX_HOSTS: usize = 200_000;

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
