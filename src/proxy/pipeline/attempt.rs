//! Picking a server and sending the request, again on another server while
//! the error allows it ([`ProxyError::may_retry`]) and the group's retry
//! budget and the body do. Each attempt's outcome is counted on its server
//! (response and error counters, passive health, the response-time EWMA);
//! the answer to the client is [`super::finish`]'s or [`super::fail`]'s.

use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Version};

use super::prepare::{Admitted, Outgoing};
use super::Scope;
use crate::balancer::PickContext;
use crate::error::{is_idempotent, ErrorKind, ProxyError, Reason};
use crate::metrics;
use crate::proxy::access_log::AccessRecord;
use crate::proxy::service::Downstream;
use crate::upstream::body::{BodySlot, UpstreamBody};
use crate::upstream::client_body::ClientFault;
use crate::upstream::forward;
use crate::upstream::group::Excluded;
use crate::upstream::health;
use crate::upstream::queue::Refused;
use crate::upstream::{InFlightGuard, Lease, Server, UpstreamResponse};

/// What the attempts came to.
pub(in crate::proxy) enum Answer {
    /// A server answered.
    Upstream(Served),
    /// No server could: the cache's stale copy (`stale-if-error`) answers.
    Stale(Response<Bytes>),
}

/// A server's response, with what its body needs to give back.
pub(in crate::proxy) struct Served {
    /// The response head and body.
    pub response: UpstreamResponse,
    /// The connection the body is read from.
    pub lease: Lease,
    /// The server's index in the group.
    pub index: usize,
    /// The server's in-flight slot, held until the body ends.
    pub guard: InFlightGuard,
}

/// The outcome of one attempt on one server.
// The request comes back by value in the error (see `forward::send`).
#[allow(clippy::result_large_err)]
type Sent = Result<(UpstreamResponse, Lease), forward::Failed>;

/// Sends the request to the group's servers until one answers, the error
/// says it may not be retried, or the retries run out.
///
/// # Errors
/// The error of the last attempt, or why no attempt could be made
/// ([`ErrorKind::NoServer`], [`ErrorKind::QueueFull`], ...); errors of the
/// client's (a body over the limit, broken or stalled) are never retried.
pub(in crate::proxy) async fn run(
    conn: &Downstream,
    scope: &Scope<'_>,
    out: &mut Outgoing<'_>,
    admitted: &mut Admitted<'_>,
    record: &mut Option<Box<AccessRecord>>,
) -> Result<Answer, ProxyError> {
    let group = scope.group;
    let mut excluded = Excluded::default();
    let mut attempts_left = retry_budget(group);
    // A request that was never written (connect failure) comes back from
    // `forward::send` and is re-sent as it is. Only a request that may be
    // re-sent after it was written (an idempotent one without a body, when
    // the server closes without answering) needs a copy of its headers
    // while another attempt may follow.
    let resend_after_write = out.slot.is_none() && is_idempotent(&out.parts.method);
    // The kind of the last failed attempt: when the retries run out of
    // servers, the client gets its status (502), not "no server" (503).
    let mut last_failure: Option<ErrorKind> = None;
    if let Some(miss) = &admitted.cached {
        miss.prepare(&mut out.headers);
    }
    loop {
        let ctx = PickContext {
            client_ip: conn.peer.ip(),
            uri: &out.parts.uri,
            headers: &out.headers,
        };
        let pinned = out.session.as_ref().and_then(|s| s.pinned());
        // max_connections and the group queue (upstream/queue.rs).
        let picked = crate::upstream::queue::acquire(group, pinned, &ctx, &excluded).await;
        let (index, guard) = match picked {
            Ok(p) => p,
            Err(refused) => return no_server(scope, refused, last_failure, admitted),
        };
        let server = &group.servers[index];
        // HTTP/1.1 (weir's own client) gives a request without a body
        // back whole from any failed attempt; only HTTP/2 needs the copy.
        let copy = attempts_left > 0
            && resend_after_write
            && group.protocol == crate::config::upstream_tls::UpstreamProtocol::Http2;
        let req = request(conn, scope, out, server, copy, admitted);
        // Sent from here (the future of `forward::send` is awaited in place:
        // an async helper taking the request would hold a second copy of it).
        let sent = Instant::now();
        let result = match &admitted.body_limit {
            None => forward::send(group, server, req).await,
            // Boxed: a second copy of the exchange's future, only for
            // routes with `max_request_body`, would double every request's.
            Some(limit) => match Box::pin(limit.race(forward::send(group, server, req))).await {
                Some(result) => result,
                None => return Err(body_too_large(admitted)),
            },
        };
        // A client's fault (`?`) ends the request.
        let (err, unsent) = match checked(scope, out, server, (index, sent), result, record)? {
            Ok((response, lease)) => {
                let served = Served {
                    response,
                    lease,
                    index,
                    guard,
                };
                return Ok(Answer::Upstream(served));
            }
            Err(failed) => failed,
        };
        drop(guard);
        if let Some(req) = unsent {
            // Never written: its headers serve the next attempt.
            if out.headers.is_empty() {
                out.headers = req.into_parts().0.headers;
            }
        }
        let slot_untouched = out.slot.as_ref().is_none_or(BodySlot::is_untouched);
        let may_retry = err.may_retry(&out.parts.method) && attempts_left > 0 && slot_untouched;
        failed(scope, server, index, &err, may_retry, record);
        if !may_retry {
            return unretried(admitted, err);
        }
        last_failure = Some(err.kind);
        excluded.insert(index);
        attempts_left -= 1;
    }
}

