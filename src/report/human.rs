//! The live view on a terminal (indicatif): one overall bar — hosts done of total, how many
//! failed or are unreachable, elapsed time and ETA — under a line per host in flight with the
//! step it is running and for how long (at most a screenful; "… and N more" beyond). Failures
//! are printed above the bars the moment they happen (with `-v`, every task and its outputs);
//! when the run ends the bars are cleared and the recap printed, the same text as off a
//! terminal. Driven by `live::Reporter` with events (redacted by the engine) and a 100 ms
//! tick; what it renders from them is redacted again on its way out. The bars draw on stdout through `console::Term` used as
//! indicatif's `TermLike`, which draws even when `--format human` is forced off a terminal.

use std::sync::Arc;
use std::time::Instant;

use console::Term;
use indexmap::IndexMap;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::diagnose;
use super::event::Event;
use super::plain::{self, common_text, human_ms};
use super::redact::Redactor;
use super::{Status, TaskReport};

/// Lines the view keeps for itself besides host lines (the overall bar, "and N more", room
/// for the line being printed above).
const RESERVED_ROWS: usize = 3;

/// What the view knows of a host in flight.
struct InFlight {
    started: Instant,
    /// Steps running now: (id, name, started).
    steps: Vec<(String, String, Instant)>,
}

pub struct LiveView {
    multi: MultiProgress,
    overall: ProgressBar,
    slots: Vec<ProgressBar>,
    more: Option<ProgressBar>,
    max_slots: usize,
    inflight: IndexMap<String, InFlight>,
    failed: usize,
    unreachable: usize,
    /// Width of host names in task lines printed above the bars.
    width: usize,
    verbose: u8,
    color: bool,
    /// Masks what the view renders beyond the redacted events (quoted playbook lines).
    redactor: Arc<Redactor>,
    done: bool,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

impl LiveView {
    pub fn new(total_hosts: usize, verbose: u8, color: bool, redactor: Arc<Redactor>) -> LiveView {
        let term = Term::buffered_stdout();
        let rows = term.size().0 as usize;
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::term_like_with_hz(
            Box::new(term),
            15,
        ));
        let overall = multi.add(ProgressBar::new(total_hosts as u64));
        overall.set_style(
            style("{spinner:.cyan} [{bar:30.cyan/blue}] {pos}/{len} hosts{msg} · {elapsed} · ETA {eta}")
                .progress_chars("=> "),
        );
        LiveView {
            multi,
            overall,
            slots: Vec::new(),
            more: None,
            max_slots: rows.saturating_sub(RESERVED_ROWS).max(1),
            inflight: IndexMap::new(),
            failed: 0,
            unreachable: 0,
            width: 4,
            verbose,
            color,
            redactor,
            done: false,
        }
    }

    /// Prints lines above the bars (redacted).
    fn print(&self, text: &str) {
        let text = self
            .redactor
            .redact(text.strip_suffix('\n').unwrap_or(text));
        let _ = self.multi.println(text);
    }

    pub fn handle(&mut self, ev: Event) {
        let now = Instant::now();
        match ev {
            Event::RunStarted { .. } | Event::PlayStarted { .. } | Event::Plan { .. } => {
                self.print(&common_text(&ev, self.color));
            }
            Event::HostStarted { host } => {
                self.width = self.width.max(host.chars().count());
                self.inflight.insert(
                    host,
                    InFlight {
                        started: now,
                        steps: Vec::new(),
                    },
                );
            }
            Event::TaskStarted { host, id, step } => {
                if let Some(h) = self.inflight.get_mut(&host) {
                    h.steps.push((id, step, now));
                }
            }
            Event::TaskFinished { host, task } => {
                if let Some(h) = self.inflight.get_mut(&host)
                    && let Some(i) = h.steps.iter().position(|(id, _, _)| *id == task.id)
                {
                    h.steps.remove(i);
                }
                self.task_finished(&host, &task);
            }
            Event::HostFinished { host, status, .. } => {
                self.inflight.shift_remove(&host);
                self.overall.inc(1);
                match status {
                    Status::Failed => self.failed += 1,
                    Status::Unreachable => self.unreachable += 1,
                    _ => {}
                }
            }
            Event::Warning {
                message,
                location,
                help,
            } => {
                self.print(&diagnose::warning_text(
                    &message,
                    location.as_ref(),
                    help.as_deref(),
                    self.color,
                ));
            }
            Event::RunFinished { .. } => {
                let recap = common_text(&ev, self.color);
                self.clear();
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(self.redactor.redact(&recap).as_bytes());
                let _ = out.flush();
                return;
            }
        }
        self.refresh();
    }

