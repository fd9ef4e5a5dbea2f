//! Logging in, for `connect.rs` once the host key is checked: the keys the target names
//! (with `passphrase_env`), ssh-agent's keys, the default keys (`~/.ssh/id_*`), then the
//! password from `password_env` (plain or keyboard-interactive), each only when the server
//! offers the method. Settings come from the `Target` (`config.rs`); a failure is one
//! `StepError::Auth` listing everything tried, with the most useful advice.
//!
//! Every call that talks to the server goes through `Dial::call` (`connect.rs`): libssh2
//! non-blocking, retried on EAGAIN once the socket is ready, each within `connect_timeout`.

// `StepError` (the engine's type) carries a whole `Diagnostic`; boxing it is the engine's call.
#![allow(clippy::result_large_err)]

use std::path::Path;

use ssh2::ErrorCode;

use super::config::{Target, home};
use super::dial::Dial;
use crate::error::StepError;

/// Logs in: named keys (with `passphrase_env`), ssh-agent, default keys, then `password_env`.
pub(super) async fn authenticate(t: &Target, dial: &Dial) -> Result<(), StepError> {
    // What was tried and how it went, for the message if nothing works.
    let mut tried: Vec<String> = Vec::new();
    let passphrase = passphrase(t, &mut tried);
    // Keys first, without asking the server which methods it takes: that question (a "none"
    // login) costs a round trip, and a key is what nearly every login uses. The server is
    // asked only when no key got in.
    if key_login(t, dial, passphrase.as_deref(), &mut tried).await {
        return Ok(());
    }
    // `None` once logged in by the question itself (a server that takes "none"): libssh2 then
    // returns no list, and may leave an earlier EAGAIN as its last error.
    let methods = dial
        .call(|s| match s.auth_methods(&t.user) {
            Ok(m) => Ok(Some(m.to_string())),
            Err(_) if s.authenticated() => Ok(None),
            Err(e) => Err(e),
        })
        .await;
    let methods = match methods {
        Ok(Some(m)) => m,
        Ok(None) => return Ok(()),
        Err(_) if dial.sess.authenticated() => return Ok(()),
        Err(e) => {
            return Err(t.connect_error(format!(
                "the server does not answer the login: {}",
                e.message()
            )));
        }
    };
    let offers = |m: &str| methods.split(',').any(|x| x == m);
    // What to do about it, when the password says something more specific than the default.
    let mut help = None;
    if let Some(var) = &t.password_env {
        match password_login(t, dial, var, offers).await {
            Ok(()) => return Ok(()),
            Err((what, advice)) => {
                tried.push(what);
                help = advice;
            }
        }
    }
    Err(auth_failure(t, &methods, tried, help))
}

/// The key passphrase from `passphrase_env`; an unset variable is noted in `tried`.
fn passphrase(t: &Target, tried: &mut Vec<String>) -> Option<String> {
    let var = t.passphrase_env.as_ref()?;
    match std::env::var(var) {
        Ok(p) => Some(p),
        Err(_) => {
            tried.push(format!("passphrase_env `{var}` is not set"));
            None
        }
    }
}

/// Logs in with a key: the named ones, then ssh-agent's, then the default ones (when no key
/// was named). `true` once logged in; each failure is noted in `tried`.
async fn key_login(
    t: &Target,
    dial: &Dial,
    passphrase: Option<&str>,
    tried: &mut Vec<String>,
) -> bool {
    for key in &t.identity_files {
        if !key.exists() {
            tried.push(format!("key {}: no such file", key.display()));
            continue;
        }
        if key_file_login(t, dial, key, passphrase, tried).await {
            return true;
        }
    }
    if let Some(sock) = std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty()) {
        match agent_login(dial, &t.user).await {
            Ok(true) => return true,
            Ok(false) => tried.push(format!(
                "ssh-agent ({}): no key accepted",
                Path::new(&sock).display()
            )),
            Err(e) => tried.push(format!("ssh-agent: {e}")),
        }
    }
    if t.default_identities {
        for name in ["id_ed25519", "id_ecdsa", "id_rsa"] {
            let Some(key) = home().map(|h| h.join(".ssh").join(name)) else {
                continue;
            };
            if key.exists() && key_file_login(t, dial, &key, passphrase, tried).await {
                return true;
            }
        }
    }
    false
}

/// Offers one key file; a refusal is noted in `tried`.
async fn key_file_login(
    t: &Target,
    dial: &Dial,
    key: &Path,
    passphrase: Option<&str>,
    tried: &mut Vec<String>,
) -> bool {
    let r = dial
        .call(|s| s.userauth_pubkey_file(&t.user, None, key, passphrase))
        .await;
    match r {
        Ok(()) if dial.sess.authenticated() => true,
        Ok(()) => {
            tried.push(format!("key {}: not accepted", key.display()));
            false
        }
        Err(e) => {
            tried.push(key_failure(key, &e, passphrase.is_some()));
            false
        }
    }
}

