//! Results and reports: the `Outcome` of each task, the `RunReport` built from sorted
//! outcomes after the run (never from the progress stream), its JSON file
//! (`schemas/report.schema.json`), the plain per-task lines and the recap table, the HTML
//! page (`html`) and the Prometheus exposition (`metrics`). The runner
//! (`exec`) produces outcomes and events; `app`/`exec` write what this module renders.

pub mod diagnose;
pub mod event;
pub mod html;
pub mod human;
pub mod junit;
pub mod live;
pub mod merge;
pub mod metrics;
pub mod plain;
pub mod redact;
pub mod tap;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::diag::Location;
use crate::expect::Check;

/// The report format's version: 2 carries places as `Location` objects (1 had text).
pub const VERSION: u32 = 2;

/// What became of a task, a host or a run.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
    PartialOrd,
    Ord,
    Hash,
    Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    #[default]
    Ok,
    Changed,
    Skipped,
    Failed,
    Unreachable,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Changed => "changed",
            Status::Skipped => "skipped",
            Status::Failed => "failed",
            Status::Unreachable => "unreachable",
        }
    }
}

/// One failed check of an expectation, as reported.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CheckReport {
    /// The result field (`status`, `json["$.status"]`).
    pub field: String,
    /// The matcher (`eq`, `contains`, …).
    pub matcher: String,
    pub expected: Json,
    pub actual: Json,
    pub passed: bool,
    /// Where the expectation is written; none for the kind's default expectation.
    pub location: Option<Location>,
}

impl CheckReport {
    /// The report of one check; `default` when it is the kind's default expectation, which
    /// has no place in the playbook.
    pub fn of(c: &Check, default: bool) -> CheckReport {
        CheckReport {
            field: c.field.clone(),
            matcher: c.matcher.to_string(),
            expected: c.expected.clone(),
            actual: c.actual.clone(),
            passed: c.passed,
            location: (!default).then(|| c.span.into()),
        }
    }
}

/// A run-time error of a task.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ErrorReport {
    /// connect, auth, host_key, timeout, io, protocol, template, cancelled.
    pub kind: String,
    pub message: String,
    pub help: Option<String>,
    /// Where the error points when not at the step itself (a template's place).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// What the caret under that place says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// The outcome of one step on one host.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TaskReport {
    /// The step's id (`#N` when it has none).
    pub id: String,
    pub name: String,
    pub kind: String,
    pub status: Status,
    /// A failure that `ignore_errors` let pass.
    #[serde(default)]
    pub ignored: bool,
    /// Why it failed or was skipped, in one line.
    pub message: Option<String>,
    /// What the kind adds to a failed expectation: the request and a glimpse of its answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// Where a failure that is neither an error nor a check points (an `until` expression).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_location: Option<Location>,
    pub error: Option<ErrorReport>,
    /// Every check made on the last attempt.
    #[serde(default)]
    pub checks: Vec<CheckReport>,
    /// The step's result fields (`***` when the step is secret).
    pub output: Json,
    pub attempts: u32,
    pub duration_ms: u64,
    /// When the task started, in milliseconds after the run started (the HTML timeline's
    /// axis); none in reports from before it was recorded and for hosts that never ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<u64>,
    /// Where the step is written (its kind key).
    pub location: Location,
    /// What the step warned about (TLS not verified, output cut short, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Everything that happened on one host in one play.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HostReport {
    pub name: String,
    pub address: String,
    pub status: Status,
    pub duration_ms: u64,
    pub tasks: Vec<TaskReport>,
}

/// One play's results, hosts in inventory order.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PlayReport {
    pub name: String,
    pub hosts: Vec<HostReport>,
}

/// Counts over a run.
#[derive(Clone, Debug, Default, Serialize, Deserialize, schemars::JsonSchema, PartialEq, Eq)]
pub struct Summary {
    pub hosts: usize,
    pub ok: usize,
    pub changed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub unreachable: usize,
}

