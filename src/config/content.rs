//! The route keys of issue 16's content rules: `rewrite`, `request_headers`,
//! `response_headers`, `compression` and `redirect` (raw structs and their
//! validation into [`crate::content::RouteContent`]). Kept apart from
//! `validate.rs`, which calls [`build`] once per route.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::header::{HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::StatusCode;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::units::RawByteSize;
use super::validate::Errors;
use super::RawRoute;
use crate::content::compress::{Compression, Encoding, Levels, TypeMatch};
use crate::content::header_rules::{self, HeaderRules};
use crate::content::redirect::{self, Redirect};
use crate::content::rewrite::Rewrite;
use crate::content::RouteContent;

/// `routes[].rewrite`: `prefix`, or `regex` with `replace`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRewrite {
    /// Replaces the route's `match.path_prefix` in the upstream path.
    pub prefix: Option<Spanned<String>>,
    /// A regular expression searched in the path (every match is replaced).
    pub regex: Option<Spanned<String>>,
    /// The replacement of `regex`; `$1`, `${name}` refer to capture groups.
    pub replace: Option<Spanned<String>>,
}

/// `routes[].request_headers` / `routes[].response_headers`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeaderRules {
    /// Header → value, replacing every value already there.
    pub set: Option<Spanned<BTreeMap<String, String>>>,
    /// Header → value, appended next to any value already there.
    pub add: Option<Spanned<BTreeMap<String, String>>>,
    /// Headers removed (every value), before `set` and `add`.
    pub remove: Option<Spanned<Vec<String>>>,
}

/// `routes[].compression`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCompression {
    /// Codings in server preference order: `zstd`, `br`, `gzip` (default all three).
    pub algorithms: Option<Spanned<Vec<String>>>,
    /// Bodies known to be smaller are sent as they are (default `1KiB`).
    pub min_size: Option<Spanned<RawByteSize>>,
    /// Media types compressed: `type/subtype`, `type/*`, `type/*+suffix`.
    pub types: Option<Spanned<Vec<String>>>,
    /// Level per coding.
    pub levels: Option<Spanned<RawLevels>>,
}

/// `routes[].compression.levels`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLevels {
    /// zstd level, 1 to 22 (default 3).
    pub zstd: Option<Spanned<i32>>,
    /// brotli quality, 0 to 11 (default 4).
    pub br: Option<Spanned<u32>>,
    /// gzip level, 1 to 9 (default 6).
    pub gzip: Option<Spanned<u32>>,
}

/// `routes[].redirect`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedirect {
    /// `http` or `https`.
    pub scheme: Option<Spanned<String>>,
    /// The new host, without port.
    pub host: Option<Spanned<String>>,
    /// The new port.
    pub port: Option<Spanned<u16>>,
    /// The new path (the query is kept).
    pub path: Option<Spanned<String>>,
    /// 301 (default), 302, 303, 307 or 308.
    pub status: Option<Spanned<u16>>,
}

/// Validates the content keys of route `r` (`key` = `routes[i]`): `None`
/// when it uses none of them. Also checks that the route has exactly one
/// of `group` and `redirect`.
pub(super) fn build(r: &RawRoute, key: &str, errs: &mut Errors) -> Option<Arc<RouteContent>> {
    let before = errs.list.len();
    match (&r.group, &r.redirect) {
        (None, None) => errs.at(
            None,
            format!("{key}.group"),
            "a route needs a group (or a redirect)",
        ),
        (Some(g), Some(_)) => errs.at(
            Some(&g.referenced),
            format!("{key}.group"),
            "a route with a redirect has no group",
        ),
        _ => {}
    }
    if let Some(rd) = &r.redirect {
        for (name, present) in [
            ("rewrite", r.rewrite.is_some()),
            ("request_headers", r.request_headers.is_some()),
            ("compression", r.compression.is_some()),
        ] {
            if present {
                errs.at(
                    Some(&rd.referenced),
                    format!("{key}.{name}"),
                    "not used on a route with a redirect (nothing is forwarded)",
                );
            }
        }
    }
    let content = RouteContent {
        redirect: r
            .redirect
            .as_ref()
            .and_then(|rd| redirect_rule(rd, &format!("{key}.redirect"), errs)),
        rewrite: r
            .rewrite
            .as_ref()
            .and_then(|rw| rewrite(rw, r, &format!("{key}.rewrite"), errs)),
        request_headers: r
            .request_headers
            .as_ref()
            .map(|h| rules(h, &format!("{key}.request_headers"), true, errs))
            .unwrap_or_default(),
        response_headers: r
            .response_headers
            .as_ref()
            .map(|h| rules(h, &format!("{key}.response_headers"), false, errs))
            .unwrap_or_default(),
        compression: r
            .compression
            .as_ref()
            .map(|c| compression(c, &format!("{key}.compression"), errs)),
    };
    let used = content.redirect.is_some()
        || content.rewrite.is_some()
        || !content.request_headers.is_empty()
        || !content.response_headers.is_empty()
        || content.compression.is_some();
    (errs.list.len() == before && used).then(|| Arc::new(content))
}

