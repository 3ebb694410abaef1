//! HTTP syntax read on every request, in one place: RFC 9110 §5.6.2 token
//! characters, hex digits (percent-encoding, RFC 3986 §2.1) and the
//! reading of the `Cookie` request header (RFC 6265 §5.4) that route
//! matchers, `hash_key: cookie:NAME` and sticky sessions share.
//!
//! A leaf module: it imports nothing from the crate, so every layer may use
//! it. Nothing here allocates.

use http::header::{self, HeaderMap};

/// `TCHAR[b]`: byte `b` is an RFC 9110 §5.6.2 `tchar` (`ALPHA`, `DIGIT` and
/// `` !#$%&'*+-.^_`|~ ``).
static TCHAR: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let others = b"!#$%&'*+-.^_`|~";
    let mut i = 0;
    while i < others.len() {
        table[others[i] as usize] = true;
        i += 1;
    }
    table
};

/// True when `b` is an RFC 9110 §5.6.2 token character (`tchar`): a token
/// (a header or cookie name, a `Connection` option) is one or more of them.
#[inline]
pub fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

/// The value of one hex digit (`0-9`, `a-f`, `A-F`), or `None`.
#[inline]
pub fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The cookie-pairs of one `Cookie` field value, each trimmed and not
/// empty, in order; [`cookie_pair`] reads each one. Pairs without `=` are
/// included (see [`cookie_pairs`] for the ones that have a name and value).
///
/// Splits on every `;` (a `;` inside double quotes splits too, as in
/// browsers) and trims ASCII whitespace (SP and HTAB; a field value cannot
/// hold CR, LF or FF) at both ends of each pair.
#[inline]
pub fn cookie_crumbs(field: &[u8]) -> impl Iterator<Item = &[u8]> {
    field
        .split(|&b| b == b';')
        .map(<[u8]>::trim_ascii)
        .filter(|pair| !pair.is_empty())
}

/// Splits one cookie-pair into `(name, value)` at its first `=`, whitespace
/// around both trimmed and one pair of surrounding double quotes removed
/// from the value (RFC 6265 §4.1.1 allows a quoted cookie-value). `None`
/// for a pair without `=`.
#[inline]
pub fn cookie_pair(pair: &[u8]) -> Option<(&[u8], &[u8])> {
    let eq = pair.iter().position(|&b| b == b'=')?;
    let name = pair[..eq].trim_ascii();
    let value = match pair[eq + 1..].trim_ascii() {
        [b'"', inner @ .., b'"'] => inner,
        value => value,
    };
    Some((name, value))
}

/// Every `(name, value)` cookie of every `Cookie` field of `headers`, in the
/// order the client sent them: the tolerant reading of RFC 6265 §5.4 that
/// browsers' cookies meet, and more:
///
/// - several `Cookie` fields are read in order (HTTP/2 clients split the
///   header into one field per cookie, RFC 9113 §8.2.3; some HTTP/1.1
///   clients send several fields too);
/// - pairs are separated by `;` with any amount of optional whitespace
///   (SP, HTAB) or none (`a=1;b=2`, `a = 1 ;  b=2`); empty pairs (`;;`) and
///   pairs without `=` (`flag`) are skipped;
/// - the first `=` separates the name from the value, so a value may hold
///   `=` (`t=a=b` is `t` = `a=b`); an empty value (`a=`) is a cookie with
///   value `""`; an empty name (`=v`) is a cookie named `""`;
/// - a value in double quotes is given without them (`a="x"` is `x`);
/// - no check of the octets: a value that is not UTF-8 (obs-text) or holds
///   characters RFC 6265 §4.1.1 forbids is given as sent, byte for byte;
/// - a name occurring several times gives every value: readers that want
///   one take the first ([`cookie`]), as browsers send the most specific
///   cookie first (RFC 6265 §5.4 step 2).
///
/// Names are compared byte for byte by the callers (case-sensitive, as
/// browsers do). No allocation.
#[inline]
pub fn cookies(headers: &HeaderMap) -> impl Iterator<Item = (&[u8], &[u8])> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|field| cookie_crumbs(field.as_bytes()))
        .filter_map(cookie_pair)
}

/// Every value of the cookies named `name` (exact, case-sensitive), in the
/// order the client sent them ([`cookies`] says what is read).
#[inline]
pub fn cookie_values<'h>(
    headers: &'h HeaderMap,
    name: &'h str,
) -> impl Iterator<Item = &'h [u8]> + 'h {
    cookies(headers)
        .filter(move |(n, _)| *n == name.as_bytes())
        .map(|(_, v)| v)
}

