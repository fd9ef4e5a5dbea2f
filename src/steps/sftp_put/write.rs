//! The upload itself (`put_all`, called by the run in `mod.rs` in the transfer — a task of
//! its own on the runtime — with the planned uploads): what is at each destination already
//! (files with the same size and SHA-256 are not sent, only their mode set), each other file
//! written to a new temporary name beside its destination (random, created exclusively) with
//! the exact mode, then renamed into place — SFTP rename for new files, `mv -f` over the
//! session for existing ones. On failure the temporaries are removed; on success, those that
//! killed earlier runs left beside the files written (`stale.rs`). The output is the step's
//! result (`files`, `bytes`, `changed`).

// `StepError` (the engine's type) carries a whole `Diagnostic`; boxing it is the engine's call.
#![allow(clippy::result_large_err)]

use std::collections::HashSet;

use serde_json::json;

use super::remote::{ensure_dir, join_remote, quote, remote_parent, remote_sha256};
use super::stale::remove_stale;
use super::{Body, PER_COMMAND, Upload};
use crate::conn::{FileStat, Listing, Remote, RemoteFile};
use crate::error::StepError;
use crate::steps::StepOutput;
use crate::steps::temp_name::put_temp;

/// Names tried for an upload's temporary before giving up (each is random: a taken one is
/// somebody's doing).
const TEMP_TRIES: usize = 8;

/// The state of one destination on the host before the upload.
struct Before {
    stat: Option<FileStat>,
    same: bool,
}

impl Before {
    /// The permission bits the file has now, if it exists.
    fn mode(&self) -> Option<u32> {
        self.stat.as_ref().and_then(|s| s.perm).map(|p| p & 0o7777)
    }
}

/// What the step asks of every file it writes.
#[derive(Clone, Copy)]
struct Placement<'a> {
    mode: Option<u32>,
    mkdir: bool,
    dest: &'a str,
}

/// Writes the uploads: a file whose remote copy already has the same bytes is left alone (its
/// mode set when asked), the others are sent to a temporary name and renamed into place. On
/// failure, the temporaries are removed.
pub(super) async fn put_all(
    r: &mut Remote,
    uploads: Vec<Upload>,
    mode: Option<u32>,
    mkdir: bool,
    dest: &str,
    max_output: usize,
) -> Result<StepOutput, StepError> {
    let before = survey(r, &uploads, max_output).await?;
    let place = Placement { mode, mkdir, dest };
    let mut progress = Progress::default();
    if let Err(e) = progress
        .upload(r, &uploads, &before, place, max_output)
        .await
    {
        progress.remove_temps(r, &e).await;
        return Err(e);
    }
    progress.listings.extend(r.take_ahead().await);
    let all: Vec<String> = uploads.iter().map(|u| u.remote.clone()).collect();
    let listings = std::mem::take(&mut progress.listings);
    let removed = remove_stale(r, &progress.written, &progress.made, &all, listings).await?;
    if let Some(w) = super::stale::removed_warning(&removed) {
        progress.warnings.push(w);
    }
    Ok(progress.output())
}

/// What is at each destination already, and which files there hold the same bytes (those of
/// the same size, hashed on the host).
async fn survey(
    r: &mut Remote,
    uploads: &[Upload],
    max_output: usize,
) -> Result<Vec<Before>, StepError> {
    let mut before = Vec::with_capacity(uploads.len());
    for u in uploads {
        let stat = match &u.seen {
            Some(seen) => seen.clone(),
            None => r.stat(&u.remote).await?,
        };
        if stat.as_ref().is_some_and(|s| s.is_dir()) {
            return Err(StepError::Io(format!(
                "{} is a directory on the host",
                u.remote
            )));
        }
        before.push(Before { stat, same: false });
    }
    let candidates: Vec<usize> = (0..uploads.len())
        .filter(|&i| {
            before[i]
                .stat
                .as_ref()
                .is_some_and(|s| s.size == Some(uploads[i].size))
        })
        .collect();
    let sums = remote_sha256(
        r,
        &candidates
            .iter()
            .map(|&i| uploads[i].remote.clone())
            .collect::<Vec<_>>(),
        max_output,
    )
    .await?;
    for (k, &i) in candidates.iter().enumerate() {
        before[i].same = sums[k].as_deref() == Some(uploads[i].sha256.as_str());
    }
    Ok(before)
}

