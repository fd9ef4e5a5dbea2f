//! The shape of the source, held by tests: no module imports another that imports it back
//! (directly or around a loop), the engine below the command line, no source file over 800
//! lines of non-test code and no function over 100 lines. Reads `src/` as text.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::harness::repo;

/// One source file: its module path (`report::live`) and its non-test lines.
struct Source {
    module: String,
    path: PathBuf,
    lines: Vec<String>,
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read src")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The lines before the file's `#[cfg(test)]` module (tests sit at the bottom of each file).
fn non_test_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("#[cfg(test)]") {
            break;
        }
        out.push(line.to_string());
    }
    out
}

/// The product's modules (`src/`).
fn sources() -> Vec<Source> {
    sources_in(&repo().join("src"))
}

/// Every crate of the workspace, for the size rules: the product and its test lab.
fn all_sources() -> Vec<Source> {
    let mut out = sources();
    let lab = repo().join("lab").join("src");
    if lab.is_dir() {
        out.extend(sources_in(&lab));
    }
    out
}

fn sources_in(src: &Path) -> Vec<Source> {
    let src = src.to_path_buf();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files
        .into_iter()
        .filter(|p| !p.starts_with(src.join("bin")) && !p.ends_with("main.rs"))
        .map(|p| {
            let rel = p.strip_prefix(&src).expect("under src").with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|l| l == "mod") {
                parts.pop();
            }
            let module = if parts == ["lib"] {
                String::new()
            } else {
                parts.join("::")
            };
            let text = std::fs::read_to_string(&p).expect("read source");
            Source {
                module,
                path: p,
                lines: non_test_lines(&text),
            }
        })
        .collect()
}

/// Every `crate::a::b…` path a file names, resolved to the longest known module
/// (`crate::report::live::Event` → `report::live`); `super::x` resolved against the file.
fn references(s: &Source, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let parent: Vec<&str> = if s.path.ends_with("mod.rs") || s.module.is_empty() {
        s.module.split("::").collect()
    } else {
        let mut p: Vec<&str> = s.module.split("::").collect();
        p.pop();
        p
    };
    for line in &s.lines {
        let code = line.split("//").next().unwrap_or("");
        for (prefix, base) in [("crate::", Vec::new()), ("super::", parent.clone())] {
            let mut rest = code;
            while let Some(i) = rest.find(prefix) {
                let before = rest[..i].chars().last();
                rest = &rest[i + prefix.len()..];
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue;
                }
                let mut path: Vec<String> = base.iter().map(|x| x.to_string()).collect();
                path.retain(|x| !x.is_empty());
                let mut names = Vec::new();
                let tail = rest.trim_start_matches('{');
                for seg in tail.split("::") {
                    let name: String = seg
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if name.is_empty() {
                        break;
                    }
                    names.push(name.clone());
                    if name != seg {
                        break;
                    }
                }
                // `use crate::{a, b::c}`: each item of the group.
                if let Some(inner) = rest.strip_prefix('{') {
                    let group: String = inner.chars().take_while(|c| *c != '}').collect();
                    for item in group.split(',') {
                        let mut p = path.clone();
                        p.extend(
                            item.trim()
                                .split("::")
                                .map(|x| x.trim().to_string())
                                .filter(|x| !x.is_empty() && x != "{"),
                        );
                        if let Some(m) = longest_module(&p, modules) {
                            out.insert(m);
                        }
                    }
                    continue;
                }
                path.extend(names);
                if let Some(m) = longest_module(&path, modules) {
                    out.insert(m);
                }
            }
        }
    }
    out.remove(&s.module);
    out
}

fn longest_module(path: &[String], modules: &BTreeSet<String>) -> Option<String> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].join("::"))
        .find(|m| modules.contains(m))
}

fn is_ancestor(a: &str, b: &str) -> bool {
    a.is_empty() || b.starts_with(&format!("{a}::"))
}

