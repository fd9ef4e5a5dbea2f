//! The `Event`s a run emits while it goes on — a run or play starting, a task starting or
//! finishing, a host done, a warning, the plan of a dry run, the final report — and their JSON
//! form (one object per line with `--format json`, documented in `docs/events.md`). The engine
//! (`exec`) sends them, already redacted, to an `EventSink`; the reporter (`report::live`)
//! shows them. Events are advisory, for the screen only; the final report is built from the
//! sorted outcomes, never from this stream.

use serde::Serialize;

use super::{RunReport, Status, TaskReport};
use crate::diag::{Diagnostic, Location};

/// Something that happened during a run.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        run_id: String,
        playbook: String,
        hosts: usize,
        dry_run: bool,
    },
    PlayStarted {
        name: String,
        hosts: usize,
    },
    HostStarted {
        host: String,
    },
    TaskStarted {
        host: String,
        /// The step's id (`#N` when it has none).
        id: String,
        /// The step's display name.
        step: String,
    },
    TaskFinished {
        host: String,
        task: Box<TaskReport>,
    },
    HostFinished {
        host: String,
        status: Status,
        duration_ms: u64,
    },
    Warning {
        message: String,
        /// Where in a file the warning points, when it does.
        #[serde(skip_serializing_if = "Option::is_none")]
        location: Option<Location>,
        /// What to do about it.
        #[serde(skip_serializing_if = "Option::is_none")]
        help: Option<String>,
    },
    /// The rendered plan of a dry run.
    Plan {
        text: String,
    },
    RunFinished {
        report: Box<RunReport>,
    },
}

impl Event {
    /// The warning event of a diagnostic.
    pub fn warning(d: &Diagnostic) -> Event {
        Event::Warning {
            message: d.title.clone(),
            location: d.span.map(Location::from),
            help: d.help.clone(),
        }
    }
}

/// Where a run's events go: the reporter's channel, a server's state, a test's list.
pub trait EventSink: Send + Sync {
    fn send(&self, event: Event);
}

impl EventSink for tokio::sync::mpsc::UnboundedSender<Event> {
    fn send(&self, event: Event) {
        // A closed receiver means nobody is watching any more; the run goes on.
        let _ = tokio::sync::mpsc::UnboundedSender::send(self, event);
    }
}

/// A sink that drops every event (a run nobody watches).
pub struct Discard;

impl EventSink for Discard {
    fn send(&self, _event: Event) {}
}

/// The JSON object of one event. `run_finished` carries the totals, not the whole report
/// (that is `--report`'s job).
pub fn json_event(ev: Event) -> serde_json::Value {
    match ev {
        Event::RunFinished { report } => serde_json::json!({
            "event": "run_finished",
            "run_id": report.run_id,
            "exit_code": report.exit_code,
            "interrupted": report.interrupted,
            "duration_ms": report.duration_ms,
            "hosts": report.hosts,
            "tasks": report.tasks,
        }),
        other => serde_json::to_value(&other).unwrap_or_default(),
    }
}
