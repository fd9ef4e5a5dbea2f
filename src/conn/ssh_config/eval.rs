//! One lookup in ssh_config, as `ssh -G` does it in OpenSSH 9.2 (`ssh.c`, `readconf.c`): the
//! files are read in order with `Host`/`Match` turning lines on and off, the first value
//! obtained for each option wins, `Include` reads further files (sharing the current block's
//! state), `HostName`'s `%h` is applied and the name lower-cased, and a second (`final`) pass
//! runs when a `Match final` or `CanonicalizeHostname` asks for it. Every line is checked
//! whether or not it applies, and problems come back as located diagnostics. `mod.rs` supplies
//! the parsed files (`File`, through a loader) and the question (`Query`); `conn::config`
//! turns the answer (`Resolved`) into a connection.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::expand::{self, percent, tilde};
use super::keywords::{self, Kind};
use super::lex::{Arg, Line};
use super::matching::{self, MatchCx};
use crate::diag::{Diagnostic, FileId, Span};

/// A parsed ssh_config file.
#[derive(Debug)]
pub struct File {
    pub id: FileId,
    pub lines: Vec<Line>,
}

/// Reads a file for `Include` (`check_perm`: refuse group/world-writable files, as OpenSSH
/// does); `Ok(None)` when it does not exist.
pub type Loader<'a> = dyn Fn(&Path, bool) -> Result<Option<Arc<File>>, String> + 'a;

/// A top-level file and how OpenSSH treats it.
pub struct Root {
    pub file: Arc<File>,
    /// The user's file (or `-F`): relative `Include`s are under `~/.ssh`, `~` is allowed.
    pub user_conf: bool,
}

/// What ssh would be asked: `ssh [-l user] [-p port] [-J jump] host`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Query<'a> {
    pub host: &'a str,
    pub user: Option<&'a str>,
    pub port: Option<u16>,
    pub jump: Option<&'a str>,
    /// `-o ProxyCommand=…` (left out when `jump` is given).
    pub proxy_command: Option<&'a str>,
}

/// One ProxyJump hop as written: `[user@]host[:port]`, and the hops before it.
#[derive(Clone, Debug, PartialEq)]
pub struct Jump {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    /// The hops before this one (`a,b` for `ProxyJump a,b,c`), as written.
    pub extra: Option<String>,
}

/// The answer for one host.
#[derive(Clone, Debug, Default)]
pub struct Resolved {
    /// What to connect to (`hostname` in `ssh -G`).
    pub hostname: String,
    pub user: String,
    pub port: u16,
    /// IdentityFile, expanded, duplicates dropped, `none` left out.
    pub identity_files: Vec<PathBuf>,
    /// Whether any IdentityFile line applied (else OpenSSH tries its default keys).
    pub identity_named: bool,
    /// UserKnownHostsFile, expanded (`Some(empty)` for `none`; `None`: not set).
    pub known_hosts: Option<Vec<PathBuf>>,
    pub strict: Option<String>,
    pub connect_timeout: Option<u64>,
    pub keepalive: Option<u64>,
    pub jump: Option<Jump>,
    /// ProxyCommand, its `%h %k %n %p %r %%` expanded (none for `none`).
    pub proxy_command: Option<String>,
    /// Things sortie does not do that the config asks for (unsupported options, …).
    pub warnings: Vec<Diagnostic>,
}

#[derive(Default)]
struct Opts {
    hostname: Option<(String, Span)>,
    user: Option<String>,
    port: Option<u16>,
    /// (text, from the user's config, where)
    identity: Vec<(String, bool, Span)>,
    known_hosts: Option<(Vec<String>, Span)>,
    strict: Option<String>,
    connect_timeout: Option<Option<u64>>,
    keepalive: Option<Option<u64>>,
    /// `Some(None)`: `ProxyJump none`.
    jump: Option<(Option<Jump>, Span)>,
    proxy_command: Option<(String, Span)>,
    ignore_unknown: Option<String>,
    host_key_alias: Option<String>,
    canonicalize: Option<String>,
}

struct Pass<'a> {
    host: String,
    original: String,
    final_pass: bool,
    want_final: bool,
    local_user: String,
    opts: Opts,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    load: &'a Loader<'a>,
}

