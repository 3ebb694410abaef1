//! One downstream connection after accept (and TLS): HTTP/2 or HTTP/1
//! detection, the watchdog that enforces the request-head and keep-alive idle
//! timeouts, and parking of idle HTTP/1 connections.
//!
//! Parking: an HTTP/1 keep-alive connection that has been quiet for a whole
//! watchdog tick (at most 100 ms) gives its hyper state back (the connection
//! object with its 8 KiB read and write buffers). A plain connection then
//! leaves its task too: [`Serve::run`] returns its socket, which waits in
//! the listener's parker (parker.rs) holding nothing else, and the next
//! request gets a fresh task and hyper connection. A TLS connection waits in
//! its task, holding its session and socket only. nginx
//! (`ngx_http_set_keepalive`) and HAProxy free the buffers of idle
//! keep-alive connections the same way. A busy connection is never quiet
//! for a tick and never parks, so the request path pays nothing.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio::time::Instant;

use super::h2_frames::FrameWatch;
use super::stopped;
use crate::config::ListenerConfig;
use crate::metrics::{Gauge, ListenerStats};
use crate::proxy::activity::ConnActivity;
use crate::proxy::body::ProxyBody;
use crate::proxy::reject::{self, Reason};
use crate::timer::LazySleep;

/// The HTTP/2 connection preface a client sends first (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Longest period of the watchdog tick: a quiet HTTP/1 connection is parked
/// between one and two ticks after its last byte. Short, so that a burst of
/// connections that each send one request holds their buffers only briefly;
/// a busy connection pays one timer wake-up per tick.
const MAX_TICK: Duration = Duration::from_millis(100);

/// Shortest period of the watchdog tick.
const MIN_TICK: Duration = Duration::from_millis(50);

/// Longest time a connection closed for idleness may take to finish
/// closing (an HTTP/2 client that never acks the GOAWAY's PING); the
/// smaller of this and `idle_timeout` applies.
const MAX_CLOSE_GRACE: Duration = Duration::from_secs(10);

/// Which protocol a connection speaks, when known before its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Protocol {
    /// Unknown: plain TCP, or TLS without ALPN. The first bytes tell
    /// (the HTTP/2 preface, or else HTTP/1).
    Detect,
    /// HTTP/1.x (ALPN `http/1.1`).
    Http1,
    /// HTTP/2 (ALPN `h2`).
    Http2,
}

/// What a connection is served with: the listener's settings and hyper's
/// protocol builders.
pub(super) struct Serve<'a> {
    pub config: &'a ListenerConfig,
    pub stats: &'a ListenerStats,
    pub h1: &'a http1::Builder,
    pub h2: &'a http2::Builder<TokioExecutor>,
    pub activity: Arc<ConnActivity>,
    pub shutdown: watch::Receiver<bool>,
    /// Hand an idle HTTP/1 connection's socket back to the caller (which
    /// parks it in the worker's parker, parker.rs) instead of waiting for
    /// its next request in the task: plain connections.
    pub hand_off: bool,
}

/// The service a downstream connection is served with: weir's request
/// handler (`proxy::service::handle` in a `service_fn`), cloned for each
/// hyper connection a parked socket gets.
pub(super) trait ProxyService:
    hyper::service::Service<
        http::Request<hyper::body::Incoming>,
        Response = http::Response<ProxyBody>,
        Error = std::convert::Infallible,
        Future: Send + 'static,
    > + Clone
    + Unpin
    + Send
    + 'static
{
}

impl<T> ProxyService for T where
    T: hyper::service::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<ProxyBody>,
            Error = std::convert::Infallible,
            Future: Send + 'static,
        > + Clone
        + Unpin
        + Send
        + 'static
{
}

/// The watchdog's state of one hyper connection, between ticks.
struct Watch {
    /// The activity count at the last tick.
    last_events: u64,
    /// The connection was told to close (shutdown, idleness, parking).
    closing: bool,
    /// Set when the connection is closing for idleness: past it, the
    /// connection is dropped even if the client never finishes the close.
    close_by: Option<Instant>,
    /// The connection is closing to park its socket.
    parking: bool,
}

/// What a tick of the watchdog decided.
enum Tick {
    /// Drop the connection now.
    Close,
    /// Tell hyper to close the connection gracefully.
    Graceful,
    /// Nothing to do.
    Wait,
}

