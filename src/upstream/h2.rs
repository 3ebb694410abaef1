//! HTTP/2 to the servers of an `http2` group (RFC 9113): h2 by ALPN over TLS,
//! h2c with prior knowledge over plain TCP (§3.3).
//!
//! Each worker keeps a short list of multiplexed connections per server
//! ([`H2Pool`], in the server's live state). A request takes a stream on the
//! first open connection with a free stream slot, where the number of slots
//! is the server's `SETTINGS_MAX_CONCURRENT_STREAMS` (read off the
//! connection as it changes, see [`super::h2_settings`]); when every connection is full, another one is
//! opened (one connect at a time per server and worker, so a burst does not
//! open a connection per request). A connection without streams for the
//! group's `pool.idle_timeout` is closed.
//!
//! A GOAWAY from the server drains its connection: hyper stops taking new
//! requests on it and the ones in flight finish; a request handed to it
//! after that comes back unsent ([`hyper::client::conn::TrySendError`]) and
//! goes on another connection, as hyper-util's pooled client does. A stream
//! the server refused (`REFUSED_STREAM`, or above the GOAWAY's last stream
//! id) was not processed (§8.7) and is reported as a reset, which the
//! request path retries for idempotent methods.
//!
//! Request and response bodies stream frame by frame, trailers included
//! (gRPC's `grpc-status` rides on them).

use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::header::{HeaderValue, CONTENT_TYPE, HOST, TE};
use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::time::Instant;

use super::body::UpstreamBody;
use super::connect::{self, Connector};
use super::h2_settings::{PeerSettings, SettingsTap};
use super::{Server, ServerGroup};
use crate::config::upstream_tls::UpstreamProtocol;
use crate::error::{ErrorKind, ProxyError};
use crate::upstream::forward::Failed;

/// HTTP/2 PING interval on upstream connections (a dead peer is noticed
/// within interval + timeout even without TCP keepalive).
const PING_INTERVAL: Duration = Duration::from_secs(30);
/// How long a PING may wait for its answer.
const PING_TIMEOUT: Duration = Duration::from_secs(20);

/// The HTTP/2 connections of one server on one worker.
#[derive(Debug, Default)]
pub struct H2Pool {
    conns: Mutex<Vec<Arc<H2Conn>>>,
    /// Held while a connection is being opened: a burst of requests waits
    /// for that one connection instead of each opening its own.
    connecting: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct H2Conn {
    sender: http2::SendRequest<UpstreamBody>,
    /// The address it is connected to (a reload may change a server's address).
    address: Authority,
    /// The group's [`super::pool::PoolSettings::profile`] when it was made.
    profile: u64,
    /// Streams in use (leases alive).
    active: AtomicUsize,
    /// The server's SETTINGS (its SETTINGS_MAX_CONCURRENT_STREAMS).
    settings: Arc<PeerSettings>,
    /// When the last stream ended ([`crate::clock::now_ms`]); 0 while
    /// streams are active.
    idle_since_ms: AtomicU64,
}

impl H2Conn {
    fn idle_for(&self, limit: Duration) -> bool {
        let since = self.idle_since_ms.load(Ordering::Relaxed);
        since != 0 && crate::clock::now_ms().saturating_sub(since) >= limit.as_millis() as u64
    }
}

/// One stream slot on an HTTP/2 connection, held until the response body
/// ends (or is dropped); then the slot is free for the next request.
#[derive(Debug)]
pub struct H2Lease {
    conn: Arc<H2Conn>,
    /// True when the connection existed before this request (it may have
    /// been closed by a GOAWAY since).
    reused: bool,
}

impl Drop for H2Lease {
    fn drop(&mut self) {
        if self.conn.active.fetch_sub(1, Ordering::Relaxed) == 1 {
            let now = crate::clock::now_ms();
            self.conn.idle_since_ms.store(now, Ordering::Relaxed);
        }
    }
}

impl H2Pool {
    /// A stream slot on an open connection to `address` made with `profile`
    /// with room, or `None`.
    fn take(&self, address: &Authority, profile: u64) -> Option<H2Lease> {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.retain(|c| !c.sender.is_closed());
        let conn = conns.iter().find(|c| {
            c.address == *address
                && c.profile == profile
                && c.active.load(Ordering::Relaxed) < c.settings.max_streams.load(Ordering::Relaxed)
        })?;
        Some(lease(conn, true))
    }

