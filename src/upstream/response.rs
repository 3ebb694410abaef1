//! The body of a server's response, as either client read it: weir's own
//! HTTP/1.1 client ([`super::h1`]) or hyper's HTTP/2 client.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::h1;

/// Error type of upstream response bodies.
pub type ResponseBodyError = Box<dyn std::error::Error + Send + Sync>;

/// A server's response body.
#[derive(Debug)]
pub enum ResponseBody {
    /// Read from an HTTP/1.1 connection it owns until its end.
    H1(h1::Body),
    /// A stream of an HTTP/2 connection.
    H2(Incoming),
}

/// A server's response.
pub type UpstreamResponse = http::Response<ResponseBody>;

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = ResponseBodyError;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ResponseBodyError>>> {
        match self.get_mut() {
            ResponseBody::H1(b) => Pin::new(b).poll_frame(cx),
            ResponseBody::H2(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::H1(b) => b.is_end_stream(),
            ResponseBody::H2(b) => b.is_end_stream(),
        }
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::H1(b) => b.size_hint(),
            ResponseBody::H2(b) => b.size_hint(),
        }
    }
}
