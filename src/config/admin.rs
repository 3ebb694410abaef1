//! `admin.token`, `admin.token_env`, `admin.token_file`: the bearer token the
//! admin API requires on mutating endpoints (see `admin::auth`).

use std::path::Path;
use std::sync::Arc;

use super::validate::Errors;
use super::RawAdmin;

/// Shortest admin token accepted, in bytes (a guessable token is no token).
pub const MIN_TOKEN_BYTES: usize = 16;

/// Loads the admin token, if the `admin` section names one. At most one of
/// the three keys may be set; the token (surrounding whitespace trimmed) must
/// be at least [`MIN_TOKEN_BYTES`] long and a valid header value.
pub(super) fn token(a: &RawAdmin, base: &Path, errs: &mut Errors) -> Option<Arc<[u8]>> {
    let set = [
        a.token.as_ref().map(|s| &s.referenced),
        a.token_env.as_ref().map(|s| &s.referenced),
        a.token_file.as_ref().map(|s| &s.referenced),
    ];
    if set.iter().flatten().count() > 1 {
        let loc = set.iter().flatten().nth(1).copied();
        errs.at(
            loc,
            "admin",
            "set at most one of token, token_env, token_file",
        );
        return None;
    }
    let (key, loc, bytes) = if let Some(t) = &a.token {
        ("admin.token", &t.referenced, t.value.clone().into_bytes())
    } else if let Some(env) = &a.token_env {
        match super::load::env_var(&env.value) {
            Ok(v) => ("admin.token_env", &env.referenced, v.into_bytes()),
            Err(why) => {
                errs.at(
                    Some(&env.referenced),
                    "admin.token_env",
                    format!("environment variable {:?} {why}", env.value),
                );
                return None;
            }
        }
    } else if let Some(file) = &a.token_file {
        let path = base.join(&file.value);
        match super::read::read_key_file(&path) {
            Ok(b) => ("admin.token_file", &file.referenced, b),
            Err(m) => {
                errs.at(
                    Some(&file.referenced),
                    "admin.token_file",
                    format!("{}: {m}", path.display()),
                );
                return None;
            }
        }
    } else {
        return None;
    };
    let token = bytes.trim_ascii();
    if token.len() < MIN_TOKEN_BYTES {
        errs.at(
            Some(loc),
            key,
            format!("the admin token must be at least {MIN_TOKEN_BYTES} bytes"),
        );
        return None;
    }
    if !token.iter().all(|b| b.is_ascii_graphic()) {
        errs.at(
            Some(loc),
            key,
            "the admin token must be printable ASCII without spaces",
        );
        return None;
    }
    Some(Arc::from(token))
}
