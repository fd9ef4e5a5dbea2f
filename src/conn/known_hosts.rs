//! known_hosts files: read (OpenSSH's format: plain, wildcard and negated patterns, `[host]:port`,
//! hashed `|1|salt|hash` names, `@revoked`; `@cert-authority` lines are skipped), looked up for one
//! host and port, and appended to (`accept-new`). The files come from the inventory's
//! `known_hosts`, `~/.ssh/known_hosts` (or ssh_config's `UserKnownHostsFile`) and
//! `/etc/ssh/ssh_known_hosts`; the host-key check (`host_key.rs`, during `connect.rs`) uses the key
//! types known for a host to set its host-key algorithm preference and checks the server's key
//! against the entries here. A run reads each file once per version (`load` keeps what it
//! parsed until the file changes, `crate::file_version`): every host's connection checks the
//! same files, and a thousand hosts parsed a thousand-line file a thousand times.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use hmac::{KeyInit, Mac};
use sha2::Digest;

use crate::file_version::FileVersion;

/// One usable known_hosts line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub revoked: bool,
    patterns: Patterns,
    /// `ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa`, …
    pub key_type: String,
    /// The decoded public key blob.
    pub key: Vec<u8>,
    pub file: PathBuf,
    pub line: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Patterns {
    /// `|1|salt|hash`: HMAC-SHA1 of the host name keyed by the salt.
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
    /// Comma-separated patterns, `!` negates.
    List(Vec<String>),
}

/// What the known entries say about a server's key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A known key for this host.
    Match,
    /// The host is known with other keys: the key changed (or was revoked).
    Changed {
        known: Vec<String>,
    },
    Revoked,
    /// Nothing is known about this host.
    Unknown,
}

/// The name known_hosts uses for a host and port: `host`, or `[host]:port` off port 22.
pub fn host_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// OpenSSH's fingerprint of a key blob: `SHA256:` and the unpadded base64 of its SHA-256.
pub fn fingerprint(key: &[u8]) -> String {
    format!(
        "SHA256:{}",
        STANDARD_NO_PAD.encode(sha2::Sha256::digest(key))
    )
}

/// The key type named at the start of a public key blob (an SSH string).
pub fn blob_key_type(key: &[u8]) -> Option<String> {
    let len = u32::from_be_bytes(key.get(..4)?.try_into().ok()?) as usize;
    let name = key.get(4..4 + len)?;
    std::str::from_utf8(name).ok().map(str::to_string)
}

/// The entries of several files (missing files are skipped; unreadable ones are errors).
pub fn load(files: &[PathBuf]) -> Result<Vec<Arc<[Entry]>>, String> {
    let mut out = Vec::new();
    for f in files {
        match load_file(f) {
            Ok(entries) => out.push(entries),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot read known_hosts file {}: {e}", f.display())),
        }
    }
    Ok(out)
}

/// One file's entries, parsed once per version of the file and shared by every connection.
fn load_file(f: &Path) -> std::io::Result<Arc<[Entry]>> {
    type Parsed = HashMap<PathBuf, (FileVersion, Arc<[Entry]>)>;
    static PARSED: OnceLock<Mutex<Parsed>> = OnceLock::new();
    let parsed = PARSED.get_or_init(Default::default);
    let version = FileVersion::of(f)?;
    if let Some((v, entries)) = parsed.lock().unwrap_or_else(|p| p.into_inner()).get(f)
        && *v == version
    {
        return Ok(entries.clone());
    }
    let text = std::fs::read_to_string(f)?;
    let entries: Arc<[Entry]> = parse(&text, f).into();
    // Kept only when the file did not change while it was read.
    if version.current() && text.len() as u64 == version.size() {
        parsed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(f.to_path_buf(), (version, entries.clone()));
    }
    Ok(entries)
}

/// Parses known_hosts text; lines it cannot use (comments, CA lines, bad base64) are skipped.
pub fn parse(text: &str, file: &Path) -> Vec<Entry> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let mut first = words.next().unwrap_or_default();
        let mut revoked = false;
        if first.starts_with('@') {
            match first {
                "@revoked" => revoked = true,
                // Certificate authorities sign host certificates, which we do not use.
                _ => continue,
            }
            first = match words.next() {
                Some(w) => w,
                None => continue,
            };
        }
        let (Some(key_type), Some(b64)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(key) = STANDARD.decode(b64) else {
            continue;
        };
        let patterns = match first.strip_prefix("|1|") {
            Some(rest) => {
                let mut parts = rest.splitn(2, '|');
                let (Some(salt), Some(hash)) = (parts.next(), parts.next()) else {
                    continue;
                };
                match (STANDARD.decode(salt), STANDARD.decode(hash)) {
                    (Ok(salt), Ok(hash)) => Patterns::Hashed { salt, hash },
                    _ => continue,
                }
            }
            None => Patterns::List(first.split(',').map(|p| p.to_ascii_lowercase()).collect()),
        };
        out.push(Entry {
            revoked,
            patterns,
            key_type: key_type.to_string(),
            key,
            file: file.to_path_buf(),
            line: i + 1,
        });
    }
    out
}

