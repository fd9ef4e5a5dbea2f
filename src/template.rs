//! Templating: the one minijinja environment (strict undefined, no auto-escape) with sortie's
//! filters, and the functions that compile-check, render and evaluate the templates found in
//! playbooks. Template text and its `Span` come from YAML nodes; the context (vars, `host`,
//! `steps`, `item`, `env`, `run`) comes from the runner; errors come back as `Diagnostic`s
//! placed at the template's own line and column inside the YAML file.

use std::sync::OnceLock;

use minijinja::value::Value;
use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior};

use crate::diag::{Diagnostic, Span, did_you_mean};
use crate::yaml::{Node, NodeKind, Style, is_template};

/// Where a template string stands in its file, so errors can point inside it.
#[derive(Clone, Copy, Debug)]
pub struct Place {
    pub span: Span,
    pub style: Style,
}

impl Place {
    pub fn of(node: &Node) -> Place {
        let style = match &node.kind {
            NodeKind::Scalar { style, .. } => *style,
            _ => Style::Plain,
        };
        Place {
            span: node.span,
            style,
        }
    }

    /// The span of bytes `range` (on 1-based `line` of the template text) in the file.
    fn inner(&self, src: &str, line: usize, range: Option<std::ops::Range<usize>>) -> Span {
        let Some(range) = range else {
            return self.span;
        };
        let floor = |mut i: usize| {
            i = i.min(src.len());
            while i > 0 && !src.is_char_boundary(i) {
                i -= 1;
            }
            i
        };
        let start = floor(range.start);
        let end = floor(range.end.max(start));
        let line_start = src[..start].rfind('\n').map(|i| i + 1).unwrap_or(0);
        let col = src[line_start..start].chars().count() as u32 + 1;
        let len = src[start..end].chars().count() as u32;
        match self.style {
            Style::Quoted => {
                if line <= 1 {
                    self.span.offset(1, col + 1, len)
                } else {
                    self.span.offset(line as u32, col, len)
                }
            }
            Style::Block => self.span.offset(line as u32 + 1, col, len),
            Style::Plain => self.span.offset(line as u32, col, len),
        }
    }
}

/// Characters that change the meaning of a shell command when they come from a value.
/// (The guard's own markers too: a value cannot pose as a quoted one.)
const SHELL_META: &[char] = &[
    ';',
    '&',
    '|',
    '$',
    '`',
    '<',
    '>',
    '(',
    ')',
    '\\',
    '"',
    '\'',
    '*',
    '?',
    '[',
    ']',
    '#',
    '~',
    '!',
    '{',
    '}',
    '\n',
    '\r',
    crate::shell::MARK_START,
    crate::shell::MARK_END,
];

thread_local! {
    /// The values `| quote` gave while a command renders, in order; the command holds
    /// markers in their place until `shell::splice` checks where each one stands.
    static QUOTED: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `quote` in commands: the quoted value is kept aside and a marker stands in its place.
fn filter_quote_marked(v: Value) -> Result<Value, Error> {
    let s = match v.as_str() {
        Some(s) => s.to_string(),
        None => v.to_string(),
    };
    let quoted = shell_quote(&s)?;
    let n = QUOTED.with(|q| {
        let mut q = q.borrow_mut();
        q.push(quoted);
        q.len() - 1
    });
    Ok(Value::from_safe_string(crate::shell::marker(n)))
}

/// The template engine of a run: one environment for ordinary strings and one for shell
/// commands, which refuses unquoted values holding shell metacharacters.
pub struct Templates {
    env: Environment<'static>,
    cmd_env: Environment<'static>,
}

impl Default for Templates {
    fn default() -> Self {
        Templates::new()
    }
}

/// The shared engine (filters and settings never change during a process).
pub fn templates() -> &'static Templates {
    static T: OnceLock<Templates> = OnceLock::new();
    T.get_or_init(Templates::new)
}

