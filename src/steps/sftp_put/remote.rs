//! The remote side of `sftp_put`, over the step's `conn::Remote`: remote paths (`/` only),
//! shell quoting for the commands sent, folders made sure of (created with `mkdir`, or inside
//! the destination), and SHA-256 of remote files (`sha256sum` on the host, else the bytes read
//! back). Used by the upload (`write.rs`); `join_remote` also by `sftp_get`.

// `StepError` (the engine's type) carries a whole `Diagnostic`; boxing it is the engine's call.
#![allow(clippy::result_large_err)]

use std::collections::HashSet;

use sha2::Digest;

use super::PER_COMMAND;
use crate::conn::Remote;
use crate::error::StepError;

/// `dir/name` for remote paths (`/` only).
pub(in crate::steps) fn join_remote(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// The folder part of a remote path (`""` for a bare name).
pub(super) fn remote_parent(p: &str) -> &str {
    match p.trim_end_matches('/').rfind('/') {
        Some(0) => "/",
        Some(i) => &p[..i],
        None => "",
    }
}

/// `s` quoted for the remote shell.
pub(super) fn quote(s: &str) -> Result<String, StepError> {
    crate::template::shell_quote(s)
        .map_err(|e| StepError::Protocol(format!("cannot quote `{s}` for the shell: {e}")))
}

/// Makes sure a remote folder exists: created (with its parents) when `mkdir` is set or when
/// it is inside `dest` (a copied tree's subfolders). The folders are looked at from `dir`
/// upwards until one is there, then the missing ones made from the top down.
pub(super) async fn ensure_dir(
    r: &mut Remote,
    dir: &str,
    mkdir: bool,
    dest: &str,
    known: &mut HashSet<String>,
) -> Result<(), StepError> {
    let dest_dir = dest.trim_end_matches('/');
    // The missing folders, `dir` first.
    let mut missing: Vec<&str> = Vec::new();
    let mut at = dir;
    while !(at.is_empty() || at == "/" || known.contains(at)) {
        match r.stat(at).await? {
            Some(st) if st.is_dir() => {
                known.insert(at.to_string());
                break;
            }
            Some(_) => {
                return Err(StepError::Io(format!(
                    "{at} exists on the host and is not a directory"
                )));
            }
            None => {}
        }
        let inside_dest = at.len() > dest_dir.len()
            && at.starts_with(dest_dir)
            && at.as_bytes()[dest_dir.len()] == b'/';
        if !mkdir && !inside_dest {
            return Err(StepError::Io(format!(
                "the remote directory {at} does not exist (set `mkdir: true` to create it)"
            )));
        }
        missing.push(at);
        at = remote_parent(at);
    }
    for d in missing.into_iter().rev() {
        if let Err(e) = r.mkdir(d, 0o755).await {
            // Another step (or host sharing a filesystem) may have made it meanwhile.
            if !r.stat(d).await?.is_some_and(|s| s.is_dir()) {
                return Err(e);
            }
        }
        known.insert(d.to_string());
    }
    Ok(())
}

/// SHA-256 of remote files (`None` for one that cannot be read): `sha256sum` on the host —
/// one command for many files, hashed where they are —, or, without it, the bytes read back
/// over SFTP.
pub(super) async fn remote_sha256(
    r: &mut Remote,
    paths: &[String],
    max_output: usize,
) -> Result<Vec<Option<String>>, StepError> {
    let mut out = vec![None; paths.len()];
    let mut missing_tool = false;
    for (b, batch) in paths.chunks(PER_COMMAND).enumerate() {
        let mut cmd = "sha256sum --".to_string();
        for p in batch {
            cmd.push(' ');
            cmd.push_str(&quote(p)?);
        }
        let res = match r
            .exec(&cmd, max_output.max(batch.len() * (PATH_LINE)))
            .await
        {
            Ok(res) => res,
            // No commands on this login: read the files back instead.
            Err(StepError::Io(_)) => {
                missing_tool = true;
                break;
            }
            Err(e) => return Err(e),
        };
        if res.rc == 127 || res.rc == 126 {
            missing_tool = true;
            break;
        }
        let text = String::from_utf8_lossy(&res.stdout);
        for line in text.lines() {
            // `HASH  NAME`, or `\HASH  NAME-with-escapes` for names with `\` or newlines.
            let (escaped, line) = match line.strip_prefix('\\') {
                Some(l) => (true, l),
                None => (false, line),
            };
            let Some((hash, name)) = line.split_once("  ").or_else(|| line.split_once(" *")) else {
                continue;
            };
            let name = if escaped {
                name.replace("\\n", "\n").replace("\\\\", "\\")
            } else {
                name.to_string()
            };
            if let Some(k) = batch.iter().position(|p| *p == name) {
                out[b * PER_COMMAND + k] = Some(hash.to_ascii_lowercase());
            }
        }
    }
    if missing_tool {
        for (i, p) in paths.iter().enumerate() {
            out[i] = read_sha256(r, p).await.ok();
        }
    }
    Ok(out)
}

/// Room for one `sha256sum` output line.
const PATH_LINE: usize = 4096 + 80;

/// SHA-256 of a remote file read over SFTP.
async fn read_sha256(r: &mut Remote, path: &str) -> Result<String, StepError> {
    let mut f = r.open_read(path).await?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; crate::conn::READ_BUFFER];
    loop {
        let n = r.read(&mut f, &mut buf).await?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    r.close(f).await?;
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::sftp_put::has_glob;

    #[test]
    fn remote_paths() {
        assert_eq!(join_remote("/a/", "b"), "/a/b");
        assert_eq!(join_remote("/a", "b/c"), "/a/b/c");
        assert_eq!(join_remote("", "b"), "b");
        assert_eq!(remote_parent("/a/b/c"), "/a/b");
        assert_eq!(remote_parent("/a"), "/");
        assert_eq!(remote_parent("a"), "");
        assert!(has_glob("logs/*.log") && !has_glob("logs/app.log"));
    }
}
