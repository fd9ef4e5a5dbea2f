//! Diagnostics: where a problem is (`Span`), which text it is in (the source registry), what it
//! is (`Diagnostic`) and the one renderer that shows every problem the same compiler-like way.
//!
//! Loaders register each file's text here when they read it and attach `Span`s to everything they
//! produce; validation and the runner build `Diagnostic`s from those spans; `render` turns them
//! into the `error: … --> file:line:col` text that reaches the user (stderr, reports, recaps).

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

/// Identifies one registered source text (a playbook, an inventory, a vars file, `-e` input).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FileId(u32);

impl FileId {
    pub fn index(self) -> u32 {
        self.0
    }
    pub fn from_index(i: u32) -> FileId {
        FileId(i)
    }
}

struct SourceFile {
    name: String,
    text: Arc<str>,
    /// Character offset of the first character of every line.
    line_starts: Vec<usize>,
}

fn registry() -> &'static Mutex<Vec<SourceFile>> {
    static SOURCES: OnceLock<Mutex<Vec<SourceFile>>> = OnceLock::new();
    SOURCES.get_or_init(|| Mutex::new(Vec::new()))
}

/// Registers a source text under a display name (usually the path as the user typed it) and
/// returns its id. Texts live for the whole process: a run needs them for every late diagnostic.
pub fn register_source(name: impl Into<String>, text: impl Into<Arc<str>>) -> FileId {
    let text: Arc<str> = text.into();
    let mut line_starts = vec![0];
    for (i, c) in text.chars().enumerate() {
        if c == '\n' {
            line_starts.push(i + 1);
        }
    }
    let mut files = registry().lock().unwrap_or_else(|p| p.into_inner());
    files.push(SourceFile {
        name: name.into(),
        text,
        line_starts,
    });
    FileId(u32::try_from(files.len() - 1).unwrap_or(u32::MAX))
}

/// A file's bytes as text (the caller registers it). When they are not UTF-8, the error is
/// placed at the line and column of the first invalid byte (counted over the valid text
/// before it); what is registered under `name` for the renderer then is that text and the
/// rest of the byte's line, with what cannot be shown as `�`. `what` names the file for the
/// message (`playbook`, `vars file`, `inventory`).
pub fn utf8_text(name: &str, bytes: Vec<u8>, what: &str) -> Result<String, Diagnostic> {
    let limit = max_input_bytes(what);
    if bytes.len() > limit {
        return Err(too_large(name, &bytes, what, limit));
    }
    String::from_utf8(bytes)
        .map_err(|e| not_utf8(name, e.as_bytes(), e.utf8_error().valid_up_to(), what))
}

/// The largest file of each kind sortie reads: checking costs about 80 times a playbook's
/// size in memory, so a limit keeps a mistaken (or hostile) multi-megabyte file from costing
/// gigabytes. An inventory may be larger (200,000 hosts is its own limit).
pub fn max_input_bytes(what: &str) -> usize {
    match what {
        "inventory" => 32 << 20,
        _ => 4 << 20,
    }
}