fn base_env() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Strings in playbooks are data, not documents: `content: "x={{ v }}\n"` keeps its newline.
    if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.set_recursion_limit(200);
    env.set_fuel(Some(10_000_000));
    minijinja_contrib::add_to_environment(&mut env);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_filter("quote", filter_quote);
    env.add_filter("to_json", filter_to_json);
    env.add_filter("from_json", filter_from_json);
    env.add_filter("b64encode", filter_b64encode);
    env.add_filter("b64decode", filter_b64decode);
    env.add_filter("regex_replace", filter_regex_replace);
    env.add_filter("regex_search", filter_regex_search);
    env.add_filter("basename", filter_basename);
    env.add_filter("dirname", filter_dirname);
    env.add_filter("sha256", filter_sha256);
    env
}

impl Templates {
    pub fn new() -> Templates {
        let env = base_env();
        let mut cmd_env = base_env();
        cmd_env.add_filter("quote", filter_quote_marked);
        cmd_env.set_formatter(|out, _state, value| {
            let text = value.to_string();
            if !value.is_safe() && text.contains(SHELL_META) {
                let shown: String = text.chars().take(60).collect();
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("shell-injection guard: `{shown}` contains shell metacharacters"),
                ));
            }
            out.write_str(&text).map_err(Error::from)
        });
        Templates { env, cmd_env }
    }

    /// Compiles a template without rendering it: syntax errors become located diagnostics.
    pub fn check(&self, src: &str, place: Place) -> Result<(), Diagnostic> {
        if !is_template(src) {
            return Ok(());
        }
        let env = Environment::new();
        env.template_from_str(src)
            .map(|_| ())
            .map_err(|e| self.diagnose(e, src, place, None))
    }

    /// Compiles an expression (`when`, `until`, `that`, `changed_when`) without evaluating it.
    pub fn check_expr(&self, src: &str, place: Place) -> Result<(), Diagnostic> {
        let expr = strip_braces(src);
        self.env
            .compile_expression(expr)
            .map(|_| ())
            .map_err(|e| self.diagnose(e, expr, place, None))
    }

    /// Renders a template string with a context.
    pub fn render(&self, src: &str, place: Place, ctx: &Value) -> Result<String, Diagnostic> {
        if !is_template(src) {
            return Ok(src.to_string());
        }
        self.env
            .render_str(src, ctx)
            .map_err(|e| self.diagnose(e, src, place, Some(ctx)))
    }

    /// Renders a shell command with the injection guard on (unless `unsafe_shell`).
    pub fn render_command(
        &self,
        src: &str,
        place: Place,
        ctx: &Value,
        unsafe_shell: bool,
    ) -> Result<String, Diagnostic> {
        if unsafe_shell {
            return self.render(src, place, ctx);
        }
        if !is_template(src) {
            return Ok(src.to_string());
        }
        QUOTED.with(|q| q.borrow_mut().clear());
        let rendered = self.cmd_env.render_str(src, ctx).map_err(|e| {
            let guard = e.kind() == ErrorKind::InvalidOperation
                && e.detail().is_some_and(|d| d.starts_with("shell-injection guard"));
            let d = self.diagnose(e, src, place, Some(ctx));
            if guard {
                d.help("pass the value through `| quote`, or set `unsafe_shell: true` on the step if the shell must interpret it")
            } else {
                d
            }
        });
        let quoted = QUOTED.with(|q| std::mem::take(&mut *q.borrow_mut()));
        crate::shell::splice(&rendered?, &quoted).map_err(|e| quote_misplaced(e, src, place))
    }

    /// Evaluates an expression to a value (`when`, `until`, `that`, `loop: "{{ list }}"`).
    pub fn eval(&self, src: &str, place: Place, ctx: &Value) -> Result<Value, Diagnostic> {
        let expr = strip_braces(src);
        let compiled = self
            .env
            .compile_expression(expr)
            .map_err(|e| self.diagnose(e, expr, place, Some(ctx)))?;
        let v = compiled
            .eval(ctx)
            .map_err(|e| self.diagnose(e, expr, place, Some(ctx)))?;
        if v.is_undefined() {
            // Strict undefined makes printing an undefined value an error, but an expression
            // may still evaluate to one: report it the same way, at the same place.
            let err = Error::new(ErrorKind::UndefinedError, "undefined value");
            let mut d = self.diagnose(err, expr, place, Some(ctx));
            d.title = format!("undefined variable `{}`", expr.trim());
            return Err(d);
        }
        Ok(v)
    }

    /// Evaluates a condition: the expression's truthiness.
    pub fn truthy(&self, src: &str, place: Place, ctx: &Value) -> Result<bool, Diagnostic> {
        Ok(self.eval(src, place, ctx)?.is_true())
    }

    /// Renders every string in a node tree. A string that is exactly one `{{ expression }}`
    /// keeps the expression's native type (a list stays a list, a number a number), as in
    /// Ansible; any other template renders to text.
    pub fn render_node(&self, node: &Node, ctx: &Value) -> Result<Node, Diagnostic> {
        match &node.kind {
            NodeKind::Scalar { text, style } => {
                if !is_template(text) {
                    return Ok(node.clone());
                }
                let place = Place::of(node);
                if let Some(expr) = single_expression(text) {
                    let v = self.eval(expr, place, ctx)?;
                    return Ok(value_to_node(&v, node.span, *style));
                }
                let out = self.render(text, place, ctx)?;
                Ok(Node::scalar(out, Style::Plain, node.span))
            }
            NodeKind::Seq(items) => Ok(Node {
                span: node.span,
                kind: NodeKind::Seq(
                    items
                        .iter()
                        .map(|n| self.render_node(n, ctx))
                        .collect::<Result<_, _>>()?,
                ),
            }),
            NodeKind::Map(entries) => Ok(Node {
                span: node.span,
                kind: NodeKind::Map(
                    entries
                        .iter()
                        .map(|(k, v)| Ok((self.render_node(k, ctx)?, self.render_node(v, ctx)?)))
                        .collect::<Result<_, Diagnostic>>()?,
                ),
            }),
        }
    }

    /// Compile-checks every string of a node tree, collecting all problems.
    pub fn check_node(&self, node: &Node, out: &mut Vec<Diagnostic>) {
        match &node.kind {
            NodeKind::Scalar { text, .. } => {
                if let Err(d) = self.check(text, Place::of(node)) {
                    out.push(d);
                }
            }
            NodeKind::Seq(items) => items.iter().for_each(|n| self.check_node(n, out)),
            NodeKind::Map(entries) => entries.iter().for_each(|(k, v)| {
                self.check_node(k, out);
                self.check_node(v, out);
            }),
        }
    }

    fn diagnose(&self, e: Error, src: &str, place: Place, ctx: Option<&Value>) -> Diagnostic {
        let line = e.line().unwrap_or(1);
        let range = e.range();
        let span = place.inner(src, line, range.clone());
        let snippet = range
            .clone()
            .and_then(|r| src.get(r.start..r.end.min(src.len())))
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        match e.kind() {
            ErrorKind::SyntaxError => {
                let detail = e.detail().unwrap_or("invalid syntax").to_string();
                Diagnostic::error(format!("template syntax error: {detail}"))
                    .at(span)
                    .label(detail)
                    .help("minijinja (Jinja2) syntax: `{{ expression }}`, `{% if … %}…{% endif %}`")
            }
            ErrorKind::UndefinedError => {
                let snippet = if snippet.is_empty() {
                    src.trim().to_string()
                } else {
                    widen(src, range.clone(), &snippet)
                };
                let name = snippet
                    .rsplit(['.', '['])
                    .next()
                    .unwrap_or(&snippet)
                    .trim_matches(|c: char| !c.is_alphanumeric() && c != '_')
                    .to_string();
                let mut d = Diagnostic::error(format!("undefined variable `{snippet}`"))
                    .at(span)
                    .label("not defined for this host");
                let known = ctx.map(context_names).unwrap_or_default();
                if let Some(s) = did_you_mean(&name, known.iter().map(String::as_str))
                    && s != name
                {
                    d = d.label(format!("did you mean `{s}`?"));
                }
                if let Some(rest) = snippet.strip_prefix("steps.") {
                    let id = rest.split('.').next().unwrap_or(rest);
                    return d.label("no result of this step yet").help(format!(
                        "a step reads `steps.{id}` only after step `{id}` ran: add `needs: [{id}]` (or move the step after it)"
                    ));
                }
                d.help("define it in the play's `vars`, the inventory, with `set`, or with `-e NAME=VALUE`")
            }
            ErrorKind::UnknownFilter => {
                Diagnostic::error(format!("unknown filter `{snippet}`"))
                    .at(span)
                    .label("no filter of this name")
                    .help("sortie's filters: quote, to_json, from_json, b64encode, b64decode, regex_replace, regex_search, basename, dirname, sha256, and minijinja's own")
            }
            _ => {
                let detail = e.detail().unwrap_or("").to_string();
                let title = if detail.starts_with("shell-injection guard") {
                    detail.clone()
                } else if detail.is_empty() {
                    format!("template error: {}", e.kind())
                } else {
                    format!("template error: {detail}")
                };
                Diagnostic::error(title).at(span).label(if snippet.is_empty() {
                    "in this template".to_string()
                } else {
                    format!("in `{snippet}`")
                })
            }
        }
    }
}

