//! The names of the temporary files the SFTP kinds write beside a destination, and how to
//! tell sortie's own from anybody else's. An upload's remote temporary is
//! `.NAME.sortie-RAND.tmp` (`sftp_put`); a download's local one is
//! `.NAME.sortie-KEY-RAND.part` (`sftp_get`), where RAND is 16 hex digits from the kernel's
//! random source, so nobody can plant a link at the name in advance, and KEY (8 hex digits)
//! is derived from the host and the remote path, so a later run of the same step can find a
//! download it was interrupted in (`sftp_get`'s resume). NAME is the destination's file name,
//! cut to `STEM_MAX` bytes so that the temporary name stays within a file system's 255.
//! Matching (`is_put_temp`, `is_get_temp`) is exact: only names of this form are ever taken
//! for sortie's, and the callers also check that what has the name is a regular file.

use sha2::Digest;

use crate::error::StepError;

/// The longest part of a destination's name kept in a temporary name, in bytes.
const STEM_MAX: usize = 160;
/// Hex digits of the random part.
const RAND_HEX: usize = 16;
/// Hex digits of a download's key.
const KEY_HEX: usize = 8;

/// 16 hex digits from the kernel's random source (`getrandom`).
pub(super) fn random_hex() -> Result<String, StepError> {
    crate::random::hex(RAND_HEX / 2).map_err(|e| {
        StepError::Io(format!(
            "cannot make a temporary file name: no random bytes ({e})"
        ))
    })
}

/// A destination's file name as it appears in its temporary names.
fn stem(name: &str) -> &str {
    if name.len() <= STEM_MAX {
        return name;
    }
    let mut end = STEM_MAX;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// The remote temporary name of an upload to a file called `name`.
pub(super) fn put_temp(name: &str) -> Result<String, StepError> {
    Ok(format!(".{}.sortie-{}.tmp", stem(name), random_hex()?))
}

/// Whether `entry` is the name of an upload's temporary for a file called `name`: this
/// version's `.NAME.sortie-RAND.tmp`, or earlier versions' `.NAME.sortie-PID-N.tmp`.
pub(super) fn is_put_temp(entry: &str, name: &str) -> bool {
    let Some(rest) = entry
        .strip_prefix('.')
        .and_then(|e| e.strip_prefix(stem(name)))
        .and_then(|e| e.strip_prefix(".sortie-"))
        .and_then(|e| e.strip_suffix(".tmp"))
    else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    is_hex(rest, RAND_HEX)
        || rest
            .split_once('-')
            .is_some_and(|(a, b)| digits(a) && digits(b))
}

/// The key of a download: the same host and remote path give the same key.
pub(super) fn get_key(host: &str, remote: &str) -> String {
    let mut h = sha2::Sha256::new();
    h.update(host.as_bytes());
    h.update([0]);
    h.update(remote.as_bytes());
    hex::encode(h.finalize())[..KEY_HEX].to_string()
}

/// The local temporary name of a download (of key `key`) to a file called `name`.
pub(super) fn get_temp(name: &str, key: &str) -> Result<String, StepError> {
    Ok(format!(
        ".{}.sortie-{key}-{}.part",
        stem(name),
        random_hex()?
    ))
}

/// Whether `entry` is the name of a download's temporary, of key `key`, for a file called
/// `name`.
pub(super) fn is_get_temp(entry: &str, name: &str, key: &str) -> bool {
    entry
        .strip_prefix('.')
        .and_then(|e| e.strip_prefix(stem(name)))
        .and_then(|e| e.strip_prefix(".sortie-"))
        .and_then(|e| e.strip_prefix(key))
        .and_then(|e| e.strip_prefix('-'))
        .and_then(|e| e.strip_suffix(".part"))
        .is_some_and(|r| is_hex(r, RAND_HEX))
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_names_differ_and_match_their_pattern() {
        let a = put_temp("app.conf").unwrap();
        let b = put_temp("app.conf").unwrap();
        assert_ne!(a, b);
        assert!(is_put_temp(&a, "app.conf"), "{a}");
        assert!(is_put_temp(".app.conf.sortie-4242-0.tmp", "app.conf"));
        assert!(!is_put_temp(&a, "app.con"));
        assert!(!is_put_temp(".app.conf.sortie-x.tmp", "app.conf"));
        assert!(!is_put_temp(".app.conf.sortie-12-.tmp", "app.conf"));
        assert!(!is_put_temp("app.conf.tmp", "app.conf"));

        let key = get_key("h01", "/var/log/app.log");
        assert_eq!(key, get_key("h01", "/var/log/app.log"));
        assert_ne!(key, get_key("h02", "/var/log/app.log"));
        let g = get_temp("app.log", &key).unwrap();
        assert!(is_get_temp(&g, "app.log", &key), "{g}");
        assert!(!is_get_temp(
            &g,
            "app.log",
            &get_key("h02", "/var/log/app.log")
        ));
        assert!(!is_get_temp("app.log.part", "app.log", &key));
    }

    #[test]
    fn long_names_are_cut_on_a_character_boundary() {
        let long = "é".repeat(200);
        let t = put_temp(&long).unwrap();
        assert!(t.len() < 255, "{}", t.len());
        assert!(is_put_temp(&t, &long));
        let g = get_temp(&long, "0123abcd").unwrap();
        assert!(g.len() < 255 && is_get_temp(&g, &long, "0123abcd"));
    }
}
