//! Robustness of the loaders: thousands of mutated playbooks, inventories and vars files
//! (truncation, swapped types, random bytes, deep nesting, huge strings, shuffled lines) thrown
//! at the loaders in-process. No panic, no hang, and every rejection is a located diagnostic.
//! The default run tries 10,000 inputs; `SORTIE_FUZZ_CASES=N` tries N (`bench/fuzz` runs
//! 100,000 and records the figures), and `SORTIE_FUZZ_SEED` changes the generator's seed.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::repo;

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const REPLACEMENTS: &[&str] = &[
    "[1, 2]",
    "{a: 1}",
    "null",
    "true",
    "~",
    "-1",
    "99999999999999999999",
    "\"{{ x }\"",
    "\"{{ undefined.thing }}\"",
    "[",
    "{",
    "&a",
    "*nope",
    "!!binary x",
    "\"\\u0000\"",
    "- -",
    ": :",
    "'",
    "\t",
    "0x1F",
    ".inf",
    "{{",
    "%",
    "@",
    "`",
    "|",
    ">",
    "#",
    "\u{1F600}",
    "needs: [x]",
    "ssh:",
    "http: 5",
    "loop: 3",
    "expect: [1]",
    "retry: {attempts: x}",
    "strategy: []",
];

fn mutate(rng: &mut Rng, src: &str) -> String {
    let chars: Vec<char> = src.chars().collect();
    match rng.below(9) {
        0 => chars[..rng.below(chars.len() + 1)].iter().collect(),
        // Replace a word with a value of another type.
        1 | 2 => mutate_small(rng, src),
        3 => {
            // Random bytes (as chars, controls included).
            let mut s = chars.clone();
            for _ in 0..1 + rng.below(8) {
                let at = rng.below(s.len() + 1);
                let c = char::from_u32((rng.next() % 0x2FF) as u32).unwrap_or('?');
                s.insert(at, c);
            }
            s.into_iter().collect()
        }
        4 => {
            // Deep nesting.
            let depth = 50 + rng.below(400);
            if rng.below(2) == 0 {
                format!("{}{}", "[".repeat(depth), "]".repeat(depth))
            } else {
                let mut s = String::new();
                for i in 0..depth.min(200) {
                    s.push_str(&" ".repeat(i));
                    s.push_str("k:\n");
                }
                s
            }
        }
        5 => {
            // A huge string somewhere.
            let lines: Vec<&str> = src.lines().collect();
            let at = rng.below(lines.len() + 1);
            let big = "x".repeat(100_000 + rng.below(400_000));
            let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            out.insert(at.min(out.len()), format!("big: \"{big}\""));
            out.join("\n")
        }
        6 => {
            // Delete, duplicate or swap lines.
            let mut lines: Vec<&str> = src.lines().collect();
            if lines.len() > 1 {
                let a = rng.below(lines.len());
                let b = rng.below(lines.len());
                match rng.below(3) {
                    0 => {
                        lines.remove(a);
                    }
                    1 => {
                        let l = lines[a];
                        lines.insert(b, l);
                    }
                    _ => lines.swap(a, b),
                }
            }
            lines.join("\n")
        }
        7 => {
            // Shift the indentation of one line.
            let mut lines: Vec<String> = src.lines().map(str::to_string).collect();
            if !lines.is_empty() {
                let a = rng.below(lines.len());
                if rng.below(2) == 0 {
                    lines[a] = format!("  {}", lines[a]);
                } else {
                    lines[a] = lines[a].trim_start().to_string();
                }
            }
            lines.join("\n")
        }
        _ => {
            // Several small mutations.
            let mut s = src.to_string();
            for _ in 0..3 {
                s = mutate_small(rng, &s);
            }
            s
        }
    }
}

fn mutate_small(rng: &mut Rng, src: &str) -> String {
    let chars: Vec<char> = src.chars().collect();
    let words = word_spans(&chars);
    if words.is_empty() {
        return src.to_string();
    }
    let (a, b) = words[rng.below(words.len())];
    let rep = REPLACEMENTS[rng.below(REPLACEMENTS.len())];
    let mut s: String = chars[..a].iter().collect();
    s.push_str(rep);
    s.extend(&chars[b..]);
    s
}

fn word_spans(chars: &[char]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_alphanumeric() || chars[i] == '_' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.')
            {
                i += 1;
            }
            out.push((start, i));
        } else {
            i += 1;
        }
    }
    out
}

fn seeds(dir: &Path, ext: &[&str]) -> Vec<String> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| ext.iter().any(|e| x == *e)))
        .collect();
    v.sort();
    // Seeds are text; an example saved in another encoding (`invalid/not-utf8.yml`) is read
    // as well as it can be.
    v.into_iter()
        .map(|p| String::from_utf8_lossy(&std::fs::read(p).expect("read")).into_owned())
        .collect()
}