/// What the upload has done so far: the result entries, and what is still to clean up.
#[derive(Default)]
struct Progress {
    files: Vec<serde_json::Value>,
    sent: u64,
    changed: bool,
    known_dirs: HashSet<String>,
    /// (temporary, final) pairs whose final name exists: renamed together with `mv -f`.
    replace: Vec<(String, String)>,
    /// Temporaries not yet renamed into place.
    temps: Vec<String>,
    /// Every temporary the step created.
    made: Vec<String>,
    /// Destinations written (sent and renamed into place).
    written: Vec<String>,
    /// Folders listed beside the uploads into them (for earlier runs' temporaries), with
    /// what they held then; `Remote::list_ahead`.
    listings: Vec<Listing>,
    /// Folders whose listing was started.
    listed: HashSet<String>,
    warnings: Vec<String>,
}

impl Progress {
    async fn upload(
        &mut self,
        r: &mut Remote,
        uploads: &[Upload],
        before: &[Before],
        place: Placement<'_>,
        max_output: usize,
    ) -> Result<(), StepError> {
        for (u, b) in uploads.iter().zip(before) {
            if b.same {
                self.keep(r, u, b, place.mode).await?;
            } else {
                self.send(r, u, b, place).await?;
            }
        }
        self.replace_existing(r, max_output).await
    }

    /// A file that is there already: only its mode, when asked, is set.
    async fn keep(
        &mut self,
        r: &mut Remote,
        u: &Upload,
        b: &Before,
        mode: Option<u32>,
    ) -> Result<(), StepError> {
        let mut changed = false;
        if let Some(m) = mode
            && b.mode() != Some(m)
        {
            r.chmod(&u.remote, m).await?;
            changed = true;
        }
        self.changed |= changed;
        self.files.push(
            json!({"path": u.remote, "bytes": u.size, "sha256": u.sha256, "changed": changed}),
        );
        Ok(())
    }

    /// Sends an upload to a new temporary name beside its destination (random, created
    /// exclusively: never through anything planted there), with the exact mode, then renames
    /// it into place; a destination that exists is left for `replace_existing`.
    async fn send(
        &mut self,
        r: &mut Remote,
        u: &Upload,
        b: &Before,
        place: Placement<'_>,
    ) -> Result<(), StepError> {
        let parent = remote_parent(&u.remote).to_string();
        if b.stat.is_some() {
            // The destination is there, so its folder is.
            self.known_dirs.insert(parent.clone());
        }
        let name = u.remote.rsplit('/').next().unwrap_or(&u.remote);
        let file_mode = place.mode.or(b.mode()).unwrap_or(0o644);
        // Optimistic: the folder is looked at (and made, with `mkdir`) only when the file
        // cannot be created in it — a round trip saved on every upload into a folder that is
        // there. `ensure_dir` then says what is wrong, or makes the folder for a second try.
        let mut f = match create_temp(r, &parent, name, file_mode).await {
            Ok(f) => f,
            Err(StepError::Io(_)) if !self.known_dirs.contains(&parent) => {
                ensure_dir(r, &parent, place.mkdir, place.dest, &mut self.known_dirs).await?;
                create_temp(r, &parent, name, file_mode).await?
            }
            Err(e) => return Err(e),
        };
        let tmp = f.path.clone();
        self.temps.push(tmp.clone());
        self.made.push(tmp.clone());
        // The folder's listing, for temporaries earlier runs left, travels with the write
        // and the close (no round trips of its own); once per folder.
        if self.listed.insert(parent.clone()) {
            self.listings.extend(r.take_ahead().await);
            r.list_ahead(&parent).await;
        }
        write_body(r, &mut f, u).await?;
        // The server's umask applied at creation; the mode asked for is exact. Set on the
        // open handle (a path could have been swapped for a link meanwhile), closed, and — a
        // new destination — renamed into place, in one round trip.
        let to = b.stat.is_none().then_some(u.remote.as_str());
        let fin = r.finish_write(f, file_mode, to).await;
        if let Err(e) = fin.mode.and(fin.close) {
            if fin.renamed == Some(true) {
                // Renamed before the failure was known: the file is new and ours, and it
                // is not what was asked for.
                self.temps.retain(|t| t != &tmp);
                let _ = r.unlink(&u.remote).await;
            }
            return Err(e);
        }
        match fin.renamed {
            Some(true) => self.temps.retain(|t| t != &tmp),
            // Exists (or was created meanwhile by someone else): replaced like an existing
            // file.
            _ => self.replace.push((tmp.clone(), u.remote.clone())),
        }
        self.sent += u.size;
        self.changed = true;
        self.written.push(u.remote.clone());
        self.files
            .push(json!({"path": u.remote, "bytes": u.size, "sha256": u.sha256, "changed": true}));
        Ok(())
    }

