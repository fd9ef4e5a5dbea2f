//! A real Slurm on this machine: munged, slurmctld and slurmd (Debian's `munge` and
//! `slurm-wlm`, installed by scripts/setup) on 127.0.0.1 with a config, state directories,
//! ports and a munge key of this test's own, started and stopped by PID. A job array of 4
//! tasks (`--array=1-4`, so SLURM_ARRAY_TASK_MIN is not 0) runs docs/scale-out.md's batch
//! script (`sortie run --shard auto`) over a lab fleet of 20 sshd hosts, one of which fails a
//! step; `sortie report merge` joins the 4 reports, and the result has the hosts, statuses
//! and exit code of one unsharded run. Every wait is bounded and says what it waited for,
//! with the daemons' logs, when it gives up.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::shard::{PLAYBOOK, outcome};
use crate::harness::{Case, TestLab, finish, sortie_bin};

const MUNGED: &str = "/usr/sbin/munged";
const SLURMCTLD: &str = "/usr/sbin/slurmctld";
const SLURMD: &str = "/usr/sbin/slurmd";

/// A daemon this test started, stopped (SIGTERM, then SIGKILL after 5 s) when dropped.
struct Daemon {
    name: &'static str,
    child: Child,
}

impl Daemon {
    fn start(name: &'static str, cmd: &mut Command, log: &Path) -> Daemon {
        let out = std::fs::File::create(log).expect("daemon log");
        let err = out.try_clone().expect("log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e} (run scripts/setup)"));
        Daemon { name, child }
    }

    /// Panics (with `logs`) if the daemon has exited.
    fn alive(&mut self, logs: &Logs) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited ({status}) during the test\n{}",
                self.name,
                logs.dump()
            );
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The files to show when something goes wrong.
struct Logs(Vec<PathBuf>);

impl Logs {
    fn dump(&self) -> String {
        let mut s = String::new();
        for p in &self.0 {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            s.push_str(&format!("--- {} (last lines)\n", p.display()));
            for l in tail.iter().rev() {
                s.push_str(l);
                s.push('\n');
            }
        }
        s
    }
}

/// Waits up to `limit` for `ready`, checking the daemons between tries.
fn wait_for(
    what: &str,
    limit: Duration,
    daemons: &mut [&mut Daemon],
    logs: &Logs,
    mut ready: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + limit;
    loop {
        if ready() {
            return;
        }
        for d in daemons.iter_mut() {
            d.alive(logs);
        }
        assert!(
            Instant::now() < deadline,
            "gave up after {limit:?} waiting for {what}\n{}",
            logs.dump()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A Slurm client command against this test's cluster; its stdout.
fn slurm(conf: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .env("SLURM_CONF", conf)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e} (run scripts/setup)", args[0]));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn slurm_conf(dir: &Path, ctld_port: u16, slurmd_port: u16) -> String {
    let d = dir.display();
    format!(
        "ClusterName=sortietest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
AuthInfo=socket={d}/munge/munge.sock
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
PlugStackConfig={d}/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MailProg=/bin/true
NodeName=sortie1 NodeHostname=localhost NodeAddr=127.0.0.1 CPUs=4 RealMemory=1000 State=UNKNOWN
PartitionName=sortie Nodes=sortie1 Default=YES MaxTime=10 State=UP
"
    )
}

/// munged, slurmctld and slurmd of this test, in `dir`; dropped in reverse order.
struct Cluster {
    conf: PathBuf,
    logs: Logs,
    slurmd: Daemon,
    slurmctld: Daemon,
    munged: Daemon,
}

impl Cluster {
    fn start(dir: &Path) -> Cluster {
        for bin in [MUNGED, SLURMCTLD, SLURMD] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: run scripts/setup"
            );
        }
        assert!(
            rustix::process::geteuid().is_root(),
            "slurmd needs root to start jobs as their user; run this test as root"
        );
        for sub in ["munge", "state", "spool"] {
            std::fs::create_dir_all(dir.join(sub)).expect("mkdir");
        }
        let mut key = vec![0u8; 1024];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut key))
            .expect("random key");
        let key_file = dir.join("munge/munge.key");
        std::fs::write(&key_file, &key).expect("key");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        std::fs::set_permissions(dir.join("munge"), std::fs::Permissions::from_mode(0o711))
            .expect("chmod");
        let socket = dir.join("munge/munge.sock");
        let logs = Logs(vec![
            dir.join("munged.out"),
            dir.join("slurmctld.log"),
            dir.join("slurmctld.out"),
            dir.join("slurmd.log"),
            dir.join("slurmd.out"),
        ]);
        let mut munged = Daemon::start(
            "munged",
            Command::new(MUNGED)
                .arg("--foreground")
                .arg("--force")
                .arg(format!("--socket={}", socket.display()))
                .arg(format!("--key-file={}", key_file.display()))
                .arg(format!(
                    "--pid-file={}",
                    dir.join("munge/munged.pid").display()
                ))
                .arg(format!("--seed-file={}", dir.join("munge/seed").display()))
                .arg(format!("--log-file={}", dir.join("munged.log").display())),
            &dir.join("munged.out"),
        );
        wait_for(
            "munged's socket",
            Duration::from_secs(15),
            &mut [&mut munged],
            &logs,
            || socket.exists(),
        );
        let conf = dir.join("slurm.conf");
        std::fs::write(dir.join("plugstack.conf"), "").expect("plugstack");
        std::fs::write(&conf, slurm_conf(dir, free_port(), free_port())).expect("conf");
        let mut slurmctld = Daemon::start(
            "slurmctld",
            Command::new(SLURMCTLD)
                .arg("-D")
                .arg("-f")
                .arg(&conf)
                .env("SLURM_CONF", &conf),
            &dir.join("slurmctld.out"),
        );
        let mut slurmd = Daemon::start(
            "slurmd",
            Command::new(SLURMD)
                .args(["-D", "-N", "sortie1", "-f"])
                .arg(&conf)
                .env("SLURM_CONF", &conf),
            &dir.join("slurmd.out"),
        );
        wait_for(
            "the node to be idle (sinfo)",
            Duration::from_secs(30),
            &mut [&mut munged, &mut slurmctld, &mut slurmd],
            &logs,
            || slurm(&conf, &["sinfo", "-h", "-o", "%T"]).1.trim() == "idle",
        );
        Cluster {
            conf,
            logs,
            slurmd,
            slurmctld,
            munged,
        }
    }

    fn wait(&mut self, what: &str, limit: Duration, ready: impl FnMut() -> bool) {
        let logs = Logs(self.logs.0.clone());
        wait_for(
            what,
            limit,
            &mut [&mut self.munged, &mut self.slurmctld, &mut self.slurmd],
            &logs,
            ready,
        );
    }
}

