//! Cache keys (RFC 9111 §2, §4.1): the primary key is the request's path
//! and query, scheme and host; a response with `Vary` adds the request's
//! values of the named fields as a secondary key.
//!
//! The route's name is part of the key too: two routes may send one URL to
//! different groups (by header, cookie or claim matchers).
//!
//! A key is one string, `PATH?QUERY \n SCHEME \n HOST \n ROUTE`, with `\n NAME=VALUE`
//! per `Vary` field for a variant; a newline can appear in none of those,
//! so keys never collide, and `POST /cache/purge?prefix=` is a string
//! prefix test on the key.

use http::header::HeaderName;
use http::HeaderMap;

/// The primary cache key of a request to `host` over `scheme` for
/// `path_and_query` on route `route`. The host is lower-cased (RFC 9110
/// §4.2.3: the host is case-insensitive); a default port is dropped.
pub fn primary(scheme: &str, host: &str, path_and_query: &str, route: &str) -> Box<str> {
    let host = match (scheme, host.rsplit_once(':')) {
        ("http", Some((h, "80"))) | ("https", Some((h, "443"))) => h,
        _ => host,
    };
    let mut k = String::with_capacity(path_and_query.len() + host.len() + route.len() + 8);
    k.push_str(path_and_query);
    k.push('\n');
    k.push_str(scheme);
    k.push('\n');
    k.extend(host.chars().map(|c| c.to_ascii_lowercase()));
    k.push('\n');
    // A route name is YAML text: a newline in it would blur the key.
    k.extend(route.chars().map(|c| if c == '\n' { ' ' } else { c }));
    k.into_boxed_str()
}

/// The key of the variant of `primary` that a request with `headers`
/// selects, given the response's `Vary` field names (sorted). Values are
/// the request's field lines joined with `, ` (RFC 9111 §4.1 allows
/// normalizing them; weir only trims), absent fields are empty.
pub fn variant(primary: &str, vary: &[HeaderName], headers: &HeaderMap) -> Box<str> {
    let mut k = String::with_capacity(primary.len() + 32 * vary.len());
    k.push_str(primary);
    for name in vary {
        k.push('\n');
        k.push_str(name.as_str());
        k.push('=');
        let mut first = true;
        for v in headers.get_all(name) {
            if !first {
                k.push_str(", ");
            }
            first = false;
            // Header values hold no newline; non-UTF-8 bytes are kept lossily.
            k.push_str(String::from_utf8_lossy(v.as_bytes()).trim());
        }
    }
    k.into_boxed_str()
}

/// The path and query part of a key (what `purge?prefix=` compares).
pub fn path_of(key: &str) -> &str {
    key.split('\n').next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(
            &*primary("http", "Example.COM:80", "/a?b", "r"),
            "/a?b\nhttp\nexample.com\nr"
        );
        assert_eq!(
            &*primary("https", "example.com:8443", "/", "r"),
            "/\nhttps\nexample.com:8443\nr"
        );
        let mut h = HeaderMap::new();
        h.insert("accept-encoding", "gzip".parse().unwrap());
        let vary = [
            HeaderName::from_static("accept-encoding"),
            HeaderName::from_static("x-a"),
        ];
        let k = variant("/\nhttp\nh", &vary, &h);
        assert_eq!(&*k, "/\nhttp\nh\naccept-encoding=gzip\nx-a=");
        assert_eq!(path_of(&k), "/");
    }
}
