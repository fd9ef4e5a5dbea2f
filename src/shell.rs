//! The shell-injection guard's reading of a command: a scanner of POSIX `sh` syntax that
//! follows a command's text character by character — quotes, backslashes, `$(…)`, backticks,
//! `${…}`, `$((…))`, comments and here-documents — and tells which quoting context each
//! templated value lands in; and the guard's rules, which say whether a value (raw, or the
//! output of `| quote`) stays inert there. `template` feeds it the pieces of a rendered
//! command (literal text and values, in order) at run time, and the pieces of a command's
//! template with placeholders for the values at check time; a refusal names the value and why.
//! Values that pass are fed through the scanner too, so what follows them is read as the
//! shell will read it.

use std::collections::VecDeque;

/// Characters that change the meaning of a shell command when they come from a raw value.
pub const SHELL_META: &[char] = &[
    ';', '&', '|', '$', '`', '<', '>', '(', ')', '\\', '"', '\'', '*', '?', '[', ']', '#', '~',
    '!', '{', '}', '\n', '\r', '\0',
];

/// Where in a command a value lands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Context {
    /// A word of a command, outside quotes (at top level or inside `$(…)`).
    Command,
    /// Right after a backslash.
    Escaped,
    /// Right after an unquoted `$`.
    Dollar,
    /// Inside `'…'` (or bash's `$'…'`).
    SingleQuoted,
    /// Inside `"…"`.
    DoubleQuoted,
    /// Inside `` `…` ``.
    Backticks,
    /// In a `#` comment.
    Comment,
    /// Inside `${…}`.
    Parameter,
    /// Inside `$((…))`.
    Arithmetic,
    /// In the body of a here-document.
    HereDoc,
    /// Where a here-document's delimiter is written (`<<EOF`).
    HereDocDelimiter,
    /// After a construct shells read differently (`$'…\'…'`): the guard cannot tell.
    Unknown,
}

impl Context {
    /// The context in words, to follow "a value".
    pub fn describe(self) -> &'static str {
        match self {
            Context::Command => "outside quotes",
            Context::Escaped => "after a backslash",
            Context::Dollar => "right after `$`",
            Context::SingleQuoted => "inside single quotes",
            Context::DoubleQuoted => "inside double quotes",
            Context::Backticks => "inside backticks",
            Context::Comment => "in a comment",
            Context::Parameter => "inside `${…}`",
            Context::Arithmetic => "inside `$((…))`",
            Context::HereDoc => "in a here-document",
            Context::HereDocDelimiter => "as a here-document's delimiter",
            Context::Unknown => "after `$'…'` with an escaped quote",
        }
    }
}

/// Why the guard refuses a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A raw value holding shell metacharacters.
    Metacharacters,
    /// `| quote` where its quotes do not protect the value.
    Quote,
    /// A value written as a here-document's delimiter.
    HereDocDelimiter,
    /// A value that makes a line equal to a here-document's delimiter, ending it early.
    HereDocEnd,
    /// A value in arithmetic that is not a number.
    NotANumber,
}

/// One refused value: its index among the command's values, where it landed and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub index: usize,
    pub context: Context,
    pub refusal: Refusal,
}

impl Verdict {
    /// Whether the refusal follows from the command's text alone (not from a value's
    /// content), so `sortie check` can say it before anything runs.
    pub fn is_static(&self) -> bool {
        matches!(self.refusal, Refusal::Quote | Refusal::HereDocDelimiter)
    }

    /// The diagnostic's title; `value` is the refused value (unused by the refusals that the
    /// command's text alone decides).
    pub fn title(&self, value: &str) -> String {
        let shown = shown(value);
        match self.refusal {
            Refusal::Metacharacters => {
                format!("shell-injection guard: `{shown}` contains shell metacharacters")
            }
            Refusal::Quote => format!(
                "shell-injection guard: `| quote` does not protect a value {}",
                self.context.describe()
            ),
            Refusal::HereDocDelimiter => {
                "shell-injection guard: a templated value cannot be a here-document's delimiter"
                    .into()
            }
            Refusal::HereDocEnd => {
                format!("shell-injection guard: `{shown}` ends the here-document early")
            }
            Refusal::NotANumber => format!("shell-injection guard: `{shown}` is not a number"),
        }
    }