const MAX_DEPTH: usize = 16;

fn span(f: &File, l: &Line, col: u32, end: u32) -> Span {
    Span::new(f.id, l.line, col, l.line, end.max(col + 1))
}

fn arg_span(f: &File, l: &Line, a: &Arg) -> Span {
    span(f, l, a.col, a.end)
}

/// Resolves `q` over `roots`; `Err` holds every error (warnings are in the `Ok`).
pub fn resolve(roots: &[Root], q: &Query, load: &Loader) -> Result<Resolved, Vec<Diagnostic>> {
    let mut p = Pass {
        host: q.host.to_string(),
        original: q.host.to_string(),
        final_pass: false,
        want_final: false,
        local_user: expand::local_user(),
        opts: Opts {
            user: q.user.map(str::to_string),
            port: q.port,
            ..Opts::default()
        },
        errors: Vec::new(),
        warnings: Vec::new(),
        load,
    };
    if let Some(j) = q.jump {
        match parse_jump(j) {
            Ok(hop) => {
                p.opts.jump = Some((hop, Span::default()));
                p.opts.proxy_command = Some(("none".into(), Span::default()));
            }
            Err(()) => p
                .errors
                .push(Diagnostic::error(format!("invalid jump host `{j}`"))),
        }
    }
    if let (None, Some(pc)) = (q.jump, q.proxy_command) {
        p.opts.proxy_command = Some((pc.to_string(), Span::default()));
    }
    p.run_files(roots);
    // ssh.c: HostName's %h, then lower-case anything but an address.
    let mut host = q.host.to_string();
    if let Some((h, sp)) = p.opts.hostname.clone() {
        match percent(&h, &[('h', q.host)], false) {
            Ok(x) => host = x,
            Err(e) => p.errors.push(
                Diagnostic::error(format!("HostName: {e}"))
                    .at(sp)
                    .label("only %h and %% may appear in HostName"),
            ),
        }
    }
    host = match expand::address_literal(&host) {
        Some(a) => a,
        None => host.to_lowercase(),
    };
    let canon = p
        .opts
        .canonicalize
        .as_deref()
        .is_some_and(|c| !matches!(c.to_ascii_lowercase().as_str(), "no" | "false"));
    if p.want_final || canon {
        p.final_pass = true;
        p.host = host.clone();
        let sp = p.opts.hostname.as_ref().map(|h| h.1).unwrap_or_default();
        p.opts.hostname = Some((host.clone(), sp));
        p.run_files(roots);
    }
    if !p.errors.is_empty() {
        return Err(p.errors);
    }
    p.finish(q, host)
}

