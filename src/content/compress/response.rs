//! Which responses are compressed, and the header changes that go with it
//! (`Content-Encoding`, `Vary`, a weak `ETag`).

use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};

use super::Compressible;
use super::{Compression, Encoding};

/// Compresses `resp` with `choice` when `cfg` allows it for this response,
/// and marks a compressible response with `Vary: Accept-Encoding` whether
/// or not this client gets it compressed (a shared cache must not hand the
/// identity body to a client that asked for zstd, nor the reverse).
///
/// Left as it is: no `cfg`; a status without content to transform (1xx,
/// 204, 206, 304); a response already encoded (`Content-Encoding` other
/// than `identity`); `Cache-Control: no-transform` (RFC 9111 §5.2.2.6);
/// a `Content-Type` outside `types` (or none); a known length under
/// `min_size`; a `Content-Range`.
///
/// When compressing: `Content-Encoding` is set, `Content-Length` and
/// `Accept-Ranges` removed (ranges of the identity body no longer apply),
/// and a strong `ETag` becomes weak (`W/"…"`): the compressed bytes differ
/// from those the strong validator named (RFC 9110 §8.8.1), as nginx does.
pub fn apply<B: Compressible>(
    mut resp: Response<B>,
    choice: Option<Encoding>,
    cfg: Option<&Compression>,
) -> Response<B> {
    let Some(cfg) = cfg else { return resp };
    if !compressible(cfg, resp.status(), resp.headers()) {
        return resp;
    }
    add_vary(resp.headers_mut());
    let Some(enc) = choice else { return resp };
    let h = resp.headers_mut();
    h.remove(header::CONTENT_LENGTH);
    h.remove(header::ACCEPT_RANGES);
    h.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static(enc.as_str()),
    );
    weaken_etag(h);
    resp.map(|body| body.compressed(enc, cfg.levels))
}

/// True when a response of `status` with `headers` may be compressed under `cfg`.
pub fn compressible(cfg: &Compression, status: StatusCode, headers: &HeaderMap) -> bool {
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::PARTIAL_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return false;
    }
    if headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
        || headers.contains_key(header::CONTENT_RANGE)
    {
        return false;
    }
    if has_directive(headers, header::CACHE_CONTROL, "no-transform") {
        return false;
    }
    let Some(essence) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
    else {
        return false;
    };
    if !cfg.types.iter().any(|t| t.matches(&essence)) {
        return false;
    }
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    length.is_none_or(|n| n >= cfg.min_size.max(1))
}

/// True when a comma-separated field `name` lists `directive` (case-insensitive,
/// arguments ignored).
fn has_directive(headers: &HeaderMap, name: header::HeaderName, directive: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',').any(|d| {
                d.split('=')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case(directive)
            })
        })
    })
}

/// Appends `Accept-Encoding` to `Vary` unless it is there (or `Vary: *`).
fn add_vary(headers: &mut HeaderMap) {
    let listed = headers.get_all(header::VARY).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',').any(|t| {
                let t = t.trim();
                t == "*" || t.eq_ignore_ascii_case("accept-encoding")
            })
        })
    });
    if !listed {
        headers.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

/// `ETag: "x"` → `ETag: W/"x"`.
fn weaken_etag(headers: &mut HeaderMap) {
    let Some(tag) = headers.get(header::ETAG) else {
        return;
    };
    let bytes = tag.as_bytes();
    if bytes.starts_with(b"W/") {
        return;
    }
    let mut weak = Vec::with_capacity(bytes.len() + 2);
    weak.extend_from_slice(b"W/");
    weak.extend_from_slice(bytes);
    if let Ok(v) = HeaderValue::from_bytes(&weak) {
        headers.insert(header::ETAG, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn which_responses_are_compressible() {
        let cfg = Compression::default();
        let ok = StatusCode::OK;
        let json = ("content-type", "application/json; charset=utf-8");
        assert!(compressible(&cfg, ok, &headers(&[json])));
        assert!(compressible(
            &cfg,
            ok,
            &headers(&[json, ("content-length", "1024")])
        ));
        assert!(!compressible(
            &cfg,
            ok,
            &headers(&[json, ("content-length", "1023")])
        ));
        assert!(!compressible(
            &cfg,
            ok,
            &headers(&[("content-type", "image/png")])
        ));
        assert!(!compressible(&cfg, ok, &headers(&[])));
        assert!(!compressible(
            &cfg,
            ok,
            &headers(&[json, ("content-encoding", "gzip")])
        ));
        assert!(compressible(
            &cfg,
            ok,
            &headers(&[json, ("content-encoding", "identity")])
        ));
        assert!(!compressible(
            &cfg,
            ok,
            &headers(&[json, ("cache-control", "public, No-Transform")])
        ));
        assert!(compressible(&cfg, StatusCode::NOT_FOUND, &headers(&[json])));
        for s in [
            StatusCode::PARTIAL_CONTENT,
            StatusCode::NOT_MODIFIED,
            StatusCode::NO_CONTENT,
        ] {
            assert!(!compressible(&cfg, s, &headers(&[json])), "{s}");
        }
        assert!(!compressible(
            &cfg,
            ok,
            &headers(&[json, ("content-range", "bytes 0-1/2")])
        ));
    }

    #[test]
    fn vary_and_etag() {
        let mut h = headers(&[("vary", "Origin")]);
        add_vary(&mut h);
        assert_eq!(h.get_all(header::VARY).iter().count(), 2);
        add_vary(&mut h);
        assert_eq!(h.get_all(header::VARY).iter().count(), 2);
        let mut h = headers(&[("vary", "*")]);
        add_vary(&mut h);
        assert_eq!(h.get_all(header::VARY).iter().count(), 1);
        let mut h = headers(&[("etag", "\"abc\"")]);
        weaken_etag(&mut h);
        assert_eq!(h[header::ETAG], "W/\"abc\"");
        weaken_etag(&mut h);
        assert_eq!(h[header::ETAG], "W/\"abc\"");
    }
}