fn redirect_rule(rd: &Spanned<RawRedirect>, key: &str, errs: &mut Errors) -> Option<Redirect> {
    let v = &rd.value;
    let before = errs.list.len();
    let scheme = v
        .scheme
        .as_ref()
        .and_then(|s| match s.value.to_ascii_lowercase().as_str() {
            "http" => Some("http"),
            "https" => Some("https"),
            other => {
                errs.at(
                    Some(&s.referenced),
                    format!("{key}.scheme"),
                    format!("{other:?}: http or https"),
                );
                None
            }
        });
    let host = v.host.as_ref().and_then(|h| {
        let ok = !h.value.is_empty()
            && h.value.parse::<http::uri::Authority>().is_ok_and(|a| {
                a.port().is_none() && !a.as_str().contains('@') && a.host() == h.value
            });
        if ok {
            Some(h.value.to_ascii_lowercase().into_boxed_str())
        } else {
            errs.at(
                Some(&h.referenced),
                format!("{key}.host"),
                format!(
                    "{:?} is not a host name (without scheme, port or path)",
                    h.value
                ),
            );
            None
        }
    });
    let port = v.port.as_ref().and_then(|p| {
        if p.value == 0 {
            errs.at(
                Some(&p.referenced),
                format!("{key}.port"),
                "must be 1 to 65535",
            );
            None
        } else {
            Some(p.value)
        }
    });
    let path = v.path.as_ref().and_then(|p| {
        let ok = p.value.starts_with('/')
            && !p.value.contains(['?', '#'])
            && PathAndQuery::try_from(p.value.as_str()).is_ok();
        if ok {
            Some(p.value.clone().into_boxed_str())
        } else {
            errs.at(
                Some(&p.referenced),
                format!("{key}.path"),
                format!(
                    "{:?} is not a path (starting with /, without query)",
                    p.value
                ),
            );
            None
        }
    });
    let status = match &v.status {
        None => StatusCode::MOVED_PERMANENTLY,
        Some(s) if redirect::STATUSES.contains(&s.value) => {
            StatusCode::from_u16(s.value).unwrap_or(StatusCode::MOVED_PERMANENTLY)
        }
        Some(s) => {
            errs.at(
                Some(&s.referenced),
                format!("{key}.status"),
                format!("{}: 301, 302, 303, 307 or 308", s.value),
            );
            StatusCode::MOVED_PERMANENTLY
        }
    };
    if v.scheme.is_none() && v.host.is_none() && v.port.is_none() && v.path.is_none() {
        errs.at(
            Some(&rd.referenced),
            key,
            "must change at least one of scheme, host, port and path (or it redirects to itself)",
        );
    }
    (errs.list.len() == before).then_some(Redirect {
        scheme,
        host,
        port,
        path,
        status,
    })
}

