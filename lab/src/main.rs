//! `sortie-lab`: starts, checks and stops the test lab (the `sortie_lab` library) from the command line.
//!
//! `start` launches this same binary as a detached `serve` process that owns every server: it
//! starts the SSH hosts, the HTTP server and the TCP listeners, writes DIR/lab.pid, DIR/lab.json
//! and DIR/inventory.yml, and runs until SIGTERM (from `stop`), SIGINT or its `--ttl` ends.
//! `start` returns once lab.json shows the lab ready. `stop` signals exactly the PIDs recorded in
//! the lab directory, after checking their command lines, so a reused PID is never signalled.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use rustix::process::Signal;
use sortie_lab::{Lab, LabError, LabInfo, LabOptions, process};

/// `println!` that ignores a closed stdout (`sortie-lab status | head`) instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

#[derive(Parser)]
#[command(
    name = "sortie-lab",
    about = "Real SSH, HTTP, TCP and DNS servers on loopback for sortie's tests"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start a lab in the background; return once every server answers.
    Start(StartArgs),
    /// Stop the lab running in DIR (the processes it recorded, nothing else).
    Stop {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Say whether the lab in DIR runs, and where its servers are.
    Status {
        #[arg(long)]
        dir: PathBuf,
        /// Print lab.json, with a `running` field added.
        #[arg(long)]
        json: bool,
    },
    /// Run the lab in this process until signalled (what `start` launches).
    #[command(hide = true)]
    Serve(StartArgs),
}

#[derive(Args, Clone)]
struct StartArgs {
    /// Number of SSH hosts (h01…hNN).
    #[arg(long, default_value_t = 3)]
    hosts: usize,
    /// Lab directory: keys, configs, logs, inventory.yml, lab.json.
    #[arg(long)]
    dir: PathBuf,
    /// Address of the first SSH host; the others follow it.
    #[arg(long, default_value = "127.0.10.1")]
    base: std::net::Ipv4Addr,
    /// SSH port of every host (0: pick a free one).
    #[arg(long, default_value_t = 2222)]
    port: u16,
    /// HTTP port on every lab address (0: pick a free one).
    #[arg(long, default_value_t = 0)]
    http_port: u16,
    /// DNS port (UDP and TCP) on 127.0.0.1 (0: pick a free one).
    #[arg(long, default_value_t = 0)]
    dns_port: u16,
    /// Stop by itself after this long (e.g. 90s, 30m, 3h).
    #[arg(long, default_value = "3h", value_parser = parse_duration)]
    ttl: Duration,
    /// A WAN between the runner and every host: each direction delayed by half this round trip
    /// (e.g. 50ms). The hosts' servers then listen on backstage addresses (127.128.x.y).
    #[arg(long, value_parser = sortie_lab::wan::parse_rtt)]
    rtt: Option<Duration>,
    /// With --rtt: cap each connection's bandwidth per direction (e.g. 100mbit, 10MB).
    #[arg(long, requires = "rtt", value_parser = sortie_lab::wan::parse_bandwidth)]
    bandwidth: Option<u64>,
    /// Keep the login user's own shell (no mount namespace with /bin/sh).
    #[arg(long)]
    keep_shell: bool,
    /// An inside network: every sshd in a private network namespace with services the runner
    /// cannot reach (db 5432, api 80/443, dns 53; docs/lab.md). Needs root.
    #[arg(long)]
    inside: bool,
    /// Hosts whose sshd refuses TCP forwarding (`AllowTcpForwarding no`), e.g. h02 or h02,h03.
    #[arg(long, value_delimiter = ',', value_parser = parse_host_name)]
    no_forwarding: Vec<usize>,
    /// Run in the foreground instead of detaching.
    #[arg(long)]
    foreground: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Start(args) if args.foreground => serve(&args),
        Cmd::Start(args) => start(&args),
        Cmd::Serve(args) => serve(&args),
        Cmd::Stop { dir } => stop(&dir),
        Cmd::Status { dir, json } => status(&dir, json),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sortie-lab: {e}");
            ExitCode::FAILURE
        }
    }
}

