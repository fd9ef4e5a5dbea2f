//! From YAML text to a `Node` tree: saphyr-parser's events are folded into nodes by a stack of
//! open sequences and mappings, with anchors, aliases and `<<` merge keys resolved on the way.
//!
//! Input is the text of one registered file (the playbook, inventory and vars loaders read it);
//! the output is the document's root node, or the first problem as a `Diagnostic` (syntax
//! errors, duplicate keys, several documents, too deep nesting, alias bombs).

use saphyr_parser::{Event, Parser, ScalarStyle, Tag};
use std::borrow::Cow;

use super::{MAX_DEPTH, MAX_NODES, Node, NodeKind, Style};
use crate::diag::{Diagnostic, FileId, Span};

/// Parses one YAML document of a registered file into a tree. An empty document is a null node.
/// Duplicate keys, several documents, too deep nesting and alias bombs are diagnostics.
pub fn parse(file: FileId, text: &str) -> Result<Node, Diagnostic> {
    let mut b = Builder {
        file,
        stack: Vec::new(),
        anchors: Vec::new(),
        nodes: 0,
        root: None,
        docs: 0,
    };
    let mut parser = Parser::new_from_str(text);
    while let Some(ev) = parser.next_event() {
        match ev {
            Ok((event, span)) => {
                let sp = b.span(span);
                b.event(event, sp)?;
            }
            Err(e) => {
                let m = e.marker();
                let msg = e.info().to_string();
                return Err(Diagnostic::error(format!("invalid YAML: {msg}"))
                    .at(Span::point(file, m.line() as u32, m.col() as u32 + 1))
                    .label(yaml_hint(&msg))
                    .help("check the indentation and quoting around this place"));
            }
        }
    }
    Ok(b.root.unwrap_or_else(|| Node::null(Span::file_start(file))))
}

fn yaml_hint(msg: &str) -> String {
    if msg.contains("mapping values are not allowed") {
        "a `key: value` cannot start here; quote the value if it contains `: `".into()
    } else if msg.contains("tab") {
        "YAML indentation must use spaces, not tabs".into()
    } else {
        "here".into()
    }
}

/// A collection still being read: its start, its anchor (0 for none) and what it holds so far.
enum Frame {
    Seq {
        start: Span,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        start: Span,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
        /// Keys copied in by a `<<` merge: an explicit key later replaces them.
        merged: Vec<String>,
    },
}

struct Builder {
    file: FileId,
    stack: Vec<Frame>,
    anchors: Vec<(usize, Node)>,
    nodes: usize,
    root: Option<Node>,
    docs: usize,
}

impl Builder {
    fn span(&self, s: saphyr_parser::Span) -> Span {
        Span::new(
            self.file,
            s.start.line() as u32,
            s.start.col() as u32 + 1,
            s.end.line() as u32,
            s.end.col() as u32 + 1,
        )
    }

    fn count(&mut self, n: usize, at: Span) -> Result<(), Diagnostic> {
        self.nodes += n;
        if self.nodes > MAX_NODES {
            return Err(Diagnostic::error("YAML document is too large")
                .at(at)
                .label(format!("expands to more than {MAX_NODES} values"))
                .help("aliases that repeat other aliases multiply; write the data out instead"));
        }
        Ok(())
    }

    /// One parser event: each kind goes to the method that handles it.
    fn event(&mut self, ev: Event<'_>, sp: Span) -> Result<(), Diagnostic> {
        match ev {
            Event::DocumentStart(_) => self.document_start(sp),
            Event::Scalar(text, style, anchor, tag) => self.scalar(text, style, anchor, tag, sp),
            Event::SequenceStart(anchor, _) => self.open(
                Frame::Seq {
                    start: sp,
                    anchor,
                    items: Vec::new(),
                },
                sp,
            ),
            Event::MappingStart(anchor, _) => self.open(
                Frame::Map {
                    start: sp,
                    anchor,
                    entries: Vec::new(),
                    key: None,
                    merged: Vec::new(),
                },
                sp,
            ),
            Event::SequenceEnd | Event::MappingEnd => self.close(sp),
            Event::Alias(id) => self.alias(id, sp),
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => Ok(()),
        }
    }

