//! The test lab: real servers on loopback for sortie's tests, benchmarks and demos.
//!
//! [`ssh::SshLab`] starts OpenSSH `sshd` processes on their own 127.x.y.z addresses, [`http::HttpServer`]
//! an HTTP/1.1 server, [`tcp::TcpServer`] plain TCP listeners (open, echo, banner, slow, blackhole,
//! counter). [`Lab`] starts all of them together, on the same addresses, and writes what a playbook
//! needs into the lab directory: `inventory.yml` (sortie's native format, the listeners' ports in
//! its `vars`), `ssh_config`, `known_hosts`, the client key and `lab.json` (read back by the
//! `sortie-lab` binary's `status` and `stop`). Nothing leaves 127.0.0.0/8, and every process the
//! lab starts is stopped by the PID it recorded, when its owner is dropped.
//!
//! [`dns::DnsServer`] answers for `lab.test.` (and the lab hosts' reverse names) on 127.0.0.1; the
//! inventory's `dns_server` (`127.0.0.1:PORT`) and `dns_port` say where.

pub mod background;
pub mod dns;
pub mod http;
pub mod process;
pub mod ssh;
pub mod tcp;

use std::collections::BTreeMap;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Everything that can go wrong while starting, driving or stopping the lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{path} not found: {hint}")]
    MissingTool { path: PathBuf, hint: &'static str },
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("{what} did not finish within {after:?}")]
    Timeout { what: String, after: Duration },
    #[error("address {0} is not usable for the lab: {1}")]
    Address(Ipv4Addr, &'static str),
    #[error("port {port} is not free on {address}: {detail}")]
    PortUnavailable {
        address: String,
        port: u16,
        detail: String,
    },
    #[error(
        "sshd for {host} exited ({status}) before it was ready; its log ends with:\n{log_tail}"
    )]
    HostExited {
        host: String,
        status: String,
        log_tail: String,
    },
    #[error("no lab host with index {0}")]
    NoSuchHost(usize),
    #[error("{0}")]
    Server(String),
    #[error("lab state in {path}: {detail}")]
    State { path: PathBuf, detail: String },
}

impl LabError {
    pub fn io(what: impl Into<String>, source: io::Error) -> Self {
        LabError::Io {
            what: what.into(),
            source,
        }
    }
}

/// How to start a whole [`Lab`].
#[derive(Debug, Clone)]
pub struct LabOptions {
    pub ssh: ssh::SshLabOptions,
    /// Port of the HTTP server on every lab address; 0 picks a free one.
    pub http_port: u16,
    /// How long the counter listener holds each connection before it answers `ok`.
    pub counter_hold: Duration,
    /// How long the slow listener waits before it sends its banner.
    pub slow_delay: Duration,
    /// Port of the DNS server (UDP and TCP) on 127.0.0.1; 0 picks a free one.
    pub dns_port: u16,
}

impl LabOptions {
    pub fn new(hosts: usize, dir: impl Into<PathBuf>) -> Self {
        LabOptions {
            ssh: ssh::SshLabOptions::new(hosts, dir),
            http_port: 0,
            counter_hold: Duration::from_millis(200),
            slow_delay: Duration::from_secs(2),
            dns_port: 0,
        }
    }

    /// Options for tests that run side by side: see [`ssh::SshLabOptions::for_test`].
    pub fn for_test(hosts: usize, dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        LabOptions {
            ssh: ssh::SshLabOptions::for_test(hosts, &dir),
            ..LabOptions::new(hosts, dir)
        }
    }
}

/// The TCP listeners of a [`Lab`], one port each, bound on every lab address.
pub struct TcpListeners {
    pub open: tcp::TcpServer,
    pub echo: tcp::TcpServer,
    pub banner: tcp::TcpServer,
    pub slow: tcp::TcpServer,
    pub blackhole: tcp::TcpServer,
    pub counter: tcp::TcpServer,
    /// A port nothing listens on: connecting to it is refused.
    pub closed_port: u16,
}