impl Entry {
    /// Whether this line is about `name` (already `[host]:port` when off port 22).
    pub fn matches(&self, name: &str) -> bool {
        self.matches_lowercase(&name.to_ascii_lowercase())
    }

    /// `matches`, for a name already in lower case.
    fn matches_lowercase(&self, name: &str) -> bool {
        match &self.patterns {
            Patterns::Hashed { salt, hash } => {
                let Ok(mut mac) = hmac::Hmac::<sha1::Sha1>::new_from_slice(salt) else {
                    return false;
                };
                mac.update(name.as_bytes());
                mac.verify_slice(hash).is_ok()
            }
            Patterns::List(list) => {
                let mut hit = false;
                for p in list {
                    match p.strip_prefix('!') {
                        Some(neg) if wildcard(neg, name) => return false,
                        Some(_) => {}
                        None => hit |= wildcard(p, name),
                    }
                }
                hit
            }
        }
    }
}

/// OpenSSH's `*` / `?` pattern match.
fn wildcard(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The entries about `name`, from the files `load` read.
pub fn for_host<'a>(files: &'a [Arc<[Entry]>], name: &str) -> Vec<&'a Entry> {
    let name = name.to_ascii_lowercase();
    files
        .iter()
        .flat_map(|f| f.iter())
        .filter(|e| e.matches_lowercase(&name))
        .collect()
}

/// Judges the server's key against the entries about its host.
pub fn verdict(known: &[&Entry], key: &[u8]) -> Verdict {
    if known.iter().any(|e| e.revoked && e.key == key) {
        return Verdict::Revoked;
    }
    let plain: Vec<&&Entry> = known.iter().filter(|e| !e.revoked).collect();
    if plain.iter().any(|e| e.key == key) {
        return Verdict::Match;
    }
    if plain.is_empty() {
        return Verdict::Unknown;
    }
    Verdict::Changed {
        known: plain
            .iter()
            .map(|e| format!("{}:{} ({})", e.file.display(), e.line, e.key_type))
            .collect(),
    }
}