/// The activity count of a connection. HTTP/2 counts stream frames only:
/// PINGs and SETTINGS are not activity.
fn events(activity: &ConnActivity) -> u64 {
    if activity.is_h2() {
        activity.stream_events()
    } else {
        activity.events()
    }
}

/// How the watchdog saw a hyper connection end.
enum Outcome {
    /// Closed (by the client, an error, a timeout or shutdown).
    Closed,
    /// An idle HTTP/1 connection let go of its hyper state; the socket stays.
    Parked,
}

impl Serve<'_> {
    /// Serves `io` until it closes, or until it goes idle between two
    /// requests with `hand_off`: then it returns the socket and the
    /// connection's idle deadline, to be parked.
    /// `make_svc` makes the service of each hyper connection the socket
    /// gets: a parked connection holds none (a plain connection's shared
    /// `Downstream` state is rebuilt when its next request arrives).
    pub async fn run<I, S>(
        mut self,
        io: I,
        protocol: Protocol,
        make_svc: impl Fn() -> S,
    ) -> Option<(I, Instant)>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        S: ProxyService,
    {
        let mut idle_since = Instant::now();
        let mut io = Rewind::new(io, Arc::clone(&self.activity));
        match protocol {
            // The first request head is due within request_header_timeout
            // of the connection's start, as nginx's client_header_timeout.
            Protocol::Http1 => self.activity.start_head_clock(),
            Protocol::Http2 => {
                Box::pin(self.serve_h2(io, make_svc(), &mut idle_since)).await;
                return None;
            }
            // Boxed, as the parked wait below: the task's size is that of
            // its largest state, and a busy connection needs neither.
            Protocol::Detect => match Box::pin(self.detect(&mut io, idle_since)).await {
                None => return None,
                // Boxed: an HTTP/1 connection's task stays small.
                Some(true) => {
                    Box::pin(self.serve_h2(io, make_svc(), &mut idle_since)).await;
                    return None;
                }
                Some(false) => {}
            },
        }
        loop {
            // Shutting down already (a connection accepted just before, or
            // pipelined bytes): its request is served, with
            // `Connection: close`, instead of being cut unanswered.
            let last = *self.shutdown.borrow();
            // Boxed: it lives across the connection's await, and only a
            // connection served during shutdown has one.
            let one_shot = last.then(|| {
                let mut b = Box::new(self.h1.clone());
                b.keep_alive(false);
                b
            });
            let h1 = one_shot.as_deref().unwrap_or(self.h1);
            let mut conn = Box::new(
                h1.serve_connection(TokioIo::new(io), make_svc())
                    .with_upgrades(),
            );
            let graceful = |c: Pin<&mut http1::UpgradeableConnection<_, _>>| {
                if !last {
                    c.graceful_shutdown();
                }
            };
            // Boxed: between requests the task holds only what `next_bytes`
            // needs, not the watchdog's timer and select state.
            let outcome =
                Box::pin(self.watch(Pin::new(&mut *conn), graceful, true, &mut idle_since)).await;
            if let Outcome::Closed = outcome {
                return None;
            }
            self.activity.set_parking(false);
            // None: the connection was upgraded (it lives on in the tunnel).
            let http1::Parts {
                io: parked,
                read_buf,
                ..
            } = conn.into_parts()?;
            io = parked.into_inner();
            if !read_buf.is_empty() {
                // Bytes of the next request that hyper had already read.
                io.prefix = read_buf;
                continue;
            }
            // hyper's read buffer (8 KiB) goes with it.
            drop(read_buf);
            // Parked: only the socket is held until the next request.
            tracing::trace!(listener = %self.config.name, "idle connection parked");
            let deadline = idle_since + self.config.idle_timeout;
            if self.hand_off {
                return Some((io.inner, deadline));
            }
            let parked = ParkedGauge::new(&self.stats.parked);
            // Boxed: it is the task's largest state, so inline it would
            // size every connection's task (~400 bytes more).
            let next = Box::pin(self.next_bytes(&mut io.inner, deadline, false)).await;
            drop(parked);
            let (first, _) = next?;
            io.prefix = first;
            idle_since = Instant::now();
        }
    }

    /// Reads the first bytes of a connection whose protocol is not known
    /// yet, into `io`'s prefix: `Some(true)` when they are the HTTP/2
    /// preface, `None` when the client closed first. A connection that never
    /// sends a first byte is closed at request_header_timeout, not at
    /// idle_timeout.
    async fn detect<I>(&mut self, io: &mut Rewind<I>, idle_since: Instant) -> Option<bool>
    where
        I: AsyncRead + Unpin,
    {
        let first_byte = self
            .config
            .request_header_timeout
            .min(self.config.idle_timeout);
        let deadline = idle_since + first_byte;
        let (first, h2) = self.next_bytes(&mut io.inner, deadline, true).await?;
        io.prefix = first;
        Some(h2)
    }

    async fn serve_h2<I, S>(&mut self, io: Rewind<I>, svc: S, idle_since: &mut Instant)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        S: ProxyService,
    {
        self.activity.mark_h2();
        // Frames tell requests from control traffic, and time header blocks.
        let io = FrameWatch::new(io, Arc::clone(&self.activity));
        let mut conn = Box::pin(self.h2.serve_connection(TokioIo::new(io), svc));
        let graceful = |c: Pin<&mut http2::Connection<_, _, _>>| c.graceful_shutdown();
        self.watch(conn.as_mut(), graceful, false, idle_since).await;
    }

    /// Drives one hyper connection, enforcing the timeouts and draining on
    /// shutdown. A quiet HTTP/1 connection (`parkable`) is told to close its
    /// idle keep-alive state while its socket is kept: [`Outcome::Parked`].
    async fn watch<F>(
        &mut self,
        mut conn: Pin<&mut F>,
        graceful: impl Fn(Pin<&mut F>),
        parkable: bool,
        idle_since: &mut Instant,
    ) -> Outcome
    where
        F: Future<Output = hyper::Result<()>>,
    {
        let config = self.config;
        let tick =
            (config.request_header_timeout.min(config.idle_timeout) / 4).clamp(MIN_TICK, MAX_TICK);
        // Polled only when due (crate::timer): a busy connection's task
        // wakes several times per request, and the tick is far off each time.
        let ticker = LazySleep::after(tick);
        tokio::pin!(ticker);
        let mut w = Watch {
            last_events: events(&self.activity),
            closing: false,
            close_by: None,
            parking: false,
        };
        // Made once: a fresh wait on the shutdown flag at every wake-up
        // would register a waiter per poll.
        let mut shutdown = self.shutdown.clone();
        let stop = stopped(&mut shutdown);
        tokio::pin!(stop);
        loop {
            if ticker.deadline() <= Instant::now() {
                // Due (or past, after a busy stretch): the next tick is a
                // whole period from now, as MissedTickBehavior::Delay.
                ticker.as_mut().reset(Instant::now() + tick);
            }
            tokio::select! {
                res = conn.as_mut() => return self.ended(res, w.parking),
                _ = &mut stop, if !w.closing => {
                    w.closing = true;
                    self.activity.set_parking(false);
                    w.parking = false;
                    graceful(conn.as_mut());
                }
                () = &mut ticker => match self.tick(&mut w, parkable, idle_since) {
                    Tick::Close => return Outcome::Closed,
                    Tick::Graceful => graceful(conn.as_mut()),
                    Tick::Wait => {}
                },
            }
        }
    }

    /// How a hyper connection that ended with `res` ended: an error closes
    /// it (a 400/431 hyper answered itself is counted and logged).
    fn ended(&self, res: hyper::Result<()>, parking: bool) -> Outcome {
        let config = self.config;
        if let Err(e) = res {
            if e.is_parse_too_large() {
                reject::connection_level(
                    &self.stats.rejected,
                    &config.name,
                    Reason::HeadersTooLarge,
                );
            } else if e.is_parse() {
                reject::connection_level(&self.stats.rejected, &config.name, Reason::Malformed);
            }
            tracing::debug!(listener = %config.name, error = %e, "connection ended with error");
            return Outcome::Closed;
        }
        if parking {
            Outcome::Parked
        } else {
            Outcome::Closed
        }
    }

    /// One tick of the watchdog: the request header timeout, the close
    /// grace, then activity since the last tick.
    fn tick(&self, w: &mut Watch, parkable: bool, idle_since: &mut Instant) -> Tick {
        let config = self.config;
        let activity = &self.activity;
        let head_timeout_ms = config.request_header_timeout.as_millis() as u64;
        let idle_timeout = config.idle_timeout;
        let head = activity.head_since_ms();
        if head != 0 && crate::clock::now_ms().saturating_sub(head) > head_timeout_ms {
            tracing::debug!(listener = %config.name, "request header timeout; closing connection");
            reject::connection_level(&self.stats.rejected, &config.name, Reason::HeaderTimeout);
            return Tick::Close;
        }
        if w.close_by.is_some_and(|t| Instant::now() >= t) {
            tracing::debug!(listener = %config.name, "idle connection did not finish closing; dropping it");
            return Tick::Close;
        }
        let events = events(activity);
        if events != w.last_events || activity.in_flight() > 0 {
            w.last_events = events;
            *idle_since = Instant::now();
        } else if !w.closing {
            // Quiet for a whole tick: past the idle timeout the
            // connection closes; before it, a parkable one parks
            // (hyper is idle between requests, so it closes its
            // side at once without writing).
            let expired = idle_since.elapsed() >= idle_timeout;
            w.parking = !expired && parkable && activity.is_quiet();
            if expired || w.parking {
                w.closing = true;
                activity.set_parking(w.parking);
                if expired {
                    w.close_by = Some(Instant::now() + idle_timeout.min(MAX_CLOSE_GRACE));
                }
                return Tick::Graceful;
            }
        }
        Tick::Wait
    }

    /// Waits for the next bytes from the client, holding no buffer but
    /// 24 bytes on the stack. With `detect_h2`, reads on while the bytes may
    /// still be the HTTP/2 preface (at most a request-head timeout), and says
    /// whether they were. `None` when the client closed, the read failed,
    /// `deadline` passed (the keep-alive idle timeout) or the listener is
    /// shutting down.
    async fn next_bytes<I: AsyncRead + Unpin>(
        &mut self,
        io: &mut I,
        deadline: Instant,
        detect_h2: bool,
    ) -> Option<(Bytes, bool)> {
        let mut buf = [0u8; 24];
        let mut n = 0;
        let mut deadline = deadline;
        let mut last_call = false;
        loop {
            let read = tokio::select! {
                r = io.read(&mut buf[n..]) => r,
                _ = tokio::time::sleep_until(deadline) => return None,
                _ = stopped(&mut self.shutdown), if !last_call => {
                    if !detect_h2 {
                        return None;
                    }
                    // A connection accepted just before shutdown (a binary
                    // upgrade, a removed listener): its client is sending
                    // the first request; it gets an answer, not a reset.
                    last_call = true;
                    deadline = deadline.min(Instant::now() + FIRST_REQUEST_GRACE);
                    continue;
                }
            };
            match read {
                Ok(0) | Err(_) => return None,
                Ok(r) => n += r,
            }
            if !detect_h2 || n == buf.len() || buf[..n] != H2_PREFACE[..n] {
                break;
            }
            // Part of the preface: the rest is due within the head timeout.
            deadline = deadline.min(Instant::now() + self.config.request_header_timeout);
        }
        let h2 = detect_h2 && buf == *H2_PREFACE;
        Some((Bytes::copy_from_slice(&buf[..n]), h2))
    }
}