/// SSH hosts, HTTP server and TCP listeners, all on 127.0.0.1 and on every SSH host's address,
/// so a playbook reaches each of them at `{{ host.address }}`.
pub struct Lab {
    pub ssh: ssh::SshLab,
    pub http: http::HttpServer,
    pub tcp: TcpListeners,
    pub dns: dns::DnsServer,
}

impl Lab {
    /// Starts everything, waits until every server answers, and writes the lab directory's files.
    pub fn start(options: LabOptions) -> Result<Lab, LabError> {
        let ssh = ssh::SshLab::start(options.ssh.clone())?;
        let mut ips = vec![Ipv4Addr::LOCALHOST];
        ips.extend(ssh.hosts().iter().map(|h| h.address));
        let mut names: Vec<(Ipv4Addr, String)> = vec![(Ipv4Addr::LOCALHOST, "lab".to_string())];
        names.extend(ssh.hosts().iter().map(|h| (h.address, h.name.clone())));

        let http = http::HttpServer::start_on(&names, options.http_port)?;
        let tcp = TcpListeners {
            open: tcp::TcpServer::start(tcp::TcpKind::Open, &ips, 0)?,
            echo: tcp::TcpServer::start(tcp::TcpKind::Echo, &ips, 0)?,
            banner: tcp::TcpServer::start(
                tcp::TcpKind::Banner("SSH-2.0-sortie-lab\r\n".to_string()),
                &ips,
                0,
            )?,
            slow: tcp::TcpServer::start(
                tcp::TcpKind::Slow {
                    delay: options.slow_delay,
                    banner: "slow-ok\r\n".to_string(),
                },
                &ips,
                0,
            )?,
            blackhole: tcp::TcpServer::start(tcp::TcpKind::Blackhole, &ips, 0)?,
            counter: tcp::TcpServer::start(
                tcp::TcpKind::Counter {
                    hold: options.counter_hold,
                },
                &ips,
                0,
            )?,
            closed_port: tcp::closed_port(Ipv4Addr::LOCALHOST)?.port(),
        };
        let dns = dns::DnsServer::start(dns::DnsOptions {
            port: options.dns_port,
            ..dns::DnsOptions::with_hosts(
                &ssh.hosts()
                    .iter()
                    .map(|h| (h.name.clone(), h.address))
                    .collect::<Vec<_>>(),
            )
        })?;
        let lab = Lab {
            ssh,
            http,
            tcp,
            dns,
        };
        lab.ssh.write_inventory(&lab.vars())?;
        write_atomically(&lab.dir().join("lab.json"), &lab.info().to_json()?)?;
        Ok(lab)
    }

    pub fn dir(&self) -> &Path {
        self.ssh.dir()
    }

    /// The inventory's top-level `vars`: where each lab server listens.
    pub fn vars(&self) -> BTreeMap<String, serde_json::Value> {
        let mut vars = BTreeMap::new();
        let mut port = |name: &str, port: u16| {
            vars.insert(name.to_string(), serde_json::Value::from(port));
        };
        port("http_port", self.http.port());
        port("open_port", self.tcp.open.port());
        port("echo_port", self.tcp.echo.port());
        port("banner_port", self.tcp.banner.port());
        port("slow_port", self.tcp.slow.port());
        port("blackhole_port", self.tcp.blackhole.port());
        port("counter_port", self.tcp.counter.port());
        port("closed_port", self.tcp.closed_port);
        port("dns_port", self.dns.port());
        vars.insert(
            "dns_server".to_string(),
            serde_json::Value::from(self.dns.addr().to_string()),
        );
        vars.insert(
            "http_url".to_string(),
            serde_json::Value::from(format!("http://127.0.0.1:{}", self.http.port())),
        );
        vars.insert(
            "lab_dir".to_string(),
            serde_json::Value::from(self.dir().display().to_string()),
        );
        vars
    }