    /// Counts documents: a file holds one.
    fn document_start(&mut self, sp: Span) -> Result<(), Diagnostic> {
        self.docs += 1;
        if self.docs > 1 {
            return Err(
                Diagnostic::error("more than one YAML document in this file")
                    .at(sp)
                    .label("a second document starts here")
                    .help(
                        "put each playbook or inventory in its own file, or write plays as a list",
                    ),
            );
        }
        Ok(())
    }

    fn scalar(
        &mut self,
        text: Cow<'_, str>,
        style: ScalarStyle,
        anchor: usize,
        tag: Option<Cow<'_, Tag>>,
        sp: Span,
    ) -> Result<(), Diagnostic> {
        self.count(1, sp)?;
        let style = match style {
            ScalarStyle::Plain => Style::Plain,
            ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => Style::Quoted,
            _ => Style::Block,
        };
        // An explicit `!!str` tag makes a plain scalar a string.
        let style = match (&tag, style) {
            (Some(t), Style::Plain) if t.suffix == "str" => Style::Quoted,
            (_, s) => s,
        };
        let node = Node::scalar(text.into_owned(), style, sp);
        self.remember(anchor, &node);
        self.push(node)
    }

    /// Starts a sequence or mapping, unless that would nest too deep.
    fn open(&mut self, frame: Frame, sp: Span) -> Result<(), Diagnostic> {
        self.depth_check(sp)?;
        self.stack.push(frame);
        Ok(())
    }

    /// Ends the innermost sequence or mapping: it becomes a node of its parent.
    fn close(&mut self, sp: Span) -> Result<(), Diagnostic> {
        let (start, anchor, last, kind) = match self.stack.pop() {
            Some(Frame::Seq {
                start,
                anchor,
                items,
            }) => (
                start,
                anchor,
                items.last().map(|n| n.span),
                NodeKind::Seq(items),
            ),
            Some(Frame::Map {
                start,
                anchor,
                entries,
                ..
            }) => (
                start,
                anchor,
                entries.last().map(|(_, v)| v.span),
                NodeKind::Map(entries),
            ),
            None => return Ok(()),
        };
        self.count(1, start)?;
        let node = Node {
            span: join(start, last, sp),
            kind,
        };
        self.remember(anchor, &node);
        self.push(node)
    }

    /// `*name`: a copy of the anchored node, placed at the alias (and counted in full).
    fn alias(&mut self, id: usize, sp: Span) -> Result<(), Diagnostic> {
        let found = self
            .anchors
            .iter()
            .rev()
            .find(|(a, _)| *a == id)
            .map(|(_, n)| n.clone());
        let Some(mut n) = found else {
            return Err(Diagnostic::error("unknown YAML alias")
                .at(sp)
                .label("no anchor of this name was defined before")
                .help("define the anchor (`&name`) before using the alias (`*name`)"));
        };
        let size = node_count(&n);
        self.count(size, sp)?;
        n.span = sp;
        self.push(n)
    }

    /// Keeps a node under its anchor (`&name`; 0 is no anchor) for later aliases.
    fn remember(&mut self, anchor: usize, node: &Node) {
        if anchor > 0 {
            self.anchors.push((anchor, node.clone()));
        }
    }

    fn depth_check(&self, sp: Span) -> Result<(), Diagnostic> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(Diagnostic::error("YAML nesting is too deep")
                .at(sp)
                .label(format!("more than {MAX_DEPTH} levels deep"))
                .help("flatten the structure"));
        }
        Ok(())
    }

    /// A finished node: the root, an item of the open sequence, or a key or value of the open
    /// mapping.
    fn push(&mut self, node: Node) -> Result<(), Diagnostic> {
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                key,
                merged,
                ..
            }) => match key.take() {
                None => *key = Some(node),
                Some(k) if is_merge_key(&k) => merge(entries, merged, &node)?,
                Some(k) => insert(entries, merged, k, node)?,
            },
        }
        Ok(())
    }
}

