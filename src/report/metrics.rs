//! The Prometheus text exposition format (version 0.0.4) of runs, for `sortie serve`:
//! `/metrics` (the last scheduled run: per host × step success and duration, per host success,
//! hosts by status, the last run's start, duration and exit code, runs so far) and `/probe`
//! (one host run now, the multi-target pattern of blackbox_exporter). Input: finished,
//! redacted `RunReport`s and the counters `serve` keeps; output: the text it answers with.
//! Label values and help text are escaped as the format says.

use std::fmt::Write;

use super::{RunReport, Status, Summary, TaskReport};

/// The `Content-Type` of the text this module writes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A label value as the format writes it between quotes: backslash, double quote and line
/// feed escaped.
pub fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Help text: backslash and line feed escaped.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A text being written, one metric family after another.
#[derive(Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// Starts a family: its `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) -> &mut Self {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
        self
    }

    /// One sample of the family last started.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
        self
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// Whether a task counts as a success: it ran and did not fail (an ignored failure passes).
fn success(t: &TaskReport) -> f64 {
    let failed = matches!(t.status, Status::Failed | Status::Unreachable) && !t.ignored;
    if failed { 0.0 } else { 1.0 }
}

fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// Every task that ran (skipped ones have no success to report) with its labels, only on
/// `host` when one is given.
fn tasks<'a>(
    r: &'a RunReport,
    host: Option<&'a str>,
) -> impl Iterator<Item = ([(&'static str, &'a str); 5], &'a TaskReport)> + 'a {
    r.plays.iter().flat_map(move |p| {
        p.hosts
            .iter()
            .filter(move |h| host.is_none_or(|x| x == h.name))
            .flat_map(move |h| {
                h.tasks
                    .iter()
                    .filter(|t| t.status != Status::Skipped)
                    .map(move |t| {
                        (
                            [
                                ("host", h.name.as_str()),
                                ("play", p.name.as_str()),
                                ("step", t.id.as_str()),
                                ("name", t.name.as_str()),
                                ("kind", t.kind.as_str()),
                            ],
                            t,
                        )
                    })
            })
    })
}

/// The per host × step families: success 0/1 and duration.
fn step_families(e: &mut Exposition, r: &RunReport, host: Option<&str>) {
    e.family(
        "sortie_step_success",
        "gauge",
        "1 if the step passed on the host in the last run (an ignored failure passes), 0 if it failed or the host was unreachable; steps that were skipped are absent.",
    );
    for (labels, t) in tasks(r, host) {
        e.sample("sortie_step_success", &labels, success(t));
    }
    e.family(
        "sortie_step_duration_seconds",
        "gauge",
        "How long the step took on the host in the last run, retries included.",
    );
    for (labels, t) in tasks(r, host) {
        e.sample("sortie_step_duration_seconds", &labels, secs(t.duration_ms));
    }
}

/// Each host's run status over every play, in inventory order.
fn host_statuses(r: &RunReport) -> Vec<(&str, Status)> {
    let mut out: Vec<(&str, Status)> = Vec::new();
    for p in &r.plays {
        for h in &p.hosts {
            match out.iter_mut().find(|(n, _)| *n == h.name) {
                Some((_, s)) => {
                    if h.status > *s || *s == Status::Skipped {
                        *s = (*s).max(h.status);
                    }
                }
                None => out.push((&h.name, h.status)),
            }
        }
    }
    out
}

/// Counters `serve` keeps across runs.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunCounters {
    /// Scheduled runs finished since start.
    pub runs: u64,
    /// Of those, runs with a failed or unreachable host.
    pub failed_runs: u64,
    /// When the last run started, in seconds since the Unix epoch.
    pub last_start_unix: f64,
}

/// `/metrics`: the last scheduled run (none before the first has finished) and the counters.
pub fn render(last: Option<&RunReport>, c: RunCounters) -> String {
    let mut e = Exposition::default();
    if let Some(r) = last {
        step_families(&mut e, r, None);
        e.family(
            "sortie_host_success",
            "gauge",
            "1 if no step failed on the host and it was reachable in the last run, else 0.",
        );
        for (h, s) in host_statuses(r) {
            let ok = !matches!(s, Status::Failed | Status::Unreachable);
            e.sample(
                "sortie_host_success",
                &[("host", h)],
                f64::from(u8::from(ok)),
            );
        }
        e.family(
            "sortie_hosts",
            "gauge",
            "Hosts of the last run by their status.",
        );
        for (s, n) in by_status(&r.hosts) {
            e.sample("sortie_hosts", &[("status", s.as_str())], n as f64);
        }
        e.family(
            "sortie_last_run_start_timestamp_seconds",
            "gauge",
            "When the last run started, in seconds since the Unix epoch.",
        )
        .sample(
            "sortie_last_run_start_timestamp_seconds",
            &[],
            c.last_start_unix,
        );
        e.family(
            "sortie_last_run_duration_seconds",
            "gauge",
            "How long the last run took.",
        )
        .sample("sortie_last_run_duration_seconds", &[], secs(r.duration_ms));
        e.family(
            "sortie_last_run_exit_code",
            "gauge",
            "The exit code `sortie run` would have given the last run (0 every host ok, 1 a step failed, 2 a host unreachable).",
        )
        .sample("sortie_last_run_exit_code", &[], f64::from(r.exit_code));
    }
    e.family(
        "sortie_runs_total",
        "counter",
        "Scheduled runs finished since sortie serve started.",
    )
    .sample("sortie_runs_total", &[], c.runs as f64);
    e.family(
        "sortie_failed_runs_total",
        "counter",
        "Scheduled runs finished with a failed or unreachable host.",
    )
    .sample("sortie_failed_runs_total", &[], c.failed_runs as f64);
    e.finish()
}

/// `/probe?host=H`: one host's run.
pub fn render_probe(r: &RunReport, host: &str) -> String {
    let mut e = Exposition::default();
    let ok = host_statuses(r)
        .iter()
        .any(|(h, s)| *h == host && !matches!(s, Status::Failed | Status::Unreachable));
    e.family(
        "sortie_probe_success",
        "gauge",
        "1 if every step passed on the probed host, else 0.",
    )
    .sample("sortie_probe_success", &[], f64::from(u8::from(ok)));
    e.family(
        "sortie_probe_duration_seconds",
        "gauge",
        "How long the probe's run took.",
    )
    .sample("sortie_probe_duration_seconds", &[], secs(r.duration_ms));
    step_families(&mut e, r, Some(host));
    e.finish()
}

fn by_status(s: &Summary) -> [(Status, usize); 5] {
    [
        (Status::Ok, s.ok),
        (Status::Changed, s.changed),
        (Status::Failed, s.failed),
        (Status::Unreachable, s.unreachable),
        (Status::Skipped, s.skipped),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_as_the_format_says() {
        assert_eq!(escape_label(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label("two\nlines"), "two\\nlines");
        let mut e = Exposition::default();
        e.family("m", "gauge", "help \\ with\nnewline").sample(
            "m",
            &[("name", "say \"hi\"\n"), ("k", "v")],
            0.25,
        );
        assert_eq!(
            e.finish(),
            "# HELP m help \\\\ with\\nnewline\n# TYPE m gauge\nm{name=\"say \\\"hi\\\"\\n\",k=\"v\"} 0.25\n"
        );
    }

    #[test]
    fn before_the_first_run_only_the_counters_show() {
        let text = render(None, RunCounters::default());
        assert!(text.contains("sortie_runs_total 0\n"));
        assert!(!text.contains("sortie_step_success"));
    }
}
