//! The files an [`SshLab`] writes for its clients and its servers: `known_hosts`,
//! `inventory.yml` (sortie's native format), `ssh_config` (for `ssh -F`) and each host's
//! `sshd_config`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;

use super::{SshLab, write};
use crate::{LabError, write_atomically};

impl SshLab {
    /// Writes `known_hosts` from the host keys as they are now.
    pub fn write_known_hosts(&self) -> Result<(), LabError> {
        let mut text = String::new();
        for host in &self.hosts {
            text.push_str(&host.known_hosts_line()?);
            text.push('\n');
        }
        write_atomically(&self.known_hosts(), &text)
    }

    /// Writes `inventory.yml`; `vars` become its top-level `vars` (ports of the lab servers).
    pub fn write_inventory(
        &self,
        vars: &BTreeMap<String, serde_json::Value>,
    ) -> Result<(), LabError> {
        write_atomically(&self.inventory(), &self.inventory_yaml(vars))
    }

    /// Vars added to every inventory this lab writes (merged under those passed in).
    pub fn set_extra_vars(&mut self, vars: BTreeMap<String, serde_json::Value>) {
        self.extra_vars = vars;
    }

    /// The inventory in sortie's native format (DESIGN.md "Inventory").
    pub fn inventory_yaml(&self, vars: &BTreeMap<String, serde_json::Value>) -> String {
        let q = |p: &Path| yaml_string(&p.display().to_string());
        let mut y = String::new();
        y.push_str("# Written by sortie's test lab: every host is a local sshd on its own 127.x address.\n");
        let _ = writeln!(y, "ssh:");
        let _ = writeln!(y, "  user: {}", yaml_string(&self.user));
        let _ = writeln!(y, "  identity_file: {}", q(&self.identity));
        let _ = writeln!(y, "  known_hosts: {}", q(&self.known_hosts()));
        let _ = writeln!(y, "  host_key_checking: strict");
        let _ = writeln!(y, "  connect_timeout: 10s");
        let mut all_vars = self.extra_vars.clone();
        all_vars.extend(vars.iter().map(|(k, v)| (k.clone(), v.clone())));
        if !all_vars.is_empty() {
            let _ = writeln!(y, "vars:");
            for (key, value) in &all_vars {
                // JSON scalars are YAML 1.2 flow scalars.
                let _ = writeln!(y, "  {key}: {value}");
            }
        }
        let _ = writeln!(y, "groups:");
        let _ = writeln!(y, "  lab:");
        if self.hosts.is_empty() {
            let _ = writeln!(y, "    hosts: {{}}");
        } else {
            let _ = writeln!(y, "    hosts:");
        }
        for host in &self.hosts {
            let _ = writeln!(
                y,
                "      {}: {{ address: {}, port: {} }}",
                host.name, host.address, host.port
            );
        }
        y
    }

    pub(super) fn write_ssh_config(&self) -> Result<(), LabError> {
        let mut text = String::from("# For debugging: ssh -F THIS_FILE h01\n");
        for host in &self.hosts {
            let _ = write!(
                text,
                "Host {}\n  HostName {}\n  Port {}\n",
                host.name, host.address, host.port
            );
        }
        let _ = write!(
            text,
            "Host *\n  User {}\n  IdentityFile {}\n  IdentitiesOnly yes\n  \
             UserKnownHostsFile {}\n  GlobalKnownHostsFile /dev/null\n  \
             StrictHostKeyChecking yes\n  BatchMode yes\n  ConnectTimeout 10\n  LogLevel ERROR\n",
            self.user,
            self.identity.display(),
            self.known_hosts().display()
        );
        write(&self.ssh_config(), &text)
    }

    pub(super) fn write_sshd_config(&self, i: usize) -> Result<(), LabError> {
        let host = self.host(i)?;
        let password = self.shadow.is_some();
        let root_login = match (self.user == "root", password) {
            (false, _) => "",
            (true, false) => "PermitRootLogin prohibit-password\n",
            (true, true) => "PermitRootLogin yes\n",
        };
        let password_auth = if password { "yes" } else { "no" };
        let forwarding = if self.options.no_forwarding.contains(&i) {
            "no"
        } else {
            "yes"
        };
        let sftp = self
            .options
            .sftp_subsystem
            .iter()
            .find(|(h, _)| *h == i)
            .map_or("internal-sftp", |(_, command)| command.as_str());
        let text = format!(
            "# sortie lab host {name}\n\
             ListenAddress {address}:{port}\n\
             HostKey {key}\n\
             PidFile {pid}\n\
             AuthorizedKeysFile {authorized}\n\
             {root_login}\
             PubkeyAuthentication yes\n\
             PasswordAuthentication {password_auth}\n\
             KbdInteractiveAuthentication no\n\
             UsePAM no\n\
             StrictModes no\n\
             PermitUserRC no\n\
             PermitUserEnvironment no\n\
             PrintMotd no\n\
             PrintLastLog no\n\
             UseDNS no\n\
             X11Forwarding no\n\
             AllowTcpForwarding {forwarding}\n\
             AcceptEnv LANG LC_*\n\
             MaxStartups 1000\n\
             MaxSessions 256\n\
             MaxAuthTries 10\n\
             LoginGraceTime 30\n\
             LogLevel VERBOSE\n\
             Subsystem sftp {sftp}\n",
            name = host.name,
            address = host.listen,
            port = host.port,
            key = host.host_key.display(),
            pid = host.pid_file.display(),
            authorized = self.dir.join("authorized_keys").display(),
        );
        write(&host.config, &text)
    }
}

pub(super) fn host_pattern(address: Ipv4Addr, port: u16) -> String {
    if port == 22 {
        address.to_string()
    } else {
        format!("[{address}]:{port}")
    }
}

/// A YAML double-quoted string (JSON's quoting is valid YAML).
fn yaml_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}