fn assert_located(d: &sortie::diag::Diagnostics, input: &str) {
    assert!(d.has_errors(), "a rejection carries an error");
    for e in &d.0 {
        assert!(
            e.span.is_some(),
            "diagnostic without a place: {e:?}\ninput:\n{}",
            input.chars().take(2000).collect::<String>()
        );
        assert!(!e.title.is_empty());
    }
}

/// Vars files are YAML mappings of names to values, as `vars_files` and `-e @file` read them.
const VARS_SEEDS: &[&str] = &[
    "version: \"2.4.1\"\nports: [80, 443]\nowner: { name: ops, mail: ops@example.com }\n",
    "# comment\nenv: prod\nreplicas: 3\nflags:\n  - a\n  - b\nmulti: |\n  line one\n  line two\n",
    "anchors: &base { a: 1 }\nderived: { <<: *base, b: 2 }\n",
];

/// The most memory this process has held, in KiB (`VmHWM`), where the kernel says.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Which loader an input goes to.
#[derive(Clone, Copy, PartialEq)]
enum Target {
    Playbook,
    Inventory,
    Vars,
}

/// Loads one input; `Some(diagnostics)` when it is rejected.
fn load(
    target: Target,
    i: usize,
    input: &str,
    vars_path: &Path,
) -> Option<sortie::diag::Diagnostics> {
    match target {
        Target::Playbook => sortie::playbook::load_str(Path::new("fuzz.yml"), input).err(),
        Target::Inventory => {
            let name = if i.is_multiple_of(2) {
                "fuzz.ini"
            } else {
                "fuzz.yml"
            };
            sortie::inventory::load_str(name, input).err()
        }
        Target::Vars => {
            std::fs::write(vars_path, input).expect("write vars file");
            sortie::playbook::load_vars_file(vars_path, None).err()
        }
    }
}

#[test]
fn mutated_inputs_never_panic_and_are_located() {
    let pb_seeds = {
        let mut s = seeds(&repo().join("playbooks"), &["yml"]);
        s.extend(seeds(&repo().join("playbooks/invalid"), &["yml"]));
        s.retain(|t| !t.contains("groups:"));
        s
    };
    let inv_seeds = {
        let mut s = seeds(&repo().join("playbooks"), &["ini"]);
        s.push(std::fs::read_to_string(repo().join("playbooks/inventory.yml")).expect("inventory"));
        s
    };
    let vars_seeds: Vec<String> = VARS_SEEDS.iter().map(|s| s.to_string()).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let vars_path = dir.path().join("fuzz-vars.yml");
    let total: usize = std::env::var("SORTIE_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let seed: u64 = std::env::var("SORTIE_FUZZ_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0x5eed_1234_abcd_0001);
    let mut rng = Rng(seed | 1);
    let mut slowest = (Duration::ZERO, 0usize, 0usize);
    let mut rejected = 0;
    let started_all = Instant::now();
    for i in 0..total {
        let (target, seeds) = match i % 10 {
            0 | 5 => (Target::Inventory, &inv_seeds),
            3 => (Target::Vars, &vars_seeds),
            _ => (Target::Playbook, &pb_seeds),
        };
        let pick = rng.below(seeds.len());
        let input = mutate(&mut rng, &seeds[pick]);
        let started = Instant::now();
        let result = std::panic::catch_unwind(|| load(target, i, &input, &vars_path));
        let took = started.elapsed();
        if took > slowest.0 {
            slowest = (took, i, input.len());
        }
        match result {
            Ok(Some(d)) => {
                rejected += 1;
                assert_located(&d, &input);
                // Rendering never panics either.
                let _ = sortie::diag::render(&d.0, false);
            }
            Ok(None) => {}
            Err(_) => panic!(
                "loader panicked on case {i}:\n{}",
                input.chars().take(3000).collect::<String>()
            ),
        }
        assert!(took < Duration::from_secs(10), "case {i} took {took:?}");
    }
    assert!(
        rejected > total / 4,
        "mutations should mostly be rejected: {rejected}"
    );
    let summary = format!(
        "fuzz: {total} inputs, {rejected} rejected, slowest {:?} (case {}, {} bytes), total {:?}, peak RSS {} KiB",
        slowest.0,
        slowest.1,
        slowest.2,
        started_all.elapsed(),
        peak_rss_kib().map_or("?".to_string(), |k| k.to_string())
    );
    eprintln!("{summary}");
    if let Ok(path) = std::env::var("SORTIE_FUZZ_SUMMARY") {
        std::fs::write(path, summary + "\n").expect("write the summary");
    }
}