fn too_large(name: &str, bytes: &[u8], what: &str, limit: usize) -> Diagnostic {
    let first: String = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_SNIPPET as usize)])
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .map(|c| {
            if c.is_control() && c != '\t' {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect();
    let file = register_source(name.to_string(), first.as_str());
    Diagnostic::error(format!(
        "{name} is {} bytes: sortie reads {} {what} of at most {} MiB",
        bytes.len(),
        if what.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" },
        limit >> 20
    ))
    .at(Span::point(file, 1, 1))
    .label("this file is too large")
    .help(format!(
        "split it into smaller files (vars_files, several -i inventories), or check that it is the {what} you meant"
    ))
}

fn not_utf8(name: &str, bytes: &[u8], at: usize, what: &str) -> Diagnostic {
    let valid = std::str::from_utf8(&bytes[..at]).unwrap_or_default();
    let line_start = valid.rfind('\n').map_or(0, |i| i + 1);
    let line = valid.matches('\n').count() as u32 + 1;
    let col = valid[line_start..].chars().count() as u32 + 1;
    let line_end = bytes[at..]
        .iter()
        .position(|b| *b == b'\n')
        .map_or(bytes.len(), |p| at + p);
    // The line as the renderer shows it: no control characters reach the terminal, and a
    // binary file's "line" is cut short.
    let shown: String = String::from_utf8_lossy(&bytes[line_start..line_end])
        .chars()
        .take(col as usize + 80)
        .map(|c| {
            if c.is_control() && c != '\t' {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect();
    let file = register_source(name, format!("{}{shown}", &valid[..line_start]));
    let help = if bytes.contains(&0) {
        format!("this looks like a binary file; the {what} must be UTF-8 text")
    } else {
        "save the file as UTF-8".to_string()
    };
    Diagnostic::error(format!("{what} `{name}` is not UTF-8 text"))
        .at(Span::point(file, line, col))
        .label(format!(
            "byte 0x{:02X} (offset {at}) is not UTF-8",
            bytes.get(at).copied().unwrap_or(0)
        ))
        .help(help)
}

/// The display name of a registered file.
pub fn file_name(id: FileId) -> String {
    let files = registry().lock().unwrap_or_else(|p| p.into_inner());
    files
        .get(id.0 as usize)
        .map(|f| f.name.clone())
        .unwrap_or_else(|| "<unknown>".to_string())
}

/// The whole text of a registered file.
pub fn source_text(id: FileId) -> Option<Arc<str>> {
    let files = registry().lock().unwrap_or_else(|p| p.into_inner());
    files.get(id.0 as usize).map(|f| f.text.clone())
}

/// The text of line `line` (1-based) of a registered file, without its newline.
pub fn source_line(id: FileId, line: u32) -> Option<String> {
    let files = registry().lock().unwrap_or_else(|p| p.into_inner());
    let f = files.get(id.0 as usize)?;
    let idx = (line as usize).checked_sub(1)?;
    let start = *f.line_starts.get(idx)?;
    let text: String = f
        .text
        .chars()
        .skip(start)
        .take_while(|c| *c != '\n')
        .collect();
    Some(text.trim_end_matches('\r').to_string())
}

/// A place in a source file: 1-based line and column (in characters) of the first character,
/// and of the character just past the end. Every step, field and template carries one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Span {
    pub file: FileId,
    pub line: u32,
    pub col: u32,
    pub end_line: u32,
    pub end_col: u32,
}

impl Span {
    pub fn new(file: FileId, line: u32, col: u32, end_line: u32, end_col: u32) -> Span {
        Span {
            file,
            line,
            col,
            end_line,
            end_col,
        }
    }

    /// A span covering one point.
    pub fn point(file: FileId, line: u32, col: u32) -> Span {
        Span::new(file, line, col, line, col + 1)
    }

    /// A span for a whole file when nothing more precise is known.
    pub fn file_start(file: FileId) -> Span {
        Span::point(file, 1, 1)
    }

    /// The span shifted to a position inside a scalar: `line`/`col` are 1-based and relative
    /// to the scalar's first character (used to place template errors inside YAML strings).
    pub fn offset(&self, line: u32, col: u32, len: u32) -> Span {
        if line <= 1 {
            let c = self.col + col.saturating_sub(1);
            Span::new(self.file, self.line, c, self.line, c + len.max(1))
        } else {
            // A later line of a block scalar: its columns are not knowable without the
            // indentation, so point at the first column of that line.
            let l = self.line + line - 1;
            Span::new(self.file, l, col.max(1), l, col.max(1) + len.max(1))
        }
    }

    pub fn file_name(&self) -> String {
        file_name(self.file)
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", file_name(self.file), self.line, self.col)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Error,
    Warning,
}

/// A problem to show a user: a title, the place, a label under the caret, optional help and
/// notes, and further labelled places. Built by loaders, validation and the runner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub level: Level,
    pub title: String,
    pub span: Option<Span>,
    pub label: String,
    pub help: Option<String>,
    pub notes: Vec<String>,
    pub secondary: Vec<(Span, String)>,
}

impl Diagnostic {
    pub fn error(title: impl Into<String>) -> Diagnostic {
        Diagnostic {
            level: Level::Error,
            title: title.into(),
            span: None,
            label: String::new(),
            help: None,
            notes: Vec::new(),
            secondary: Vec::new(),
        }
    }

    pub fn warning(title: impl Into<String>) -> Diagnostic {
        Diagnostic {
            level: Level::Warning,
            ..Diagnostic::error(title)
        }
    }

    pub fn at(mut self, span: Span) -> Diagnostic {
        self.span = Some(span);
        self
    }

    pub fn at_opt(mut self, span: Option<Span>) -> Diagnostic {
        if self.span.is_none() {
            self.span = span;
        }
        self
    }

    pub fn label(mut self, label: impl Into<String>) -> Diagnostic {
        self.label = label.into();
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(note.into());
        self
    }

    pub fn also(mut self, span: Span, label: impl Into<String>) -> Diagnostic {
        self.secondary.push((span, label.into()));
        self
    }

    /// `file:line:col: title` — the one-line form for plain run output and reports.
    pub fn one_line(&self) -> String {
        match self.span {
            Some(s) => format!("{s}: {}", self.title),
            None => self.title.clone(),
        }
    }

    /// Renders this diagnostic without color.
    pub fn render(&self) -> String {
        render(std::slice::from_ref(self), false)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.one_line())
    }
}

/// A set of diagnostics, returned by every loading and validation stage.
#[derive(Clone, Debug, Default, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(.0, false))]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|d| d.level == Level::Error)
    }
    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }
    /// `Err(self)` when any error was collected.
    pub fn into_result<T>(self, value: T) -> Result<T, Diagnostics> {
        if self.has_errors() {
            Err(self)
        } else {
            Ok(value)
        }
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Diagnostics(vec![d])
    }
}

