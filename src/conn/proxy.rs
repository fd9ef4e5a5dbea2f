//! ProxyCommand: a hop's SSH connection carried by a command's stdin and stdout instead of
//! TCP, as OpenSSH runs it (sshconnect.c): `$SHELL -c "exec COMMAND"` (`/bin/sh` when
//! `SHELL` is unset or not an absolute path: `ssh_config::user_shell`), its stdin and stdout
//! one end of a `UnixStream::pair()`, the other end handed to libssh2 as its socket by
//! `connect.rs` (as `jump.rs` does for a jump host). The first `STDERR_KEPT` bytes
//! of its stderr are kept for the error when the connection fails (`Proxy::explain`). The
//! `ProxyStream` is owned by the session: when the session goes, the command gets SIGHUP (as
//! ssh sends it; its default action restored in the child, so `nohup sortie …` still ends
//! it), SIGKILL if it is still there a second later, and is reaped.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Bytes of the command's stderr kept for the error message; the rest is read and dropped.
const STDERR_KEPT: usize = 4096;
/// How long a command has to go after SIGHUP before SIGKILL.
const HANGUP_GRACE: Duration = Duration::from_secs(1);
/// How long a failed connection waits for the command to exit and finish its stderr.
const EXPLAIN_WAIT: Duration = Duration::from_millis(500);

/// The running command, as the connecting code sees it: for the error when it fails.
pub struct Proxy {
    command: String,
    child: Arc<Mutex<Child>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_done: Arc<AtomicBool>,
}

/// The session's end of the pair; dropping it ends the command.
pub struct ProxyStream {
    sock: UnixStream,
    child: Arc<Mutex<Child>>,
}

/// Starts `command` (tokens already expanded) with its stdin and stdout on a new pair.
pub fn spawn(command: &str) -> std::io::Result<(Proxy, ProxyStream)> {
    let (mine, theirs) = UnixStream::pair()?;
    let theirs_out = theirs.try_clone()?;
    let mut cmd = Command::new(super::ssh_config::user_shell());
    cmd.arg("-c")
        .arg(format!("exec {command}"))
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::from(OwnedFd::from(theirs_out)))
        .stderr(Stdio::piped());
    // The SIGHUP that ends the command must reach it even when sortie runs under `nohup`
    // (an ignored signal stays ignored across exec): its default action is restored in the
    // child. Seen in CI started under nohup: a command left running once sortie had exited.
    // SAFETY: between fork and exec only `signal`, which is async-signal-safe, is called; it
    // touches no memory of the parent's.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGHUP, libc::SIG_DFL);
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let stderr_done = Arc::new(AtomicBool::new(false));
    if let Some(mut pipe) = child.stderr.take() {
        let (kept, done) = (stderr.clone(), stderr_done.clone());
        let read = move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut k = lock(&kept);
                let room = STDERR_KEPT.saturating_sub(k.len());
                k.extend_from_slice(&buf[..n.min(room)]);
            }
            done.store(true, Ordering::Release);
        };
        std::thread::Builder::new()
            .name("sortie-proxy-stderr".into())
            .spawn(read)?;
    } else {
        stderr_done.store(true, Ordering::Release);
    }
    let child = Arc::new(Mutex::new(child));
    let proxy = Proxy {
        command: command.to_string(),
        child: child.clone(),
        stderr,
        stderr_done,
    };
    Ok((proxy, ProxyStream { sock: mine, child }))
}

impl Proxy {
    /// `reason` (why the SSH connection failed) with what the command did: whether it
    /// exited, and how, and what it wrote on stderr. Waits a moment for it to finish.
    pub fn explain(&self, reason: &str) -> String {
        let deadline = Instant::now() + EXPLAIN_WAIT;
        let status = loop {
            let status = lock(&self.child).try_wait().ok().flatten();
            let done = status.is_some() && self.stderr_done.load(Ordering::Acquire);
            if done || Instant::now() >= deadline {
                break status;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let said = String::from_utf8_lossy(&lock(&self.stderr))
            .trim()
            .to_string();
        let how = match status {
            Some(s) => format!("exited ({})", exit_text(s)),
            None => "was running".to_string(),
        };
        let said = if said.is_empty() {
            "it wrote nothing on stderr".to_string()
        } else {
            format!("its stderr: {said}")
        };
        format!(
            "through ProxyCommand `{}`, which {how}: {reason}; {said}",
            self.command
        )
    }
}

fn exit_text(s: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("status {c}"),
        (None, Some(sig)) => format!("signal {sig}"),
        _ => s.to_string(),
    }
}

impl AsRawFd for ProxyStream {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

impl AsFd for ProxyStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl Drop for ProxyStream {
    fn drop(&mut self) {
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
        // SIGHUP now, as ssh sends it when it is done (so it is sent even if the run ends
        // right after); the wait, SIGKILL and reaping off the caller's thread.
        hang_up(&mut lock(&self.child));
        let child = self.child.clone();
        let spawned = std::thread::Builder::new()
            .name("sortie-proxy-reap".into())
            .spawn({
                let child = child.clone();
                move || end(&child)
            });
        if spawned.is_err() {
            end(&child);
        }
    }
}

/// SIGHUP to the command by its PID, unless it has exited (it is a child not yet reaped, so
/// the PID is still its own).
fn hang_up(c: &mut Child) {
    if matches!(c.try_wait(), Ok(None))
        && let Some(pid) = i32::try_from(c.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::HUP);
    }
}

/// Reaps the command, with SIGKILL if it is still there `HANGUP_GRACE` after the SIGHUP.
fn end(child: &Mutex<Child>) {
    let deadline = Instant::now() + HANGUP_GRACE;
    while Instant::now() < deadline {
        if matches!(lock(child).try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut c = lock(child);
    let _ = c.kill();
    let _ = c.wait();
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