/// The host-key algorithms to offer for the key types known for a host, in OpenSSH's order
/// of preference; `None` when nothing is known (the library's default order applies).
pub fn algorithms(known: &[&Entry]) -> Option<Vec<&'static str>> {
    const ORDER: &[(&str, &[&str])] = &[
        ("ssh-ed25519", &["ssh-ed25519"]),
        ("ecdsa-sha2-nistp256", &["ecdsa-sha2-nistp256"]),
        ("ecdsa-sha2-nistp384", &["ecdsa-sha2-nistp384"]),
        ("ecdsa-sha2-nistp521", &["ecdsa-sha2-nistp521"]),
        ("ssh-rsa", &["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]),
        ("ssh-dss", &["ssh-dss"]),
    ];
    let types: Vec<&str> = known
        .iter()
        .filter(|e| !e.revoked)
        .map(|e| e.key_type.as_str())
        .collect();
    let algs: Vec<&'static str> = ORDER
        .iter()
        .filter(|(t, _)| types.contains(t))
        .flat_map(|(_, a)| a.iter().copied())
        .collect();
    (!algs.is_empty()).then_some(algs)
}

/// Serializes appends from every host's connect thread, so lines never interleave.
static APPEND: Mutex<()> = Mutex::new(());

/// Appends `name keytype base64` to `file` (creating it and its folder), on a line of its own.
pub fn append(file: &Path, name: &str, key: &[u8]) -> Result<(), String> {
    let key_type = blob_key_type(key).ok_or("the server's host key is malformed")?;
    let _guard = APPEND.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    // A file that does not end in a newline would glue our line to its last one.
    let needs_newline = std::fs::read(file)
        .map(|b| b.last().is_some_and(|c| *c != b'\n'))
        .unwrap_or(false);
    let line = format!(
        "{}{name} {key_type} {}\n",
        if needs_newline { "\n" } else { "" },
        STANDARD.encode(key)
    );
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .map_err(|e| format!("cannot open {}: {e}", file.display()))?;
    f.write_all(line.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", file.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(kind: &str, body: &[u8]) -> Vec<u8> {
        let mut b = (kind.len() as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind.as_bytes());
        b.extend_from_slice(body);
        b
    }

    fn line(pattern: &str, key: &[u8]) -> String {
        format!(
            "{pattern} {} {}\n",
            blob_key_type(key).unwrap(),
            STANDARD.encode(key)
        )
    }

    #[test]
    fn names_carry_the_port_off_22() {
        assert_eq!(host_name("web1", 22), "web1");
        assert_eq!(host_name("127.0.10.1", 2222), "[127.0.10.1]:2222");
    }

    #[test]
    fn fingerprint_is_openssh_style() {
        // The format: prefix, unpadded base64 of 32 bytes (43 characters). The integration
        // tests compare it with `ssh-keygen -lf` on a real host key.
        let fp = fingerprint(&blob("ssh-ed25519", &[7u8; 36]));
        assert!(fp.starts_with("SHA256:"));
        assert_eq!(fp.len(), 7 + 43);
        assert!(!fp.ends_with('='));
    }

    #[test]
    fn plain_wildcard_negated_and_port_patterns() {
        let k = blob("ssh-ed25519", b"one");
        let text = line("web*.example.com,!web9.example.com", &k) + &line("[10.0.0.5]:2222", &k);
        let e = parse(&text, Path::new("kh"));
        assert_eq!(e.len(), 2);
        assert!(e[0].matches("web1.example.com"));
        assert!(e[0].matches("WEB2.example.com"));
        assert!(!e[0].matches("web9.example.com"));
        assert!(!e[0].matches("db1.example.com"));
        assert!(e[1].matches("[10.0.0.5]:2222"));
        assert!(!e[1].matches("10.0.0.5"));
    }

    #[test]
    fn hashed_names_match_by_hmac() {
        // Made with `ssh-keygen -H` semantics: HMAC-SHA1(salt, name).
        let salt = b"0123456789abcdef0123";
        let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(salt).unwrap();
        mac.update(b"[127.0.10.1]:2222");
        let hash = mac.finalize().into_bytes();
        let k = blob("ssh-ed25519", b"k");
        let text = line(
            &format!("|1|{}|{}", STANDARD.encode(salt), STANDARD.encode(hash)),
            &k,
        );
        let e = parse(&text, Path::new("kh"));
        assert!(e[0].matches("[127.0.10.1]:2222"));
        assert!(!e[0].matches("[127.0.10.2]:2222"));
    }

    #[test]
    fn verdicts() {
        let a = blob("ssh-ed25519", b"a");
        let b = blob("ssh-ed25519", b"b");
        let r = blob("ecdsa-sha2-nistp256", b"r");
        let text = line("h", &a)
            + &line("h", &r)
            + "@revoked h "
            + &line("", &b)[1..]
            + "@cert-authority * ssh-ed25519 AAAA\n# comment\n";
        let all = [Arc::from(parse(&text, Path::new("kh")))];
        let known = for_host(&all, "H");
        assert_eq!(verdict(&known, &a), Verdict::Match);
        assert_eq!(verdict(&known, &b), Verdict::Revoked);
        assert!(matches!(
            verdict(&known, &blob("ssh-ed25519", b"c")),
            Verdict::Changed { .. }
        ));
        assert_eq!(verdict(&for_host(&all, "other"), &a), Verdict::Unknown);
        assert_eq!(
            algorithms(&known),
            Some(vec!["ssh-ed25519", "ecdsa-sha2-nistp256"])
        );
        assert_eq!(algorithms(&[]), None);
    }

    #[test]
    fn append_adds_a_line_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("sub/known_hosts");
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(&f, "x ssh-ed25519 AAAA").unwrap();
        let k = blob("ssh-ed25519", b"new");
        append(&f, "[h]:2222", &k).unwrap();
        let text = std::fs::read_to_string(&f).unwrap();
        assert_eq!(text.lines().count(), 2);
        let e = parse(&text, &f);
        assert!(e.iter().any(|e| e.matches("[h]:2222") && e.key == k));
    }

    #[test]
    fn load_reads_a_file_again_once_it_changed() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("known_hosts");
        let a = blob("ssh-ed25519", b"a");
        std::fs::write(&f, line("h1", &a)).unwrap();
        let files = [f.clone(), dir.path().join("missing")];
        let first = load(&files).unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(for_host(&first, "h1").len(), 1);
        // The same version is shared, not parsed again.
        assert!(Arc::ptr_eq(&first[0], &load(&files).unwrap()[0]));
        append(&f, "h2", &blob("ssh-ed25519", b"b")).unwrap();
        let second = load(&files).unwrap();
        assert_eq!(for_host(&second, "h2").len(), 1);
        assert_eq!(for_host(&second, "h1").len(), 1);
    }
}