struct Paint {
    on: bool,
}

impl Paint {
    fn wrap(&self, code: &str, s: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
}

/// The one renderer: every diagnostic, one after another, with the file, line, column, the
/// source line and a caret under the span. `color` adds ANSI colors (callers pass it only on
/// a terminal that allows color).
pub fn render(diags: &[Diagnostic], color: bool) -> String {
    let p = Paint { on: color };
    let mut out = String::new();
    for (i, d) in diags.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let (word, code) = match d.level {
            Level::Error => ("error", "1;31"),
            Level::Warning => ("warning", "1;33"),
        };
        out.push_str(&p.wrap(code, word));
        out.push_str(&p.wrap("1", &format!(": {}", printable(&d.title))));
        out.push('\n');
        let mut places: Vec<(Span, &str, bool)> = Vec::new();
        if let Some(s) = d.span {
            places.push((s, d.label.as_str(), true));
        }
        for (s, l) in &d.secondary {
            places.push((*s, l.as_str(), false));
        }
        let places: Vec<(Span, String, bool)> = places
            .into_iter()
            .map(|(s, l, primary)| (s, printable(l).into_owned(), primary))
            .collect();
        let width = places
            .iter()
            .map(|(s, _, _)| s.line.to_string().len())
            .max()
            .unwrap_or(1);
        let pad = " ".repeat(width);
        for (n, (span, label, primary)) in places.iter().enumerate() {
            let arrow = if n == 0 { "-->" } else { ":::" };
            out.push_str(&format!("{pad}{} {span}\n", p.wrap("1;34", arrow)));
            if let Some(line) = source_line(span.file, span.line) {
                let bar = p.wrap("1;34", "|");
                out.push_str(&format!("{pad} {bar}\n"));
                let num = p.wrap("1;34", &format!("{:>width$}", span.line));
                let full: String = printable(&line).replace('\t', " ");
                let len_chars = full.chars().count() as u32;
                let start = span.col.max(1);
                let end = if span.end_line == span.line && span.end_col > start {
                    span.end_col.min(len_chars.max(start) + 1)
                } else {
                    (len_chars + 1).max(start + 1)
                };
                let (shown, start, end) = window(&full, start, end);
                out.push_str(&format!("{num} {bar} {shown}\n"));
                let carets = "^".repeat((end - start).max(1) as usize);
                let marker = if *primary {
                    p.wrap(code, &carets)
                } else {
                    p.wrap("1;34", &carets.replace('^', "-"))
                };
                let text = if label.is_empty() {
                    String::new()
                } else {
                    format!(" {label}")
                };
                let text = if *primary {
                    p.wrap(code, &text)
                } else {
                    p.wrap("1;34", &text)
                };
                out.push_str(&format!(
                    "{pad} {bar} {}{marker}{text}\n",
                    " ".repeat((start - 1) as usize)
                ));
            } else if !label.is_empty() {
                out.push_str(&format!("{pad} = {label}\n"));
            }
        }
        if places.is_empty() && !d.label.is_empty() {
            out.push_str(&format!("{pad} = {}\n", printable(&d.label)));
        }
        for note in &d.notes {
            // Later lines of a note stand under its first.
            let note = printable(note);
            let mut lines = note.lines();
            out.push_str(&format!("{pad} = note: {}\n", lines.next().unwrap_or("")));
            for l in lines {
                out.push_str(&format!("{pad}         {l}\n"));
            }
        }
        if let Some(h) = &d.help {
            out.push_str(&format!(
                "{pad} = {}: {}\n",
                p.wrap("1", "help"),
                printable(h)
            ));
        }
    }
    out
}