/// The whole run, as `--report` writes it.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunReport {
    /// Report format version.
    pub version: u32,
    /// The run's id: `--run-id`, `SORTIE_RUN_ID`, the scheduler's job id, or a fresh one.
    pub run_id: String,
    pub playbook: String,
    pub inventory: Vec<String>,
    /// Which slice of the selected hosts this run took (`--shard I/N`: I, 0-based); 0 when
    /// the run was not sharded, or for a merged report.
    #[serde(default)]
    pub shard: u32,
    /// How many slices the hosts were cut into (N); 1 when the run was not sharded, or for
    /// a merged report.
    #[serde(default = "one")]
    pub shards: u32,
    /// SHA-256 of the playbook file's text (hex): shards of one run have the same.
    #[serde(default)]
    pub playbook_sha256: String,
    /// SHA-256 (hex) of the resolved inventory — every host with its address, port, user,
    /// groups, merged vars and SSH settings, as `sortie inventory --list` prints them — so
    /// the same hosts give the same hash from any file layout.
    #[serde(default)]
    pub inventory_sha256: String,
    /// The shard reports a merged report was made of (`sortie report merge`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged: Vec<merge::MergedShard>,
    /// Shards a `--partial` merge went without: their hosts are in no play.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_shards: Vec<u32>,
    pub started_at: String,
    pub duration_ms: u64,
    /// The run was interrupted (SIGINT/SIGTERM); results are what was known then.
    pub interrupted: bool,
    pub exit_code: i32,
    pub dry_run: bool,
    pub warnings: Vec<String>,
    pub plays: Vec<PlayReport>,
    /// Task counts per status (a task per host × step).
    pub tasks: Summary,
    /// Host counts by their final status.
    pub hosts: Summary,
}

impl HostReport {
    /// The host's status: unreachable > failed > changed > ok (skipped when nothing ran).
    pub fn compute_status(tasks: &[TaskReport]) -> Status {
        if tasks.iter().any(|t| t.status == Status::Unreachable) {
            Status::Unreachable
        } else if tasks
            .iter()
            .any(|t| t.status == Status::Failed && !t.ignored)
        {
            Status::Failed
        } else if tasks.iter().any(|t| t.status == Status::Changed) {
            Status::Changed
        } else if tasks.iter().all(|t| t.status == Status::Skipped) && !tasks.is_empty() {
            Status::Skipped
        } else {
            Status::Ok
        }
    }
}

impl RunReport {
    /// Fills the summaries and the exit code from the plays.
    pub fn finish(&mut self) {
        let mut tasks = Summary::default();
        let mut hosts = Summary::default();
        let mut seen: std::collections::BTreeMap<&str, Status> = Default::default();
        for p in &self.plays {
            for h in &p.hosts {
                let e = seen.entry(h.name.as_str()).or_insert(h.status);
                if h.status > *e || *e == Status::Skipped {
                    *e = (*e).max(h.status);
                }
                for t in &h.tasks {
                    bump(&mut tasks, t.status);
                }
            }
        }
        for s in seen.values() {
            bump(&mut hosts, *s);
        }
        tasks.hosts = seen.len();
        hosts.hosts = seen.len();
        self.tasks = tasks;
        self.hosts = hosts;
        self.exit_code = if self.interrupted {
            crate::exit::INTERRUPTED
        } else if self.hosts.unreachable > 0 || !self.missing_shards.is_empty() {
            crate::exit::UNREACHABLE
        } else if self.hosts.failed > 0 {
            crate::exit::FAILED
        } else {
            crate::exit::OK
        };
    }

    /// The report with `f` applied to every string and key (through JSON, as redaction and
    /// terminal escaping need), one task at a time: the tasks are taken out, the rest goes
    /// through JSON, then each task does and is put back. A report that keeps 50 bodies of a
    /// MiB is never copied whole; the most held twice at once is one task.
    pub fn map_strings(mut self, f: &mut dyn FnMut(&mut Json)) -> RunReport {
        let tasks: Vec<Vec<Vec<TaskReport>>> = self
            .plays
            .iter_mut()
            .map(|p| {
                p.hosts
                    .iter_mut()
                    .map(|h| std::mem::take(&mut h.tasks))
                    .collect()
            })
            .collect();
        let mut shell = through_json(self, f);
        for (p, hosts) in shell.plays.iter_mut().zip(tasks) {
            for (h, tasks) in p.hosts.iter_mut().zip(hosts) {
                h.tasks = tasks.into_iter().map(|t| through_json(t, f)).collect();
            }
        }
        shell
    }

