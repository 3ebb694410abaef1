//! Validation of the top-level `affinity` section (the sticky-cookie secret)
//! and of `groups.*.sticky`.
//!
//! The secret is loaded here, at config load time, so that `weir --check`
//! reports an unset environment variable or an unreadable file with its
//! file, line and column.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use serde_saphyr::{Location, Spanned};

use super::model::ServerConfig;
use super::validate::Errors;
use super::{RawAffinity, RawGroup, RawSticky};
use crate::affinity::codec::MAX_ID_LEN;
use crate::affinity::{AffinitySecret, SameSite, Secure, StickyConfig};
use crate::http_syntax::is_tchar;

/// Largest `secret_file` read, in bytes.
const MAX_SECRET_FILE: u64 = 64 * 1024;
/// Longest cookie name accepted, in bytes.
const MAX_COOKIE_NAME: usize = 128;

/// Loads the secret named by the `affinity` section, if there is one.
pub(super) fn secret(
    raw: Option<&Spanned<RawAffinity>>,
    base: &Path,
    errs: &mut Errors,
) -> Option<AffinitySecret> {
    let raw = raw?;
    let a = &raw.value;
    let set = [
        a.secret_env.as_ref().map(|s| &s.referenced),
        a.secret_file.as_ref().map(|s| &s.referenced),
        a.secret.as_ref().map(|s| &s.referenced),
    ];
    let count = set.iter().flatten().count();
    if count != 1 {
        let loc = set
            .iter()
            .flatten()
            .nth(1)
            .copied()
            .unwrap_or(&raw.referenced);
        errs.at(
            Some(loc),
            "affinity",
            "set exactly one of secret_env, secret_file, secret",
        );
        return None;
    }
    let (key, loc, bytes) = secret_bytes(a, base, errs)?;
    match AffinitySecret::new(&bytes) {
        Ok(s) => Some(s),
        Err(m) => {
            errs.at(Some(loc), key, m);
            None
        }
    }
}

/// The secret's key, location and bytes, read from the environment, a file
/// or the config itself.
fn secret_bytes<'a>(
    a: &'a RawAffinity,
    base: &Path,
    errs: &mut Errors,
) -> Option<(&'static str, &'a Location, Vec<u8>)> {
    let found = if let Some(env) = &a.secret_env {
        let key = "affinity.secret_env";
        if env.value.is_empty() {
            errs.at(
                Some(&env.referenced),
                key,
                "must name an environment variable",
            );
            return None;
        }
        match super::load::env_var(&env.value) {
            Ok(v) => (key, &env.referenced, v.into_bytes()),
            Err(why) => {
                errs.at(
                    Some(&env.referenced),
                    key,
                    format!("environment variable {} {why}", env.value),
                );
                return None;
            }
        }
    } else if let Some(file) = &a.secret_file {
        let key = "affinity.secret_file";
        let path = base.join(&file.value);
        match read_secret_file(&path) {
            Ok(b) => (key, &file.referenced, b),
            Err(m) => {
                errs.at(
                    Some(&file.referenced),
                    key,
                    format!("{}: {m}", path.display()),
                );
                return None;
            }
        }
    } else if let Some(s) = &a.secret {
        (
            "affinity.secret",
            &s.referenced,
            s.value.clone().into_bytes(),
        )
    } else {
        return None;
    };
    Some(found)
}

/// The file's bytes without surrounding ASCII whitespace (a final newline).
fn read_secret_file(path: &Path) -> Result<Vec<u8>, String> {
    let bytes = super::read::read_bounded(path, MAX_SECRET_FILE)?;
    Ok(bytes.trim_ascii().to_vec())
}

/// Validates `groups.NAME.sticky` (`key` is `groups.NAME`) of a group whose
/// valid servers are `servers`.
pub(super) fn sticky(
    raw: &Spanned<RawSticky>,
    key: &str,
    secret: Option<&AffinitySecret>,
    servers: &[ServerConfig],
    errs: &mut Errors,
) -> Option<StickyConfig> {
    let key = format!("{key}.sticky");
    let before = errs.list.len();
    let s = &raw.value;

    let name = s.cookie.value.as_str();
    if name.is_empty() || name.len() > MAX_COOKIE_NAME || !name.bytes().all(is_tchar) {
        errs.at(
            Some(&s.cookie.referenced),
            format!("{key}.cookie"),
            format!(
                "{name:?} is not a valid cookie name: 1 to {MAX_COOKIE_NAME} letters, digits \
                 or !#$%&'*+-.^_`|~ (an RFC 6265 token)"
            ),
        );
    }

    let max_age = max_age(s, &key, errs);
    let path = cookie_path(s, &key, errs);
    let domain = domain(s, &key, errs);
    let same_site = same_site(s, &key, errs);
    let secure = secure(s, name, same_site, &key, errs);
    if name.starts_with("__Host-") && (path != "/" || domain.is_some()) {
        errs.at(
            Some(&s.cookie.referenced),
            format!("{key}.cookie"),
            "a __Host- cookie needs path / and no domain (RFC 6265bis §4.1.3.2)",
        );
    }

    ids_fit_in_a_cookie(raw, servers, &key, errs);

    if errs.list.len() > before {
        return None;
    }
    Some(StickyConfig {
        cookie: name.into(),
        max_age,
        path: path.into(),
        domain: domain.map(Into::into),
        secure,
        same_site,
        http_only: s.http_only.unwrap_or(true),
        secret: secret.cloned(),
    })
}