/// The whole dotted name around an error's range (`steps.kernel.stdout`, not `.kernel`).
fn widen(src: &str, range: Option<std::ops::Range<usize>>, snippet: &str) -> String {
    let Some(r) = range else {
        return snippet.to_string();
    };
    let name_char = |c: char| c.is_alphanumeric() || c == '_' || c == '.';
    let bytes_start = r.start.min(src.len());
    let mut start = bytes_start;
    while let Some(c) = src[..start].chars().next_back() {
        if !name_char(c) {
            break;
        }
        start -= c.len_utf8();
    }
    let mut end = r.end.min(src.len());
    while !src.is_char_boundary(end) {
        end -= 1;
    }
    while let Some(c) = src[end..].chars().next() {
        if !name_char(c) {
            break;
        }
        end += c.len_utf8();
    }
    if start >= end || !src.is_char_boundary(start) {
        return snippet.to_string();
    }
    src[start..end].trim_matches('.').to_string()
}

/// Names defined at the top level of a context (for "did you mean").
fn context_names(ctx: &Value) -> Vec<String> {
    ctx.try_iter()
        .map(|it| it.filter_map(|k| k.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// `{{ expr }}` → `expr`; anything else is taken as a bare expression.
fn strip_braces(src: &str) -> &str {
    single_expression(src).unwrap_or(src.trim())
}

/// The expression of a string that is exactly one `{{ … }}` and nothing else.
pub fn single_expression(src: &str) -> Option<&str> {
    let t = src.trim();
    let inner = t.strip_prefix("{{")?.strip_suffix("}}")?;
    let inner = inner.strip_prefix('-').unwrap_or(inner);
    let inner = inner.strip_suffix('-').unwrap_or(inner);
    if inner.contains("{{") || inner.contains("}}") || inner.contains("{%") {
        return None;
    }
    Some(inner.trim())
}

/// A template value as a YAML node (native types kept), placed at the template's span.
pub fn value_to_node(v: &Value, span: Span, style: Style) -> Node {
    let json = serde_json::to_value(v).unwrap_or(serde_json::Value::Null);
    match json {
        serde_json::Value::String(s) => {
            // A quoted YAML string stays a string; a plain one resolves like YAML would.
            let st = if style == Style::Quoted {
                Style::Quoted
            } else {
                Style::Plain
            };
            Node::scalar(s, st, span)
        }
        other => Node::from_json(&other, span),
    }
}

/// A minijinja value from JSON data.
pub fn json_to_value(v: &serde_json::Value) -> Value {
    Value::from(minijinja::value::Serde(v))
}

// ---------------------------------------------------------------------------------------------
// Filters
// ---------------------------------------------------------------------------------------------

/// POSIX-shell-safe quoting of one word.
pub fn shell_quote(s: &str) -> Result<String, Error> {
    shlex::try_quote(s).map(|c| c.into_owned()).map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            "cannot quote a NUL byte for the shell",
        )
    })
}

