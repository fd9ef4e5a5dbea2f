//! Progress while a run goes on: the one `Reporter` task that owns stdout (and the run's
//! stderr lines) while the engine sends it `Event`s (`report::event`). It shows them one of
//! three ways:
//! - `human`: the live view on a terminal (`report::human`: bars, a line per host in flight,
//!   failures as they happen), then the recap;
//! - `plain`: a line per finished task, then the recap — the same text with no escape codes,
//!   for CI logs and pipes (indicatif draws nothing off a terminal, so this is its own path);
//! - `json`: one JSON object per event per line (documented in `docs/events.md`).
//!
//! `Mode::detect` picks `human` when stdout is a terminal (and `TERM` is not `dumb`), else
//! `plain`. The engine redacts every event before it arrives here; what the views add to them
//! (diagnostics quote playbook lines) is redacted again on its way out.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::redact::Redactor;
use crate::diag::printable;

use super::event::{Event, json_event};
use super::{diagnose, human, plain};

/// How the reporter shows a run, once `auto` is resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Human,
    Plain,
    Json,
}

impl Mode {
    /// `human` on a terminal, else `plain`.
    pub fn detect() -> Mode {
        let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
        if std::io::stdout().is_terminal() && !dumb {
            Mode::Human
        } else {
            Mode::Plain
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

/// The events of `rx` with every string made safe for a terminal (`diag::printable`).
fn printable_events(mut rx: mpsc::UnboundedReceiver<Event>) -> mpsc::UnboundedReceiver<Event> {
    let (tx, out) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            if tx.send(ev.map_strings(&mut printable_json)).is_err() {
                break;
            }
        }
    });
    out
}

/// Escapes control bytes in every string and key of a JSON value.
fn printable_json(v: &mut serde_json::Value) {
    use serde_json::Value as Json;
    match v {
        Json::String(s) => {
            if let std::borrow::Cow::Owned(o) = printable(s) {
                *s = o;
            }
        }
        Json::Array(items) => items.iter_mut().for_each(printable_json),
        Json::Object(map) => {
            let old = std::mem::take(map);
            for (k, mut val) in old {
                printable_json(&mut val);
                map.insert(printable(&k).into_owned(), val);
            }
        }
        Json::Number(_) | Json::Bool(_) | Json::Null => {}
    }
}

/// Whether stderr may carry colors: a terminal, and `NO_COLOR` unset or empty.
pub fn stderr_color() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

/// The one owner of the terminal during a run.
pub struct Reporter {
    mode: Mode,
    verbose: u8,
    /// Masks what the views render beyond the (already redacted) events: the playbook lines
    /// that diagnostics quote.
    redactor: Arc<Redactor>,
}

impl Reporter {
    pub fn new(mode: Mode, verbose: u8, redactor: Arc<Redactor>) -> Reporter {
        Reporter {
            mode,
            verbose,
            redactor,
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Consumes events until the channel closes.
    pub async fn run(self, rx: mpsc::UnboundedReceiver<Event>) {
        // What people read gets control bytes escaped first; JSON escapes them itself.
        let rx = match self.mode {
            Mode::Json => rx,
            Mode::Plain | Mode::Human => printable_events(rx),
        };
        let color = color_wanted();
        console::set_colors_enabled(color);
        match self.mode {
            Mode::Json => self.run_json(rx).await,
            Mode::Plain => self.run_plain(rx, color).await,
            Mode::Human => self.run_human(rx, color).await,
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
                Event::Warning {
                    message,
                    location,
                    help,
                } => {
                    // Warnings go to stderr, where diagnostics go; colored when it is a terminal.
                    let text = diagnose::warning_text(
                        &message,
                        location.as_ref(),
                        help.as_deref(),
                        stderr_color(),
                    );
                    eprint!("{}", self.redactor.redact(&text));
                    continue;
                }
                Event::TaskStarted { .. } | Event::HostFinished { .. } => continue,
                Event::TaskFinished { host, task } => {
                    plain::task_block(&host, &task, width, color, self.verbose)
                }
                other => plain::common_text(&other, color),
            };
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(self.redactor.redact(&text).as_bytes());
            let _ = out.flush();
        }
    }

    async fn run_human(self, mut rx: mpsc::UnboundedReceiver<Event>, color: bool) {
        // The view starts with the run, which says how many hosts it has; a run refused
        // before it starts draws nothing.
        let mut view: Option<human::LiveView> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Some(ev) => {
                        if let Event::RunStarted { hosts, .. } = &ev {
                            view.get_or_insert_with(|| human::LiveView::new(*hosts, self.verbose, color, self.redactor.clone()));
                        }
                        if let Some(v) = view.as_mut() {
                            v.handle(ev);
                        }
                    }
                    None => break,
                },
                _ = tick.tick() => if let Some(v) = view.as_mut() {
                    v.refresh();
                },
            }
        }
        if let Some(v) = view {
            v.finish();
        }
    }
}