/// The value of the first cookie named `name` (exact, case-sensitive), as
/// [`cookies`] reads it; `None` when there is none.
#[inline]
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h [u8]> {
    cookies(headers).find_map(|(n, v)| (n == name.as_bytes()).then_some(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn map(fields: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for f in fields {
            h.append(header::COOKIE, HeaderValue::from_bytes(f).unwrap());
        }
        h
    }

    fn all(h: &HeaderMap) -> Vec<(&[u8], &[u8])> {
        cookies(h).collect()
    }

    #[test]
    fn the_tchar_table_is_rfc_9110() {
        for b in 0..=255u8 {
            let want = b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            assert_eq!(is_tchar(b), want, "{b:#x}");
        }
    }

    #[test]
    fn hex_digits() {
        for (i, c) in b"0123456789abcdef".iter().enumerate() {
            assert_eq!(hex_digit(*c), Some(i as u8));
            assert_eq!(hex_digit(c.to_ascii_uppercase()), Some(i as u8));
        }
        for c in [b'g', b'G', b'/', b':', b'@', b'`', b' ', 0x80, 0xff] {
            assert_eq!(hex_digit(c), None, "{c:#x}");
        }
    }

    #[test]
    fn whitespace_around_pairs_names_and_values() {
        let h = map(&[b"a=1;b=2; c=3 ;  d = 4\t;\te=\"5\" "]);
        assert_eq!(
            all(&h),
            [
                (&b"a"[..], &b"1"[..]),
                (b"b", b"2"),
                (b"c", b"3"),
                (b"d", b"4"),
                (b"e", b"5")
            ]
        );
        // Inside a value, whitespace stays.
        let h = map(&[b"a=one two; b=\" x \""]);
        assert_eq!(cookie(&h, "a"), Some(&b"one two"[..]));
        assert_eq!(cookie(&h, "b"), Some(&b" x "[..]));
    }

    #[test]
    fn empty_values_pairs_and_names() {
        let h = map(&[b";; a=; flag ;=v; b=\"\"; ;"]);
        assert_eq!(all(&h), [(&b"a"[..], &b""[..]), (b"", b"v"), (b"b", b"")]);
        assert_eq!(cookie(&h, "a"), Some(&b""[..]));
        assert_eq!(cookie(&h, "flag"), None);
        assert!(all(&map(&[b""])).is_empty());
        assert!(all(&HeaderMap::new()).is_empty());
        // One quote is not a pair of quotes.
        assert_eq!(cookie(&map(&[b"q=\""]), "q"), Some(&b"\""[..]));
    }

    #[test]
    fn the_first_equals_sign_splits() {
        let h = map(&[b"t=a=b==; u==x"]);
        assert_eq!(cookie(&h, "t"), Some(&b"a=b=="[..]));
        assert_eq!(cookie(&h, "u"), Some(&b"=x"[..]));
    }

    #[test]
    fn duplicate_names_first_wins_and_all_are_listed() {
        let h = map(&[b"s=1; S=2; s=3", b"s=4"]);
        assert_eq!(cookie(&h, "s"), Some(&b"1"[..]));
        assert_eq!(cookie(&h, "S"), Some(&b"2"[..]));
        assert_eq!(
            cookie_values(&h, "s").collect::<Vec<_>>(),
            [&b"1"[..], b"3", b"4"]
        );
        // Names match exactly: no prefix, suffix or case folding.
        assert_eq!(cookie(&h, "ss"), None);
        assert_eq!(cookie(&h, ""), None);
    }

    #[test]
    fn several_fields_are_read_in_order() {
        let h = map(&[b"a=1", b"b=2; a=3", b"c=4"]);
        assert_eq!(
            all(&h),
            [
                (&b"a"[..], &b"1"[..]),
                (b"b", b"2"),
                (b"a", b"3"),
                (b"c", b"4")
            ]
        );
        assert_eq!(cookie(&h, "c"), Some(&b"4"[..]));
    }

    #[test]
    fn values_that_are_not_utf8_are_read_as_bytes() {
        let h = map(&[b"a=\xff\xfe; b=2", b"c=caf\xc3\xa9"]);
        assert_eq!(cookie(&h, "a"), Some(&b"\xff\xfe"[..]));
        assert_eq!(cookie(&h, "b"), Some(&b"2"[..]));
        assert_eq!(cookie(&h, "c"), Some("café".as_bytes()));
    }

    #[test]
    fn crumbs_keep_pairs_without_equals_sign() {
        let crumbs: Vec<_> = cookie_crumbs(b" flag ;a=1;; b = 2 ").collect();
        assert_eq!(crumbs, [&b"flag"[..], b"a=1", b"b = 2"]);
        assert_eq!(cookie_pair(b"flag"), None);
        assert_eq!(cookie_pair(b"b = 2"), Some((&b"b"[..], &b"2"[..])));
    }
}
