//! gRPC through weir (the gRPC over HTTP/2 protocol): requests with
//! `content-type: application/grpc*` are forwarded like any request (their
//! bodies and trailers stream both ways; an `http2` group carries them to
//! the servers), with two gRPC-specific rules, as Envoy applies them:
//!
//! - an error weir answers itself (no route, no server, connect failure,
//!   timeout, ...) is gRPC-shaped: HTTP 200, `content-type:
//!   application/grpc`, and `grpc-status`/`grpc-message` in a trailers-only
//!   response, so gRPC clients see a status instead of a transport error;
//! - `grpc-timeout` (the caller's deadline) is honored as the response
//!   timeout when it is shorter than the group's `timeouts.response`.

use std::time::Duration;

use http::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};

use super::body::ProxyBody;

/// gRPC status codes weir produces (grpc/grpc `doc/statuscodes.md`).
pub mod code {
    /// Unknown error.
    pub const UNKNOWN: u32 = 2;
    /// The deadline expired before the operation could complete.
    pub const DEADLINE_EXCEEDED: u32 = 4;
    /// The caller may not execute the operation.
    pub const PERMISSION_DENIED: u32 = 7;
    /// A resource (e.g. the message size) is exhausted.
    pub const RESOURCE_EXHAUSTED: u32 = 8;
    /// The operation is not implemented (no route for it).
    pub const UNIMPLEMENTED: u32 = 12;
    /// Internal error.
    pub const INTERNAL: u32 = 13;
    /// The service is unavailable (no server, connect failure, reset).
    pub const UNAVAILABLE: u32 = 14;
    /// The request has no valid authentication credentials.
    pub const UNAUTHENTICATED: u32 = 16;
}

/// True when `headers` say the request is a gRPC call
/// (`content-type: application/grpc`, `application/grpc+proto`, ...).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The `grpc-timeout` of a gRPC request: 1 to 8 digits and a unit (`H`,
/// `M`, `S`, `m`, `u`, `n`), per the gRPC over HTTP/2 spec. `None` when the
/// request is not gRPC, has no such header, or it is malformed.
pub fn timeout(headers: &HeaderMap) -> Option<Duration> {
    if !is_grpc(headers) {
        return None;
    }
    parse_timeout(headers.get("grpc-timeout")?.as_bytes())
}

fn parse_timeout(v: &[u8]) -> Option<Duration> {
    let (&unit, digits) = v.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The gRPC status and message of an error status weir answered with
/// (the HTTP → gRPC mapping of grpc/grpc `doc/http-grpc-status-mapping.md`,
/// with a timeout as DEADLINE_EXCEEDED as Envoy reports it).
pub fn status_of(status: StatusCode) -> (u32, &'static str) {
    match status.as_u16() {
        400 => (code::INTERNAL, "bad request"),
        401 => (code::UNAUTHENTICATED, "unauthenticated"),
        403 => (code::PERMISSION_DENIED, "forbidden"),
        404 => (code::UNIMPLEMENTED, "no route for this request"),
        408 => (code::DEADLINE_EXCEEDED, "request body timeout"),
        413 => (code::RESOURCE_EXHAUSTED, "request too large"),
        429 => (code::UNAVAILABLE, "rate limited"),
        500 => (code::INTERNAL, "internal error"),
        502 => (
            code::UNAVAILABLE,
            "upstream connect error or disconnect/reset before headers",
        ),
        503 => (code::UNAVAILABLE, "no healthy upstream"),
        504 => (code::DEADLINE_EXCEEDED, "upstream request timeout"),
        _ => (code::UNKNOWN, "error"),
    }
}

/// Turns an error response weir wrote itself into a gRPC trailers-only
/// response (HTTP 200, `grpc-status`, `grpc-message`, no body). Responses
/// from servers, and 2xx/3xx, pass unchanged. The access log keeps the HTTP
/// status weir would have sent.
pub fn shape_local_error(resp: &mut Response<ProxyBody>) {
    let status = resp.status();
    if !resp.body().is_local() || status.as_u16() < 400 {
        return;
    }
    let (grpc_status, message) = status_of(status);
    resp.body_mut().clear_local();
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.clear();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    h.insert("grpc-status", HeaderValue::from(grpc_status));
    h.insert("grpc-message", HeaderValue::from_static(message));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_units() {
        assert_eq!(parse_timeout(b"1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_timeout(b"2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_timeout(b"3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse_timeout(b"250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_timeout(b"7u"), Some(Duration::from_micros(7)));
        assert_eq!(
            parse_timeout(b"99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        for bad in [&b""[..], b"S", b"123456789S", b"1x", b"-1S", b"1.5S"] {
            assert_eq!(parse_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn only_grpc_requests_have_a_deadline() {
        let mut h = HeaderMap::new();
        h.insert("grpc-timeout", HeaderValue::from_static("100m"));
        assert_eq!(timeout(&h), None);
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        assert_eq!(timeout(&h), Some(Duration::from_millis(100)));
    }

    #[test]
    fn local_errors_become_trailers_only_responses() {
        let mut resp = Response::new(ProxyBody::full("503 Service Unavailable\n", None));
        *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        resp.headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
        shape_local_error(&mut resp);
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["grpc-status"], "14");
        assert_eq!(resp.headers()["content-type"], "application/grpc");
        assert!(resp.headers().get("retry-after").is_none());
        assert!(http_body::Body::is_end_stream(resp.body()));
        assert_eq!(
            status_of(StatusCode::GATEWAY_TIMEOUT).0,
            code::DEADLINE_EXCEEDED
        );
        assert_eq!(status_of(StatusCode::NOT_FOUND).0, code::UNIMPLEMENTED);
    }
}
