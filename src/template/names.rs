//! Filter and test names checked when a playbook is read: minijinja looks a filter or a test up
//! only when it runs, so `sortie check` compiles each template and reads the names its
//! compiled instructions apply (`ApplyFilter`, `PerformTest`), asking the run's own
//! environment whether it has each one. Input: template text and its `Place`, from
//! `Templates::check` and `check_expr`; output: located diagnostics, as the run would give.

use std::collections::HashMap;
use std::sync::Mutex;

use minijinja::machinery::{self, Instruction, Instructions};
use minijinja::{Environment, ErrorKind};

use super::Place;
use crate::diag::{Diagnostic, did_you_mean};

/// Known names per kind, probed once each (the environment never changes).
static KNOWN: Mutex<Option<HashMap<(bool, String), bool>>> = Mutex::new(None);

/// Whether `env` has a filter (`filter`) or a test (`!filter`) called `name`: an expression
/// applying it to `none` fails with "unknown filter/test" only when it does not.
fn known(env: &Environment<'static>, name: &str, filter: bool) -> bool {
    let key = (filter, name.to_string());
    if let Ok(guard) = KNOWN.lock()
        && let Some(&k) = guard.as_ref().and_then(|m| m.get(&key))
    {
        return k;
    }
    let expr = if filter {
        format!("none | {name}")
    } else {
        format!("none is {name}")
    };
    let missing = if filter {
        ErrorKind::UnknownFilter
    } else {
        ErrorKind::UnknownTest
    };
    let k = match env.compile_expression(&expr) {
        Ok(e) => !matches!(e.eval(()), Err(err) if err.kind() == missing),
        // Not an identifier minijinja accepts here: the syntax check reports the template.
        Err(_) => true,
    };
    if let Ok(mut guard) = KNOWN.lock() {
        guard.get_or_insert_with(HashMap::new).insert(key, k);
    }
    k
}

/// The first filter or test in `src` that `env` does not have, as a diagnostic. `skip` bytes
/// at the start of `src` are a wrapper (`{{ ` around an expression) the place does not hold.
pub(super) fn unknown_name(
    env: &Environment<'static>,
    src: &str,
    skip: usize,
    place: Place,
) -> Option<Diagnostic> {
    let tmpl = env.template_from_str(src).ok()?;
    let compiled = machinery::get_compiled_template(&tmpl);
    let all = std::iter::once(&compiled.instructions).chain(compiled.blocks.values());
    for ins in all {
        if let Some(d) = scan(env, ins, src, skip, place) {
            return Some(d);
        }
    }
    None
}

fn scan(
    env: &Environment<'static>,
    ins: &Instructions<'_>,
    src: &str,
    skip: usize,
    place: Place,
) -> Option<Diagnostic> {
    // Bounded by the template's own size: one instruction per index.
    for idx in 0..u32::try_from(src.len() * 4 + 64).unwrap_or(u32::MAX) {
        let i = ins.get(idx)?;
        let (name, filter) = match i {
            Instruction::ApplyFilter(name, ..) => (*name, true),
            Instruction::PerformTest(name, ..) => (*name, false),
            _ => continue,
        };
        if known(env, name, filter) {
            continue;
        }
        let text = &src[skip..];
        let range = ins
            .get_span(idx)
            .map(|s| {
                let start = (s.start_offset as usize).saturating_sub(skip);
                let end = (s.end_offset as usize).saturating_sub(skip);
                text[start.min(text.len())..end.min(text.len())]
                    .rfind(name)
                    .map_or(start..end, |at| start + at..start + at + name.len())
            })
            .or_else(|| text.find(name).map(|at| at..at + name.len()));
        let line = range.as_ref().map_or(1, |r| {
            text[..r.start.min(text.len())].matches('\n').count() + 1
        });
        let span = place.inner(text, line, range);
        let (what, list) = if filter {
            ("filter", FILTERS)
        } else {
            ("test", TESTS)
        };
        let mut d = Diagnostic::error(format!("unknown {what} `{name}`"))
            .at(span)
            .label(match did_you_mean(name, list.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("no {what} of this name"),
            });
        d = d.help(if filter {
            "sortie's filters: quote, to_json, from_json, b64encode, b64decode, regex_replace, regex_search, basename, dirname, sha256, and minijinja's own"
        } else {
            "tests: defined, undefined, none, true, false, number, string, mapping, sequence, startingwith, endingwith, containing, in, eq, ne, lt, le, gt, ge, odd, even, divisibleby, and others of minijinja's"
        });
        return Some(d);
    }
    None
}

/// Names offered in "did you mean" (the common ones; the check itself asks the environment).
const FILTERS: &[&str] = &[
    "quote",
    "to_json",
    "from_json",
    "b64encode",
    "b64decode",
    "regex_replace",
    "regex_search",
    "basename",
    "dirname",
    "sha256",
    "default",
    "d",
    "lower",
    "upper",
    "trim",
    "join",
    "length",
    "first",
    "last",
    "replace",
    "int",
    "float",
    "string",
    "list",
    "map",
    "select",
    "reject",
    "selectattr",
    "rejectattr",
    "sort",
    "unique",
    "items",
    "dictsort",
    "tojson",
    "urlencode",
    "capitalize",
    "title",
    "round",
    "abs",
    "split",
    "lines",
    "indent",
    "min",
    "max",
    "sum",
    "reverse",
    "batch",
    "slice",
    "bool",
    "safe",
    "escape",
    "pprint",
    "attr",
    "wordcount",
    "truncate",
    "datetimeformat",
    "filesizeformat",
];
const TESTS: &[&str] = &[
    "defined",
    "undefined",
    "none",
    "true",
    "false",
    "number",
    "string",
    "mapping",
    "sequence",
    "iterable",
    "startingwith",
    "endingwith",
    "containing",
    "in",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "odd",
    "even",
    "divisibleby",
    "lower",
    "upper",
    "boolean",
    "integer",
    "float",
    "safe",
    "filter",
    "test",
];
