//! Inventories: which hosts exist, how to reach them, which groups they form, and the variables
//! each one sees. Files named with `-i` are read (`load`) — sortie's native YAML (`native`), or
//! Ansible INI and YAML inventories as they are (`ansible`), told apart by their shape — into one
//! raw model (`raw`), merged in order, then resolved (`resolve`) into `Inventory` (`model`):
//! groups linked to parents and children (checked for unknown names and cycles), host ranges
//! expanded (`range`), and for every host its groups, merged vars and SSH settings. Host
//! patterns (`pattern`) pick hosts from it for plays and `-l`; `query` holds the lookups and
//! the `--list`/`--graph` views. Nothing here opens a connection; `sortie check`, `plan` and
//! `inventory` use it alone, the runner reads `Host` for addresses, SSH settings and the
//! template `host`/vars.
//!
//! Variable precedence inside an inventory, lowest first: the `all` group's vars (native:
//! top-level `vars:`), then every other group the host belongs to, ordered by depth (distance
//! from `all`, longest path) and, at equal depth, by name — so a child's vars beat its parent's
//! — then the host's own vars. SSH settings merge the same way, key by key.

// `Diagnostic` is this crate's error value everywhere; it is returned by value on purpose.
#![allow(clippy::result_large_err)]

mod ansible;
mod load;
mod model;
mod native;
mod pattern;
mod query;
mod range;
mod raw;
mod resolve;

pub use load::{implicit_localhost, load, load_str, schema};
pub use model::{Group, Host, HostKeyChecking, Inventory, SshSettings};
pub(crate) use model::{de_port, resolve_path};
pub use native::{GroupDef, HostDef, InventoryFile};
pub use pattern::Pattern;
pub use raw::MAX_HOSTS;
pub(crate) use raw::{
    Raw, RawGroup, RawHost, bad_group_name, expand_host_name, group_name_error, inside,
};

/// Helpers for the inventory tests of every file here.
#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::diag::Diagnostic;

    /// Loads an inventory from text, panicking with the rendered diagnostics on failure.
    pub(crate) fn inv(text: &str) -> Inventory {
        match load_str("inv.yml", text) {
            Ok(i) => i,
            Err(d) => panic!("inventory did not load:\n{d}"),
        }
    }

    pub(crate) fn err(name: &str, text: &str) -> Vec<Diagnostic> {
        match load_str(name, text) {
            Ok(_) => panic!("inventory loaded but should not"),
            Err(d) => d.0,
        }
    }

    pub(crate) fn host<'a>(i: &'a Inventory, name: &str) -> &'a Host {
        i.host(name).expect("host exists")
    }

    pub(crate) fn names(r: Result<Vec<&Host>, Diagnostic>) -> Vec<String> {
        r.expect("selects").iter().map(|h| h.name.clone()).collect()
    }
}