fn rewrite(
    rw: &Spanned<RawRewrite>,
    r: &RawRoute,
    key: &str,
    errs: &mut Errors,
) -> Option<Rewrite> {
    let v = &rw.value;
    match (&v.prefix, &v.regex, &v.replace) {
        (Some(p), None, None) => {
            if r.matchers.path.is_some() {
                errs.at(
                    Some(&p.referenced),
                    format!("{key}.prefix"),
                    "replaces match.path_prefix: not usable with match.path (use regex)",
                );
                return None;
            }
            if !p.value.starts_with('/')
                || PathAndQuery::try_from(p.value.as_str()).is_err()
                || p.value.contains(['?', '#'])
            {
                errs.at(
                    Some(&p.referenced),
                    format!("{key}.prefix"),
                    format!("{:?} is not a path starting with /", p.value),
                );
                return None;
            }
            let from = r.matchers.path_prefix.as_ref().map_or(String::new(), |pp| {
                crate::route::path::normalize(&pp.value)
                    .trim_end_matches('/')
                    .to_string()
            });
            Some(Rewrite::Prefix {
                from: from.into(),
                to: p.value.as_str().into(),
            })
        }
        (None, Some(re), Some(rep)) => {
            let regex = match regex::RegexBuilder::new(&re.value)
                .size_limit(1 << 20)
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    errs.at(
                        Some(&re.referenced),
                        format!("{key}.regex"),
                        format!("not a valid regular expression: {e}"),
                    );
                    return None;
                }
            };
            if let Some(bad) = missing_group(&regex, &rep.value) {
                errs.at(
                    Some(&rep.referenced),
                    format!("{key}.replace"),
                    format!("refers to group {bad:?}, which the regex does not have"),
                );
                return None;
            }
            Some(Rewrite::Regex {
                regex,
                replace: rep.value.as_str().into(),
            })
        }
        (None, Some(re), None) => {
            errs.at(
                Some(&re.referenced),
                format!("{key}.replace"),
                "regex needs replace",
            );
            None
        }
        (None, None, Some(rep)) => {
            errs.at(
                Some(&rep.referenced),
                format!("{key}.regex"),
                "replace needs regex",
            );
            None
        }
        (None, None, None) => {
            errs.at(
                Some(&rw.referenced),
                key,
                "needs prefix, or regex and replace",
            );
            None
        }
        (Some(p), _, _) => {
            errs.at(
                Some(&p.referenced),
                format!("{key}.prefix"),
                "use prefix, or regex and replace, not both",
            );
            None
        }
    }
}

/// The first `$N` / `${name}` of `replace` that `regex` has no group for.
fn missing_group(regex: &regex::Regex, replace: &str) -> Option<String> {
    let names: Vec<&str> = regex.capture_names().flatten().collect();
    let groups = regex.captures_len();
    let b = replace.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'$' {
            i += 1;
            continue;
        }
        if b.get(i + 1) == Some(&b'$') {
            i += 2;
            continue;
        }
        let (name, next) = if b.get(i + 1) == Some(&b'{') {
            match replace[i + 2..].find('}') {
                Some(end) => (&replace[i + 2..i + 2 + end], i + 3 + end),
                None => return None,
            }
        } else {
            let len = replace[i + 1..]
                .bytes()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == b'_')
                .count();
            (&replace[i + 1..i + 1 + len], i + 1 + len)
        };
        i = next;
        if name.is_empty() {
            continue;
        }
        let known = match name.parse::<usize>() {
            Ok(n) => n < groups,
            Err(_) => names.contains(&name),
        };
        if !known {
            return Some(name.to_string());
        }
    }
    None
}

