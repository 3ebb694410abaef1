//! Forwarding to the upstream: one request on a pooled keep-alive
//! connection of the chosen server (see [`crate::upstream::pool`]), bounded
//! by the group's response timeout. The attempt loop that retries on another
//! server is in `proxy::service`.

use hyper::body::Incoming;

use crate::error::{ErrorKind, ProxyError};
use crate::proxy::body::UpstreamBody;
use crate::upstream::pool::Checkout;
use crate::upstream::{Server, ServerGroup};

/// Sends `req` to `server` of `group`, on an idle pooled connection or a new
/// one, waiting at most the group's response timeout (connect included) for
/// the response headers. Returns the response and its connection, to be
/// given back to the pool when the body has been read to its end.
///
/// A pooled connection that turns out closed before the request could be
/// written (the server closed it while idle) gives the request back, and it
/// goes on the next idle connection or a new one; such a request never shows
/// up here as an error (hyper-util's `retry_canceled_requests` does the same).
///
/// # Errors
/// [`ErrorKind::Connect`] (retryable: nothing reached the server) when the
/// connection could not be made; [`ErrorKind::ResponseTimeout`] when the
/// headers did not arrive in time; [`ErrorKind::UpstreamReset`] when the
/// server closed or reset the connection before any byte of the response
/// (the caller decides whether the request may be retried: see
/// [`is_idempotent`]); [`ErrorKind::UpstreamProtocol`] when it answered with
/// something that is not HTTP.
pub async fn send(
    group: &ServerGroup,
    server: &Server,
    req: http::Request<UpstreamBody>,
) -> Result<(http::Response<Incoming>, Checkout), ProxyError> {
    match tokio::time::timeout(group.timeouts.response, attempt(group, server, req)).await {
        Ok(result) => result,
        Err(_) => Err(ProxyError::new(ErrorKind::ResponseTimeout)),
    }
}

async fn attempt(
    group: &ServerGroup,
    server: &Server,
    mut req: http::Request<UpstreamBody>,
) -> Result<(http::Response<Incoming>, Checkout), ProxyError> {
    let settings = &group.pool;
    loop {
        let mut conn = match server
            .state
            .pool
            .local()
            .take(&server.address, settings.idle_timeout)
        {
            Some(c) => c,
            None => Checkout::connect(&server.address, server.resolved, settings)
                .await
                .map_err(|e| ProxyError::with_cause(ErrorKind::Connect, e).retryable(true))?,
        };
        if let Err(e) = conn.ready().await {
            if conn.reused {
                continue;
            }
            return Err(ProxyError::with_cause(ErrorKind::Connect, e).retryable(true));
        }
        match conn.send(req).await {
            Ok(resp) => return Ok((resp, conn)),
            Err(mut e) => match e.take_message() {
                // Not written: the connection closed first. Untouched, so
                // another connection may take it.
                Some(back) if conn.reused => req = back,
                Some(_) => {
                    let e = e.into_error();
                    return Err(ProxyError::with_cause(ErrorKind::Connect, e).retryable(true));
                }
                None => {
                    let e = e.into_error();
                    let kind = if closed_before_response(&e) {
                        ErrorKind::UpstreamReset
                    } else {
                        ErrorKind::UpstreamProtocol
                    };
                    return Err(ProxyError::with_cause(kind, e));
                }
            },
        }
    }
}

/// True when `e` says the connection was closed or reset before a complete
/// response head arrived: hyper's "connection closed before message
/// completed", a canceled dispatch, or a reset/aborted/broken-pipe/EOF I/O
/// error anywhere in the cause chain.
fn closed_before_response(e: &hyper::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() || h.is_canceled() || h.is_closed() {
                return true;
            }
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            if matches!(
                io.kind(),
                K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof
            ) {
                return true;
            }
        }
        source = err.source();
    }
    false
}

/// Idempotent methods (RFC 9110 §9.2.2): GET, HEAD, OPTIONS, PUT, DELETE,
/// TRACE. Only these are re-sent after the upstream closed the connection
/// without answering (nginx `proxy_next_upstream` does the same; POST and
/// PATCH are never re-sent once bytes went out).
pub fn is_idempotent(method: &http::Method) -> bool {
    use http::Method as M;
    [M::GET, M::HEAD, M::OPTIONS, M::PUT, M::DELETE, M::TRACE].contains(method)
}