    fn put(&self, conn: Arc<H2Conn>) {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.push(conn);
    }

    /// Open connections (for tests and metrics).
    pub fn len(&self) -> usize {
        let conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.iter().filter(|c| !c.sender.is_closed()).count()
    }

    /// True when no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn lease(conn: &Arc<H2Conn>, reused: bool) -> H2Lease {
    conn.active.fetch_add(1, Ordering::Relaxed);
    conn.idle_since_ms.store(0, Ordering::Relaxed);
    H2Lease {
        conn: Arc::clone(conn),
        reused,
    }
}

/// Sends `slot`'s request to `server` over HTTP/2 and waits for the
/// response headers (the caller bounds the time). The request is taken out
/// of `slot` only once it is handed to a connection; when it comes back
/// unsent it is put back.
///
/// # Errors
/// As [`crate::upstream::forward::send`]: [`ErrorKind::Connect`] (retryable) when no
/// connection could be opened (TLS failures included), with the request
/// given back; [`ErrorKind::UpstreamReset`] when the stream was reset or
/// refused before the response; [`ErrorKind::UpstreamProtocol`] otherwise.
#[allow(clippy::result_large_err)]
pub async fn attempt(
    group: &ServerGroup,
    server: &Server,
    slot: &mut Option<Request<UpstreamBody>>,
) -> Result<(Response<Incoming>, H2Lease), Failed> {
    let pool = server.state.h2.local();
    let mut refused_retries = 0;
    loop {
        let lease = match pool.take(&server.address, group.pool.profile) {
            Some(l) => l,
            None => {
                let _connecting = pool.connecting.lock().await;
                match pool.take(&server.address, group.pool.profile) {
                    Some(l) => l,
                    // Boxed: the connect's state (TLS, handshake) would
                    // otherwise sit in every request's future.
                    None => match Box::pin(open(group, server)).await {
                        Ok(conn) => {
                            let l = lease(&conn, false);
                            pool.put(conn);
                            l
                        }
                        Err(e) => return connect_failed(e, slot),
                    },
                }
            }
        };
        let Some(req) = slot.take() else {
            return Err((ProxyError::new(ErrorKind::Internal), None));
        };
        let req = prepare(req, group.tls.is_some());
        let template = Template::of(&req);
        let mut sender = lease.conn.sender.clone();
        match sender.try_send_request(req).await {
            Ok(resp) => return Ok((resp, lease)),
            Err(mut e) => match e.take_message() {
                // Not sent: the connection was closing (GOAWAY, or closed
                // while idle). Another connection takes it.
                Some(back) => {
                    *slot = Some(unprepare(back));
                    let err = ProxyError::unsent(lease.reused);
                    if err.is_stale() {
                        continue;
                    }
                    let cause = io::Error::other(e.into_error());
                    return Err((err.caused_by(cause), slot.take()));
                }
                None => {
                    let e = e.into_error();
                    // Refused before processing (above a GOAWAY's last
                    // stream id, or REFUSED_STREAM): sent again on another
                    // connection while its body was not read.
                    if refused(&e) && refused_retries < MAX_REFUSED_RETRIES {
                        if let Some(again) = template.rebuild() {
                            refused_retries += 1;
                            *slot = Some(again);
                            continue;
                        }
                    }
                    let kind = if was_reset(&e) {
                        ErrorKind::UpstreamReset
                    } else {
                        ErrorKind::UpstreamProtocol
                    };
                    return Err((ProxyError::with_cause(kind, e), None));
                }
            },
        }
    }
}

#[allow(clippy::result_large_err)]
fn connect_failed<T>(e: io::Error, slot: &mut Option<Request<UpstreamBody>>) -> Result<T, Failed> {
    Err((ProxyError::with_cause(ErrorKind::Connect, e), slot.take()))
}

/// Opens a new HTTP/2 connection to `server` and spawns its driver.
async fn open(group: &ServerGroup, server: &Server) -> io::Result<Arc<H2Conn>> {
    let connector = Connector {
        timeout: group.pool.connect_timeout,
        tls: group.tls.as_deref(),
        protocol: UpstreamProtocol::Http2,
        // No PROXY header on multiplexed connections (validation refuses
        // proxy_protocol with protocol: http2).
        proxy: None,
    };
    let stream = connect::open(&server.address, server.resolved, connector).await?;
    let settings = Arc::new(PeerSettings::default());
    let stream = SettingsTap::new(stream, Arc::clone(&settings));
    let handshake = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(PING_INTERVAL)
        .keep_alive_timeout(PING_TIMEOUT)
        .handshake::<_, UpstreamBody>(TokioIo::new(stream));
    let (sender, conn) = tokio::time::timeout(group.pool.connect_timeout, handshake)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "HTTP/2 handshake timed out"))?
        .map_err(io::Error::other)?;
    let shared = Arc::new(H2Conn {
        sender,
        address: server.address.clone(),
        profile: group.pool.profile,
        active: AtomicUsize::new(0),
        settings: Arc::clone(&settings),
        idle_since_ms: AtomicU64::new(0),
    });
    let watch = Arc::downgrade(&shared);
    let idle_timeout = group.pool.idle_timeout;
    tokio::spawn(async move {
        tokio::pin!(conn);
        let mut tick = tokio::time::interval_at(Instant::now() + idle_timeout, idle_timeout);
        loop {
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        tracing::debug!(error = %e, "upstream HTTP/2 connection ended with an error");
                    }
                    return;
                }
                _ = tick.tick() => {
                    // Idle too long, or no longer in any pool: dropping the
                    // connection closes it (hyper sends GOAWAY).
                    match watch.upgrade() {
                        Some(c) if !c.idle_for(idle_timeout) => {}
                        _ => return,
                    }
                }
            }
        }
    });
    // The server's preface (its first SETTINGS) says how many streams the
    // connection takes; wait for it (one round trip) before the first use.
    tokio::time::timeout(group.pool.connect_timeout, settings.wait_first())
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                "the server sent no HTTP/2 SETTINGS (is it an HTTP/2 server?)",
            )
        })?;
    Ok(shared)
}