/// A `| quote`d value that would not be protected where it stands: the diagnostic, at the
/// expression that gave it when the command's text shows it (the `n`-th `quote` written).
fn quote_misplaced(e: crate::shell::SpliceError, src: &str, place: Place) -> Diagnostic {
    use crate::shell::SpliceError;
    let (n, label, title) = match e {
        SpliceError::InsideQuotes { n, quoting } => (
            n,
            format!("this value lands inside {}", quoting.describe()),
            "`| quote` does not protect a value inside quotes".to_string(),
        ),
        SpliceError::Mangled => (
            0,
            "quote's result was cut or changed".to_string(),
            "`| quote`'s result must reach the command whole".to_string(),
        ),
    };
    // The place of the n-th `quote` in the source, else of the whole command.
    let at = match src.match_indices("quote").nth(n) {
        Some((byte, _)) => {
            let line = src[..byte].matches('\n').count() + 1;
            place.inner(src, line, Some(byte..byte + "quote".len()))
        }
        None => place.span,
    };
    Diagnostic::error(title).at(at).label(label).help(
        "drop the quotes around `{{ … | quote }}`: quote adds its own (`echo {{ v | quote }}`, not `echo \"{{ v | quote }}\"`)",
    )
}

fn filter_quote(v: Value) -> Result<Value, Error> {
    let s = match v.as_str() {
        Some(s) => s.to_string(),
        None => v.to_string(),
    };
    Ok(Value::from_safe_string(shell_quote(&s)?))
}

