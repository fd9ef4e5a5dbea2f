//! Host ranges in inventory names, as Ansible writes them: `web[01:20].example.com` (zero-padded
//! widths kept), `db-[a:c]`, `node[1:10:2]`, several ranges in one name (their product).
//! The native, INI and Ansible YAML loaders call `expand` on every host name they read; a bad
//! range comes back as a `RangeError` placed by character offset inside the name, which the
//! loader turns into a located `Diagnostic`.

/// Most hosts one name may expand to.
pub const MAX_HOSTS_PER_NAME: usize = 100_000;

/// What is wrong with a host name's range, and where inside the name (character offsets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeError {
    pub title: String,
    pub label: String,
    pub help: String,
    /// Character offset of the first character at fault, from 0.
    pub start: usize,
    /// Length in characters of the part at fault.
    pub len: usize,
}

/// Does this name hold a `[...]` range (or something trying to be one)?
pub fn has_range(name: &str) -> bool {
    name.contains('[') || name.contains(']')
}

/// One bracketed range of a name: the values it stands for, in order.
struct Part {
    values: Vec<String>,
}

enum Piece {
    Text(String),
    Range(Part),
}

/// Expands every `[start:end]` / `[start:end:step]` of `name`, in order; a name without
/// brackets is returned as it is.
pub fn expand(name: &str) -> Result<Vec<String>, RangeError> {
    let chars: Vec<char> = name.chars().collect();
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut i = 0;
    let mut total: usize = 1;
    while i < chars.len() {
        match chars[i] {
            '[' => {
                let Some(close) = chars[i + 1..].iter().position(|c| *c == ']') else {
                    return Err(RangeError {
                        title: format!("unclosed `[` in host name `{name}`"),
                        label: "this `[` has no matching `]`".into(),
                        help: "write a host range as `[start:end]`, e.g. `web[01:20]`".into(),
                        start: i,
                        len: 1,
                    });
                };
                let close = i + 1 + close;
                let inner: String = chars[i + 1..close].iter().collect();
                let part = parse_range(&inner).map_err(|(label, help)| RangeError {
                    title: format!("invalid host range `[{inner}]`"),
                    label,
                    help,
                    start: i,
                    len: close - i + 1,
                })?;
                total = total.saturating_mul(part.values.len());
                if total > MAX_HOSTS_PER_NAME {
                    return Err(too_many(name, &chars, total));
                }
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(Piece::Range(part));
                i = close + 1;
            }
            ']' => {
                return Err(RangeError {
                    title: format!("unmatched `]` in host name `{name}`"),
                    label: "this `]` closes no `[`".into(),
                    help: "write a host range as `[start:end]`, e.g. `web[01:20]`".into(),
                    start: i,
                    len: 1,
                });
            }
            c => {
                text.push(c);
                i += 1;
            }
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    let mut out = vec![String::new()];
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.iter_mut().for_each(|o| o.push_str(&t)),
            Piece::Range(part) => {
                let mut next = Vec::with_capacity(out.len() * part.values.len());
                for o in &out {
                    for v in &part.values {
                        next.push(format!("{o}{v}"));
                    }
                }
                out = next;
            }
        }
    }
    Ok(out)
}

fn too_many(name: &str, chars: &[char], total: usize) -> RangeError {
    let shown = if total == usize::MAX {
        "too many".to_string()
    } else {
        total.to_string()
    };
    RangeError {
        title: "host range expands to too many hosts".into(),
        label: format!("this name gives {shown} hosts; at most {MAX_HOSTS_PER_NAME} are allowed"),
        help: format!("split `{name}` into several smaller ranges, or narrow it"),
        start: 0,
        len: chars.len(),
    }
}

/// What is wrong with the text between the brackets: (label, help).
type Problem = (String, String);

const FORM: &str =
    "write `[start:end]` or `[start:end:step]`, e.g. `[01:20]`, `[a:f]` or `[1:9:2]`";

