//! Progress while a run goes on: the `Event`s workers send, and the one `Reporter` task that
//! owns stdout (and the run's stderr lines). It shows the events one of three ways:
//! - `human`: the live view on a terminal (`report::human`: bars, a line per host in flight,
//!   failures as they happen), then the recap;
//! - `plain`: a line per finished task, then the recap — the same text with no escape codes,
//!   for CI logs and pipes (indicatif draws nothing off a terminal, so this is its own path);
//! - `json`: one JSON object per event per line (documented in `docs/events.md`).
//!
//! `auto` picks `human` when stdout is a terminal (and `TERM` is not `dumb`), else `plain`.
//! Every string goes through the run's `Redactor` on its way out. Events are advisory, for the
//! screen only; the final report is built from the sorted outcomes, never from this stream.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::mpsc;

use super::redact::Redactor;
use super::{RunReport, Status, TaskReport, human, plain};
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
    },
    /// The rendered plan of a dry run.
    Plan {
        text: String,
    },
    RunFinished {
        report: Box<RunReport>,
    },
}

/// How the reporter shows a run, once `auto` is resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Human,
    Plain,
    Json,
}

impl Mode {
    /// `auto` → `human` on a terminal, else `plain`.
    pub fn resolve(format: Format) -> Mode {
        match format {
            Format::Human => Mode::Human,
            Format::Plain => Mode::Plain,
            Format::Json => Mode::Json,
            Format::Auto => {
                let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
                if std::io::stdout().is_terminal() && !dumb {
                    Mode::Human
                } else {
                    Mode::Plain
                }
            }
        }
    }
}

/// Whether to color: stdout is a terminal and `NO_COLOR` is unset or empty
/// (<https://no-color.org>); `TERM=dumb` means no color either.
pub fn color_wanted() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
    std::io::stdout().is_terminal() && !no_color && !dumb
}

/// The one owner of the terminal during a run.
pub struct Reporter {
    mode: Mode,
    verbose: u8,
    redactor: Arc<Redactor>,
}

impl Reporter {
    pub fn new(format: Format, verbose: u8, redactor: Arc<Redactor>) -> Reporter {
        Reporter {
            mode: Mode::resolve(format),
            verbose,
            redactor,
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Consumes events until the channel closes.
    pub async fn run(self, rx: mpsc::UnboundedReceiver<Event>, total_hosts: usize) {
        let color = color_wanted();
        console::set_colors_enabled(color);
        match self.mode {
            Mode::Json => self.run_json(rx).await,
            Mode::Plain => self.run_plain(rx, color).await,
            Mode::Human => self.run_human(rx, total_hosts, color).await,
        }
    }

    async fn run_json(self, mut rx: mpsc::UnboundedReceiver<Event>) {
        let started = Instant::now();
        while let Some(ev) = rx.recv().await {
            let mut v = json_event(ev);
            if let Some(o) = v.as_object_mut() {
                o.insert(
                    "elapsed_ms".into(),
                    (started.elapsed().as_millis() as u64).into(),
                );
            }
            self.redactor.redact_json(&mut v);
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{v}");
            let _ = out.flush();
        }
    }

    async fn run_plain(self, mut rx: mpsc::UnboundedReceiver<Event>, color: bool) {
        let mut width = 4usize;
        while let Some(ev) = rx.recv().await {
            let text = match ev {
                Event::HostStarted { host } => {
                    width = width.max(host.chars().count());
                    continue;
                }
                Event::Warning { message } => {
                    let line = format!("warning: {message}");
                    eprintln!("{}", self.redactor.redact(&line));
                    continue;
                }
                Event::TaskStarted { .. } | Event::HostFinished { .. } => continue,
                Event::TaskFinished { host, task } => {
                    let mut s = plain::task_line(&host, &task, width, color);
                    s.push('\n');
                    for w in &task.warnings {
                        s.push_str(&format!("{:width$}  warning: {w}\n", ""));
                    }
                    if self.verbose > 0 {
                        s.push_str(&plain::outputs(&task, width + 2));
                    }
                    s
                }
                other => common_text(&other, &self.redactor),
            };
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(self.redactor.redact(&text).as_bytes());
            let _ = out.flush();
        }
    }

    async fn run_human(
        self,
        mut rx: mpsc::UnboundedReceiver<Event>,
        total_hosts: usize,
        color: bool,
    ) {
        let mut view = human::LiveView::new(total_hosts, self.verbose, color, self.redactor);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Some(ev) => view.handle(ev),
                    None => break,
                },
                _ = tick.tick() => view.refresh(),
            }
        }
        view.finish();
    }
}

/// Text shared by the plain and live views for events that are not per task: the run's
/// header, a play's header, a dry run's plan and the recap. Already redacted.
pub fn common_text(ev: &Event, redactor: &Redactor) -> String {
    match ev {
        Event::RunStarted {
            playbook,
            hosts,
            dry_run,
            ..
        } => format!(
            "sortie: {playbook} on {hosts} host{}{}\n",
            if *hosts == 1 { "" } else { "s" },
            if *dry_run { " (dry run)" } else { "" }
        ),
        Event::PlayStarted { name, hosts } => format!(
            "\nPLAY {name} ({hosts} host{})\n",
            if *hosts == 1 { "" } else { "s" }
        ),
        Event::Plan { text } => format!("\n{text}"),
        Event::RunFinished { report } => plain::recap(&redactor.report(report)),
        _ => String::new(),
    }
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