    /// What goes under the caret.
    pub fn label(&self) -> String {
        match (self.refusal, self.context) {
            (Refusal::Quote, Context::DoubleQuoted) => {
                "inside \"…\" the quotes it adds are literal: `$(…)` and backticks in the value still run".into()
            }
            (Refusal::Quote, Context::SingleQuoted) => {
                "its quotes close the surrounding '…': the shell reads the value itself".into()
            }
            (Refusal::Quote, Context::Backticks) => {
                "a backtick or backslash in the value ends or changes the backquoted command".into()
            }
            (Refusal::Quote, Context::Escaped) => {
                "the backslash escapes the quote it adds: the shell reads the value itself".into()
            }
            (Refusal::Quote, Context::Dollar) => {
                "after `$` its quotes read as `$'…'`, where backslashes are escapes".into()
            }
            (Refusal::Quote, Context::Comment) => {
                "a newline in the value ends the comment: the rest runs as a command".into()
            }
            (Refusal::Quote, Context::HereDoc) => {
                "in a here-document its quotes are literal text: `$(…)` in the value still runs"
                    .into()
            }
            (Refusal::Quote, Context::Unknown) => {
                "bash and sh disagree on where `$'…'` ends: the guard cannot tell where this lands"
                    .into()
            }
            (Refusal::Quote, c) => format!("`| quote` does not protect a value {}", c.describe()),
            (Refusal::Metacharacters, Context::Command) => {
                "this value reaches the shell unquoted".into()
            }
            (Refusal::Metacharacters, c) => format!("this value lands {}", c.describe()),
            (Refusal::HereDocDelimiter, _) => "a here-document's delimiter".into(),
            (Refusal::HereDocEnd, _) => "this line equals the here-document's delimiter".into(),
            (Refusal::NotANumber, _) => {
                "inside `$((…))` the shell evaluates words as arithmetic".into()
            }
        }
    }

    /// What to do about it.
    pub fn help(&self) -> String {
        let unsafe_shell = "or set `unsafe_shell: true` on the step if the shell must interpret it";
        match (self.refusal, self.context) {
            (Refusal::Quote, Context::SingleQuoted | Context::DoubleQuoted) => {
                "drop the surrounding quotes: `| quote` makes the value one word on its own, e.g. `echo {{ v | quote }}`".into()
            }
            (Refusal::Quote, Context::Backticks) => {
                "write `$(…)` instead of backticks: inside it, `| quote` protects the value".into()
            }
            (Refusal::Quote, Context::Escaped) => "remove the backslash before the value".into(),
            (Refusal::Quote, Context::Dollar) => "remove the `$` before the value".into(),
            (Refusal::Quote, Context::Comment) => "move the value out of the comment".into(),
            (Refusal::Quote, Context::HereDoc) => {
                "give the value to the command as an argument (`{{ v | quote }}`) or through `stdin:`, not inside a here-document".into()
            }
            (Refusal::Quote, Context::Unknown) => {
                "write the command without `\\'` inside `$'…'` (e.g. `\"it's\"`)".into()
            }
            (Refusal::Quote, _) => {
                "set a shell variable first (`x={{ v | quote }}`) and use `$x` there".into()
            }
            (Refusal::Metacharacters, Context::Command) => {
                format!("pass the value through `| quote`, {unsafe_shell}")
            }
            (Refusal::Metacharacters, Context::SingleQuoted | Context::DoubleQuoted) => format!(
                "drop the surrounding quotes and pass the value through `| quote`, {unsafe_shell}"
            ),
            (Refusal::Metacharacters, _) => format!(
                "make the value a word of its own, outside quotes, passed through `| quote`, {unsafe_shell}"
            ),
            (Refusal::HereDocDelimiter, _) => {
                "write the delimiter in the command itself (`<<'EOF'`)".into()
            }
            (Refusal::HereDocEnd, _) => {
                "give the value to the command as an argument (`{{ v | quote }}`) or through `stdin:`".into()
            }
            (Refusal::NotANumber, _) => "pass a whole number (`{{ v | int }}`)".into(),
        }
    }
}

