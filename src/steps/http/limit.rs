//! How long the `http` kind waits on the network (`Limit`): until the step's deadline (a
//! little before the step's `timeout`, so the kind's message, which names the URL, wins), or,
//! without a timeout, a bounded wait for each next thing. `request.rs` makes one per step from
//! the `TaskCx`; the hops (`request.rs`) and the body reading (`response.rs`) wait through it.

use std::future::Future;
use std::time::Duration;

/// Without a step `timeout`: the longest wait for the response, or for each next piece of its
/// body (the client bounds the connection: `CONNECT_TIMEOUT`).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The kind's own deadline ends this much before the step's timeout, so that its message
/// (which names the URL) wins the race against the runner's backstop timer.
const DEADLINE_MARGIN: Duration = Duration::from_millis(5);

/// How long a network wait may last: until the step's deadline, or, without a step timeout,
/// a bounded wait for each next thing.
#[derive(Clone, Copy)]
pub(super) enum Limit {
    Deadline {
        at: tokio::time::Instant,
        step: Duration,
    },
    Idle,
}

impl Limit {
    /// The limit of a step with this `timeout` (its deadline starts now).
    pub(super) fn for_step(timeout: Option<Duration>) -> Limit {
        match timeout {
            Some(t) => Limit::Deadline {
                at: tokio::time::Instant::now() + t.saturating_sub(DEADLINE_MARGIN),
                step: t,
            },
            None => Limit::Idle,
        }
    }

    /// `fut`, or the wait that ran out (for the message).
    pub(super) async fn wait<T>(self, fut: impl Future<Output = T>) -> Result<T, String> {
        match self {
            Limit::Deadline { at, step } => tokio::time::timeout_at(at, fut)
                .await
                .map_err(|_| crate::units::Duration(step).to_string()),
            Limit::Idle => tokio::time::timeout(IDLE_TIMEOUT, fut)
                .await
                .map_err(|_| crate::units::Duration(IDLE_TIMEOUT).to_string()),
        }
    }
}
