//! Checks a request passes before it is routed: the ones that close request
//! smuggling and host confusion between weir and the servers behind it.
//!
//! | check | answer | reference |
//! | --- | --- | --- |
//! | more header fields than `max_headers` | 431 | RFC 6585 §5 |
//! | `CONNECT` | 405 | weir is not a forward proxy |
//! | two or more `Host` fields | 400 | RFC 9112 §3.2 |
//! | `Host`/authority with userinfo, spaces, bad characters or port | 400 | RFC 9112 §3.2, RFC 3986 §3.2 |
//! | HTTP/2 `host` differing from `:authority` | 400 | RFC 9113 §8.3.1 |
//! | HTTP/1.1 without `Host` | 400 | RFC 9112 §3.2 |
//! | `..` segments climbing above `/` | 400 | as nginx |
//!
//! And what is rewritten: an absolute-form target's authority (or HTTP/2's
//! `:authority`) replaces `Host` (RFC 9112 §3.2.2), so the server sees the
//! host weir routed on; `X-Real-IP` and `HTTP2-Settings` from the client are
//! removed (the first is a client-address claim only weir may make; the
//! second belongs to the h2c upgrade, which weir never forwards, RFC 9113 §3.1).
//! `TRACE` is checked after routing ([`trace_allowed`]). Both
//! `Transfer-Encoding` and `Content-Length` are refused by the HTTP/1 parser
//! (see `vendor/README.md`), before a request exists.

use std::net::Ipv6Addr;

use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Version};

use super::reject::Reason;

/// `X-Real-IP` (nginx's client-address header; never taken from the client).
pub static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
/// `HTTP2-Settings` (RFC 7540 §3.2.1; only meaningful with `Upgrade: h2c`).
pub static HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// Checks `req` and returns the host it is for (the absolute-form or
/// `:authority` authority, else `Host`; `None` for HTTP/1.0 without `Host`).
/// Sets `Host` to that authority and removes `X-Real-IP` and `HTTP2-Settings`.
///
/// # Errors
/// The [`Reason`] to refuse the request with (see the module table).
pub fn check<B>(req: &mut Request<B>, max_headers: usize) -> Result<Option<HeaderValue>, Reason> {
    if req.headers().len() > max_headers {
        return Err(Reason::TooManyHeaders);
    }
    if req.method() == Method::CONNECT {
        return Err(Reason::Connect);
    }
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let header_host = hosts.next();
    if hosts.next().is_some() {
        return Err(Reason::DuplicateHost);
    }
    if header_host.is_some_and(|h| !valid_host(h.as_bytes())) {
        return Err(Reason::InvalidHost);
    }
    let host = match req.uri().authority() {
        Some(authority) => {
            let a = authority.as_str();
            if !valid_host(a.as_bytes()) {
                return Err(Reason::InvalidHost);
            }
            if req.version() == Version::HTTP_2
                && header_host.is_some_and(|h| !h.as_bytes().eq_ignore_ascii_case(a.as_bytes()))
            {
                return Err(Reason::HostMismatch);
            }
            let v = HeaderValue::from_str(a).map_err(|_| Reason::InvalidHost)?;
            Some(v)
        }
        None => header_host.cloned(),
    };
    if host.is_none() && req.version() == Version::HTTP_11 {
        return Err(Reason::MissingHost);
    }
    if climbs_above_root(req.uri().path()) {
        return Err(Reason::PathAboveRoot);
    }
    let headers = req.headers_mut();
    if req_has_authority_differing(headers, host.as_ref()) {
        if let Some(h) = &host {
            headers.insert(header::HOST, h.clone());
        }
    }
    // One pass over the names (most requests have neither field; a length
    // compare rules out almost every name without hashing it), then the
    // removals only when one is there.
    let strip = headers
        .keys()
        .any(|k| matches!(k.as_str().len(), 9 | 14) && (k == X_REAL_IP || k == HTTP2_SETTINGS));
    if strip {
        headers.remove(&X_REAL_IP);
        headers.remove(&HTTP2_SETTINGS);
    }
    Ok(host)
}

/// True when `Host` is absent or differs from `host` (so it must be set).
fn req_has_authority_differing(headers: &http::HeaderMap, host: Option<&HeaderValue>) -> bool {
    match (headers.get(header::HOST), host) {
        (Some(h), Some(want)) => h != want,
        (None, Some(_)) => true,
        _ => false,
    }
}

/// True when a route may answer `TRACE`: only one whose `methods` lists it
/// (RFC 9110 §9.3.8: TRACE echoes the request, cookies and credentials
/// included; nginx refuses it with 405).
pub fn trace_allowed(method: &Method, route_methods: &[Method]) -> bool {
    method != Method::TRACE || route_methods.contains(&Method::TRACE)
}

