//! Every keyword OpenSSH 9.2's client knows (`readconf.c`'s table, as Debian builds it: with
//! GSSAPI and PKCS#11), what kind of line it is, and the checks OpenSSH makes on its arguments
//! whether or not the line applies to the host — so a bad value is an error everywhere, as it
//! is for `ssh`. `eval` calls `kind` for each line and `check` for the ordinary ones; the
//! values sortie uses (HostName, User, Port, …) are then taken by `eval` itself.

use super::expand::{a2port, convtime};
use super::lex::Arg;

/// What a keyword is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `Host`, `Match`, `Include`: handled by `eval`.
    Host,
    Match,
    Include,
    /// Takes the rest of the line as it is (`ProxyCommand`, `LocalCommand`, …).
    Command,
    ProxyJump,
    /// Accepted and ignored without a word (`Protocol`, deprecated names).
    Ignored,
    /// OpenSSH says "Unsupported option" and carries on.
    Unsupported,
    /// Checked by `check`.
    Value(Check),
}

/// How an ordinary keyword's arguments are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// One argument, any text.
    Str,
    /// One of these words (case-insensitive).
    Words(&'static [&'static str]),
    Time,
    Int,
    Port,
    /// One or more arguments; `none` only alone.
    List,
    /// Any number of arguments, unchecked (forwards, PermitRemoteOpen, …).
    Many,
    SendEnv,
    SetEnv,
    EscapeChar,
    ControlPersist,
    IpQos,
    RekeyLimit,
    Mask,
    AddKeysToAgent,
    ForwardAgent,
    LocalForward,
}

const FLAG: &[&str] = &["true", "false", "yes", "no"];
const YES_NO_ASK: &[&str] = &["true", "false", "yes", "no", "ask"];

/// The kind of `kw` (lower-cased), `None` for a keyword OpenSSH does not know.
pub fn kind(kw: &str) -> Option<Kind> {
    match kw {
        "host" => return Some(Kind::Host),
        "match" => return Some(Kind::Match),
        "include" => return Some(Kind::Include),
        "proxyjump" => return Some(Kind::ProxyJump),
        "proxycommand" | "localcommand" | "remotecommand" | "knownhostscommand" => {
            return Some(Kind::Command);
        }
        "protocol"
        | "cipher"
        | "fallbacktorsh"
        | "globalknownhostsfile2"
        | "rhostsauthentication"
        | "userknownhostsfile2"
        | "useroaming"
        | "usersh"
        | "useprivilegedport" => {
            return Some(Kind::Ignored);
        }
        "afstokenpassing"
        | "kerberosauthentication"
        | "kerberostgtpassing"
        | "rsaauthentication"
        | "rhostsrsaauthentication"
        | "compressionlevel" => {
            return Some(Kind::Unsupported);
        }
        _ => {}
    }
    value_check(kw).map(Kind::Value)
}

/// The check of an ordinary keyword.
fn value_check(kw: &str) -> Option<Check> {
    use Check::*;
    if let Some(w) = word_check(kw) {
        return Some(Words(w));
    }
    let k = match kw {
        "forwardx11"
        | "forwardx11trusted"
        | "gatewayports"
        | "exitonforwardfailure"
        | "passwordauthentication"
        | "kbdinteractiveauthentication"
        | "challengeresponseauthentication"
        | "skeyauthentication"
        | "tisauthentication"
        | "hostbasedauthentication"
        | "gssapiauthentication"
        | "gssapidelegatecredentials"
        | "batchmode"
        | "checkhostip"
        | "tcpkeepalive"
        | "keepalive"
        | "nohostauthenticationforlocalhost"
        | "clearallforwardings"
        | "enablesshkeysign"
        | "identitiesonly"
        | "hashknownhosts"
        | "permitlocalcommand"
        | "visualhostkey"
        | "stdinnull"
        | "forkafterauthentication"
        | "proxyusefdpass"
        | "canonicalizefallbacklocal"
        | "streamlocalbindunlink"
        | "enableescapecommandline" => Words(FLAG),
        "connecttimeout" | "forwardx11timeout" | "serveraliveinterval" => Time,
        "numberofpasswordprompts"
        | "connectionattempts"
        | "serveralivecountmax"
        | "canonicalizemaxdots"
        | "requiredrsasize" => Int,
        "port" => Port,
        "identityfile"
        | "identityfile2"
        | "certificatefile"
        | "kbdinteractivedevices"
        | "xauthlocation"
        | "user"
        | "hostname"
        | "hostkeyalias"
        | "preferredauthentications"
        | "bindaddress"
        | "bindinterface"
        | "pkcs11provider"
        | "smartcarddevice"
        | "securitykeyprovider"
        | "controlpath"
        | "ignoreunknown"
        | "revokedhostkeys"
        | "ciphers"
        | "macs"
        | "kexalgorithms"
        | "hostkeyalgorithms"
        | "casignaturealgorithms"
        | "hostbasedacceptedalgorithms"
        | "hostbasedkeytypes"
        | "pubkeyacceptedalgorithms"
        | "pubkeyacceptedkeytypes"
        | "identityagent"
        | "tunneldevice" => Str,
        "globalknownhostsfile" | "userknownhostsfile" | "canonicaldomains" | "logverbose" => List,
        "permitremoteopen" | "canonicalizepermittedcnames" => Many,
        "localforward" => LocalForward,
        "remoteforward" | "dynamicforward" => Many,
        "sendenv" => SendEnv,
        "setenv" => SetEnv,
        "escapechar" => EscapeChar,
        "controlpersist" => ControlPersist,
        "ipqos" => IpQos,
        "rekeylimit" => RekeyLimit,
        "streamlocalbindmask" => Mask,
        "addkeystoagent" => AddKeysToAgent,
        "forwardagent" => ForwardAgent,
        _ => return None,
    };
    Some(k)
}

