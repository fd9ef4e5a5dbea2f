//! The commands behind the CLI — thin fronts over the library: each takes its parsed
//! arguments, loads files, builds a request for the engine (`exec`) or the loaders, writes its
//! output (stdout for results, stderr for diagnostics) and returns the exit code (`exit`).
//! `run` lives in `app::run`, `completions` and `man` in `app::generate`, `report html` in
//! `app::html`, `serve` in `app::serve`; `main.rs` only parses and exits with what these
//! return.

mod generate;
mod html;
mod merge;
mod run;
mod serve;
pub mod shard;

use std::io::Write;

pub use generate::{completions, man};
pub use html::report_html;
pub use merge::report;
pub use run::run;
pub use serve::serve;

use crate::cli::{CheckArgs, InventoryArgs, PlanArgs, PlanFormat, SchemaArgs, SchemaKind};
use crate::diag::{Diagnostics, render};
use crate::exec::RunRequest;
use crate::exit;
use crate::inventory::{self, Inventory};
use crate::playbook::{self, Playbook};
use crate::report::live::stderr_color;
use crate::vars;

/// Most diagnostics printed for one command; the rest are counted.
pub const MAX_SHOWN: usize = 50;

/// Prints diagnostics on stderr: the first `MAX_SHOWN`, then how many more there are.
pub fn report_diagnostics(d: &Diagnostics) {
    let shown = &d.0[..d.0.len().min(MAX_SHOWN)];
    let text = render(shown, stderr_color());
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    let hidden = d.0.len() - shown.len();
    if hidden > 0 {
        let _ = writeln!(
            err,
            "\n… and {hidden} more problem{} not shown: fix these first",
            if hidden == 1 { "" } else { "s" }
        );
    }
    let errors =
        d.0.iter()
            .filter(|x| x.level == crate::diag::Level::Error)
            .count();
    if errors > 1 {
        let _ = writeln!(err, "\n{errors} errors");
    }
}

/// Loads the inventory files, or the implicit localhost when none is given.
pub fn load_inventory(paths: &[std::path::PathBuf]) -> Result<Inventory, Diagnostics> {
    if paths.is_empty() {
        Ok(inventory::implicit_localhost())
    } else {
        inventory::load(paths)
    }
}

/// Loads a playbook and (optionally) its inventory, checking that each play's host pattern
/// matches something. Diagnostics from both are collected together.
pub fn load_all(
    playbook_path: &std::path::Path,
    inv: &[std::path::PathBuf],
) -> Result<(Playbook, Inventory), Diagnostics> {
    let pb = playbook::load(playbook_path);
    let inv_r = load_inventory(inv);
    match (pb, inv_r) {
        (Ok(mut pb), Ok(inv)) => {
            let mut d = Diagnostics::default();
            if !inv.sources.is_empty() {
                for play in &pb.plays {
                    d.0.extend(crate::exec::check_against_inventory(play, &inv));
                }
                // ssh_config is read up front, as `ssh` would read it for each host.
                let hosts: Vec<&inventory::Host> = inv.hosts.iter().collect();
                for x in crate::conn::config::check_hosts(&hosts, &inv) {
                    match x.level {
                        crate::diag::Level::Error => d.push(x),
                        _ => pb.warnings.push(x),
                    }
                }
            }
            d.into_result((pb, inv))
        }
        (Err(mut a), Err(b)) => {
            a.extend(b);
            Err(a)
        }
        (Err(a), _) | (_, Err(a)) => Err(a),
    }
}

pub fn check(args: &CheckArgs) -> i32 {
    match load_all(&args.playbook, &args.inventory) {
        Ok((pb, inv)) => {
            if !pb.warnings.is_empty() {
                report_diagnostics(&Diagnostics(pb.warnings.clone()));
            }
            let steps: usize = pb.plays.iter().map(|p| p.steps.len()).sum();
            let hosts = if args.inventory.is_empty() {
                String::new()
            } else {
                format!(", {} hosts", inv.hosts.len())
            };
            println!(
                "ok: {} — {} play{}, {} step{}{}",
                args.playbook.display(),
                pb.plays.len(),
                if pb.plays.len() == 1 { "" } else { "s" },
                steps,
                if steps == 1 { "" } else { "s" },
                hosts
            );
            exit::OK
        }
        Err(d) => {
            report_diagnostics(&d);
            exit::INVALID
        }
    }
}

