//! Temporaries that earlier runs of an upload left behind (a sortie killed mid-transfer
//! cannot remove its `.NAME.sortie-RAND.tmp`): each folder the step wrote a file into is
//! listed once — beside the first upload into it (`Remote::list_ahead`: its requests travel
//! with the write and the close, so the listing costs no round trip of its own), or after
//! the files are in place when it could not be — and an entry is removed when its name is sortie's
//! temporary name for one of the step's destinations in that folder (`temp_name::is_put_temp`),
//! the listing (`lstat`, as OpenSSH's server lists) says it is a regular file — never a link,
//! a folder or anything else — and it was last written `STALE_AGE` or more before the newest
//! file the step wrote there (by its final name, or the temporary it was being written to when
//! the folder was listed). The age keeps an upload of the same file by a run still going
//! elsewhere safe; comparing with a file the step wrote keeps the server's clock on both sides.
//! A removal that fails is left alone: the step's files are in place, and that is its work.

// `StepError` (the engine's type) carries a whole `Diagnostic`; boxing it is the engine's call.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;

use super::remote::{join_remote, remote_parent};
use crate::conn::{Listing, Remote};
use crate::error::StepError;
use crate::steps::temp_name::is_put_temp;

/// How long a temporary must have been left alone to be taken for an earlier run's (seconds).
const STALE_AGE: u64 = 3600;
/// Removed temporaries named in the warning; the rest are counted.
const NAMED: usize = 5;

const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;

/// Removes earlier runs' temporaries beside the files written (`written`, which were sent by
/// way of the temporaries `temps`), for every destination of the step (`all`) in those
/// folders, from the folders' `listings` taken ahead (the others are listed now); returns
/// their paths.
pub(super) async fn remove_stale(
    r: &mut Remote,
    written: &[String],
    temps: &[String],
    all: &[String],
    mut listings: Vec<Listing>,
) -> Result<Vec<String>, StepError> {
    // folder → (names of the step's destinations there, names written there)
    let mut folders: BTreeMap<&str, (Vec<&str>, Vec<&str>)> = BTreeMap::new();
    for p in all {
        folders.entry(remote_parent(p)).or_default().0.push(last(p));
    }
    for p in written.iter().chain(temps) {
        folders.entry(remote_parent(p)).or_default().1.push(last(p));
    }
    let mut removed = Vec::new();
    for (dir, (names, wrote)) in folders {
        if wrote.is_empty() {
            continue;
        }
        let ahead = listings
            .iter()
            .position(|(d, _)| d == dir)
            .map(|i| listings.swap_remove(i).1);
        let listing = match ahead {
            Some(l) => l,
            None => r.readdir(if dir.is_empty() { "." } else { dir }).await,
        };
        let listing = match listing {
            Ok(l) => l,
            Err(StepError::Io(_)) => continue,
            Err(e) => return Err(e),
        };
        let Some(now) = listing
            .iter()
            .filter(|(n, _)| wrote.contains(&n.as_str()))
            .filter_map(|(_, st)| st.mtime)
            .max()
        else {
            continue;
        };
        for (entry, st) in &listing {
            let regular = st.perm.is_some_and(|p| p & S_IFMT == S_IFREG);
            let old = st.mtime.is_some_and(|m| m.saturating_add(STALE_AGE) <= now);
            if regular && old && names.iter().any(|n| is_put_temp(entry, n)) {
                let path = join_remote(dir, entry);
                match r.unlink(&path).await {
                    Ok(()) => removed.push(path),
                    Err(StepError::Io(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(removed)
}

/// The step's warning about removed temporaries, if it removed any.
pub(super) fn removed_warning(removed: &[String]) -> Option<String> {
    if removed.is_empty() {
        return None;
    }
    let mut named = removed[..removed.len().min(NAMED)].join(", ");
    if removed.len() > NAMED {
        named.push_str(&format!(" and {} more", removed.len() - NAMED));
    }
    Some(format!(
        "removed {} temporary file{} that an interrupted earlier upload left behind: {named}",
        removed.len(),
        if removed.len() == 1 { "" } else { "s" }
    ))
}

fn last(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_warning_names_the_first_few() {
        assert_eq!(removed_warning(&[]), None);
        let one = removed_warning(&["/d/.a.sortie-1-0.tmp".into()]).unwrap();
        assert!(one.contains("1 temporary file that"), "{one}");
        let many: Vec<String> = (0..8).map(|i| format!("/d/{i}")).collect();
        let w = removed_warning(&many).unwrap();
        assert!(w.contains("/d/4 and 3 more") && !w.contains("/d/5"), "{w}");
    }
}