/// Longest source line shown whole, in characters; a longer one is cut around the caret.
pub const MAX_SNIPPET: u32 = 120;

/// The part of a long source line worth showing — some context before the caret, up to
/// `MAX_SNIPPET` characters, `…` where it was cut — and the caret's columns in it.
fn window(line: &str, start: u32, end: u32) -> (String, u32, u32) {
    let len = line.chars().count() as u32;
    if len <= MAX_SNIPPET {
        return (line.to_string(), start, end);
    }
    let from = start.saturating_sub(1).saturating_sub(MAX_SNIPPET / 3);
    let to = (from + MAX_SNIPPET).min(len);
    let mut shown: String = line
        .chars()
        .skip(from as usize)
        .take((to - from) as usize)
        .collect();
    let mut shift = from;
    if from > 0 {
        shown.insert(0, '…');
        shift = shift.saturating_sub(1);
    }
    if to < len {
        shown.push('…');
    }
    let width = shown.chars().count() as u32;
    let start = (start - shift).min(width);
    let end = (end.saturating_sub(shift)).clamp(start + 1, width + 1);
    (shown, start, end)
}

/// Text safe to print on a terminal: control characters (but newline and tab) and Unicode
/// direction overrides are written as visible escapes (`\x1b`, `\r`, `\u{202e}`), so output
/// from a host or a server cannot move the cursor, retitle the window, write the clipboard
/// (`ESC ] 52`) or reorder what a reader sees.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    fn hostile(c: char) -> bool {
        (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    }
    if !s.chars().any(hostile) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\r' => out.push_str("\\r"),
            c if hostile(c) && (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if hostile(c) => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The closest candidate to `name`, if one is close enough to be a likely typo.
pub fn did_you_mean<'a, I>(name: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let mut best: Option<(f64, &str)> = None;
    if name.is_empty() {
        return None;
    }
    for c in candidates {
        let score = strsim::jaro_winkler(&name.to_lowercase(), &c.to_lowercase());
        let close = score >= 0.8 || strsim::osa_distance(name, c) <= 1;
        if close && best.is_none_or(|(b, _)| score > b) {
            best = Some((score, c));
        }
    }
    best.map(|(_, c)| c)
}

/// A `Span` as data, for reports: the file by name, 1-based line and column of the first
/// character and of the character just past the end. Reports carry these instead of text, so
/// every later view (the recap, JUnit, a saved report) can point at the place again.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct Location {
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub end_line: u32,
    pub end_column: u32,
}

