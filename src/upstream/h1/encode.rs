//! Writing an HTTP/1.1 request (RFC 9112): the head in one buffer, then the
//! body as it streams, with its length or in the chunked coding (§7.1).

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::Request;
use http_body::Body;
use tokio::io::AsyncWrite;

use crate::upstream::body::{UpstreamBody, UpstreamBodyError};

/// How the request body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReqFraming {
    /// No body (no framing field, RFC 9112 §6.3 rule 6).
    None,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked` (the body's length is not known).
    Chunked,
}

/// The request head of `req` in origin form (RFC 9112 §3.2.1), with the
/// framing field its body needs when the request has none: the
/// client's `Content-Length` is kept; a body of known size gets one; any
/// other body is chunked.
pub fn head(req: &Request<UpstreamBody>) -> (BytesMut, ReqFraming) {
    let headers = req.headers();
    let body = req.body();
    let given = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let (framing, add): (ReqFraming, Option<HeaderValue>) = match given {
        Some(n) => (ReqFraming::Length(n), None),
        None if body.is_end_stream() => (ReqFraming::None, None),
        None => match body.size_hint().exact() {
            Some(n) => (ReqFraming::Length(n), Some(HeaderValue::from(n))),
            None => (ReqFraming::Chunked, None),
        },
    };
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let method = req.method().as_str();
    let size = headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + method.len()
        + target.len()
        + 64;
    let mut buf = BytesMut::with_capacity(size);
    buf.put_slice(method.as_bytes());
    buf.put_u8(b' ');
    buf.put_slice(target.as_bytes());
    buf.put_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        if name == header::TRANSFER_ENCODING || (name == header::CONTENT_LENGTH && given.is_none())
        {
            // weir frames the body itself (the hop-by-hop cleanup already
            // removed Transfer-Encoding; an unreadable length is not sent).
            continue;
        }
        buf.put_slice(name.as_str().as_bytes());
        buf.put_slice(b": ");
        buf.put_slice(value.as_bytes());
        buf.put_slice(b"\r\n");
    }
    if let Some(v) = add {
        buf.put_slice(b"content-length: ");
        buf.put_slice(v.as_bytes());
        buf.put_slice(b"\r\n");
    }
    if framing == ReqFraming::Chunked {
        buf.put_slice(b"transfer-encoding: chunked\r\n");
    }
    buf.put_slice(b"\r\n");
    (buf, framing)
}

/// Why a request body could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The client's body failed (its fault is recorded in its `BodySlot`).
    #[error("request body: {0}")]
    Body(UpstreamBodyError),
    /// The body did not match its `Content-Length`.
    #[error("request body does not match its Content-Length")]
    Length,
    /// Writing to the server failed.
    #[error("writing the request body: {0}")]
    Io(#[from] io::Error),
}

/// A request body streaming to the server.
#[derive(Debug)]
pub struct Upload {
    body: UpstreamBody,
    framing: ReqFraming,
    /// Bytes left of a `Content-Length` body.
    left: u64,
    /// Encoded bytes not yet written.
    out: VecDeque<Bytes>,
    /// The body ended (its last bytes may still be in `out`).
    ended: bool,
    /// `out` was written and not flushed yet.
    unflushed: bool,
}

impl Upload {
    /// The upload of a request's `head` (already encoded) and `body`, framed
    /// as `framing` (not [`ReqFraming::None`]).
    pub fn new(head: Bytes, body: UpstreamBody, framing: ReqFraming) -> Self {
        let mut out = VecDeque::with_capacity(4);
        out.push_back(head);
        Upload {
            body,
            framing,
            left: match framing {
                ReqFraming::Length(n) => n,
                _ => 0,
            },
            out,
            ended: false,
            unflushed: false,
        }
    }

    /// Writes as much of the head and body as the body and the socket
    /// allow; `Ready(Ok)` once all of it is written and flushed. A frame
    /// the body has ready goes out in the same write as what is pending
    /// (the head and the first bytes of a small body leave in one segment,
    /// as hyper's client sends them).
    ///
    /// # Errors
    /// [`UploadError`].
    pub fn poll<W: AsyncWrite + Unpin>(
        &mut self,
        io: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), UploadError>> {
        loop {
            if !self.ended && self.out.len() <= 1 {
                if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
                    self.take(frame)?;
                }
            }
            while !self.out.is_empty() {
                let slices: [IoSlice<'_>; 4] = [
                    IoSlice::new(self.out.front().map_or(&[][..], |b| &b[..])),
                    IoSlice::new(self.out.get(1).map_or(&[][..], |b| &b[..])),
                    IoSlice::new(self.out.get(2).map_or(&[][..], |b| &b[..])),
                    IoSlice::new(self.out.get(3).map_or(&[][..], |b| &b[..])),
                ];
                let mut n = ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices))?;
                if n == 0 {
                    return Poll::Ready(Err(io::Error::from(io::ErrorKind::WriteZero).into()));
                }
                self.unflushed = true;
                while n > 0 {
                    let Some(front) = self.out.front_mut() else {
                        break;
                    };
                    if n >= front.len() {
                        n -= front.len();
                        self.out.pop_front();
                    } else {
                        let _ = front.split_to(n);
                        n = 0;
                    }
                }
            }
            if self.unflushed {
                ready!(Pin::new(&mut *io).poll_flush(cx))?;
                self.unflushed = false;
            }
            if self.ended {
                return Poll::Ready(Ok(()));
            }
            let frame = ready!(Pin::new(&mut self.body).poll_frame(cx));
            self.take(frame)?;
        }
    }

    /// Encodes what the body gave.
    fn take(
        &mut self,
        frame: Option<Result<http_body::Frame<Bytes>, UpstreamBodyError>>,
    ) -> Result<(), UploadError> {
        match frame {
            Some(Ok(frame)) => {
                // Trailers of a request are not forwarded (hyper's client
                // drops them too for HTTP/1.1).
                if let Ok(data) = frame.into_data() {
                    self.push(data)?;
                }
            }
            Some(Err(e)) => return Err(UploadError::Body(e)),
            None => {
                self.ended = true;
                match self.framing {
                    ReqFraming::Chunked => self.out.push_back(Bytes::from_static(b"0\r\n\r\n")),
                    _ if self.left != 0 => return Err(UploadError::Length),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    fn push(&mut self, data: Bytes) -> Result<(), UploadError> {
        if data.is_empty() {
            return Ok(());
        }
        match self.framing {
            ReqFraming::Chunked => {
                self.out
                    .push_back(Bytes::from(format!("{:x}\r\n", data.len()).into_bytes()));
                self.out.push_back(data);
                self.out.push_back(Bytes::from_static(b"\r\n"));
            }
            _ => {
                let n = data.len() as u64;
                if n > self.left {
                    return Err(UploadError::Length);
                }
                self.left -= n;
                self.out.push_back(data);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, uri: &str, headers: &[(&str, &str)]) -> Request<UpstreamBody> {
        let mut b = Request::builder().method(method).uri(uri);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(UpstreamBody::Empty).unwrap()
    }

    #[test]
    fn a_get_is_written_in_origin_form_without_framing() {
        let (buf, framing) = head(&req("GET", "/a?b=1", &[("host", "x"), ("x-y", "z")]));
        assert_eq!(framing, ReqFraming::None);
        assert_eq!(
            &buf[..],
            b"GET /a?b=1 HTTP/1.1\r\nhost: x\r\nx-y: z\r\n\r\n"
        );
    }

    #[test]
    fn the_clients_content_length_is_kept() {
        let (buf, framing) = head(&req("POST", "/", &[("content-length", "0")]));
        assert_eq!(framing, ReqFraming::Length(0));
        assert_eq!(&buf[..], b"POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n");
    }
}
