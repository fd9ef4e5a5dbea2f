//! SSH connections: one authenticated session per host, opened on the host's first SSH step
//! and reused by every later step (a channel each), closed when the host is done.
//! (Being built: see issue 4.)

use crate::inventory::Host;

/// The SSH connection of one host during a run.
pub struct HostConn {
    pub host: Host,
}

impl HostConn {
    pub fn new(host: &Host) -> HostConn {
        HostConn { host: host.clone() }
    }

    /// Closes the session if one was opened.
    pub async fn close(&self) {}
}
