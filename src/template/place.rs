//! Where a template's text stands in its file: a `Place` is the span and style of the YAML
//! scalar holding a template, and maps a byte range of the template's text (from a minijinja
//! error or the guard) back to the file's line and column — through a quoted scalar's escapes
//! (`\"`, `\x41`, `''`) and a block scalar's indentation — so carets land on the expression.

use crate::diag::Span;
use crate::yaml::{Node, NodeKind, Style};

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
    pub(super) fn inner(
        &self,
        src: &str,
        line: usize,
        range: Option<std::ops::Range<usize>>,
    ) -> Span {
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
                let from = src[..start].chars().count();
                if let Some(at) = self.quoted_positions(src.chars().count())
                    && let Some(&(l, c)) = at.get(from)
                {
                    let end = at
                        .get(from + len as usize)
                        .filter(|(el, _)| *el == l)
                        .map(|(_, ec)| *ec)
                        .unwrap_or(c + len.max(1));
                    return Span::new(self.span.file, l, c, l, end.max(c + 1));
                }
                if line > 1 {
                    self.span.offset(line as u32, col, len)
                } else {
                    self.span.offset(1, col + 1, len)
                }
            }
            // A block scalar's span starts at its first line's first character, after the
            // indentation its lines share.
            Style::Block => {
                let l = self.span.line + line as u32 - 1;
                let c = self.span.col + col - 1;
                Span::new(self.span.file, l, c, l, c + len.max(1))
            }
            Style::Plain => self.span.offset(line as u32, col, len),
        }
    }

    /// The file line and column of every character of a quoted scalar's text (`chars` of
    /// them), read from the source through escapes (`\"`, `\x41`, `''`), escaped line breaks
    /// and folded lines. `None` when the source does not read back to that many characters.
    fn quoted_positions(&self, chars: usize) -> Option<Vec<(u32, u32)>> {
        let file = self.span.file;
        let mut ln = self.span.line;
        let mut line: Vec<char> = crate::diag::source_line(file, ln)?.chars().collect();
        let open = (self.span.col as usize).checked_sub(1)?;
        let quote = *line.get(open).filter(|q| matches!(q, '"' | '\''))?;
        let blank = |c: char| c == ' ' || c == '\t';
        let mut at = Vec::with_capacity(chars);
        let mut j = open + 1;
        while at.len() <= chars {
            let Some(&c) = line.get(j) else {
                // A line break folds into a space, or into a newline per blank line after it.
                let (fold_ln, fold_col) = (ln, j as u32 + 1);
                let mut blanks = 0;
                loop {
                    ln += 1;
                    line = crate::diag::source_line(file, ln)?.chars().collect();
                    j = line.iter().take_while(|c| blank(**c)).count();
                    if j < line.len() {
                        break;
                    }
                    blanks += 1;
                    at.push((ln, 1));
                }
                if blanks == 0 {
                    at.push((fold_ln, fold_col));
                }
                continue;
            };
            let width = match (quote, c, line.get(j + 1)) {
                (q, c, _) if c == q && !(q == '\'' && line.get(j + 1) == Some(&'\'')) => break,
                ('\'', '\'', _) => 2,
                ('"', '\\', None) => {
                    // An escaped line break: nothing, not even the next line's indentation.
                    ln += 1;
                    line = crate::diag::source_line(file, ln)?.chars().collect();
                    j = line.iter().take_while(|c| blank(**c)).count();
                    continue;
                }
                ('"', '\\', Some('x')) => 4,
                ('"', '\\', Some('u')) => 6,
                ('"', '\\', Some('U')) => 10,
                ('"', '\\', Some(_)) => 2,
                (_, c, _) if blank(c) && line[j..].iter().all(|c| blank(*c)) => {
                    // Trailing blanks before a line break are not part of the text.
                    j = line.len();
                    continue;
                }
                _ => 1,
            };
            at.push((ln, j as u32 + 1));
            j += width;
        }
        (at.len() == chars).then_some(at)
    }
}
