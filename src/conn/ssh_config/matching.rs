//! `Host` and `Match` as OpenSSH 9.2 evaluates them: `match_pattern` (`*` and `?`, the whole
//! name, case-sensitive — `Host` lines), `match_pattern_list` (comma lists with `!`), and the
//! `Match` criteria (`all`, `canonical`, `final`, `host`, `originalhost`, `user`, `localuser`,
//! `exec`, each negatable). `eval` calls `host_line` and `match_line` with the state of the
//! pass and the way to run an `exec` command (`eval` expands its tokens and runs it, bounded);
//! tokens come from the line's text as OpenSSH's `strdelim` splits them.

/// `*` and `?` wildcards over the whole string.
pub fn pattern(s: &[u8], p: &[u8]) -> bool {
    let (mut si, mut pi) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            si += 1;
            pi += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

/// 1 positive, 0 none, -1 a negated sub-pattern matched. `lower` lower-cases the patterns.
pub fn list(s: &str, patterns: &str, lower: bool) -> i32 {
    let mut positive = 0;
    for sub in patterns.split(',') {
        let (neg, sub) = match sub.strip_prefix('!') {
            Some(r) => (true, r),
            None => (false, sub),
        };
        let sub = if lower {
            sub.to_ascii_lowercase()
        } else {
            sub.to_string()
        };
        if pattern(s.as_bytes(), sub.as_bytes()) {
            if neg {
                return -1;
            }
            positive = 1;
        }
    }
    positive
}

/// `match_hostname`: both sides lower-cased.
pub fn hostname(host: &str, patterns: &str) -> bool {
    list(&host.to_ascii_lowercase(), patterns, true) == 1
}

/// A token of a `Match` line and its columns.
#[derive(Debug, Clone)]
pub struct Tok {
    pub text: String,
    pub col: u32,
    pub end: u32,
}

/// `strdelim` over the text after `Match`: blanks and one `=` separate, `"` quotes.
pub fn tokens(rest: &str, first_col: u32) -> Vec<Tok> {
    let c: Vec<char> = rest.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let at = |i: usize| first_col + u32::try_from(i).unwrap_or(u32::MAX);
    while i < c.len() {
        if c[i].is_whitespace() || c[i] == '=' {
            i += 1;
            continue;
        }
        let start = i;
        let mut text = String::new();
        while i < c.len() && !c[i].is_whitespace() && c[i] != '=' {
            if c[i] == '"' {
                i += 1;
                while i < c.len() && c[i] != '"' {
                    text.push(c[i]);
                    i += 1;
                }
            } else {
                text.push(c[i]);
            }
            i += 1;
        }
        out.push(Tok {
            text,
            col: at(start),
            end: at(i.min(c.len())),
        });
    }
    out
}

/// What a `Match` line is evaluated against.
pub struct MatchCx<'a> {
    /// The host as `Host` would see it, with HostName's `%h` applied (OpenSSH keeps this in
    /// sync with `ssh.c`).
    pub host: &'a str,
    pub original: &'a str,
    pub user: &'a str,
    pub local_user: &'a str,
    pub final_pass: bool,
}

/// The outcome of a `Match` line.
pub struct Matched {
    pub result: bool,
    pub want_final: bool,
}

/// Runs the command of an `exec` condition (as written, with the place of the condition
/// `(col, end)`): whether it exited 0.
pub type Exec<'a> = dyn FnMut(&str, (u32, u32)) -> bool + 'a;

