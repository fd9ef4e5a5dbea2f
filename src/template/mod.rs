//! Templating: the one minijinja environment (strict undefined, no auto-escape) with sortie's
//! filters, and the functions that compile-check, render and evaluate the templates found in
//! playbooks. Template text and its `Span` come from YAML nodes; the context (vars, `host`,
//! `steps`, `item`, `env`, `run`) comes from the runner; errors come back as `Diagnostic`s
//! placed at the template's own line and column inside the YAML file.

use std::sync::OnceLock;

use minijinja::value::Value;
use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior};

use crate::diag::{Diagnostic, Span, did_you_mean};
use crate::shell;
use crate::yaml::{Node, NodeKind, Style, is_template};

mod filters;
mod names;
mod parts;
mod place;

pub use filters::shell_quote;
use filters::*;
use parts::{Part, template_parts};
pub use place::Place;

/// Stands for each value in a command's first rendering (a command cannot hold a NUL byte).
const MARK: char = '\0';

/// How the command environment's formatter writes values, for the render under way on this
/// thread: the guard renders a command once recording its values, and again only to place a
/// refusal at the expression that produced the refused value.
enum GuardMode {
    /// Values as they are.
    Off,
    /// A `MARK` per value; the values kept in order, with whether `| quote` made each.
    Record(Vec<(String, bool)>),
    /// Values as they are, failing at value `at` with this message.
    FailAt {
        at: usize,
        seen: usize,
        message: String,
    },
}

thread_local! {
    static GUARD: std::cell::RefCell<GuardMode> = const { std::cell::RefCell::new(GuardMode::Off) };
}

/// Runs `f` with the command formatter in `mode`; gives back what `f` returned and the mode.
fn with_guard<T>(mode: GuardMode, f: impl FnOnce() -> T) -> (T, GuardMode) {
    let before = GUARD.replace(mode);
    let out = f();
    (out, GUARD.replace(before))
}

const UNCHECKABLE: &str = "shell-injection guard: a value holds a NUL byte or text built from other values (a `{% set %}` or `{% filter %}` block, a macro), which the guard cannot check";

/// Whether `text` is exactly what `| quote` makes of some word.
fn is_quote_output(text: &str) -> bool {
    matches!(shlex::split(text).as_deref(), Some([word]) if shell_quote(word).is_ok_and(|q| q == text))
}