/// Parses the text between the brackets: `start:end` or `start:end:step`, numbers or letters.
fn parse_range(inner: &str) -> Result<Part, Problem> {
    let fields: Vec<&str> = inner.split(':').map(str::trim).collect();
    if fields.len() < 2 || fields.len() > 3 {
        return Err((
            "expected `[start:end]` or `[start:end:step]`".into(),
            FORM.into(),
        ));
    }
    let (beg, end) = (fields[0], fields[1]);
    let step = match fields.get(2) {
        None => 1,
        Some(s) => match s.parse::<u64>() {
            Ok(n) if n >= 1 => n,
            _ => {
                return Err((
                    format!("the step `{s}` is not a whole number of at least 1"),
                    FORM.into(),
                ));
            }
        },
    };
    if end.is_empty() {
        return Err(("the range has no end".into(), FORM.into()));
    }
    // Ansible reads a missing start as 0.
    let beg = if beg.is_empty() { "0" } else { beg };
    if digits(beg) && digits(end) {
        return number_range(beg, end, step);
    }
    if letter(beg) && letter(end) {
        return letter_range(beg, end, step);
    }
    if (digits(beg) || letter(beg)) && (digits(end) || letter(end)) {
        return Err((
            format!("`{beg}` and `{end}` are not both numbers or both letters"),
            "use numbers (`[1:9]`, `[01:20]`) or single letters (`[a:f]`)".into(),
        ));
    }
    let bad = if digits(beg) || letter(beg) { end } else { beg };
    Err((
        format!("`{bad}` is neither a number nor a single letter"),
        "use numbers (`[1:9]`, `[01:20]`) or single letters (`[a:f]`)".into(),
    ))
}

fn digits(s: &str) -> bool {
    s.chars().all(|c| c.is_ascii_digit())
}

fn letter(s: &str) -> bool {
    s.chars().count() == 1 && s.chars().all(|c| c.is_ascii_alphabetic())
}

/// `[01:20]`, `[1:9:2]`: a zero-padded start pads every value to its width, which the end
/// must share.
fn number_range(beg: &str, end: &str, step: u64) -> Result<Part, Problem> {
    let width = if beg.len() > 1 && beg.starts_with('0') {
        if beg.len() != end.len() {
            return Err((
                format!(
                    "`{beg}` is zero-padded to {} digits but `{end}` has {}",
                    beg.len(),
                    end.len()
                ),
                format!(
                    "give both bounds the same width, e.g. `[{}:{end}]`",
                    format_args!("{:0>w$}", beg.trim_start_matches('0'), w = end.len())
                ),
            ));
        }
        beg.len()
    } else {
        0
    };
    let (Ok(b), Ok(e)) = (beg.parse::<u64>(), end.parse::<u64>()) else {
        return Err(("a bound of this range is too large".into(), FORM.into()));
    };
    if b > e {
        return Err((
            format!("`{beg}` comes after `{end}`"),
            format!("write the range from low to high: `[{end}:{beg}]`"),
        ));
    }
    let count = (e - b) / step + 1;
    if count > MAX_HOSTS_PER_NAME as u64 {
        return Err((
            format!("this range gives {count} hosts; at most {MAX_HOSTS_PER_NAME} are allowed"),
            "split it into several smaller ranges, or narrow it".into(),
        ));
    }
    let values = (0..count)
        .map(|k| format!("{:0>width$}", b + k * step))
        .collect();
    Ok(Part { values })
}

