//! The body of a request sent upstream ([`UpstreamBody`]) and the slot that
//! keeps the downstream body resendable until an attempt reads it
//! ([`BodySlot`]). Bodies stream frame by frame; no body is ever buffered
//! whole.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::client_body::{self, BodyTimeout, ClientFault, FaultCell};
use crate::limits::BodyLimit;

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