    /// Renames the sent files whose destination existed into place, a batch per command.
    async fn replace_existing(
        &mut self,
        r: &mut Remote,
        max_output: usize,
    ) -> Result<(), StepError> {
        let replace = std::mem::take(&mut self.replace);
        for batch in replace.chunks(PER_COMMAND) {
            if !move_into_place(r, batch, max_output).await? {
                self.warnings.push(
                    "the host runs no commands: existing files were removed, then replaced \
                     (not atomically)"
                        .to_string(),
                );
            }
            for (tmp, _) in batch {
                self.temps.retain(|t| t != tmp);
            }
        }
        Ok(())
    }

    /// After a failure, nothing half-written stays behind under a final name; the
    /// temporaries go too (unless the session itself is gone).
    async fn remove_temps(&self, r: &mut Remote, e: &StepError) {
        if matches!(e, StepError::Connect { .. }) {
            return;
        }
        for t in &self.temps {
            let _ = r.unlink(t).await;
        }
    }

    fn output(self) -> StepOutput {
        StepOutput {
            changed: self.changed,
            warnings: self.warnings,
            ..Default::default()
        }
        .with("files", self.files)
        .with("bytes", self.sent)
        .with("changed", self.changed)
    }
}

/// A new temporary for an upload to `parent/name`: a random name, created exclusively with
/// `file_mode`.
async fn create_temp(
    r: &mut Remote,
    parent: &str,
    name: &str,
    file_mode: u32,
) -> Result<RemoteFile, StepError> {
    r.create_unique(TEMP_TRIES, file_mode as i32, || {
        Ok(join_remote(parent, &put_temp(name)?))
    })
    .await
}

/// Writes an upload's bytes to the remote file: inline ones, or a local file streamed in
/// chunks (which must not change size meanwhile).
async fn write_body(r: &mut Remote, f: &mut RemoteFile, u: &Upload) -> Result<(), StepError> {
    // A turn among the run's transfers: what is in flight is bounded, however many hosts.
    let _turn = crate::conn::transfer_turn().await;
    match &u.body {
        Body::Bytes(b) => {
            for c in b.chunks(crate::conn::WRITE_IN_FLIGHT) {
                r.write_all(f, c).await?;
            }
        }
        Body::File(p) => {
            use std::io::Read;
            let mut lf = std::fs::File::open(p)
                .map_err(|e| StepError::Io(format!("cannot read {}: {e}", p.display())))?;
            let mut buf = vec![0u8; crate::conn::WRITE_IN_FLIGHT];
            let mut n = 0u64;
            loop {
                let k = lf
                    .read(&mut buf)
                    .map_err(|e| StepError::Io(format!("cannot read {}: {e}", p.display())))?;
                if k == 0 {
                    break;
                }
                r.write_all(f, &buf[..k]).await?;
                n += k as u64;
            }
            if n != u.size {
                return Err(StepError::Io(format!(
                    "{} changed while it was being sent",
                    p.display()
                )));
            }
        }
    }
    Ok(())
}

/// `mv -f` over the session for (temporary, final) pairs: `Ok(true)`. A host that runs no
/// commands (or has no `mv`) gets remove-then-rename over SFTP instead, which is not atomic:
/// `Ok(false)`.
async fn move_into_place(
    r: &mut Remote,
    batch: &[(String, String)],
    max_output: usize,
) -> Result<bool, StepError> {
    let mut cmd = String::new();
    for (tmp, fin) in batch {
        if !cmd.is_empty() {
            cmd.push_str(" && ");
        }
        cmd.push_str(&format!("mv -f -- {} {}", quote(tmp)?, quote(fin)?));
    }
    let out = match r.exec(&cmd, max_output).await {
        Ok(o) => Some(o),
        // A login without commands (SFTP only): fall back below.
        Err(StepError::Io(_)) => None,
        Err(e) => return Err(e),
    };
    match out {
        Some(o) if o.rc == 0 => Ok(true),
        Some(o) if o.rc != 126 && o.rc != 127 => Err(StepError::Io(format!(
            "cannot rename the uploaded files into place (`mv -f` rc {}): {}",
            o.rc,
            String::from_utf8_lossy(&o.stderr).trim()
        ))),
        _ => {
            // No shell or no `mv`: remove, then rename.
            for (tmp, fin) in batch {
                r.unlink(fin).await?;
                r.rename(tmp, fin).await?;
            }
            Ok(false)
        }
    }
}
