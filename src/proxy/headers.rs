//! Proxy header handling (RFC 9110 §7.6): hop-by-hop fields removed, `Via`
//! added, `X-Forwarded-For/Proto/Host` and `Forwarded` (RFC 7239) set.
//!
//! The client's `Host` is kept. Work per request is a few map operations; the
//! per-connection parts (client address) are formatted once per connection.

use std::net::IpAddr;
use std::sync::OnceLock;

use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Version};

use crate::http_syntax::is_tchar;

/// `X-Forwarded-For`.
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`.
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// `Keep-Alive` (RFC 9112 Appendix C.2.2; hop-by-hop).
pub static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
/// `Proxy-Connection` (non-standard, hop-by-hop).
pub static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// The fixed hop-by-hop fields (RFC 9110 §7.6.1), removed in both directions.
fn hop_by_hop() -> [&'static HeaderName; 7] {
    [
        &header::CONNECTION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::TE,
        &header::TRAILER,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
    ]
}

/// Which field of the fixed hop-by-hop list `name` is, as a bit in
/// [`hop_by_hop`]'s order; 0 for any other field. Most names are told apart
/// by their length alone (2, 7, 10, 16 or 17 bytes); the others compare as
/// enum tags, only the two non-standard ones as bytes.
fn hop_by_hop_bit(name: &HeaderName) -> u8 {
    if !matches!(name.as_str().len(), 2 | 7 | 10 | 16 | 17) {
        return 0;
    }
    hop_by_hop()
        .iter()
        .position(|h| *h == name)
        .map_or(0, |i| 1 << i)
}

/// What the proxy knows about one downstream connection, formatted once.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// The client address as an `X-Forwarded-For` element.
    pub xff: HeaderValue,
    /// The `for=` and `proto=` pairs of a `Forwarded` element (RFC 7239 §4).
    pub forwarded_prefix: String,
    /// `http` or `https`.
    pub proto: &'static str,
    /// The `Forwarded` element of the first host seen on this connection
    /// (host, element): later requests for the same host reuse it instead of
    /// formatting it again.
    forwarded: OnceLock<(HeaderValue, HeaderValue)>,
}

impl ClientInfo {
    /// Formats the client address `ip` for a connection over `tls` or not.
    pub fn new(ip: IpAddr, tls: bool) -> Self {
        let proto = if tls { "https" } else { "http" };
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        let node = match ip {
            // RFC 7239 §6: IPv6 addresses are bracketed and quoted.
            IpAddr::V6(v6) => format!("\"[{v6}]\""),
            IpAddr::V4(v4) => v4.to_string(),
        };
        ClientInfo {
            xff: HeaderValue::from_str(&ip.to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
            forwarded_prefix: format!("for={node};proto={proto}"),
            proto,
            forwarded: OnceLock::new(),
        }
    }

    /// This hop's `Forwarded` element for a request to `host` (RFC 7239 §4):
    /// `for=…;proto=…;host=…`, the host quoted when it is not a token.
    pub fn forwarded(&self, host: Option<&HeaderValue>) -> Option<HeaderValue> {
        if let (Some(h), Some((cached_host, element))) = (host, self.forwarded.get()) {
            if h == cached_host {
                return Some(element.clone());
            }
        }
        let mut element = String::with_capacity(self.forwarded_prefix.len() + 32);
        element.push_str(&self.forwarded_prefix);
        if let Some(h) = host.and_then(|h| h.to_str().ok()) {
            element.push_str(";host=");
            if h.bytes().all(is_tchar) {
                element.push_str(h);
            } else {
                element.push('"');
                for c in h.chars() {
                    if c == '"' || c == '\\' {
                        element.push('\\');
                    }
                    element.push(c);
                }
                element.push('"');
            }
        }
        let value = HeaderValue::from_str(&element).ok()?;
        if let Some(h) = host {
            // A copy: `h` shares the request's read buffer (8 KiB), which
            // must not live as long as the connection.
            if let Ok(owned) = HeaderValue::from_bytes(h.as_bytes()) {
                let _ = self.forwarded.set((owned, value.clone()));
            }
        }
        Some(value)
    }
}

/// Removes the hop-by-hop fields: those named in `Connection` and the fixed
/// list. One pass over the names finds which are there (most requests have
/// none; most responses only `Connection: keep-alive`), and only those are
/// removed.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let present = headers.keys().fold(0u8, |bits, k| bits | hop_by_hop_bit(k));
    if present == 0 {
        return;
    }
    if present & 1 != 0 {
        // Fields named in Connection (RFC 9110 §7.6.1), besides the
        // connection options `close` and `keep-alive`.
        let mut named: Vec<HeaderName> = Vec::new();
        for value in headers.get_all(header::CONNECTION) {
            let Ok(list) = value.to_str() else { continue };
            for token in list.split(',') {
                let token = token.trim();
                if token.is_empty()
                    || token.eq_ignore_ascii_case("close")
                    || token.eq_ignore_ascii_case("keep-alive")
                {
                    continue;
                }
                if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                    named.push(name);
                }
            }
        }
        for name in named {
            headers.remove(name);
        }
    }
    for (i, name) in hop_by_hop().into_iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
}

fn via_value(version: Version) -> HeaderValue {
    HeaderValue::from_static(match version {
        Version::HTTP_09 => "0.9 weir",
        Version::HTTP_10 => "1.0 weir",
        Version::HTTP_2 => "2.0 weir",
        Version::HTTP_3 => "3.0 weir",
        _ => "1.1 weir",
    })
}

/// Rewrites a request's headers for the upstream.
///
/// `version` is the downstream protocol (for `Via`); `host` is the request's
/// host as received (`Host` or HTTP/2 `:authority`), set as `Host` when the
/// request had no `Host` field (HTTP/2) and as `X-Forwarded-Host`.
pub fn rewrite_request(
    headers: &mut HeaderMap,
    client: &ClientInfo,
    version: Version,
    host: Option<&HeaderValue>,
) {
    // Room for the five fields added below in one growth of the map, not
    // several (a request parsed with few fields has a small map).
    headers.reserve(6);
    remove_hop_by_hop(headers);
    join_cookies(headers);
    // weir answers `Expect: 100-continue` itself when it starts reading the body.
    if headers.contains_key(header::EXPECT) {
        headers.remove(header::EXPECT);
    }
    headers.append(header::VIA, via_value(version));

    // X-Forwarded-For: the list so far plus this client.
    match headers.entry(&X_FORWARDED_FOR) {
        header::Entry::Vacant(e) => {
            e.insert(client.xff.clone());
        }
        header::Entry::Occupied(mut e) => {
            let mut list = Vec::with_capacity(64);
            for v in e.iter() {
                if !list.is_empty() {
                    list.extend_from_slice(b", ");
                }
                list.extend_from_slice(v.as_bytes());
            }
            list.extend_from_slice(b", ");
            list.extend_from_slice(client.xff.as_bytes());
            if let Ok(v) = HeaderValue::from_bytes(&list) {
                e.insert(v);
            }
        }
    }
    headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static(client.proto));

    // Forwarded (RFC 7239): append this hop's element.
    if let Some(v) = client.forwarded(host) {
        headers.append(header::FORWARDED, v);
    }

    match host {
        Some(h) => {
            headers.insert(&X_FORWARDED_HOST, h.clone());
            if !headers.contains_key(header::HOST) {
                headers.insert(header::HOST, h.clone());
            }
        }
        None => {
            headers.remove(&X_FORWARDED_HOST);
        }
    }
}

/// Joins several `Cookie` fields into one with `"; "`, as an HTTP/2 client
/// may split them and an HTTP/1.1 server expects one (RFC 9113 §8.2.3,
/// RFC 6265 §5.4). Allocates only when there are several.
pub fn join_cookies(headers: &mut HeaderMap) {
    let mut values = headers.get_all(header::COOKIE).iter();
    if values.next().is_none() || values.next().is_none() {
        return;
    }
    let mut joined = Vec::with_capacity(128);
    for v in headers.get_all(header::COOKIE) {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(v.as_bytes());
    }
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, v);
    }
}

/// Rewrites a response's headers for the client: hop-by-hop fields removed,
/// `Via` added with the upstream's protocol version.
pub fn rewrite_response(headers: &mut HeaderMap, upstream_version: Version) {
    remove_hop_by_hop(headers);
    headers.append(header::VIA, via_value(upstream_version));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_fields_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret, close"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
    }

    #[test]
    fn split_cookies_are_joined() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1"));
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        join_cookies(&mut h);
        assert_eq!(h.get_all(header::COOKIE).iter().count(), 1);
        assert_eq!(h[header::COOKIE], "a=1; b=2");
    }

    #[test]
    fn forwarding_headers() {
        let client = ClientInfo::new("10.1.2.3".parse().unwrap(), true);
        let mut h = HeaderMap::new();
        h.append(&X_FORWARDED_FOR, HeaderValue::from_static("1.1.1.1"));
        h.append(&X_FORWARDED_FOR, HeaderValue::from_static("2.2.2.2"));
        h.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("spoofed"));
        let host = HeaderValue::from_static("example.com:8443");
        rewrite_request(&mut h, &client, Version::HTTP_2, Some(&host));
        assert_eq!(h[&X_FORWARDED_FOR], "1.1.1.1, 2.2.2.2, 10.1.2.3");
        assert_eq!(h[&X_FORWARDED_PROTO], "https");
        assert_eq!(h[&X_FORWARDED_HOST], "example.com:8443");
        assert_eq!(h[header::HOST], "example.com:8443");
        assert_eq!(h[header::VIA], "2.0 weir");
        assert_eq!(
            h[header::FORWARDED],
            "for=10.1.2.3;proto=https;host=\"example.com:8443\""
        );
        let v6 = ClientInfo::new("::1".parse().unwrap(), false);
        assert_eq!(v6.forwarded_prefix, "for=\"[::1]\";proto=http");
    }
}