fn rules(raw: &RawHeaderRules, key: &str, request: bool, errs: &mut Errors) -> HeaderRules {
    let mut out = HeaderRules::default();
    let check_name = |name: &str, at: &serde_saphyr::Location, k: String, errs: &mut Errors| {
        let Ok(n) = HeaderName::from_bytes(name.as_bytes()) else {
            errs.at(Some(at), k, format!("{name:?} is not a valid header name"));
            return None;
        };
        if header_rules::RESERVED.contains(&n.as_str())
            || (request && n == http::header::HOST && k.contains(".remove"))
        {
            errs.at(
                Some(at),
                k,
                format!("{n} frames the message or belongs to one hop; weir manages it"),
            );
            return None;
        }
        Some(n)
    };
    if let Some(list) = &raw.remove {
        for (j, name) in list.value.iter().enumerate() {
            if let Some(n) = check_name(name, &list.referenced, format!("{key}.remove[{j}]"), errs)
            {
                out.remove.push(n);
            }
        }
    }
    for (which, map) in [("set", &raw.set), ("add", &raw.add)] {
        let Some(map) = map else { continue };
        for (name, value) in &map.value {
            let k = format!("{key}.{which}.{name}");
            let Some(n) = check_name(name, &map.referenced, k.clone(), errs) else {
                continue;
            };
            // Visible ASCII, spaces and tabs: obs-text (RFC 9110 §5.5) is
            // refused, so a value means the same to every peer.
            let ascii = value
                .bytes()
                .all(|b| b == b'\t' || (0x20..0x7f).contains(&b));
            let Some(v) = HeaderValue::from_str(value).ok().filter(|_| ascii) else {
                errs.at(
                    Some(&map.referenced),
                    k,
                    format!(
                        "{value:?} is not a valid header value (visible ASCII, spaces and tabs)"
                    ),
                );
                continue;
            };
            if which == "set" {
                out.set.push((n, v));
            } else {
                out.add.push((n, v));
            }
        }
    }
    out
}

fn compression(raw: &Spanned<RawCompression>, key: &str, errs: &mut Errors) -> Compression {
    let mut out = Compression::default();
    let v = &raw.value;
    if let Some(list) = &v.algorithms {
        let akey = format!("{key}.algorithms");
        if list.value.is_empty() {
            errs.at(
                Some(&list.referenced),
                &akey,
                "must name at least one of zstd, br, gzip",
            );
        }
        let mut algorithms = Vec::new();
        for (j, name) in list.value.iter().enumerate() {
            match Encoding::from_name(&name.to_ascii_lowercase()) {
                Some(e) if algorithms.contains(&e) => errs.at(
                    Some(&list.referenced),
                    format!("{akey}[{j}]"),
                    format!("{name} is listed twice"),
                ),
                Some(e) => algorithms.push(e),
                None => errs.at(
                    Some(&list.referenced),
                    format!("{akey}[{j}]"),
                    format!("unknown algorithm {name:?}: zstd, br or gzip"),
                ),
            }
        }
        out.algorithms = algorithms;
    }
    if let Some(m) = &v.min_size {
        match m.value.bytes() {
            Ok(n) => out.min_size = n,
            Err(e) => errs.at(Some(&m.referenced), format!("{key}.min_size"), e),
        }
    }
    if let Some(list) = &v.types {
        let tkey = format!("{key}.types");
        if list.value.is_empty() {
            errs.at(
                Some(&list.referenced),
                &tkey,
                "must name at least one media type",
            );
        }
        out.types = Vec::new();
        for (j, t) in list.value.iter().enumerate() {
            match TypeMatch::parse(t) {
                Ok(m) => out.types.push(m),
                Err(e) => errs.at(Some(&list.referenced), format!("{tkey}[{j}]"), e),
            }
        }
    }
    if let Some(l) = &v.levels {
        out.levels = levels(&l.value, &format!("{key}.levels"), errs);
    }
    out
}