    fn task_finished(&self, host: &str, t: &TaskReport) {
        let failure = matches!(t.status, Status::Failed | Status::Unreachable) && !t.ignored;
        if !failure && self.verbose == 0 && t.warnings.is_empty() {
            return;
        }
        let text = plain::task_block(host, t, self.width, self.color, self.verbose);
        self.print(&text);
    }

    /// Redraws the host lines and the overall bar's counts (called on every event and tick).
    pub fn refresh(&mut self) {
        if self.done {
            return;
        }
        let shown = self.inflight.len().min(self.max_slots);
        let hidden = self.inflight.len() - shown;
        // "… and N more" sits between the host lines and the overall bar.
        if hidden > 0 && self.more.is_none() {
            let pb = self
                .multi
                .insert_before(&self.overall, ProgressBar::new_spinner());
            pb.set_style(style("  {msg}"));
            self.more = Some(pb);
        } else if hidden == 0
            && let Some(pb) = self.more.take()
        {
            pb.finish_and_clear();
            self.multi.remove(&pb);
        }
        while self.slots.len() < shown {
            let anchor = self.more.as_ref().unwrap_or(&self.overall);
            let pb = self.multi.insert_before(anchor, ProgressBar::new_spinner());
            pb.set_style(style("{spinner:.cyan} {wide_msg}"));
            self.slots.push(pb);
        }
        while self.slots.len() > shown {
            if let Some(pb) = self.slots.pop() {
                pb.finish_and_clear();
                self.multi.remove(&pb);
            }
        }
        let width = self
            .inflight
            .keys()
            .take(shown)
            .map(|h| h.chars().count())
            .max()
            .unwrap_or(4);
        for (slot, (host, h)) in self.slots.iter().zip(self.inflight.iter()) {
            let line = match h.steps.last() {
                Some((_, name, started)) => {
                    let others = if h.steps.len() > 1 {
                        format!(" (+{})", h.steps.len() - 1)
                    } else {
                        String::new()
                    };
                    format!(
                        "{host:<width$}  {name}{others}  {}",
                        human_ms(started.elapsed().as_millis() as u64)
                    )
                }
                None => format!(
                    "{host:<width$}  …  {}",
                    human_ms(h.started.elapsed().as_millis() as u64)
                ),
            };
            slot.set_message(line);
            slot.tick();
        }
        if let Some(pb) = &self.more {
            pb.set_message(format!(
                "… and {hidden} more host{} in flight",
                if hidden == 1 { "" } else { "s" }
            ));
        }
        let mut msg = String::new();
        if self.failed > 0 {
            msg.push_str(&format!(" · {} failed", self.failed));
        }
        if self.unreachable > 0 {
            msg.push_str(&format!(" · {} unreachable", self.unreachable));
        }
        self.overall.set_message(msg);
        self.overall.tick();
    }

    /// Removes every bar from the screen.
    fn clear(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        for pb in self.slots.drain(..).chain(self.more.take()) {
            pb.finish_and_clear();
            self.multi.remove(&pb);
        }
        self.overall.finish_and_clear();
        let _ = self.multi.clear();
    }

    /// The channel closed: clear the bars if the run did not finish normally.
    pub fn finish(mut self) {
        self.clear();
    }
}