/// The HTTP/2 form of a request prepared for HTTP/1.1: the authority moves
/// from `Host` into the URI (`:authority`, RFC 9113 §8.3.1), the scheme is
/// `https` over TLS, and a gRPC request gets `te: trailers` back (the
/// hop-by-hop removal took it; gRPC requires it).
fn prepare(mut req: Request<UpstreamBody>, tls: bool) -> Request<UpstreamBody> {
    *req.version_mut() = Version::HTTP_2;
    let host = req.headers_mut().remove(HOST);
    let authority = host
        .as_ref()
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<Authority>().ok());
    if let Some(authority) = authority {
        let mut parts = req.uri().clone().into_parts();
        parts.scheme = Some(if tls { Scheme::HTTPS } else { Scheme::HTTP });
        parts.authority = Some(authority);
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    } else if let Some(h) = host {
        // Not a valid authority: keep it as a plain header.
        req.headers_mut().insert(HOST, h);
    }
    let grpc = req
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if grpc {
        req.headers_mut()
            .insert(TE, HeaderValue::from_static("trailers"));
    }
    req
}

/// Undoes [`prepare`] for a request that comes back unsent (the next
/// attempt may go to another server, over HTTP/1.1 or HTTP/2).
fn unprepare(mut req: Request<UpstreamBody>) -> Request<UpstreamBody> {
    *req.version_mut() = Version::HTTP_11;
    if let Some(a) = req.uri().authority() {
        if let Ok(v) = HeaderValue::from_str(a.as_str()) {
            req.headers_mut().insert(HOST, v);
        }
    }
    req.headers_mut().remove(TE);
    req
}