/// Evaluates `Match` criteria; `Err((message, col, end))` for a condition OpenSSH refuses.
/// An `exec` runs only while the criteria before it hold, as in OpenSSH.
pub fn match_line(
    toks: &[Tok],
    cx: &MatchCx,
    exec: &mut Exec<'_>,
) -> Result<Matched, (String, u32, u32)> {
    let mut m = Matched {
        result: true,
        want_final: false,
    };
    let mut attributes = 0;
    let mut i = 0;
    while i < toks.len() {
        let t = &toks[i];
        if t.text.starts_with('#') {
            break;
        }
        let (neg, attr) = match t.text.strip_prefix('!') {
            Some(a) => (true, a.to_ascii_lowercase()),
            None => (false, t.text.to_ascii_lowercase()),
        };
        i += 1;
        if attr == "all" {
            let more = toks.get(i).is_some_and(|n| !n.text.starts_with('#'));
            if attributes > 1 || more {
                return Err((
                    format!(
                        "'{}' cannot be combined with other Match attributes",
                        t.text
                    ),
                    t.col,
                    t.end,
                ));
            }
            if m.result {
                m.result = !neg;
            }
            return Ok(m);
        }
        attributes += 1;
        if attr == "canonical" || attr == "final" {
            m.want_final |= attr == "final";
            if cx.final_pass == neg {
                m.result = false;
            }
            continue;
        }
        let Some(arg) = toks.get(i).filter(|a| !a.text.starts_with('#')) else {
            return Err((format!("missing Match criteria for {attr}"), t.col, t.end));
        };
        i += 1;
        let r = match attr.as_str() {
            "host" => hostname(cx.host, &arg.text),
            "originalhost" => hostname(cx.original, &arg.text),
            "user" => list(cx.user, &arg.text, false) == 1,
            "localuser" => list(cx.local_user, &arg.text, false) == 1,
            "exec" => {
                if !m.result {
                    continue;
                }
                exec(&arg.text, (t.col, arg.end))
            }
            _ => {
                return Err((
                    format!("unsupported Match attribute `{}`", t.text),
                    t.col,
                    t.end,
                ));
            }
        };
        if r == neg {
            m.result = false;
        }
    }
    if attributes == 0 {
        let (c, e) = toks.first().map_or((1, 2), |t| (t.col, t.end));
        return Err(("one or more attributes required for Match".into(), c, e));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx(final_pass: bool) -> MatchCx<'static> {
        MatchCx {
            host: "web1.example.com",
            original: "web1",
            user: "deploy",
            local_user: "root",
            final_pass,
        }
    }

    fn m(s: &str, f: bool) -> Result<bool, String> {
        // `exec` here: the command is its answer.
        match_line(&tokens(s, 7), &cx(f), &mut |cmd, _| cmd == "true")
            .map(|m| m.result)
            .map_err(|e| e.0)
    }

    #[test]
    fn wildcards_lists_and_criteria() {
        assert!(pattern(b"web1", b"w*1"));
        assert!(pattern(b"web1", b"web?"));
        assert!(!pattern(b"Web1", b"web1"));
        assert!(pattern(b"", b"*"));
        assert_eq!(list("web1", "db*,!web1,web*", false), -1);
        assert_eq!(list("web1", "db*,web*", false), 1);
        assert!(hostname("WEB1", "Web*"));
        assert_eq!(m("all", false), Ok(true));
        assert_eq!(m("!all", false), Ok(false));
        assert_eq!(m("host *.example.com user deploy", false), Ok(true));
        assert_eq!(m("originalhost=web1 !localuser root", false), Ok(false));
        assert_eq!(m("final host web1*", false), Ok(false));
        assert_eq!(m("final host web1*", true), Ok(true));
        assert_eq!(m("canonical all", true), Ok(true));
        assert!(m("host", false).is_err());
        assert!(m("all host x", false).is_err());
        assert!(m("colour blue", false).is_err());
        assert!(m("", false).is_err());
        assert_eq!(m("user deploy # c", false), Ok(true));
        assert_eq!(m("exec true host web1*", false), Ok(true));
        assert_eq!(m("!exec true", false), Ok(false));
        assert_eq!(m("!exec false", false), Ok(true));
        // An exec after a criterion that failed is not run.
        let mut ran = false;
        let toks = tokens("host nomatch exec true", 7);
        let r = match_line(&toks, &cx(false), &mut |_, _| {
            ran = true;
            true
        });
        assert!(matches!(r, Ok(Matched { result: false, .. })) && !ran);
    }
}
