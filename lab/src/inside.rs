//! The lab's inside network: services that exist only inside the site ([`crate::site`]), where
//! every SSH host is, and that the runner cannot reach — what `via: host` probes are tested on.
//!
//! [`Inside::prepare`] creates the site and writes the files each sshd's mount namespace
//! bind-mounts over the machine's (`DIR/inside/hosts` as `/etc/hosts`, `DIR/inside/resolv.conf`
//! as `/etc/resolv.conf`); [`Inside::start`] then starts, from a thread inside the site, on
//! 127.0.0.1 and every host's address there:
//!
//! | service | port | what |
//! |---|---|---|
//! | `db` | 5432 | TCP: sends `db-ok\r\n`, then echoes ([`TcpKind::Greet`]) |
//! | `api` | 80 | the lab's HTTP server ([`crate::http`]); `/health` names the host dialled, `api` on 127.0.0.1 |
//! | `api` | 443 | the same over TLS, with a certificate for `api.internal` from `DIR/inside/pki/ca.pem` |
//! | `dns` | 53 | UDP and TCP on 127.0.0.1: the lab's zones plus `internal.` (`db`, `api` → 127.0.0.1) |
//!
//! The inventory's vars say so ([`Inside::vars`]): `inside`, `inside_db_port`,
//! `inside_http_port`, `inside_https_port`, `inside_dns_port`, `lab_ca`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use crate::dns::{DnsOptions, DnsServer};
use crate::http::{ClientAuth, HttpServer};
use crate::pki::TestPki;
use crate::site::Site;
use crate::ssh::SshLab;
use crate::tcp::{TcpKind, TcpServer};
use crate::{LabError, write_atomically};

pub const DB_PORT: u16 = 5432;
pub const HTTP_PORT: u16 = 80;
pub const HTTPS_PORT: u16 = 443;
pub const DNS_PORT: u16 = 53;
/// What `db` sends first.
pub const DB_BANNER: &str = "db-ok\r\n";
/// The names the site's `/etc/hosts` and DNS give 127.0.0.1.
pub const NAMES: [&str; 2] = ["db.internal", "api.internal"];

const INTERNAL_ZONE: &str = "$ORIGIN internal.\n\
    $TTL 60\n\
    @   IN SOA ns.internal. hostmaster.internal. ( 1 3600 600 86400 60 )\n\
    @   IN NS  ns.internal.\n\
    ns  IN A   127.0.0.1\n\
    db  IN A   127.0.0.1\n\
    api IN A   127.0.0.1\n";

/// The inside services and the site they live in; dropping it stops the services, then the
/// site's holder.
pub struct Inside {
    pub db: TcpServer,
    pub http: HttpServer,
    pub https: HttpServer,
    pub dns: DnsServer,
    pub pki: TestPki,
    /// Last: dropped after every server that holds a socket inside.
    pub site: Site,
}

impl Inside {
    /// Creates the site under `DIR/inside/` and writes its `/etc` files; returns the site and
    /// the (lab file, path it covers) pairs for [`crate::ssh::SshLabOptions::binds`].
    pub fn prepare(dir: &Path) -> Result<(Site, Vec<(PathBuf, PathBuf)>), LabError> {
        let inside = dir.join("inside");
        let site = Site::start(&inside)?;
        let mut etc_hosts = String::from(
            "# sortie lab: the site's /etc/hosts (bind-mounted in each lab sshd's mount namespace)\n\
             127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n",
        );
        etc_hosts.push_str(&format!("127.0.0.1 {}\n", NAMES.join(" ")));
        let files = [
            ("hosts", etc_hosts, "/etc/hosts"),
            (
                "resolv.conf",
                "# sortie lab: the site's resolver\nnameserver 127.0.0.1\noptions timeout:1 attempts:2\n"
                    .to_string(),
                "/etc/resolv.conf",
            ),
        ];
        let mut binds = Vec::new();
        for (name, text, target) in files {
            let path = inside.join(name);
            write_atomically(&path, &text)?;
            binds.push((path, PathBuf::from(target)));
        }
        Ok((site, binds))
    }

    /// Starts the services inside `site`, on 127.0.0.1 and every address of `ssh`'s hosts.
    pub fn start(site: Site, ssh: &SshLab) -> Result<Inside, LabError> {
        let mut names: Vec<(Ipv4Addr, String)> = vec![(Ipv4Addr::LOCALHOST, "api".to_string())];
        for host in ssh.hosts() {
            names.push((host.address, host.name.clone()));
            if host.listen != host.address {
                names.push((host.listen, host.name.clone()));
            }
        }
        let ips: Vec<Ipv4Addr> = names.iter().map(|(ip, _)| *ip).collect();
        let cert_ips: Vec<IpAddr> = ips.iter().copied().map(IpAddr::V4).collect();
        let pki =
            TestPki::generate_named(&ssh.dir().join("inside").join("pki"), &cert_ips, &NAMES)?;
        let zone_hosts: Vec<(String, Ipv4Addr)> = ssh
            .hosts()
            .iter()
            .map(|h| (h.name.clone(), h.address))
            .collect();
        let (db, http, https, dns) = site.net().run(|| {
            Ok((
                TcpServer::start(TcpKind::Greet(DB_BANNER.to_string()), &ips, DB_PORT)?,
                HttpServer::start_on(&names, HTTP_PORT)?,
                HttpServer::start_tls(&names, HTTPS_PORT, &pki, ClientAuth::None)?,
                DnsServer::start(DnsOptions {
                    port: DNS_PORT,
                    zones: vec![("internal.".to_string(), INTERNAL_ZONE.to_string())],
                    ..DnsOptions::with_hosts(&zone_hosts)
                })?,
            ))
        })?;
        Ok(Inside {
            db,
            http,
            https,
            dns,
            pki,
            site,
        })
    }

    /// What the inventory's vars say about the inside network.
    pub fn vars(&self) -> BTreeMap<String, serde_json::Value> {
        let mut vars = BTreeMap::new();
        vars.insert("inside".to_string(), serde_json::Value::from(true));
        for (name, port) in [
            ("inside_db_port", self.db.port()),
            ("inside_http_port", self.http.port()),
            ("inside_https_port", self.https.port()),
            ("inside_dns_port", self.dns.port()),
        ] {
            vars.insert(name.to_string(), serde_json::Value::from(port));
        }
        vars.insert(
            "lab_ca".to_string(),
            serde_json::Value::from(self.pki.path("ca.pem").display().to_string()),
        );
        vars
    }
}
