//! The hyper service: request → route → pick → forward → response.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::access_log::{self, AccessRecord};
use super::activity::ConnActivity;
use super::body::ProxyBody;
use super::headers::ClientInfo;
use super::pipeline::attempt::{self, Answer};
use super::pipeline::fail::fail;
use super::pipeline::prepare::{self, Admission};
use super::pipeline::{finish, Scope};
use super::request_checks;
use super::{LocalSnapshot, Snapshot};
use crate::config::ListenerConfig;
use crate::error::ErrorKind;
use crate::metrics::ListenerStats;
use crate::route;

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
    crate::shard::mark_busy();
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

/// Runs the pipeline's steps on one request ([`super::pipeline`]); an error
/// from any of them is answered by [`fail`].
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
    let version = req.version();

    // Host confusion, CONNECT, header count, paths above the root
    // (request_checks.rs). RFC 9112 §3.2.2: the authority of an
    // absolute-form target wins over Host, and becomes the Host sent on;
    // HTTP/2 carries it as :authority.
    let host = match request_checks::check(&mut req, conn.limits.max_headers) {
        Ok(host) => host,
        Err(reason) => {
            return fail(
                conn,
                None,
                version,
                ErrorKind::Rejected(reason).into(),
                record,
            )
        }
    };
    let path = route::path::normalize(req.uri().path());
    let routed = match prepare::route(snapshot, &req, host.as_ref(), &path) {
        Ok(routed) => routed,
        Err(e) => return fail(conn, None, version, e, record),
    };
    let (index, claims) = (routed.index, routed.claims.as_deref());
    let route = &snapshot.routes.routes()[index];
    if let Some(c) = route.content.as_deref().filter(|c| c.redirect.is_some()) {
        let (h, r) = (host.as_ref(), record);
        // Boxed: a redirect's future is not carried by every request's.
        let serve = super::redirect::serve(c, snapshot, index, conn, &req, h, claims, r, start);
        return Box::pin(serve).await;
    }
    let Some(group) = snapshot.groups.get(route.group) else {
        return fail(conn, None, version, ErrorKind::Internal.into(), record);
    };
    if let Some(r) = &mut record {
        r.route = Some(route.name.clone());
        r.group = Some(group.name.clone());
    }
    let scope = Scope {
        index,
        route,
        group,
        stats: &snapshot.route_stats[index],
        start,
    };
    let checked = (&req, &*path, host.as_ref());
    let mut admitted =
        match prepare::admit(snapshot, conn, &scope, checked, claims, &mut record).await {
            Ok(Admission::Forward(admitted)) => admitted,
            Ok(Admission::Answered(resp)) => return resp,
            Err(e) => return fail(conn, Some(&scope), version, e, record),
        };
    let limit = admitted.body_limit.as_ref();
    let mut out = prepare::outgoing(conn, &scope, req, host.as_ref(), claims, limit);
    // Awaited here, not in a helper taking `out` and `admitted` by value:
    // the helper's future would hold a second copy of them.
    match attempt::run(conn, &scope, &mut out, &mut admitted, &mut record).await {
        Ok(Answer::Upstream(served)) => {
            finish::upstream(conn, &scope, served, out, admitted, record)
        }
        Ok(Answer::Stale(stale)) => finish::stale(&scope, stale, admitted, record),
        Err(e) => fail(conn, Some(&scope), version, e, record),
    }
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

#[cfg(test)]
mod tests {
    /// The size of the future `f` returns, without calling it.
    fn future_size<F, A, B, C, R>(_: &F) -> usize
    where
        F: Fn(A, B, C) -> R,
    {
        std::mem::size_of::<R>()
    }

    /// hyper moves each request's future into its connection's slot, and
    /// every await moves the futures below it: rare paths (connect, HTTP/2
    /// upstreams, redirects, limits, cache, body limits) are boxed so that
    /// they do not grow it. 9,136 bytes before they were (debug build);
    /// 4,512 after.
    #[test]
    fn the_request_future_stays_small() {
        let size = future_size(&super::handle);
        assert!(size <= 6 * 1024, "service::handle's future is {size} bytes");
        let send = future_size(&crate::upstream::forward::send);
        assert!(send <= 3 * 1024, "forward::send's future is {send} bytes");
    }
}