impl Pass<'_> {
    fn run_files(&mut self, roots: &[Root]) {
        for r in roots {
            let mut active = true;
            self.file(&r.file, r.user_conf, false, &mut active, 0);
        }
    }

    fn file(&mut self, f: &File, user_conf: bool, never: bool, active: &mut bool, depth: usize) {
        for l in &f.lines {
            self.line(f, l, user_conf, never, active, depth);
        }
    }

    fn err(&mut self, d: Diagnostic) {
        // A second pass re-reads the same lines: say each problem once.
        if !self
            .errors
            .iter()
            .any(|e| e.span == d.span && e.title == d.title)
        {
            self.errors.push(d);
        }
    }

    fn warn(&mut self, d: Diagnostic) {
        if !self
            .warnings
            .iter()
            .any(|e| e.span == d.span && e.title == d.title)
        {
            self.warnings.push(d);
        }
    }

    fn line(&mut self, f: &File, l: &Line, uc: bool, never: bool, active: &mut bool, depth: usize) {
        let kw_span = span(f, l, l.kw_col, l.kw_end);
        if l.rest.is_empty() {
            return self.err(
                Diagnostic::error(format!("no argument after keyword `{}`", l.keyword))
                    .at(kw_span)
                    .label("a value is needed here"),
            );
        }
        let kind = match keywords::kind(&l.keyword) {
            Some(k) => k,
            None => {
                let ignored = self
                    .opts
                    .ignore_unknown
                    .as_deref()
                    .is_some_and(|p| matching::list(&l.keyword, p, true) == 1);
                if !ignored {
                    self.err(
                        Diagnostic::error(format!(
                            "bad configuration option `{}`",
                            l.keyword
                        ))
                        .at(kw_span)
                        .label("ssh does not know this keyword")
                        .help("fix or remove it; `IgnoreUnknown NAME` before it makes ssh (and sortie) skip it"),
                    );
                }
                return;
            }
        };
        let args = match &l.args {
            Ok(a) => a.as_slice(),
            Err(()) => {
                return self.err(
                    Diagnostic::error("invalid quotes")
                        .at(span(f, l, l.rest_col, l.rest_col + 1))
                        .label("this quote is never closed"),
                );
            }
        };
        let on = *active;
        match kind {
            Kind::Host => self.host_line(f, l, args, never, active),
            Kind::Match => self.match_line(f, l, never, active),
            Kind::Include => self.include(f, l, args, uc, never, active, depth),
            Kind::Ignored => {}
            Kind::Unsupported => self.warn(
                Diagnostic::warning(format!("unsupported option `{}`", l.keyword))
                    .at(kw_span)
                    .label("ssh ignores it, and so does sortie"),
            ),
            Kind::Command => {
                if l.keyword == "proxycommand"
                    && on
                    && self.opts.proxy_command.is_none()
                    && self.opts.jump.is_none()
                {
                    let sp = span(f, l, l.rest_col, l.rest_col + l.rest.chars().count() as u32);
                    self.opts.proxy_command = Some((l.rest.clone(), sp));
                }
            }
            Kind::ProxyJump => self.proxy_jump(f, l, on),
            Kind::Value(c) => {
                if let Err((msg, at)) = keywords::check(&l.keyword, c, args) {
                    let sp = at
                        .and_then(|i| args.get(i))
                        .map_or(kw_span, |a| arg_span(f, l, a));
                    return self.err(Diagnostic::error(format!("{}: {msg}", l.keyword)).at(sp));
                }
                if on {
                    self.set(f, l, uc, args);
                }
            }
        }
    }

    /// Takes the value of an active line, unless an earlier one gave it already.
    fn set(&mut self, f: &File, l: &Line, uc: bool, args: &[Arg]) {
        let o = &mut self.opts;
        let a0 = args[0].text.clone();
        let first = |x: &mut Option<String>| {
            if x.is_none() {
                *x = Some(a0.clone());
            }
        };
        match l.keyword.as_str() {
            "hostname" if o.hostname.is_none() => {
                o.hostname = Some((a0.clone(), arg_span(f, l, &args[0])));
            }
            "user" => first(&mut o.user),
            "port" if o.port.is_none() => o.port = expand::a2port(&a0),
            "identityfile" | "identityfile2"
                if !o.identity.iter().any(|(t, u, _)| *t == a0 && *u == uc) =>
            {
                o.identity.push((a0.clone(), uc, arg_span(f, l, &args[0])));
            }
            "userknownhostsfile" if o.known_hosts.is_none() => {
                let files = args.iter().map(|a| a.text.clone()).collect();
                o.known_hosts = Some((files, arg_span(f, l, &args[0])));
            }
            "stricthostkeychecking" => first(&mut o.strict),
            "connecttimeout" | "serveraliveinterval" => {
                let slot = if l.keyword == "connecttimeout" {
                    &mut o.connect_timeout
                } else {
                    &mut o.keepalive
                };
                if slot.is_none() {
                    *slot = Some(expand::convtime(&a0));
                }
            }
            "ignoreunknown" => first(&mut o.ignore_unknown),
            "hostkeyalias" => first(&mut o.host_key_alias),
            "canonicalizehostname" => first(&mut o.canonicalize),
            _ => {}
        }
    }

    fn host_line(&mut self, f: &File, l: &Line, args: &[Arg], never: bool, active: &mut bool) {
        *active = false;
        for a in args {
            if a.text.is_empty() {
                return self
                    .err(Diagnostic::error("keyword host empty argument").at(arg_span(f, l, a)));
            }
            if never {
                return;
            }
            let (neg, pat) = match a.text.strip_prefix('!') {
                Some(p) => (true, p),
                None => (false, a.text.as_str()),
            };
            if matching::pattern(self.host.as_bytes(), pat.as_bytes()) {
                if neg {
                    *active = false;
                    return;
                }
                *active = true;
            }
        }
    }

    fn match_line(&mut self, f: &File, l: &Line, never: bool, active: &mut bool) {
        let host = match (&self.opts.hostname, self.final_pass) {
            (Some((h, _)), false) => percent(h, &[('h', &self.host)], false).unwrap_or(h.clone()),
            (Some((h, _)), true) => h.clone(),
            (None, _) => self.host.clone(),
        };
        let user = self.opts.user.clone().unwrap_or(self.local_user.clone());
        let cx = MatchCx {
            host: &host,
            original: &self.original,
            user: &user,
            local_user: &self.local_user,
            final_pass: self.final_pass,
        };
        let mut notes: Vec<Diagnostic> = Vec::new();
        let port = self.opts.port.unwrap_or(22);
        let alias = self.opts.host_key_alias.as_deref().unwrap_or(&host);
        let mut exec = |cmd: &str, (c, e): (u32, u32)| {
            // OpenSSH's tokens for `Match exec` (readconf.c), from the pass as it stands.
            let this = expand::this_host();
            let short = this.split('.').next().unwrap_or("").to_string();
            let hash = expand::connection_hash(&this, &host, port, &user);
            let home = expand::home()
                .map(|h| h.display().to_string())
                .unwrap_or_default();
            let port = port.to_string();
            let keys: [(char, &str); 10] = [
                ('C', &hash),
                ('L', &short),
                ('d', &home),
                ('h', &host),
                ('k', alias),
                ('l', &this),
                ('n', &self.original),
                ('p', &port),
                ('r', &user),
                ('u', &self.local_user),
            ];
            let ran = percent(cmd, &keys, false).and_then(|cmd| expand::run_match_exec(&cmd));
            ran.unwrap_or_else(|why| {
                notes.push(
                    Diagnostic::warning(format!("`Match exec`: {why}: the block does not apply"))
                        .at(span(f, l, c, e)),
                );
                false
            })
        };
        let matched = matching::match_line(&matching::tokens(&l.rest, l.rest_col), &cx, &mut exec);
        for n in notes {
            self.warn(n);
        }
        match matched {
            Ok(m) => {
                if !self.final_pass {
                    self.want_final |= m.want_final;
                }
                *active = !never && m.result;
            }
            Err((msg, c, e)) => self.err(
                Diagnostic::error(format!("bad Match condition: {msg}"))
                    .at(span(f, l, c, e))
                    .help("Match takes all, canonical, final, exec, host, originalhost, user or localuser, each optionally with `!`"),
            ),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn include(
        &mut self,
        f: &File,
        l: &Line,
        args: &[Arg],
        uc: bool,
        never: bool,
        active: &mut bool,
        depth: usize,
    ) {
        for a in args {
            let sp = arg_span(f, l, a);
            if a.text.starts_with('~') && !uc {
                return self.err(
                    Diagnostic::error(format!("bad include path `{}`", a.text))
                        .at(sp)
                        .label("`~` is only allowed in the user's own config"),
                );
            }
            let path = if a.text.starts_with('/') || a.text.starts_with('~') {
                a.text.clone()
            } else if uc {
                format!("~/.ssh/{}", a.text)
            } else {
                format!("/etc/ssh/{}", a.text)
            };
            let pattern = tilde(&path).unwrap_or(path);
            let Ok(paths) = glob::glob(&pattern) else {
                return self.err(Diagnostic::error(format!("glob failed for `{pattern}`")).at(sp));
            };
            if depth >= MAX_DEPTH {
                return self
                    .err(Diagnostic::error("too many recursive configuration includes").at(sp));
            }
            let was = *active;
            for p in paths.flatten() {
                match (self.load)(&p, true) {
                    Ok(Some(inc)) => self.file(&inc, uc, never || !was, active, depth + 1),
                    Ok(None) => {}
                    Err(e) => return self.err(Diagnostic::error(e).at(sp)),
                }
                *active = was;
            }
        }
    }

    fn proxy_jump(&mut self, f: &File, l: &Line, on: bool) {
        let sp = span(f, l, l.rest_col, l.rest_col + l.rest.chars().count() as u32);
        let text = l.rest.split('#').next().unwrap_or("").trim_end();
        match parse_jump(text) {
            Err(()) => self.err(
                Diagnostic::error(format!("invalid ProxyJump `{text}`"))
                    .at(sp)
                    .label(
                        "expected `[user@]host[:port]`, a comma-separated list of them, or `none`",
                    ),
            ),
            Ok(hop) => {
                if on && self.opts.proxy_command.is_none() && self.opts.jump.is_none() {
                    if hop.is_some() {
                        self.opts.proxy_command = Some(("none".into(), sp));
                    }
                    self.opts.jump = Some((hop, sp));
                }
            }
        }
    }

    fn finish(mut self, q: &Query, host: String) -> Result<Resolved, Vec<Diagnostic>> {
        let user = self.opts.user.clone().unwrap_or(self.local_user.clone());
        let port = self.opts.port.unwrap_or(22);
        let this = expand::this_host();
        let short = this.split('.').next().unwrap_or("").to_string();
        let home = expand::home()
            .map(|h| h.display().to_string())
            .unwrap_or_default();
        let hash = expand::connection_hash(&this, &host, port, &user);
        let alias = self
            .opts
            .host_key_alias
            .clone()
            .map(|a| a.to_lowercase())
            .unwrap_or(q.host.to_string());
        let (uid, port_s) = (expand::uid().to_string(), port.to_string());
        let keys: Vec<(char, &str)> = vec![
            ('C', &hash),
            ('L', &short),
            ('i', &uid),
            ('k', &alias),
            ('l', &this),
            ('n', q.host),
            ('p', &port_s),
            ('d', &home),
            ('h', &host),
            ('r', &user),
            ('u', &self.local_user),
        ];
        let mut errors = Vec::new();
        let mut path = |s: &str, sp: Span, what: &str| -> Option<PathBuf> {
            match tilde(s).and_then(|t| percent(&t, &keys, true)) {
                Ok(p) => Some(PathBuf::from(p)),
                Err(e) => {
                    errors.push(Diagnostic::error(format!("{what}: {e}")).at(sp));
                    None
                }
            }
        };
        let identity_named = !self.opts.identity.is_empty();
        let identity_files = (self.opts.identity.iter())
            .filter(|(t, _, _)| !t.eq_ignore_ascii_case("none"))
            .filter_map(|(t, _, sp)| path(t, *sp, "IdentityFile"))
            .collect();
        let known_hosts = self.opts.known_hosts.as_ref().map(|(files, sp)| {
            if files.len() == 1 && files[0].eq_ignore_ascii_case("none") {
                return Vec::new();
            }
            files
                .iter()
                .filter_map(|f| path(f, *sp, "UserKnownHostsFile"))
                .collect()
        });
        let jump_keys = [
            ('h', host.as_str()),
            ('k', &alias),
            ('n', q.host),
            ('p', &port_s),
            ('r', &user),
        ];
        let jump = match self.opts.jump.take() {
            Some((Some(j), sp)) => expand_jump(j, &jump_keys, sp, &host, port, &user, &mut errors),
            _ => None,
        };
        // sshconnect.c expands ProxyCommand with the same keys as the one ProxyJump makes.
        let proxy_command = match self.opts.proxy_command.take() {
            Some((cmd, sp)) if !cmd.eq_ignore_ascii_case("none") => {
                match percent(&cmd, &jump_keys, false) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        errors.push(Diagnostic::error(format!("ProxyCommand: {e}")).at(sp));
                        None
                    }
                }
            }
            _ => None,
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Resolved {
            hostname: host,
            user,
            port,
            identity_files,
            identity_named,
            known_hosts,
            strict: self.opts.strict.take(),
            connect_timeout: self.opts.connect_timeout.flatten(),
            keepalive: self.opts.keepalive.flatten(),
            jump,
            proxy_command,
            warnings: self.warnings,
        })
    }
}

