//! Forwarding to the upstream: one request on a pooled keep-alive
//! connection of the chosen server (see [`super::pool`]; HTTP/2
//! groups: [`super::h2`]), bounded by the group's response timeout. The attempt loop that retries on another
//! server is in `proxy::service`.

use super::body::UpstreamBody;
use super::h1::Conn;
use super::{Lease, ResponseBody, Server, ServerGroup, UpstreamResponse};
use crate::config::upstream_tls::UpstreamProtocol;
use crate::error::{ErrorKind, ProxyError};

/// A shorter response timeout for one request (a gRPC call's
/// `grpc-timeout`), carried in the upstream request's extensions; the
/// group's `timeouts.response` still caps it.
#[derive(Debug, Clone, Copy)]
pub struct ResponseTimeout(pub std::time::Duration);

/// Sends `req` to `server` of `group`, on an idle pooled connection or a new
/// one, waiting at most the group's response timeout (connect included) for
/// the response headers. Returns the response and its connection, to be
/// given back to the pool when the body has been read to its end.
///
/// A pooled connection that turns out closed before the request could be
/// written (the server closed it while idle) gives the request back, and it
/// goes on the next idle connection or a new one; such a request never shows
/// up here as an error (hyper-util's `retry_canceled_requests` does the same).
/// HTTP/1.1 goes through weir's own client ([`super::h1`]), HTTP/2 through
/// hyper's.
///
/// # Errors
/// With the request given back when it was never written (so a retry on
/// another server needs no copy of it):
/// [`ErrorKind::Connect`] (retryable: nothing reached the server) when the
/// connection could not be made; [`ErrorKind::ResponseTimeout`] when the
/// headers did not arrive in time; [`ErrorKind::UpstreamReset`] when the
/// server closed or reset the connection before any byte of the response
/// (retryable for an idempotent method: the caller asks
/// [`ProxyError::may_retry`]); [`ErrorKind::UpstreamProtocol`] when it
/// answered with something that is not HTTP.
// The request comes back by value in the error (instead of a copy kept
// for a retry); failures are rare, so its size on that path costs nothing.
#[allow(clippy::result_large_err)]
pub async fn send(
    group: &ServerGroup,
    server: &Server,
    req: http::Request<UpstreamBody>,
) -> Result<(UpstreamResponse, Lease), Failed> {
    let timeout = match req.extensions().get::<ResponseTimeout>() {
        Some(t) => t.0.min(group.timeouts.response),
        None => group.timeouts.response,
    };
    // The request waits in a slot, so that a connect timeout (the whole
    // attempt timed out before anything was written) can still give it back.
    let mut slot = Some(req);
    let work = async {
        match group.protocol {
            UpstreamProtocol::Http1 => attempt(group, server, &mut slot)
                .await
                .map(|r| (r.map(ResponseBody::H1), Lease::H1)),
            // Boxed: one allocation per HTTP/2 exchange (which makes
            // several anyway) keeps its state out of every HTTP/1 request's
            // future (rustc does not overlap the two arms' states).
            UpstreamProtocol::Http2 => Box::pin(super::h2::attempt(group, server, &mut slot))
                .await
                .map(|(r, l)| (r.map(ResponseBody::H2), Lease::H2(l))),
        }
    };
    // Polled only when due: the exchange's task wakes several times per
    // request, far from the response timeout (crate::timer).
    match crate::timer::timeout(timeout, work).await {
        Ok(result) => result,
        Err(_) => Err((ProxyError::new(ErrorKind::ResponseTimeout), slot)),
    }
}

/// A failed attempt: the error, and the request when it was never written.
pub type Failed = (ProxyError, Option<http::Request<UpstreamBody>>);

#[allow(clippy::result_large_err)]
async fn attempt(
    group: &ServerGroup,
    server: &Server,
    slot: &mut Option<http::Request<UpstreamBody>>,
) -> Result<http::Response<super::h1::Body>, Failed> {
    let settings = &group.pool;
    // A request that can go again on a new connection if this one turns
    // out closed needs no system call to check it first.
    let thorough = !slot.as_ref().is_some_and(super::h1::replayable);
    loop {
        let conn = match server
            .state
            .pool
            .local()
            .take(&server.address, settings, thorough)
        {
            Some(c) => c,
            // Boxed: the connect's state (TCP, TLS, PROXY header) would
            // otherwise be moved with every request's future, though most
            // requests reuse a pooled connection.
            None => match Box::pin(Conn::connect(
                &server.address,
                server.resolved,
                settings,
                group.tls.as_deref(),
                slot.as_ref().and_then(|r| r.extensions().get().copied()),
            ))
            .await
            {
                Ok(c) => c,
                Err(e) => return connect_failed(e.into(), slot),
            },
        };
        match super::h1::exchange(conn, slot).await {
            Ok(resp) => return Ok(resp),
            // Not written: the pooled connection was closed. Another
            // connection takes the request, untouched.
            Err(e) if e.is_stale() && slot.is_some() => continue,
            Err(e) => return Err((e, slot.take())),
        }
    }
}

/// A connect failure (retryable: nothing reached the server), giving the
/// request back.
#[allow(clippy::result_large_err)]
fn connect_failed<T>(
    cause: Box<dyn std::error::Error + Send + Sync>,
    slot: &mut Option<http::Request<UpstreamBody>>,
) -> Result<T, Failed> {
    Err((
        ProxyError::with_cause(ErrorKind::Connect, cause),
        slot.take(),
    ))
}
