//! Validation of one route (`routes[i]`): its matchers (`match.host`,
//! `path`, `path_prefix`, `methods`, `headers`, `query`, `cookies`,
//! `jwt_claims`), `forward_claims` and its group reference. The content keys
//! (rewrite, headers, compression, redirect) are in `content.rs`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use http::header::HeaderName;
use http::{HeaderValue, Method};
use serde_saphyr::Spanned;

use super::jwt::RawClaimValue;
use super::model::RouteConfig;
use super::validate::Errors;
use super::{RawMatch, RawRoute};
use crate::route::{ClaimMatch, ClaimValue, HostMatch, PathMatch, Route, ValueMatch};

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

fn jwt_claims(
    cs: Option<&Spanned<BTreeMap<String, RawClaimValue>>>,
    key: &str,
    has_jwt: bool,
    errs: &mut Errors,
) -> Vec<ClaimMatch> {
    let mut out = Vec::new();
    let Some(cs) = cs else { return out };
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
        out.push(ClaimMatch {
            name: name.as_str().into(),
            value,
        });
    }
    out
}

fn forward_claims(
    fc: Option<&Spanned<BTreeMap<String, String>>>,
    key: &str,
    has_jwt: bool,
    errs: &mut Errors,
) -> Vec<(Box<str>, HeaderName)> {
    let mut out: Vec<(Box<str>, HeaderName)> = Vec::new();
    let Some(fc) = fc else { return out };
    let fkey = format!("{key}.forward_claims");
    if !has_jwt {
        errs.at(
            Some(&fc.referenced),
            &fkey,
            "needs a top-level jwt section with the verification keys",
        );
    }
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
        if out.iter().any(|(_, h)| *h == name) {
            errs.at(
                Some(&fc.referenced),
                hkey,
                format!("header {name} already carries another claim"),
            );
            continue;
        }
        out.push((claim.as_str().into(), name));
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

/// Validates `routes[i]`; `groups` maps group names to their index.
pub(super) fn route(
    r: &RawRoute,
    i: usize,
    groups: &HashMap<&str, usize>,
    has_jwt: bool,
    errs: &mut Errors,
) -> Option<RouteConfig> {
    let key = format!("routes[{i}]");
    let before = errs.list.len();
    let m = &r.matchers;
    let query = values(m.query.as_ref(), &format!("{key}.match.query"), errs);
    let cookies = values(m.cookies.as_ref(), &format!("{key}.match.cookies"), errs);
    let jwt_claims = jwt_claims(m.jwt_claims.as_ref(), &key, has_jwt, errs);
    let forward_claims = forward_claims(r.forward_claims.as_ref(), &key, has_jwt, errs);

    let content = super::content::build(r, &key, errs);
    let group = match &r.group {
        Some(g) => groups.get(g.value.as_str()).copied(),
        None => Some(crate::route::NO_GROUP),
    };
    if let (None, Some(g)) = (group, &r.group) {
        errs.at(
            Some(&g.referenced),
            format!("{key}.group"),
            format!("no group named {:?} under groups", g.value),
        );
    }
    let host = m
        .host
        .as_ref()
        .and_then(|h| match HostMatch::parse(&h.value) {
            Ok(h) => Some(h),
            Err(e) => {
                errs.at(Some(&h.referenced), format!("{key}.match.host"), e);
                None
            }
        });
    let path = path(m, &key, errs);
    let methods = methods(m, &key, errs);
    let headers = headers(m, &key, errs);
    if errs.list.len() > before {
        return None;
    }
    Some(Route {
        name: Arc::from(r.name.clone().unwrap_or_else(|| format!("route-{}", i + 1))),
        host,
        path,
        methods,
        headers,
        query,
        cookies,
        jwt_claims,
        forward_claims,
        content,
        group: group?,
    })
}

/// `match.path` or `match.path_prefix` (not both).
fn path(m: &RawMatch, key: &str, errs: &mut Errors) -> PathMatch {
    match (&m.path_prefix, &m.path) {
        (Some(_), Some(p)) => {
            errs.at(
                Some(&p.referenced),
                format!("{key}.match.path"),
                "use path or path_prefix, not both",
            );
            PathMatch::Any
        }
        (Some(p), None) => PathMatch::prefix(&p.value).unwrap_or_else(|e| {
            errs.at(Some(&p.referenced), format!("{key}.match.path_prefix"), e);
            PathMatch::Any
        }),
        (None, Some(p)) => PathMatch::pattern(&p.value).unwrap_or_else(|e| {
            errs.at(Some(&p.referenced), format!("{key}.match.path"), e);
            PathMatch::Any
        }),
        (None, None) => PathMatch::Any,
    }
}

/// `match.methods`.
fn methods(m: &RawMatch, key: &str, errs: &mut Errors) -> Vec<Method> {
    let mut methods = Vec::new();
    if let Some(ms) = &m.methods {
        for (j, name) in ms.value.iter().enumerate() {
            match Method::from_bytes(name.to_ascii_uppercase().as_bytes()) {
                Ok(method) => methods.push(method),
                Err(_) => errs.at(
                    Some(&ms.referenced),
                    format!("{key}.match.methods[{j}]"),
                    format!("{name:?} is not an HTTP method"),
                ),
            }
        }
    }
    methods
}

/// `match.headers`.
fn headers(m: &RawMatch, key: &str, errs: &mut Errors) -> Vec<(HeaderName, ValueMatch)> {
    let mut headers = Vec::new();
    let Some(hs) = &m.headers else {
        return headers;
    };
    for (name, value) in &hs.value {
        let hkey = format!("{key}.match.headers.{name}");
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
            errs.at(Some(&hs.referenced), hkey, "not a valid header name");
            continue;
        };
        if !value.starts_with('~') && HeaderValue::from_str(value).is_err() {
            errs.at(Some(&hs.referenced), hkey, "not a valid header value");
            continue;
        }
        match ValueMatch::parse(value) {
            Ok(m) => headers.push((name, m)),
            Err(e) => errs.at(Some(&hs.referenced), hkey, e),
        }
    }
    headers
}
