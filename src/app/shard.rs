//! `--shard I/N` and `--shard auto`, for `run` and `inventory --list`: the flag's text, or the
//! scheduler's environment, turned into the engine's `Shard`. `auto` reads, in this order,
//! a Kubernetes Indexed Job (`JOB_COMPLETION_INDEX`, N from `SORTIE_SHARDS`), a Slurm job
//! array (`SLURM_ARRAY_TASK_ID` less `SLURM_ARRAY_TASK_MIN`, over `SLURM_ARRAY_TASK_STEP`, N
//! from `SLURM_ARRAY_TASK_COUNT`) and a GitLab `parallel:` job (`CI_NODE_INDEX`, 1-based, N
//! from `CI_NODE_TOTAL`). The same places give the default run id, so every shard of one job
//! reports the same one: `SORTIE_RUN_ID`, else Slurm's `SLURM_ARRAY_JOB_ID` or GitLab's
//! `CI_PIPELINE_ID`. A missing or malformed variable is invalid input (exit 3) that says what
//! to set. Input: the flag and an environment lookup; output: a `Shard` and where it came from.

use crate::diag::Diagnostic;
use crate::exec::Shard;

/// A shard and where it came from (`--shard 1/4`, `a Slurm job array`, …), for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chosen {
    pub shard: Shard,
    pub source: String,
}

/// What `auto` tells the user to set when no scheduler is found.
const AUTO_HELP: &str = "`--shard auto` reads a Kubernetes Indexed Job (JOB_COMPLETION_INDEX, with SORTIE_SHARDS set to the Job's completions), a Slurm job array (SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_COUNT) or a GitLab `parallel:` job (CI_NODE_INDEX, CI_NODE_TOTAL); elsewhere give `--shard I/N`";

/// Reads `--shard`'s value with `env` as the environment.
pub fn parse(flag: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Chosen, Diagnostic> {
    if flag == "auto" {
        return auto(env);
    }
    let bad = || {
        Diagnostic::error(format!("`--shard {flag}` is not I/N or auto"))
            .help("give the 0-based shard and the number of shards, e.g. `--shard 0/4` … `--shard 3/4`, or `--shard auto` under a scheduler")
    };
    let (i, n) = flag.split_once('/').ok_or_else(bad)?;
    let (index, count) = match (i.trim().parse::<u32>(), n.trim().parse::<u32>()) {
        (Ok(i), Ok(n)) => (i, n),
        _ => return Err(bad()),
    };
    check(Shard { index, count }, format!("--shard {flag}"))
}

/// The run id the environment gives every shard of one job, if it gives one.
pub fn env_run_id(env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    ["SORTIE_RUN_ID", "SLURM_ARRAY_JOB_ID", "CI_PIPELINE_ID"]
        .iter()
        .find_map(|k| env(k).filter(|v| !v.trim().is_empty()))
}

/// The process environment, as `parse` wants it.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn check(shard: Shard, source: String) -> Result<Chosen, Diagnostic> {
    if shard.count == 0 {
        return Err(
            Diagnostic::error(format!("{source}: there must be at least one shard"))
                .help("shards are numbered from 0 to N-1: `--shard 0/4` … `--shard 3/4`"),
        );
    }
    if shard.index >= shard.count {
        return Err(Diagnostic::error(format!(
            "{source}: shard {} of {} does not exist",
            shard.index, shard.count
        ))
        .help("shards are numbered from 0 to N-1: `--shard 0/4` … `--shard 3/4`"));
    }
    Ok(Chosen { shard, source })
}

/// A variable that must hold a whole number.
fn number(env: &dyn Fn(&str) -> Option<String>, name: &str, what: &str) -> Result<u32, Diagnostic> {
    let v = env(name).ok_or_else(|| {
        Diagnostic::error(format!("`--shard auto` under {what}: {name} is not set"))
            .help(format!("set {name}; {AUTO_HELP}"))
    })?;
    v.trim().parse::<u32>().map_err(|_| {
        Diagnostic::error(format!(
            "`--shard auto` under {what}: {name}=`{v}` is not a whole number"
        ))
        .help(AUTO_HELP)
    })
}