fn levels(raw: &RawLevels, key: &str, errs: &mut Errors) -> Levels {
    let mut out = Levels::default();
    if let Some(z) = &raw.zstd {
        if (1..=22).contains(&z.value) {
            out.zstd = z.value;
        } else {
            errs.at(
                Some(&z.referenced),
                format!("{key}.zstd"),
                "must be 1 to 22",
            );
        }
    }
    if let Some(b) = &raw.br {
        if b.value <= 11 {
            out.br = b.value;
        } else {
            errs.at(Some(&b.referenced), format!("{key}.br"), "must be 0 to 11");
        }
    }
    if let Some(g) = &raw.gzip {
        if (1..=9).contains(&g.value) {
            out.gzip = g.value;
        } else {
            errs.at(Some(&g.referenced), format!("{key}.gzip"), "must be 1 to 9");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn load(route: &str) -> Result<crate::config::Config, String> {
        let yaml = format!(
            "listeners:\n  - address: 127.0.0.1:0\nroutes:\n  - {route}\ngroups:\n  g:\n    servers:\n      - address: 127.0.0.1:9001\n"
        );
        crate::config::load_str(&yaml, Path::new("t.yaml")).map_err(|e| e.to_string())
    }

    fn content(route: &str) -> Arc<RouteContent> {
        let c = load(route).unwrap_or_else(|e| panic!("{route}: {e}"));
        c.routes[0].content.clone().expect("content")
    }

    #[test]
    fn plain_route_has_no_content() {
        let c = load("group: g").unwrap();
        assert!(c.routes[0].content.is_none());
    }

    #[test]
    fn group_and_redirect() {
        let e = load("match: { path_prefix: /a }").unwrap_err();
        assert!(
            e.contains("routes[0].group: a route needs a group (or a redirect)"),
            "{e}"
        );
        let e = load("group: g\n    redirect: { scheme: https }").unwrap_err();
        assert!(
            e.contains("routes[0].group: a route with a redirect has no group"),
            "{e}"
        );
        let c = content("redirect: { scheme: https }");
        let r = c.redirect.as_ref().unwrap();
        assert_eq!(r.scheme, Some("https"));
        assert_eq!(r.status, StatusCode::MOVED_PERMANENTLY);
        let c = load("redirect: { scheme: https }").unwrap();
        assert_eq!(c.routes[0].group, crate::route::NO_GROUP);
        for (yaml, want) in [
            (
                "redirect: { scheme: ftp }",
                "routes[0].redirect.scheme: \"ftp\": http or https",
            ),
            (
                "redirect: { status: 302 }",
                "must change at least one of scheme",
            ),
            (
                "redirect: { scheme: https, status: 200 }",
                "routes[0].redirect.status: 200: 301, 302, 303, 307 or 308",
            ),
            (
                "redirect: { host: \"a.com:80\" }",
                "routes[0].redirect.host",
            ),
            ("redirect: { path: \"x\" }", "routes[0].redirect.path"),
            (
                "redirect: { port: 0 }",
                "routes[0].redirect.port: must be 1 to 65535",
            ),
            (
                "redirect: { scheme: https }\n    compression: {}",
                "routes[0].compression: not used on a route with a redirect",
            ),
        ] {
            let e = load(yaml).unwrap_err();
            assert!(e.contains(want), "{yaml}: {e}");
        }
    }

    #[test]
    fn rewrites() {
        let c =
            content("match: { path_prefix: /api/ }\n    group: g\n    rewrite: { prefix: /v2 }");
        match c.rewrite.as_ref().unwrap() {
            Rewrite::Prefix { from, to } => assert_eq!((&**from, &**to), ("/api", "/v2")),
            other => panic!("{other:?}"),
        }
        for (yaml, want) in [
            (
                "rewrite: { regex: \"^/(a\", replace: /b }",
                "routes[0].rewrite.regex: not a valid regular expression",
            ),
            (
                "rewrite: { regex: \"^/(a)\", replace: /b/$2 }",
                "routes[0].rewrite.replace: refers to group \"2\"",
            ),
            (
                "rewrite: { regex: \"^/(a)\" }",
                "routes[0].rewrite.replace: regex needs replace",
            ),
            ("rewrite: { prefix: v2 }", "routes[0].rewrite.prefix"),
            ("rewrite: {}", "routes[0].rewrite: needs prefix"),
            ("rewrite: { prefix: /a, regex: x, replace: y }", "not both"),
        ] {
            let e = load(&format!("group: g\n    {yaml}")).unwrap_err();
            assert!(e.contains(want), "{yaml}: {e}");
        }
        let e = load("match: { path: \"/u/{id}\" }\n    group: g\n    rewrite: { prefix: /v2 }")
            .unwrap_err();
        assert!(e.contains("not usable with match.path"), "{e}");
        let c = content(
            "group: g\n    rewrite: { regex: \"^/u/(?P<id>[0-9]+)$\", replace: \"/users/${id}\" }",
        );
        assert!(matches!(c.rewrite, Some(Rewrite::Regex { .. })));
    }

    #[test]
    fn header_rules_are_checked() {
        let c = content("group: g\n    request_headers: { set: { x-env: prod, host: internal }, add: { x-tag: edge }, remove: [x-debug] }\n    response_headers: { remove: [server, x-powered-by] }");
        assert_eq!(c.request_headers.set.len(), 2);
        assert_eq!(c.request_headers.add.len(), 1);
        assert_eq!(c.response_headers.remove.len(), 2);
        for (yaml, want) in [
            (
                "request_headers: { set: { \"bad name\": x } }",
                "routes[0].request_headers.set.bad name: \"bad name\" is not a valid header name",
            ),
            (
                "request_headers: { add: { x-a: \"line\\nbreak\" } }",
                "routes[0].request_headers.add.x-a:",
            ),
            (
                "response_headers: { set: { content-length: \"5\" } }",
                "routes[0].response_headers.set.content-length",
            ),
            (
                "request_headers: { remove: [host] }",
                "routes[0].request_headers.remove[0]",
            ),
            (
                "response_headers: { remove: [transfer-encoding] }",
                "routes[0].response_headers.remove[0]",
            ),
        ] {
            let e = load(&format!("group: g\n    {yaml}")).unwrap_err();
            assert!(e.contains(want), "{yaml}: {e}");
        }
    }

    #[test]
    fn compression_keys() {
        let c = content("group: g\n    compression: {}");
        let z = c.compression.as_ref().unwrap();
        assert_eq!(z.algorithms, Encoding::ALL);
        assert_eq!(z.min_size, 1024);
        assert_eq!(z.levels, Levels::default());
        let c = content("group: g\n    compression: { algorithms: [gzip, br], min_size: \"10KiB\", types: [text/*, application/json], levels: { zstd: 5, br: 5, gzip: 1 } }");
        let z = c.compression.as_ref().unwrap();
        assert_eq!(z.algorithms, [Encoding::Gzip, Encoding::Br]);
        assert_eq!(z.min_size, 10 * 1024);
        assert_eq!(z.types.len(), 2);
        assert_eq!(
            z.levels,
            Levels {
                zstd: 5,
                br: 5,
                gzip: 1
            }
        );
        let c = content("group: g\n    compression: { min_size: 1KB }");
        assert_eq!(c.compression.as_ref().unwrap().min_size, 1000);
        let c = content("group: g\n    compression: { min_size: 100 }");
        assert_eq!(c.compression.as_ref().unwrap().min_size, 100);
        for (yaml, want) in [
            (
                "compression: { algorithms: [deflate] }",
                "routes[0].compression.algorithms[0]: unknown algorithm \"deflate\"",
            ),
            (
                "compression: { algorithms: [gzip, gzip] }",
                "routes[0].compression.algorithms[1]: gzip is listed twice",
            ),
            (
                "compression: { algorithms: [] }",
                "routes[0].compression.algorithms: must name",
            ),
            (
                "compression: { min_size: lots }",
                "routes[0].compression.min_size",
            ),
            (
                "compression: { types: [json] }",
                "routes[0].compression.types[0]",
            ),
            (
                "compression: { levels: { zstd: 30 } }",
                "routes[0].compression.levels.zstd: must be 1 to 22",
            ),
            (
                "compression: { levels: { br: 12 } }",
                "routes[0].compression.levels.br: must be 0 to 11",
            ),
            (
                "compression: { levels: { gzip: 0 } }",
                "routes[0].compression.levels.gzip: must be 1 to 9",
            ),
            ("compression: { level: 3 }", "unknown field"),
        ] {
            let e = load(&format!("group: g\n    {yaml}")).unwrap_err();
            assert!(e.contains(want), "{yaml}: {e}");
        }
    }
}
