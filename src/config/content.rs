//! The route keys of issue 16's content rules: `rewrite`, `request_headers`,
//! `response_headers`, `compression` and `redirect` (raw structs and their
//! validation into [`crate::content::RouteContent`]). `routes.rs` calls
//! [`build`] once per route; the header rules are checked here, rewrites in
//! `rewrite.rs`, redirects in `redirect.rs`, compression in `compression.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::header::{HeaderName, HeaderValue};
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::units::RawByteSize;
use super::validate::Errors;
use super::RawRoute;
use crate::content::header_rules::{self, HeaderRules};
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
            .and_then(|rd| super::redirect::redirect_rule(rd, &format!("{key}.redirect"), errs)),
        rewrite: r
            .rewrite
            .as_ref()
            .and_then(|rw| super::rewrite::rewrite(rw, r, &format!("{key}.rewrite"), errs)),
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
            .map(|c| super::compression::compression(c, &format!("{key}.compression"), errs)),
    };
    let used = content.redirect.is_some()
        || content.rewrite.is_some()
        || !content.request_headers.is_empty()
        || !content.response_headers.is_empty()
        || content.compression.is_some();
    (errs.list.len() == before && used).then(|| Arc::new(content))
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use http::StatusCode;

    use crate::content::compress::{Encoding, Levels};
    use crate::content::rewrite::Rewrite;

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
