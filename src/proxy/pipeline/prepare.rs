//! Before anything goes upstream: the route of the request (and its bearer
//! token), the route's traffic protection, the path rewrite and the response
//! cache, then the head of the upstream request.

use std::sync::Arc;

use http::header::HeaderValue;
use http::uri::PathAndQuery;
use http::{HeaderMap, Request, Response};
use hyper::body::Incoming;

use super::finish;
use super::Scope;
use crate::affinity::{self, Session};
use crate::cache::lookup::{Lookup, Miss};
use crate::content::Encoding;
use crate::error::{ErrorKind, ProxyError, Reason};
use crate::limits::runtime::RouteLimits;
use crate::limits::BodyLimit;
use crate::proxy::access_log::AccessRecord;
use crate::proxy::body::ProxyBody;
use crate::proxy::service::Downstream;
use crate::proxy::upgrade::{self, Requested};
use crate::proxy::{headers, protection, request_checks, Snapshot};
use crate::route::jwt::{RequestToken, TokenOutcome, Verified};
use crate::route::{self, RequestView};
use crate::upstream::body::BodySlot;

/// The route a request matched.
pub(in crate::proxy) struct Routed {
    /// The route's index.
    pub index: usize,
    /// The verified claims, when the route forwards claims or its limits key on them.
    pub claims: Option<Arc<Verified>>,
}

/// Finds the route of a request whose host is `host` and normalized path
/// `path`, and checks that the route allows its method. The bearer token,
/// when a `jwt` section is configured, is looked at lazily and at most once:
/// only by routes with a jwt matcher or `forward_claims`, or to tell 401
/// from 404 when nothing matched.
///
/// # Errors
/// [`ErrorKind::Unauthorized`] when nothing matched and the bearer token
/// failed verification, else [`ErrorKind::NoRoute`]; a `TRACE` the route
/// does not list is [`Reason::Trace`].
pub(in crate::proxy) fn route(
    snapshot: &Snapshot,
    req: &Request<Incoming>,
    host: Option<&HeaderValue>,
    path: &str,
) -> Result<Routed, ProxyError> {
    let token = snapshot
        .routes
        .jwt()
        .map(|v| RequestToken::new(v, req.headers()));
    let view = RequestView {
        host: host_str(host),
        path,
        method: req.method(),
        headers: req.headers(),
        query: req.uri().query(),
        token: token.as_ref(),
    };
    let Some(index) = snapshot.routes.lookup_index(&view) else {
        let invalid =
            (token.as_ref()).is_some_and(|t| matches!(t.outcome(), TokenOutcome::Invalid));
        let kind = if invalid {
            ErrorKind::Unauthorized
        } else {
            ErrorKind::NoRoute
        };
        return Err(kind.into());
    };
    let route = &snapshot.routes.routes()[index];
    let needs_claims = snapshot.limits.route(index).is_some_and(|l| l.needs_claims);
    let claims = if route.forward_claims.is_empty() && !needs_claims {
        None
    } else {
        token.as_ref().and_then(|t| t.verified().cloned())
    };
    if !request_checks::trace_allowed(req.method(), &route.methods) {
        return Err(ErrorKind::Rejected(Reason::Trace).into());
    }
    Ok(Routed { index, claims })
}

/// The host of a checked `Host` value, without its port (what routes match).
pub(in crate::proxy) fn host_str(host: Option<&HeaderValue>) -> Option<&str> {
    host.and_then(|h| h.to_str().ok())
        .map(route::host_without_port)
}

/// What the route's checks decided for a request that goes upstream.
pub(in crate::proxy) struct Admitted<'s> {
    /// The route's traffic protection.
    pub protection: Option<&'s RouteLimits>,
    /// `RateLimit-Policy` and `RateLimit` for the response.
    pub rate_headers: Option<(HeaderValue, HeaderValue)>,
    /// The streaming `max_request_body` limit.
    pub body_limit: Option<Arc<BodyLimit>>,
    /// The response coding chosen from the request's `Accept-Encoding`.
    pub encoding: Option<Encoding>,
    /// The rewritten upstream path, when the route rewrites.
    pub target: Option<PathAndQuery>,
    /// The cache's part in a request it did not answer.
    pub cached: Option<Box<Miss>>,
}

/// The outcome of [`admit`].
pub(in crate::proxy) enum Admission<'s> {
    /// Go upstream.
    Forward(Admitted<'s>),
    /// The cache answered.
    Answered(Response<ProxyBody>),
}

