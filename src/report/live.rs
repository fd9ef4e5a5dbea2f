//! Progress while a run goes on: the `Event`s workers send, and the one `Reporter` task that
//! owns stdout — plain lines (a line per finished task, then the recap) or JSON events, one
//! per line (`--format json`). Events are advisory, for the screen only; the final report is
//! built from the sorted outcomes, never from this stream.

use serde::Serialize;
use tokio::sync::mpsc;

use super::{RunReport, Status, TaskReport, plain};
use crate::cli::Format;

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
    },
    /// The rendered plan of a dry run.
    Plan {
        text: String,
    },
    RunFinished {
        report: Box<RunReport>,
    },
}

/// The one owner of the terminal during a run.
pub struct Reporter {
    format: Format,
    verbose: u8,
}

impl Reporter {
    pub fn new(format: Format, verbose: u8) -> Reporter {
        Reporter { format, verbose }
    }

    /// Consumes events until the channel closes.
    pub async fn run(self, mut rx: mpsc::UnboundedReceiver<Event>, _total_hosts: usize) {
        use std::io::Write;
        let mut width = 4usize;
        while let Some(ev) = rx.recv().await {
            let mut out = std::io::stdout().lock();
            match self.format {
                Format::Json => {
                    let ev = match ev {
                        Event::RunFinished { report } => {
                            let r = *report;
                            serde_json::json!({"event": "run_finished", "exit_code": r.exit_code, "interrupted": r.interrupted, "hosts": r.hosts, "tasks": r.tasks, "duration_ms": r.duration_ms})
                        }
                        other => serde_json::to_value(&other).unwrap_or_default(),
                    };
                    let _ = writeln!(out, "{ev}");
                }
                _ => match ev {
                    Event::RunStarted {
                        playbook,
                        hosts,
                        dry_run,
                        ..
                    } => {
                        let _ = writeln!(
                            out,
                            "sortie: {playbook} on {hosts} host{}{}",
                            if hosts == 1 { "" } else { "s" },
                            if dry_run { " (dry run)" } else { "" }
                        );
                    }
                    Event::PlayStarted { name, hosts } => {
                        let _ = writeln!(
                            out,
                            "\nPLAY {name} ({hosts} host{})",
                            if hosts == 1 { "" } else { "s" }
                        );
                    }
                    Event::HostStarted { host } => {
                        width = width.max(host.chars().count());
                    }
                    Event::TaskFinished { host, task } => {
                        let _ = writeln!(out, "{}", plain::task_line(&host, &task, width));
                        for w in &task.warnings {
                            let _ = writeln!(out, "{:width$}  warning: {w}", "");
                        }
                        if self.verbose > 0
                            && task.output.as_object().is_some_and(|o| !o.is_empty())
                        {
                            let _ = writeln!(out, "{:width$}  {}", "", task.output);
                        }
                    }
                    Event::Warning { message } => {
                        eprintln!("warning: {message}");
                    }
                    Event::Plan { text } => {
                        let _ = write!(out, "\n{text}");
                    }
                    Event::RunFinished { report } => {
                        let _ = write!(out, "{}", plain::recap(&report));
                    }
                    Event::TaskStarted { .. } | Event::HostFinished { .. } => {}
                },
            }
            let _ = out.flush();
        }
    }
}
