//! `via` on the probes (`tcp`, `http`, `dns`): which host a probe runs from. `host` is the
//! current host, any other value (a template, rendered already) names an inventory host; the
//! probe then goes through that host's gateway (`conn::via`), and its result says `via`. A host
//! run on the runner (`ansible_connection: local`) is the runner: `via` it probes directly.

use std::sync::Arc;

use super::{StepError, TaskCx};
use crate::conn::via::{Failure, Gateway};
use crate::diag::Diagnostic;
use crate::yaml::Node;

/// The value of `via` that means the current host.
pub const CURRENT_HOST: &str = "host";

/// The kinds that take `via`.
pub const KINDS: [&str; 3] = ["tcp", "http", "dns"];

/// The error for `via` among the arguments of a kind that cannot take it.
pub fn via_misplaced(kind: &str, args: &Node) -> Option<Diagnostic> {
    if KINDS.contains(&kind) {
        return None;
    }
    let (key, _) = args.as_map()?.iter().find(|(k, _)| k.key_text() == "via")?;
    let (label, help) = match kind {
        "udp" => (
            "an SSH session carries TCP only",
            "probe UDP from the runner, or send the datagram with a command on the host (`ssh: …`)",
        ),
        "ssh" | "sftp_put" | "sftp_get" => (
            "this step runs on the host already",
            "`via` makes a probe (tcp, http, dns) run from a host; remove it here",
        ),
        _ => ("not a probe", "`via` works on tcp, http and dns steps only"),
    };
    Some(
        Diagnostic::error(format!("`{kind}` cannot take `via`"))
            .at(key.span)
            .label(label)
            .help(help),
    )
}

/// Where a probe runs from.
pub struct Route {
    /// The via host's inventory name (the result's `via`).
    pub name: String,
    /// `None`: directly from the runner (no `via`, or a via host that is the runner).
    pub gateway: Option<Arc<Gateway>>,
}

impl Route {
    /// The route of a step's `via`: `None` without one.
    pub async fn of(via: Option<&str>, cx: &TaskCx<'_>) -> Result<Option<Route>, StepError> {
        let Some(via) = via.map(str::trim) else {
            return Ok(None);
        };
        let name = if via == CURRENT_HOST || via.is_empty() {
            cx.host.name.clone()
        } else {
            via.to_string()
        };
        let local = if name == cx.host.name {
            cx.host.local
        } else {
            false
        };
        if local {
            return Ok(Some(Route {
                name,
                gateway: None,
            }));
        }
        let gateway = cx
            .gateways
            .get(&name, &cx.host.name)
            .await
            .map_err(StepError::Protocol)?;
        Ok(Some(Route {
            name,
            gateway: Some(gateway),
        }))
    }

    /// The step error for a failure that means the probe could not be made at all (as opposed
    /// to a port found closed): no session to the via host, or forwarding refused there. A
    /// session that fails for the current host makes it unreachable, as its own steps would.
    pub fn step_error(&self, f: Failure, cx: &TaskCx<'_>) -> StepError {
        match f {
            Failure::Session(reason) if self.name == cx.host.name => StepError::Connect {
                addr: cx.host.name.clone(),
                reason,
            },
            Failure::Session(reason) => {
                StepError::Protocol(format!("cannot go via {}: {reason}", self.name))
            }
            other => StepError::Protocol(other.message().to_string()),
        }
    }
}