#[test]
fn a_slurm_job_array_of_four_shards_merges_into_one_unsharded_run() {
    let slurm_dir = tempfile::tempdir().expect("tmp");
    let mut cluster = Cluster::start(slurm_dir.path());
    let t = TestLab::start(20);
    let case = Case::new(PLAYBOOK).inventory_file(t.inventory());
    let dir = case.dir.path().to_path_buf();

    // One unsharded run: the reference.
    let whole = case.run();
    assert_eq!(whole.code, 1, "{}", whole.all());
    let whole_r = whole.report.clone().expect("report");
    assert_eq!(whole_r["hosts"]["hosts"], 20);
    assert_eq!(whole_r["hosts"]["failed"], 1);

    // The array's batch script exactly as docs/scale-out.md has it, submitted as
    // `--array=1-4` (so SLURM_ARRAY_TASK_MIN is 1), with `sortie` on PATH.
    let script = dir.join("shard.sbatch");
    std::fs::write(&script, super::shard::recipe("slurm")).expect("script");
    std::fs::copy(t.inventory(), dir.join("inventory.yml")).expect("inventory");
    std::fs::create_dir_all(dir.join("reports")).expect("mkdir");
    let path = format!(
        "{}:{}",
        sortie_bin().parent().expect("bin dir").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("sbatch")
        .args(["--parsable", "--array=1-4", "--chdir"])
        .arg(&dir)
        .arg(&script)
        .env("SLURM_CONF", &cluster.conf)
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("sbatch (run scripts/setup)");
    let job = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success(),
        "sbatch: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        cluster.logs.dump()
    );
    let conf = cluster.conf.clone();
    let reports: Vec<PathBuf> = (1..=4)
        .map(|i| dir.join(format!("reports/shard-{i}.json")))
        .collect();
    cluster.wait(
        "the job array to finish (squeue)",
        Duration::from_secs(90),
        || {
            slurm(&conf, &["squeue", "-h", "-j", &job])
                .1
                .trim()
                .is_empty()
        },
    );
    let task_log =
        |task: usize| std::fs::read_to_string(dir.join(format!("reports/slurm-{task}.out")));
    for (i, r) in reports.iter().enumerate() {
        assert!(
            r.exists(),
            "task {} wrote no report: {:?}",
            i + 1,
            task_log(i + 1)
        );
    }

    // Every task succeeded as Slurm sees it (the recipe lets 1 and 2 through); the shard
    // with h03 says 1 in its report.
    let (_, jobs) = slurm(&conf, &["scontrol", "-o", "show", "job", &job]);
    let mut seen_shards = Vec::new();
    let mut codes = Vec::new();
    for (i, p) in reports.iter().enumerate() {
        let r: Value = serde_json::from_str(&std::fs::read_to_string(p).expect("report"))
            .expect("report JSON");
        let task = i + 1;
        let log = task_log(task);
        assert_eq!(r["shards"], 4, "{log:?}");
        assert_eq!(r["run_id"], job.as_str(), "the array's job id: {log:?}");
        seen_shards.push(r["shard"].as_u64().expect("shard"));
        codes.push(r["exit_code"].as_i64().expect("code"));
        let line = jobs
            .lines()
            .find(|l| l.contains(&format!("ArrayTaskId={task} ")))
            .unwrap_or_else(|| panic!("task {task} in scontrol:\n{jobs}"));
        assert!(
            line.contains("ExitCode=0:0"),
            "task {task}: {line}\n{log:?}"
        );
    }
    assert_eq!(
        seen_shards,
        vec![0, 1, 2, 3],
        "task N is shard N - SLURM_ARRAY_TASK_MIN"
    );
    codes.sort_unstable();
    assert_eq!(codes, vec![0, 0, 0, 1], "one shard has the failing host");

    let merged_path = dir.join("merged.json");
    let mut c = Command::new(sortie_bin());
    c.args(["report", "merge"])
        .args(&reports)
        .arg("--report")
        .arg(&merged_path);
    let merged = finish(c, Some(&merged_path));
    assert_eq!(merged.code, whole.code, "{}", merged.all());
    let m = merged.report.clone().expect("merged");
    assert_eq!(outcome(&m), outcome(&whole_r), "{}", merged.all());
    assert_eq!(m["hosts"], whole_r["hosts"]);
    assert_eq!(m["tasks"], whole_r["tasks"]);
    assert_eq!(m["run_id"], job.as_str());
    drop(t);
    drop(cluster);
}
