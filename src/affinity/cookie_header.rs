//! Reading and removing one cookie in the request's `Cookie` field(s).
//!
//! `Cookie: a=1; b=2` is a list of cookie-pairs separated by `;` and optional
//! whitespace (RFC 6265 §4.2.1, §5.4). HTTP/2 clients may split it into
//! several `cookie` fields (RFC 9113 §8.2.3); both readers here walk every
//! field. Both read pairs with [`crate::http_syntax`]'s cookie parser (what
//! it tolerates is said at [`crate::http_syntax::cookies`]). Lookup
//! allocates nothing; removal rebuilds the field once.

use bytes::Bytes;
use http::header::{self, Entry};
use http::{HeaderMap, HeaderValue};

use crate::http_syntax::{cookie_crumbs, cookie_pair, cookie_values};

/// Every value of the cookies named `name` (exact, case-sensitive match, as
/// browsers compare names), in the order the client sent them.
pub fn values<'h>(headers: &'h HeaderMap, name: &'h str) -> impl Iterator<Item = &'h [u8]> + 'h {
    cookie_values(headers, name)
}

/// Removes every cookie named `name` from the request. The other cookies are
/// kept byte for byte and in order, joined into a single `Cookie` field with
/// `"; "` (RFC 6265 §5.4: one field; RFC 9113 §8.2.3: how HTTP/2 crumbs are
/// joined for HTTP/1.1). No `Cookie` field is left when none remains.
pub fn remove(headers: &mut HeaderMap, name: &str) {
    let capacity: usize = headers
        .get_all(header::COOKIE)
        .iter()
        .map(|v| v.len() + 2)
        .sum();
    let Entry::Occupied(entry) = headers.entry(header::COOKIE) else {
        return;
    };
    let mut kept: Vec<u8> = Vec::with_capacity(capacity);
    let (_, fields) = entry.remove_entry_mult();
    for field in fields {
        for pair in cookie_crumbs(field.as_bytes()) {
            if cookie_pair(pair).is_some_and(|(n, _)| n == name.as_bytes()) {
                continue;
            }
            if !kept.is_empty() {
                kept.extend_from_slice(b"; ");
            }
            kept.extend_from_slice(pair);
        }
    }
    if kept.is_empty() {
        return;
    }
    // Bytes of valid field values joined with "; " are a valid field value.
    if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(kept)) {
        headers.insert(header::COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(fields: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for f in fields {
            h.append(header::COOKIE, HeaderValue::from_static(f));
        }
        h.insert("x-other", HeaderValue::from_static("1"));
        h
    }

    fn cookies(h: &HeaderMap) -> Vec<&str> {
        h.get_all(header::COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    #[test]
    fn finds_in_one_field_and_in_several() {
        let h = map(&["a=1; weir=XYZ; b=2"]);
        assert_eq!(values(&h, "weir").collect::<Vec<_>>(), [b"XYZ"]);
        let h = map(&["a=1", "weir=XYZ", "b=2"]);
        assert_eq!(values(&h, "weir").collect::<Vec<_>>(), [b"XYZ"]);
        let h = map(&["a=1;weir = \"Q\" ;b=2", "weir=second"]);
        assert_eq!(
            values(&h, "weir").collect::<Vec<_>>(),
            [&b"Q"[..], &b"second"[..]]
        );
    }

    #[test]
    fn names_match_exactly() {
        let h = map(&["Weir=1; weirx=2; xweir=3; weir; =weir"]);
        assert_eq!(values(&h, "weir").count(), 0);
        assert_eq!(values(&HeaderMap::new(), "weir").count(), 0);
    }

    #[test]
    fn remove_keeps_the_others_in_order() {
        let mut h = map(&["a=1; weir=XYZ; b=\"two\";c=3"]);
        remove(&mut h, "weir");
        assert_eq!(cookies(&h), ["a=1; b=\"two\"; c=3"]);
        assert!(h.contains_key("x-other"));

        let mut h = map(&["a=1", "weir=XYZ", "b=2", "weir=again; c=3"]);
        remove(&mut h, "weir");
        assert_eq!(cookies(&h), ["a=1; b=2; c=3"]);

        let mut h = map(&["weir=XYZ"]);
        remove(&mut h, "weir");
        assert!(cookies(&h).is_empty());
        assert!(h.contains_key("x-other"));

        let mut h = map(&["flag; weir=1; Weir=2"]);
        remove(&mut h, "weir");
        assert_eq!(cookies(&h), ["flag; Weir=2"]);

        let mut h = HeaderMap::new();
        remove(&mut h, "weir");
        assert!(h.is_empty());
    }
}
