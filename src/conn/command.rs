//! Remote commands, each on a channel of its own over the host's `Live` session (`session.rs`):
//! `HostConn::exec` (`mod.rs`, for the `ssh` kind) and `Remote::exec` (`sftp.rs`, for the
//! transfers' checksums and renames) await `Live::exec` here, in tasks of their own. The
//! command's stdin is fed, its stdout and stderr kept within a limit (`Capture`), its process
//! group found (a PID line the wrapper prints first on stderr, `ExecState`) so that a cancelled
//! step can stop the whole command, and its exit status or signal turned into an `rc`
//! (`ExecOutput`, returned to the caller).

use std::io::{Read, Write};
use std::time::Duration;

use ssh2::Channel;

use super::session::{Ctl, E, Live, Mode, OpError};

/// What a remote command left.
#[derive(Clone, Debug, Default)]
pub struct ExecOutput {
    /// The exit status; with a signal, 128 + its number (as shells report it).
    pub rc: i64,
    /// The signal that ended the command (`TERM`, `KILL`, …).
    pub signal: Option<String>,
    pub stdout: Vec<u8>,
    pub stdout_dropped: u64,
    pub stderr: Vec<u8>,
    pub stderr_dropped: u64,
}

impl Live {
    /// Runs `command` on a channel of its own: feeds `stdin`, keeps at most `limit` bytes of
    /// each output stream. Cancelled, it signals the command's process group and closes the
    /// channel.
    pub async fn exec(
        &self,
        ctl: &Ctl,
        command: &str,
        stdin: Option<&[u8]>,
        limit: usize,
    ) -> Result<ExecOutput, OpError> {
        let _a = self.enter();
        let mut ch = self
            .open(|| self.sess.channel_session().map_err(E::from))
            .await?;
        // The login shell's PID is the process group sshd made for the command (sshd calls
        // setsid): printed first on stderr (and taken off it), it lets a timeout stop the
        // whole command the way `ssh` does for a "signal" request.
        let script = format!("printf '{PID_MARK}%s\\n' \"$$\" >&2\n{command}");
        self.hold(|| ch.exec(&script).map_err(E::from)).await?;
        let mut st = ExecState::new(limit);
        match self.exec_io(ctl, &mut ch, stdin, &mut st).await {
            Ok(()) => {
                let signal = ch.exit_signal().ok().and_then(|s| s.exit_signal);
                let rc = match &signal {
                    Some(s) => 128 + i64::from(signal_number(s)),
                    None => i64::from(ch.exit_status().unwrap_or(-1)),
                };
                let _ = self.hold(|| ch.close().map_err(E::from)).await;
                self.release(ch).await;
                Ok(st.finish(rc, signal))
            }
            Err(OpError::Cancelled) => {
                Box::pin(self.abort(&mut ch, st.pid)).await;
                self.release(ch).await;
                Err(OpError::Cancelled)
            }
            Err(e) => {
                self.release(ch).await;
                Err(e)
            }
        }
    }

    async fn exec_io(
        &self,
        ctl: &Ctl,
        ch: &mut Channel,
        stdin: Option<&[u8]>,
        st: &mut ExecState,
    ) -> Result<(), OpError> {
        let input = stdin.unwrap_or_default();
        let mut off = 0;
        let mut eof_sent = false;
        let (mut out_eof, mut err_eof) = (false, false);
        loop {
            let mut progress = false;
            if !eof_sent {
                if off < input.len() {
                    let end = (off + 32 * 1024).min(input.len());
                    match self
                        .attempt(|| ch.write(&input[off..end]).map_err(E::from))
                        .await
                    {
                        Ok(Some(n)) => {
                            off += n;
                            progress |= n > 0;
                        }
                        Ok(None) => {}
                        // The command closed its input: the rest is not wanted.
                        Err(OpError::Failed { .. }) => off = input.len(),
                        Err(e) => return Err(e),
                    }
                } else {
                    match self.hold(|| ch.send_eof().map_err(E::from)).await {
                        Ok(()) | Err(OpError::Failed { .. }) => {}
                        Err(e) => return Err(e),
                    }
                    eof_sent = true;
                    progress = true;
                }
            }
            // Read through a buffer on the stack, kept only during the call: a thousand
            // commands waiting for output hold no buffer each (64 KiB each was 62 MiB at
            // 1,000 hosts).
            if !out_eof
                && let Some(n) = self
                    .attempt(|| {
                        let mut buf = [0u8; READ_PIECE];
                        let n = ch.read(&mut buf).map_err(E::from)?;
                        st.out.push(&buf[..n]);
                        Ok(n)
                    })
                    .await?
            {
                out_eof = n == 0;
                progress = true;
            }
            if !err_eof
                && let Some(n) = self
                    .attempt(|| {
                        let mut buf = [0u8; READ_PIECE];
                        let n = ch.stderr().read(&mut buf).map_err(E::from)?;
                        if n > 0 {
                            st.err_head(&buf[..n], false);
                        }
                        Ok(n)
                    })
                    .await?
            {
                if n == 0 {
                    err_eof = true;
                    st.err_head(&[], true);
                }
                progress = true;
            }
            if out_eof && err_eof {
                break;
            }
            if !progress {
                if ctl.stopped() {
                    return Err(OpError::Cancelled);
                }
                self.wait_inbound(ctl).await;
            }
        }
        self.stream(ctl, || ch.wait_close().map_err(E::from)).await
    }

