//! `StepError`: why a step could not do its work (connect, authentication, host key, timeout,
//! I/O, protocol, template, cancelled). The SSH layer (`conn`) and the step kinds (`steps`)
//! make them; the runner (`exec`) reads `is_unreachable`, `kind` and `help` to decide the
//! host's fate and to report it. A leaf: it depends on `diag` only, so both sides import it
//! without importing each other.

use crate::diag::Diagnostic;

/// A step that could not do its work. Connection, authentication and host-key errors make
/// the host unreachable; the others fail the step.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StepError {
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("authentication failed for {user}@{host}: {reason}")]
    Auth {
        user: String,
        host: String,
        reason: String,
        help: String,
    },
    #[error("host key {problem} for {host} ({fingerprint})")]
    HostKey {
        host: String,
        problem: String,
        fingerprint: String,
        help: String,
    },
    #[error("timed out after {0}")]
    Timeout(String),
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Protocol(String),
    #[error("{}", .0.one_line())]
    Template(Diagnostic),
    #[error("cancelled")]
    Cancelled,
}

impl StepError {
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            StepError::Connect { .. } | StepError::Auth { .. } | StepError::HostKey { .. }
        )
    }

    /// What to do about it, when there is something to say.
    pub fn help(&self) -> Option<String> {
        match self {
            StepError::HostKey { help, .. } | StepError::Auth { help, .. } => Some(help.clone()),
            StepError::Template(d) => d.help.clone(),
            _ => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            StepError::Connect { .. } => "connect",
            StepError::Auth { .. } => "auth",
            StepError::HostKey { .. } => "host_key",
            StepError::Timeout(_) => "timeout",
            StepError::Io(_) => "io",
            StepError::Protocol(_) => "protocol",
            StepError::Template(_) => "template",
            StepError::Cancelled => "cancelled",
        }
    }
}