/// The ProxyCommand OpenSSH builds from ProxyJump has `%h %k %n %p %r` expanded; and a jump
/// to the very host, port and user is a loop.
#[allow(clippy::too_many_arguments)]
fn expand_jump(
    j: Jump,
    keys: &[(char, &str)],
    sp: Span,
    host: &str,
    port: u16,
    user: &str,
    errors: &mut Vec<Diagnostic>,
) -> Option<Jump> {
    if j.host == host && j.port.unwrap_or(22) == port && j.user.as_deref().unwrap_or(user) == user {
        errors.push(Diagnostic::error(format!("jumphost loop via {}", j.host)).at(sp));
        return None;
    }
    let mut ex = |s: &str| match percent(s, keys, false) {
        Ok(v) => Some(v),
        Err(e) => {
            errors.push(Diagnostic::error(format!("ProxyJump: {e}")).at(sp));
            None
        }
    };
    Some(Jump {
        user: match &j.user {
            Some(u) => Some(ex(u)?),
            None => None,
        },
        host: ex(&j.host)?,
        port: j.port,
        extra: match &j.extra {
            Some(x) => Some(ex(x)?),
            None => None,
        },
    })
}

/// `parse_jump`: `none`, or hops separated by commas, each `[user@]host[:port]` or
/// `ssh://[user@]host[:port]`; the last hop is the one returned, the others its `extra`.
pub fn parse_jump(s: &str) -> Result<Option<Jump>, ()> {
    if s.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let mut parts: Vec<&str> = s.split(',').collect();
    let last = parts.pop().ok_or(())?;
    for p in &parts {
        hop(p)?;
    }
    let (user, host, port) = hop(last)?;
    Ok(Some(Jump {
        user,
        host,
        port,
        extra: (!parts.is_empty()).then(|| parts.join(",")),
    }))
}

