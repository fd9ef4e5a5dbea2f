//! Where and how to connect to a host: the inventory's settings (`Host` and its `ssh:`),
//! completed from ssh_config as OpenSSH reads it (`ssh_config`: `~/.ssh/config` then
//! `/etc/ssh/ssh_config`, or the inventory's `ssh.config_file`), into one `Target` per hop
//! that `connect.rs` connects to.
//!
//! ssh_config is asked what `ssh` would be asked: the host's address (Ansible's `ansible_host`;
//! the name when no address is given), with the inventory's `user`, `port` and `jump` as `-l`,
//! `-p` and `-J` — so they win, and `Host`/`Match` see them. The inventory's key comes before
//! the config's (`-i`), its `known_hosts` and `host_key_checking` replace the config's
//! (`-o`). A jump host (`jump`, `ProxyJump`) is an inventory host name (its own settings
//! apply) or `[user@]host[:port]`, resolved like `ssh -J` does it: through ssh_config for that
//! name, with the user and port the spec gives and no others — never the target's user. It
//! keeps the target's key, known_hosts, policy and timeouts. `ProxyJump a,b` goes through `a`,
//! then `b`. A `ProxyCommand` (ssh_config's, or the inventory's `ssh.proxy_command`, which
//! acts as `-o`) carries the hop's connection instead of TCP. `app` shows the result
//! (`connection_json`) and checks every host up front (`check_hosts`).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use super::ssh_config::{self, Jump, Query, Source};
use crate::diag::Diagnostic;
use crate::error::StepError;
use crate::inventory::{Host, HostKeyChecking, Inventory, SshSettings};

pub use super::ssh_config::expand::{home, local_user};

/// Default `connect_timeout`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default interval between keepalives on an idle session.
pub const KEEPALIVE: Duration = Duration::from_secs(30);
/// Jump chains longer than this are refused (and loops are caught by it).
const MAX_HOPS: usize = 8;
/// known_hosts files every host's key is also checked against.
const GLOBAL_KNOWN_HOSTS: [&str; 2] = ["/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"];
/// The keys tried when none is named (`auth.rs`), under `~/.ssh/`.
const DEFAULT_KEYS: [&str; 3] = ["id_ed25519", "id_ecdsa", "id_rsa"];

/// One hop of a connection, fully resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// How the user names it (the inventory name, or the jump spec), for messages.
    pub label: String,
    /// What to connect to (address or DNS name).
    pub host: String,
    pub port: u16,
    pub user: String,
    /// Keys named by the inventory or ssh_config, tried in order.
    pub identity_files: Vec<PathBuf>,
    /// Also try `~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa` (when no key was named).
    pub default_identities: bool,
    pub passphrase_env: Option<String>,
    pub password_env: Option<String>,
    /// known_hosts files read for the host key check.
    pub known_hosts: Vec<PathBuf>,
    /// Where `accept-new` records new keys.
    pub known_hosts_write: PathBuf,
    pub checking: HostKeyChecking,
    pub connect_timeout: Duration,
    pub keepalive: Duration,
    /// The hop before this one.
    pub jump: Option<Box<Target>>,
    /// The command whose stdin and stdout carry the connection instead of TCP (`proxy.rs`),
    /// tokens expanded.
    pub proxy_command: Option<String>,
}

impl Target {
    /// `user@host:port`, for messages.
    pub fn addr(&self) -> String {
        format!("{}@{}:{}", self.user, self.host, self.port)
    }

    /// The error for failing to reach this hop or to talk SSH with it (the host is
    /// unreachable), for `connect.rs`, `host_key.rs` and `auth.rs`.
    pub fn connect_error(&self, reason: impl Into<String>) -> StepError {
        StepError::Connect {
            addr: self.addr(),
            reason: reason.into(),
        }
    }
}

/// Resolves the connection of an inventory host (`inventory` finds jump hosts by name); the
/// error is the first problem on one line.
pub fn resolve(host: &Host, inventory: Option<&Inventory>) -> Result<Target, String> {
    resolve_checked(host, inventory)
        .map(|(t, _)| t)
        .map_err(|d| d.first().map(Diagnostic::one_line).unwrap_or_default())
}

/// Resolves the connection of an inventory host, with ssh_config's warnings; `Err` holds
/// every located problem.
pub fn resolve_checked(
    host: &Host,
    inventory: Option<&Inventory>,
) -> Result<(Target, Vec<Diagnostic>), Vec<Diagnostic>> {
    let mut warnings = Vec::new();
    let t = resolve_hop(
        &host.name,
        &host.address,
        host.port,
        host.user.as_deref(),
        &host.ssh,
        host.ssh.jump.as_deref(),
        inventory,
        0,
        &mut warnings,
    )?;
    Ok((t, warnings))
}

