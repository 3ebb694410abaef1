//! Serving a redirect route (`routes[].redirect`, the rule is
//! [`crate::content::redirect`]): the route's protection (IP rules, body
//! size, rate limits), then the redirect response with the route's
//! `response_headers` rules.

use std::time::Instant;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::access_log::AccessRecord;
use super::body::ProxyBody;
use super::protection;
use super::service::{error_response, Downstream};
use super::Snapshot;
use crate::content::{Redirect, RouteContent};
use crate::route::jwt::Verified;

/// The response of `redirect`: its status, `Location`, an empty body.
pub fn response(
    redirect: &Redirect,
    location: HeaderValue,
    record: Option<Box<AccessRecord>>,
) -> Response<ProxyBody> {
    let mut body = ProxyBody::full(bytes::Bytes::new(), record);
    body.set_status(redirect.status);
    let mut resp = Response::new(body);
    *resp.status_mut() = redirect.status;
    let h = resp.headers_mut();
    h.insert(header::LOCATION, location);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    resp
}

/// Serves a request that matched redirect route `route_index` (whose
/// `content` has the redirect): the
/// route's protection (IP rules, body size, rate limits), then the
/// redirect, with the route's `response_headers` rules. Counted in the
/// route's metrics and logged like any response.
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    content: &RouteContent,
    snapshot: &Snapshot,
    route_index: usize,
    conn: &Downstream,
    req: &Request<Incoming>,
    host: Option<&HeaderValue>,
    claims: Option<&Verified>,
    mut record: Option<Box<AccessRecord>>,
    start: Instant,
) -> Response<ProxyBody> {
    let route = &snapshot.routes.routes()[route_index];
    let stats = &snapshot.route_stats[route_index];
    if let Some(r) = &mut record {
        r.route = Some(route.name.clone());
    }
    let observe = |status: StatusCode| {
        stats.requests.inc(status.as_u16());
        stats.duration.observe(start.elapsed());
    };
    let mut rate_headers = None;
    if let Some(p) = snapshot.limits.route(route_index) {
        match protection::check(p, conn.peer.ip(), req, claims).await {
            Ok(h) => rate_headers = h,
            Err(refusal) => {
                observe(refusal.status);
                let mut resp = error_response(refusal.status, record);
                resp.headers_mut().extend(refusal.headers);
                return resp;
            }
        }
    }
    let Some(redirect) = &content.redirect else {
        return error_response(StatusCode::INTERNAL_SERVER_ERROR, record);
    };
    let host = host.and_then(|h| h.to_str().ok());
    let Some(location) = redirect.location(conn.client.proto, host, req.uri()) else {
        observe(StatusCode::BAD_REQUEST);
        return error_response(StatusCode::BAD_REQUEST, record);
    };
    let mut resp = response(redirect, location, record);
    if let Some(h) = rate_headers {
        protection::add_rate_headers(resp.headers_mut(), h);
    }
    content.response_headers.apply(resp.headers_mut());
    observe(redirect.status);
    resp
}