    /// Stops a cancelled command: TERM to its process group (over a channel of its own), then
    /// closes its channel, waiting a little for the server's side of the close.
    async fn abort(&self, ch: &mut Channel, pid: Option<u32>) {
        if let Some(pid) = pid {
            let kill = format!(
                "kill -s TERM -- -{pid} 2>/dev/null || kill -s TERM {pid} 2>/dev/null; true"
            );
            let _ = self
                .exec(&Ctl::within(Duration::from_secs(3)), &kill, None, 4096)
                .await;
        }
        let ctl = Ctl::within(Duration::from_secs(2));
        let _ = self
            .run(&ctl, Mode::Stream, || ch.close().map_err(E::from))
            .await;
    }
}

/// Bytes one read of a command's output takes (libssh2's packets carry at most 32 KiB).
const READ_PIECE: usize = 32 * 1024;

/// Marks the PID line on stderr: a control character no program prints there by chance.
const PID_MARK: &str = "\\036sortie-pid=";
const PID_MARK_BYTES: &[u8] = b"\x1esortie-pid=";

/// Output kept so far, within a limit; the rest counted.
struct Capture {
    kept: Vec<u8>,
    dropped: u64,
    limit: usize,
}

impl Capture {
    fn push(&mut self, b: &[u8]) {
        let room = self.limit.saturating_sub(self.kept.len());
        let take = room.min(b.len());
        self.kept.extend_from_slice(&b[..take]);
        self.dropped += (b.len() - take) as u64;
    }
}

struct ExecState {
    out: Capture,
    err: Capture,
    /// stderr until the PID line was found (or could no longer come).
    head: Option<Vec<u8>>,
    pid: Option<u32>,
}

impl ExecState {
    fn new(limit: usize) -> ExecState {
        ExecState {
            out: Capture {
                kept: Vec::new(),
                dropped: 0,
                limit,
            },
            err: Capture {
                kept: Vec::new(),
                dropped: 0,
                limit,
            },
            head: Some(Vec::new()),
            pid: None,
        }
    }

    fn err_head(&mut self, b: &[u8], eof: bool) {
        let Some(head) = self.head.as_mut() else {
            self.err.push(b);
            return;
        };
        head.extend_from_slice(b);
        // Shell start-up files may print before it, so look for it, not just at the start.
        if let Some(at) = head
            .windows(PID_MARK_BYTES.len())
            .position(|w| w == PID_MARK_BYTES)
        {
            let digits_at = at + PID_MARK_BYTES.len();
            if let Some(nl) = head[digits_at..].iter().position(|c| *c == b'\n') {
                self.pid = std::str::from_utf8(&head[digits_at..digits_at + nl])
                    .ok()
                    .and_then(|s| s.parse().ok());
                let mut rest = head[..at].to_vec();
                rest.extend_from_slice(&head[digits_at + nl + 1..]);
                self.head = None;
                self.err.push(&rest);
                return;
            }
        }
        if eof || head.len() > 4096 {
            let rest = std::mem::take(head);
            self.head = None;
            self.err.push(&rest);
        }
    }

    fn finish(mut self, rc: i64, signal: Option<String>) -> ExecOutput {
        if self.head.is_some() {
            self.err_head(&[], true);
        }
        ExecOutput {
            rc,
            signal,
            stdout: self.out.kept,
            stdout_dropped: self.out.dropped,
            stderr: self.err.kept,
            stderr_dropped: self.err.dropped,
        }
    }
}

/// The number of a signal named as SSH names them (`TERM`, `KILL`, …); Linux numbering.
fn signal_number(name: &str) -> i32 {
    match name.trim_start_matches("SIG") {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "ILL" => 4,
        "ABRT" => 6,
        "FPE" => 8,
        "KILL" => 9,
        "USR1" => 10,
        "SEGV" => 11,
        "USR2" => 12,
        "PIPE" => 13,
        "ALRM" => 14,
        "TERM" => 15,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_line_is_taken_off_stderr_wherever_it_starts() {
        let mut st = ExecState::new(1024);
        st.err_head(b"rc noise\n\x1esortie-pi", false);
        st.err_head(b"d=4242\nreal error\n", false);
        st.err_head(b"more\n", false);
        let out = st.finish(1, None);
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "rc noise\nreal error\nmore\n"
        );

        let mut st = ExecState::new(1024);
        st.err_head(b"\x1esortie-pid=77\n", false);
        assert_eq!(st.pid, Some(77));
        assert!(st.finish(0, None).stderr.is_empty());
    }

    #[test]
    fn capture_keeps_the_limit_and_counts_the_rest() {
        let mut st = ExecState::new(4);
        st.out.push(b"abcdef");
        st.out.push(b"gh");
        st.err_head(b"no marker at all", true);
        let out = st.finish(0, None);
        assert_eq!(out.stdout, b"abcd");
        assert_eq!(out.stdout_dropped, 4);
        assert_eq!(out.stderr, b"no m");
        assert_eq!(out.stderr_dropped, 12);
    }

    #[test]
    fn signals_by_name() {
        assert_eq!(signal_number("TERM"), 15);
        assert_eq!(signal_number("SIGKILL"), 9);
        assert_eq!(signal_number("WHAT"), 0);
    }
}