/// `[a:f]`, `[A:F:2]`: single letters of one case (each bound is one letter).
fn letter_range(beg: &str, end: &str, step: u64) -> Result<Part, Problem> {
    let (b, e) = (beg.chars().next(), end.chars().next());
    let (Some(b), Some(e)) = (b, e) else {
        return Err(("expected `[start:end]`".into(), FORM.into()));
    };
    if b.is_ascii_lowercase() != e.is_ascii_lowercase() {
        return Err((
            format!("`{b}` and `{e}` are not the same case"),
            "use letters of one case, e.g. `[a:f]` or `[A:F]`".into(),
        ));
    }
    if b > e {
        return Err((
            format!("`{b}` comes after `{e}`"),
            format!("write the range from low to high: `[{e}:{b}]`"),
        ));
    }
    let values = (b as u32..=e as u32)
        .step_by(usize::try_from(step).unwrap_or(usize::MAX))
        .filter_map(char::from_u32)
        .map(String::from)
        .collect();
    Ok(Part { values })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(name: &str) -> Vec<String> {
        expand(name).expect("expands")
    }

    #[test]
    fn plain_names_are_kept() {
        assert_eq!(ok("web1.example.com"), vec!["web1.example.com"]);
        assert!(!has_range("web1"));
        assert!(has_range("web[1:2]"));
    }

    #[test]
    fn numeric_ranges_keep_zero_padding() {
        assert_eq!(
            ok("web[01:03].example.com"),
            vec![
                "web01.example.com",
                "web02.example.com",
                "web03.example.com"
            ]
        );
        assert_eq!(ok("n[8:10]"), vec!["n8", "n9", "n10"]);
        assert_eq!(ok("n[:2]"), vec!["n0", "n1", "n2"]);
    }

    #[test]
    fn letter_ranges_and_steps() {
        assert_eq!(ok("db-[a:c]"), vec!["db-a", "db-b", "db-c"]);
        assert_eq!(ok("n[1:10:3]"), vec!["n1", "n4", "n7", "n10"]);
        assert_eq!(ok("x[a:e:2]"), vec!["xa", "xc", "xe"]);
    }

    #[test]
    fn several_ranges_multiply_in_order() {
        assert_eq!(ok("r[1:2]-[a:b]"), vec!["r1-a", "r1-b", "r2-a", "r2-b"]);
    }

    #[test]
    fn start_after_end_is_located() {
        let e = expand("web[5:1].lab").expect_err("bad");
        assert_eq!(e.title, "invalid host range `[5:1]`");
        assert_eq!(e.label, "`5` comes after `1`");
        assert_eq!(e.help, "write the range from low to high: `[1:5]`");
        assert_eq!((e.start, e.len), (3, 5));
    }

    #[test]
    fn mixed_letters_and_numbers() {
        let e = expand("db[a:3]").expect_err("bad");
        assert_eq!(e.title, "invalid host range `[a:3]`");
        assert_eq!(e.label, "`a` and `3` are not both numbers or both letters");
        let e = expand("db[aa:zz]").expect_err("bad");
        assert_eq!(e.label, "`aa` is neither a number nor a single letter");
        let e = expand("db[a:C]").expect_err("bad");
        assert_eq!(e.label, "`a` and `C` are not the same case");
    }

    #[test]
    fn malformed_ranges() {
        let e = expand("db[1-5]").expect_err("bad");
        assert_eq!(e.label, "expected `[start:end]` or `[start:end:step]`");
        let e = expand("db[1:]").expect_err("bad");
        assert_eq!(e.label, "the range has no end");
        let e = expand("db[1:5:0]").expect_err("bad");
        assert_eq!(e.label, "the step `0` is not a whole number of at least 1");
        let e = expand("db[1:5").expect_err("bad");
        assert_eq!(e.title, "unclosed `[` in host name `db[1:5`");
        assert_eq!((e.start, e.len), (2, 1));
        let e = expand("db]").expect_err("bad");
        assert_eq!(e.title, "unmatched `]` in host name `db]`");
    }

    #[test]
    fn padded_bounds_need_equal_width() {
        let e = expand("web[01:100]").expect_err("bad");
        assert_eq!(e.label, "`01` is zero-padded to 2 digits but `100` has 3");
        assert_eq!(e.help, "give both bounds the same width, e.g. `[001:100]`");
    }

    #[test]
    fn too_many_hosts() {
        let e = expand("h[0:100000]").expect_err("bad");
        assert_eq!(e.title, "invalid host range `[0:100000]`");
        assert_eq!(
            e.label,
            "this range gives 100001 hosts; at most 100000 are allowed"
        );
        let e = expand("h[0:999]-[0:999]").expect_err("bad");
        assert_eq!(e.title, "host range expands to too many hosts");
        assert_eq!(
            e.label,
            "this name gives 1000000 hosts; at most 100000 are allowed"
        );
        assert_eq!(ok("h[1:100000]").len(), 100_000);
    }
}
