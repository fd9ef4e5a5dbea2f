//! The host key, for `connect.rs`: which key types to ask the server for (those known_hosts
//! records for the host, so a changed key shows as changed rather than as a new type), what a
//! key exchange refused on those types means, and the check of the key the server showed
//! against the known_hosts entries (`known_hosts.rs`) by the target's policy. The outcome is
//! a `StepError::HostKey` (with what to do about it) or, with `accept-new`, a new entry.

// `StepError` (the engine's type) carries a whole `Diagnostic`; boxing it is the engine's call.
#![allow(clippy::result_large_err)]

use ssh2::{ErrorCode, MethodType, Session};

use super::config::Target;
use super::known_hosts::{self, Entry, Verdict};
use crate::error::StepError;
use crate::inventory::HostKeyChecking;

/// Host key types asked for when known_hosts names none for the host, best first.
const DEFAULT_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "rsa-sha2-512",
    "rsa-sha2-256",
    "ssh-rsa",
];

/// Asks the server for the key types known_hosts has for the host (else the defaults), among
/// those libssh2 supports; returns what was asked for. Call it before the handshake.
pub(super) fn prefer_known_types(sess: &Session, known: &[&Entry]) -> Vec<&'static str> {
    let supported = sess.supported_algs(MethodType::HostKey).unwrap_or_default();
    let prefs: Vec<&'static str> = known_hosts::algorithms(known)
        .unwrap_or_else(|| DEFAULT_TYPES.to_vec())
        .into_iter()
        .filter(|a| supported.contains(a))
        .collect();
    if !prefs.is_empty() {
        let _ = sess.method_pref(MethodType::HostKey, &prefs.join(","));
    }
    prefs
}

/// A failed key exchange while only the known key types were offered: the server has none
/// of them, so its key changed (unless host keys are not checked). `offered` looks up the key
/// the server has instead, to name it beside the known one, as OpenSSH does (awaited only
/// then: it is a second connection). `None` for other failures.
pub(super) async fn kex_refused(
    t: &Target,
    e: &ssh2::Error,
    name: &str,
    known: &[&Entry],
    prefs: &[&str],
    offered: impl Future<Output = Option<(String, Vec<u8>)>>,
) -> Option<StepError> {
    let restricted = known_hosts::algorithms(known).is_some();
    // libssh2 reports "no common host key type" as a key exchange failure (-5) or as
    // "Unable to exchange encryption keys" (-8), depending on where negotiation stops.
    let kex_failed = matches!(e.code(), ErrorCode::Session(-5) | ErrorCode::Session(-8));
    if !restricted || !kex_failed || t.checking == HostKeyChecking::Off {
        return None;
    }
    let known_keys: Vec<String> = known
        .iter()
        .filter(|k| !k.revoked)
        .map(|k| {
            format!(
                "{} {} ({}:{})",
                k.key_type,
                known_hosts::fingerprint(&k.key),
                k.file.display(),
                k.line
            )
        })
        .collect();
    let fingerprint = match offered.await {
        Some((key_type, blob)) => format!(
            "the server's key is {key_type} {}; known_hosts holds another type: {}",
            known_hosts::fingerprint(&blob),
            known_keys.join(", ")
        ),
        None => format!(
            "the server offers none of the known key types ({}); known_hosts holds: {}",
            prefs.join(", "),
            known_keys.join(", ")
        ),
    };
    Some(StepError::HostKey {
        host: t.label.clone(),
        problem: "changed".into(),
        fingerprint,
        help: changed_help(known, name),
    })
}

/// What to say about a changed key; `known` are the entries about the host.
fn changed_help(known: &[&Entry], name: &str) -> String {
    let file = known
        .first()
        .map(|e| e.file.display().to_string())
        .unwrap_or_else(|| "~/.ssh/known_hosts".into());
    format!(
        "the key differs from the one recorded for {name}: someone may be intercepting the connection. \
         If the host was reinstalled, check its new key with its administrator, then remove the old \
         entry with `ssh-keygen -R '{name}' -f {file}` and run again (accept-new records it)"
    )
}

/// Checks the key the server showed against known_hosts, by the target's policy (`strict`,
/// `accept-new` records an unknown key, `off`).
pub(super) fn check(
    t: &Target,
    sess: &Session,
    name: &str,
    entries: &[&Entry],
) -> Result<(), StepError> {
    let Some((key, _)) = sess.host_key() else {
        return Err(t.connect_error("the server sent no host key"));
    };
    let fingerprint = known_hosts::fingerprint(key);
    let key_type = known_hosts::blob_key_type(key).unwrap_or_else(|| "unknown".into());
    if t.checking == HostKeyChecking::Off {
        return Ok(());
    }
    match known_hosts::verdict(entries, key) {
        Verdict::Match => Ok(()),
        Verdict::Unknown if t.checking == HostKeyChecking::AcceptNew => {
            known_hosts::append(&t.known_hosts_write, name, key).map_err(|e| t.connect_error(e))
        }
        Verdict::Unknown => Err(StepError::HostKey {
            host: t.label.clone(),
            problem: "unknown".into(),
            fingerprint: format!("{key_type} {fingerprint}"),
            help: format!(
                "{name} is not in known_hosts ({}). Check the fingerprint with the host's administrator \
                 (`ssh-keygen -lf /etc/ssh/ssh_host_{}_key.pub` on the host), then add the key \
                 (`ssh-keyscan -p {} {} >> {}`), or run once with `host_key_checking: accept-new`",
                t.known_hosts
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                key_type
                    .trim_start_matches("ssh-")
                    .split('-')
                    .next()
                    .unwrap_or("ed25519"),
                t.port,
                t.host,
                t.known_hosts_write.display()
            ),
        }),
        Verdict::Revoked => Err(StepError::HostKey {
            host: t.label.clone(),
            problem: "revoked".into(),
            fingerprint: format!("{key_type} {fingerprint}"),
            help:
                "known_hosts marks this key @revoked: do not connect until the host has a new key"
                    .into(),
        }),
        Verdict::Changed { known } => Err(StepError::HostKey {
            host: t.label.clone(),
            problem: "changed".into(),
            fingerprint: format!("{key_type} {fingerprint}; known: {}", known.join(", ")),
            help: changed_help(entries, name),
        }),
    }
}