/// How long a connection accepted just before shutdown may take to send the
/// first bytes of its request (which is then served, with
/// `Connection: close`).
const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(1);

/// Counts a connection in the parked gauge while it lives.
struct ParkedGauge<'a>(&'a Gauge);

impl<'a> ParkedGauge<'a> {
    fn new(gauge: &'a Gauge) -> Self {
        gauge.add(1);
        ParkedGauge(gauge)
    }
}

impl Drop for ParkedGauge<'_> {
    fn drop(&mut self) {
        self.0.add(-1);
    }
}

/// A connection's I/O with bytes already read put back in front of it, and a
/// shutdown that does nothing while the connection is being parked (hyper
/// shuts its I/O down when it closes; parking keeps the socket, and a TLS
/// stream must not send close_notify).
pub(super) struct Rewind<I> {
    prefix: Bytes,
    inner: I,
    activity: Arc<ConnActivity>,
}

impl<I> Rewind<I> {
    fn new(inner: I, activity: Arc<ConnActivity>) -> Self {
        Rewind {
            prefix: Bytes::new(),
            inner,
            activity,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Rewind<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.prefix.is_empty() {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        let n = self.prefix.len().min(buf.remaining());
        buf.put_slice(&self.prefix[..n]);
        self.prefix.advance(n);
        if self.prefix.is_empty() && buf.remaining() > 0 {
            // The rest of what the socket holds comes in the same read, so
            // hyper parses the request at once and does not grow its buffer
            // for a second read. Pending or an error is for the next read.
            let _ = Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Rewind<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.activity.is_parking() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