fn filter_to_json(v: Value) -> Result<String, Error> {
    serde_json::to_string(&v).map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))
}

fn filter_from_json(s: &str) -> Result<Value, Error> {
    let j: serde_json::Value = serde_json::from_str(s)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("from_json: {e}")))?;
    Ok(Value::from(minijinja::value::Serde(&j)))
}

fn filter_b64encode(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

fn filter_b64decode(s: &str) -> Result<String, Error> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("b64decode: {e}")))?;
    String::from_utf8(bytes).map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            "b64decode: result is not UTF-8",
        )
    })
}

fn compile_regex(p: &str) -> Result<regex::Regex, Error> {
    regex::Regex::new(p)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("bad regex: {e}")))
}

fn filter_regex_replace(
    s: &str,
    pattern: &str,
    replacement: Option<&str>,
) -> Result<String, Error> {
    let re = compile_regex(pattern)?;
    // Ansible writes group references as `\1`; the regex crate as `${1}`.
    let rep = replacement.unwrap_or("");
    let backref = regex::Regex::new(r"\\(\d+)")
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
    let rep = backref.replace_all(rep, "$${$1}").into_owned();
    Ok(re.replace_all(s, rep.as_str()).into_owned())
}

fn filter_regex_search(s: &str, pattern: &str) -> Result<Value, Error> {
    let re = compile_regex(pattern)?;
    Ok(match re.find(s) {
        Some(m) => Value::from(m.as_str()),
        None => Value::from(()),
    })
}