type Hop = (Option<String>, String, Option<u16>);

fn hop(s: &str) -> Result<Hop, ()> {
    let uri = s.strip_prefix("ssh://");
    let s = uri.unwrap_or(s);
    let (user, rest) = match if uri.is_some() {
        s.split_once('@')
    } else {
        s.rsplit_once('@')
    } {
        Some((u, r)) => {
            if u.is_empty() {
                return Err(());
            }
            let u = if uri.is_some() {
                u.split(';').next().unwrap_or(u)
            } else {
                u
            };
            (Some(u.to_string()), r)
        }
        None => (None, s),
    };
    let rest = if uri.is_some() {
        rest.trim_end_matches('/')
    } else {
        rest
    };
    let (host, port) = if let Some(r) = rest.strip_prefix('[') {
        let (h, after) = r.split_once(']').ok_or(())?;
        match after {
            "" => (h, None),
            a => (h, Some(a.strip_prefix(':').ok_or(())?)),
        }
    } else {
        match rest.find([':', '/']) {
            Some(i) if rest.as_bytes()[i] == b'/' => return Err(()),
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        }
    };
    if host.is_empty() {
        return Err(());
    }
    let port = match port {
        Some("") | None => None,
        Some(p) => Some(expand::a2port(p).filter(|p| *p > 0).ok_or(())?),
    };
    Ok((user, host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jump_specs() {
        let j = parse_jump("a,ops@b:2200").expect("ok").expect("hop");
        assert_eq!(j.user.as_deref(), Some("ops"));
        assert_eq!((j.host.as_str(), j.port), ("b", Some(2200)));
        assert_eq!(j.extra.as_deref(), Some("a"));
        assert_eq!(parse_jump("none"), Ok(None));
        assert!(parse_jump("b:x").is_err());
        assert!(parse_jump("@b").is_err());
        assert!(parse_jump("b/x").is_err());
        let v6 = parse_jump("[::1]:2222").expect("ok").expect("hop");
        assert_eq!((v6.host.as_str(), v6.port), ("::1", Some(2222)));
        let uri = parse_jump("ssh://u@h:23").expect("ok").expect("hop");
        assert_eq!((uri.user.as_deref(), uri.port), (Some("u"), Some(23)));
    }
}
