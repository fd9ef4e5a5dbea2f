//! Where and how to connect to a host: the inventory's settings (`Host` and its `ssh:`),
//! completed from `~/.ssh/config` (read with the `ssh2-config` crate: `HostName`, `User`,
//! `Port`, `IdentityFile`, `ProxyJump`, `UserKnownHostsFile`, `StrictHostKeyChecking`,
//! `ConnectTimeout`, `ServerAliveInterval`), into one `Target` per hop that `connect.rs`
//! connects to. The inventory wins over ssh_config, ssh_config over the defaults (the local
//! user, port 22, `~/.ssh/id_*`, `~/.ssh/known_hosts`, strict host keys, 10 s, 30 s).
//!
//! A jump host (`ssh.jump` or `ProxyJump`) is an inventory host name, or `[user@]host[:port]`;
//! the latter takes the target's own inventory settings (key, known_hosts, policy, timeouts)
//! apart from its address, port and user, then ssh_config for that name. `ProxyJump a,b`
//! goes through `a`, then `b`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use ssh2_config::{ParseRule, SshConfig};

use crate::error::StepError;
use crate::inventory::{Host, HostKeyChecking, Inventory, SshSettings};

/// Default `connect_timeout`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default interval between keepalives on an idle session.
pub const KEEPALIVE: Duration = Duration::from_secs(30);
/// Jump chains longer than this are refused (and loops are caught by it).
const MAX_HOPS: usize = 8;

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

/// The home directory (`$HOME`), when there is one.
pub fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

fn expand(p: &Path) -> PathBuf {
    match (p.strip_prefix("~"), home()) {
        (Ok(rest), Some(h)) => h.join(rest),
        _ => p.to_path_buf(),
    }
}

/// `~/.ssh/config`, parsed once per process (`None` when there is no such file).
fn ssh_config() -> Result<Option<&'static SshConfig>, String> {
    static CONFIG: OnceLock<Result<Option<SshConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let Some(home) = home() else { return Ok(None) };
            let path = home.join(".ssh").join("config");
            let file = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
            };
            SshConfig::default()
                .home_dir(&home)
                .parse(
                    &mut std::io::BufReader::new(file),
                    ParseRule::ALLOW_UNKNOWN_FIELDS | ParseRule::ALLOW_UNSUPPORTED_FIELDS,
                )
                .map(Some)
                .map_err(|e| format!("cannot parse {}: {e}", path.display()))
        })
        .as_ref()
        .map(Option::as_ref)
        .map_err(Clone::clone)
}

/// What ssh_config says about one name (empty when there is no config).
#[derive(Default, Debug)]
struct FromConfig {
    host_name: Option<String>,
    user: Option<String>,
    port: Option<u16>,
    identity_files: Vec<PathBuf>,
    proxy_jump: Option<Vec<String>>,
    known_hosts: Option<Vec<PathBuf>>,
    checking: Option<HostKeyChecking>,
    connect_timeout: Option<Duration>,
    keepalive: Option<Duration>,
}

fn from_config(name: &str) -> Result<FromConfig, String> {
    let Some(cfg) = ssh_config()? else {
        return Ok(FromConfig::default());
    };
    let p = cfg.query(name);
    // Unsupported fields are kept lower-cased with their words.
    let field = |k: &str| p.unsupported_fields.get(k).filter(|v| !v.is_empty());
    let known_hosts = field("userknownhostsfile").map(|files| {
        files
            .iter()
            .filter(|f| !matches!(f.as_str(), "none" | "/dev/null"))
            .map(|f| expand(Path::new(f)))
            .collect()
    });
    let checking =
        field("stricthostkeychecking").and_then(|v| match v[0].to_ascii_lowercase().as_str() {
            "yes" | "ask" => Some(HostKeyChecking::Strict),
            "accept-new" => Some(HostKeyChecking::AcceptNew),
            "no" | "off" => Some(HostKeyChecking::Off),
            _ => None,
        });
    Ok(FromConfig {
        host_name: p
            .host_name
            .map(|h| h.replace("%h", name).replace("%%", "%")),
        user: p.user,
        port: p.port,
        identity_files: p
            .identity_file
            .unwrap_or_default()
            .iter()
            .map(|f| expand(f))
            .collect(),
        proxy_jump: p
            .proxy_jump
            .filter(|j| !(j.len() == 1 && j[0].eq_ignore_ascii_case("none")))
            .filter(|j| !j.is_empty()),
        known_hosts,
        checking,
        connect_timeout: p.connect_timeout,
        keepalive: p.server_alive_interval.filter(|d| !d.is_zero()),
    })
}

/// The name of the user running sortie.
pub fn local_user() -> String {
    if let Some(u) = ["USER", "LOGNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|u| !u.is_empty()))
    {
        return u;
    }
    let uid = rustix::process::getuid().as_raw().to_string();
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| {
            p.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2] == uid).then(|| f[0].to_string())
            })
        })
        .unwrap_or_else(|| "root".into())
}

/// Resolves the connection of an inventory host (`inventory` finds jump hosts by name).
pub fn resolve(host: &Host, inventory: Option<&Inventory>) -> Result<Target, String> {
    resolve_hop(
        &host.name,
        Some(&host.address),
        host.port,
        host.user.as_deref(),
        &host.ssh,
        inventory,
        0,
    )
}