pub fn plan(args: &PlanArgs) -> i32 {
    let (pb, inv) = match load_all(&args.playbook, &args.inventory) {
        Ok(x) => x,
        Err(d) => {
            report_diagnostics(&d);
            return exit::INVALID;
        }
    };
    let extra = match vars::parse_extra(&args.extra_vars) {
        Ok(e) => e,
        Err(d) => {
            report_diagnostics(&d);
            return exit::INVALID;
        }
    };
    let names: Vec<String> = inv.hosts.iter().map(|h| h.name.clone()).collect();
    let mut req = RunRequest::new(pb, inv);
    req.extra = extra;
    req.limit = args.limit.clone();
    req.only = args.host.clone().map(|h| vec![h]);
    let plans = match crate::exec::plans(&req) {
        Ok(p) => p,
        Err(d) => {
            report_diagnostics(&d);
            return exit::INVALID;
        }
    };
    if let Some(h) = &args.host
        && plans.plans.is_empty()
    {
        let mut d = crate::diag::Diagnostic::error(format!("no play runs on host `{h}`"));
        if let Some(s) = crate::diag::did_you_mean(h, names.iter().map(String::as_str)) {
            d = d.label(format!("did you mean `{s}`?"));
        }
        report_diagnostics(
            &d.help("`sortie inventory -i INVENTORY --list` shows the hosts")
                .into(),
        );
        return exit::INVALID;
    }
    let out = match args.format {
        PlanFormat::Text => crate::plan::render_text(&plans.plans),
        PlanFormat::Json => serde_json::to_string_pretty(&plans.plans).unwrap_or_default() + "\n",
        PlanFormat::Dot => crate::plan::render_dot(&plans.plans),
    };
    // The plan shows rendered values: secrets are masked as in every other output.
    generate::write_stdout(plans.redactor.redact(&out).as_bytes())
}

pub fn inventory(args: &InventoryArgs) -> i32 {
    let inv = match inventory::load(&args.inventory) {
        Ok(i) => i,
        Err(d) => {
            report_diagnostics(&d);
            return exit::INVALID;
        }
    };
    if let Some(name) = &args.host {
        return inventory_host(&inv, name);
    }
    let hosts = match &args.limit {
        Some(l) => match inv.select(l, None) {
            Ok(h) => h,
            Err(d) => {
                report_diagnostics(&d.into());
                return exit::INVALID;
            }
        },
        None => inv.hosts.iter().collect(),
    };
    let hosts = match &args.shard {
        Some(flag) => match shard::parse(flag, &shard::process_env) {
            Ok(c) => hosts
                .into_iter()
                .filter(|h| c.shard.contains(&h.name))
                .collect(),
            Err(d) => {
                report_diagnostics(&d.into());
                return exit::INVALID;
            }
        },
        None => hosts,
    };
    let text = if args.graph {
        inv.graph(&hosts)
    } else {
        let mut j = inv.to_json(&hosts);
        let mut problems = Diagnostics::default();
        for h in &hosts {
            match crate::conn::config::resolve_checked(h, Some(&inv)) {
                Ok((t, w)) => {
                    problems.0.extend(w);
                    j["hosts"][h.name.as_str()]["connection"] =
                        crate::conn::config::connection_json(&t);
                }
                Err(e) => problems.0.extend(e),
            }
        }
        if !problems.0.is_empty() {
            report_diagnostics(&problems);
            if problems.has_errors() {
                return exit::INVALID;
            }
        }
        serde_json::to_string_pretty(&j).unwrap_or_default() + "\n"
    };
    generate::write_stdout(text.as_bytes())
}

