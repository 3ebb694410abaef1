//! Body types on both sides of the proxy. Bodies stream frame by frame; no
//! body is ever buffered whole.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::access_log::AccessRecord;
use super::client_body::{self, BodyTimeout, ClientFault, FaultCell};
use crate::content::compress::{Compressed, Encoding, Levels};
use crate::limits::BodyLimit;
use crate::listener::RequestGuard;
use crate::upstream::{InFlightGuard, Lease, ServerState};

/// The upstream connection a response came on; it goes back to the pool of
/// the server the response's in-flight guard counts on once the response
/// body has been read to its end.
#[derive(Debug)]
pub struct Pooled {
    /// The connection (HTTP/1.1) or stream (HTTP/2).
    pub conn: Lease,
    /// The group's `pool.max_idle_per_server`.
    pub max_idle: usize,
}

impl Pooled {
    fn checkin(self, state: &ServerState) {
        self.conn.checkin(state, self.max_idle);
    }
}

/// Error type of the bodies weir sends.
pub type BodyError = hyper::Error;

/// Error type of the request bodies weir sends upstream: the client's body
/// error, or [`BodyTimeout`].
pub type UpstreamBodyError = Box<dyn std::error::Error + Send + Sync>;

/// A downstream request body that can be sent again to another server as long
/// as no byte of it was read: the body waits in a slot until the first attempt
/// polls it. When a connect fails the slot still holds it, and the retry takes it.
///
/// The slot also records what the client did wrong while the body was read
/// ([`ClientFault`]) and whether the body ended, for the service to tell a
/// client's fault from a server's.
#[derive(Debug, Clone)]
pub struct BodySlot {
    slot: Arc<Mutex<Option<Incoming>>>,
    state: Arc<SlotState>,
    hint: SizeHint,
    /// `client_body_timeout`: longest wait for the next frame of the body.
    timeout: Duration,
    /// `max_request_body` while the body streams (see `limits::body_limit`).
    limit: Option<Arc<BodyLimit>>,
}

#[derive(Debug, Default)]
struct SlotState {
    fault: FaultCell,
    ended: AtomicBool,
    /// The last read of the body waited for the client (Pending), rather
    /// than handing a frame to a server that then stopped reading.
    waiting_on_client: AtomicBool,
}

impl BodySlot {
    /// Parks `body` until an attempt reads it; reading it waits at most
    /// `timeout` for each next frame.
    pub fn new(body: Incoming, timeout: Duration) -> Self {
        let hint = body.size_hint();
        BodySlot {
            slot: Arc::new(Mutex::new(Some(body))),
            state: Arc::default(),
            hint,
            timeout,
            limit: None,
        }
    }

    /// Parks `body` as [`Self::new`], counting its bytes against `limit` as
    /// they stream: past it the body stops (never yields the frame) and the
    /// limit is flagged.
    pub fn with_limit(body: Incoming, timeout: Duration, limit: Option<Arc<BodyLimit>>) -> Self {
        BodySlot {
            limit,
            ..Self::new(body, timeout)
        }
    }

    /// True while no attempt has started reading the body.
    pub fn is_untouched(&self) -> bool {
        self.slot.lock().map(|s| s.is_some()).unwrap_or(false)
    }

    /// A body for the next attempt.
    pub fn body(&self) -> UpstreamBody {
        UpstreamBody::Slot {
            slot: self.clone(),
            taken: None,
            timer: None,
        }
    }

    /// Whether an upstream failure of `kind` was the client's doing: a fault
    /// recorded while reading the body, or a response timeout that ran out
    /// while weir was waiting for more of the body from the client (the
    /// server cannot answer a request it has not received). A server that
    /// stopped reading the body (backpressure) is still the server's fault.
    pub fn client_fault(&self, kind: crate::error::ErrorKind) -> Option<ClientFault> {
        if let Some(f) = self.state.fault.get() {
            return Some(f);
        }
        let started = !self.is_untouched();
        (kind == crate::error::ErrorKind::ResponseTimeout
            && started
            && !self.state.ended.load(Ordering::Relaxed)
            && self.state.waiting_on_client.load(Ordering::Relaxed))
        .then_some(ClientFault::Stalled)
    }
}