/// The group's `retries`, at most one fewer than its servers: a retry needs
/// another server, so a one-server group never retries.
fn retry_budget(group: &crate::upstream::ServerGroup) -> u32 {
    group
        .retries
        .min(u32::try_from(group.servers.len().saturating_sub(1)).unwrap_or(u32::MAX))
}

/// No server could be picked (`refused`). After a failed attempt the client
/// gets that attempt's status; a full queue or a timeout in it is a 503;
/// otherwise no server was usable: the cache's stale copy, or a 503.
fn no_server(
    scope: &Scope<'_>,
    refused: Refused,
    last_failure: Option<ErrorKind>,
    admitted: &mut Admitted<'_>,
) -> Result<Answer, ProxyError> {
    if let Some(kind) = last_failure {
        return Err(kind.into());
    }
    match refused {
        Refused::QueueFull => return Err(ErrorKind::QueueFull.into()),
        Refused::Timeout => return Err(ErrorKind::QueueTimeout.into()),
        Refused::NoServer => {}
    }
    if scope.group.stats.no_server() {
        // At most once a second per group; the count is in /metrics.
        tracing::warn!(route = %scope.route.name, group = %scope.group.name, "no usable server in group: answering 503");
    }
    if let Some(stale) = admitted.cached.take().and_then(|m| m.stale_on_error()) {
        return Ok(Answer::Stale(stale));
    }
    Err(ErrorKind::NoServer.into())
}

/// The request for one attempt on `server`: with a `copy` of the prepared
/// headers while a retry may need them again, else with the headers.
fn request(
    conn: &Downstream,
    scope: &Scope<'_>,
    out: &mut Outgoing<'_>,
    server: &Server,
    copy: bool,
    admitted: &Admitted<'_>,
) -> Request<UpstreamBody> {
    let mut headers = if copy {
        out.headers.clone()
    } else {
        std::mem::take(&mut out.headers)
    };
    if !out.has_host {
        // HTTP/1.0 without Host: the upstream hop is HTTP/1.1, which needs one.
        if let Ok(v) = HeaderValue::from_str(server.address.as_str()) {
            headers.insert(header::HOST, v);
        }
    }
    let uri = server.uri(admitted.target.as_ref().or(out.parts.uri.path_and_query()));
    let body = out
        .slot
        .as_ref()
        .map_or(UpstreamBody::Empty, BodySlot::body);
    let mut req = Request::new(body);
    *req.method_mut() = out.parts.method.clone();
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = headers;
    if let Some(t) = out.grpc_timeout {
        req.extensions_mut().insert(forward::ResponseTimeout(t));
    }
    if scope.group.pool.proxy_protocol.is_some() {
        let addrs = crate::upstream::proxy_protocol::ClientAddrs {
            client: conn.peer,
            local: conn.local,
        };
        req.extensions_mut().insert(addrs);
    }
    req
}

