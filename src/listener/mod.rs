//! Listeners: bind, accept loop, one task per connection, downstream limits
//! (TLS handshake and request-header timeout, header size, keep-alive idle
//! timeout), and draining on shutdown.

pub mod tls;

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;

use crate::config::ListenerConfig;
use crate::metrics::ListenerStats;
use crate::proxy::headers::ClientInfo;
use crate::proxy::service::{self, Downstream};
use crate::proxy::Snapshot;

/// Most concurrent HTTP/2 streams per client connection.
pub const MAX_CONCURRENT_STREAMS: u32 = 256;

/// Activity of one downstream connection, shared by its I/O wrapper, its
/// requests and its watchdog. All atomics; touched by one connection only.
#[derive(Debug)]
pub struct ConnActivity {
    epoch: Instant,
    /// Bumped on every read or write that moved bytes.
    events: AtomicU64,
    /// Requests whose response has not ended.
    in_flight: AtomicU32,
    /// When the bytes of a not-yet-complete request head started to arrive,
    /// in ms since `epoch` plus one; 0 when none is pending.
    head_since_ms: AtomicU64,
    /// HTTP/2 connections are exempt from the request-head timeout.
    h2: AtomicBool,
}

impl ConnActivity {
    fn new() -> Self {
        ConnActivity {
            epoch: Instant::now(),
            events: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            head_since_ms: AtomicU64::new(0),
            h2: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    fn on_read(&self, n: usize) {
        if n == 0 {
            return;
        }
        self.events.fetch_add(1, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_since_ms.load(Ordering::Relaxed) == 0
            && !self.h2.load(Ordering::Relaxed)
        {
            self.head_since_ms.store(self.now_ms(), Ordering::Relaxed);
        }
    }

    fn on_write(&self) {
        self.events.fetch_add(1, Ordering::Relaxed);
    }

    /// Marks a request head as complete; the returned guard counts the
    /// request as in flight until the response body ends.
    pub fn request_started(self: &Arc<Self>, version: http::Version) -> RequestGuard {
        if version == http::Version::HTTP_2 {
            self.h2.store(true, Ordering::Relaxed);
        }
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_since_ms.store(0, Ordering::Relaxed);
        RequestGuard {
            activity: Arc::clone(self),
        }
    }
}

/// Counts one request as in flight on its connection until dropped.
#[derive(Debug)]
pub struct RequestGuard {
    activity: Arc<ConnActivity>,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.activity.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.activity.events.fetch_add(1, Ordering::Relaxed);
    }
}

/// The TCP stream of a downstream connection, reporting activity.
struct ActivityIo {
    inner: TcpStream,
    activity: Arc<ConnActivity>,
}

impl AsyncRead for ActivityIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = res {
            self.activity.on_read(buf.filled().len() - before);
        }
        res
    }
}

impl AsyncWrite for ActivityIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(_)) = res {
            self.activity.on_write();
        }
        res
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(_)) = res {
            self.activity.on_write();
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A bound listener, ready to accept.
pub struct Listener {
    config: ListenerConfig,
    tcp: TcpListener,
    /// Swapped whole when a reload brings new certificates.
    tls: ArcSwapOption<rustls::ServerConfig>,
    http: auto::Builder<TokioExecutor>,
    stats: Arc<ListenerStats>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("name", &self.config.name)
            .field("address", &self.tcp.local_addr().ok())
            .field("tls", &self.tls.load().is_some())
            .finish()
    }
}

