//! Redirects (`routes[].redirect`): the route answers with a redirect
//! instead of forwarding, and has no group. Any of scheme, host, port and
//! path is replaced; the rest of the URL (path and query) is kept.
//!
//! `redirect: { scheme: https }` is the HTTP→HTTPS redirect: the request's
//! host, path and query, on the default port of https. The port follows
//! the rule of Envoy's and Traefik's scheme redirects: an explicit `port`
//! wins; otherwise the request's port is kept only when neither the scheme
//! nor the host changes; a port that is the scheme's default (80 for http,
//! 443 for https) is never written.
//!
//! The route's IP rules and rate limits apply first; its `response_headers`
//! rules apply to the redirect (so `strict-transport-security` can be set on
//! it): the proxy serves it (`proxy::redirect`).

use http::header::HeaderValue;
use http::uri::Authority;
use http::{StatusCode, Uri};

/// A validated redirect rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// `http` or `https`; `None` keeps the request's.
    pub scheme: Option<&'static str>,
    /// The new host (no port); `None` keeps the request's.
    pub host: Option<Box<str>>,
    /// The new port; `None`: see the module doc.
    pub port: Option<u16>,
    /// The new path (query kept); `None` keeps the request's.
    pub path: Option<Box<str>>,
    /// 301 (default), 302, 303, 307 or 308.
    pub status: StatusCode,
}

/// The statuses a redirect may answer with.
pub const STATUSES: [u16; 5] = [301, 302, 303, 307, 308];

fn default_port(scheme: &str) -> u16 {
    if scheme == "https" {
        443
    } else {
        80
    }
}

impl Redirect {
    /// The `Location` for a request that came over `proto` (`http` or
    /// `https`) with `host` (the `Host` field or `:authority`, port
    /// included) and target `uri`. Without a host to keep (an HTTP/1.0
    /// request without `Host`, and no `host` configured) the location is
    /// the path and query alone (a relative reference, RFC 9110 §10.2.2).
    pub fn location(&self, proto: &str, host: Option<&str>, uri: &Uri) -> Option<HeaderValue> {
        let scheme = self.scheme.unwrap_or(proto);
        let request_authority = host.and_then(|h| h.parse::<Authority>().ok());
        let (host, kept_port) = match (&self.host, &request_authority) {
            (Some(h), _) => (Some(&**h), None),
            (None, Some(a)) => (Some(a.host()), a.port_u16()),
            (None, None) => (None, None),
        };
        let same_origin = self.scheme.is_none_or(|s| s == proto) && self.host.is_none();
        let port = self
            .port
            .or(if same_origin { kept_port } else { None })
            .filter(|p| *p != default_port(scheme));
        let path = self.path.as_deref().unwrap_or_else(|| match uri.path() {
            "" => "/",
            p => p,
        });
        let mut out = String::with_capacity(64);
        if let Some(host) = host {
            out.push_str(scheme);
            out.push_str("://");
            out.push_str(host);
            if let Some(p) = port {
                out.push(':');
                out.push_str(&p.to_string());
            }
        }
        out.push_str(path);
        if let Some(q) = uri.query() {
            out.push('?');
            out.push_str(q);
        }
        HeaderValue::from_str(&out).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        scheme: Option<&'static str>,
        host: Option<&str>,
        port: Option<u16>,
        path: Option<&str>,
    ) -> Redirect {
        Redirect {
            scheme,
            host: host.map(Into::into),
            port,
            path: path.map(Into::into),
            status: StatusCode::MOVED_PERMANENTLY,
        }
    }

    #[test]
    fn locations() {
        let https = rule(Some("https"), None, None, None);
        let cases: &[(&Redirect, &str, Option<&str>, &str, &str)] = &[
            (
                &https,
                "http",
                Some("example.com"),
                "/a/b?x=1&y=2",
                "https://example.com/a/b?x=1&y=2",
            ),
            // The scheme changes: the old port goes.
            (
                &https,
                "http",
                Some("example.com:8080"),
                "/",
                "https://example.com/",
            ),
            (&https, "http", Some("[::1]:8080"), "/p", "https://[::1]/p"),
            (&https, "http", None, "/p?q", "/p?q"),
        ];
        for (r, proto, host, target, want) in cases {
            let uri: Uri = target.parse().unwrap();
            let got = r.location(proto, *host, &uri).unwrap();
            assert_eq!(got, *want, "{target} via {host:?}");
        }
        let uri: Uri = "/x?q=1".parse().unwrap();
        let loc =
            |r: &Redirect, proto: &str, host: &str| r.location(proto, Some(host), &uri).unwrap();
        // Same scheme and host: the port is kept unless replaced.
        assert_eq!(
            loc(&rule(None, None, None, Some("/new")), "http", "a.com:8080"),
            "http://a.com:8080/new?q=1"
        );
        assert_eq!(
            loc(&rule(None, None, Some(9000), None), "http", "a.com:8080"),
            "http://a.com:9000/x?q=1"
        );
        // Default ports are never written.
        assert_eq!(
            loc(&rule(None, None, Some(80), None), "http", "a.com:8080"),
            "http://a.com/x?q=1"
        );
        assert_eq!(
            loc(&rule(Some("https"), None, Some(443), None), "http", "a.com"),
            "https://a.com/x?q=1"
        );
        assert_eq!(
            loc(
                &rule(Some("https"), None, Some(8443), None),
                "http",
                "a.com"
            ),
            "https://a.com:8443/x?q=1"
        );
        // A new host drops the request's port.
        assert_eq!(
            loc(
                &rule(None, Some("b.com"), None, None),
                "https",
                "a.com:8443"
            ),
            "https://b.com/x?q=1"
        );
        // The same scheme written explicitly changes nothing.
        assert_eq!(
            loc(
                &rule(Some("https"), None, None, None),
                "https",
                "a.com:8443"
            ),
            "https://a.com:8443/x?q=1"
        );
    }
}
