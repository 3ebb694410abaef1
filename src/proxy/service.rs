//! The hyper service: request → route → pick → forward → response.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;

use super::access_log::{self, AccessRecord};
use super::activity::ConnActivity;
use super::body::{Pooled, ProxyBody};
use super::headers::{self, ClientInfo};
use super::protection;
use super::reject::Reason;
use super::request_checks;
use super::upgrade;
use super::{LocalSnapshot, Snapshot};
use crate::affinity::{self, Session};
use crate::balancer::PickContext;
use crate::cache::lookup::Respond;
use crate::config::ListenerConfig;
use crate::error::ErrorKind;
use crate::metrics;
use crate::metrics::ListenerStats;
use crate::route::jwt::{RequestToken, TokenOutcome, Verified};
use crate::route::{self, RequestView};
use crate::upstream::body::{BodySlot, UpstreamBody};
use crate::upstream::client_body::ClientFault;
use crate::upstream::forward;
use crate::upstream::group::Excluded;
use crate::upstream::health;
use crate::upstream::queue::Refused;

/// What the service knows about the downstream connection a request came on.
#[derive(Debug)]
pub struct Downstream {
    /// Client address (from the PROXY header on `proxy_protocol` listeners).
    pub peer: SocketAddr,
    /// The address the client connected to (PROXY header's destination when given).
    pub local: SocketAddr,
    /// `x-client-cert` of the connection's verified client certificate
    /// (`tls.client_auth`), set once after the TLS handshake.
    pub client_cert: std::sync::OnceLock<HeaderValue>,
    /// Formatted forwarding info of the client.
    pub client: ClientInfo,
    /// Name of the listener.
    pub listener: Arc<str>,
    /// Activity of the connection (idle and header timeouts).
    pub activity: Arc<ConnActivity>,
    /// The listener's counters (rejections are counted here).
    pub stats: Arc<ListenerStats>,
    /// Tracks the tasks that outlive a request (protocol-upgrade tunnels),
    /// so that shutdown waits for them.
    pub tracker: tokio_util::task::TaskTracker,
    /// The listener's per-request limits.
    pub limits: Limits,
}

/// Per-request limits of a listener, copied from its config once per connection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `client_body_timeout`: longest wait for the next bytes of a request body.
    pub client_body_timeout: Duration,
    /// `max_headers`: most header fields in one request (431 beyond).
    pub max_headers: usize,
}

impl Limits {
    /// The limits of `config`.
    pub fn of(config: &ListenerConfig) -> Self {
        Limits {
            client_body_timeout: config.client_body_timeout,
            max_headers: config.max_headers,
        }
    }
}

