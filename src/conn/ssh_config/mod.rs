//! sortie's own reader of OpenSSH client configuration, held to `ssh -G` of OpenSSH 9.2 by
//! the differential tests (`tests/it/ssh_config.rs`): no crate reads it exactly (Match, the
//! first-value rule across Include, tokens, OpenSSH's own checks), and agreeing with the
//! user's `ssh` is the point (docs/decisions.md).
//!
//! Which files (`Source`): `~/.ssh/config` then `/etc/ssh/ssh_config` (that path can be moved
//! with `SORTIE_SSH_SYSTEM_CONFIG`, `none` for none), or one file as with `ssh -F`, or none.
//! Each file is read and split into lines once per process (`lex`, cached here); each lookup
//! (`resolve`, with what ssh would be asked: host, and the `-l`/`-p`/`-J` the inventory gives)
//! walks them (`eval`, with `matching` for Host and Match and `keywords` for the checks OpenSSH
//! makes) and returns the `Resolved` options or located diagnostics. `conn::config` builds
//! connections from it; `sortie check`, `run` and `inventory` report its diagnostics.

mod eval;
pub mod expand;
mod keywords;
mod lex;
mod matching;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

pub use eval::{Jump, Query, Resolved};
pub use expand::user_shell;

use crate::diag::{Diagnostic, register_source};
use eval::{File, Root};

/// The environment variable that replaces `/etc/ssh/ssh_config` (a path, or `none`).
pub const SYSTEM_CONFIG_ENV: &str = "SORTIE_SSH_SYSTEM_CONFIG";

/// Which ssh_config files a lookup reads.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// `~/.ssh/config`, then the system file — what `ssh` reads without `-F`.
    Default,
    /// One file, as `ssh -F FILE`.
    File(PathBuf),
    /// Nothing (`ssh -F none`).
    Nothing,
}

impl Source {
    /// The inventory's `ssh.config_file`: absent → the default files, `none` → nothing.
    pub fn from_setting(p: Option<&Path>) -> Source {
        match p {
            None => Source::Default,
            Some(p) if p.as_os_str().eq_ignore_ascii_case("none") => Source::Nothing,
            Some(p) => Source::File(p.to_path_buf()),
        }
    }
}

type Cached = Result<Option<Arc<File>>, String>;

/// Reads and splits a file once per process. `Ok(None)` when it does not exist.
fn load(path: &Path, check_perm: bool) -> Cached {
    static FILES: OnceLock<Mutex<HashMap<(PathBuf, bool), Cached>>> = OnceLock::new();
    let files = FILES.get_or_init(Default::default);
    let key = (path.to_path_buf(), check_perm);
    if let Some(c) = files.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return c.clone();
    }
    let r = read(path, check_perm);
    files
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key, r.clone());
    r
}

fn read(path: &Path, check_perm: bool) -> Cached {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read ssh_config `{}`: {e}", path.display())),
    };
    if check_perm {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path)
            .map_err(|e| format!("cannot read ssh_config `{}`: {e}", path.display()))?;
        if (m.uid() != 0 && m.uid() != expand::uid()) || m.mode() & 0o022 != 0 {
            return Err(format!(
                "bad owner or permissions on `{}`: ssh refuses a config file that others can write (chmod go-w)",
                path.display()
            ));
        }
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let id = register_source(path.display().to_string(), text.as_str());
    let lines = text
        .split('\n')
        .enumerate()
        .filter_map(|(i, l)| lex::line(l, u32::try_from(i + 1).unwrap_or(u32::MAX)))
        .collect();
    Ok(Some(Arc::new(File { id, lines })))
}

/// The system-wide file, or where `SORTIE_SSH_SYSTEM_CONFIG` moved it.
fn system_file() -> Option<PathBuf> {
    match std::env::var_os(SYSTEM_CONFIG_ENV) {
        Some(v) if v.is_empty() || v.eq_ignore_ascii_case("none") => None,
        Some(v) => Some(PathBuf::from(v)),
        None => Some(PathBuf::from("/etc/ssh/ssh_config")),
    }
}

fn roots(src: &Source) -> Result<Vec<Root>, Diagnostic> {
    let mut out = Vec::new();
    match src {
        Source::Nothing => {}
        Source::File(p) => match load(p, false) {
            Ok(Some(file)) => out.push(Root {
                file,
                user_conf: true,
            }),
            Ok(None) => {
                return Err(Diagnostic::error(format!(
                    "ssh config file `{}` does not exist",
                    p.display()
                ))
                .help("`ssh.config_file` names a file like `ssh -F`; `none` reads none"));
            }
            Err(e) => return Err(Diagnostic::error(e)),
        },
        Source::Default => {
            if let Some(h) = expand::home() {
                match load(&h.join(".ssh").join("config"), true) {
                    Ok(Some(file)) => out.push(Root {
                        file,
                        user_conf: true,
                    }),
                    Ok(None) => {}
                    Err(e) => return Err(Diagnostic::error(e)),
                }
            }
            if let Some(sys) = system_file() {
                match load(&sys, false) {
                    Ok(Some(file)) => out.push(Root {
                        file,
                        user_conf: false,
                    }),
                    Ok(None) => {}
                    Err(e) => return Err(Diagnostic::error(e)),
                }
            }
        }
    }
    Ok(out)
}