/// How often one attempt re-sends a request the server refused unprocessed.
const MAX_REFUSED_RETRIES: u32 = 3;

/// What it takes to send a request again after the server refused its
/// stream unprocessed: its head, and its body while nothing of it was read.
struct Template {
    method: http::Method,
    uri: Uri,
    headers: http::HeaderMap,
    /// `None` = no body.
    body: Option<super::body::BodySlot>,
}

impl Template {
    fn of(req: &Request<UpstreamBody>) -> Template {
        Template {
            method: req.method().clone(),
            uri: req.uri().clone(),
            headers: req.headers().clone(),
            body: match req.body() {
                UpstreamBody::Empty => None,
                UpstreamBody::Slot { slot, .. } => Some(slot.clone()),
            },
        }
    }

    /// The request again, unless its body was (partly) read.
    fn rebuild(self) -> Option<Request<UpstreamBody>> {
        let body = match &self.body {
            None => UpstreamBody::Empty,
            Some(slot) if slot.is_untouched() => slot.body(),
            Some(_) => return None,
        };
        let mut req = Request::new(body);
        *req.method_mut() = self.method;
        *req.uri_mut() = self.uri;
        *req.headers_mut() = self.headers;
        *req.version_mut() = Version::HTTP_2;
        Some(req)
    }
}

/// True when the server refused the stream without processing it (RFC 9113
/// §8.7): it was above the last stream id of the server's GOAWAY, or reset
/// with REFUSED_STREAM.
fn refused(e: &hyper::Error) -> bool {
    for err in crate::error::chain(e) {
        if let Some(h2) = err.downcast_ref::<::h2::Error>() {
            return (h2.is_go_away() && h2.is_remote())
                || h2.reason() == Some(::h2::Reason::REFUSED_STREAM);
        }
    }
    false
}

/// True when the stream was reset, refused or its connection went away
/// before a response: an `h2` reset/GOAWAY, or hyper's canceled/closed, or
/// a reset/EOF I/O error anywhere in the cause chain.
fn was_reset(e: &hyper::Error) -> bool {
    for err in crate::error::chain(e) {
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            if h.is_canceled() || h.is_closed() || h.is_incomplete_message() {
                return true;
            }
        }
        if let Some(h2) = err.downcast_ref::<::h2::Error>() {
            if h2.is_go_away() || h2.is_reset() || h2.is_io() {
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
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_moves_host_into_the_authority_and_back() {
        let req = Request::builder()
            .uri("/pkg.Svc/Call?x=1")
            .header(HOST, "api.internal:8080")
            .header(CONTENT_TYPE, "application/grpc+proto")
            .body(UpstreamBody::Empty)
            .unwrap();
        let req = prepare(req, true);
        assert_eq!(req.uri(), "https://api.internal:8080/pkg.Svc/Call?x=1");
        assert!(req.headers().get(HOST).is_none());
        assert_eq!(req.headers()[TE], "trailers");
        assert_eq!(req.version(), Version::HTTP_2);
        let back = unprepare(req);
        assert_eq!(back.headers()[HOST], "api.internal:8080");
        assert!(back.headers().get(TE).is_none());
    }

    #[test]
    fn plain_requests_get_http_and_no_te() {
        let req = Request::builder()
            .uri("/")
            .header(HOST, "a")
            .body(UpstreamBody::Empty)
            .unwrap();
        let req = prepare(req, false);
        assert_eq!(req.uri(), "http://a/");
        assert!(req.headers().get(TE).is_none());
    }
}