/// Serves one request. Never fails: every error becomes a response with the
/// status of its [`ErrorKind`], a short plain-text body and a log line.
pub async fn handle(
    snapshot: Arc<LocalSnapshot>,
    conn: Arc<Downstream>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let request_guard = conn.activity.request_started(req.version());
    conn.stats.requests.inc();
    let grpc = super::grpc::is_grpc(req.headers());
    // ACME HTTP-01 answers (RFC 8555 §8.3) come before routing, on plain listeners.
    let acme = (conn.client.proto == "http")
        .then(|| crate::acme::http01_response(&req))
        .flatten();
    let mut response = match acme {
        Some(r) => r,
        None => proxy(&snapshot, &conn, req).await,
    };
    if grpc {
        super::grpc::shape_local_error(&mut response);
    }
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
        Box::new(AccessRecord::new(
            start,
            conn.peer,
            req.method().clone(),
            req.uri().clone(),
        ))
    });

    // Host confusion, CONNECT, header count, paths above the root
    // (request_checks.rs). RFC 9112 §3.2.2: the authority of an
    // absolute-form target wins over Host, and becomes the Host sent on;
    // HTTP/2 carries it as :authority.
    let host = match request_checks::check(&mut req, conn.limits.max_headers) {
        Ok(host) => host,
        Err(reason) => return reject(conn, req.version(), reason, record),
    };
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
    if !request_checks::trace_allowed(req.method(), &route.methods) {
        return reject(conn, req.version(), Reason::Trace, record);
    }
    let content = route.content.as_deref();
    if let Some(c) = content.filter(|c| c.redirect.is_some()) {
        let (h, v) = (host.as_ref(), claims.as_deref());
        return super::redirect::serve(c, snapshot, route_index, conn, &req, h, v, record, start)
            .await;
    }
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

    // Content rules (content/): the coding is chosen from the request's
    // Accept-Encoding now, before its headers move upstream; the upstream path.
    let encoding = crate::content::compress::negotiate(
        crate::content::compression(content),
        req.method(),
        req.headers(),
    );
    let target = match crate::content::upstream_path(content, &path, req.uri().query()) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(route = %route.name, cause = %e, "rewrite failed: answering 500");
            observe(500);
            return error_response(StatusCode::INTERNAL_SERVER_ERROR, record);
        }
    };
    if let (Some(r), Some(t)) = (&mut record, &target) {
        r.upstream_path = Some(t.as_str().into());
    }
    // The response cache (cache/): a hit answers here, before any server is picked.
    let mut cached = None;
    if let Some((cache, policy, name)) = snapshot.cache.route(route_index) {
        let scheme = conn.client.proto;
        match crate::cache::lookup::lookup(cache, policy, &req, scheme, host_str, name).await {
            crate::cache::lookup::Lookup::Hit { response, refresh } => {
                if let Some(job) = refresh {
                    let mut h = req.headers().clone();
                    headers::rewrite_request(&mut h, &conn.client, req.version(), host.as_ref());
                    let uri = match &target {
                        Some(t) => http::Uri::from(t.clone()),
                        None => req.uri().clone(),
                    };
                    super::cache_refresh::spawn(job, Arc::clone(group), conn.peer.ip(), h, uri);
                }
                observe(response.status().as_u16());
                return cache_answer(response, rate_headers, record, content, encoding);
            }
            crate::cache::lookup::Lookup::Forward(miss) => cached = Some(miss),
        }
    }

    let upgrade = upgrade::requested(&mut req);
    let (mut parts, body) = req.into_parts();
    let grpc_timeout = super::grpc::timeout(&parts.headers);
    let slot = (!http_body::Body::is_end_stream(&body))
        .then(|| BodySlot::with_limit(body, conn.limits.client_body_timeout, body_limit.clone()));
    headers::rewrite_request(
        &mut parts.headers,
        &conn.client,
        parts.version,
        host.as_ref(),
    );
    crate::tls::client_auth::apply(&mut parts.headers, conn.client_cert.get());
    if !route.forward_claims.is_empty() {
        let claims = claims.as_deref().map(|v| &v.claims);
        route::claims::forward(&route.forward_claims, claims, &mut parts.headers);
    }
    crate::content::request_headers(content, &mut parts.headers);
    if let Some(u) = &upgrade {
        u.restore_request_headers(&mut parts.headers);
    }
    // Sticky sessions (affinity.rs): read, verify and strip the affinity cookie.
    let session =
        (group.sticky.as_ref()).map(|s| s.session(&mut parts.headers, affinity::unix_now()));

    let mut excluded = Excluded::default();
    // A retry needs another server: a one-server group never retries.
    let mut attempts_left = group
        .retries
        .min(u32::try_from(group.servers.len().saturating_sub(1)).unwrap_or(u32::MAX));
    // A request that was never written (connect failure) comes back from
    // `forward::send` and is re-sent as it is. Only a request that may be
    // re-sent after it was written (an idempotent one without a body, when
    // the server closes without answering) needs a copy of its headers
    // while another attempt may follow.
    let resend_after_write = slot.is_none() && forward::is_idempotent(&parts.method);
    // The status of the last failed attempt: when the retries run out of
    // servers, the client gets that (502), not "no server" (503).
    let mut last_failure: Option<StatusCode> = None;
    let mut prepared = parts.headers;
    if let Some(miss) = &cached {
        miss.prepare(&mut prepared);
    }
    loop {
        let ctx = PickContext {
            client_ip: conn.peer.ip(),
            uri: &parts.uri,
            headers: &prepared,
        };
        let pinned = session.as_ref().and_then(Session::pinned);
        // max_connections and the group queue (upstream/queue.rs).
        let picked = crate::upstream::queue::acquire(group, pinned, &ctx, &excluded).await;
        let Ok((index, guard)) = picked else {
            if let Some(status) = last_failure {
                observe(status.as_u16());
                return error_response(status, record);
            }
            if let Err(reason @ (Refused::QueueFull | Refused::Timeout)) = picked {
                tracing::warn!(route = %route.name, group = %group.name, reason = ?reason, "group queue refused the request: answering 503");
                observe(503);
                return error_response(StatusCode::SERVICE_UNAVAILABLE, record);
            }
            if group.stats.no_server() {
                // At most once a second per group; the count is in /metrics.
                tracing::warn!(route = %route.name, group = %group.name, "no usable server in group: answering 503");
            }
            if let Some(stale) = cached.take().and_then(|m| m.stale_on_error()) {
                observe(stale.status().as_u16());
                return cache_answer(stale, rate_headers, record, content, encoding);
            }
            observe(503);
            return error_response(ErrorKind::NoServer.status(), record);
        };
        let server = &group.servers[index];
        let mut headers = if attempts_left > 0 && resend_after_write {
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
        let uri = server.uri(target.as_ref().or(parts.uri.path_and_query()));
        let mut upstream_req =
            Request::new(slot.as_ref().map_or(UpstreamBody::Empty, BodySlot::body));
        *upstream_req.method_mut() = parts.method.clone();
        *upstream_req.uri_mut() = uri;
        *upstream_req.version_mut() = Version::HTTP_11;
        *upstream_req.headers_mut() = headers;
        if let Some(t) = grpc_timeout {
            upstream_req
                .extensions_mut()
                .insert(forward::ResponseTimeout(t));
        }
        if group.pool.proxy_protocol.is_some() {
            let addrs = crate::upstream::proxy_protocol::ClientAddrs {
                client: conn.peer,
                local: conn.local,
            };
            upstream_req.extensions_mut().insert(addrs);
        }

        let sent = Instant::now();
        let mut result = match &body_limit {
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
        if let Some(fault) = result
            .as_ref()
            .err()
            .and_then(|(e, _)| slot.as_ref()?.client_fault(e.kind))
        {
            // The client's doing (client_body.rs): not the server's failure,
            // its ejection or its EWMA; never retried.
            drop(guard);
            if let Some(r) = &mut record {
                r.server = Some(server.id.clone());
            }
            let status = client_fault_status(fault);
            observe(status.as_u16());
            return match fault {
                ClientFault::Malformed => {
                    reject(conn, parts.version, Reason::MalformedBody, record)
                }
                ClientFault::Stalled => reject(conn, parts.version, Reason::BodyTimeout, record),
                ClientFault::Gone => {
                    tracing::debug!(route = %route.name, client = %conn.peer, "client closed the connection mid-body");
                    let mut resp = error_response(StatusCode::BAD_REQUEST, record);
                    resp.body_mut().set_status(status);
                    resp
                }
            };
        }
        if let Ok((resp, _)) = &result {
            // A 101 for an upgrade weir did not forward (h2c, or none): the
            // server must not get a tunnel past routing (RFC 9113 §3.1).
            if resp.status() == StatusCode::SWITCHING_PROTOCOLS
                && !upgrade.as_ref().is_some_and(|u| u.accepts(resp.headers()))
            {
                result = Err((
                    crate::error::ProxyError::new(ErrorKind::UpstreamProtocol),
                    None,
                ));
            }
        }
        match &result {
            // Time to response headers feeds the peak EWMA; a timeout is a
            // lower bound of it and counts too (so a hanging server looks slow).
            Ok(_) => group.record_response_time(index, sent.elapsed()),
            Err((e, _)) if e.kind == ErrorKind::ResponseTimeout => {
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
                    Some(u) => match u.complete(resp, guard, &conn.tracker, ProxyBody::empty) {
                        Ok(switched) => return switched,
                        Err(back) => back,
                    },
                    None => (resp, guard),
                };
                let (mut rparts, rbody) = resp.into_parts();
                headers::rewrite_response(&mut rparts.headers, rparts.version);
                let pooled = Pooled {
                    conn: upstream_conn,
                    max_idle: group.pool.max_idle,
                };
                // The cache stores the response as received, before the
                // per-client headers below.
                let decision = cached.take().map(|m| m.respond(&mut rparts));
                note_cache(&mut record, &rparts.headers);
                let body = match decision {
                    Some(Respond::Cached(answer)) => {
                        drop(ProxyBody::upstream(rbody, guard, pooled, None));
                        let (p, bytes) = answer.into_parts();
                        rparts = p;
                        note_cache(&mut record, &rparts.headers);
                        let mut body = ProxyBody::full(bytes, record);
                        body.set_status(rparts.status);
                        body
                    }
                    tee => {
                        let mut body = ProxyBody::upstream(rbody, guard, pooled, record);
                        if let Some(Respond::Stream(Some(tee))) = tee {
                            body.set_tee(tee);
                        }
                        body
                    }
                };
                if let Some(h) = rate_headers.take() {
                    protection::add_rate_headers(&mut rparts.headers, h);
                }
                if let Some(s) = &session {
                    s.finish(index, conn.client.proto == "https", &mut rparts.headers);
                }
                crate::content::response_headers(content, &mut rparts.headers);
                rparts.version = Version::HTTP_11;
                let resp = Response::from_parts(rparts, body);
                return crate::content::compress::apply(
                    resp,
                    encoding,
                    crate::content::compression(content),
                );
            }
            Err((err, unsent)) => {
                drop(guard);
                if let Some(req) = unsent {
                    // Never written: its headers serve the next attempt.
                    if prepared.is_empty() {
                        prepared = req.into_parts().0.headers;
                    }
                }
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
                    if let Some(stale) = cached.take().and_then(|m| m.stale_on_error()) {
                        observe(stale.status().as_u16());
                        return cache_answer(stale, rate_headers, record, content, encoding);
                    }
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

/// A response from the cache (a hit, or stale on an error), with the
/// per-client headers added as on a forwarded response.
fn cache_answer(
    response: Response<bytes::Bytes>,
    rate_headers: Option<(HeaderValue, HeaderValue)>,
    mut record: Option<Box<AccessRecord>>,
    content: Option<&crate::content::RouteContent>,
    encoding: Option<crate::content::compress::Encoding>,
) -> Response<ProxyBody> {
    let (mut parts, bytes) = response.into_parts();
    note_cache(&mut record, &parts.headers);
    if let Some(h) = rate_headers {
        protection::add_rate_headers(&mut parts.headers, h);
    }
    crate::content::response_headers(content, &mut parts.headers);
    let mut body = ProxyBody::full(bytes, record);
    body.set_status(parts.status);
    crate::content::compress::apply(
        Response::from_parts(parts, body),
        encoding,
        crate::content::compression(content),
    )
}

/// Marks the access record with the cache's verdict (from `Cache-Status`).
fn note_cache(record: &mut Option<Box<AccessRecord>>, headers: &http::HeaderMap) {
    if let (Some(r), Some(v)) = (record, headers.get(&crate::cache::lookup::CACHE_STATUS)) {
        r.cache = Some(crate::cache::lookup::log_status(v));
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

/// The status logged for a client fault (499 = the client went away, nginx's code).
fn client_fault_status(fault: ClientFault) -> StatusCode {
    match fault {
        ClientFault::Malformed => Reason::MalformedBody.status(),
        ClientFault::Stalled => Reason::BodyTimeout.status(),
        ClientFault::Gone => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
    }
}

/// A request weir refuses itself: counted in
/// `weir_downstream_rejected_total{listener,reason}`, logged, and answered
/// with the reason's status and a short body (the access line is written
/// when that body ends). An HTTP/1 connection is closed after it
/// (`Connection: close`, as nginx does after a 400): what follows a request
/// weir could not trust may be framed in a way the next hop reads otherwise.
fn reject(
    conn: &Downstream,
    version: Version,
    reason: Reason,
    record: Option<Box<AccessRecord>>,
) -> Response<ProxyBody> {
    conn.stats.rejected.inc(reason);
    tracing::debug!(listener = %conn.listener, client = %conn.peer, reason = reason.as_str(), "request rejected");
    let mut resp = error_response(reason.status(), record);
    if version < Version::HTTP_2 {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if reason == Reason::Trace || reason == Reason::Connect {
        resp.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS"),
        );
    }
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
