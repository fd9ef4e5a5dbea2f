//! The `Event`s a run emits while it goes on — a run or play starting, a task starting or
//! finishing, a host done, a warning, the plan of a dry run, the final report — and their JSON
//! form (one object per line with `--format json`, documented in `docs/events.md`). The engine
//! (`exec`) sends them, already redacted, to an `EventSink`; the reporter (`report::live`)
//! shows them. Events are advisory, for the screen only; the final report is built from the
//! sorted outcomes, never from this stream.

use serde::Serialize;
use serde_json::Value as Json;

use super::{RunReport, Status, TaskReport, through_json};
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
    /// The end of the run, with the redacted report for the recap: the outputs of the tasks
    /// that did not fail are left out (`RunReport::recap_copy`); the whole report is what
    /// `exec::run` returns.
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

fn text(s: String, f: &mut dyn FnMut(&mut Json)) -> String {
    let mut v = Json::String(s);
    f(&mut v);
    match v {
        Json::String(s) => s,
        other => other.to_string(),
    }
}

impl Event {
    /// The event with `f` applied to every string it carries (as JSON values, so that a
    /// report's fields are reached too): what redaction and terminal escaping both use.
    pub fn map_strings(self, f: &mut dyn FnMut(&mut Json)) -> Event {
        match self {
            Event::RunStarted {
                run_id,
                playbook,
                hosts,
                dry_run,
            } => Event::RunStarted {
                run_id,
                playbook: text(playbook, f),
                hosts,
                dry_run,
            },
            Event::PlayStarted { name, hosts } => Event::PlayStarted {
                name: text(name, f),
                hosts,
            },
            Event::HostStarted { host } => Event::HostStarted { host },
            Event::TaskStarted { host, id, step } => Event::TaskStarted {
                host,
                id,
                step: text(step, f),
            },
            Event::TaskFinished { host, task } => Event::TaskFinished {
                host,
                task: Box::new(through_json(*task, f)),
            },
            Event::HostFinished {
                host,
                status,
                duration_ms,
            } => Event::HostFinished {
                host,
                status,
                duration_ms,
            },
            Event::Warning {
                message,
                location,
                help,
            } => Event::Warning {
                message: text(message, f),
                location,
                help: help.map(|h| text(h, f)),
            },
            Event::Plan { text: t } => Event::Plan { text: text(t, f) },
            Event::RunFinished { report } => Event::RunFinished {
                report: Box::new(report.map_strings(f)),
            },
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
