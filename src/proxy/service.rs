//! The hyper service: request → route → pick → forward → response.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;

use super::access_log::{self, AccessRecord};
use super::body::{BodySlot, Pooled, ProxyBody, UpstreamBody};
use super::headers::{self, ClientInfo};
use super::protection;
use super::upgrade;
use super::Snapshot;
use crate::affinity::{self, Session};
use crate::balancer::PickContext;
use crate::error::ErrorKind;
use crate::forward;
use crate::health;
use crate::listener::ConnActivity;
use crate::metrics;
use crate::route::jwt::{RequestToken, TokenOutcome, Verified};
use crate::route::{self, RequestView};
use crate::upstream::group::Excluded;

/// What the service knows about the downstream connection a request came on.
#[derive(Debug)]
pub struct Downstream {
    /// Client address.
    pub peer: SocketAddr,
    /// Formatted forwarding info of the client.
    pub client: ClientInfo,
    /// Name of the listener.
    pub listener: Arc<str>,
    /// Activity of the connection (idle and header timeouts).
    pub activity: Arc<ConnActivity>,
}

/// Serves one request. Never fails: every error becomes a response with the
/// status of its [`ErrorKind`], a short plain-text body and a log line.
pub async fn handle(
    config: Arc<ArcSwap<Snapshot>>,
    conn: Arc<Downstream>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let request_guard = conn.activity.request_started(req.version());
    let snapshot = config.load_full();
    let mut response = proxy(&snapshot, &conn, req).await;
    response.body_mut().set_request_guard(request_guard);
    Ok(response)
}