/// What ssh_config says for `q`, as `ssh -G` would resolve it.
pub fn resolve(src: &Source, q: &Query) -> Result<Resolved, Vec<Diagnostic>> {
    let roots = roots(src).map_err(|d| vec![d])?;
    eval::resolve(&roots, q, &load)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "sortie-sshcfg-unit-{}-{}",
            std::process::id(),
            text.len()
        ));
        std::fs::create_dir_all(&dir).expect("dir");
        let p = dir.join(format!("c{}", text.bytes().map(u32::from).sum::<u32>()));
        std::fs::write(&p, text).expect("write");
        p
    }

    fn q(host: &str) -> Query<'_> {
        Query {
            host,
            ..Query::default()
        }
    }

    #[test]
    fn first_value_wins_and_match_is_evaluated() {
        let p = at(
            "Host web*\n  User first\n  User second\n  Port 2200\nMatch user first\n  HostName %h.example.COM\nHost *\n  Port 22\n  IdentityFile ~/a\n  IdentityFile ~/a\n",
        );
        let r = resolve(&Source::File(p), &q("Web1")).expect("resolves");
        // `Host web*` is case-sensitive: `Web1` does not match it.
        assert_eq!(r.user, expand::local_user());
        let r = resolve(&Source::File(at("Host web*\n  User first\n  User second\nMatch user first\n  HostName %h.example.COM\n")), &q("web1")).expect("ok");
        assert_eq!(
            (r.user.as_str(), r.hostname.as_str()),
            ("first", "web1.example.com")
        );
        let r = resolve(
            &Source::File(at(
                "IdentityFile /k/a\nIdentityFile /k/a\nIdentityFile /k/b\n",
            )),
            &q("x"),
        )
        .expect("ok");
        assert_eq!(
            r.identity_files,
            vec![PathBuf::from("/k/a"), PathBuf::from("/k/b")]
        );
    }

    #[test]
    fn refused_lines_are_located() {
        let p = at("Host x\n  Port 99999\n  Frobnicate yes\nMatch colour blue\n");
        let e = resolve(&Source::File(p), &q("y")).expect_err("refused");
        let lines: Vec<u32> = e.iter().filter_map(|d| d.span.map(|s| s.line)).collect();
        assert_eq!(lines, vec![2, 3, 4], "{e:?}");
        let ok = resolve(
            &Source::File(at("IgnoreUnknown frob*\nFrobnicate yes\n")),
            &q("y"),
        );
        assert!(ok.is_ok());
        assert!(resolve(&Source::Nothing, &q("y")).is_ok());
        assert!(resolve(&Source::File("/nonexistent/sortie".into()), &q("y")).is_err());
    }

    #[test]
    fn proxy_command_as_ssh_reads_it() {
        let p = at(
            "Host a\n  HostName 10.0.0.1\n  ProxyCommand nc %h %p %r %n %%\nHost b\n  ProxyJump j\n  ProxyCommand nc b\nHost c\n  ProxyCommand none\nHost *\n  User u\n  ProxyCommand nc any\n",
        );
        let src = Source::File(p);
        let r = resolve(&src, &q("a")).expect("ok");
        assert_eq!(r.proxy_command.as_deref(), Some("nc 10.0.0.1 22 u a %"));
        let r = resolve(&src, &q("b")).expect("ok");
        assert_eq!(
            (r.proxy_command, r.jump.map(|j| j.host)),
            (None, Some("j".into()))
        );
        assert_eq!(resolve(&src, &q("c")).expect("ok").proxy_command, None);
        // The inventory's (`-o`) wins over the config; `-J` wins over both.
        let inv = Query {
            proxy_command: Some("relay %h"),
            ..q("a")
        };
        let r = resolve(&src, &inv).expect("ok");
        assert_eq!(r.proxy_command.as_deref(), Some("relay 10.0.0.1"));
        let jumped = Query {
            jump: Some("k"),
            ..inv
        };
        assert_eq!(resolve(&src, &jumped).expect("ok").proxy_command, None);
        // An unknown token is refused, at its line.
        let bad = resolve(&Source::File(at("ProxyCommand nc %z\n")), &q("x")).expect_err("bad");
        assert_eq!(bad[0].span.map(|s| s.line), Some(1), "{bad:?}");
    }

    #[test]
    fn match_exec_runs_the_command() {
        let p = at(
            "Match exec \"test %h = x\"\n  User by-exec\nMatch !exec \"exit 3\" host y\n  Port 2201\n",
        );
        let src = Source::File(p);
        assert_eq!(resolve(&src, &q("x")).expect("ok").user, "by-exec");
        let y = resolve(&src, &q("y")).expect("ok");
        assert_eq!((y.user, y.port), (expand::local_user(), 2201));
    }
}