/// The module graph at one level: `group` maps a module to its node (top-level module, or the
/// module itself among its siblings). Returns the edges.
fn edges(
    sources: &[Source],
    modules: &BTreeSet<String>,
    group: impl Fn(&str) -> Option<String>,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in sources {
        let Some(from) = group(&s.module) else {
            continue;
        };
        for r in references(s, modules) {
            if is_ancestor(&r, &s.module) || is_ancestor(&s.module, &r) {
                continue;
            }
            if let Some(to) = group(&r)
                && to != from
            {
                g.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    g
}

/// Every cycle found by breaking one edge of each in turn (bounded by the edge count).
fn all_cycles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut g = g.clone();
    let mut out = Vec::new();
    let edges: usize = g.values().map(BTreeSet::len).sum();
    for _ in 0..edges {
        let Some(c) = find_cycle(&g) else { break };
        out.push(c.join(" → "));
        let (a, b) = (&c[c.len() - 2], &c[c.len() - 1]);
        if let Some(s) = g.get_mut(a) {
            s.remove(b);
        }
    }
    out
}

/// One cycle of the graph, if it has any (depth-first search).
fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            match state.get(m.as_str()).copied().unwrap_or(0) {
                1 => {
                    let at = stack.iter().position(|x| x == m).unwrap_or(0);
                    let mut c = stack[at..].to_vec();
                    c.push(m.clone());
                    return Some(c);
                }
                0 => {
                    if let Some(c) = visit(m, g, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        if state.get(n.as_str()).copied().unwrap_or(0) == 0 {
            let mut stack = Vec::new();
            if let Some(c) = visit(n, g, &mut state, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

fn module_set(sources: &[Source]) -> BTreeSet<String> {
    sources.iter().map(|s| s.module.clone()).collect()
}

#[test]
fn top_level_modules_have_no_import_cycle() {
    let sources = sources();
    let modules = module_set(&sources);
    let g = edges(&sources, &modules, |m| {
        m.split("::")
            .next()
            .filter(|x| !x.is_empty())
            .map(str::to_string)
    });
    assert!(g.contains_key("exec"), "the graph was read: {g:?}");
    let cycles = all_cycles(&g);
    assert!(
        cycles.is_empty(),
        "import cycles between modules: {cycles:#?}"
    );
}

#[test]
fn sibling_modules_have_no_import_cycle() {
    let sources = sources();
    let modules = module_set(&sources);
    let folders: BTreeSet<String> = modules
        .iter()
        .filter_map(|m| m.rsplit_once("::").map(|(p, _)| p.to_string()))
        .collect();
    let mut cycles = Vec::new();
    for folder in folders {
        let g = edges(&sources, &modules, |m| {
            let rest = m.strip_prefix(&format!("{folder}::"))?;
            Some(format!(
                "{folder}::{}",
                rest.split("::").next().unwrap_or(rest)
            ))
        });
        cycles.extend(all_cycles(&g));
    }
    assert!(
        cycles.is_empty(),
        "import cycles between sibling modules: {cycles:#?}"
    );
}

#[test]
fn the_engine_knows_no_command_line() {
    let sources = sources();
    let modules = module_set(&sources);
    let below = [
        "exec",
        "conn",
        "steps",
        "report",
        "playbook",
        "inventory",
        "plan",
    ];
    let above = ["cli", "app"];
    let mut bad = Vec::new();
    for s in &sources {
        let top = s.module.split("::").next().unwrap_or("");
        if !below.contains(&top) {
            continue;
        }
        for r in references(s, &modules) {
            let rtop = r.split("::").next().unwrap_or("");
            if above.contains(&rtop) {
                bad.push(format!("{} uses {r}", s.module));
            }
        }
    }
    assert!(bad.is_empty(), "the engine must not see the CLI: {bad:?}");
}

#[test]
fn files_stay_under_800_lines_of_code() {
    let mut big = Vec::new();
    for s in all_sources() {
        let n = s.lines.len();
        if n > 800 {
            big.push(format!("{} ({n} lines)", s.path.display()));
        }
    }
    assert!(big.is_empty(), "split these files: {big:?}");
}

/// Functions of a file with their lengths: from the `fn` line to the line that closes its
/// body (braces counted outside strings and chars, roughly; good enough for our code).
fn function_lengths(lines: &[String]) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let t = lines[i].trim_start();
        let is_fn = [
            "fn ",
            "pub fn ",
            "async fn ",
            "pub async fn ",
            "pub(crate) fn ",
        ]
        .iter()
        .any(|p| t.starts_with(p))
            || t.starts_with("pub(crate) async fn ")
            || t.starts_with("const fn ")
            || t.starts_with("pub const fn ");
        if !is_fn {
            i += 1;
            continue;
        }
        let name: String = t
            .split("fn ")
            .nth(1)
            .unwrap_or("")
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let mut depth = 0i32;
        let mut opened = false;
        let mut j = i;
        'outer: while j < lines.len() {
            let mut in_str = false;
            let mut prev = ' ';
            let line = lines[j]
                .replace("'{'", "'_'")
                .replace("'}'", "'_'")
                .replace("'\"'", "'_'")
                .replace("\\\"", "_");
            for c in line.split("//").next().unwrap_or("").chars() {
                if c == '"' && prev != '\\' {
                    in_str = !in_str;
                }
                if !in_str {
                    if c == '{' {
                        depth += 1;
                        opened = true;
                    } else if c == '}' {
                        depth -= 1;
                    } else if c == ';' && !opened && depth == 0 {
                        // A declaration without a body (a trait method).
                        break 'outer;
                    }
                }
                prev = c;
            }
            if opened && depth <= 0 {
                break;
            }
            j += 1;
        }
        if opened {
            out.push((name, i + 1, j - i + 1));
        }
        i += 1;
    }
    out
}

#[test]
fn functions_stay_under_100_lines() {
    let mut long = Vec::new();
    let mut seen = 0;
    for s in all_sources() {
        for (name, line, len) in function_lengths(&s.lines) {
            seen += 1;
            if len > 100 {
                long.push(format!("{}:{line} {name} ({len} lines)", s.path.display()));
            }
        }
    }
    assert!(seen > 200, "functions were found ({seen})");
    assert!(long.is_empty(), "split these functions: {long:#?}");
}
