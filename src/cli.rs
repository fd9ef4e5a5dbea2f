//! The command line: clap derive types only. `main.rs` parses these and hands them to `app`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// What `sortie --version` prints after the name: the package version and the git commit the
/// binary was built from (`build.rs`; `-dirty` when tracked files had changes, `unknown`
/// outside a git checkout).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("SORTIE_GIT_COMMIT"),
    ")"
);

/// sortie: run declarative YAML playbooks of network steps — ssh, sftp_put, sftp_get, http,
/// dns, tcp — across a host inventory, concurrently, and report what happened on every host.
#[derive(Parser, Debug)]
#[command(name = "sortie", version = VERSION, long_about = None)]
#[command(
    after_help = "Exit codes: 0 every host ok · 1 a step failed · 2 a host unreachable · 3 invalid input · 4 interrupted"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a playbook against the inventory's hosts.
    Run(RunArgs),
    /// Parse and validate a playbook (and inventory); compile every template; run nothing.
    Check(CheckArgs),
    /// Show the rendered task graph for each host; run nothing.
    Plan(PlanArgs),
    /// Show an inventory's hosts, groups and merged variables.
    Inventory(InventoryArgs),
    /// Print a JSON Schema (playbook, inventory or report).
    Schema(SchemaArgs),
    /// Work with saved reports: `merge` joins shard reports into one, `html` renders the
    /// HTML page of one.
    Report(ReportArgs),
    /// Print a shell completion script (bash, zsh or fish).
    ///
    /// Install it where the shell looks: bash, `sortie completions bash >
    /// ~/.local/share/bash-completion/completions/sortie`; zsh, as `_sortie` in a directory of
    /// `$fpath`; fish, `sortie completions fish > ~/.config/fish/completions/sortie.fish`.
    Completions(CompletionsArgs),
    /// Print a man page in roff: sortie(1), or a command's own (`sortie man run`).
    ///
    /// Read it with `sortie man | man -l -`, or install it as `man1/sortie.1` under a
    /// directory of `manpath`.
    Man(ManArgs),
    /// Run the playbook on start and every `--every`, and serve the results over HTTP:
    /// /healthz, /metrics (Prometheus), /report.json, / (the HTML page), /probe?host=H.
    Serve(ServeArgs),
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// The playbook file.
    pub playbook: PathBuf,
    /// Inventory file(s): native YAML, Ansible INI or Ansible YAML. Default: localhost only.
    #[arg(short, long = "inventory", value_name = "INVENTORY")]
    pub inventory: Vec<PathBuf>,
    /// Limit to hosts matching this pattern (`web:!canary`).
    #[arg(short, long, value_name = "PATTERN")]
    pub limit: Option<String>,
    /// Extra variables: KEY=VALUE, @vars.yml, or a YAML/JSON mapping. Highest precedence.
    #[arg(short = 'e', long = "extra-vars", value_name = "KEY=VALUE|@FILE")]
    pub extra_vars: Vec<String>,
    /// Hosts in flight at once (overrides the play's strategy.concurrency).
    #[arg(short = 'c', long, value_name = "N")]
    pub concurrency: Option<usize>,
    /// Run only steps with one of these tags.
    #[arg(long, value_delimiter = ',', value_name = "T,..")]
    pub tags: Vec<String>,
    /// Skip steps with any of these tags.
    #[arg(long, value_delimiter = ',', value_name = "T,..")]
    pub skip_tags: Vec<String>,
    /// Render and plan every task for every host without connecting to anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Output: live view on a terminal (human), plain lines (plain), or JSON events (json).
    #[arg(long, value_enum, default_value_t = Format::Auto)]
    pub format: Format,
    /// Write the whole run as JSON (schemas/report.schema.json).
    #[arg(long, value_name = "FILE.json")]
    pub report: Option<PathBuf>,
    /// Write JUnit XML (a testcase per host × step).
    #[arg(long, value_name = "FILE.xml")]
    pub junit: Option<PathBuf>,
    /// Write TAP 14.
    #[arg(long, value_name = "FILE")]
    pub tap: Option<PathBuf>,
    /// Write the HTML report: one self-contained page (summary, failures, timeline).
    #[arg(long, value_name = "FILE.html")]
    pub html: Option<PathBuf>,
    /// Run only the hosts that failed or were unreachable in this report.
    #[arg(long, value_name = "REPORT.json")]
    pub retry_failed: Option<PathBuf>,
    /// Run only the I-th of N slices of the selected hosts (0-based, by a stable hash of each
    /// host's name); `auto` takes I and N from a Kubernetes Indexed Job, a Slurm job array or
    /// a GitLab parallel job. `sortie report merge` joins the shards' reports.
    #[arg(long, value_name = "I/N|auto")]
    pub shard: Option<String>,
    /// The run's id in its reports (default: SORTIE_RUN_ID, else the Slurm array's or GitLab
    /// pipeline's id, else a fresh one): give every shard of one run the same.
    #[arg(long, value_name = "ID")]
    pub run_id: Option<String>,
    /// Show each task's outputs.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Auto,
    Human,
    Plain,
    Json,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The playbook file.
    pub playbook: PathBuf,
    /// Inventory file(s) to check too (and to check the plays' host patterns against).
    #[arg(short, long = "inventory", value_name = "INVENTORY")]
    pub inventory: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// The playbook file.
    pub playbook: PathBuf,
    /// Inventory file(s).
    #[arg(short, long = "inventory", value_name = "INVENTORY")]
    pub inventory: Vec<PathBuf>,
    /// Show only this host.
    #[arg(long, value_name = "H")]
    pub host: Option<String>,
    /// Limit to hosts matching this pattern.
    #[arg(short, long, value_name = "PATTERN")]
    pub limit: Option<String>,
    /// Extra variables, as for `run`.
    #[arg(short = 'e', long = "extra-vars", value_name = "KEY=VALUE|@FILE")]
    pub extra_vars: Vec<String>,
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanFormat {
    Text,
    Json,
    Dot,
}