/// The template engine of a run: one environment for ordinary strings and one for shell
/// commands, which refuses unquoted values holding shell metacharacters.
pub struct Templates {
    env: Environment<'static>,
    cmd_env: Environment<'static>,
    /// For `check`: renders a template with no variables (undefined chains to undefined) to
    /// find what costs more than the run allows — fuel, recursion, sizes — before any host.
    dry_env: Environment<'static>,
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
        cmd_env.set_formatter(|out, _state, value| {
            let text = value.to_string();
            GUARD.with_borrow_mut(|mode| match mode {
                GuardMode::Off => out.write_str(&text).map_err(Error::from),
                GuardMode::Record(values) => {
                    if text.contains(MARK) {
                        return Err(Error::new(ErrorKind::InvalidOperation, UNCHECKABLE));
                    }
                    let quoted = value.is_safe() && is_quote_output(&text);
                    values.push((text, quoted));
                    out.write_str("\0").map_err(Error::from)
                }
                GuardMode::FailAt { at, seen, message } => {
                    if *seen == *at {
                        return Err(Error::new(ErrorKind::InvalidOperation, message.clone()));
                    }
                    *seen += 1;
                    out.write_str(&text).map_err(Error::from)
                }
            })
        });
        let mut dry_env = base_env();
        dry_env.set_undefined_behavior(UndefinedBehavior::Chainable);
        Templates {
            env,
            cmd_env,
            dry_env,
        }
    }

    /// Compiles a template without rendering it: syntax errors become located diagnostics.
    pub fn check(&self, src: &str, place: Place) -> Result<(), Diagnostic> {
        if !is_template(src) {
            return Ok(());
        }
        let env = Environment::new();
        env.template_from_str(src)
            .map(|_| ())
            .map_err(|e| self.diagnose(e, src, place, None))?;
        if let Some(d) = names::unknown_name(&self.env, src, 0, place) {
            return Err(d);
        }
        match self.dry_env.render_str(src, minijinja::context! {}) {
            Err(e) if is_costly(&e) => Err(self.costly(e, src, place)),
            _ => Ok(()),
        }
    }

    /// A template that passed a limit at check time: where, and what to do about it.
    fn costly(&self, e: Error, src: &str, place: Place) -> Diagnostic {
        let mut d = self.diagnose(e, src, place, None);
        d.title = format!(
            "this template does more work than sortie allows: {}",
            d.title
        );
        d.help(
            "a template is rendered for every host: keep loops and repeats small \
             (limits: minijinja fuel 10,000,000, recursion 200, 100 MB per repeat)",
        )
    }

    /// Compiles an expression (`when`, `until`, `that`, `changed_when`) without evaluating it.
    pub fn check_expr(&self, src: &str, place: Place) -> Result<(), Diagnostic> {
        let expr = strip_braces(src);
        self.env
            .compile_expression(expr)
            .map(|_| ())
            .map_err(|e| self.diagnose(e, expr, place, None))?;
        let wrapped = format!("{{{{ {expr} }}}}");
        if let Some(d) = names::unknown_name(&self.env, &wrapped, 3, place) {
            return Err(d);
        }
        let cost = self
            .dry_env
            .compile_expression(expr)
            .and_then(|x| x.eval(minijinja::context! {}));
        match cost {
            Err(e) if is_costly(&e) => Err(self.costly(e, expr, place)),
            _ => Ok(()),
        }
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

    /// Renders a shell command with the injection guard on (unless `unsafe_shell`): every
    /// value is judged by the shell context it lands in (`shell`), and the first refused one
    /// is reported at its expression.
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
        let uncheckable = || {
            Diagnostic::error(UNCHECKABLE)
                .at(place.span)
                .label("in this command")
                .help("write each value's expression where the command uses it, passed through `| quote`")
        };
        if src.contains(MARK) {
            return Err(uncheckable());
        }
        let (rendered, mode) = with_guard(GuardMode::Record(Vec::new()), || {
            self.cmd_env.render_str(src, ctx)
        });
        let rendered = rendered.map_err(|e| {
            let d = self.diagnose(e, src, place, Some(ctx));
            if d.title == UNCHECKABLE {
                d.help("write the expression where the command uses it, passed through `| quote`")
            } else {
                d
            }
        })?;
        let GuardMode::Record(values) = mode else {
            return Err(uncheckable());
        };
        let texts: Vec<&str> = rendered.split(MARK).collect();
        if texts.len() != values.len() + 1 {
            return Err(uncheckable());
        }
        let mut pieces = Vec::with_capacity(texts.len() + values.len());
        for (i, t) in texts.iter().enumerate() {
            pieces.push(shell::Piece::Text(t));
            if let Some((text, quoted)) = values.get(i) {
                pieces.push(shell::Piece::Value {
                    text,
                    quoted: *quoted,
                });
            }
        }
        if let Some(v) = shell::check(&pieces).first() {
            let value = values.get(v.index).map(|x| x.0.as_str()).unwrap_or("");
            return Err(self.refuse(src, place, ctx, v, value));
        }
        Ok(pieces
            .iter()
            .map(|p| match p {
                shell::Piece::Text(t) | shell::Piece::Value { text: t, .. } => *t,
            })
            .collect())
    }

    /// The diagnostic of a refused value, placed at the expression that produced it (found
    /// by rendering again, failing at that value).
    fn refuse(
        &self,
        src: &str,
        place: Place,
        ctx: &Value,
        v: &shell::Verdict,
        value: &str,
    ) -> Diagnostic {
        let title = v.title(value);
        let mode = GuardMode::FailAt {
            at: v.index,
            seen: 0,
            message: title.clone(),
        };
        let (again, _) = with_guard(mode, || self.cmd_env.render_str(src, ctx));
        let d = match again {
            Err(e) => self.diagnose(e, src, place, Some(ctx)),
            Ok(_) => Diagnostic::error(title.clone()).at(place.span),
        };
        Diagnostic {
            title,
            label: v.label(),
            help: Some(v.help()),
            ..d
        }
    }

    /// The guard's verdicts that a command's text alone decides, before anything runs:
    /// `| quote` where its quotes cannot protect the value (inside quotes, backticks, `${…}`,
    /// a here-document, after a backslash) and a value written as a here-document's
    /// delimiter. Templates with statements (`{% … %}`) are left to the run-time guard.
    pub fn check_command(&self, src: &str, place: Place) -> Vec<Diagnostic> {
        if !is_template(src) || src.contains("{%") {
            return Vec::new();
        }
        let Some(parts) = template_parts(src) else {
            return Vec::new();
        };
        let mut exprs = Vec::new();
        let pieces: Vec<shell::Piece<'_>> = parts
            .iter()
            .map(|p| match p {
                Part::Text(r) => shell::Piece::Text(&src[r.clone()]),
                Part::Expr { range, quoted } => {
                    exprs.push(range.clone());
                    let text = if *quoted { "'\u{E000}'" } else { "\u{E000}" };
                    shell::Piece::Value {
                        text,
                        quoted: *quoted,
                    }
                }
            })
            .collect();
        shell::check(&pieces)
            .into_iter()
            .filter(shell::Verdict::is_static)
            .filter_map(|v| {
                let range = exprs.get(v.index)?.clone();
                let line = src[..range.start].matches('\n').count() + 1;
                Some(
                    Diagnostic::error(v.title(""))
                        .at(place.inner(src, line, Some(range)))
                        .label(v.label())
                        .help(v.help()),
                )
            })
            .collect()
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

/// Whether a render failed on a limit (fuel, recursion, sizes) rather than on its data.
fn is_costly(e: &Error) -> bool {
    if e.kind() == ErrorKind::OutOfFuel {
        return true;
    }
    let text = e.to_string();
    ["recursion limit", "too large", "too many elements"]
        .iter()
        .any(|m| text.contains(m))
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

    /// Commands with a value in every shell context, each value plain (`V`) and through
    /// `| quote` (`Q`), against payloads that try to create a file: whatever the guard lets
    /// through, run by dash and by bash, never creates it.
    #[test]
    fn no_payload_gets_past_the_guard_in_any_context() {
        let dir = tempfile::tempdir().expect("tmp");
        let canary = dir.path().join("pwned");
        let c = canary.display().to_string();
        let payloads = [
            format!("$(touch {c})"),
            format!("`touch {c}`"),
            format!("\"$(touch {c})\""),
            format!("'; touch {c}; '"),
            format!("\"; touch {c}; \""),
            format!("; touch {c}"),
            format!("\ntouch {c}\n"),
            format!("a\\'; touch {c}; echo \\'"),
            format!("x' ; touch {c} ; echo 'y"),
            "\\".to_string(),
            format!("EOF\ntouch {c}\nEOF"),
            format!("\\`touch {c}\\`"),
            format!(") ; touch {c} ; ("),
            format!("}}; touch {c}; {{"),
            format!("x[$(touch {c})]"),
            format!("`; touch {c}; `"),
        ];
        let commands = [
            "echo V",
            "echo \"V\"",
            "echo 'V'",
            "echo \\V",
            "echo $V",
            "echo pre-V-post",
            "echo \"$(echo V)\"",
            "echo $(echo V)",
            "echo `echo V`",
            "echo \"`echo V`\"",
            "echo ${x:-V}",
            "echo \"${x:-V}\"",
            "echo $(( V ))",
            "echo hi # V",
            "echo a V#V",
            "cat <<EOF\nV\nEOF",
            "cat <<'EOF'\nV\nEOF",
            "cat <<V\nx\nV",
            "cat <<<V",
            "echo $'a' V",
            "echo $'it\\'s' V",
            "x=V; echo \"$x\"",
            "printf '%s\\n' V | cat",
            "case V in *) echo;; esac",
            "echo $(case a in a) echo V;; esac)",
            "{% if true %}echo \"V\"{% endif %}",
            "{% for i in [1] %}echo 'V' {% endfor %}",
        ];
        let f = register_source("t.yml", "x");
        let place = Place {
            span: Span::file_start(f),
            style: Style::Plain,
        };
        let shells: Vec<&str> = ["/bin/dash", "/bin/bash", "/bin/sh"]
            .into_iter()
            .filter(|s| std::path::Path::new(s).exists())
            .collect();
        let mut ran = 0;
        for tpl in commands {
            for (slot, filter) in [("{{ v }}", ""), ("{{ v | quote }}", " | quote")] {
                let src = tpl.replace('V', slot);
                for p in &payloads {
                    let ctx = json_to_value(&serde_json::json!({ "v": p }));
                    let Ok(cmd) = templates().render_command(&src, place, &ctx, false) else {
                        continue;
                    };
                    for sh in &shells {
                        let _ = std::process::Command::new(sh)
                            .arg("-c")
                            .arg(&cmd)
                            .current_dir(dir.path())
                            .stdin(std::process::Stdio::null())
                            .output()
                            .expect("shell");
                        ran += 1;
                        assert!(
                            !canary.exists(),
                            "{sh} ran the payload {p:?}{filter} in {tpl:?} as {cmd:?}"
                        );
                    }
                }
            }
        }
        assert!(ran > 100, "only {ran} commands passed the guard");
    }

    #[test]
    fn safe_forms_keep_working_and_quote_in_quotes_is_refused() {
        let f = register_source("t.yml", "x");
        let place = Place {
            span: Span::file_start(f),
            style: Style::Plain,
        };
        let ctx = json_to_value(&serde_json::json!({"v": "$(touch x)", "w": "plain words"}));
        let t = templates();
        let ok = |src: &str| t.render_command(src, place, &ctx, false);
        assert_eq!(ok("echo {{ v | quote }}").expect("ok"), "echo '$(touch x)'");
        assert_eq!(
            ok("echo \"$(echo {{ v | quote }})\" '{{ w }}' \"{{ w }}\"").expect("ok"),
            "echo \"$(echo '$(touch x)')\" 'plain words' \"plain words\""
        );
        assert_eq!(
            ok("echo \"{{ v }}\"").expect_err("raw").title,
            "shell-injection guard: `$(touch x)` contains shell metacharacters"
        );
        for (src, title) in [
            ("echo \"{{ v | quote }}\"", "inside double quotes"),
            ("echo '{{ v | quote }}'", "inside single quotes"),
            ("echo `echo {{ v | quote }}`", "inside backticks"),
            ("echo \\{{ v | quote }}", "after a backslash"),
            ("cat <<EOF\n{{ w | quote }}\nEOF", "in a here-document"),
        ] {
            let d = ok(src).expect_err(src);
            assert_eq!(
                d.title,
                format!("shell-injection guard: `| quote` does not protect a value {title}")
            );
            assert!(d.help.is_some_and(|h| !h.is_empty()));
        }
        // `| safe` is not `| quote`: only quote's own output counts as quoted.
        assert!(ok("echo {{ v | safe }}").is_err());
        assert_eq!(
            t.render_command("echo \"{{ v | quote }}\"", place, &ctx, true)
                .expect("unsafe_shell"),
            "echo \"'$(touch x)'\""
        );
    }

    #[test]
    fn check_refuses_quote_where_it_cannot_protect_at_its_place() {
        let text = "a: \"echo \\\"{{ v | quote }}\\\" {{ w | quote }} '{{ x|quote }}'\"\n";
        let f = register_source("t.yml", text);
        let n = parse(f, text).expect("yaml");
        let v = n.get("a").expect("a");
        let ds = templates().check_command(v.as_str().unwrap_or(""), Place::of(v));
        let at: Vec<(u32, u32, u32)> = ds
            .iter()
            .filter_map(|d| d.span.map(|s| (s.line, s.col, s.end_col)))
            .collect();
        // Columns in the file, through the `\"` escapes.
        assert_eq!(at, [(1, 15, 24), (1, 50, 57)]);
        assert!(
            ds[0].title.ends_with("inside double quotes"),
            "{}",
            ds[0].title
        );
        assert!(
            ds[1].title.ends_with("inside single quotes"),
            "{}",
            ds[1].title
        );
        // Statements are left to the run-time guard; a plain `{{ v | quote }}` is fine.
        let t = templates();
        assert!(
            t.check_command("{% if a %}'{{ v | quote }}'{% endif %}", Place::of(v))
                .is_empty()
        );
        assert!(
            t.check_command("echo {{ v | quote }} {{- w }}", Place::of(v))
                .is_empty()
        );
        assert!(
            t.check_command(
                "echo {{ {'a': {'b': 1}} | quote }} {# '{{ x }}' #}",
                Place::of(v)
            )
            .is_empty()
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