/// `sortie inventory --host NAME`: the host's merged vars and its resolved connection.
fn inventory_host(inv: &Inventory, name: &str) -> i32 {
    let Some(host) = inv.host(name) else {
        let mut d = crate::diag::Diagnostic::error(format!("no host `{name}` in the inventory"));
        if let Some(s) = crate::diag::did_you_mean(name, inv.hosts.iter().map(|h| h.name.as_str()))
        {
            d = d.label(format!("did you mean `{s}`?"));
        }
        report_diagnostics(
            &d.help("`sortie inventory -i INVENTORY --list` shows the hosts")
                .into(),
        );
        return exit::INVALID;
    };
    let (target, warnings) = match crate::conn::config::resolve_checked(host, Some(inv)) {
        Ok(x) => x,
        Err(e) => {
            report_diagnostics(&Diagnostics(e));
            return exit::INVALID;
        }
    };
    if !warnings.is_empty() {
        report_diagnostics(&Diagnostics(warnings));
    }
    let vars: serde_json::Map<String, serde_json::Value> = host
        .vars
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let j = serde_json::json!({
        "vars": vars,
        "connection": crate::conn::config::connection_json(&target),
    });
    generate::write_stdout((serde_json::to_string_pretty(&j).unwrap_or_default() + "\n").as_bytes())
}

pub fn schema(args: &SchemaArgs) -> i32 {
    let s = match args.which {
        SchemaKind::Playbook => crate::schema::playbook(),
        SchemaKind::Inventory => inventory::schema(),
        SchemaKind::Report => crate::report::schema(),
    };
    generate::write_stdout((serde_json::to_string_pretty(&s).unwrap_or_default() + "\n").as_bytes())
}

/// The runtime `run` and `serve` drive the engine on: its workers carry every host (SSH calls
/// are awaited on the reactor, none holds a thread); the blocking pool serves the few calls
/// that must block (an ssh-agent's local socket, a failed ProxyCommand's explanation, DNS
/// through the system's resolver); `None` after saying why it could not start.
pub(crate) fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(512)
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            None
        }
    }
}

/// glibc's malloc arenas a run may use (its default: eight per core, each holding on to what
/// its threads freed).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MALLOC_ARENAS: i32 = 2;
/// Blocks from this size on are mapped on their own and given back when freed. Fixed, since
/// glibc otherwise raises the threshold to the largest block freed so far, and a transfer's
/// buffers (256 KiB, 1 MiB) then stay behind in the arenas for the rest of the run.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MALLOC_MMAP_THRESHOLD: i32 = 128 << 10;

/// Sets glibc's malloc for hundreds of threads that each move a few MiB (issue 12: freed
/// memory kept in sixteen arenas was a quarter of the peak RSS at 200 hosts in flight; issue
/// 13: 50 hosts × 10 MB HTTP bodies peaked at 136 MiB with a floating threshold, 88 MiB with
/// it fixed), unless the user set malloc's parameters (`GLIBC_TUNABLES`, `MALLOC_ARENA_MAX`,
/// …), which then stand. `main` calls it first, before any other thread exists.
pub fn tune_malloc() {
    let user_set = std::env::vars_os().any(|(k, v)| {
        let k = k.to_string_lossy();
        k.starts_with("MALLOC_")
            || (k == "GLIBC_TUNABLES" && v.to_string_lossy().contains("glibc.malloc."))
    });
    if user_set {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets malloc's parameters; no pointers cross, and no other thread
    // allocates yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD);
    }
}

/// Calls `on(1)` at the first SIGINT or SIGTERM and `on(2)` at the second, then stops
/// listening: `run` and `serve` differ in what a signal does, not in how they wait for it.
pub(crate) fn on_two_signals(mut on: impl FnMut(u32) + Send + 'static) {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        for count in 1..=2 {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            on(count);
        }
    });
}