/// Runs the route's checks on a request (`path` normalized, `host` checked):
/// traffic protection (limits/: IP rules, body size, rate limits), the
/// response coding, the path rewrite (content/), then the response cache
/// (cache/), whose hit answers here, before any server is picked.
///
/// # Errors
/// [`ErrorKind::Limited`] with the refusal's headers; [`ErrorKind::Rewrite`].
pub(in crate::proxy) async fn admit<'s>(
    snapshot: &'s Snapshot,
    conn: &Downstream,
    scope: &Scope<'s>,
    (req, path, host): (&Request<Incoming>, &str, Option<&HeaderValue>),
    claims: Option<&Verified>,
    record: &mut Option<Box<AccessRecord>>,
) -> Result<Admission<'s>, ProxyError> {
    let protection = snapshot.limits.route(scope.index);
    let mut rate_headers = None;
    if let Some(p) = protection {
        // Boxed, as the cache lookup below: only routes with limits or a
        // cache pay for their futures' state (a shared rate limit's Redis
        // call), not every request's future.
        match Box::pin(protection::check(p, conn.peer.ip(), req, claims)).await {
            Ok(h) => rate_headers = h,
            Err(refusal) => {
                let mut e = ProxyError::new(ErrorKind::Limited(refusal.status));
                e.headers = refusal.headers;
                return Err(e);
            }
        }
    }
    let body_limit = protection
        .and_then(|p| p.max_request_body)
        .map(BodyLimit::new);
    // The coding is chosen now, before the request's headers move upstream.
    let content = scope.content();
    let compression = crate::content::compression(content);
    let encoding = crate::content::compress::negotiate(compression, req.method(), req.headers());
    let target = crate::content::upstream_path(content, path, req.uri().query())
        .map_err(|e| ProxyError::with_cause(ErrorKind::Rewrite, e))?;
    if let (Some(r), Some(t)) = (&mut *record, &target) {
        r.upstream_path = Some(t.as_str().into());
    }
    let mut admitted = Admitted {
        protection,
        rate_headers,
        body_limit,
        encoding,
        target,
        cached: None,
    };
    let Some((cache, policy, name)) = snapshot.cache.route(scope.index) else {
        return Ok(Admission::Forward(admitted));
    };
    let scheme = conn.client.proto;
    let lookup = crate::cache::lookup::lookup(cache, policy, req, scheme, host_str(host), name);
    match Box::pin(lookup).await {
        Lookup::Hit { response, refresh } => {
            if let Some(job) = refresh {
                let mut h = req.headers().clone();
                headers::rewrite_request(&mut h, &conn.client, req.version(), host);
                let uri = match &admitted.target {
                    Some(t) => http::Uri::from(t.clone()),
                    None => req.uri().clone(),
                };
                crate::proxy::cache_refresh::spawn(
                    job,
                    Arc::clone(scope.group),
                    conn.peer.ip(),
                    h,
                    uri,
                );
            }
            scope.observe(response.status().as_u16());
            let resp = finish::cached(
                response,
                admitted.rate_headers,
                record.take(),
                content,
                encoding,
            );
            Ok(Admission::Answered(resp))
        }
        Lookup::Forward(miss) => {
            admitted.cached = Some(miss);
            Ok(Admission::Forward(admitted))
        }
    }
}

/// The upstream request's head, before a server is picked.
pub(in crate::proxy) struct Outgoing<'s> {
    /// Method, URI and version of the request (its headers are in `headers`).
    pub parts: http::request::Parts,
    /// The headers to send: rewritten for the upstream hop.
    pub headers: HeaderMap,
    /// The request body, waiting for the first attempt that reads it.
    pub slot: Option<BodySlot>,
    /// The protocol upgrade the client asked for, when weir forwards it.
    pub upgrade: Option<Requested>,
    /// A gRPC call's `grpc-timeout`.
    pub grpc_timeout: Option<std::time::Duration>,
    /// The sticky session of the request (`affinity::Session`).
    pub session: Option<Session<'s>>,
    /// False for HTTP/1.0 without `Host` (each attempt sets the server's).
    pub has_host: bool,
}

/// Turns the request into the head sent upstream: the proxy headers
/// (headers.rs), the client certificate, forwarded claims, the route's
/// request header rules, the upgrade headers, and the sticky session's
/// cookie read, verified and stripped.
pub(in crate::proxy) fn outgoing<'s>(
    conn: &Downstream,
    scope: &Scope<'s>,
    mut req: Request<Incoming>,
    host: Option<&HeaderValue>,
    claims: Option<&Verified>,
    body_limit: Option<&Arc<BodyLimit>>,
) -> Outgoing<'s> {
    let upgrade = upgrade::requested(&mut req);
    let (mut parts, body) = req.into_parts();
    let grpc_timeout = crate::proxy::grpc::timeout(&parts.headers);
    let slot = (!http_body::Body::is_end_stream(&body))
        .then(|| BodySlot::with_limit(body, conn.limits.client_body_timeout, body_limit.cloned()));
    let mut headers = std::mem::take(&mut parts.headers);
    headers::rewrite_request(&mut headers, &conn.client, parts.version, host);
    crate::tls::client_auth::apply(&mut headers, conn.client_cert.get());
    let route = scope.route;
    if !route.forward_claims.is_empty() {
        let claims = claims.map(|v| &v.claims);
        route::claims::forward(&route.forward_claims, claims, &mut headers);
    }
    crate::content::request_headers(scope.content(), &mut headers);
    if let Some(u) = &upgrade {
        u.restore_request_headers(&mut headers);
    }
    let sticky = scope.group.sticky.as_ref();
    let session = sticky.map(|s| s.session(&mut headers, affinity::unix_now()));
    Outgoing {
        parts,
        headers,
        slot,
        upgrade,
        grpc_timeout,
        session,
        has_host: host.is_some(),
    }
}
