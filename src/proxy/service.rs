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
use super::body::{BodySlot, ProxyBody, UpstreamBody};
use super::headers::{self, ClientInfo};
use super::Snapshot;
use crate::balancer::PickContext;
use crate::error::ErrorKind;
use crate::forward;
use crate::listener::ConnActivity;
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
    req: Request<Incoming>,
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
    let view = RequestView {
        host: host_str,
        path: &path,
        method: req.method(),
        headers: req.headers(),
    };
    let Some(route) = snapshot.routes.lookup(&view) else {
        return error_response(ErrorKind::NoRoute.status(), record);
    };
    let Some(group) = snapshot.groups.get(route.group) else {
        return error_response(StatusCode::INTERNAL_SERVER_ERROR, record);
    };
    if let Some(r) = &mut record {
        r.route = Some(route.name.clone());
        r.group = Some(group.name.clone());
    }

    let (mut parts, body) = req.into_parts();
    let ctx_uri = parts.uri.clone();
    let slot = (!http_body::Body::is_end_stream(&body)).then(|| BodySlot::new(body));
    headers::rewrite_request(
        &mut parts.headers,
        &conn.client,
        parts.version,
        host.as_ref(),
    );

    let mut excluded = Excluded::default();
    let mut attempts_left = group.retries;
    let mut prepared = parts.headers;
    loop {
        let ctx = PickContext {
            client_ip: conn.peer.ip(),
            uri: &ctx_uri,
            headers: &prepared,
        };
        let Some(index) = group.pick(&ctx, &excluded) else {
            tracing::warn!(route = %route.name, group = %group.name, "no usable server in group");
            return error_response(ErrorKind::NoServer.status(), record);
        };
        let server = &group.servers[index];
        // Keep a copy only while another attempt may need it.
        let headers = if attempts_left > 0 {
            prepared.clone()
        } else {
            std::mem::take(&mut prepared)
        };
        let uri = match server.uri(ctx_uri.path_and_query()) {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(route = %route.name, group = %group.name, server = %server.id, cause = %e, "cannot build upstream URI");
                return error_response(StatusCode::BAD_REQUEST, record);
            }
        };
        let mut upstream_req =
            Request::new(slot.as_ref().map_or(UpstreamBody::Empty, BodySlot::body));
        *upstream_req.method_mut() = parts.method.clone();
        *upstream_req.uri_mut() = uri;
        *upstream_req.version_mut() = Version::HTTP_11;
        *upstream_req.headers_mut() = headers;

        let guard = server.state.start_request();
        let sent = Instant::now();
        let result = forward::send(&group.client, upstream_req, group.timeouts.response).await;
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
            Ok(resp) => {
                let (mut rparts, rbody) = resp.into_parts();
                headers::rewrite_response(&mut rparts.headers, rparts.version);
                rparts.version = Version::HTTP_11;
                if let Some(r) = &mut record {
                    r.server = Some(server.id.clone());
                    r.status = rparts.status.as_u16();
                }
                return Response::from_parts(rparts, ProxyBody::upstream(rbody, guard, record));
            }
            Err(err) => {
                drop(guard);
                let can_retry = err.retryable
                    && attempts_left > 0
                    && slot.as_ref().map_or(true, BodySlot::is_untouched);
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
                    return error_response(err.status(), record);
                }
                excluded.insert(index);
                attempts_left -= 1;
            }
        }
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
