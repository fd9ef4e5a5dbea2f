//! Process control for the lab: signals by PID, process trees read from `/proc`, bounded waits.
//!
//! The PIDs come from the children the lab spawned (or from `lab.json`); nothing here looks a
//! process up by name. `sshd` puts every connection in a session of its own (`setsid`), so a
//! process group does not hold a host's sessions: its tree is followed through `/proc/*/stat`'s
//! parent PIDs instead, while the tree is stopped, so nothing escapes by re-parenting.

use std::collections::BTreeSet;
use std::process::Child;
use std::thread::sleep;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

/// Sends `signal` to `pid`; false when there is no such process (or it is not ours).
pub fn signal(pid: u32, signal: Signal) -> bool {
    match i32::try_from(pid).ok().and_then(Pid::from_raw) {
        Some(pid) => kill_process(pid, signal).is_ok(),
        None => false,
    }
}

/// One line of `/proc/PID/stat`: (state, parent PID).
fn stat(pid: u32) -> Option<(char, u32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: read after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// True while `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    matches!(stat(pid), Some((state, _)) if state != 'Z' && state != 'X')
}

/// When `pid` started (clock ticks after boot): with the PID, it names one process for good,
/// where a PID alone may be reused.
pub fn start_time(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    // Field 22 of stat; `rest` starts at field 3.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The NUL-separated command line of `pid`, joined with spaces.
pub fn cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let text = String::from_utf8_lossy(&raw);
    Some(text.trim_end_matches('\0').replace('\0', " "))
}

/// Every live descendant of `root` (not `root` itself), read from `/proc`.
pub fn descendants(root: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let parents: Vec<(u32, u32)> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| stat(pid).map(|(_, ppid)| (pid, ppid)))
        .collect();
    let mut found = BTreeSet::new();
    let mut frontier = vec![root];
    // Each round adds one generation; a process tree deeper than this is not sshd's.
    for _ in 0..64 {
        let next: Vec<u32> = parents
            .iter()
            .filter(|(pid, ppid)| frontier.contains(ppid) && !found.contains(pid))
            .map(|(pid, _)| *pid)
            .collect();
        if next.is_empty() {
            break;
        }
        found.extend(next.iter().copied());
        frontier = next;
    }
    found.into_iter().collect()
}

/// Stops `root` and every descendant with SIGSTOP (so none can fork or be re-parented unseen),
/// then sends them all `signal` and SIGCONT. Returns the PIDs signalled, `root` first.
pub fn signal_tree(root: u32, sig: Signal) -> Vec<u32> {
    let mut all = vec![root];
    signal(root, Signal::STOP);
    // Stopping is asynchronous; a few rounds catch children forked meanwhile.
    for _ in 0..5 {
        let more: Vec<u32> = descendants(root)
            .into_iter()
            .filter(|p| !all.contains(p))
            .collect();
        if more.is_empty() {
            break;
        }
        for pid in &more {
            signal(*pid, Signal::STOP);
        }
        all.extend(more);
    }
    for pid in &all {
        signal(*pid, sig);
        signal(*pid, Signal::CONT);
    }
    all
}

/// Waits until none of `pids` is alive, or `timeout` passes; true when all are gone.
pub fn wait_gone(pids: &[u32], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if pids.iter().all(|p| !alive(*p)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(Duration::from_millis(10));
    }
}

/// Waits for a child we spawned to exit, reaping it; `None` when it is still running at `timeout`.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => sleep(Duration::from_millis(5)),
            // An error means it was already reaped: treat as gone.
            Err(_) => return None,
            Ok(None) => return None,
        }
    }
}

/// SIGTERM to a spawned child and its tree, SIGKILL after `grace`, then reaps the child.
pub fn terminate_child(child: &mut Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let tree = signal_tree(child.id(), Signal::TERM);
    if wait_child(child, grace).is_none() {
        for pid in &tree {
            signal(*pid, Signal::KILL);
        }
        let _ = wait_child(child, Duration::from_secs(2));
    }
    // Sessions re-parented away from the listener may linger after it exits.
    let rest: Vec<u32> = tree[1..].to_vec();
    if !wait_gone(&rest, grace) {
        for pid in &rest {
            signal(*pid, Signal::KILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn tree_of_a_shell_is_found_and_killed() {
        let mut child = Command::new("/bin/sh")
            .args(["-c", "sleep 30 & sleep 30 & wait"])
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while descendants(child.id()).len() < 2 && Instant::now() < deadline {
            sleep(Duration::from_millis(10));
        }
        let kids = descendants(child.id());
        assert_eq!(kids.len(), 2, "{kids:?}");
        assert!(cmdline(kids[0]).unwrap().starts_with("sleep 30"));
        terminate_child(&mut child, Duration::from_secs(2));
        assert!(wait_gone(&kids, Duration::from_secs(2)));
        assert!(!alive(child.id()));
    }
}