impl Listener {
    /// Binds `config.address` and prepares TLS.
    ///
    /// # Errors
    /// When the address cannot be bound or the TLS config cannot be built.
    pub async fn bind(config: &ListenerConfig, stats: Arc<ListenerStats>) -> io::Result<Self> {
        let tcp = TcpListener::bind(config.address).await.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot bind listener {} on {}: {e}",
                    config.name, config.address
                ),
            )
        })?;
        let tls = ArcSwapOption::new(match &config.tls {
            Some(keys) => Some(tls::server_config(keys).map_err(io::Error::other)?),
            None => None,
        });
        let mut http = auto::Builder::new(TokioExecutor::new());
        http.http1()
            .timer(TokioTimer::new())
            // The request-head timeout is ours (see ConnActivity): hyper's
            // also runs while a keep-alive connection waits, which would cut
            // the idle timeout down to it.
            .header_read_timeout(None)
            .max_buf_size(config.max_header_bytes)
            .keep_alive(true);
        http.http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX))
            .max_concurrent_streams(MAX_CONCURRENT_STREAMS);
        Ok(Listener {
            config: config.clone(),
            tcp,
            tls,
            http,
            stats,
        })
    }

    /// The listener's config.
    pub fn config(&self) -> &ListenerConfig {
        &self.config
    }

    /// Installs the certificates of a reloaded config; new connections use
    /// them, established ones keep theirs.
    ///
    /// # Errors
    /// When the TLS config cannot be built; the old certificates stay.
    pub fn update_tls(&self, keys: Option<&[Arc<rustls::sign::CertifiedKey>]>) -> io::Result<()> {
        let config = match keys {
            Some(keys) => Some(tls::server_config(keys).map_err(io::Error::other)?),
            None => None,
        };
        self.tls.store(config);
        Ok(())
    }

    /// The bound address (with the real port when 0 was asked).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Accepts connections until `shutdown` turns true, serving each on its
    /// own task tracked by `tracker`; connections drain on shutdown.
    pub async fn run(
        self: Arc<Self>,
        snapshot: Arc<ArcSwap<Snapshot>>,
        mut shutdown: watch::Receiver<bool>,
        tracker: TaskTracker,
    ) {
        let this = self;
        let conn_shutdown = shutdown.clone();
        loop {
            tokio::select! {
                accepted = this.tcp.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let this = Arc::clone(&this);
                        let snapshot = Arc::clone(&snapshot);
                        let shutdown = conn_shutdown.clone();
                        tracker.spawn(async move {
                            this.serve_connection(stream, peer, snapshot, shutdown).await;
                        });
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off briefly.
                        tracing::warn!(listener = %this.config.name, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                },
                _ = stopped(&mut shutdown) => break,
            }
        }
        tracing::info!(listener = %this.config.name, "listener closed");
    }

    async fn serve_connection(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        snapshot: Arc<ArcSwap<Snapshot>>,
        shutdown: watch::Receiver<bool>,
    ) {
        let _ = stream.set_nodelay(true);
        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        self.stats.open.fetch_add(1, Ordering::Relaxed);
        let _open = OpenGuard(&self.stats);
        let activity = Arc::new(ConnActivity::new());
        let io = ActivityIo {
            inner: stream,
            activity: Arc::clone(&activity),
        };
        let tls = self.tls.load_full();
        let downstream = Arc::new(Downstream {
            peer,
            client: ClientInfo::new(peer.ip(), tls.is_some()),
            listener: self.config.name.clone(),
            activity: Arc::clone(&activity),
        });
        match tls {
            None => {
                self.serve_http(io, activity, downstream, snapshot, shutdown)
                    .await
            }
            Some(config) => {
                let handshake = tokio::time::timeout(
                    self.config.request_header_timeout,
                    TlsAcceptor::from(config).accept(io),
                );
                let result = handshake.await;
                let counter = match &result {
                    Ok(Ok(_)) => &self.stats.tls_handshakes,
                    _ => &self.stats.tls_failures,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                match result {
                    Ok(Ok(tls)) => {
                        self.serve_http(tls, activity, downstream, snapshot, shutdown)
                            .await
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(listener = %self.config.name, client = %peer, error = %e, "TLS handshake failed");
                    }
                    Err(_) => {
                        tracing::debug!(listener = %self.config.name, client = %peer, "TLS handshake timed out");
                    }
                }
            }
        }
    }

    async fn serve_http<I>(
        &self,
        io: I,
        activity: Arc<ConnActivity>,
        downstream: Arc<Downstream>,
        snapshot: Arc<ArcSwap<Snapshot>>,
        mut shutdown: watch::Receiver<bool>,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let svc = service_fn(move |req| {
            service::handle(Arc::clone(&snapshot), Arc::clone(&downstream), req)
        });
        let conn = self
            .http
            .serve_connection_with_upgrades(TokioIo::new(io), svc);
        tokio::pin!(conn);

        let head_timeout_ms = self.config.request_header_timeout.as_millis() as u64;
        let idle_timeout = self.config.idle_timeout;
        let tick = (self.config.request_header_timeout.min(idle_timeout) / 4)
            .max(Duration::from_millis(50));
        let mut ticker = tokio::time::interval_at(Instant::now() + tick, tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_events = u64::MAX;
        let mut idle_since = Instant::now();
        let mut closing = false;
        loop {
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        tracing::debug!(listener = %self.config.name, error = %e, "connection ended with error");
                    }
                    return;
                }
                _ = stopped(&mut shutdown), if !closing => {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
                _ = ticker.tick() => {
                    let head = activity.head_since_ms.load(Ordering::Relaxed);
                    if head != 0 && activity.now_ms().saturating_sub(head) > head_timeout_ms {
                        tracing::debug!(listener = %self.config.name, "request header timeout; closing connection");
                        return;
                    }
                    let events = activity.events.load(Ordering::Relaxed);
                    if events != last_events || activity.in_flight.load(Ordering::Relaxed) > 0 {
                        last_events = events;
                        idle_since = Instant::now();
                    } else if !closing && idle_since.elapsed() >= idle_timeout {
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
        }
    }
}

/// Decrements the open-connections gauge when the connection task ends.
struct OpenGuard<'a>(&'a ListenerStats);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Resolves when the shutdown flag turns true (or its sender is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await.map(|_| ());
}