/// A plain `<<` key: `<<: *anchor` merges another mapping in.
fn is_merge_key(k: &Node) -> bool {
    k.as_str() == Some("<<")
        && matches!(
            k.kind,
            NodeKind::Scalar {
                style: Style::Plain,
                ..
            }
        )
}

/// `<<: *anchor` (or a list of anchors): copies in the entries the mapping does not set itself.
fn merge(
    entries: &mut Vec<(Node, Node)>,
    merged: &mut Vec<String>,
    value: &Node,
) -> Result<(), Diagnostic> {
    let sources: Vec<&Node> = match &value.kind {
        NodeKind::Map(_) => vec![value],
        NodeKind::Seq(s) => s.iter().collect(),
        _ => Vec::new(),
    };
    if sources.is_empty() || sources.iter().any(|s| s.as_map().is_none()) {
        return Err(Diagnostic::error("a merge key `<<` needs a mapping")
            .at(value.span)
            .label(format!("found {}", value.describe()))
            .help("write `<<: *anchor` where the anchor names a mapping"));
    }
    for src in sources {
        for (mk, mv) in src.as_map().unwrap_or(&[]) {
            let exists = entries.iter().any(|(ek, _)| ek.key_text() == mk.key_text());
            if !exists {
                merged.push(mk.key_text());
                entries.push((mk.clone(), mv.clone()));
            }
        }
    }
    Ok(())
}

/// An explicit `key: value`: replaces a merged key of that name, refuses a duplicate.
fn insert(
    entries: &mut Vec<(Node, Node)>,
    merged: &mut Vec<String>,
    k: Node,
    value: Node,
) -> Result<(), Diagnostic> {
    let text = k.key_text();
    if let Some(pos) = merged.iter().position(|m| *m == text) {
        merged.remove(pos);
        entries.retain(|(ek, _)| ek.key_text() != text);
    }
    if let Some((first, _)) = entries.iter().find(|(ek, _)| ek.kind == k.kind) {
        return Err(
            Diagnostic::error(format!("duplicate key `{}`", k.key_text()))
                .at(k.span)
                .label("defined again here")
                .also(first.span, "first defined here")
                .help("remove one of them; YAML mappings cannot repeat a key"),
        );
    }
    entries.push((k, value));
    Ok(())
}
fn node_count(n: &Node) -> usize {
    match &n.kind {
        NodeKind::Scalar { .. } => 1,
        NodeKind::Seq(s) => 1 + s.iter().map(node_count).sum::<usize>(),
        NodeKind::Map(m) => {
            1 + m
                .iter()
                .map(|(k, v)| node_count(k) + node_count(v))
                .sum::<usize>()
        }
    }
}

fn join(start: Span, last: Option<Span>, end: Span) -> Span {
    let e = last.unwrap_or(end);
    let (el, ec) = if (end.line, end.col) > (start.line, start.col) && last.is_none() {
        (end.end_line, end.end_col)
    } else {
        (e.end_line, e.end_col)
    };
    Span::new(start.file, start.line, start.col, el, ec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::register_source;

    fn p(text: &str) -> Node {
        let f = register_source("t.yml", text);
        parse(f, text).expect("parses")
    }

    #[test]
    fn duplicate_keys_and_merge_keys() {
        let f = register_source("d.yml", "a: 1\nb: 2\na: 3\n");
        let d = parse(f, "a: 1\nb: 2\na: 3\n").expect_err("dup");
        assert_eq!(d.title, "duplicate key `a`");
        let n = p("base: &b { x: 1, y: 2 }\nother:\n  <<: *b\n  y: 3\n");
        let other = n.get("other").expect("other");
        assert_eq!(other.to_json(), serde_json::json!({"y": 3, "x": 1}));
    }
    #[test]
    fn limits_depth_and_alias_bombs() {
        let deep = "[".repeat(500);
        let f = register_source("deep.yml", deep.clone());
        assert!(parse(f, &deep).is_err());
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = i - 1;
            bomb.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        let f = register_source("bomb.yml", bomb.clone());
        let e = parse(f, &bomb).expect_err("bomb refused");
        assert_eq!(e.title, "YAML document is too large");
    }
}
