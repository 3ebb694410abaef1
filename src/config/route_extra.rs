//! Validation of the route keys added with JWT routing (issue 6):
//! `match.query`, `match.cookies`, `match.jwt_claims` and `forward_claims`.
//! Kept apart from `validate.rs` so that file stays about the core keys.

use std::collections::BTreeMap;

use http::header::HeaderName;
use serde_saphyr::Spanned;

use super::jwt::RawClaimValue;
use super::validate::Errors;
use super::RawRoute;
use crate::route::{ClaimMatch, ClaimValue, ValueMatch};

/// The compiled extra matchers of one route.
#[derive(Default)]
pub(super) struct RouteExtra {
    pub query: Vec<(Box<str>, ValueMatch)>,
    pub cookies: Vec<(Box<str>, ValueMatch)>,
    pub jwt_claims: Vec<ClaimMatch>,
    pub forward_claims: Vec<(Box<str>, HeaderName)>,
}

/// Headers weir sets itself; a claim must not overwrite them, nor the
/// framing and hop-by-hop headers of `content::header_rules::RESERVED`.
const WEIR_SET_HEADERS: &[&str] = &[
    "host",
    "via",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
];

/// True for a header a forwarded claim may not name.
fn reserved(name: &str) -> bool {
    WEIR_SET_HEADERS.contains(&name) || crate::content::header_rules::RESERVED.contains(&name)
}

pub(super) fn build(r: &RawRoute, key: &str, has_jwt: bool, errs: &mut Errors) -> RouteExtra {
    let m = &r.matchers;
    let mut out = RouteExtra {
        query: values(m.query.as_ref(), &format!("{key}.match.query"), errs),
        cookies: values(m.cookies.as_ref(), &format!("{key}.match.cookies"), errs),
        ..RouteExtra::default()
    };
    if let Some(cs) = &m.jwt_claims {
        let ckey = format!("{key}.match.jwt_claims");
        if !has_jwt {
            errs.at(
                Some(&cs.referenced),
                &ckey,
                "needs a top-level jwt section with the verification keys",
            );
        }
        if cs.value.is_empty() {
            errs.at(Some(&cs.referenced), &ckey, "must name at least one claim");
        }
        for (name, value) in &cs.value {
            if name.is_empty() || name.starts_with('.') || name.ends_with('.') {
                errs.at(
                    Some(&cs.referenced),
                    format!("{ckey}.{name}"),
                    "not a valid claim name",
                );
                continue;
            }
            let value = match value {
                RawClaimValue::Str(s) if s == "*" => ClaimValue::Present,
                RawClaimValue::Str(s) => ClaimValue::Str(s.as_str().into()),
                RawClaimValue::Int(i) => ClaimValue::Int(*i),
                RawClaimValue::Float(f) => ClaimValue::Float(*f),
                RawClaimValue::Bool(b) => ClaimValue::Bool(*b),
            };
            out.jwt_claims.push(ClaimMatch {
                name: name.as_str().into(),
                value,
            });
        }
    }
    if let Some(fc) = &r.forward_claims {
        let fkey = format!("{key}.forward_claims");
        if !has_jwt {
            errs.at(
                Some(&fc.referenced),
                &fkey,
                "needs a top-level jwt section with the verification keys",
            );
        }
        let mut seen = Vec::new();
        for (claim, header) in &fc.value {
            let hkey = format!("{fkey}.{claim}");
            let Ok(name) = HeaderName::from_bytes(header.as_bytes()) else {
                errs.at(
                    Some(&fc.referenced),
                    hkey,
                    format!("{header:?} is not a valid header name"),
                );
                continue;
            };
            if reserved(name.as_str()) {
                errs.at(
                    Some(&fc.referenced),
                    hkey,
                    format!("{name} is managed by weir and cannot carry a claim"),
                );
                continue;
            }
            if seen.contains(&name) {
                errs.at(
                    Some(&fc.referenced),
                    hkey,
                    format!("header {name} already carries another claim"),
                );
                continue;
            }
            seen.push(name.clone());
            out.forward_claims.push((claim.as_str().into(), name));
        }
    }
    out
}

fn values(
    map: Option<&Spanned<BTreeMap<String, String>>>,
    key: &str,
    errs: &mut Errors,
) -> Vec<(Box<str>, ValueMatch)> {
    let Some(map) = map else { return Vec::new() };
    let mut out = Vec::new();
    for (name, value) in &map.value {
        if name.is_empty() {
            errs.at(Some(&map.referenced), key, "names must not be empty");
            continue;
        }
        match ValueMatch::parse(value) {
            Ok(m) => out.push((name.as_str().into(), m)),
            Err(e) => errs.at(Some(&map.referenced), format!("{key}.{name}"), e),
        }
    }
    out
}