fn auto(env: &dyn Fn(&str) -> Option<String>) -> Result<Chosen, Diagnostic> {
    let set = |k: &str| env(k).is_some_and(|v| !v.is_empty());
    if set("JOB_COMPLETION_INDEX") {
        let what = "a Kubernetes Indexed Job";
        let index = number(env, "JOB_COMPLETION_INDEX", what)?;
        let count = number(env, "SORTIE_SHARDS", what).map_err(|d| {
            d.help("Kubernetes does not tell a pod how many completions its Job has: set SORTIE_SHARDS in the pod's env to the Job's `completions`")
        })?;
        return check(Shard { index, count }, what.into());
    }
    if set("SLURM_ARRAY_TASK_ID") {
        return slurm(env);
    }
    if set("CI_NODE_INDEX") {
        let what = "a GitLab parallel job";
        let index = number(env, "CI_NODE_INDEX", what)?;
        let count = number(env, "CI_NODE_TOTAL", what)?;
        if index == 0 {
            return Err(Diagnostic::error(
                "`--shard auto` under a GitLab parallel job: CI_NODE_INDEX=0, but GitLab counts from 1",
            )
            .help(AUTO_HELP));
        }
        return check(
            Shard {
                index: index - 1,
                count,
            },
            what.into(),
        );
    }
    Err(Diagnostic::error("`--shard auto` found no scheduler in the environment").help(AUTO_HELP))
}