impl From<Span> for Location {
    fn from(s: Span) -> Location {
        Location {
            file: s.file_name(),
            line: s.line,
            column: s.col,
            end_line: s.end_line,
            end_column: s.end_col,
        }
    }
}

impl Location {
    /// The span again, for the renderer: in the registered text of that name, else in the
    /// file of that name read now (a saved report), else in an empty text (no source line).
    pub fn span(&self) -> Span {
        let file = source_named(&self.file);
        Span::new(file, self.line, self.column, self.end_line, self.end_column)
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

impl<'de> serde::Deserialize<'de> for Location {
    /// The object form, or the `file:line:col` text that version 1 reports wrote.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        struct Fields {
            file: String,
            line: u32,
            column: u32,
            end_line: Option<u32>,
            end_column: Option<u32>,
        }
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Form {
            Fields(Fields),
            Text(String),
        }
        match Form::deserialize(d)? {
            Form::Fields(f) => Ok(Location {
                end_line: f.end_line.unwrap_or(f.line),
                end_column: f.end_column.unwrap_or(f.column + 1),
                file: f.file,
                line: f.line,
                column: f.column,
            }),
            Form::Text(t) => {
                let mut parts = t.rsplitn(3, ':');
                let col = parts.next().and_then(|c| c.parse().ok());
                let line = parts.next().and_then(|l| l.parse().ok());
                match (parts.next(), line, col) {
                    (Some(file), Some(line), Some(column)) => Ok(Location {
                        file: file.to_string(),
                        line,
                        column,
                        end_line: line,
                        end_column: column + 1,
                    }),
                    _ => Err(serde::de::Error::custom(format!(
                        "`{t}` is not a location (file:line:column)"
                    ))),
                }
            }
        }
    }
}

