//! Forwarding to the upstream: the pooled keep-alive client of each group,
//! timeouts, and the attempt loop that retries on another server when safe.

use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::GroupConfig;
use crate::error::{ErrorKind, ProxyError};
use crate::proxy::body::UpstreamBody;

/// The pooled HTTP/1.1 client of one group (hyper-util's legacy client: one
/// pool keyed by server authority, idle connections reused).
pub type UpstreamClient = Client<HttpConnector, UpstreamBody>;

/// TCP keepalive probe interval on upstream connections.
const TCP_KEEPALIVE: Duration = Duration::from_secs(30);

/// Builds the client of `group`: TCP_NODELAY, connect timeout, pool idle
/// timeout driven by a tokio timer, idle cap per server.
pub fn client(group: &GroupConfig) -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(group.timeouts.connect));
    connector.set_keepalive(Some(TCP_KEEPALIVE));
    connector.enforce_http(true);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(group.pool_idle_timeout)
        .pool_max_idle_per_host(group.pool_max_idle_per_server)
        .set_host(false)
        .build(connector)
}

/// Sends `req` on `client`, waiting at most `response_timeout` for the
/// response headers.
///
/// # Errors
/// [`ErrorKind::Connect`] (retryable: nothing reached the server) when the
/// connection could not be made; [`ErrorKind::ResponseTimeout`] when the
/// headers did not arrive in time; [`ErrorKind::UpstreamReset`] when the
/// server closed or reset the connection before any byte of the response
/// (the caller decides whether the request may be retried: see
/// [`is_idempotent`]); [`ErrorKind::UpstreamProtocol`] when it answered with
/// something that is not HTTP.
///
/// A request given an idle pooled connection that turns out closed before
/// any byte was written is re-sent on a new connection by hyper-util itself
/// (`retry_canceled_requests`, on by default, only for reused connections);
/// such a request never shows up here as an error.
pub async fn send(
    client: &UpstreamClient,
    req: http::Request<UpstreamBody>,
    response_timeout: Duration,
) -> Result<http::Response<Incoming>, ProxyError> {
    match tokio::time::timeout(response_timeout, client.request(req)).await {
        Err(_) => Err(ProxyError::new(ErrorKind::ResponseTimeout)),
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(e)) if e.is_connect() => {
            Err(ProxyError::with_cause(ErrorKind::Connect, e).retryable(true))
        }
        Ok(Err(e)) if closed_before_response(&e) => {
            Err(ProxyError::with_cause(ErrorKind::UpstreamReset, e))
        }
        Ok(Err(e)) => Err(ProxyError::with_cause(ErrorKind::UpstreamProtocol, e)),
    }
}

/// True when `e` says the connection was closed or reset before a complete
/// response head arrived: hyper's "connection closed before message
/// completed", a canceled dispatch, or a reset/aborted/broken-pipe/EOF I/O
/// error anywhere in the cause chain.
fn closed_before_response(e: &hyper_util::client::legacy::Error) -> bool {
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