    /// What `lab.json` records: enough to find, check and stop every process.
    pub fn info(&self) -> LabInfo {
        LabInfo {
            pid: std::process::id(),
            dir: self.dir().to_path_buf(),
            user: self.ssh.user().to_string(),
            login_shell: self.ssh.shell_mode().describe(),
            inventory: self.dir().join("inventory.yml"),
            ssh_config: self.dir().join("ssh_config"),
            known_hosts: self.dir().join("known_hosts"),
            identity_file: self.ssh.identity_file().to_path_buf(),
            ssh_port: self.ssh.port(),
            hosts: self
                .ssh
                .hosts()
                .iter()
                .map(|h| HostRecord {
                    name: h.name.clone(),
                    address: h.address,
                    port: h.port,
                    pid: h.pid(),
                    config: h.config.clone(),
                    log: h.log.clone(),
                })
                .collect(),
            http_url: format!("http://127.0.0.1:{}", self.http.port()),
            vars: self.vars(),
        }
    }
}

/// The contents of `lab.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabInfo {
    /// PID of the process that owns the lab (the `sortie-lab` server process).
    pub pid: u32,
    pub dir: PathBuf,
    pub user: String,
    pub login_shell: String,
    pub inventory: PathBuf,
    pub ssh_config: PathBuf,
    pub known_hosts: PathBuf,
    pub identity_file: PathBuf,
    pub ssh_port: u16,
    pub hosts: Vec<HostRecord>,
    pub http_url: String,
    pub vars: BTreeMap<String, serde_json::Value>,
}

/// One SSH host as `lab.json` records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostRecord {
    pub name: String,
    pub address: Ipv4Addr,
    pub port: u16,
    pub pid: Option<u32>,
    pub config: PathBuf,
    pub log: PathBuf,
}

impl LabInfo {
    pub fn to_json(&self) -> Result<String, LabError> {
        serde_json::to_string_pretty(self).map_err(|e| LabError::Server(format!("lab.json: {e}")))
    }

    pub fn read(dir: &Path) -> Result<LabInfo, LabError> {
        let path = dir.join("lab.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| LabError::io(format!("reading {}", path.display()), e))?;
        serde_json::from_str(&text).map_err(|e| LabError::State {
            path,
            detail: e.to_string(),
        })
    }
}

/// Writes `text` to `path` through a temporary file and a rename, so readers never see half of it.
pub fn write_atomically(path: &Path, text: &str) -> Result<(), LabError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)
        .map_err(|e| LabError::io(format!("writing {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path)
        .map_err(|e| LabError::io(format!("renaming {} into place", tmp.display()), e))
}

/// Raises this process's open-file limit to its hard limit: 200 hosts' listeners need more than
/// the usual 1024.
pub fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        // Best effort: the lab still works for small host counts under the old limit.
        let _ = setrlimit(Resource::Nofile, raised);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_lab_writes_inventory_with_ports_and_serves_on_host_addresses() {
        let dir = tempfile::tempdir().unwrap();
        let lab = Lab::start(LabOptions::for_test(2, dir.path())).unwrap();

        let inventory = std::fs::read_to_string(dir.path().join("inventory.yml")).unwrap();
        assert!(inventory.contains(&format!("  echo_port: {}", lab.tcp.echo.port())));
        assert!(inventory.contains(&format!("  http_port: {}", lab.http.port())));
        assert!(inventory.contains("  lab:\n    hosts:\n      h01: { address: "));

        let info = LabInfo::read(dir.path()).unwrap();
        assert_eq!(info.hosts.len(), 2);
        assert_eq!(info.pid, std::process::id());

        // The HTTP server answers on the second host's own address, naming that host.
        let h02 = lab.ssh.host(1).unwrap();
        let body = http::tests::get(
            std::net::SocketAddr::from((h02.address, lab.http.port())),
            "/health",
        );
        assert!(body.contains("\"host\":\"h02\""), "{body}");
    }
}