/// Logs in with the password from `var`, by `password` or `keyboard-interactive` as the
/// server offers. `Err` says what happened, and what to do about it when there is more to
/// say than the general advice.
async fn password_login(
    t: &Target,
    dial: &Dial,
    var: &str,
    offers: impl Fn(&str) -> bool,
) -> Result<(), (String, Option<String>)> {
    let Ok(pw) = std::env::var(var) else {
        return Err((
            format!("password_env `{var}` is not set"),
            Some(format!(
                "set the environment variable `{var}` to {}'s password before running sortie",
                t.user
            )),
        ));
    };
    let refused = if offers("password") {
        match dial.call(|s| s.userauth_password(&t.user, &pw)).await {
            Ok(()) if dial.sess.authenticated() => return Ok(()),
            _ => format!("password from `{var}`: refused"),
        }
    } else if offers("keyboard-interactive") {
        let mut p = PasswordPrompt(pw);
        let r = dial
            .call(|s| s.userauth_keyboard_interactive(&t.user, &mut p))
            .await;
        match r {
            Ok(()) if dial.sess.authenticated() => return Ok(()),
            _ => format!("keyboard-interactive password from `{var}`: refused"),
        }
    } else {
        return Err(("password: the server does not take passwords".into(), None));
    };
    Err((
        refused,
        Some(format!(
            "check the password in `{var}` for {}@{}, or log in with a key \
             (`ssh.identity_file`)",
            t.user, t.host
        )),
    ))
}

/// The error once nothing worked: everything tried, what the server offers, what to do.
fn auth_failure(
    t: &Target,
    methods: &str,
    mut tried: Vec<String>,
    help: Option<String>,
) -> StepError {
    if tried.is_empty() {
        tried.push("no key, agent or password to try".into());
    }
    let help = help.unwrap_or_else(|| {
        format!(
            "check that {} is the right user and that the server accepts its key \
             (`ssh.identity_file`, ssh-agent) or password (`ssh.password_env`); \
             `ssh -v {}@{} -p {}` shows what the server takes",
            t.user, t.user, t.host, t.port
        )
    });
    StepError::Auth {
        user: t.user.clone(),
        host: format!("{}:{}", t.host, t.port),
        reason: format!("{} (server offers: {methods})", tried.join("; ")),
        help,
    }
}

/// What went wrong with one key file.
fn key_failure(key: &Path, e: &ssh2::Error, had_passphrase: bool) -> String {
    match e.code() {
        // Unreadable, or encrypted with no (or a wrong) passphrase.
        ErrorCode::Session(-16) | ErrorCode::Session(-19) if !had_passphrase => format!(
            "key {}: cannot be read ({}; an encrypted key needs `passphrase_env`)",
            key.display(),
            e.message()
        ),
        ErrorCode::Session(-16) | ErrorCode::Session(-19) => {
            format!(
                "key {}: cannot be read ({}; is the passphrase right?)",
                key.display(),
                e.message()
            )
        }
        _ => format!("key {}: refused by the server", key.display()),
    }
}

/// Offers ssh-agent's keys in turn: `Ok(true)` once one is taken.
///
/// The server's side of each offer is non-blocking (`Dial::call`). The agent's is not:
/// libssh2 talks to ssh-agent over a Unix socket of its own that it leaves blocking,
/// whatever the session's mode, so connecting to the agent, listing its keys and each
/// signature (inside `userauth`) wait on this thread for the local agent's answer — a local
/// round trip, not the network's. libssh2 supports the offer itself in non-blocking mode
/// (`libssh2_agent_userauth` resumes where it was on EAGAIN; the signature is asked for once).
async fn agent_login(dial: &Dial, user: &str) -> Result<bool, String> {
    let mut agent = dial.sess.agent().map_err(|e| e.message().to_string())?;
    agent
        .connect()
        .map_err(|e| format!("cannot connect: {}", e.message()))?;
    agent
        .list_identities()
        .map_err(|e| e.message().to_string())?;
    let ids = agent.identities().map_err(|e| e.message().to_string())?;
    for id in &ids {
        let offered = dial.call(|_| agent.userauth(user, id)).await;
        if offered.is_ok() && dial.sess.authenticated() {
            let _ = agent.disconnect();
            return Ok(true);
        }
    }
    let _ = agent.disconnect();
    Ok(false)
}

/// Answers keyboard-interactive prompts with the password.
struct PasswordPrompt(String);

impl ssh2::KeyboardInteractivePrompt for PasswordPrompt {
    fn prompt<'a>(
        &mut self,
        _user: &str,
        _instructions: &str,
        prompts: &[ssh2::Prompt<'a>],
    ) -> Vec<String> {
        prompts.iter().map(|_| self.0.clone()).collect()
    }
}