/// The body of a request sent upstream.
#[derive(Debug)]
pub enum UpstreamBody {
    /// No body (most GET/HEAD requests); can be sent any number of times.
    Empty,
    /// The downstream body, taken from its [`BodySlot`] on first poll.
    Slot {
        /// Where the body waits.
        slot: BodySlot,
        /// The body once taken.
        taken: Option<Incoming>,
        /// The `client_body_timeout` of the wait for the next frame, armed
        /// when the body first has nothing to give.
        timer: Option<Pin<Box<tokio::time::Sleep>>>,
    },
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = UpstreamBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamBodyError>>> {
        match self.get_mut() {
            UpstreamBody::Empty => Poll::Ready(None),
            UpstreamBody::Slot { slot, taken, timer } => {
                if taken.is_none() {
                    *taken = slot.slot.lock().ok().and_then(|mut s| s.take());
                }
                // Another attempt already consumed the body: end here; the
                // retry logic never lets this happen.
                let Some(body) = taken else {
                    return Poll::Ready(None);
                };
                match Pin::new(&mut *body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Some(limit) = &slot.limit {
                            if limit.add(frame.data_ref().map_or(0, Bytes::len)) {
                                // Past max_request_body: the upstream request is
                                // abandoned by `BodyLimit::race`; nothing more is sent.
                                return Poll::Pending;
                            }
                        }
                        slot.state.waiting_on_client.store(false, Ordering::Relaxed);
                        if let Some(t) = timer {
                            t.as_mut().reset(tokio::time::Instant::now() + slot.timeout);
                        }
                        if body.is_end_stream() {
                            slot.state.ended.store(true, Ordering::Relaxed);
                        }
                        Poll::Ready(Some(Ok(frame)))
                    }
                    Poll::Ready(None) => {
                        slot.state.ended.store(true, Ordering::Relaxed);
                        Poll::Ready(None)
                    }
                    Poll::Ready(Some(Err(e))) => {
                        slot.state.fault.set(client_body::classify(&e));
                        Poll::Ready(Some(Err(Box::new(e))))
                    }
                    Poll::Pending => {
                        slot.state.waiting_on_client.store(true, Ordering::Relaxed);
                        let t =
                            timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(slot.timeout)));
                        if t.as_mut().poll(cx).is_ready() {
                            slot.state.fault.set(ClientFault::Stalled);
                            return Poll::Ready(Some(Err(Box::new(BodyTimeout(slot.timeout)))));
                        }
                        Poll::Pending
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Empty => true,
            UpstreamBody::Slot { taken: Some(b), .. } => b.is_end_stream(),
            UpstreamBody::Slot { slot, .. } => slot.hint.upper() == Some(0),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Empty => SizeHint::with_exact(0),
            UpstreamBody::Slot { taken: Some(b), .. } => b.size_hint(),
            UpstreamBody::Slot { slot, .. } => slot.hint,
        }
    }
}

/// The body of a response sent downstream: the upstream's body streamed
/// through, or a short body weir wrote itself (errors).
///
/// Holds the server's in-flight guard and the access-log record, so the
/// in-flight count drops and the access line is written when the body ends or
/// the client goes away.
#[derive(Debug)]
pub struct ProxyBody {
    kind: Kind,
    /// Goes back to its pool when the upstream body ends cleanly; dropped
    /// (the connection closes) when the body is cut short.
    pooled: Option<Pooled>,
    guard: Option<InFlightGuard>,
    request: Option<RequestGuard>,
    record: Option<Box<AccessRecord>>,
    /// Copies the body for the response cache while it streams.
    tee: Option<Box<crate::cache::tee::Tee>>,
}

#[derive(Debug)]
enum Kind {
    Upstream(Incoming),
    Full(Option<Bytes>),
    /// Another body compressed as it streams (`content::compress`).
    Compressed(Box<Compressed>),
}

impl ProxyBody {
    /// Streams an upstream body; `pooled` is its connection, given back to
    /// the pool at the body's end (at once for a response without a body).
    pub fn upstream(
        body: Incoming,
        guard: InFlightGuard,
        pooled: Pooled,
        record: Option<Box<AccessRecord>>,
    ) -> Self {
        let ended = body.is_end_stream();
        let mut b = ProxyBody {
            kind: Kind::Upstream(body),
            pooled: Some(pooled),
            guard: Some(guard),
            request: None,
            record,
            tee: None,
        };
        if ended {
            b.checkin();
        }
        b
    }

