//! Which remote files an `sftp_get` fetches (`expand`): a plain path (the file, or with
//! `recursive` the folder's tree), or a glob walked one component at a time from its last
//! literal folder. A plain path is what the user named and is followed wherever it leads. What
//! a listing finds is taken by what it is itself (`lstat`, as OpenSSH lists): regular files are
//! fetched, folders walked (with `recursive`, or when a middle glob component matches them);
//! a symlink to a folder is never followed, and a symlink to a file is fetched — from the path
//! it resolves to — only when that path is inside the tree being fetched (the plain path's
//! folder, or the glob's last literal folder, each resolved on the server), so a link never
//! leads a fetch outside `src`'s tree. Everything not fetched is in `skipped` with the reason:
//! FIFOs, sockets, devices, dangling links, links to folders or to files elsewhere, folders
//! without `recursive`.

// `StepError` (the engine's type) carries a whole `Diagnostic`; boxing it is the engine's call.
#![allow(clippy::result_large_err)]

use crate::conn::{FileStat, Remote};
use crate::error::StepError;
use crate::steps::sftp_put::{has_glob, join_remote};

/// One remote file to fetch.
pub(super) struct Wanted {
    /// Its path as listed (what the result calls `path`).
    pub remote: String,
    /// The path opened: `remote`, or for a symlink the canonical path it resolved to.
    pub open: String,
    /// Relative local name under `dest` (plain names joined by `/`; checked again locally).
    pub rel: String,
    pub size: u64,
    pub mtime: u64,
}

/// Something the expansion found and did not fetch, and why.
pub(super) struct Skipped {
    pub path: String,
    pub reason: String,
}

/// What `src` names on the host.
#[derive(Default)]
pub(super) struct Found {
    pub wanted: Vec<Wanted>,
    pub skipped: Vec<Skipped>,
    pub warnings: Vec<String>,
}

const S_IFMT: u32 = 0o170000;
const S_IFIFO: u32 = 0o010000;
const S_IFCHR: u32 = 0o020000;
const S_IFDIR: u32 = 0o040000;
const S_IFBLK: u32 = 0o060000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFSOCK: u32 = 0o140000;

/// Folders nested deeper than this are refused.
const MAX_DEPTH: usize = 64;

fn kind(st: &FileStat) -> u32 {
    st.perm.unwrap_or(0) & S_IFMT
}

/// What a file that is neither a regular file nor a folder is, in words.
fn kind_name(k: u32) -> &'static str {
    match k {
        S_IFIFO => "a FIFO",
        S_IFSOCK => "a socket",
        S_IFCHR => "a character device",
        S_IFBLK => "a block device",
        S_IFLNK => "a symlink",
        S_IFDIR => "a folder",
        S_IFREG => "a regular file",
        _ => "not a regular file",
    }
}

/// How glob components match names: case matters, `*` never crosses `/` nor matches a
/// leading dot.
const GLOB_OPTIONS: glob::MatchOptions = glob::MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: true,
};

/// The remote files `src` names: a file, a directory (with `recursive`) or a glob.
pub(super) async fn expand(r: &mut Remote, src: &str, recursive: bool) -> Result<Found, StepError> {
    let mut x = Expander {
        r,
        recursive,
        root: String::new(),
        root_real: None,
        found: Found::default(),
    };
    if has_glob(src) {
        x.glob(src).await?;
    } else {
        x.path(src).await?;
    }
    Ok(x.found)
}

struct Expander<'r> {
    r: &'r mut Remote,
    recursive: bool,
    /// The folder whose tree is fetched, as named (links to files must stay inside it).
    root: String,
    /// `root` resolved on the server, once asked (`None` inside: it does not resolve).
    root_real: Option<Option<String>>,
    found: Found,
}

/// A folder being walked: its path, its name under `dest`, its depth, and the entries not
/// looked at yet (sorted by name).
struct Level {
    dir: String,
    rel: String,
    depth: usize,
    entries: std::vec::IntoIter<(String, FileStat)>,
}