fn start(args: &StartArgs) -> Result<ExitCode, LabError> {
    let started = Instant::now();
    let dir = lab_dir(&args.dir)?;
    if let Some(pid) = running_pid(&dir) {
        return Err(LabError::State {
            path: dir,
            detail: format!("a lab already runs here (pid {pid}); `sortie-lab stop` it first"),
        });
    }
    for stale in ["lab.json", "lab.pid"] {
        let _ = std::fs::remove_file(dir.join(stale));
    }
    let log_path = dir.join("lab.log");
    let log = std::fs::File::create(&log_path)
        .map_err(|e| LabError::io(format!("creating {}", log_path.display()), e))?;
    let log2 = log
        .try_clone()
        .map_err(|e| LabError::io("duplicating a log handle", e))?;
    let exe = std::env::current_exe().map_err(|e| LabError::io("finding this program", e))?;
    let mut child = Command::new(exe)
        .arg("serve")
        .arg("--hosts")
        .arg(args.hosts.to_string())
        .arg("--dir")
        .arg(&dir)
        .arg("--base")
        .arg(args.base.to_string())
        .arg("--port")
        .arg(args.port.to_string())
        .arg("--http-port")
        .arg(args.http_port.to_string())
        .arg("--dns-port")
        .arg(args.dns_port.to_string())
        .arg("--ttl")
        .arg(format!("{}s", args.ttl.as_secs()))
        .args(args.keep_shell.then_some("--keep-shell"))
        .args(args.inside.then_some("--inside"))
        .args(
            args.no_forwarding
                .iter()
                .flat_map(|i| ["--no-forwarding".to_string(), format!("h{}", i + 1)]),
        )
        .args(
            args.rtt
                .map(|r| vec!["--rtt".to_string(), format!("{}us", r.as_micros())])
                .unwrap_or_default(),
        )
        .args(
            args.bandwidth
                .map(|b| vec!["--bandwidth".to_string(), format!("{b}b")])
                .unwrap_or_default(),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2))
        .spawn()
        .map_err(|e| LabError::io("starting the lab process", e))?;

    let timeout = Duration::from_secs(60) + Duration::from_millis(150) * args.hosts as u32;
    let deadline = Instant::now() + timeout;
    // Bounded by the deadline: polls lab.json, which the lab writes once everything answers.
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            return Err(LabError::Server(format!(
                "the lab process exited ({status}):\n{}",
                log.trim_end()
            )));
        }
        if let Ok(info) = LabInfo::read(&dir)
            && info.pid == child.id()
        {
            say!(
                "lab ready in {:.1}s: {} ssh hosts on {}.. port {} (login shell {}), http {}",
                started.elapsed().as_secs_f64(),
                info.hosts.len(),
                info.hosts
                    .first()
                    .map(|h| h.address.to_string())
                    .unwrap_or_default(),
                info.ssh_port,
                info.login_shell,
                info.http_url,
            );
            if let Some(rtt) = info.vars.get("wan_rtt_ms").and_then(|v| v.as_f64()) {
                say!("wan:        {rtt} ms round trip between the runner and every host");
            }
            if let Some(dns) = info.vars.get("dns_server").and_then(|v| v.as_str()) {
                say!("dns:        {dns} (zone lab.test.)");
            }
            if let Some(site) = &info.site {
                say!(
                    "inside:     every sshd in a network namespace (holder pid {}): db.internal:5432, api.internal:80/443, dns 127.0.0.1:53, reachable from the hosts only",
                    site.pid
                );
            }
            say!("inventory:  {}", info.inventory.display());
            say!("ssh config: ssh -F {} h01", info.ssh_config.display());
            say!("stop with:  sortie-lab stop --dir {}", dir.display());
            return Ok(ExitCode::SUCCESS);
        }
        if Instant::now() >= deadline {
            process::signal(child.id(), Signal::TERM);
            return Err(LabError::Timeout {
                what: format!("the lab in {}", dir.display()),
                after: timeout,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn serve(args: &StartArgs) -> Result<ExitCode, LabError> {
    // Our own session: a terminal's Ctrl-C or hang-up aimed at `start` does not reach us.
    let _ = rustix::process::setsid();
    let dir = lab_dir(&args.dir)?;
    let pid_file = dir.join("lab.pid");
    sortie_lab::write_atomically(&pid_file, &format!("{}\n", std::process::id()))?;
    let mut options = LabOptions::new(args.hosts, &dir);
    options.ssh.base = args.base;
    options.ssh.port = args.port;
    options.ssh.sh_login_shell = !args.keep_shell;
    options.http_port = args.http_port;
    options.dns_port = args.dns_port;
    options.inside = args.inside;
    options.ssh.no_forwarding = args.no_forwarding.clone();
    options.wan = args.rtt.map(|rtt| sortie_lab::wan::WanOptions {
        rtt,
        bandwidth: args.bandwidth,
    });
    let lab = match Lab::start(options) {
        Ok(lab) => lab,
        Err(e) => {
            let _ = std::fs::remove_file(&pid_file);
            return Err(e);
        }
    };
    say!(
        "lab ready: {} hosts, pid {}, login shell {}",
        lab.ssh.hosts().len(),
        std::process::id(),
        lab.ssh.shell_mode().describe()
    );
    let why = wait_for_stop(args.ttl);
    say!("stopping: {why}");
    drop(lab);
    let _ = std::fs::remove_file(&pid_file);
    Ok(ExitCode::SUCCESS)
}

/// Blocks until SIGTERM, SIGINT or SIGHUP arrives, or `ttl` passes; says which.
fn wait_for_stop(ttl: Duration) -> String {
    use tokio::signal::unix::{SignalKind, signal};
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return format!("no runtime to wait on ({e})"),
    };
    runtime.block_on(async {
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) else {
            return "signal handlers unavailable".to_string();
        };
        tokio::select! {
            _ = term.recv() => "SIGTERM".to_string(),
            _ = int.recv() => "SIGINT".to_string(),
            _ = hup.recv() => "SIGHUP".to_string(),
            () = tokio::time::sleep(ttl) => format!("time to live ({ttl:?}) is over"),
        }
    })
}

fn stop(dir: &Path) -> Result<ExitCode, LabError> {
    let info = LabInfo::read(dir).ok();
    let Some(pid) = running_pid(dir) else {
        let stray = info.as_ref().map(kill_stray_hosts).unwrap_or(0);
        let _ = std::fs::remove_file(dir.join("lab.pid"));
        say!(
            "no lab runs in {} (killed {stray} stray sshd)",
            dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    };
    process::signal(pid, Signal::TERM);
    if !process::wait_gone(&[pid], Duration::from_secs(20)) {
        process::signal(pid, Signal::KILL);
        process::wait_gone(&[pid], Duration::from_secs(5));
    }
    let stray = info.as_ref().map(kill_stray_hosts).unwrap_or(0);
    let _ = std::fs::remove_file(dir.join("lab.pid"));
    say!(
        "stopped the lab in {} (pid {pid}; {stray} stray sshd killed)",
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Kills any recorded sshd still running with its own config, and the site's holder if it is
/// still the very process recorded (PID and start time): the lab process died without cleaning
/// up. Returns how many.
fn kill_stray_hosts(info: &LabInfo) -> usize {
    let mut killed = 0;
    if let Some(site) = &info.site
        && process::start_time(site.pid) == Some(site.start_time)
        && process::alive(site.pid)
    {
        process::signal(site.pid, Signal::KILL);
        process::wait_gone(&[site.pid], Duration::from_secs(2));
        killed += 1;
    }
    for host in &info.hosts {
        let Some(pid) = host.pid else { continue };
        let config = host.config.display().to_string();
        if process::alive(pid) && process::cmdline(pid).is_some_and(|c| c.contains(&config)) {
            let tree = process::signal_tree(pid, Signal::KILL);
            process::wait_gone(&tree, Duration::from_secs(2));
            killed += 1;
        }
    }
    killed
}

fn status(dir: &Path, json: bool) -> Result<ExitCode, LabError> {
    let running = running_pid(dir);
    let info = LabInfo::read(dir).ok();
    if json {
        let mut value = match &info {
            Some(info) => serde_json::to_value(info).unwrap_or_default(),
            None => serde_json::json!({}),
        };
        if let Some(map) = value.as_object_mut() {
            map.insert("running".into(), serde_json::Value::from(running.is_some()));
        }
        say!("{value:#}");
    } else {
        match (&info, running) {
            (Some(info), Some(pid)) => {
                let up = info
                    .hosts
                    .iter()
                    .filter(|h| h.pid.is_some_and(process::alive))
                    .count();
                say!(
                    "running (pid {pid}): {up}/{} sshd up on port {}, http {}",
                    info.hosts.len(),
                    info.ssh_port,
                    info.http_url
                );
                say!("inventory: {}", info.inventory.display());
                for (name, value) in &info.vars {
                    say!("  {name}: {value}");
                }
            }
            (None, Some(pid)) => say!("starting (pid {pid})"),
            (_, None) => say!("not running in {}", dir.display()),
        }
    }
    Ok(if running.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The lab process recorded in DIR/lab.pid, if it still runs and is a `sortie-lab serve`.
fn running_pid(dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(dir.join("lab.pid")).ok()?;
    let pid: u32 = text.trim().parse().ok()?;
    let cmdline = process::cmdline(pid)?;
    (process::alive(pid) && cmdline.contains("sortie-lab") && cmdline.contains(" serve "))
        .then_some(pid)
}

fn lab_dir(dir: &Path) -> Result<PathBuf, LabError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| LabError::io(format!("creating {}", dir.display()), e))?;
    std::fs::canonicalize(dir).map_err(|e| LabError::io(format!("resolving {}", dir.display()), e))
}

/// `h02` → 1 (the index of host h02); `h1`, `h001` too.
fn parse_host_name(text: &str) -> Result<usize, String> {
    let bad = || format!("`{text}` is not a lab host name: write it as h01, h02, …");
    let number: usize = text
        .trim()
        .strip_prefix('h')
        .ok_or_else(bad)?
        .parse()
        .map_err(|_| bad())?;
    number.checked_sub(1).ok_or_else(bad)
}

/// `90`, `90s`, `30m`, `3h`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("`{text}`: use s, m or h")),
    };
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("3h"), Ok(Duration::from_secs(10800)));
        assert!(parse_duration("3d").is_err());
    }

    #[test]
    fn host_names() {
        assert_eq!(parse_host_name("h02"), Ok(1));
        assert_eq!(parse_host_name("h001"), Ok(0));
        assert!(parse_host_name("h00").is_err());
        assert!(parse_host_name("web").is_err());
    }
}