/// True when `h` is a valid `Host` value / URI authority without userinfo
/// (RFC 3986 §3.2.2–3.2.3): an IPv6 literal in brackets, or a reg-name
/// (unreserved and sub-delims characters), then an optional `:port` of at
/// most 65535. Empty is valid (RFC 9112 §3.2). Stricter than RFC 3986 in
/// one way: percent escapes are refused (no DNS name needs them, IDNs
/// arrive as punycode, and the `http` crate's authority parser refuses them).
pub fn valid_host(h: &[u8]) -> bool {
    if h.first() == Some(&b'[') {
        let Some(end) = h.iter().position(|&b| b == b']') else {
            return false;
        };
        let inner = &h[1..end];
        let is_v6 = std::str::from_utf8(inner)
            .ok()
            .and_then(|s| s.parse::<Ipv6Addr>().ok())
            .is_some();
        return is_v6
            && match &h[end + 1..] {
                [] => true,
                [b':', port @ ..] => valid_port(port),
                _ => false,
            };
    }
    let (name, port) = match h.iter().rposition(|&b| b == b':') {
        Some(i) => (&h[..i], Some(&h[i + 1..])),
        None => (h, None),
    };
    if port.is_some_and(|p| !valid_port(p)) {
        return false;
    }
    name.iter()
        .all(|&b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b))
}

/// `*DIGIT` of at most 65535 (RFC 3986 §3.2.3 allows an empty port).
fn valid_port(p: &[u8]) -> bool {
    p.len() <= 5
        && p.iter().all(u8::is_ascii_digit)
        && (p.is_empty()
            || std::str::from_utf8(p)
                .ok()
                .and_then(|s| s.parse::<u16>().ok())
                .is_some())
}

/// True when the `..` segments of `path` (also written `%2e%2e`, `.%2E`...)
/// climb above `/`: `/../etc`, `/a/../../b`. Such a path names nothing on
/// the server; nginx answers 400, and so does weir rather than forwarding it
/// raw to a server that might resolve it differently.
pub fn climbs_above_root(path: &str) -> bool {
    let mut depth: usize = 0;
    for seg in path.split('/').skip(1) {
        match dot_segment(seg) {
            Some(1) => {}
            Some(_) => {
                if depth == 0 {
                    return true;
                }
                depth -= 1;
            }
            None if seg.is_empty() => {}
            None => depth += 1,
        }
    }
    false
}

/// `Some(1)` for `.`, `Some(2)` for `..` (dots possibly percent-encoded),
/// `None` otherwise.
fn dot_segment(seg: &str) -> Option<u8> {
    if seg.len() > 6 {
        return None;
    }
    let b = seg.as_bytes();
    let mut dots = 0u8;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'.' {
            i += 1;
        } else if b[i] == b'%'
            && b.get(i + 1) == Some(&b'2')
            && matches!(b.get(i + 2), Some(b'e' | b'E'))
        {
            i += 3;
        } else {
            return None;
        }
        dots += 1;
    }
    matches!(dots, 1 | 2).then_some(dots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        for ok in [
            "example.com",
            "example.com:8080",
            "127.0.0.1:1",
            "[::1]",
            "[::1]:443",
            "a-b_c.~",
            "",
            "x:",
        ] {
            assert!(valid_host(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "user@example.com",
            "a b",
            "example.com:99999",
            "example.com:8o",
            "[::1",
            "[zz]",
            "[::1]x",
            "a:b:80",
            "%4",
            "%zz",
            "%41b",
            "a\tb",
            "a/b",
            "a\\b",
            "é",
        ] {
            assert!(!valid_host(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn above_root() {
        for p in ["/..", "/../a", "/a/../..", "/%2e%2e/x", "/a/./../.%2E/b"] {
            assert!(climbs_above_root(p), "{p}");
        }
        for p in [
            "/",
            "/a/..",
            "/a/b/../../c",
            "/..a",
            "/a..",
            "/...",
            "//..x",
            "*",
        ] {
            assert!(!climbs_above_root(p), "{p}");
        }
    }

    fn req(version: Version, uri: &str, hosts: &[&str]) -> Request<()> {
        let mut b = Request::builder().version(version).uri(uri);
        for h in hosts {
            b = b.header(header::HOST, *h);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn host_rules() {
        let mut r = req(Version::HTTP_11, "/", &["a", "b"]);
        assert_eq!(check(&mut r, 100), Err(Reason::DuplicateHost));
        let mut r = req(Version::HTTP_11, "/", &[]);
        assert_eq!(check(&mut r, 100), Err(Reason::MissingHost));
        let mut r = req(Version::HTTP_10, "/", &[]);
        assert_eq!(check(&mut r, 100), Ok(None));
        let mut r = req(
            Version::HTTP_11,
            "http://target.example/x",
            &["other.example"],
        );
        assert_eq!(check(&mut r, 100).unwrap().unwrap(), "target.example");
        assert_eq!(r.headers()[header::HOST], "target.example");
        let mut r = req(Version::HTTP_2, "http://a.example/x", &["b.example"]);
        assert_eq!(check(&mut r, 100), Err(Reason::HostMismatch));
        let mut r = req(Version::HTTP_2, "http://A.example/x", &["a.EXAMPLE"]);
        assert!(check(&mut r, 100).is_ok());
        let mut r = req(Version::HTTP_11, "http://u@a.example/x", &["a.example"]);
        assert_eq!(check(&mut r, 100), Err(Reason::InvalidHost));
        let mut r = req(Version::HTTP_11, "/../x", &["a"]);
        assert_eq!(check(&mut r, 100), Err(Reason::PathAboveRoot));
        let mut r = req(Version::HTTP_11, "/", &["a"]);
        r.headers_mut()
            .insert("x-real-ip", HeaderValue::from_static("1.2.3.4"));
        assert!(check(&mut r, 1).is_err());
        assert!(check(&mut r, 2).is_ok());
        assert!(!r.headers().contains_key("x-real-ip"));
    }
}