#[allow(clippy::too_many_arguments)]
fn resolve_hop(
    name: &str,
    address: Option<&str>,
    port: Option<u16>,
    user: Option<&str>,
    ssh: &SshSettings,
    inventory: Option<&Inventory>,
    depth: usize,
) -> Result<Target, String> {
    if depth > MAX_HOPS {
        return Err(format!(
            "more than {MAX_HOPS} jump hosts (is there a loop through `{name}`?)"
        ));
    }
    let cfg = from_config(name)?;
    // An inventory address other than the name wins; otherwise ssh_config's HostName.
    let host = match address {
        Some(a) if a != name => a.to_string(),
        _ => cfg.host_name.clone().unwrap_or_else(|| name.to_string()),
    };
    let explicit_keys: Vec<PathBuf> = match &ssh.identity_file {
        Some(f) => vec![f.clone()],
        None => cfg.identity_files.clone(),
    };
    let mut known_hosts = Vec::new();
    if let Some(k) = &ssh.known_hosts {
        known_hosts.push(k.clone());
    }
    match &cfg.known_hosts {
        Some(files) => known_hosts.extend(files.iter().cloned()),
        None => known_hosts.extend(home().map(|h| h.join(".ssh").join("known_hosts"))),
    }
    known_hosts.push(PathBuf::from("/etc/ssh/ssh_known_hosts"));
    let known_hosts_write = ssh
        .known_hosts
        .clone()
        .or_else(|| cfg.known_hosts.as_ref().and_then(|f| f.first().cloned()))
        .or_else(|| home().map(|h| h.join(".ssh").join("known_hosts")))
        .unwrap_or_else(|| PathBuf::from(".ssh/known_hosts"));
    let mut target = Target {
        label: name.to_string(),
        host,
        port: port.or(ssh.port).or(cfg.port).unwrap_or(22),
        user: user
            .map(str::to_string)
            .or(ssh.user.clone())
            .or(cfg.user.clone())
            .unwrap_or_else(local_user),
        default_identities: explicit_keys.is_empty(),
        identity_files: explicit_keys,
        passphrase_env: ssh.passphrase_env.clone(),
        password_env: ssh.password_env.clone(),
        known_hosts,
        known_hosts_write,
        checking: ssh
            .host_key_checking
            .or(cfg.checking)
            .unwrap_or(HostKeyChecking::Strict),
        connect_timeout: ssh
            .connect_timeout
            .map(|d| d.std())
            .or(cfg.connect_timeout)
            .unwrap_or(CONNECT_TIMEOUT),
        keepalive: ssh
            .keepalive
            .map(|d| d.std())
            .or(cfg.keepalive)
            .unwrap_or(KEEPALIVE),
        jump: None,
    };
    let hops: Vec<String> = match &ssh.jump {
        Some(j) => j
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        None => cfg.proxy_jump.clone().unwrap_or_default(),
    };
    // `a,b`: connect to a, from a to b, from b to the target.
    let mut before: Option<Box<Target>> = None;
    for hop in hops {
        let mut t = resolve_jump(&hop, ssh, inventory, depth + 1)?;
        if let Some(prev) = before.take() {
            attach_first(&mut t, prev);
        }
        before = Some(Box::new(t));
    }
    target.jump = before;
    Ok(target)
}

/// Puts `first` in front of the whole chain that `t` already has.
fn attach_first(t: &mut Target, first: Box<Target>) {
    match &mut t.jump {
        Some(j) => attach_first(j, first),
        None => t.jump = Some(first),
    }
}

fn resolve_jump(
    spec: &str,
    from: &SshSettings,
    inventory: Option<&Inventory>,
    depth: usize,
) -> Result<Target, String> {
    if let Some(h) = inventory.and_then(|i| i.host(spec)) {
        return resolve_hop(
            &h.name,
            Some(&h.address),
            h.port,
            h.user.as_deref(),
            &h.ssh,
            inventory,
            depth,
        );
    }
    let (user, rest) = match spec.rsplit_once('@') {
        Some((u, r)) => (Some(u), r),
        None => (None, spec),
    };
    let (host, port) = split_host_port(rest).ok_or_else(|| {
        format!("jump host `{spec}` is not `[user@]host[:port]` or an inventory host")
    })?;
    // The target's inventory settings go on to its jump host, except where it connects.
    let mut ssh = from.clone();
    ssh.jump = None;
    ssh.port = None;
    let mut t = resolve_hop(
        &host,
        None,
        port,
        user.or(from.user.as_deref()),
        &ssh,
        inventory,
        depth,
    )?;
    t.label = spec.to_string();
    Ok(t)
}

/// `host`, `host:port`, `[v6]:port`.
fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((h.to_string(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h.to_string(), Some(p.parse().ok()?))),
        _ if !s.is_empty() => Some((s.to_string(), None)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, address: &str, ssh: SshSettings) -> Host {
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
    fn host_port_specs() {
        assert_eq!(split_host_port("b"), Some(("b".into(), None)));
        assert_eq!(split_host_port("b:2200"), Some(("b".into(), Some(2200))));
        assert_eq!(
            split_host_port("[::1]:2200"),
            Some(("::1".into(), Some(2200)))
        );
        assert_eq!(split_host_port("b:x"), None);
        assert_eq!(split_host_port(""), None);
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
        assert!(e.contains("jump hosts"), "{e}");
    }
}
