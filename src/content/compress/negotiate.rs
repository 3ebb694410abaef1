//! Content-coding negotiation from `Accept-Encoding` (RFC 9110 §12.5.3).

use http::header::{self, HeaderMap};
use http::Method;

use super::{Compression, Encoding};

/// The coding to use for a response to this request, or `None` for identity.
///
/// `None` when there is no `compression` config, for `HEAD` (no body to
/// compress) and for a `Range` request (a range applies to the identity
/// body, RFC 9110 §14.2; compressing it would change what the range means),
/// and when the client accepts none of the configured codings.
pub fn negotiate(
    cfg: Option<&Compression>,
    method: &Method,
    headers: &HeaderMap,
) -> Option<Encoding> {
    let cfg = cfg?;
    if method == Method::HEAD || headers.contains_key(header::RANGE) {
        return None;
    }
    let mut accept = headers.get_all(header::ACCEPT_ENCODING).iter().peekable();
    let first = accept.next()?;
    if accept.peek().is_none() {
        // The usual case: one field, read in place.
        return choose(&cfg.algorithms, first.to_str().unwrap_or(""));
    }
    let mut list = String::from(first.to_str().unwrap_or(""));
    for v in accept {
        if let Ok(s) = v.to_str() {
            if !list.is_empty() {
                list.push(',');
            }
            list.push_str(s);
        }
    }
    choose(&cfg.algorithms, &list)
}

/// Picks from `algorithms` (server preference order) by the `Accept-Encoding`
/// field value `accept` (RFC 9110 §12.5.3): the first coding of
/// `algorithms` that the client accepts (a q-value above 0) wins, as the
/// issue's contract says ("the configured server preference among what the
/// client accepts"; nginx and Envoy also let the server order decide);
/// `q=0` means "not acceptable"; `*` gives its q-value to every coding not
/// listed by name.
/// An empty field value means identity only. An unparsable q-value counts
/// as 0 (not acceptable).
pub fn choose(algorithms: &[Encoding], accept: &str) -> Option<Encoding> {
    for &enc in algorithms {
        let mut named: Option<u16> = None;
        let mut star: Option<u16> = None;
        for item in accept.split(',') {
            let mut parts = item.split(';');
            let token = parts.next().unwrap_or("").trim();
            if token.is_empty() {
                continue;
            }
            let q = qvalue(parts);
            if enc.is_named(token) {
                // The highest of repeated entries for one coding.
                named = Some(named.map_or(q, |n| n.max(q)));
            } else if token == "*" {
                star = Some(star.map_or(q, |s| s.max(q)));
            }
        }
        let q = named.or(star).unwrap_or(0);
        if q > 0 {
            return Some(enc);
        }
    }
    None
}

/// The q-value among an item's parameters, in thousandths (1000 when absent;
/// 0 when malformed), per the `qvalue` grammar of RFC 9110 §12.4.2.
fn qvalue<'a>(params: impl Iterator<Item = &'a str>) -> u16 {
    for p in params {
        let Some((name, value)) = p.split_once('=') else {
            continue;
        };
        if !name.trim().eq_ignore_ascii_case("q") {
            continue;
        }
        return parse_q(value.trim()).unwrap_or(0);
    }
    1000
}

fn parse_q(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut thousandths: u16 = 0;
    for (i, b) in frac.bytes().enumerate() {
        thousandths += u16::from(b - b'0') * [100, 10, 1][i];
    }
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    use Encoding::{Br, Gzip, Zstd};

    /// RFC 9110 §12.5.3 cases: (Accept-Encoding, server preference, expected).
    #[test]
    fn negotiation_table() {
        let all = [Zstd, Br, Gzip];
        let cases: &[(&str, &[Encoding], Option<Encoding>)] = &[
            ("gzip", &all, Some(Gzip)),
            ("br", &all, Some(Br)),
            ("zstd", &all, Some(Zstd)),
            // Equal q: server preference.
            ("gzip, deflate, br, zstd", &all, Some(Zstd)),
            ("gzip, br", &all, Some(Br)),
            ("gzip, br", &[Gzip, Br, Zstd], Some(Gzip)),
            // Server preference among what the client accepts (q > 0).
            ("zstd;q=0.5, gzip;q=0.9", &all, Some(Zstd)),
            ("br;q=1.0, zstd;q=0.001", &all, Some(Zstd)),
            ("br;q=1.0, zstd;q=0.5", &[Br, Zstd], Some(Br)),
            // q=0 refuses.
            ("gzip;q=0", &all, None),
            ("gzip;q=0, br", &all, Some(Br)),
            ("gzip;q=0.000", &all, None),
            // `*` covers codings not named.
            ("*", &all, Some(Zstd)),
            ("*;q=0.5, zstd;q=0", &all, Some(Br)),
            ("*;q=0", &all, None),
            ("gzip, *;q=0", &all, Some(Gzip)),
            // identity only, or identity refused: neither decides a coding.
            ("identity", &all, None),
            ("identity;q=0", &all, None),
            ("identity;q=0, gzip", &all, Some(Gzip)),
            ("", &all, None),
            // Case-insensitive, x-gzip, spaces, other parameters.
            ("GZIP", &all, Some(Gzip)),
            ("x-gzip", &all, Some(Gzip)),
            (" gzip ; q=0.8 , deflate", &all, Some(Gzip)),
            ("gzip;Q=0.5", &all, Some(Gzip)),
            // Malformed q-values are not acceptable.
            ("gzip;q=2", &all, None),
            ("gzip;q=abc", &all, None),
            ("gzip;q=0.1234", &all, None),
            // Only configured codings are chosen.
            ("br", &[Gzip], None),
            ("deflate, compress", &all, None),
        ];
        for (accept, prefs, want) in cases {
            assert_eq!(choose(prefs, accept), *want, "Accept-Encoding: {accept:?}");
        }
    }

    #[test]
    fn negotiate_skips_head_range_and_missing_header() {
        let cfg = Compression::default();
        let mut h = HeaderMap::new();
        assert_eq!(negotiate(Some(&cfg), &Method::GET, &h), None);
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        assert_eq!(negotiate(Some(&cfg), &Method::GET, &h), Some(Gzip));
        assert_eq!(negotiate(None, &Method::GET, &h), None);
        assert_eq!(negotiate(Some(&cfg), &Method::HEAD, &h), None);
        h.insert(header::RANGE, HeaderValue::from_static("bytes=0-10"));
        assert_eq!(negotiate(Some(&cfg), &Method::GET, &h), None);
        // Several fields combine.
        let mut h = HeaderMap::new();
        h.append(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip;q=0.1"),
        );
        h.append(header::ACCEPT_ENCODING, HeaderValue::from_static("br"));
        assert_eq!(negotiate(Some(&cfg), &Method::GET, &h), Some(Br));
    }
}