/// Resolves every host of `hosts` (ssh_config problems are errors, as for `ssh`): the
/// diagnostics of all of them, each once — for `sortie check`, `run` and `inventory`.
pub fn check_hosts(hosts: &[&Host], inventory: &Inventory) -> Vec<Diagnostic> {
    let mut out: Vec<Diagnostic> = Vec::new();
    for h in hosts {
        let ds = match resolve_checked(h, Some(inventory)) {
            Ok((_, w)) => w,
            Err(e) => e
                .into_iter()
                .map(|d| match d.span {
                    Some(_) => d,
                    None => d.note(format!(
                        "while resolving the connection of host `{}`",
                        h.name
                    )),
                })
                .collect(),
        };
        for d in ds {
            if !out.iter().any(|o| o.span == d.span && o.title == d.title) {
                out.push(d);
            }
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn resolve_hop(
    label: &str,
    address: &str,
    port: Option<u16>,
    user: Option<&str>,
    ssh: &SshSettings,
    jump: Option<&str>,
    inventory: Option<&Inventory>,
    depth: usize,
    warnings: &mut Vec<Diagnostic>,
) -> Result<Target, Vec<Diagnostic>> {
    if depth > MAX_HOPS {
        return Err(vec![Diagnostic::error(format!(
            "more than {MAX_HOPS} jump hosts (is there a loop through `{label}`?)"
        ))]);
    }
    let src = Source::from_setting(ssh.config_file.as_deref());
    let q = Query {
        host: address,
        user,
        port,
        jump,
        proxy_command: ssh.proxy_command.as_deref(),
    };
    let mut r = ssh_config::resolve(&src, &q)?;
    warnings.append(&mut r.warnings);
    let mut identity_files: Vec<PathBuf> = ssh.identity_file.iter().cloned().collect();
    for f in &r.identity_files {
        if !identity_files.contains(f) {
            identity_files.push(f.clone());
        }
    }
    let home_ssh = home().unwrap_or_default().join(".ssh");
    let user_known: Vec<PathBuf> = match (&ssh.known_hosts, &r.known_hosts) {
        (Some(k), _) => vec![k.clone()],
        (None, Some(files)) => files.clone(),
        (None, None) => vec![home_ssh.join("known_hosts"), home_ssh.join("known_hosts2")],
    };
    let known_hosts_write = user_known
        .first()
        .cloned()
        .unwrap_or_else(|| home_ssh.join("known_hosts"));
    let mut known_hosts = user_known;
    known_hosts.extend(GLOBAL_KNOWN_HOSTS.iter().map(PathBuf::from));
    let checking = ssh.host_key_checking.or_else(|| {
        r.strict
            .as_deref()
            .map(|v| match v.to_ascii_lowercase().as_str() {
                "accept-new" => HostKeyChecking::AcceptNew,
                "no" | "off" | "false" => HostKeyChecking::Off,
                _ => HostKeyChecking::Strict,
            })
    });
    let mut target = Target {
        label: label.to_string(),
        host: r.hostname.clone(),
        port: r.port,
        user: r.user.clone(),
        default_identities: ssh.identity_file.is_none() && !r.identity_named,
        identity_files,
        passphrase_env: ssh.passphrase_env.clone(),
        password_env: ssh.password_env.clone(),
        known_hosts,
        known_hosts_write,
        checking: checking.unwrap_or(HostKeyChecking::Strict),
        connect_timeout: ssh
            .connect_timeout
            .map(|d| d.std())
            .or(r.connect_timeout.map(Duration::from_secs))
            .unwrap_or(CONNECT_TIMEOUT),
        keepalive: ssh
            .keepalive
            .map(|d| d.std())
            .or(r.keepalive.filter(|s| *s > 0).map(Duration::from_secs))
            .unwrap_or(KEEPALIVE),
        jump: None,
        proxy_command: r.proxy_command.clone(),
    };
    if let Some(j) = &r.jump {
        let hop = resolve_jump(j, ssh, inventory, depth + 1, warnings)?;
        target.jump = Some(Box::new(hop));
    }
    Ok(target)
}

/// One hop as `ssh -J` makes it: `ssh [-l user] [-p port] [-J earlier,hops] host`.
fn resolve_jump(
    j: &Jump,
    from: &SshSettings,
    inventory: Option<&Inventory>,
    depth: usize,
    warnings: &mut Vec<Diagnostic>,
) -> Result<Target, Vec<Diagnostic>> {
    if let Some(h) = inventory.and_then(|i| i.host(&j.host)) {
        return resolve_hop(
            &h.name,
            &h.address,
            j.port.or(h.port),
            j.user.as_deref().or(h.user.as_deref()),
            &h.ssh,
            j.extra.as_deref().or(h.ssh.jump.as_deref()),
            inventory,
            depth,
            warnings,
        );
    }
    // The target's inventory settings go on to its jump host, except where it connects and
    // as whom.
    let mut ssh = from.clone();
    ssh.jump = None;
    ssh.proxy_command = None;
    ssh.port = None;
    ssh.user = None;
    let label = format!(
        "{}{}{}",
        j.user.as_ref().map(|u| format!("{u}@")).unwrap_or_default(),
        j.host,
        j.port.map(|p| format!(":{p}")).unwrap_or_default()
    );
    resolve_hop(
        &label,
        &j.host,
        j.port,
        j.user.as_deref(),
        &ssh,
        j.extra.as_deref(),
        inventory,
        depth,
        warnings,
    )
}

/// `connection` in `sortie inventory --host`/`--list`: where sortie connects, as whom, with
/// which keys (in order; the default ones when none is named), through which jump hosts
/// (outermost first), with which known_hosts files and host key policy.
pub fn connection_json(t: &Target) -> Value {
    let mut jump = Vec::new();
    let mut hop = t.jump.as_deref();
    while let Some(h) = hop {
        jump.push(json!({ "address": h.host, "port": h.port, "user": h.user }));
        hop = h.jump.as_deref();
    }
    jump.reverse();
    let mut keys: Vec<PathBuf> = t.identity_files.clone();
    if t.default_identities {
        let dir = home().unwrap_or_default().join(".ssh");
        keys.extend(DEFAULT_KEYS.iter().map(|k| dir.join(k)));
    }
    let known: Vec<String> = t
        .known_hosts
        .iter()
        .filter(|k| !GLOBAL_KNOWN_HOSTS.iter().any(|g| k.as_os_str() == *g))
        .map(|k| k.display().to_string())
        .collect();
    let mut out = json!({
        "address": t.host,
        "port": t.port,
        "user": t.user,
        "identity_files": keys.iter().map(|k| k.display().to_string()).collect::<Vec<_>>(),
        "jump": jump,
        "known_hosts": known,
        "host_key_checking": serde_json::to_value(t.checking).unwrap_or(Value::Null),
    });
    // Only when there is one: where the connection goes through a command.
    if let Some(pc) = &t.proxy_command {
        out["proxy_command"] = Value::String(pc.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, address: &str, mut ssh: SshSettings) -> Host {
        ssh.config_file = Some("none".into());
        Host {
            name: name.into(),
            address: address.into(),
            port: ssh.port,
            user: ssh.user.clone(),
            ssh,
            ..Default::default()
        }
    }

    #[test]
    fn inventory_settings_and_jump_spec() {
        let ssh = SshSettings {
            user: Some("deploy".into()),
            port: Some(2222),
            identity_file: Some("/k/id".into()),
            known_hosts: Some("/k/known".into()),
            jump: Some("ops@bastion:2200".into()),
            ..Default::default()
        };
        let t = resolve(&host("web1", "10.0.0.1", ssh), None).unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.user.as_str()),
            ("10.0.0.1", 2222, "deploy")
        );
        assert_eq!(t.identity_files, vec![PathBuf::from("/k/id")]);
        assert!(!t.default_identities);
        assert_eq!(t.known_hosts[0], PathBuf::from("/k/known"));
        assert_eq!(t.known_hosts_write, PathBuf::from("/k/known"));
        assert_eq!(t.checking, HostKeyChecking::Strict);
        assert_eq!(t.connect_timeout, CONNECT_TIMEOUT);
        let j = t.jump.as_ref().unwrap();
        assert_eq!(
            (j.host.as_str(), j.port, j.user.as_str()),
            ("bastion", 2200, "ops")
        );
        assert_eq!(j.identity_files, vec![PathBuf::from("/k/id")]);
        assert!(j.jump.is_none());
    }

    #[test]
    fn a_jump_host_without_user_does_not_take_the_targets() {
        let ssh = SshSettings {
            user: Some("deploy".into()),
            jump: Some("bastion".into()),
            ..Default::default()
        };
        let t = resolve(&host("t", "t", ssh), None).unwrap();
        let j = t.jump.as_ref().unwrap();
        assert_eq!(j.user, local_user());
        assert_ne!(j.user, "deploy");
        let v = connection_json(&t);
        assert_eq!(v["jump"][0]["address"], "bastion");
        assert_eq!(v["jump"][0]["port"], 22);
        assert_eq!(v["user"], "deploy");
    }

    #[test]
    fn jump_chain_goes_through_the_first_hop_first() {
        let ssh = SshSettings {
            user: Some("u".into()),
            jump: Some("a:1,b:2".into()),
            ..Default::default()
        };
        let t = resolve(&host("t", "t", ssh), None).unwrap();
        let b = t.jump.as_ref().unwrap();
        assert_eq!(b.host, "b");
        let a = b.jump.as_ref().unwrap();
        assert_eq!(a.host, "a");
        assert!(a.jump.is_none());
        let v = connection_json(&t);
        assert_eq!(v["jump"][0]["address"], "a");
        assert_eq!(v["jump"][1]["address"], "b");
    }

    #[test]
    fn a_jump_loop_is_refused() {
        let ssh = SshSettings {
            jump: Some("x".into()),
            ..Default::default()
        };
        let x = host("x", "x", ssh);
        let mut inv = Inventory::default();
        inv.hosts.push(x.clone());
        let e = resolve(&x, Some(&inv)).unwrap_err();
        assert!(e.contains("jump"), "{e}");
    }
}
