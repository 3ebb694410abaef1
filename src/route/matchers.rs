//! Value matchers for headers, query parameters and cookies: exact value,
//! `"*"` (present with any value) and `~REGEX` (a regular expression,
//! compiled once at load).
//!
//! Regular expressions search anywhere in the value, like nginx's `~` and
//! HAProxy's `-m reg`; anchor them with `^…$` for a whole-value match. They
//! use the `regex` crate, whose matching time is linear in the input (no
//! backtracking), so a hostile value cannot stall a worker.
//!
//! Nothing here allocates while matching, except percent-decoding a query
//! parameter that contains `%` or `+`.

use std::borrow::Cow;

use http::header::HeaderName;
use http::{HeaderMap, HeaderValue};

use crate::http_syntax::{self, hex_digit};

/// Largest compiled size of one `~REGEX`, in bytes (the regex crate's own
/// limit is 10 MiB; a route matcher needs far less).
pub const MAX_REGEX_SIZE: usize = 1 << 20;

/// How a header, query parameter or cookie value is matched.
#[derive(Debug, Clone)]
pub enum ValueMatch {
    /// Present, with any value (`"*"`).
    Present,
    /// Equal byte for byte.
    Exact(Box<[u8]>),
    /// A regular expression (`~REGEX`) found anywhere in the value.
    Regex(regex::bytes::Regex),
}

impl ValueMatch {
    /// Parses a matcher as written in the config: `"*"`, `~REGEX` or a literal.
    ///
    /// # Errors
    /// An invalid or too large regular expression.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s == "*" {
            return Ok(ValueMatch::Present);
        }
        if let Some(re) = s.strip_prefix('~') {
            return regex::bytes::RegexBuilder::new(re)
                .size_limit(MAX_REGEX_SIZE)
                .build()
                .map(ValueMatch::Regex)
                .map_err(|e| format!("invalid regular expression {re:?}: {e}"));
        }
        Ok(ValueMatch::Exact(s.as_bytes().into()))
    }

    /// True when `value` satisfies the matcher.
    pub fn matches(&self, value: &[u8]) -> bool {
        match self {
            ValueMatch::Present => true,
            ValueMatch::Exact(v) => **v == *value,
            ValueMatch::Regex(re) => re.is_match(value),
        }
    }
}

/// True when one of the values of header `name` matches `m` (any value for
/// [`ValueMatch::Present`]).
pub fn header_matches(headers: &HeaderMap, name: &HeaderName, m: &ValueMatch) -> bool {
    headers
        .get_all(name)
        .iter()
        .any(|v: &HeaderValue| m.matches(v.as_bytes()))
}

/// True when a query parameter `name` of `query` (the part after `?`)
/// matches `m`. Names and values are compared percent-decoded
/// (`application/x-www-form-urlencoded`: `+` is a space), as HAProxy's
/// `url_param` with `url_dec` and Envoy's `query_parameters` do.
pub fn query_matches(query: Option<&str>, name: &str, m: &ValueMatch) -> bool {
    let Some(query) = query else { return false };
    query.split('&').any(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        !k.is_empty() && form_decode(k) == name && m.matches(form_decode(v).as_bytes())
    })
}

/// True when the first cookie `name` (RFC 6265 §5.4 `Cookie` header, read by
/// [`http_syntax::cookies`]) matches `m`. A value in double quotes is
/// compared without them.
pub fn cookie_matches(headers: &HeaderMap, name: &str, m: &ValueMatch) -> bool {
    http_syntax::cookie(headers, name).is_some_and(|v| m.matches(v))
}

/// The value of the first cookie named `name`, without surrounding quotes
/// ([`http_syntax::cookie`]); `None` when there is none or its value is
/// not UTF-8.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    http_syntax::cookie(headers, name).and_then(|v| std::str::from_utf8(v).ok())
}

/// Percent-decodes a form-encoded component; borrows when there is nothing to decode.
/// Invalid escapes are kept as written; invalid UTF-8 is replaced (U+FFFD).
fn form_decode(s: &str) -> Cow<'_, str> {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex_digit(bytes[i + 1]), hex_digit(bytes[i + 2]))
            {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header;

    #[test]
    fn value_matchers() {
        assert!(ValueMatch::parse("*").unwrap().matches(b""));
        let exact = ValueMatch::parse("eu").unwrap();
        assert!(exact.matches(b"eu"));
        assert!(!exact.matches(b"eu2"));
        let re = ValueMatch::parse("~^v[0-9]+$").unwrap();
        assert!(re.matches(b"v12"));
        assert!(!re.matches(b"v12x"));
        assert!(ValueMatch::parse("~(").is_err());
    }

    #[test]
    fn query_parameters() {
        let m = ValueMatch::parse("beta").unwrap();
        assert!(query_matches(Some("a=1&tier=beta"), "tier", &m));
        assert!(!query_matches(Some("a=1&tier=betax"), "tier", &m));
        assert!(!query_matches(None, "tier", &m));
        assert!(query_matches(
            Some("q=a%20b+c"),
            "q",
            &ValueMatch::parse("a b c").unwrap()
        ));
        assert!(query_matches(Some("flag"), "flag", &ValueMatch::Present));
        assert!(query_matches(
            Some("x=%zz%4"),
            "x",
            &ValueMatch::parse("%zz%4").unwrap()
        ));
        assert!(query_matches(
            Some("x=%4"),
            "x",
            &ValueMatch::parse("%4").unwrap()
        ));
    }

    #[test]
    fn cookies() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; b=\"two\""));
        h.append(header::COOKIE, HeaderValue::from_static("c=3"));
        assert_eq!(cookie(&h, "b"), Some("two"));
        assert_eq!(cookie(&h, "c"), Some("3"));
        assert_eq!(cookie(&h, "d"), None);
        assert!(cookie_matches(&h, "a", &ValueMatch::parse("1").unwrap()));
        assert!(!cookie_matches(&h, "a", &ValueMatch::parse("2").unwrap()));
    }

    #[test]
    fn cookies_are_read_as_bytes() {
        let mut h = HeaderMap::new();
        let field = HeaderValue::from_bytes(b"t=\xff1;tier = beta ;t=2").unwrap();
        h.append(header::COOKIE, field);
        let beta = ValueMatch::parse("beta").unwrap();
        assert!(cookie_matches(&h, "tier", &beta));
        // The first `t` wins, and a regex sees its bytes.
        let raw = ValueMatch::parse("~^(?-u:\\xff)1$").unwrap();
        assert!(cookie_matches(&h, "t", &raw));
        assert!(!cookie_matches(&h, "t", &ValueMatch::parse("2").unwrap()));
        // As text, a value that is not UTF-8 is no value.
        assert_eq!(cookie(&h, "t"), None);
        assert_eq!(cookie(&h, "tier"), Some("beta"));
    }
}