async fn proxy(
    snapshot: &Snapshot,
    conn: &Downstream,
    mut req: Request<Incoming>,
) -> Response<ProxyBody> {
    let start = Instant::now();
    let mut record = access_log::enabled().then(|| {
        Box::new(AccessRecord {
            start,
            client: conn.peer,
            method: req.method().clone(),
            uri: req.uri().clone(),
            status: 0,
            route: None,
            group: None,
            server: None,
            bytes: 0,
            aborted: false,
        })
    });

    if req.method() == Method::CONNECT {
        return error_response(StatusCode::METHOD_NOT_ALLOWED, record);
    }
    // RFC 9112 §3.2.2: the authority of an absolute-form target wins over Host;
    // HTTP/2 carries it as :authority.
    let host: Option<HeaderValue> = match req.uri().authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => req.headers().get(header::HOST).cloned(),
    };
    if host.is_none() && req.version() == Version::HTTP_11 {
        // RFC 9112 §3.2: a request without Host is answered with 400.
        return error_response(StatusCode::BAD_REQUEST, record);
    }
    let host_str = host
        .as_ref()
        .and_then(|h| h.to_str().ok())
        .map(route::host_without_port);
    let path = route::path::normalize(req.uri().path());
    let (route_index, claims) = match route_request(snapshot, &req, host_str, &path) {
        Routed::Route(index, claims) => (index, claims),
        Routed::NoRoute { invalid_token } if invalid_token => {
            return unauthorized(record);
        }
        Routed::NoRoute { .. } => return error_response(ErrorKind::NoRoute.status(), record),
    };
    let route = &snapshot.routes.routes()[route_index];
    let route_stats = &snapshot.route_stats[route_index];
    let Some(group) = snapshot.groups.get(route.group) else {
        return error_response(StatusCode::INTERNAL_SERVER_ERROR, record);
    };
    if let Some(r) = &mut record {
        r.route = Some(route.name.clone());
        r.group = Some(group.name.clone());
    }
    let observe = |status: u16| {
        let elapsed = start.elapsed();
        route_stats.requests.inc(status);
        route_stats.duration.observe(elapsed);
        group.stats.duration.observe(elapsed);
    };

    // Traffic protection (limits/): IP rules, body size, rate limits.
    let protection = snapshot.limits.route(route_index);
    let mut rate_headers = None;
    if let Some(p) = protection {
        match protection::check(p, conn.peer.ip(), &req, claims.as_deref()).await {
            Ok(h) => rate_headers = h,
            Err(refusal) => {
                observe(refusal.status.as_u16());
                let mut resp = error_response(refusal.status, record);
                resp.headers_mut().extend(refusal.headers);
                return resp;
            }
        }
    }
    let body_limit = protection
        .and_then(|p| p.max_request_body)
        .map(crate::limits::BodyLimit::new);

    let upgrade = upgrade::requested(&mut req);
    let (mut parts, body) = req.into_parts();
    let ctx_uri = parts.uri.clone();
    let slot = (!http_body::Body::is_end_stream(&body))
        .then(|| BodySlot::with_limit(body, body_limit.clone()));
    headers::rewrite_request(
        &mut parts.headers,
        &conn.client,
        parts.version,
        host.as_ref(),
    );
    if !route.forward_claims.is_empty() {
        let claims = claims.as_deref().map(|v| &v.claims);
        route::claims::forward(&route.forward_claims, claims, &mut parts.headers);
    }
    if let Some(u) = &upgrade {
        u.restore_request_headers(&mut parts.headers);
    }
    // Sticky sessions (affinity.rs): read, verify and strip the affinity cookie.
    let session =
        (group.sticky.as_ref()).map(|s| s.session(&mut parts.headers, affinity::unix_now()));

    let mut excluded = Excluded::default();
    // A retry needs another server: a one-server group never retries, and
    // never pays for keeping a copy of the headers.
    let mut attempts_left = group
        .retries
        .min(u32::try_from(group.servers.len().saturating_sub(1)).unwrap_or(u32::MAX));
    // The status of the last failed attempt: when the retries run out of
    // servers, the client gets that (502), not "no server" (503).
    let mut last_failure: Option<StatusCode> = None;
    let mut prepared = parts.headers;
    loop {
        let ctx = PickContext {
            client_ip: conn.peer.ip(),
            uri: &ctx_uri,
            headers: &prepared,
        };
        let pinned = session.as_ref().and_then(Session::pinned);
        let Some(index) = group.pick_pinned(pinned, &ctx, &excluded) else {
            if let Some(status) = last_failure {
                observe(status.as_u16());
                return error_response(status, record);
            }
            if group.stats.no_server() {
                // At most once a second per group; the count is in /metrics.
                tracing::warn!(route = %route.name, group = %group.name, "no usable server in group: answering 503");
            }
            observe(503);
            return error_response(ErrorKind::NoServer.status(), record);
        };
        let server = &group.servers[index];
        // Keep a copy only while another attempt may need it.
        let mut headers = if attempts_left > 0 {
            prepared.clone()
        } else {
            std::mem::take(&mut prepared)
        };
        if host.is_none() {
            // HTTP/1.0 without Host: the upstream hop is HTTP/1.1, which needs one.
            if let Ok(v) = HeaderValue::from_str(server.address.as_str()) {
                headers.insert(header::HOST, v);
            }
        }
        let uri = server.uri(ctx_uri.path_and_query());
        let mut upstream_req =
            Request::new(slot.as_ref().map_or(UpstreamBody::Empty, BodySlot::body));
        *upstream_req.method_mut() = parts.method.clone();
        *upstream_req.uri_mut() = uri;
        *upstream_req.version_mut() = Version::HTTP_11;
        *upstream_req.headers_mut() = headers;

        let guard = server.state.start_request();
        let sent = Instant::now();
        let result = match &body_limit {
            None => forward::send(group, server, upstream_req).await,
            Some(limit) => match limit.race(forward::send(group, server, upstream_req)).await {
                Some(result) => result,
                None => {
                    // The body streamed past max_request_body: the upstream
                    // request is dropped (its connection closed), not retried.
                    drop(guard);
                    if let Some(p) = protection {
                        metrics::inc(&p.counters.body_too_large);
                    }
                    observe(413);
                    return error_response(StatusCode::PAYLOAD_TOO_LARGE, record);
                }
            },
        };
        match &result {
            // Time to response headers feeds the peak EWMA; a timeout is a
            // lower bound of it and counts too (so a hanging server looks slow).
            Ok(_) => group.record_response_time(index, sent.elapsed()),
            Err(e) if e.kind == ErrorKind::ResponseTimeout => {
                group.record_response_time(index, sent.elapsed())
            }
            Err(_) => {}
        }
        match result {
            Ok((resp, upstream_conn)) => {
                let status = resp.status().as_u16();
                server.state.stats.responses.inc(status);
                observe(status);
                health::passive::response(group, index, resp.status());
                if let Some(r) = &mut record {
                    r.server = Some(server.id.clone());
                    r.status = status;
                }
                let (resp, guard) = match upgrade {
                    // The connection becomes the tunnel; it never returns to the pool.
                    Some(u) => match u.complete(resp, guard, ProxyBody::empty) {
                        Ok(switched) => return switched,
                        Err(back) => back,
                    },
                    None => (resp, guard),
                };
                let (mut rparts, rbody) = resp.into_parts();
                headers::rewrite_response(&mut rparts.headers, rparts.version);
                if let Some(h) = rate_headers.take() {
                    protection::add_rate_headers(&mut rparts.headers, h);
                }
                if let Some(s) = &session {
                    s.finish(index, conn.client.proto == "https", &mut rparts.headers);
                }
                rparts.version = Version::HTTP_11;
                let pooled = Pooled {
                    conn: upstream_conn,
                    state: Arc::clone(&server.state),
                    max_idle: group.pool.max_idle,
                };
                return Response::from_parts(
                    rparts,
                    ProxyBody::upstream(rbody, guard, pooled, record),
                );
            }
            Err(err) => {
                drop(guard);
                let stats = &server.state.stats;
                metrics::inc(match err.kind {
                    ErrorKind::Connect => &stats.connect_errors,
                    ErrorKind::ResponseTimeout => &stats.timeouts,
                    _ => &stats.protocol_errors,
                });
                health::passive::request_failed(group, index, err.kind);
                // Connect failures reached no server; a reset before any
                // response byte is safe to repeat for idempotent methods.
                let safe = err.retryable
                    || (err.kind == ErrorKind::UpstreamReset
                        && forward::is_idempotent(&parts.method));
                let can_retry =
                    safe && attempts_left > 0 && slot.as_ref().is_none_or(BodySlot::is_untouched);
                tracing::warn!(
                    route = %route.name,
                    group = %group.name,
                    server = %server.id,
                    address = %server.address,
                    cause = %err,
                    retry = can_retry,
                    "upstream request failed"
                );
                if let Some(r) = &mut record {
                    r.server = Some(server.id.clone());
                }
                if !can_retry {
                    let status = err.status();
                    stats.responses.inc(status.as_u16());
                    observe(status.as_u16());
                    return error_response(status, record);
                }
                metrics::inc(&stats.retries);
                last_failure = Some(err.status());
                excluded.insert(index);
                attempts_left -= 1;
            }
        }
    }
}

