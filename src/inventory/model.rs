//! The resolved inventory's types: `Inventory`, `Group`, `Host`, and the SSH settings
//! (`SshSettings`, `HostKeyChecking`) that are read from inventory files and merged per host.
//!
//! `resolve` fills `Inventory`, `Group` and `Host`; the native and Ansible loaders read
//! `SshSettings` (with `de_port` for a located port error and `resolve_path` for `~` and
//! relative paths). The runner and `conn` read `Host` for addresses and SSH settings, templates
//! read its vars.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde_json::Value;

use crate::diag::Span;
use crate::units::Duration;

/// A resolved inventory: hosts in the order they were first defined, groups (`all` first,
/// `ungrouped` last), and the files it was read from.
#[derive(Clone, Debug, Default)]
pub struct Inventory {
    pub hosts: Vec<Host>,
    pub groups: IndexMap<String, Group>,
    pub sources: Vec<String>,
    /// Host name → index into `hosts`, for `host()`.
    pub(super) index: HashMap<String, usize>,
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
    /// Runs on the runner, never over SSH (Ansible's `ansible_connection: local`).
    pub local: bool,
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
    /// Command whose stdin and stdout carry the SSH connection, as ssh's `ProxyCommand` (run
    /// with `/bin/sh -c`, `%h %p %r %n %k %%` expanded; `none`: connect directly). Like `-o
    /// ProxyCommand=…` it wins over ssh_config; it and `jump` exclude each other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_command: Option<String>,
    /// Interval between keepalive messages on an idle SSH session, e.g. `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive: Option<Duration>,
    /// The ssh_config file to read instead of `~/.ssh/config` and `/etc/ssh/ssh_config`, like
    /// `ssh -F` (relative to the inventory file's folder); `none` reads none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_file: Option<PathBuf>,
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
        set(&mut self.proxy_command, &over.proxy_command);
        set(&mut self.keepalive, &over.keepalive);
        set(&mut self.config_file, &over.config_file);
    }

    /// Expands `~` and makes relative key and known_hosts paths relative to `base`.
    pub(super) fn resolve_paths(&mut self, base: &Path) {
        let config_file = self
            .config_file
            .as_mut()
            .filter(|p| !p.as_os_str().eq_ignore_ascii_case("none"));
        for p in [
            self.identity_file.as_mut(),
            self.known_hosts.as_mut(),
            config_file,
        ]
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
