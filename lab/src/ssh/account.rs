//! The login user as the lab's sshd sees it: who we are (from /etc/passwd), its shell made
//! `/bin/sh` through a lab copy of /etc/passwd in a private mount namespace (when we are root and
//! `unshare` works), and a lab copy of /etc/shadow for password logins. The machine's own files
//! are never written.

use std::io::{Read, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use rustix::process::Signal;

use super::{KEYGEN_TIMEOUT, ShellMode, UNSHARE, read_to_string, stderr_of, write};
use crate::{LabError, process};

const OPENSSL: &str = "openssl";

/// How the login user's shell is arranged: already /bin/sh, left as it is when the options say
/// so (`sh_login_shell: false`), else /bin/sh through the mount namespace if that works.
pub(super) fn login_shell(sh_login_shell: bool, dir: &Path, uid: u32, shell: &str) -> ShellMode {
    if !sh_login_shell || shell == "/bin/sh" {
        if shell == "/bin/sh" {
            ShellMode::AlreadySh
        } else {
            ShellMode::Unchanged {
                shell: shell.to_string(),
                reason: "disabled by the options".into(),
            }
        }
    } else {
        prepare_namespace_passwd(dir, uid, shell)
    }
}

/// The lab copy of /etc/shadow holding `password`, when one is asked for.
pub(super) fn lab_shadow(
    password: Option<&str>,
    shell_mode: &ShellMode,
    dir: &Path,
    user: &str,
) -> Result<Option<PathBuf>, LabError> {
    let Some(password) = password else {
        return Ok(None);
    };
    // The shadow copy is only seen through the namespace the passwd copy made.
    let ShellMode::Namespace(_) = shell_mode else {
        return Err(LabError::Server(format!(
            "a lab password needs sshd in a private mount namespace (root and \
             `unshare`); login shell: {}",
            shell_mode.describe()
        )));
    };
    write_lab_shadow(dir, user, password).map(Some)
}

/// (uid, user name, login shell) of the current user, from /etc/passwd.
pub(super) fn current_user() -> Result<(u32, String, String), LabError> {
    let uid = rustix::process::getuid().as_raw();
    let passwd = read_to_string(Path::new("/etc/passwd"))?;
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() == 7 && f[2].parse::<u32>().ok() == Some(uid))
        .map(|f| (uid, f[0].to_string(), f[6].to_string()))
        .ok_or_else(|| LabError::State {
            path: PathBuf::from("/etc/passwd"),
            detail: format!("no entry for uid {uid}"),
        })
}

/// Writes the lab's passwd copy (the user's shell set to /bin/sh) and checks, once, that
/// `unshare` can bind it over /etc/passwd; otherwise the user's shell stays as it is.
fn prepare_namespace_passwd(dir: &Path, uid: u32, shell: &str) -> ShellMode {
    let unchanged = |reason: String| ShellMode::Unchanged {
        shell: shell.to_string(),
        reason,
    };
    if uid != 0 {
        return unchanged("not root: no mount namespace".into());
    }
    let Ok(passwd) = read_to_string(Path::new("/etc/passwd")) else {
        return unchanged("/etc/passwd unreadable".into());
    };
    let mut copy = String::with_capacity(passwd.len());
    for line in passwd.lines() {
        let mut fields: Vec<&str> = line.split(':').collect();
        if fields.len() == 7 && fields[2].parse::<u32>().ok() == Some(uid) {
            fields[6] = "/bin/sh";
        }
        copy.push_str(&fields.join(":"));
        copy.push('\n');
    }
    let path = dir.join("passwd");
    if let Err(e) = write(&path, &copy) {
        return unchanged(e.to_string());
    }
    let probe = Command::new(UNSHARE)
        .args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
        .arg("mount --bind \"$0\" /etc/passwd && grep -c ':/bin/sh$' /etc/passwd")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    match probe {
        Err(e) => unchanged(format!("unshare unavailable: {e}")),
        Ok(mut child) => match process::wait_child(&mut child, Duration::from_secs(10)) {
            Some(status) if status.success() => ShellMode::Namespace(path),
            Some(status) => unchanged(format!(
                "unshare failed ({status}): {}",
                stderr_of(&mut child).trim()
            )),
            None => {
                process::signal(child.id(), Signal::KILL);
                let _ = child.wait();
                unchanged("unshare did not finish".into())
            }
        },
    }
}

/// Writes `DIR/shadow` (mode 0600): /etc/shadow with `user`'s password hash replaced by a
/// SHA-512 crypt hash of `password` (from `openssl passwd -6`, the password on its stdin), its
/// last-change date kept off 0 (which would force a change) and no expiry.
fn write_lab_shadow(dir: &Path, user: &str, password: &str) -> Result<PathBuf, LabError> {
    let mut child = Command::new(OPENSSL)
        .args(["passwd", "-6", "-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => LabError::MissingTool {
                path: PathBuf::from(OPENSSL),
                hint: "install it with `apt-get install openssl`",
            },
            _ => LabError::io("starting openssl", e),
        })?;
    // Dropping stdin after the write closes it: openssl hashes one line and exits.
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(format!("{password}\n").as_bytes())
            .map_err(|e| LabError::io("writing to openssl", e))?;
    }
    let command = "openssl passwd -6 -stdin".to_string();
    let Some(status) = process::wait_child(&mut child, KEYGEN_TIMEOUT) else {
        process::signal(child.id(), Signal::KILL);
        let _ = child.wait();
        return Err(LabError::Timeout {
            what: command,
            after: KEYGEN_TIMEOUT,
        });
    };
    let mut hash = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut hash);
    }
    let hash = hash.trim();
    if !status.success() || !hash.starts_with("$6$") {
        return Err(LabError::Command {
            command,
            status: status.to_string(),
            stderr: stderr_of(&mut child),
        });
    }

    let shadow = read_to_string(Path::new("/etc/shadow"))?;
    let mut copy = String::with_capacity(shadow.len() + hash.len());
    let mut found = false;
    for line in shadow.lines() {
        let mut fields: Vec<&str> = line.split(':').collect();
        if fields.len() == 9 && fields[0] == user {
            found = true;
            fields[1] = hash;
            if fields[2].is_empty() || fields[2] == "0" {
                fields[2] = "19000";
            }
            fields[7] = "";
        }
        copy.push_str(&fields.join(":"));
        copy.push('\n');
    }
    if !found {
        return Err(LabError::State {
            path: PathBuf::from("/etc/shadow"),
            detail: format!("no entry for {user}"),
        });
    }
    let path = dir.join("shadow");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| LabError::io(format!("writing {}", path.display()), e))?;
    file.write_all(copy.as_bytes())
        .map_err(|e| LabError::io(format!("writing {}", path.display()), e))?;
    Ok(path)
}
