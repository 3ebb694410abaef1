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
/// headers did not arrive in time; [`ErrorKind::UpstreamProtocol`] when the
/// server closed, reset, or answered with something that is not HTTP.
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
        Ok(Err(e)) => Err(ProxyError::with_cause(ErrorKind::UpstreamProtocol, e)),
    }
}