    /// A copy for the recap (`Event::RunFinished`): every task's outputs left out but those
    /// of the failures, which the recap quotes (`stderr`). The whole report is what the
    /// engine returns; this copy costs no body.
    pub fn recap_copy(&self) -> RunReport {
        let mut plays = Vec::with_capacity(self.plays.len());
        for p in &self.plays {
            let hosts = p
                .hosts
                .iter()
                .map(|h| HostReport {
                    tasks: h.tasks.iter().map(TaskReport::recap_copy).collect(),
                    name: h.name.clone(),
                    address: h.address.clone(),
                    status: h.status,
                    duration_ms: h.duration_ms,
                })
                .collect();
            plays.push(PlayReport {
                name: p.name.clone(),
                hosts,
            });
        }
        RunReport {
            plays,
            run_id: self.run_id.clone(),
            playbook: self.playbook.clone(),
            inventory: self.inventory.clone(),
            playbook_sha256: self.playbook_sha256.clone(),
            inventory_sha256: self.inventory_sha256.clone(),
            merged: self.merged.clone(),
            missing_shards: self.missing_shards.clone(),
            started_at: self.started_at.clone(),
            warnings: self.warnings.clone(),
            tasks: self.tasks.clone(),
            hosts: self.hosts.clone(),
            ..*self
        }
    }

    /// Hosts that failed or were unreachable (for `--retry-failed`).
    pub fn failed_hosts(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for p in &self.plays {
            for h in &p.hosts {
                if matches!(h.status, Status::Failed | Status::Unreachable)
                    && !out.contains(&h.name)
                {
                    out.push(h.name.clone());
                }
            }
        }
        out
    }
}

impl TaskReport {
    /// A copy without the outputs unless the task failed (see `RunReport::recap_copy`).
    fn recap_copy(&self) -> TaskReport {
        let keep = diagnose::is_failure(self);
        TaskReport {
            id: self.id.clone(),
            name: self.name.clone(),
            kind: self.kind.clone(),
            message: self.message.clone(),
            context: self.context.clone(),
            failure_location: self.failure_location.clone(),
            error: self.error.clone(),
            checks: self.checks.clone(),
            output: if keep {
                self.output.clone()
            } else {
                Json::Null
            },
            location: self.location.clone(),
            warnings: self.warnings.clone(),
            ..*self
        }
    }
}

/// `value` turned to JSON, changed by `f`, and read back; unchanged if it cannot be read back.
pub(crate) fn through_json<T>(value: T, f: &mut dyn FnMut(&mut Json)) -> T
where
    T: Serialize + serde::de::DeserializeOwned,
{
    let Ok(mut v) = serde_json::to_value(&value) else {
        return value;
    };
    f(&mut v);
    serde_json::from_value(v).unwrap_or(value)
}

fn one() -> u32 {
    1
}

fn bump(s: &mut Summary, st: Status) {
    match st {
        Status::Ok => s.ok += 1,
        Status::Changed => s.changed += 1,
        Status::Skipped => s.skipped += 1,
        Status::Failed => s.failed += 1,
        Status::Unreachable => s.unreachable += 1,
    }
}

/// Writes a file atomically: a temporary name beside it, then a rename.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_with(path, |f| f.write_all(bytes))
}

/// Writes a file atomically from what `fill` writes (buffered, never whole in memory): a
/// temporary name beside it, then a rename; the temporary file goes if anything fails.
pub fn write_atomic_with(
    path: &std::path::Path,
    fill: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "report".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        fill(&mut f)?;
        f.flush()?;
        f.into_inner().map_err(|e| e.into_error())?.sync_all()
    })();
    written
        .and_then(|()| std::fs::rename(&tmp, path))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
}

/// The report schema (`schemas/report.schema.json`).
pub fn schema() -> schemars::Schema {
    let mut s = schemars::SchemaGenerator::new(schemars::generate::SchemaSettings::draft2020_12())
        .into_root_schema_for::<RunReport>();
    s.insert(
        "$id".into(),
        Json::String("https://sortie.dev/schemas/report.schema.json".into()),
    );
    s
}
