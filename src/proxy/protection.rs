//! The request-path side of traffic protection (`crate::limits`): a route's
//! IP rules, `Content-Length` against `max_request_body`, and rate limits,
//! run before anything is sent upstream. The streaming body limit is in
//! `body.rs` (`BodySlot::with_limit`) and `service.rs` (`BodyLimit::race`).

use std::net::IpAddr;

use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use hyper::body::Incoming;

use crate::limits::policy::KeyInput;
use crate::limits::runtime::RouteLimits;
use crate::limits::RateOutcome;
use crate::metrics;
use crate::route::jwt::Verified;

/// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers).
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit` (draft-ietf-httpapi-ratelimit-headers).
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Why a request is refused: the status and the headers to add to weir's
/// short error response.
#[derive(Debug)]
pub struct Refusal {
    /// 403, 413, 429 or 503.
    pub status: StatusCode,
    /// `Retry-After` and the `RateLimit` fields of a 429.
    pub headers: HeaderMap,
}

impl Refusal {
    fn new(status: StatusCode) -> Self {
        Refusal {
            status,
            headers: HeaderMap::new(),
        }
    }
}

/// Runs route `p`'s checks for a request from `client_ip`: `deny`/`allow`
/// (403), `Content-Length` over `max_request_body` (413), then the rate
/// limits (429, or 503 when Redis fails with `on_error: deny`). `Ok` carries
/// the `RateLimit-Policy` and `RateLimit` values for the response.
///
/// # Errors
/// The [`Refusal`] to answer with.
pub async fn check(
    p: &RouteLimits,
    client_ip: IpAddr,
    req: &Request<Incoming>,
    claims: Option<&Verified>,
) -> Result<Option<(HeaderValue, HeaderValue)>, Refusal> {
    if let Some(rules) = &p.ip_rules {
        if !rules.permits(client_ip) {
            metrics::inc(&p.counters.ip_denied);
            return Err(Refusal::new(StatusCode::FORBIDDEN));
        }
    }
    if let Some(max) = p.max_request_body {
        if crate::limits::body_limit::content_length_exceeds(req.headers(), max) {
            metrics::inc(&p.counters.body_too_large);
            return Err(Refusal::new(StatusCode::PAYLOAD_TOO_LARGE));
        }
    }
    if p.policies.is_empty() {
        return Ok(None);
    }
    let input = KeyInput {
        client_ip,
        uri: req.uri(),
        headers: req.headers(),
        claims: claims.map(|v| &v.claims),
    };
    match p.check(&input).await {
        RateOutcome::Allowed(h) => Ok(h),
        RateOutcome::Limited {
            retry_after,
            headers,
        } => {
            let mut r = Refusal::new(StatusCode::TOO_MANY_REQUESTS);
            r.headers.insert(header::RETRY_AFTER, retry_after);
            if let Some(h) = headers {
                add_rate_headers(&mut r.headers, h);
            }
            Err(r)
        }
        RateOutcome::Unavailable => Err(Refusal::new(StatusCode::SERVICE_UNAVAILABLE)),
    }
}

/// Sets `RateLimit-Policy` and `RateLimit` on a response.
pub fn add_rate_headers(headers: &mut HeaderMap, (policy, state): (HeaderValue, HeaderValue)) {
    headers.insert(RATELIMIT_POLICY, policy);
    headers.insert(RATELIMIT, state);
}
