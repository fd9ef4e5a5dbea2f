//! Where a value lands in a POSIX shell command: outside quotes, inside '…', inside "…" or
//! inside $'…'. The shell-injection guard (`template::Templates::render_command`) renders a
//! command with each `| quote`d value left as a marker, then `splice` walks the rendered text
//! as the shell would read its quotes and puts each quoted value in — only where quoting it
//! protects it: outside quotes. Inside quotes, the quotes `quote` adds are literal characters
//! (inside "…", `$(…)` in the value would run) or close the surrounding quotes (inside '…').

/// Starts a marker: `MARK_START`, the value's index in decimal, `MARK_END`. Private-use
/// characters, refused in any value that reaches a command.
pub const MARK_START: char = '\u{e000}';
pub const MARK_END: char = '\u{e001}';

/// Quoting where a character of a command stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quoting {
    Unquoted,
    /// Inside '…'.
    Single,
    /// Inside "…".
    Double,
    /// Inside $'…'.
    AnsiC,
    /// Right after a backslash, which would take the first of the quotes `quote` adds.
    Escaped,
}

impl Quoting {
    /// `'…'`, `"…"`, `$'…'` for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Quoting::Unquoted => "no quotes",
            Quoting::Single => "'…'",
            Quoting::Double => "\"…\"",
            Quoting::AnsiC => "$'…'",
            Quoting::Escaped => "a backslash's reach",
        }
    }
}

/// Why a quoted value could not be put in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpliceError {
    /// The `n`-th quoted value (0-based) stands inside quotes.
    InsideQuotes { n: usize, quoting: Quoting },
    /// A marker was cut or changed by what the template did with quote's result.
    Mangled,
}

/// The text with each marker replaced by its quoted value, when every marker stands outside
/// quotes.
pub fn splice(rendered: &str, quoted: &[String]) -> Result<String, SpliceError> {
    let mut out = String::with_capacity(rendered.len());
    let mut state = Quoting::Unquoted;
    let mut chars = rendered.chars().peekable();
    while let Some(c) = chars.next() {
        if c == MARK_START {
            let mut digits = String::new();
            let mut closed = false;
            for d in chars.by_ref() {
                if d == MARK_END {
                    closed = true;
                    break;
                }
                digits.push(d);
            }
            if !closed {
                return Err(SpliceError::Mangled);
            }
            let n: usize = digits.parse().map_err(|_| SpliceError::Mangled)?;
            let value = quoted.get(n).ok_or(SpliceError::Mangled)?;
            if state != Quoting::Unquoted {
                return Err(SpliceError::InsideQuotes { n, quoting: state });
            }
            out.push_str(value);
            continue;
        }
        if c == MARK_END {
            return Err(SpliceError::Mangled);
        }
        out.push(c);
        state = match (state, c) {
            (Quoting::Unquoted | Quoting::Double | Quoting::AnsiC, '\\') => {
                // The next character is taken as it is: a quoted value there would lose its
                // first quote.
                match chars.peek() {
                    Some(&MARK_START) => {
                        let digits: String = chars
                            .clone()
                            .skip(1)
                            .take_while(|d| *d != MARK_END)
                            .collect();
                        let n = digits.parse().map_err(|_| SpliceError::Mangled)?;
                        return Err(SpliceError::InsideQuotes {
                            n,
                            quoting: Quoting::Escaped,
                        });
                    }
                    Some(&next) => {
                        out.push(next);
                        chars.next();
                    }
                    None => {}
                }
                state
            }
            (Quoting::Unquoted, '\'') => Quoting::Single,
            (Quoting::Unquoted, '"') => Quoting::Double,
            (Quoting::Unquoted, '$') if chars.peek() == Some(&'\'') => {
                out.push('\'');
                chars.next();
                Quoting::AnsiC
            }
            (Quoting::Single | Quoting::AnsiC, '\'') => Quoting::Unquoted,
            (Quoting::Double, '"') => Quoting::Unquoted,
            (s, _) => s,
        };
    }
    Ok(out)
}

/// The marker of the `n`-th quoted value.
pub fn marker(n: usize) -> String {
    format!("{MARK_START}{n}{MARK_END}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn outside_quotes_the_value_goes_in() {
        let v = q(&["'a b'", "'$(x)'"]);
        let cmd = format!(
            "echo {} && ls {} $(cat {})",
            marker(0),
            marker(1),
            marker(0)
        );
        assert_eq!(
            splice(&cmd, &v).unwrap(),
            "echo 'a b' && ls '$(x)' $(cat 'a b')"
        );
        // Quotes that closed before the value, and escaped quotes, do not count.
        let cmd = format!("echo 'x' \"y\" \\' \\\" {}", marker(0));
        assert_eq!(splice(&cmd, &v).unwrap(), "echo 'x' \"y\" \\' \\\" 'a b'");
    }

    #[test]
    fn inside_quotes_it_is_refused() {
        let v = q(&["'$(touch /tmp/pwned)'"]);
        for (cmd, quoting) in [
            (format!("echo \"{}\"", marker(0)), Quoting::Double),
            (format!("echo '{}'", marker(0)), Quoting::Single),
            (format!("echo $'{}'", marker(0)), Quoting::AnsiC),
            (format!("echo \"a \\\" {}\"", marker(0)), Quoting::Double),
            (format!("echo \"$(cat {})\"", marker(0)), Quoting::Double),
            (format!("echo \\{}", marker(0)), Quoting::Escaped),
        ] {
            assert_eq!(
                splice(&cmd, &v),
                Err(SpliceError::InsideQuotes { n: 0, quoting }),
                "{cmd}"
            );
        }
    }

    #[test]
    fn a_cut_marker_is_refused() {
        let v = q(&["'a'"]);
        let m = marker(0);
        let cut: String = m.chars().take(2).collect();
        assert_eq!(
            splice(&format!("echo {cut}"), &v),
            Err(SpliceError::Mangled)
        );
        assert_eq!(
            splice(&format!("echo {}", marker(3)), &v),
            Err(SpliceError::Mangled)
        );
        assert_eq!(
            splice(&format!("echo {MARK_END}"), &v),
            Err(SpliceError::Mangled)
        );
    }
}