#[derive(Args, Debug)]
pub struct InventoryArgs {
    /// Inventory file(s).
    #[arg(short, long = "inventory", value_name = "INVENTORY", required = true)]
    pub inventory: Vec<PathBuf>,
    /// Every host with its merged variables and its connection, as JSON (the default).
    #[arg(long, conflicts_with_all = ["graph", "host"])]
    pub list: bool,
    /// The group tree with its hosts.
    #[arg(long, conflicts_with = "host")]
    pub graph: bool,
    /// One host's merged variables and the connection sortie will make (address, port, user,
    /// keys, jump hosts, known_hosts, host key policy) after the inventory and ssh_config are
    /// applied, as JSON: sortie's `ssh -G`.
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
    /// Only hosts matching this pattern.
    #[arg(short, long, value_name = "PATTERN")]
    pub limit: Option<String>,
    /// Only the hosts of this shard (`I/N` or `auto`, as for `run`).
    #[arg(long, value_name = "I/N|auto")]
    pub shard: Option<String>,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    #[command(subcommand)]
    pub command: ReportCommand,
}

#[derive(Subcommand, Debug)]
pub enum ReportCommand {
    /// Join shard reports (`run --shard I/N --report F`) into one report, as if one run had
    /// done it all; exit with the code that run would have had.
    Merge(MergeArgs),
    /// Render the HTML page of a saved report (`sortie run --report FILE.json`).
    Html(ReportHtmlArgs),
}

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// Every shard's JSON report.
    #[arg(required = true, value_name = "REPORT.json")]
    pub reports: Vec<PathBuf>,
    /// Write the merged report as JSON (default: on stdout).
    #[arg(long, value_name = "FILE.json")]
    pub report: Option<PathBuf>,
    /// Write JUnit XML.
    #[arg(long, value_name = "FILE.xml")]
    pub junit: Option<PathBuf>,
    /// Write TAP 14.
    #[arg(long, value_name = "FILE")]
    pub tap: Option<PathBuf>,
    /// Write the HTML page of the merged report.
    #[arg(long, value_name = "FILE.html")]
    pub html: Option<PathBuf>,
    /// Merge even when shards are missing: the report lists them, and exits 2 (their hosts
    /// were not reached).
    #[arg(long)]
    pub partial: bool,
}

#[derive(Args, Debug)]
pub struct SchemaArgs {
    /// Which schema.
    #[arg(value_enum, default_value_t = SchemaKind::Playbook)]
    pub which: SchemaKind,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchemaKind {
    Playbook,
    Inventory,
    Report,
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// A command whose own page to print (`run` prints sortie-run(1)); default: sortie(1).
    #[arg(value_name = "COMMAND")]
    pub command: Option<String>,
    /// Write every page (sortie.1, sortie-run.1, …) into this directory instead.
    #[arg(long, value_name = "DIR", conflicts_with = "command")]
    pub dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ReportHtmlArgs {
    /// The JSON report.
    #[arg(value_name = "REPORT.json")]
    pub report: PathBuf,
    /// Where to write the page (default: stdout).
    #[arg(short, long, value_name = "FILE.html")]
    pub output: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// The playbook file.
    pub playbook: PathBuf,
    /// Inventory file(s), as for `run`.
    #[arg(short, long = "inventory", value_name = "INVENTORY")]
    pub inventory: Vec<PathBuf>,
    /// Where to listen for HTTP (ADDR:PORT).
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:9108")]
    pub listen: String,
    /// Time between the starts of scheduled runs (a run that takes longer delays the next).
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    pub every: String,
    /// Limit to hosts matching this pattern.
    #[arg(short, long, value_name = "PATTERN")]
    pub limit: Option<String>,
    /// Extra variables, as for `run`.
    #[arg(short = 'e', long = "extra-vars", value_name = "KEY=VALUE|@FILE")]
    pub extra_vars: Vec<String>,
    /// Hosts in flight at once (overrides the play's strategy.concurrency).
    #[arg(short = 'c', long, value_name = "N")]
    pub concurrency: Option<usize>,
    /// Run only steps with one of these tags.
    #[arg(long, value_delimiter = ',', value_name = "T,..")]
    pub tags: Vec<String>,
    /// Skip steps with any of these tags.
    #[arg(long, value_delimiter = ',', value_name = "T,..")]
    pub skip_tags: Vec<String>,
    /// Probes (/probe?host=H) running at once at most; more wait for a slot.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub probe_concurrency: usize,
    /// How long a probe's result is answered again without running the host anew.
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub probe_cache: String,
}
