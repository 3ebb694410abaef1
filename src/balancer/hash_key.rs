//! The key of the `hash` algorithm: `hash_key: header:NAME | cookie:NAME |
//! query:NAME`, parsed from the config and read from a request without
//! allocating.

use http::header::HeaderName;

use super::PickContext;
use crate::http_syntax::{self, is_tchar};

/// What `hash` hashes: `header:NAME`, `cookie:NAME` or `query:NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// The first value of request header NAME.
    Header(HeaderName),
    /// The value of the first cookie NAME (in any `Cookie` header, read by
    /// [`http_syntax::cookies`]).
    Cookie(Box<str>),
    /// The raw (not percent-decoded) value of query parameter NAME.
    Query(Box<str>),
}

impl HashKey {
    /// Parses `header:NAME`, `cookie:NAME` or `query:NAME`.
    ///
    /// # Errors
    /// A message naming what is wrong: unknown source, empty or invalid name.
    pub fn parse(s: &str) -> Result<Self, String> {
        let expected = "expected header:NAME, cookie:NAME or query:NAME";
        let Some((source, name)) = s.split_once(':') else {
            return Err(format!("{s:?}: {expected}"));
        };
        if name.is_empty() {
            return Err(format!("{s:?}: the name after {source}: is empty"));
        }
        match source {
            "header" => HeaderName::from_bytes(name.as_bytes())
                .map(HashKey::Header)
                .map_err(|_| format!("{name:?} is not a valid header name")),
            "cookie" => {
                // RFC 6265 §4.1.1: cookie-name is an RFC 9110 token.
                if name.bytes().all(is_tchar) {
                    Ok(HashKey::Cookie(name.into()))
                } else {
                    Err(format!("{name:?} is not a valid cookie name"))
                }
            }
            "query" => {
                if name
                    .bytes()
                    .any(|b| b == b'&' || b == b'=' || b == b'#' || b <= b' ')
                {
                    Err(format!("{name:?} is not a valid query parameter name"))
                } else {
                    Ok(HashKey::Query(name.into()))
                }
            }
            _ => Err(format!("{s:?}: unknown key source {source:?}; {expected}")),
        }
    }

    /// The key's bytes in the request, or `None` when absent or empty.
    /// Borrows from the request: no allocation.
    pub fn extract<'a>(&self, ctx: &PickContext<'a>) -> Option<&'a [u8]> {
        let v = match self {
            HashKey::Header(name) => ctx.headers.get(name).map(|v| v.as_bytes()),
            HashKey::Cookie(name) => http_syntax::cookie(ctx.headers, name),
            HashKey::Query(name) => ctx
                .uri
                .query()
                .and_then(|q| query_value(q.as_bytes(), name.as_bytes())),
        };
        v.filter(|v| !v.is_empty())
    }
}

impl std::fmt::Display for HashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HashKey::Header(n) => write!(f, "header:{n}"),
            HashKey::Cookie(n) => write!(f, "cookie:{n}"),
            HashKey::Query(n) => write!(f, "query:{n}"),
        }
    }
}

/// The raw value of parameter `name` in a query string (`a=1&b=2`).
fn query_value<'a>(query: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    query.split(|&b| b == b'&').find_map(|pair| {
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &pair[..0]),
        };
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::COOKIE;
    use http::{HeaderMap, HeaderValue, Uri};

    #[test]
    fn parses_hash_keys() {
        assert_eq!(
            HashKey::parse("header:X-User").unwrap(),
            HashKey::Header(HeaderName::from_static("x-user"))
        );
        assert_eq!(
            HashKey::parse("cookie:sid").unwrap(),
            HashKey::Cookie("sid".into())
        );
        assert_eq!(
            HashKey::parse("query:user").unwrap(),
            HashKey::Query("user".into())
        );
        for bad in [
            "header:",
            "x-user",
            "path:x",
            "header:bad name",
            "cookie:a;b",
            "query:a&b",
        ] {
            assert!(HashKey::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            HashKey::parse("cookie:sid").unwrap().to_string(),
            "cookie:sid"
        );
    }

    #[test]
    fn extracts_keys_without_allocating() {
        let mut headers = HeaderMap::new();
        headers.insert("x-user", HeaderValue::from_static("alice"));
        headers.append(COOKIE, HeaderValue::from_static("a=1; sid=\"s-42\" ; b=2"));
        let uri: Uri = "/p?x=1&user=bob&empty=&flag".parse().unwrap();
        let ctx = PickContext {
            client_ip: [127, 0, 0, 1].into(),
            uri: &uri,
            headers: &headers,
        };
        let get = |s: &str| HashKey::parse(s).unwrap().extract(&ctx);
        assert_eq!(get("header:x-user"), Some(&b"alice"[..]));
        assert_eq!(get("cookie:sid"), Some(&b"s-42"[..]));
        assert_eq!(get("cookie:b"), Some(&b"2"[..]));
        assert_eq!(get("query:user"), Some(&b"bob"[..]));
        assert_eq!(get("query:empty"), None);
        assert_eq!(get("query:flag"), None);
        assert_eq!(get("query:missing"), None);
        assert_eq!(get("cookie:missing"), None);
        assert_eq!(get("header:missing"), None);
    }
}