impl Expander<'_> {
    /// A path without glob characters: the file, or the directory's tree with `recursive`.
    async fn path(&mut self, src: &str) -> Result<(), StepError> {
        let st = self
            .r
            .stat(src)
            .await?
            .ok_or_else(|| StepError::Io(format!("{src}: no such file on the host")))?;
        match kind(&st) {
            S_IFREG => {
                self.want(src.to_string(), src.to_string(), last_name(src), &st);
                return Ok(());
            }
            S_IFDIR => {}
            k => {
                return Err(StepError::Io(format!(
                    "{src} is {} on the host, not a regular file",
                    kind_name(k)
                )));
            }
        }
        if !self.recursive {
            return Err(StepError::Io(format!(
                "{src} is a directory: set `recursive: true` to fetch it"
            )));
        }
        // `dir/` fetches its contents, `dir` the folder itself (as rsync and cp do).
        let prefix = if src.ends_with('/') {
            String::new()
        } else {
            last_name(src)
        };
        let dir = if src == "/" {
            "/"
        } else {
            src.trim_end_matches('/')
        };
        self.root = dir.to_string();
        self.walk(dir.to_string(), prefix, 0).await
    }

    /// A glob, walked one component at a time from its last literal folder: real folders that
    /// match a middle component are listed next; matches of the last one are taken (`entry`).
    async fn glob(&mut self, src: &str) -> Result<(), StepError> {
        let absolute = src.starts_with('/');
        let parts: Vec<&str> = src.split('/').filter(|p| !p.is_empty()).collect();
        let first_glob = parts
            .iter()
            .position(|p| has_glob(p))
            .unwrap_or(parts.len());
        let base = {
            let b = parts[..first_glob].join("/");
            if absolute { format!("/{b}") } else { b }
        };
        self.root = if base.is_empty() {
            ".".into()
        } else {
            base.clone()
        };
        // (remote path, relative name)
        let mut level: Vec<(String, String)> = vec![(base, String::new())];
        for (k, part) in parts.iter().enumerate().skip(first_glob) {
            let last = k == parts.len() - 1;
            let pattern = glob::Pattern::new(part)
                .map_err(|e| StepError::Io(format!("bad glob `{src}`: {e}")))?;
            let mut next = Vec::new();
            for (dir, rel) in &level {
                for (name, st) in self.matching(dir, &pattern).await? {
                    let path = join_remote(dir, &name);
                    let rel = join_rel(rel, &name);
                    if last {
                        self.entry(path, rel, &st, 0).await?;
                    } else if kind(&st) == S_IFDIR {
                        next.push((path, rel));
                    } else if kind(&st) == S_IFLNK
                        && self
                            .r
                            .stat(&path)
                            .await?
                            .is_some_and(|t| kind(&t) == S_IFDIR)
                    {
                        self.skip(path, "a symlink to a folder: folder links are not followed");
                    }
                }
            }
            level = next;
        }
        if self.found.wanted.is_empty() {
            self.found
                .warnings
                .push(format!("`{src}` matched no file on the host"));
        }
        Ok(())
    }

    /// The entries of `dir` whose names match `pattern`, sorted by name. A folder that vanished
    /// or cannot be read matches nothing.
    async fn matching(
        &mut self,
        dir: &str,
        pattern: &glob::Pattern,
    ) -> Result<Vec<(String, FileStat)>, StepError> {
        let listing = if dir.is_empty() { "." } else { dir };
        let entries = match self.r.readdir(listing).await {
            Ok(e) => e,
            Err(StepError::Io(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut names: Vec<(String, FileStat)> = entries
            .into_iter()
            .filter(|(n, _)| pattern.matches_with(n, GLOB_OPTIONS))
            .collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(names)
    }

    /// Every entry of the folder `dir` (sorted by name), under `rel`, and of the folders in it
    /// depth first (with `recursive`): each folder is listed when its turn comes, as the
    /// entries before it in its parent are done.
    async fn walk(&mut self, dir: String, rel: String, depth: usize) -> Result<(), StepError> {
        let mut stack = vec![self.list(dir, rel, depth).await?];
        while let Some(top) = stack.last_mut() {
            let Some((name, st)) = top.entries.next() else {
                stack.pop();
                continue;
            };
            let path = join_remote(&top.dir, &name);
            let sub = join_rel(&top.rel, &name);
            let depth = top.depth + 1;
            if let Some((dir, rel)) = self.look(path, sub, &st).await? {
                stack.push(self.list(dir, rel, depth).await?);
            }
        }
        Ok(())
    }

    /// The entries of the folder `dir` (sorted by name), to be walked under `rel`.
    async fn list(&mut self, dir: String, rel: String, depth: usize) -> Result<Level, StepError> {
        if depth > MAX_DEPTH {
            return Err(StepError::Io(format!(
                "{dir}: folders nested more than {MAX_DEPTH} deep"
            )));
        }
        let mut entries = self.r.readdir(&dir).await?;
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Level {
            dir,
            rel,
            depth,
            entries: entries.into_iter(),
        })
    }

    /// One listed entry (`st` describes it, not what a link points to): a regular file is
    /// wanted, a folder walked with `recursive`, a symlink looked at (`link`); anything else
    /// is skipped.
    async fn entry(
        &mut self,
        path: String,
        rel: String,
        st: &FileStat,
        depth: usize,
    ) -> Result<(), StepError> {
        if let Some((dir, rel)) = self.look(path, rel, st).await? {
            self.walk(dir, rel, depth).await?;
        }
        Ok(())
    }

    /// One listed entry as `entry` takes it, but a folder to walk is returned (its path and
    /// name under `dest`) rather than walked.
    async fn look(
        &mut self,
        path: String,
        rel: String,
        st: &FileStat,
    ) -> Result<Option<(String, String)>, StepError> {
        match kind(st) {
            S_IFREG => self.want(path.clone(), path, rel, st),
            S_IFDIR if self.recursive => return Ok(Some((path, rel))),
            S_IFDIR => self.skip(path, "a folder (set `recursive: true` to fetch it)"),
            S_IFLNK => self.link(path, rel).await?,
            k => self.skip(path, kind_name(k)),
        }
        Ok(None)
    }

    /// A symlink: fetched (from where it resolves) when it leads to a regular file inside the
    /// tree; else skipped, saying where it leads.
    async fn link(&mut self, path: String, rel: String) -> Result<(), StepError> {
        let Some(target) = self.r.stat(&path).await? else {
            self.skip(path, "a dangling symlink");
            return Ok(());
        };
        match kind(&target) {
            S_IFREG => {}
            S_IFDIR => {
                self.skip(path, "a symlink to a folder: folder links are not followed");
                return Ok(());
            }
            k => {
                self.skip(path, &format!("a symlink to {}", kind_name(k)));
                return Ok(());
            }
        }
        let Some(real) = self.r.realpath(&path).await? else {
            self.skip(path, "a dangling symlink");
            return Ok(());
        };
        if self.inside_root(&real).await? {
            self.want(path, real, rel, &target);
        } else {
            let reason = format!(
                "a symlink to {real}, outside `{}`: links are only followed within the tree \
                 fetched",
                self.root
            );
            self.skip(path, &reason);
        }
        Ok(())
    }

    /// Whether a canonical path is inside the tree fetched (resolved on the server once).
    async fn inside_root(&mut self, real: &str) -> Result<bool, StepError> {
        if self.root_real.is_none() {
            let root = self.root.clone();
            self.root_real = Some(self.r.realpath(&root).await?);
        }
        Ok(match self.root_real.as_ref().and_then(Option::as_deref) {
            Some("/") => real.starts_with('/'),
            Some(root) => {
                real.len() > root.len()
                    && real.starts_with(root)
                    && real.as_bytes()[root.len()] == b'/'
            }
            None => false,
        })
    }

    fn want(&mut self, remote: String, open: String, rel: String, st: &FileStat) {
        self.found.wanted.push(Wanted {
            remote,
            open,
            rel,
            size: st.size.unwrap_or(0),
            mtime: st.mtime.unwrap_or(0),
        });
    }

    fn skip(&mut self, path: String, reason: &str) {
        self.found.skipped.push(Skipped {
            path,
            reason: reason.to_string(),
        });
    }
}

fn join_rel(rel: &str, name: &str) -> String {
    if rel.is_empty() {
        name.to_string()
    } else {
        format!("{rel}/{name}")
    }
}

/// The last component of a remote path.
fn last_name(p: &str) -> String {
    p.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(p)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_in_words() {
        assert_eq!(kind_name(S_IFIFO), "a FIFO");
        assert_eq!(kind_name(S_IFSOCK), "a socket");
        assert_eq!(kind_name(S_IFCHR), "a character device");
        assert_eq!(last_name("/var/log/app/"), "app");
        assert_eq!(join_rel("", "a"), "a");
        assert_eq!(join_rel("a", "b"), "a/b");
    }
}
