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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Lab, LabOptions, process};
    use std::io::{Read, Write};
    use std::net::{TcpStream, ToSocketAddrs};
    use std::process::{Output, Stdio};
    use std::time::Duration;

    fn on_host(lab: &Lab, i: usize, command: &str) -> Output {
        lab.ssh
            .ssh_command(i)
            .unwrap()
            .arg(command)
            .output()
            .unwrap()
    }

    fn stdout(out: &Output) -> String {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Sends `send` through `ssh -W target` on host `i`, then EOF; returns what came back
    /// until the server closed (ssh is killed after 30 s).
    fn stdio_forward(lab: &Lab, i: usize, target: &str, send: &[u8]) -> Output {
        let mut child = lab
            .ssh
            .ssh_command(i)
            .unwrap()
            .arg("-W")
            .arg(target)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(send).unwrap();
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(child.wait_with_output().unwrap()));
        rx.recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                process::signal(pid, rustix::process::Signal::KILL);
                panic!("ssh -W {target} through host {i} did not end");
            })
    }

    /// The site's /etc/hosts, resolver, db and api, as commands on the hosts see them.
    fn from_a_host(lab: &Lab, dir: &Path, ca: &str) {
        // From a host: the site's /etc/hosts and resolver, and the services behind them.
        let names = stdout(&on_host(lab, 0, "getent hosts db.internal api.internal"));
        assert_eq!(names.lines().count(), 2, "{names}");
        assert!(
            names.lines().all(|l| l.starts_with("127.0.0.1 ")),
            "{names}"
        );
        // ns.internal is in the site's DNS only, not in its /etc/hosts.
        let dns = stdout(&on_host(lab, 0, "getent hosts ns.internal h02.lab.test"));
        let h02 = lab.ssh.host(1).unwrap().address.to_string();
        assert!(dns.contains("127.0.0.1") && dns.contains(&h02), "{dns}");
        let db = on_host(
            lab,
            1,
            "bash -c 'exec 3<>/dev/tcp/db.internal/5432 && head -c 7 <&3'",
        );
        assert_eq!(stdout(&db), DB_BANNER);
        let health = on_host(
            lab,
            0,
            "bash -c 'exec 3<>/dev/tcp/api.internal/80 && printf \"GET /health HTTP/1.0\\r\\n\\r\\n\" >&3 && cat <&3'",
        );
        assert!(
            stdout(&health).contains(r#""host":"api""#),
            "{}",
            stdout(&health)
        );
        if crate::site::find_on_path("curl").is_some() {
            let https = on_host(
                lab,
                0,
                &format!("curl -sS --cacert {ca} https://api.internal/health"),
            );
            assert!(stdout(&https).contains(r#""status":"ok""#));
        }

        // SFTP reads the site's /etc/hosts too (internal-sftp is in sshd's mount namespace).
        let copy = dir.join("h01.hosts");
        let mut sftp = std::process::Command::new("sftp")
            .arg("-F")
            .arg(lab.ssh.ssh_config())
            .args(["-b", "-", "h01"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let get = format!("get /etc/hosts {}\n", copy.display());
        sftp.stdin
            .take()
            .unwrap()
            .write_all(get.as_bytes())
            .unwrap();
        assert!(sftp.wait().unwrap().success());
        let hosts = std::fs::read_to_string(&copy).unwrap();
        assert!(
            hosts.contains("127.0.0.1 db.internal api.internal\n"),
            "{hosts}"
        );
    }

    /// None of the site's names or services from the test process itself.
    fn from_the_runner(lab: &Lab) {
        // From the runner: none of it.
        assert!(("db.internal", 5432).to_socket_addrs().is_err());
        let mut addresses = vec![std::net::Ipv4Addr::LOCALHOST];
        addresses.extend(lab.ssh.hosts().iter().map(|h| h.address));
        for ip in addresses {
            if let Ok(mut s) =
                TcpStream::connect_timeout(&(ip, DB_PORT).into(), Duration::from_secs(1))
            {
                s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                let mut got = [0u8; 7];
                let n = s.read(&mut got).unwrap_or(0);
                assert_ne!(
                    &got[..n],
                    DB_BANNER.as_bytes(),
                    "the db answers the runner on {ip}"
                );
            }
        }
    }

    /// `ssh -W` (OpenSSH's own direct-tcpip) to the db and the DNS, and a host that refuses it.
    fn through_direct_tcpip(lab: &Lab) {
        // OpenSSH's own direct-tcpip: through h01 to the db (which echoes), refused by h02.
        let out = stdio_forward(lab, 0, "db.internal:5432", b"ping\n");
        assert_eq!(
            out.stdout,
            b"db-ok\r\nping\n",
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = stdio_forward(lab, 1, "db.internal:5432", b"ping\n");
        assert!(out.stdout.is_empty() && !out.status.success());
        assert_eq!(
            lab.ssh.log_count(1, "refused local port forward").unwrap(),
            1
        );

        // The site's DNS over TCP, as a `dns` probe through a host asks it: `db.internal. A`.
        let mut query = vec![0, 29, 0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        query.extend(b"\x02db\x08internal\x00\x00\x01\x00\x01");
        let got = stdio_forward(lab, 0, "127.0.0.1:53", &query).stdout;
        assert!(got.len() > 18, "no DNS answer through h01: {got:?}");
        // The length, the header (ID, no error, one answer, nothing else), the A record last.
        assert_eq!(
            usize::from(got[0]) * 256 + usize::from(got[1]),
            got.len() - 2
        );
        assert_eq!((got[2], got[3], got[5] & 0x0f), (0x12, 0x34, 0), "{got:?}");
        assert_eq!(got[8..14], [0, 1, 0, 0, 0, 0], "{got:?}");
        assert_eq!(got[got.len() - 4..], [127, 0, 0, 1], "{got:?}");
    }

    #[test]
    fn inside_services_answer_from_the_hosts_and_not_from_the_runner() {
        let dir = tempfile::tempdir().unwrap();
        let options = LabOptions::for_test(2, dir.path())
            .with_inside()
            .with_no_forwarding(&[1]);
        if !rustix::process::geteuid().is_root() {
            let Err(e) = Lab::start(options) else {
                panic!("an inside network started without root");
            };
            assert!(e.to_string().contains("needs root"), "{e}");
            return;
        }
        let mut lab = Lab::start(options).unwrap();
        let vars = lab.vars();
        assert_eq!(vars["inside"], true);
        assert_eq!(vars["inside_db_port"], 5432);
        assert_eq!(vars["inside_https_port"], 443);
        let ca = vars["lab_ca"].as_str().unwrap().to_string();
        assert!(
            std::fs::read_to_string(&ca)
                .unwrap()
                .contains("CERTIFICATE")
        );
        let inventory = std::fs::read_to_string(lab.ssh.inventory()).unwrap();
        assert!(inventory.contains("  inside_dns_port: 53\n"), "{inventory}");

        from_a_host(&lab, dir.path(), &ca);
        from_the_runner(&lab);
        through_direct_tcpip(&lab);

        // A killed host refuses at its usual address, as without a site, and comes back.
        lab.ssh.kill_host(0).unwrap();
        assert!(TcpStream::connect(lab.ssh.host(0).unwrap().socket_addr()).is_err());
        lab.ssh.start_host(0).unwrap();
        assert_eq!(stdout(&on_host(&lab, 0, "echo back")), "back\n");

        // Dropping the lab ends the holder and every sshd.
        let mut pids: Vec<u32> = lab.ssh.hosts().iter().filter_map(|h| h.pid()).collect();
        let holder = lab.inside.as_ref().unwrap().site.holder().0;
        pids.push(holder);
        assert!(pids.iter().all(|p| process::alive(*p)));
        drop(lab);
        assert!(
            process::wait_gone(&pids, Duration::from_secs(5)),
            "{pids:?}"
        );
    }

    #[test]
    fn a_host_without_forwarding_refuses_direct_tcpip_without_a_site_too() {
        let dir = tempfile::tempdir().unwrap();
        let lab = Lab::start(LabOptions::for_test(2, dir.path()).with_no_forwarding(&[1])).unwrap();
        let target = format!("127.0.0.1:{}", lab.tcp.banner.port());
        let config = std::fs::read_to_string(&lab.ssh.host(1).unwrap().config).unwrap();
        assert!(config.contains("AllowTcpForwarding no\n"), "{config}");
        for (i, allowed) in [(0, true), (1, false)] {
            let out = lab
                .ssh
                .ssh_command(i)
                .unwrap()
                .arg("-W")
                .arg(&target)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            let banner = String::from_utf8_lossy(&out.stdout);
            assert_eq!(
                banner.starts_with("SSH-2.0-sortie-lab"),
                allowed,
                "h0{}: {banner}",
                i + 1
            );
        }
    }
}