    fn checkin(&mut self) {
        if let (Some(p), Some(guard)) = (self.pooled.take(), &self.guard) {
            p.checkin(guard.state());
        }
    }

    /// A complete body written by weir.
    pub fn full(bytes: impl Into<Bytes>, record: Option<Box<AccessRecord>>) -> Self {
        ProxyBody {
            kind: Kind::Full(Some(bytes.into())),
            pooled: None,
            guard: None,
            request: None,
            record,
            tee: None,
        }
    }

    /// `inner` compressed with `encoding` as it streams
    /// (`content::compress::apply`). The access record and the request guard
    /// move to the outer body, so the log counts the bytes sent; the inner
    /// body keeps its connection and in-flight guard.
    pub fn compressed(mut inner: ProxyBody, encoding: Encoding, levels: Levels) -> Self {
        let record = inner.record.take();
        let request = inner.request.take();
        ProxyBody {
            kind: Kind::Compressed(Box::new(Compressed::new(inner, encoding, levels))),
            pooled: None,
            guard: None,
            request,
            record,
            tee: None,
        }
    }

    /// An empty body.
    pub fn empty() -> Self {
        ProxyBody {
            kind: Kind::Full(None),
            pooled: None,
            guard: None,
            request: None,
            record: None,
            tee: None,
        }
    }

    /// Copies this body into the response cache as it streams (stored
    /// when it ends cleanly; see `cache::tee`).
    pub fn set_tee(&mut self, mut tee: crate::cache::tee::Tee) {
        if Body::is_end_stream(&*self) {
            tee.end();
        } else {
            self.tee = Some(Box::new(tee));
        }
    }

    /// True for a body weir wrote itself (an error or a redirect), not a
    /// server's.
    pub fn is_local(&self) -> bool {
        matches!(self.kind, Kind::Full(_))
    }

    /// Empties a body weir wrote itself (keeps the access record and guards).
    pub fn clear_local(&mut self) {
        if let Kind::Full(b) = &mut self.kind {
            *b = None;
        }
    }

    /// Sets the status the access log records.
    pub fn set_status(&mut self, status: http::StatusCode) {
        if let Some(r) = &mut self.record {
            r.status = status.as_u16();
        }
    }

    /// Ties the downstream connection's request count to this body.
    pub fn set_request_guard(&mut self, guard: RequestGuard) {
        self.request = Some(guard);
    }

    fn finish(&mut self) {
        self.guard.take();
        self.request.take();
        if let Some(r) = self.record.take() {
            r.emit();
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let polled = match &mut this.kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Upstream(body) => Pin::new(body).poll_frame(cx),
            Kind::Compressed(c) => c.poll_next(cx),
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(r)) = (frame.data_ref(), &mut this.record) {
                    r.bytes += data.len() as u64;
                }
                if let (Some(data), Some(t)) = (frame.data_ref(), &mut this.tee) {
                    t.data(data);
                }
                let ended = this.is_end_stream();
                if this.pooled.is_some() && ended {
                    this.checkin();
                }
                if ended {
                    if let Some(mut t) = this.tee.take() {
                        t.end();
                    }
                }
            }
            Poll::Ready(None) => {
                if let Some(mut t) = this.tee.take() {
                    t.end();
                }
                this.checkin();
                this.finish();
            }
            Poll::Ready(Some(Err(_))) => {
                this.tee = None;
                if let Some(r) = &mut this.record {
                    r.aborted = true;
                }
                this.finish();
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(b) => b.is_none(),
            Kind::Upstream(b) => b.is_end_stream(),
            Kind::Compressed(c) => c.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Kind::Full(None) => SizeHint::with_exact(0),
            Kind::Upstream(b) => b.size_hint(),
            Kind::Compressed(c) => c.size_hint(),
        }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        let ended = Body::is_end_stream(&*self);
        if let Some(r) = &mut self.record {
            r.aborted |= !ended;
        }
        self.finish();
    }
}