/// A Slurm array's task: arrays need not start at 0 (`--array=1-4`) and may step
/// (`--array=0-30:10`); one with gaps (`--array=1,3,7`) cannot be numbered from its ids alone.
fn slurm(env: &dyn Fn(&str) -> Option<String>) -> Result<Chosen, Diagnostic> {
    let what = "a Slurm job array";
    let id = number(env, "SLURM_ARRAY_TASK_ID", what)?;
    let count = number(env, "SLURM_ARRAY_TASK_COUNT", what)?;
    let min = match env("SLURM_ARRAY_TASK_MIN") {
        Some(_) => number(env, "SLURM_ARRAY_TASK_MIN", what)?,
        None => 0,
    };
    let step = match env("SLURM_ARRAY_TASK_STEP") {
        Some(_) => number(env, "SLURM_ARRAY_TASK_STEP", what)?.max(1),
        None => 1,
    };
    let offset = id.checked_sub(min).unwrap_or(u32::MAX);
    let index = offset / step;
    if offset % step != 0 || index >= count {
        return Err(Diagnostic::error(format!(
            "`--shard auto` under a Slurm job array: task {id} is not one of {count} evenly spaced tasks from {min} (step {step})"
        ))
        .help("submit a contiguous array (`sbatch --array=0-3`, or `--array=0-30:10`), or give `--shard I/N` yourself"));
    }
    check(Shard { index, count }, what.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    fn shard(flag: &str, vars: &[(&str, &str)]) -> Result<(u32, u32), String> {
        parse(flag, &env_of(vars))
            .map(|c| (c.shard.index, c.shard.count))
            .map_err(|d| format!("{} | {}", d.title, d.help.unwrap_or_default()))
    }

    #[test]
    fn explicit_shards() {
        assert_eq!(shard("0/4", &[]), Ok((0, 4)));
        assert_eq!(shard("3/4", &[]), Ok((3, 4)));
        assert_eq!(shard("0/1", &[]), Ok((0, 1)));
        for bad in ["4/4", "1/0", "x/4", "1", "-1/4", "1/4/2", ""] {
            assert!(shard(bad, &[]).is_err(), "{bad}");
        }
        assert!(shard("4/4", &[]).unwrap_err().contains("does not exist"));
    }

    #[test]
    fn kubernetes_indexed_job() {
        let k = [("JOB_COMPLETION_INDEX", "2"), ("SORTIE_SHARDS", "5")];
        assert_eq!(shard("auto", &k), Ok((2, 5)));
        let e = shard("auto", &[("JOB_COMPLETION_INDEX", "2")]).unwrap_err();
        assert!(e.contains("SORTIE_SHARDS is not set"), "{e}");
        assert!(e.contains("completions"), "{e}");
        let e = shard(
            "auto",
            &[("JOB_COMPLETION_INDEX", "5"), ("SORTIE_SHARDS", "5")],
        );
        assert!(e.unwrap_err().contains("does not exist"));
    }

    #[test]
    fn slurm_arrays_from_zero_from_one_with_steps_and_gaps() {
        let a = |id: &str, count: &str, min: &str, step: &str| {
            shard(
                "auto",
                &[
                    ("SLURM_ARRAY_TASK_ID", id),
                    ("SLURM_ARRAY_TASK_COUNT", count),
                    ("SLURM_ARRAY_TASK_MIN", min),
                    ("SLURM_ARRAY_TASK_STEP", step),
                ],
            )
        };
        assert_eq!(a("0", "4", "0", "1"), Ok((0, 4)));
        assert_eq!(a("3", "4", "0", "1"), Ok((3, 4)));
        // --array=1-4
        assert_eq!(a("1", "4", "1", "1"), Ok((0, 4)));
        assert_eq!(a("4", "4", "1", "1"), Ok((3, 4)));
        // --array=2-8:3 (Slurm gives ids 2, 5, 8)
        assert_eq!(a("8", "3", "2", "3"), Ok((2, 3)));
        // --array=1,3,5 (Slurm says min 1, step 1, count 3)
        assert!(a("5", "3", "1", "1").unwrap_err().contains("evenly spaced"));
        let e = shard("auto", &[("SLURM_ARRAY_TASK_ID", "1")]).unwrap_err();
        assert!(e.contains("SLURM_ARRAY_TASK_COUNT is not set"), "{e}");
        // No MIN or STEP (older Slurm): counted from 0.
        let e = [
            ("SLURM_ARRAY_TASK_ID", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "2"),
        ];
        assert_eq!(shard("auto", &e), Ok((1, 2)));
    }

    #[test]
    fn gitlab_counts_from_one() {
        let g = [("CI_NODE_INDEX", "1"), ("CI_NODE_TOTAL", "3")];
        assert_eq!(shard("auto", &g), Ok((0, 3)));
        let g = [("CI_NODE_INDEX", "3"), ("CI_NODE_TOTAL", "3")];
        assert_eq!(shard("auto", &g), Ok((2, 3)));
        let g = [("CI_NODE_INDEX", "0"), ("CI_NODE_TOTAL", "3")];
        assert!(shard("auto", &g).unwrap_err().contains("counts from 1"));
        let g = [("CI_NODE_INDEX", "two"), ("CI_NODE_TOTAL", "3")];
        assert!(
            shard("auto", &g)
                .unwrap_err()
                .contains("not a whole number")
        );
    }

    #[test]
    fn no_scheduler_says_what_to_set() {
        let e = shard("auto", &[("CI_NODE_TOTAL", "1")]).unwrap_err();
        assert!(e.contains("found no scheduler"), "{e}");
        for v in [
            "JOB_COMPLETION_INDEX",
            "SLURM_ARRAY_TASK_ID",
            "CI_NODE_INDEX",
            "--shard I/N",
        ] {
            assert!(e.contains(v), "{e}");
        }
    }

    #[test]
    fn run_id_from_the_scheduler() {
        assert_eq!(env_run_id(&env_of(&[])), None);
        let e = env_of(&[("SLURM_ARRAY_JOB_ID", "41"), ("CI_PIPELINE_ID", "7")]);
        assert_eq!(env_run_id(&e).as_deref(), Some("41"));
        let e = env_of(&[("SORTIE_RUN_ID", "nightly"), ("SLURM_ARRAY_JOB_ID", "41")]);
        assert_eq!(env_run_id(&e).as_deref(), Some("nightly"));
    }
}