/// The words a multi-state keyword takes.
fn word_check(kw: &str) -> Option<&'static [&'static str]> {
    let w: &'static [&'static str] = match kw {
        "pubkeyauthentication" | "dsaauthentication" => {
            &["true", "false", "yes", "no", "unbound", "host-bound"]
        }
        "verifyhostkeydns" | "updatehostkeys" => YES_NO_ASK,
        "stricthostkeychecking" => &["true", "false", "yes", "no", "ask", "off", "accept-new"],
        "compression" => &["yes", "no"],
        "addressfamily" => &["inet", "inet6", "any"],
        "controlmaster" => &["true", "yes", "false", "no", "auto", "ask", "autoask"],
        "tunnel" => &["ethernet", "point-to-point", "true", "yes", "false", "no"],
        "requesttty" => &["true", "yes", "false", "no", "force", "auto"],
        "sessiontype" => &["none", "subsystem", "default"],
        "canonicalizehostname" => &["true", "false", "yes", "no", "always"],
        "loglevel" => &[
            "quiet", "fatal", "error", "info", "verbose", "debug", "debug1", "debug2", "debug3",
        ],
        "syslogfacility" => &[
            "daemon", "user", "auth", "authpriv", "local0", "local1", "local2", "local3", "local4",
            "local5", "local6", "local7",
        ],
        "fingerprinthash" => &["md5", "sha1", "sha256", "sha384", "sha512"],
        _ => return None,
    };
    Some(w)
}

/// A refused argument: the message, and the argument it is about (`None`: the line).
pub type Refusal = (String, Option<usize>);

/// Checks an ordinary keyword's arguments as OpenSSH does (`args` is never empty).
pub fn check(kw: &str, c: Check, args: &[Arg]) -> Result<(), Refusal> {
    let a0 = args[0].text.as_str();
    let used = match c {
        Check::Str => {
            if a0.is_empty() {
                return Err(("missing argument".into(), Some(0)));
            }
            1
        }
        Check::Words(w) => {
            if !w.iter().any(|x| x.eq_ignore_ascii_case(a0)) {
                return Err((
                    format!("unsupported value `{a0}`: expected {}", w.join(", ")),
                    Some(0),
                ));
            }
            1
        }
        Check::Time => {
            if a0 != "none" && convtime(a0).is_none() {
                return Err((format!("invalid time value `{a0}`"), Some(0)));
            }
            1
        }
        Check::Int => {
            let digits = a0.strip_prefix('-').unwrap_or(a0);
            if digits.is_empty()
                || !digits.bytes().all(|b| b.is_ascii_digit())
                || a0.parse::<i32>().is_err()
            {
                return Err((format!("integer value `{a0}` is invalid"), Some(0)));
            }
            1
        }
        Check::Port => {
            if !matches!(a2port(a0), Some(p) if p > 0) {
                return Err((format!("bad port `{a0}`"), Some(0)));
            }
            1
        }
        Check::List => return list(kw, args),
        Check::Many => args.len(),
        Check::SendEnv => {
            if let Some(i) = args
                .iter()
                .position(|a| a.text.is_empty() || a.text.contains('='))
            {
                return Err(("invalid environment name".into(), Some(i)));
            }
            args.len()
        }
        Check::SetEnv => {
            if let Some(i) = args.iter().position(|a| !a.text.contains('=')) {
                return Err(("invalid SetEnv: expected NAME=VALUE".into(), Some(i)));
            }
            args.len()
        }
        Check::LocalForward => {
            if args.len() < 2 {
                return Err(("missing target argument".into(), None));
            }
            2
        }
        _ => return other(c, args),
    };
    extra(args, used)
}

fn extra(args: &[Arg], used: usize) -> Result<(), Refusal> {
    if args.len() > used {
        return Err(("extra arguments at end of line".into(), Some(used)));
    }
    Ok(())
}

