//! The downstream (response) body and the pooled connection it gives back.
//! The request body sent upstream is [`crate::upstream::body`]. Bodies stream
//! frame by frame; no body is ever buffered whole.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::access_log::AccessRecord;
use super::activity::RequestGuard;
use crate::content::compress::{Compressed, Compressible, Encoding, Levels};
use crate::upstream::{InFlightGuard, Lease, ResponseBody};

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

/// Error type of the bodies weir sends.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

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
    Upstream(ResponseBody),
    Full(Option<Bytes>),
    /// Another body compressed as it streams (`content::compress`).
    Compressed(Box<Compressed<ProxyBody>>),
}

impl ProxyBody {
    /// Streams an upstream body; `pooled` is its connection, given back to
    /// the pool at the body's end (at once for a response without a body).
    pub fn upstream(
        body: ResponseBody,
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
            if let Kind::Upstream(body) = &mut self.kind {
                p.conn.checkin(body, guard.shared_state(), p.max_idle);
            }
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

/// What `content::compress::apply` wraps a response body with.
impl Compressible for ProxyBody {
    #[inline]
    fn compressed(self, encoding: Encoding, levels: Levels) -> Self {
        ProxyBody::compressed(self, encoding, levels)
    }
}

/// A short body weir writes itself, without an access record
/// (`ProxyBody::full(bytes, None)`), for answers made below the proxy (ACME).
impl From<Bytes> for ProxyBody {
    fn from(bytes: Bytes) -> Self {
        ProxyBody::full(bytes, None)
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