/// `sticky.max_age`: whole seconds, at least 1s.
fn max_age(s: &RawSticky, key: &str, errs: &mut Errors) -> Option<Duration> {
    s.max_age.as_ref().and_then(|m| {
        let k = format!("{key}.max_age");
        match super::units::parse_duration(&m.value) {
            Err(e) => errs.at(Some(&m.referenced), k, format!("{:?}: {e}", m.value)),
            Ok(d) if d < Duration::from_secs(1) => {
                errs.at(Some(&m.referenced), k, "must be at least 1s");
            }
            Ok(d) if d.subsec_nanos() != 0 => {
                errs.at(
                    Some(&m.referenced),
                    k,
                    "must be a whole number of seconds (Max-Age counts seconds)",
                );
            }
            Ok(d) => return Some(d),
        }
        None
    })
}

/// `sticky.path` (default `/`).
fn cookie_path<'a>(s: &'a RawSticky, key: &str, errs: &mut Errors) -> &'a str {
    match &s.path {
        None => "/",
        Some(p) => {
            let ok = p.value.starts_with('/')
                && p.value
                    .bytes()
                    .all(|b| (0x20..0x7f).contains(&b) && b != b';');
            if !ok {
                errs.at(
                    Some(&p.referenced),
                    format!("{key}.path"),
                    "must start with / and hold printable ASCII without ';'",
                );
            }
            p.value.as_str()
        }
    }
}

/// `sticky.domain`.
fn domain<'a>(s: &'a RawSticky, key: &str, errs: &mut Errors) -> Option<&'a str> {
    s.domain.as_ref().map(|d| {
        let host = d.value.strip_prefix('.').unwrap_or(&d.value);
        let ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !ok {
            errs.at(
                Some(&d.referenced),
                format!("{key}.domain"),
                format!("{:?} is not a domain name", d.value),
            );
        }
        d.value.as_str()
    })
}

/// `sticky.same_site` (default `lax`).
fn same_site(s: &RawSticky, key: &str, errs: &mut Errors) -> SameSite {
    match &s.same_site {
        None => SameSite::Lax,
        Some(v) => match v.value.to_ascii_lowercase().as_str() {
            "lax" => SameSite::Lax,
            "strict" => SameSite::Strict,
            "none" => SameSite::None,
            _ => {
                errs.at(
                    Some(&v.referenced),
                    format!("{key}.same_site"),
                    format!("{:?}: expected lax, strict or none", v.value),
                );
                SameSite::Lax
            }
        },
    }
}

/// `sticky.secure`, implied by `same_site: none` and `__Secure-`/`__Host-` names.
fn secure(s: &RawSticky, name: &str, same_site: SameSite, key: &str, errs: &mut Errors) -> Secure {
    // Browsers drop SameSite=None without Secure, and __Secure-/__Host-
    // cookies without Secure (RFC 6265bis §4.1.3): those imply `secure: true`.
    let needs_secure =
        same_site == SameSite::None || name.starts_with("__Secure-") || name.starts_with("__Host-");
    match &s.secure {
        None if needs_secure => Secure::Always,
        None => Secure::Auto,
        Some(v) if v.value => Secure::Always,
        Some(v) if needs_secure => {
            errs.at(
                Some(&v.referenced),
                format!("{key}.secure"),
                "cannot be false with same_site: none or a __Secure-/__Host- cookie name \
                 (browsers would drop the cookie)",
            );
            Secure::Never
        }
        Some(_) => Secure::Never,
    }
}

/// Every server id must fit in the cookie.
fn ids_fit_in_a_cookie(
    raw: &Spanned<RawSticky>,
    servers: &[ServerConfig],
    key: &str,
    errs: &mut Errors,
) {
    for srv in servers {
        if srv.id.len() > MAX_ID_LEN {
            errs.at(
                Some(&raw.referenced),
                key,
                format!(
                    "server id {:?} is longer than {MAX_ID_LEN} bytes, too long for a \
                     sticky cookie; give the server a shorter id",
                    srv.id
                ),
            );
        }
    }
}

/// Two sticky groups may not share a cookie name: the browser keeps one value
/// per name (and path), so the groups would overwrite each other's pin.
pub(super) fn unique_cookie_names(groups: &BTreeMap<String, RawGroup>, errs: &mut Errors) {
    let mut seen: HashMap<&str, &str> = HashMap::new();
    for (group, g) in groups {
        let Some(s) = &g.sticky else { continue };
        let name = s.value.cookie.value.as_str();
        if let Some(other) = seen.get(name) {
            errs.at(
                Some(&s.value.cookie.referenced),
                format!("groups.{group}.sticky.cookie"),
                format!(
                    "cookie name {name:?} is already used by group {other:?}; each sticky \
                     group needs its own cookie"
                ),
            );
        } else {
            seen.insert(name, group);
        }
    }
}