/// The outcome of the route lookup.
enum Routed {
    /// The route's index, and the verified claims when the route forwards claims.
    Route(usize, Option<Arc<Verified>>),
    /// No route matched; `invalid_token` when the request carried a bearer
    /// token that failed verification.
    NoRoute { invalid_token: bool },
}

/// Finds the route of a request. The bearer token, when a `jwt` section is
/// configured, is looked at lazily and at most once: only by routes with a
/// jwt matcher or `forward_claims`, or to tell 401 from 404 when nothing matched.
fn route_request(
    snapshot: &Snapshot,
    req: &Request<Incoming>,
    host: Option<&str>,
    path: &str,
) -> Routed {
    let token = snapshot
        .routes
        .jwt()
        .map(|v| RequestToken::new(v, req.headers()));
    let view = RequestView {
        host,
        path,
        method: req.method(),
        headers: req.headers(),
        query: req.uri().query(),
        token: token.as_ref(),
    };
    match snapshot.routes.lookup_index(&view) {
        Some(index) => {
            let route = &snapshot.routes.routes()[index];
            let needs_claims = snapshot.limits.route(index).is_some_and(|l| l.needs_claims);
            let claims = if route.forward_claims.is_empty() && !needs_claims {
                None
            } else {
                token.as_ref().and_then(|t| t.verified().cloned())
            };
            Routed::Route(index, claims)
        }
        None => Routed::NoRoute {
            invalid_token: token
                .as_ref()
                .is_some_and(|t| matches!(t.outcome(), TokenOutcome::Invalid)),
        },
    }
}

/// 401 for a request whose bearer token failed verification when no route
/// matched it: `WWW-Authenticate: Bearer error="invalid_token"` (RFC 6750 §3).
fn unauthorized(record: Option<Box<AccessRecord>>) -> Response<ProxyBody> {
    let mut resp = error_response(StatusCode::UNAUTHORIZED, record);
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer error=\"invalid_token\""),
    );
    resp
}

/// A short plain-text error response (`502 Bad Gateway\n`).
pub fn error_response(
    status: StatusCode,
    record: Option<Box<AccessRecord>>,
) -> Response<ProxyBody> {
    let text = format!(
        "{} {}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    let mut body = ProxyBody::full(text, record);
    body.set_status(status);
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}