fn list(kw: &str, args: &[Arg]) -> Result<(), Refusal> {
    for (i, a) in args.iter().enumerate() {
        if a.text.is_empty() {
            return Err((format!("keyword {kw} empty argument"), Some(i)));
        }
        if a.text.eq_ignore_ascii_case("none") && args.len() > 1 {
            return Err((
                format!("keyword {kw} \"none\" argument must appear alone"),
                Some(i),
            ));
        }
    }
    Ok(())
}

fn other(c: Check, args: &[Arg]) -> Result<(), Refusal> {
    let a0 = args[0].text.as_str();
    let bad = |m: &str| Err((m.to_string(), Some(0)));
    let used = match c {
        Check::EscapeChar => {
            let b = a0.as_bytes();
            let ok = a0 == "none"
                || b.len() == 1
                || (b.len() == 2 && b[0] == b'^' && (64..128).contains(&b[1]));
            if !ok {
                return bad("bad escape character");
            }
            1
        }
        Check::ControlPersist => {
            if !matches!(a0, "yes" | "no" | "true" | "false") && convtime(a0).is_none() {
                return bad("bad ControlPersist argument");
            }
            1
        }
        Check::IpQos => {
            for (i, a) in args.iter().take(2).enumerate() {
                if !ipqos(&a.text) {
                    return Err((format!("bad IPQoS value `{}`", a.text), Some(i)));
                }
            }
            args.len().min(2)
        }
        Check::RekeyLimit => {
            if a0 != "default" && !scaled(a0) {
                return bad("bad number");
            }
            if let Some(t) = args.get(1)
                && t.text != "none"
                && convtime(&t.text).is_none()
            {
                return Err(("invalid time value".into(), Some(1)));
            }
            args.len().min(2)
        }
        Check::Mask => {
            if u32::from_str_radix(a0, 8).map_or(true, |m| m > 0o777) {
                return bad("bad mask");
            }
            1
        }
        Check::AddKeysToAgent => {
            let word = ["yes", "no", "ask", "confirm", "true", "false"]
                .iter()
                .any(|w| w.eq_ignore_ascii_case(a0));
            match args.get(1) {
                Some(t) if a0.eq_ignore_ascii_case("confirm") => {
                    if convtime(&t.text).is_none() {
                        return Err(("invalid time value".into(), Some(1)));
                    }
                    2
                }
                Some(_) => return Err(("unsupported option".into(), Some(1))),
                None if !word && convtime(a0).is_none() => return bad("unsupported option"),
                None => 1,
            }
        }
        // ForwardAgent takes a flag or a socket path.
        _ => 1,
    };
    extra(args, used)
}

fn ipqos(s: &str) -> bool {
    const NAMES: &[&str] = &[
        "af11",
        "af12",
        "af13",
        "af21",
        "af22",
        "af23",
        "af31",
        "af32",
        "af33",
        "af41",
        "af42",
        "af43",
        "cs0",
        "cs1",
        "cs2",
        "cs3",
        "cs4",
        "cs5",
        "cs6",
        "cs7",
        "ef",
        "le",
        "lowdelay",
        "throughput",
        "reliability",
        "none",
    ];
    NAMES.iter().any(|n| n.eq_ignore_ascii_case(s)) || s.parse::<u8>().is_ok()
}

/// `scan_scaled`: a number with an optional K, M, G, … suffix.
fn scaled(s: &str) -> bool {
    let t = s.trim_end_matches(|c: char| "bBkKmMgGtTpPeE".contains(c));
    s.len() - t.len() <= 1 && !t.is_empty() && t.parse::<f64>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<Arg> {
        v.iter()
            .map(|t| Arg {
                text: t.to_string(),
                col: 1,
                end: 2,
            })
            .collect()
    }

    fn chk(kw: &str, v: &[&str]) -> Result<(), Refusal> {
        match kind(kw) {
            Some(Kind::Value(c)) => check(kw, c, &args(v)),
            k => panic!("{kw}: {k:?}"),
        }
    }

    #[test]
    fn values_are_checked_as_openssh_does() {
        assert!(chk("port", &["22"]).is_ok());
        assert!(chk("port", &["0"]).is_err());
        assert!(chk("port", &["22", "23"]).is_err());
        assert!(chk("stricthostkeychecking", &["Accept-New"]).is_ok());
        assert!(chk("stricthostkeychecking", &["maybe"]).is_err());
        assert!(chk("connecttimeout", &["1m30s"]).is_ok());
        assert!(chk("connecttimeout", &["soon"]).is_err());
        assert!(chk("userknownhostsfile", &["a", "b"]).is_ok());
        assert!(chk("userknownhostsfile", &["none", "b"]).is_err());
        assert!(chk("localforward", &["8080"]).is_err());
        assert!(chk("sendenv", &["A=B"]).is_err());
        assert!(chk("escapechar", &["^A"]).is_ok());
        assert!(kind("nosuchthing").is_none());
        assert_eq!(kind("rsaauthentication"), Some(Kind::Unsupported));
    }
}