/// The body streamed past `max_request_body`: the upstream request is
/// dropped (its connection closed), not retried.
fn body_too_large(admitted: &Admitted<'_>) -> ProxyError {
    if let Some(p) = admitted.protection {
        metrics::inc(&p.counters.body_too_large);
    }
    ErrorKind::Limited(StatusCode::PAYLOAD_TOO_LARGE).into()
}

/// The error of an attempt that is not retried, or the cache's stale copy
/// answering for it (`stale-if-error`).
fn unretried(admitted: &mut Admitted<'_>, err: ProxyError) -> Result<Answer, ProxyError> {
    match admitted.cached.take().and_then(|m| m.stale_on_error()) {
        Some(stale) => Ok(Answer::Stale(stale)),
        None => Err(err),
    }
}

/// Looks at the outcome of an attempt on server `index` sent at `sent`: a
/// 101 for an upgrade weir did not forward is a protocol error; the time
/// to the response headers feeds the server's EWMA.
///
/// # Errors
/// The client's faults, which end the request: the body broke its framing
/// or stalled, or the client went away.
fn checked(
    scope: &Scope<'_>,
    out: &Outgoing<'_>,
    server: &Server,
    (index, sent): (usize, Instant),
    mut result: Sent,
    record: &mut Option<Box<AccessRecord>>,
) -> Result<Sent, ProxyError> {
    let group = scope.group;
    if let Some(fault) =
        (result.as_ref().err()).and_then(|(e, _)| out.slot.as_ref()?.client_fault(e.kind))
    {
        // The client's doing (client_body.rs): not the server's failure,
        // its ejection or its EWMA; never retried.
        if let Some(r) = record {
            r.server = Some(server.id.clone());
        }
        let kind = match fault {
            ClientFault::Malformed => ErrorKind::Rejected(Reason::MalformedBody),
            ClientFault::Stalled => ErrorKind::Rejected(Reason::BodyTimeout),
            ClientFault::Gone => ErrorKind::ClientGone,
        };
        return Err(kind.into());
    }
    if let Ok((resp, _)) = &result {
        // A 101 for an upgrade weir did not forward (h2c, or none): the
        // server must not get a tunnel past routing (RFC 9113 §3.1).
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS
            && !out
                .upgrade
                .as_ref()
                .is_some_and(|u| u.accepts(resp.headers()))
        {
            result = Err((ProxyError::new(ErrorKind::UpstreamProtocol), None));
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
    Ok(result)
}

/// Counts a failed attempt on server `index` and logs it: a retry, or (when
/// it is not retried) the server's response.
fn failed(
    scope: &Scope<'_>,
    server: &Server,
    index: usize,
    err: &ProxyError,
    retry: bool,
    record: &mut Option<Box<AccessRecord>>,
) {
    let stats = &server.state.stats;
    metrics::inc(match err.kind {
        ErrorKind::Connect => &stats.connect_errors,
        ErrorKind::ResponseTimeout => &stats.timeouts,
        _ => &stats.protocol_errors,
    });
    health::passive::request_failed(scope.group, index, err.kind);
    tracing::warn!(
        route = %scope.route.name,
        group = %scope.group.name,
        server = %server.id,
        address = %server.address,
        cause = %err,
        retry = retry,
        "upstream request failed"
    );
    if let Some(r) = record {
        r.server = Some(server.id.clone());
    }
    if retry {
        metrics::inc(&stats.retries);
    } else {
        stats.responses.inc(err.status().as_u16());
    }
}
