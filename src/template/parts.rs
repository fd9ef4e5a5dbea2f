//! The parts of a template as the check-time shell-injection guard needs them: literal text
//! and `{{ … }}` expressions in order, with each expression's range and whether its last
//! filter is `quote`. A small reading of minijinja's syntax (string literals, brackets,
//! comments, `{{-`/`-}}` trimming); templates with statements are not read here.

/// A part of a template without statements: literal text, or a `{{ … }}` expression (its
/// range inside the braces, and whether its last filter is `quote`).
pub(super) enum Part {
    Text(std::ops::Range<usize>),
    Expr {
        range: std::ops::Range<usize>,
        quoted: bool,
    },
}

/// The literal text and expressions of a template, in order (comments dropped, `{{-`/`-}}`
/// trimming applied). `None` when it cannot be followed; minijinja reports why.
pub(super) fn template_parts(src: &str) -> Option<Vec<Part>> {
    let b = src.as_bytes();
    let mut parts = Vec::new();
    let (mut i, mut text_start, mut trim_next) = (0, 0, false);
    while let Some(off) = src[i..].find('{') {
        let at = i + off;
        let comment = match b.get(at + 1) {
            Some(b'{') => false,
            Some(b'#') => true,
            _ => {
                i = at + 1;
                continue;
            }
        };
        let mut inner = at + 2;
        let mut text = trimmed(src, text_start..at, trim_next, false);
        if matches!(b.get(inner), Some(b'-' | b'+')) {
            text = trimmed(src, text, false, b[inner] == b'-');
            inner += 1;
        }
        parts.push(Part::Text(text));
        let close = if comment {
            inner + src[inner..].find("#}")?
        } else {
            inner + expression_end(&src[inner..])?
        };
        trim_next = close > inner && b[close - 1] == b'-';
        let end = if trim_next { close - 1 } else { close };
        if !comment {
            let range = trimmed(src, inner..end, true, true);
            let quoted = last_filter_is_quote(&src[range.clone()]);
            parts.push(Part::Expr { range, quoted });
        }
        i = close + 2;
        text_start = i;
    }
    parts.push(Part::Text(trimmed(
        src,
        text_start..src.len(),
        trim_next,
        false,
    )));
    Some(parts)
}

/// `range` of `src` without leading and/or trailing whitespace.
fn trimmed(
    src: &str,
    range: std::ops::Range<usize>,
    start: bool,
    end: bool,
) -> std::ops::Range<usize> {
    let s = &src[range.clone()];
    let lead = if start {
        s.len() - s.trim_start().len()
    } else {
        0
    };
    let trail = if end { s.len() - s.trim_end().len() } else { 0 };
    let from = range.start + lead;
    from..(range.end - trail).max(from)
}

/// Calls `f` with each character of an expression outside string literals and its bracket
/// depth; stops when `f` returns true, giving that character's byte offset.
fn scan_expression(expr: &str, mut f: impl FnMut(usize, char, u32) -> bool) -> Option<usize> {
    let (mut depth, mut string, mut escape) = (0u32, None, false);
    for (i, c) in expr.char_indices() {
        if let Some(q) = string {
            match c {
                _ if escape => escape = false,
                '\\' => escape = true,
                c if c == q => string = None,
                _ => {}
            }
            continue;
        }
        if f(i, c, depth) {
            return Some(i);
        }
        match c {
            '\'' | '"' => string = Some(c),
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// Where the `}}` closing an expression starts.
fn expression_end(rest: &str) -> Option<usize> {
    scan_expression(rest, |i, c, depth| {
        c == '}' && depth == 0 && rest[i..].starts_with("}}")
    })
}

/// Whether an expression's result is its last filter's, and that filter is `quote`.
fn last_filter_is_quote(expr: &str) -> bool {
    let mut last = None;
    scan_expression(expr, |i, c, depth| {
        if c == '|' && depth == 0 {
            last = Some(i);
        }
        false
    });
    last.is_some_and(|i| matches!(expr[i + 1..].trim(), "quote" | "quote()"))
}