/// A value as a title shows it: its first 60 characters, control characters escaped.
fn shown(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars().take(60) {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out
}

/// A piece of a command: literal text, or a value (with whether it is `| quote`'s output).
#[derive(Clone, Copy, Debug)]
pub enum Piece<'a> {
    Text(&'a str),
    Value { text: &'a str, quoted: bool },
}

/// Every refused value of a command, in order.
pub fn check(pieces: &[Piece<'_>]) -> Vec<Verdict> {
    let mut s = Scanner::default();
    let mut out = Vec::new();
    let mut index = 0;
    let late = |s: Result<(), usize>, out: &mut Vec<Verdict>| {
        if let Err(i) = s {
            out.push(Verdict {
                index: i,
                context: Context::HereDoc,
                refusal: Refusal::HereDocEnd,
            });
        }
    };
    for p in pieces {
        match *p {
            Piece::Text(t) => late(s.text(t, None), &mut out),
            Piece::Value { text, quoted } => {
                let context = s.context();
                if let Err(refusal) = judge(context, text, quoted) {
                    out.push(Verdict {
                        index,
                        context,
                        refusal,
                    });
                }
                late(s.text(text, Some(index)), &mut out);
                index += 1;
            }
        }
    }
    late(s.finish(), &mut out);
    out
}

/// The guard's rules: may this value stand in this context?
pub fn judge(context: Context, text: &str, quoted: bool) -> Result<(), Refusal> {
    if context == Context::HereDocDelimiter {
        return Err(Refusal::HereDocDelimiter);
    }
    if quoted {
        return match context {
            Context::Command => Ok(()),
            Context::Comment if !text.contains(['\n', '\r']) => Ok(()),
            _ => Err(Refusal::Quote),
        };
    }
    if context == Context::Arithmetic {
        let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
            return Err(Refusal::NotANumber);
        }
    }
    if text.contains(SHELL_META) {
        return Err(Refusal::Metacharacters);
    }
    Ok(())
}

#[derive(Debug)]
enum Frame {
    /// Commands: the top level (`nested: false`) or `$(…)`.
    Command {
        nested: bool,
        parens: u32,
        cases: u32,
    },
    Single,
    /// bash's `$'…'`, where backslashes escape.
    AnsiC,
    Double,
    Backtick,
    Comment,
    Param {
        braces: u32,
    },
    Arith {
        parens: u32,
    },
}

/// A character seen that needs the next one to say what it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    None,
    Backslash,
    Dollar,
    DollarParen,
    Lt,
    LtLt,
    /// The first `)` closing `$((…))`: the second is swallowed.
    ArithClose,
}

#[derive(Debug, Clone)]
struct HereDoc {
    delim: String,
    strip_tabs: bool,
}

/// A here-document delimiter being read after `<<`.
#[derive(Debug, Default)]
struct Delim {
    strip_tabs: bool,
    text: String,
    quoted: bool,
    quote: Option<char>,
    escape: bool,
    started: bool,
}

/// The line of a here-document body being read, and the values on it.
#[derive(Debug)]
struct Body {
    doc: HereDoc,
    line: String,
    values: Vec<usize>,
}

/// The scanner: feed it text (and values' text, with their index) in order; ask for the
/// context where the next value goes.
#[derive(Debug)]
pub struct Scanner {
    frames: Vec<Frame>,
    pending: Pending,
    in_word: bool,
    word: String,
    delim: Option<Delim>,
    heredocs: VecDeque<HereDoc>,
    body: Option<Body>,
    confused: bool,
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner {
            frames: vec![Frame::Command {
                nested: false,
                parens: 0,
                cases: 0,
            }],
            pending: Pending::None,
            in_word: false,
            word: String::new(),
            delim: None,
            heredocs: VecDeque::new(),
            body: None,
            confused: false,
        }
    }
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn is_operator(c: char) -> bool {
    matches!(c, ';' | '&' | '|' | '<' | '>' | '(' | ')')
}

impl Scanner {
    /// The context a value inserted now lands in.
    pub fn context(&mut self) -> Context {
        if self.body.is_some() {
            return Context::HereDoc;
        }
        if self.delim.is_some() || self.pending == Pending::LtLt {
            return Context::HereDocDelimiter;
        }
        if self.confused {
            return Context::Unknown;
        }
        match self.pending {
            Pending::Backslash => return Context::Escaped,
            Pending::DollarParen => {
                self.pending = Pending::None;
                self.open_substitution();
            }
            Pending::Lt | Pending::ArithClose => self.pending = Pending::None,
            Pending::Dollar | Pending::None | Pending::LtLt => {}
        }
        let dollar = self.pending == Pending::Dollar;
        match self.frames.last() {
            Some(Frame::Command { .. }) if dollar => Context::Dollar,
            Some(Frame::Command { .. }) | None => Context::Command,
            Some(Frame::Single | Frame::AnsiC) => Context::SingleQuoted,
            Some(Frame::Double) => Context::DoubleQuoted,
            Some(Frame::Backtick) => Context::Backticks,
            Some(Frame::Comment) => Context::Comment,
            Some(Frame::Param { .. }) => Context::Parameter,
            Some(Frame::Arith { .. }) => Context::Arithmetic,
        }
    }

    /// Feeds text; `value` is the index of the value it comes from, if any. `Err(i)`: value
    /// `i` made a here-document line equal to its delimiter.
    pub fn text(&mut self, text: &str, value: Option<usize>) -> Result<(), usize> {
        for c in text.chars() {
            self.push(c, value)?;
        }
        Ok(())
    }

    /// The end of the command: a last here-document line without its newline is a line too.
    pub fn finish(&mut self) -> Result<(), usize> {
        if self.body.as_ref().is_some_and(|b| !b.line.is_empty()) {
            return self.push('\n', None);
        }
        Ok(())
    }

    fn push(&mut self, c: char, value: Option<usize>) -> Result<(), usize> {
        if let Some(body) = &mut self.body {
            if c != '\n' {
                body.line.push(c);
                if let Some(v) = value {
                    body.values.push(v);
                }
                return Ok(());
            }
            return self.end_body_line();
        }
        if self.delim.is_some() {
            return self.push_delim(c, value);
        }
        if self.resolve_pending(c) {
            return Ok(());
        }
        self.dispatch(c, value)
    }

    /// Resolves a pending character with the next one. True when `c` was consumed.
    fn resolve_pending(&mut self, c: char) -> bool {
        let pending = std::mem::replace(&mut self.pending, Pending::None);
        match pending {
            Pending::None => false,
            Pending::Backslash => {
                match self.frames.last() {
                    Some(Frame::Command { .. }) if c != '\n' => self.in_word = true,
                    // bash reads `\'` inside `$'…'` as an escaped quote, sh as the end of
                    // the string: from here on the guard cannot tell how the shell reads it.
                    Some(Frame::AnsiC) if c == '\'' => self.confused = true,
                    _ => {}
                }
                true
            }
            Pending::Dollar => match c {
                '(' => {
                    self.pending = Pending::DollarParen;
                    true
                }
                '{' => {
                    self.frames.push(Frame::Param { braces: 0 });
                    true
                }
                '\'' if matches!(self.frames.last(), Some(Frame::Command { .. })) => {
                    self.frames.push(Frame::AnsiC);
                    true
                }
                _ => false,
            },
            Pending::DollarParen => {
                if c == '(' {
                    self.frames.push(Frame::Arith { parens: 0 });
                    return true;
                }
                self.open_substitution();
                false
            }
            Pending::Lt => {
                if c == '<' {
                    self.pending = Pending::LtLt;
                    return true;
                }
                false
            }
            Pending::LtLt => {
                if c == '<' {
                    // bash's here-string `<<<`: an ordinary word follows.
                    return true;
                }
                self.delim = Some(Delim {
                    strip_tabs: c == '-',
                    ..Delim::default()
                });
                if c == '-' {
                    return true;
                }
                let _ = self.push_delim(c, None);
                true
            }
            Pending::ArithClose => c == ')',
        }
    }

    fn dispatch(&mut self, c: char, value: Option<usize>) -> Result<(), usize> {
        let Some(frame) = self.frames.last_mut() else {
            return Ok(());
        };
        match frame {
            Frame::Command { .. } => self.push_command(c),
            Frame::Single => {
                if c == '\'' {
                    self.frames.pop();
                }
            }
            Frame::AnsiC => match c {
                '\'' => {
                    self.frames.pop();
                }
                '\\' => self.pending = Pending::Backslash,
                _ => {}
            },
            Frame::Double => match c {
                '\\' => self.pending = Pending::Backslash,
                '"' => {
                    self.frames.pop();
                }
                '`' => self.frames.push(Frame::Backtick),
                '$' => self.pending = Pending::Dollar,
                _ => {}
            },
            Frame::Backtick => match c {
                '\\' => self.pending = Pending::Backslash,
                '`' => {
                    self.frames.pop();
                }
                _ => {}
            },
            Frame::Comment => {
                if c == '\n' {
                    self.frames.pop();
                    return self.push(c, value);
                }
            }
            Frame::Param { braces } => match c {
                '{' => *braces += 1,
                '}' if *braces > 0 => *braces -= 1,
                '}' => {
                    self.frames.pop();
                }
                _ => self.push_quoting(c),
            },
            Frame::Arith { parens } => match c {
                '(' => *parens += 1,
                ')' if *parens > 0 => *parens -= 1,
                ')' => {
                    self.frames.pop();
                    self.pending = Pending::ArithClose;
                }
                _ => self.push_quoting(c),
            },
        }
        Ok(())
    }

    /// Quotes, escapes and expansions, as read inside `${…}` and `$((…))`.
    fn push_quoting(&mut self, c: char) {
        match c {
            '\\' => self.pending = Pending::Backslash,
            '\'' => self.frames.push(Frame::Single),
            '"' => self.frames.push(Frame::Double),
            '`' => self.frames.push(Frame::Backtick),
            '$' => self.pending = Pending::Dollar,
            _ => {}
        }
    }

    fn push_command(&mut self, c: char) {
        match c {
            '\\' => self.pending = Pending::Backslash,
            '\'' | '"' | '`' => {
                self.in_word = true;
                self.frames.push(match c {
                    '\'' => Frame::Single,
                    '"' => Frame::Double,
                    _ => Frame::Backtick,
                });
            }
            '$' => {
                self.in_word = true;
                self.pending = Pending::Dollar;
            }
            '#' if !self.in_word => self.frames.push(Frame::Comment),
            '\n' => {
                self.end_word();
                if let Some(doc) = self.heredocs.pop_front() {
                    self.body = Some(Body {
                        doc,
                        line: String::new(),
                        values: Vec::new(),
                    });
                }
            }
            c if is_blank(c) => self.end_word(),
            c if is_operator(c) => {
                self.end_word();
                self.push_operator(c);
            }
            c => {
                self.in_word = true;
                self.word.push(c);
            }
        }
    }

    fn push_operator(&mut self, c: char) {
        let Some(Frame::Command {
            nested,
            parens,
            cases,
        }) = self.frames.last_mut()
        else {
            return;
        };
        match c {
            '<' => self.pending = Pending::Lt,
            '(' => *parens += 1,
            ')' if *parens > 0 => *parens -= 1,
            // A `case` pattern's closing parenthesis.
            ')' if *cases > 0 => {}
            ')' if *nested => {
                self.frames.pop();
                // `$(…)` is part of a word.
                self.in_word = true;
            }
            _ => {}
        }
    }

    /// `$(`: a command inside, whose first word starts now.
    fn open_substitution(&mut self) {
        self.frames.push(Frame::Command {
            nested: true,
            parens: 0,
            cases: 0,
        });
        self.word.clear();
        self.in_word = false;
    }

    fn end_word(&mut self) {
        if let Some(Frame::Command { cases, .. }) = self.frames.last_mut() {
            match self.word.as_str() {
                "case" => *cases += 1,
                "esac" => *cases = cases.saturating_sub(1),
                _ => {}
            }
        }
        self.word.clear();
        self.in_word = false;
    }

    fn push_delim(&mut self, c: char, value: Option<usize>) -> Result<(), usize> {
        let Some(d) = &mut self.delim else {
            return Ok(());
        };
        if value.is_some() {
            d.started = true;
        }
        if let Some(q) = d.quote {
            match c {
                _ if d.escape => {
                    d.text.push(c);
                    d.escape = false;
                }
                '\\' if q == '"' => d.escape = true,
                c if c == q => d.quote = None,
                c => d.text.push(c),
            }
            return Ok(());
        }
        if d.escape {
            d.text.push(c);
            d.escape = false;
            return Ok(());
        }
        match c {
            c if is_blank(c) && !d.started => {}
            '\\' => {
                d.started = true;
                d.quoted = true;
                d.escape = true;
            }
            '\'' | '"' => {
                d.started = true;
                d.quoted = true;
                d.quote = Some(c);
            }
            c if is_blank(c) || c == '\n' || is_operator(c) => {
                let done = std::mem::take(d);
                self.delim = None;
                if !done.text.is_empty() || done.quoted {
                    self.heredocs.push_back(HereDoc {
                        delim: done.text,
                        strip_tabs: done.strip_tabs,
                    });
                }
                return self.push(c, value);
            }
            c => {
                d.started = true;
                d.text.push(c);
            }
        }
        Ok(())
    }

    fn end_body_line(&mut self) -> Result<(), usize> {
        let Some(body) = &mut self.body else {
            return Ok(());
        };
        let line = if body.doc.strip_tabs {
            body.line.trim_start_matches('\t')
        } else {
            body.line.as_str()
        };
        if line != body.doc.delim {
            body.line.clear();
            body.values.clear();
            return Ok(());
        }
        let culprit = body.values.first().copied();
        self.body = self.heredocs.pop_front().map(|doc| Body {
            doc,
            line: String::new(),
            values: Vec::new(),
        });
        match culprit {
            Some(v) => Err(v),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The context of each `§` in `cmd`, each value being a plain word.
    fn contexts(cmd: &str) -> Vec<Context> {
        let mut s = Scanner::default();
        let mut out = Vec::new();
        let mut parts = cmd.split('§').peekable();
        while let Some(t) = parts.next() {
            s.text(t, None).expect("no value ends a here-document");
            if parts.peek().is_some() {
                out.push(s.context());
                s.text("w", Some(out.len() - 1)).expect("value");
            }
        }
        out
    }

    #[test]
    fn quotes_escapes_and_expansions() {
        use Context::*;
        let cases: &[(&str, &[Context])] = &[
            ("echo §", &[Command]),
            ("echo pre§post §", &[Command, Command]),
            ("echo \"§\"", &[DoubleQuoted]),
            ("echo \"a\\\"§\" §", &[DoubleQuoted, Command]),
            ("echo '§' §", &[SingleQuoted, Command]),
            ("echo 'it''s' \"'\" §", &[Command]),
            ("echo \\§ §", &[Escaped, Command]),
            ("echo \\\\§", &[Command]),
            ("echo $§ ${x}§", &[Dollar, Command]),
            ("echo `§` §", &[Backticks, Command]),
            ("echo `a \\` §` §", &[Backticks, Command]),
            ("echo \"`§`\" §", &[Backticks, Command]),
            ("echo $(echo §) §", &[Command, Command]),
            ("echo \"$(echo §)\" \"§\"", &[Command, DoubleQuoted]),
            ("echo \"$(echo \"§\")\" §", &[DoubleQuoted, Command]),
            ("echo $(echo ')' §) '§'", &[Command, SingleQuoted]),
            ("echo $(§)", &[Command]),
            (
                "echo ${x:-§} ${x:-'§'} ${#x}§",
                &[Parameter, SingleQuoted, Command],
            ),
            ("echo ${x:-{a}§} §", &[Parameter, Command]),
            ("echo $(( § + (1) )) §", &[Arithmetic, Command]),
            ("(echo '§') §", &[SingleQuoted, Command]),
            (
                "x=$(case a in a) echo §;; esac) '§'",
                &[Command, SingleQuoted],
            ),
            ("echo \"$(case a in a) echo;; esac)\" '§'", &[SingleQuoted]),
        ];
        for (cmd, want) in cases {
            assert_eq!(contexts(cmd), *want, "{cmd:?}");
        }
    }

    #[test]
    fn comments_start_only_where_a_word_would() {
        use Context::*;
        let cases: &[(&str, &[Context])] = &[
            ("echo # §\necho §", &[Comment, Command]),
            ("echo a#§", &[Command]),
            ("echo a;#§", &[Comment]),
            ("echo a>#§", &[Comment]),
            ("echo $#§", &[Command]),
            ("echo ${#x}§", &[Command]),
            ("echo \"#§\"", &[DoubleQuoted]),
            ("echo $(#c\n§)", &[Command]),
            ("echo \\\n#§", &[Comment]),
            ("# it's\necho '§'", &[SingleQuoted]),
        ];
        for (cmd, want) in cases {
            assert_eq!(contexts(cmd), *want, "{cmd:?}");
        }
    }

    #[test]
    fn here_documents() {
        use Context::*;
        let cases: &[(&str, &[Context])] = &[
            ("cat <<EOF\n§ it's\nEOF\necho §", &[HereDoc, Command]),
            (
                "cat <<'EOF' >f; echo '§'\n\"§\nEOF\n§",
                &[SingleQuoted, HereDoc, Command],
            ),
            (
                "cat <<-\"E F\"\n\t§\n\tE F\necho '§'",
                &[HereDoc, SingleQuoted],
            ),
            ("cat <<A <<B\n§\nA\n§\nB\n§", &[HereDoc, HereDoc, Command]),
            ("echo $(cat <<EOF\n§)\nEOF\n) §", &[HereDoc, Command]),
            ("cat <<§", &[HereDocDelimiter]),
            ("cat << §", &[HereDocDelimiter]),
            ("cat <<E§", &[HereDocDelimiter]),
            ("cat <<<§ §", &[Command, Command]),
            ("cat <§ 2>§", &[Command, Command]),
            ("cat <<EOF # §\n§\nEOF", &[Comment, HereDoc]),
        ];
        for (cmd, want) in cases {
            assert_eq!(contexts(cmd), *want, "{cmd:?}");
        }
    }

    #[test]
    fn bash_and_sh_disagreeing_leaves_the_rest_unknown() {
        use Context::*;
        assert_eq!(contexts("echo $'a\\n' §"), [Command]);
        assert_eq!(contexts("echo $'it\\'s' §"), [Unknown]);
        assert_eq!(contexts("echo \"$'\" §"), [Command]);
    }

    #[test]
    fn the_rules() {
        use Context::*;
        // `| quote` protects only where its quotes are read as quotes.
        assert_eq!(judge(Command, "'a b'", true), Ok(()));
        for c in [
            SingleQuoted,
            DoubleQuoted,
            Backticks,
            Escaped,
            Dollar,
            Parameter,
            Arithmetic,
            HereDoc,
            Unknown,
        ] {
            assert_eq!(judge(c, "'a b'", true), Err(Refusal::Quote), "{c:?}");
        }
        assert_eq!(judge(Comment, "'a b'", true), Ok(()));
        assert_eq!(judge(Comment, "'a\nb'", true), Err(Refusal::Quote));
        // Raw values: no metacharacters anywhere; numbers in arithmetic; never a delimiter.
        for c in [
            Command,
            SingleQuoted,
            DoubleQuoted,
            Backticks,
            HereDoc,
            Unknown,
        ] {
            assert_eq!(judge(c, "two words", false), Ok(()), "{c:?}");
            for bad in ["a;b", "$(x)", "`x`", "a\\", "it's", "a\nb", "\"", "a\0"] {
                assert_eq!(
                    judge(c, bad, false),
                    Err(Refusal::Metacharacters),
                    "{c:?} {bad:?}"
                );
            }
        }
        assert_eq!(judge(Arithmetic, "-12", false), Ok(()));
        assert_eq!(judge(Arithmetic, "x", false), Err(Refusal::NotANumber));
        assert_eq!(judge(Arithmetic, "", false), Err(Refusal::NotANumber));
        assert_eq!(
            judge(HereDocDelimiter, "EOF", false),
            Err(Refusal::HereDocDelimiter)
        );
    }

    #[test]
    fn values_are_read_as_the_shell_reads_them() {
        let v = |text, quoted| Piece::Value { text, quoted };
        // A raw value ending in a space makes the next `#` start a comment, where a quoted
        // value with a newline would end it.
        let pieces = [v("a ", false), Piece::Text("#"), v("'x\ny'", true)];
        let refused = check(&pieces);
        assert_eq!(refused.len(), 1);
        assert_eq!(
            (refused[0].index, refused[0].context),
            (1, Context::Comment)
        );
        let pieces = [v("a", false), Piece::Text("#"), v("'x\ny'", true)];
        assert!(check(&pieces).is_empty());
        // A value that makes a line equal to the delimiter ends the here-document early.
        let pieces = [
            Piece::Text("cat <<EOF\n"),
            v("EOF", false),
            Piece::Text("\nEOF"),
        ];
        let refused = check(&pieces);
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].refusal, Refusal::HereDocEnd);
        let pieces = [
            Piece::Text("cat <<EOF\nx "),
            v("EOF", false),
            Piece::Text("\nEOF"),
        ];
        assert!(check(&pieces).is_empty());
        // Every refusal is found, in order.
        let pieces = [
            Piece::Text("echo \""),
            v("'a'", true),
            Piece::Text("\" '"),
            v("'b'", true),
            Piece::Text("'"),
        ];
        let refused: Vec<_> = check(&pieces)
            .iter()
            .map(|r| (r.index, r.context))
            .collect();
        assert_eq!(
            refused,
            [(0, Context::DoubleQuoted), (1, Context::SingleQuoted)]
        );
    }
}