/// The id of the registered text called `name`; a file of that name is read and registered
/// when none is (its text empty if it cannot be read).
pub fn source_named(name: &str) -> FileId {
    {
        let files = registry().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = files.iter().rposition(|f| f.name == name) {
            return FileId(u32::try_from(i).unwrap_or(u32::MAX));
        }
    }
    let text = std::fs::read_to_string(name).unwrap_or_default();
    register_source(name, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_caret_under_span() {
        let f = register_source("deploy.yml", "steps:\n    - htp:\n        x: 1\n");
        let d = Diagnostic::error("unknown step kind `htp`")
            .at(Span::new(f, 2, 7, 2, 10))
            .label("did you mean `http`?");
        assert_eq!(
            d.render(),
            "error: unknown step kind `htp`\n --> deploy.yml:2:7\n  |\n2 |     - htp:\n  |       ^^^ did you mean `http`?\n"
        );
    }

    #[test]
    fn a_file_that_is_not_utf8_is_placed_at_its_first_invalid_byte() {
        let bytes = b"a: 1\nname: caf\xe9 \xc3\xa9t\xe9\nb: 2\n".to_vec();
        let d = utf8_text("latin1.yml", bytes, "playbook").expect_err("not UTF-8");
        assert_eq!(
            d.render(),
            "error: playbook `latin1.yml` is not UTF-8 text\n --> latin1.yml:2:10\n  |\n2 | name: caf\u{FFFD} \u{e9}t\u{FFFD}\n  |          ^ byte 0xE9 (offset 14) is not UTF-8\n  = help: save the file as UTF-8\n"
        );
        // After multi-byte characters, columns count characters, not bytes.
        let d = utf8_text(
            "x.yml",
            "é€😀\u{80}".bytes().chain([0xff]).collect(),
            "vars file",
        )
        .expect_err("not UTF-8");
        let s = d.span.expect("placed");
        assert_eq!((s.line, s.col), (1, 5));
        // A binary file: no control character reaches the terminal, the line is cut short.
        let mut bin = vec![0x7f, b'E', b'L', b'F', 2, 1, 0, 0x1b, b'['];
        bin.extend(std::iter::repeat_n(0xffu8, 500));
        let d = utf8_text("inv", bin, "inventory").expect_err("binary");
        let shown = d.render();
        assert!(shown.contains(" --> inv:1:10\n"), "{shown}");
        assert!(
            !shown.chars().any(|c| c.is_control() && c != '\n'),
            "{shown:?}"
        );
        assert!(shown.len() < 600, "{shown}");
        assert!(d.help.is_some_and(|h| h.contains("binary")));
        assert!(utf8_text("ok.yml", b"a: 1\n".to_vec(), "playbook").is_ok());
    }

    #[test]
    fn a_location_is_read_from_both_report_forms() {
        let object: Location = serde_json::from_str(
            r#"{"file":"pb.yml","line":3,"column":5,"end_line":3,"end_column":9}"#,
        )
        .unwrap();
        let text: Location = serde_json::from_str(r#""dir:x/pb.yml:3:5""#).unwrap();
        assert_eq!(object.file, "pb.yml");
        assert_eq!(
            (text.file.as_str(), text.line, text.column),
            ("dir:x/pb.yml", 3, 5)
        );
        assert_eq!(text.to_string(), "dir:x/pb.yml:3:5");
        assert!(serde_json::from_str::<Location>(r#""pb.yml""#).is_err());
    }

    #[test]
    fn a_location_points_at_the_registered_text_again() {
        let f = register_source("loc-test.yml", "a: 1\nbb: 2\n");
        let loc = Location::from(Span::new(f, 2, 1, 2, 3));
        let span = loc.span();
        assert_eq!(span.file, f);
        assert_eq!(source_line(span.file, 2).as_deref(), Some("bb: 2"));
        let missing = Location {
            file: "/nonexistent/x.yml".into(),
            ..loc
        };
        assert_eq!(source_line(missing.span().file, 2), None);
    }

    #[test]
    fn printable_escapes_what_would_drive_a_terminal() {
        assert_eq!(printable("plain\ttext\n"), "plain\ttext\n");
        assert_eq!(
            printable("a\x1b]52;c;ZXZpbA==\x07b\x1b[2Jc\rd\u{202e}e"),
            "a\\x1b]52;c;ZXZpbA==\\x07b\\x1b[2Jc\\rd\\u{202e}e"
        );
        assert_eq!(printable("\u{9b}31m"), "\\u{009b}31m");
        let f = register_source("hostile.yml", "a: \"\x1b[2J\"\n");
        let d = Diagnostic::error("bad \x1b]0;title\x07")
            .at(Span::new(f, 1, 4, 1, 11))
            .label("found \x1b[31m")
            .note("stderr:\n| \x1b]52;c;eA==\x07");
        let text = d.render();
        assert!(!text.contains('\x1b') && !text.contains('\x07'), "{text}");
        assert!(text.contains("bad \\x1b]0;title\\x07"), "{text}");
    }

    #[test]
    fn a_long_source_line_is_cut_around_the_caret() {
        let line = format!("needs: [{}nope]", "a, ".repeat(2000));
        let f = register_source("long.yml", line.as_str());
        let col = line.find("nope").unwrap() as u32 + 1;
        let d = Diagnostic::error("unknown step")
            .at(Span::new(f, 1, col, 1, col + 4))
            .label("here");
        let text = d.render();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[3].len() < 200, "{}", lines[3]);
        assert!(
            lines[3].starts_with("1 | …") && lines[3].ends_with("nope]"),
            "{text}"
        );
        let code_at = lines[3].find("nope").unwrap();
        let caret_at = lines[4].find('^').unwrap();
        assert_eq!(
            lines[3][..code_at].chars().count(),
            lines[4][..caret_at].chars().count(),
            "the caret stands under `nope`:\n{text}"
        );
        assert!(lines[4].ends_with("^^^^ here"), "{text}");
    }

    #[test]
    fn did_you_mean_finds_typos() {
        let kinds = ["ssh", "http", "dns", "tcp", "sftp_put"];
        assert_eq!(did_you_mean("htp", kinds), Some("http"));
        assert_eq!(did_you_mean("sftp_pt", kinds), Some("sftp_put"));
        assert_eq!(did_you_mean("zzzzzz", kinds), None);
    }
}
