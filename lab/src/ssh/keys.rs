//! The lab's SSH keys: the client's (authorized on every host) and each host's, ed25519, made by
//! `ssh-keygen` when missing and kept in the lab directory for the next start.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rustix::process::Signal;

use super::{INSTALL_HINT, KEYGEN_TIMEOUT, SshHost, read_to_string, stderr_of, write};
use crate::{LabError, process};

const SSH_KEYGEN: &str = "ssh-keygen";

/// Generates the client's key and every missing host key, side by side, and authorizes the
/// client's on every host (`DIR/authorized_keys`).
pub(super) fn ensure_keys(dir: &Path, identity: &Path, hosts: &[SshHost]) -> Result<(), LabError> {
    let mut missing: Vec<(PathBuf, String)> = Vec::new();
    if !identity.exists() {
        missing.push((identity.to_path_buf(), "sortie-lab client".into()));
    }
    for host in hosts {
        if !host.host_key.exists() {
            missing.push((host.host_key.clone(), format!("sortie-lab {}", host.name)));
        }
    }
    generate_keys(&missing)?;
    let client_pub = read_to_string(&identity.with_extension("pub"))?;
    write(&dir.join("authorized_keys"), &client_pub)
}

/// Runs ssh-keygen for each (path, comment), eight at a time, each with a timeout.
pub(super) fn generate_keys(keys: &[(PathBuf, String)]) -> Result<(), LabError> {
    for chunk in keys.chunks(8) {
        let mut running = Vec::with_capacity(chunk.len());
        for (path, comment) in chunk {
            let child = Command::new(SSH_KEYGEN)
                .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
                .arg(path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => LabError::MissingTool {
                        path: PathBuf::from(SSH_KEYGEN),
                        hint: INSTALL_HINT,
                    },
                    _ => LabError::io("starting ssh-keygen", e),
                })?;
            running.push((child, path));
        }
        for (mut child, path) in running {
            let command = format!("ssh-keygen -t ed25519 -f {}", path.display());
            match process::wait_child(&mut child, KEYGEN_TIMEOUT) {
                Some(status) if status.success() => {}
                Some(status) => {
                    return Err(LabError::Command {
                        command,
                        status: status.to_string(),
                        stderr: stderr_of(&mut child),
                    });
                }
                None => {
                    process::signal(child.id(), Signal::KILL);
                    let _ = child.wait();
                    return Err(LabError::Timeout {
                        what: command,
                        after: KEYGEN_TIMEOUT,
                    });
                }
            }
        }
    }
    Ok(())
}
