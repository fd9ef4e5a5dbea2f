//! One ssh_config line split the way OpenSSH 9.2 splits it (`readconf.c`): trailing blanks
//! dropped, the keyword up to a blank or a single `=` (lower-cased; `#` starts a comment), then
//! the arguments as `argv_split` cuts them — blanks separate, `"…"` and `'…'` quote, `\` escapes
//! a quote, a backslash or (outside quotes) a blank, `#` at the start of an argument ends the
//! line. Every piece keeps its 1-based column so `eval` can place its diagnostics. `mod.rs`
//! lexes each file once; `eval` and `keywords` read the result.

/// One argument: its text (quotes and escapes removed) and where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Arg {
    pub text: String,
    /// 1-based columns (characters) of its first character and just past its last.
    pub col: u32,
    pub end: u32,
}

/// A line with a keyword.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    /// 1-based line number.
    pub line: u32,
    /// Lower-cased, as OpenSSH matches it.
    pub keyword: String,
    pub kw_col: u32,
    pub kw_end: u32,
    /// The text after the keyword and its separator, blanks trimmed (ProxyJump, ProxyCommand
    /// and Match read this rather than the split arguments).
    pub rest: String,
    pub rest_col: u32,
    /// The split arguments, or why they could not be split (an unclosed quote).
    pub args: Result<Vec<Arg>, ()>,
}

const BLANK: [char; 4] = [' ', '\t', '\r', '\n'];

/// Splits one line; `None` for blank and comment lines. A keyword with nothing after it is a
/// `Line` with an empty `rest` (the caller reports it).
pub fn line(text: &str, number: u32) -> Option<Line> {
    let chars: Vec<char> = text.chars().collect();
    let mut len = chars.len();
    // OpenSSH keeps the first character even if it is blank.
    while len > 1 && matches!(chars[len - 1], ' ' | '\t' | '\r' | '\n' | '\x0c') {
        len -= 1;
    }
    let chars = &chars[..len];
    let mut i = 0;
    while i < chars.len() && BLANK.contains(&chars[i]) {
        i += 1;
    }
    // A leading `=` or quote ends an empty first token; OpenSSH then takes the next one.
    let kw_start = i;
    while i < chars.len() && !BLANK.contains(&chars[i]) && chars[i] != '=' && chars[i] != '"' {
        i += 1;
    }
    if i == kw_start || chars[kw_start] == '#' {
        return None;
    }
    let keyword: String = chars[kw_start..i].iter().collect::<String>().to_lowercase();
    let kw_end = i;
    // The separator: blanks, at most one `=`, blanks.
    while i < chars.len() && BLANK.contains(&chars[i]) {
        i += 1;
    }
    if i < chars.len() && chars[i] == '=' {
        i += 1;
        while i < chars.len() && BLANK.contains(&chars[i]) {
            i += 1;
        }
    }
    let rest: String = chars[i..].iter().collect();
    let rest_col = col(i);
    let args = split(&chars[i..], rest_col);
    Some(Line {
        line: number,
        keyword,
        kw_col: col(kw_start),
        kw_end: col(kw_end),
        rest,
        rest_col,
        args,
    })
}

fn col(i: usize) -> u32 {
    u32::try_from(i + 1).unwrap_or(u32::MAX)
}

/// `argv_split(…, terminate_on_comment = 1)`: `Err` on an unclosed quote.
fn split(s: &[char], first_col: u32) -> Result<Vec<Arg>, ()> {
    let mut out = Vec::new();
    let mut i = 0;
    let at = |i: usize| first_col + u32::try_from(i).unwrap_or(u32::MAX);
    while i < s.len() {
        if s[i] == ' ' || s[i] == '\t' {
            i += 1;
            continue;
        }
        if s[i] == '#' {
            break;
        }
        let start = i;
        let mut quote: Option<char> = None;
        let mut text = String::new();
        while i < s.len() {
            let c = s[i];
            if c == '\\' {
                let next = s.get(i + 1).copied();
                match next {
                    Some(n @ ('\'' | '"' | '\\')) => {
                        text.push(n);
                        i += 1;
                    }
                    Some(' ') if quote.is_none() => {
                        text.push(' ');
                        i += 1;
                    }
                    _ => text.push('\\'),
                }
            } else if quote.is_none() && (c == ' ' || c == '\t') {
                break;
            } else if quote.is_none() && (c == '"' || c == '\'') {
                quote = Some(c);
            } else if quote == Some(c) {
                quote = None;
            } else {
                text.push(c);
            }
            i += 1;
        }
        if i >= s.len() && quote.is_some() {
            return Err(());
        }
        out.push(Arg {
            text,
            col: at(start),
            end: at(i),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(l: &str) -> (String, Vec<String>) {
        let l = line(l, 1).expect("a line");
        (
            l.keyword,
            l.args.expect("split").into_iter().map(|a| a.text).collect(),
        )
    }

    #[test]
    fn keywords_separators_quotes_and_comments() {
        assert_eq!(words("  Port 22"), ("port".into(), vec!["22".into()]));
        assert_eq!(words("Port=22"), ("port".into(), vec!["22".into()]));
        assert_eq!(words("Port = 22 # c"), ("port".into(), vec!["22".into()]));
        assert_eq!(
            words(r#"IdentityFile "a b" c\ d 'e"f'"#),
            (
                "identityfile".into(),
                vec!["a b".into(), "c d".into(), "e\"f".into()]
            )
        );
        assert_eq!(words("Port 22#x").1, vec!["22#x".to_string()]);
        assert!(line("# comment", 1).is_none());
        assert!(line("   ", 1).is_none());
        assert!(line("User \"x", 1).expect("line").args.is_err());
        let l = line("HostName  h.example", 3).expect("line");
        assert_eq!((l.kw_col, l.kw_end, l.rest_col), (1, 9, 11));
        assert_eq!(l.args.expect("args")[0].end, 20);
        assert_eq!(line("User", 1).expect("line").rest, "");
    }
}
