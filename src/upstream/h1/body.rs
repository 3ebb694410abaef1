//! The body of a response read by weir's HTTP/1.1 client: it owns the
//! connection while it streams, finishes sending the request body if the
//! server answered early, and gives the connection back when it ended
//! cleanly ([`Body::take_reusable`]).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use tokio_util::io::poll_read_buf;

use super::decode::{Chunked, DecodeError, Framing, Step};
use super::encode::{Upload, UploadError};
use super::{Conn, READ_SIZE};
use crate::upstream::tls::UpstreamStream;

/// Error type of a response body read by weir's HTTP/1.1 client.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// Largest read buffer of a streaming body, in bytes: reads grow to it
/// while the server fills them (as hyper's adaptive read buffer does).
const MAX_READ: usize = 64 * 1024;

/// Where the body stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// This many bytes left (`Content-Length`).
    Length(u64),
    /// Chunked.
    Chunked(Chunked),
    /// Until the server closes.
    Eof,
    /// 101: the connection belongs to the new protocol.
    Upgrade,
    /// The body ended cleanly.
    Done,
    /// The body failed; the connection is closed.
    Failed,
}

/// A response body streamed from an HTTP/1.1 connection.
#[derive(Debug)]
pub struct Body {
    conn: Option<Conn>,
    buf: BytesMut,
    state: State,
    /// The rest of the request body, while the server answered first.
    upload: Option<Box<Upload>>,
    keep_alive: bool,
    /// Bytes to reserve before the next read.
    read_size: usize,
}

impl Body {
    pub(super) fn new(
        conn: Conn,
        buf: BytesMut,
        framing: Framing,
        upload: Option<Box<Upload>>,
        keep_alive: bool,
    ) -> Self {
        let state = match framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Chunked(Chunked::Size),
            Framing::Eof => State::Eof,
            Framing::Upgrade => State::Upgrade,
        };
        Body {
            conn: Some(conn),
            buf,
            state,
            upload,
            keep_alive,
            read_size: READ_SIZE,
        }
    }

    /// An ended body with no connection (nothing to read, nothing to reuse).
    pub fn closed() -> Self {
        Body {
            conn: None,
            buf: BytesMut::new(),
            state: State::Done,
            upload: None,
            keep_alive: false,
            read_size: READ_SIZE,
        }
    }

    /// The connection, when the body ended cleanly and it can take the
    /// next request: keep-alive and nothing unread after the response,
    /// with the rest of the request body to send first when the server
    /// answered before reading it all ([`super::finish_upload`]). `None`
    /// otherwise (the connection is then closed with the body).
    pub fn take_reusable(&mut self) -> Option<(Conn, Option<Box<Upload>>)> {
        if self.state == State::Done && self.keep_alive && self.buf.is_empty() {
            let conn = self.conn.take()?;
            Some((conn, self.upload.take()))
        } else {
            None
        }
    }

    /// For a `101 Switching Protocols`: the socket and the bytes of the new
    /// protocol the server already sent after the head.
    pub fn into_upgraded(mut self) -> Option<(UpstreamStream, Bytes)> {
        if self.state != State::Upgrade {
            return None;
        }
        let conn = self.conn.take()?;
        Some((conn.into_io(), self.buf.split().freeze()))
    }

    fn fail(&mut self, e: impl Into<BodyError>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.state = State::Failed;
        self.conn = None;
        self.upload = None;
        Poll::Ready(Some(Err(e.into())))
    }

    /// The next frame from what is buffered, or `None` when more bytes are
    /// needed; `Some(None)` at the end.
    fn decode(&mut self) -> Result<Option<Option<Frame<Bytes>>>, DecodeError> {
        match &mut self.state {
            State::Done | State::Failed | State::Upgrade => Ok(Some(None)),
            State::Length(left) => {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                let take = usize::try_from(*left)
                    .unwrap_or(usize::MAX)
                    .min(self.buf.len());
                let data = self.buf.split_to(take).freeze();
                *left -= take as u64;
                if *left == 0 {
                    self.state = State::Done;
                }
                Ok(Some(Some(Frame::data(data))))
            }
            State::Eof => {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                Ok(Some(Some(Frame::data(self.buf.split().freeze()))))
            }
            State::Chunked(c) => {
                let step = c.decode(&mut self.buf)?;
                let step = match step {
                    None => return Ok(None),
                    Some(s) => s,
                };
                if *c == Chunked::Done {
                    self.state = State::Done;
                }
                Ok(Some(match step {
                    Step::Data(d) => Some(Frame::data(d)),
                    Step::Trailers(t) => Some(Frame::trailers(t)),
                    Step::End => None,
                }))
            }
        }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        loop {
            if let (Some(up), Some(conn)) = (&mut this.upload, &mut this.conn) {
                match up.poll(&mut conn.io, cx) {
                    Poll::Ready(Ok(())) => this.upload = None,
                    Poll::Ready(Err(UploadError::Body(e))) => return this.fail(e),
                    Poll::Ready(Err(e)) => {
                        tracing::debug!(error = %e, "upstream request body not sent whole");
                        this.upload = None;
                        this.keep_alive = false;
                    }
                    Poll::Pending => {}
                }
            }
            match this.decode() {
                Ok(Some(frame)) => return Poll::Ready(frame.map(Ok)),
                Ok(None) => {}
                Err(e) => return this.fail(e),
            }
            let Some(conn) = &mut this.conn else {
                return this.fail(DecodeError::Truncated);
            };
            if this.buf.capacity() - this.buf.len() < 1024 {
                this.buf.reserve(this.read_size);
            }
            let room = this.buf.capacity() - this.buf.len();
            match poll_read_buf(Pin::new(&mut conn.io), cx, &mut this.buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => {
                    if this.state == State::Eof {
                        this.state = State::Done;
                        this.keep_alive = false;
                        return Poll::Ready(None);
                    }
                    return this.fail(DecodeError::Truncated);
                }
                Poll::Ready(Ok(n)) => {
                    if n == room && this.read_size < MAX_READ {
                        this.read_size *= 2;
                    }
                }
                Poll::Ready(Err(e)) => return this.fail(e),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done | State::Failed)
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Length(n) => SizeHint::with_exact(n),
            State::Done | State::Failed => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}
