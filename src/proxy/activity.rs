//! Per-connection activity: what the watchdog of a downstream connection
//! reads to enforce the request-head and keep-alive idle timeouts, and to tell
//! when an idle HTTP/1 connection can drop its buffers (see `listener::conn`).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Activity of one downstream connection, shared by its I/O wrapper, its
/// requests and its watchdog. All atomics; touched by one connection only.
#[derive(Debug)]
pub struct ConnActivity {
    /// Bumped on every read or write that moved bytes.
    events: AtomicU64,
    /// HTTP/2: bumped on every HEADERS, CONTINUATION or DATA frame read, and
    /// when a request starts or ends (control frames do not count).
    streams: AtomicU64,
    /// Requests whose response has not ended.
    in_flight: AtomicU32,
    /// When the bytes of a not-yet-complete request head started to arrive,
    /// ([`crate::clock::now_ms`]); 0 when none is pending.
    head_since_ms: AtomicU64,
    /// HTTP/2 connections are exempt from the request-head timeout.
    h2: AtomicBool,
    /// The last write of the connection could not take all its bytes
    /// (socket buffer full): hyper still holds output, so it is not idle.
    write_blocked: AtomicBool,
    /// Set while the connection is being parked: hyper's closing of an idle
    /// connection then leaves the socket open (see [`ActivityIo`]).
    parking: AtomicBool,
}

impl ConnActivity {
    pub(crate) fn new() -> Self {
        ConnActivity {
            events: AtomicU64::new(0),
            streams: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            head_since_ms: AtomicU64::new(0),
            h2: AtomicBool::new(false),
            write_blocked: AtomicBool::new(false),
            parking: AtomicBool::new(false),
        }
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
            self.head_since_ms
                .store(crate::clock::now_ms(), Ordering::Relaxed);
        }
    }

    fn on_write<T>(&self, res: &Poll<io::Result<T>>) {
        match res {
            Poll::Ready(Ok(_)) => {
                self.events.fetch_add(1, Ordering::Relaxed);
                self.write_blocked.store(false, Ordering::Relaxed);
            }
            Poll::Pending => self.write_blocked.store(true, Ordering::Relaxed),
            Poll::Ready(Err(_)) => {}
        }
    }

    /// Bumped on every read or write that moved bytes, and when a request ends.
    pub(crate) fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// HTTP/2 stream activity: changes on request frames and request
    /// starts and ends, not on PING, SETTINGS or WINDOW_UPDATE.
    pub(crate) fn stream_events(&self) -> u64 {
        self.streams.load(Ordering::Relaxed)
    }

    /// What an HTTP/2 connection's frame watcher saw: stream frames count as
    /// activity; a header block that starts is timed as a request head until
    /// the frame with END_HEADERS ends it.
    pub(crate) fn h2_frames(&self, seen: &Seen) {
        if seen.stream_frames > 0 {
            self.streams
                .fetch_add(u64::from(seen.stream_frames), Ordering::Relaxed);
        }
        if seen.block_ended {
            self.head_since_ms.store(0, Ordering::Relaxed);
        } else if seen.block_started && self.head_since_ms.load(Ordering::Relaxed) == 0 {
            self.head_since_ms
                .store(crate::clock::now_ms(), Ordering::Relaxed);
        }
    }

    /// Starts the request-head clock now, before any byte arrived (the first
    /// request of a connection must start within `request_header_timeout`).
    pub(crate) fn start_head_clock(&self) {
        let _ = self.head_since_ms.compare_exchange(
            0,
            crate::clock::now_ms(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// Requests of this connection whose response has not ended.
    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// When the pending request head started to arrive (ms since the
    /// clock, [`crate::clock::now_ms`]); 0 when no head is pending.
    pub(crate) fn head_since_ms(&self) -> u64 {
        self.head_since_ms.load(Ordering::Relaxed)
    }

    /// True when nothing is in flight, no request head is arriving and no
    /// output is waiting for the socket: hyper holds no state worth keeping.
    pub(crate) fn is_quiet(&self) -> bool {
        self.in_flight() == 0
            && self.head_since_ms() == 0
            && !self.write_blocked.load(Ordering::Relaxed)
    }

    /// While set, a shutdown of the I/O by hyper is a no-op: the connection is
    /// being parked, not closed.
    pub(crate) fn set_parking(&self, parking: bool) {
        self.parking.store(parking, Ordering::Relaxed);
    }

    /// Marks the connection as HTTP/2: bytes read no longer start the
    /// request-head clock (the frame watcher times header blocks instead).
    pub(crate) fn mark_h2(&self) {
        self.h2.store(true, Ordering::Relaxed);
        self.head_since_ms.store(0, Ordering::Relaxed);
    }

    /// True once the connection is known to speak HTTP/2.
    pub(crate) fn is_h2(&self) -> bool {
        self.h2.load(Ordering::Relaxed)
    }

    /// See [`ConnActivity::set_parking`].
    pub(crate) fn is_parking(&self) -> bool {
        self.parking.load(Ordering::Relaxed)
    }

    /// Marks a request head as complete; the returned guard counts the
    /// request as in flight until the response body ends.
    pub fn request_started(self: &Arc<Self>, version: http::Version) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        if version == http::Version::HTTP_2 {
            // Another stream's header block may be arriving: the frame
            // watcher, not the request start, ends its clock.
            self.h2.store(true, Ordering::Relaxed);
            self.streams.fetch_add(1, Ordering::Relaxed);
        } else {
            self.head_since_ms.store(0, Ordering::Relaxed);
        }
        RequestGuard {
            activity: Arc::clone(self),
        }
    }
}

/// What an HTTP/2 connection's frame watcher (`listener::h2_frames`) saw in one chunk of bytes.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Seen {
    /// HEADERS, CONTINUATION or DATA frames that started.
    pub stream_frames: u32,
    /// A header block started (HEADERS frame header read).
    pub block_started: bool,
    /// The last header block seen ended (END_HEADERS frame read whole)
    /// and no later one started.
    pub block_ended: bool,
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
        self.activity.streams.fetch_add(1, Ordering::Relaxed);
    }
}

/// The TCP stream of a downstream connection, reporting activity.
pub(crate) struct ActivityIo {
    pub(crate) inner: TcpStream,
    pub(crate) activity: Arc<ConnActivity>,
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
        self.activity.on_write(&res);
        res
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.activity.on_write(&res);
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