fn filter_basename(s: &str) -> String {
    std::path::Path::new(s)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn filter_dirname(s: &str) -> String {
    std::path::Path::new(s)
        .parent()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn filter_sha256(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::register_source;
    use crate::yaml::parse;

    fn ctx() -> Value {
        json_to_value(&serde_json::json!({
            "version": "2.4.1",
            "ports": [80, 443],
            "evil": "x; rm -rf /",
            "host": {"name": "web1", "address": "10.0.0.1"}
        }))
    }

    #[test]
    fn renders_and_keeps_native_types() {
        let f = register_source("t.yml", "a: \"{{ ports }}\"\nb: v{{ version }}\n");
        let n = parse(f, "a: \"{{ ports }}\"\nb: v{{ version }}\n").expect("yaml");
        let r = templates().render_node(&n, &ctx()).expect("render");
        assert_eq!(
            r.to_json(),
            serde_json::json!({"a": [80, 443], "b": "v2.4.1"})
        );
    }

    #[test]
    fn undefined_variable_is_located_with_suggestion() {
        let text = "cmd: \"echo {{ versoin }}\"\n";
        let f = register_source("t.yml", text);
        let n = parse(f, text).expect("yaml");
        let v = n.get("cmd").expect("cmd");
        let d = templates()
            .render(v.as_str().unwrap_or(""), Place::of(v), &ctx())
            .expect_err("undefined");
        assert_eq!(d.title, "undefined variable `versoin`");
        assert_eq!(d.label, "did you mean `version`?");
        let s = d.span.expect("span");
        assert_eq!((s.line, s.col), (1, 15));
    }

    #[test]
    fn syntax_error_is_located_inside_the_string() {
        let text = "steps:\n  - ssh: \"echo {{ version }\"\n";
        let f = register_source("t.yml", text);
        let n = parse(f, text).expect("yaml");
        let v = n
            .get("steps")
            .and_then(|s| s.as_seq())
            .and_then(|s| s[0].get("ssh"))
            .expect("ssh");
        let d = templates()
            .check(v.as_str().unwrap_or(""), Place::of(v))
            .expect_err("syntax");
        assert!(d.title.starts_with("template syntax error"), "{}", d.title);
        assert_eq!(d.span.map(|s| s.line), Some(2));
    }

    #[test]
    fn shell_guard_refuses_unquoted_metacharacters() {
        let f = register_source("t.yml", "x");
        let place = Place {
            span: Span::file_start(f),
            style: Style::Plain,
        };
        let t = templates();
        let d = t
            .render_command("echo {{ evil }}", place, &ctx(), false)
            .expect_err("guard");
        assert!(d.title.contains("shell-injection guard"), "{}", d.title);
        assert_eq!(
            t.render_command("echo {{ evil | quote }}", place, &ctx(), false)
                .expect("quoted"),
            "echo 'x; rm -rf /'"
        );
        assert_eq!(
            t.render_command("echo {{ evil }}", place, &ctx(), true)
                .expect("unsafe"),
            "echo x; rm -rf /"
        );
        assert_eq!(
            t.render_command("echo {{ version }}", place, &ctx(), false)
                .expect("plain"),
            "echo 2.4.1"
        );
    }

    #[test]
    fn quote_gives_words_a_posix_shell_reads_back_exactly() {
        for word in [
            "plain",
            "two words",
            "it's",
            "$(rm -rf /)",
            "`x`",
            "a\nb",
            "*?[]",
            "",
            "-n",
            "é ü",
            "\\",
        ] {
            let q = shell_quote(word).expect("quotable");
            let out = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(format!("printf %s {q}"))
                .output()
                .expect("sh");
            assert_eq!(String::from_utf8_lossy(&out.stdout), word, "quoted as {q}");
        }
        assert!(shell_quote("nul\0byte").is_err());
    }

    #[test]
    fn filters() {
        let f = register_source("t.yml", "x");
        let place = Place {
            span: Span::file_start(f),
            style: Style::Plain,
        };
        let t = templates();
        let r = |s: &str| t.render(s, place, &ctx()).expect(s);
        assert_eq!(r("{{ 'a b' | b64encode }}"), "YSBi");
        assert_eq!(r("{{ 'YSBi' | b64decode }}"), "a b");
        assert_eq!(r("{{ '/a/b/c.txt' | basename }}"), "c.txt");
        assert_eq!(r("{{ '/a/b/c.txt' | dirname }}"), "/a/b");
        assert_eq!(
            r("{{ 'abc' | sha256 }}"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            r("{{ 'v1.2' | regex_replace('v(\\\\d)', 'x\\\\1') }}"),
            "x1.2"
        );
        assert_eq!(r("{{ ports | to_json }}"), "[80,443]");
        assert_eq!(r("{{ ('{\"a\": 1}' | from_json).a }}"), "1");
        assert_eq!(r("{{ 'a,b'.split(',') | length }}"), "2");
        assert_eq!(r("{{ host.name.startswith('web') }}"), "True");
    }
}
