//! weir's own HTTP/1.1 upstream client (RFC 9112), driven inside the
//! request's task: no connection task, no channel between tasks, and an
//! idle connection that is only its socket.
//!
//! An exchange writes the request head ([`encode`]), then streams the body
//! while it reads the response head ([`decode`]), and returns the response
//! with a [`Body`] that owns the connection until the body's end. The body
//! goes on sending the request body if the server answered before it was
//! all sent (a response that ends first leaves the connection not
//! reusable). A clean end gives the connection back to the server's pool
//! ([`super::pool`]). HAProxy's and nginx's HTTP/1 upstream sides work the
//! same way: the connection is state of the stream that uses it, not a task
//! of its own. HTTP/2 groups and the health probes use hyper.

pub mod body;
pub mod decode;
pub mod encode;

use std::future::poll_fn;
use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::BytesMut;
use http::uri::Authority;
use http::{Method, Request, Response};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio_util::io::poll_read_buf;

pub use body::Body;

use super::body::UpstreamBody;
use super::connect::Connector;
use super::pool::PoolSettings;
use super::tls::UpstreamStream;
use crate::config::upstream_tls::{UpstreamProtocol, UpstreamTlsConfig};
use crate::error::{ErrorKind, ProxyError};

/// Bytes reserved in the read buffer before each read of a response head.
pub(crate) const READ_SIZE: usize = 8 * 1024;

/// One HTTP/1.1 connection to a server, plain or TLS.
#[derive(Debug)]
pub struct Conn {
    io: UpstreamStream,
    /// The address it is connected to (a reload may change a server's address).
    pub address: Authority,
    /// [`PoolSettings::profile`] of the group that made it.
    pub profile: u64,
    /// The group's `pool.idle_timeout` when it was made.
    pub idle_timeout: Duration,
    /// True when it came from the pool (the server may have closed it
    /// while it was idle).
    pub reused: bool,
}

impl Conn {
    /// Connects to `address` (over TLS when `tls` is given, with the PROXY
    /// protocol header when the group sends one).
    ///
    /// # Errors
    /// The connect error (refused, unreachable, DNS), the TLS handshake
    /// error, or `TimedOut` after `settings.connect_timeout`.
    pub async fn connect(
        address: &Authority,
        resolved: Option<SocketAddr>,
        settings: &PoolSettings,
        tls: Option<&UpstreamTlsConfig>,
        client: Option<super::proxy_protocol::ClientAddrs>,
    ) -> io::Result<Conn> {
        let connector = Connector {
            timeout: settings.connect_timeout,
            tls,
            protocol: UpstreamProtocol::Http1,
            proxy: settings.proxy_protocol.zip(client),
        };
        let io = super::connect::open(address, resolved, connector).await?;
        Ok(Conn {
            io,
            address: address.clone(),
            profile: settings.profile,
            idle_timeout: settings.idle_timeout,
            reused: false,
        })
    }

    /// True when an idle connection can take a request: the server has not
    /// closed it and sent nothing unasked.
    ///
    /// `thorough`: one non-blocking `recv(MSG_PEEK)`, which sees a close
    /// even before the event loop has; over TLS, bytes waiting are read
    /// through the TLS layer, which takes session tickets and sees a
    /// `close_notify`. Otherwise (a request that can be replayed on a new
    /// connection, [`replayable`]), a plain connection is asked only
    /// whether the event loop saw it readable since its last read (no
    /// system call; nginx's idle upstream connections rely on their read
    /// events the same way), and peeked only then.
    pub fn is_usable(&mut self, thorough: bool) -> bool {
        let tcp = match &self.io {
            UpstreamStream::Plain(t) => {
                let mut cx = Context::from_waker(Waker::noop());
                if !thorough && t.poll_read_ready(&mut cx).is_pending() {
                    return true;
                }
                t
            }
            UpstreamStream::Tls(t) => t.get_ref().0,
        };
        let mut byte = [MaybeUninit::<u8>::uninit(); 1];
        match socket2::SockRef::from(tcp).peek(&mut byte) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
            Ok(n) if n > 0 && matches!(self.io, UpstreamStream::Tls(_)) => {
                let mut cx = Context::from_waker(Waker::noop());
                let mut one = [0u8; 1];
                let mut buf = ReadBuf::new(&mut one);
                matches!(
                    Pin::new(&mut self.io).poll_read(&mut cx, &mut buf),
                    Poll::Pending
                )
            }
            _ => false,
        }
    }

    /// The socket, for a protocol upgrade.
    pub fn into_io(self) -> UpstreamStream {
        self.io
    }
}

/// True for a request that a reused connection closed unanswered may send
/// again on a new one: idempotent (RFC 9110 §9.2.2) and without a body.
pub fn replayable(req: &Request<UpstreamBody>) -> bool {
    use http_body::Body as _;
    crate::error::is_idempotent(req.method())
        && req.body().is_end_stream()
        && !req.headers().contains_key(http::header::CONTENT_LENGTH)
}

/// Sends the request in `slot` on `conn` and reads the response head. A
/// request without a body stays in `slot` (only borrowed), so a failed
/// exchange gives it back whole; one with a body is the upload's once its
/// head is written.
///
/// # Errors
/// [`ErrorKind::Connect`] (stale when `conn` was reused: see
/// [`ProxyError::unsent`]) when the head could not be written, or when a
/// reused connection closed with no response byte to an idempotent
/// request without a body (the request is then in `slot` for a new
/// connection); [`ErrorKind::UpstreamReset`] when the server
/// closed or reset the connection before a complete head;
/// [`ErrorKind::UpstreamProtocol`] for a head that is not HTTP/1.x or too
/// large, and for a request body that failed (the client's fault is
/// recorded in its `BodySlot`).
pub async fn exchange(
    mut conn: Conn,
    slot: &mut Option<Request<UpstreamBody>>,
) -> Result<Response<Body>, ProxyError> {
    let Some(req) = slot.as_ref() else {
        return Err(ProxyError::new(ErrorKind::Internal));
    };
    let (head, framing) = encode::head(req);
    let head_request = req.method() == Method::HEAD;
    // The server closed a pooled connection as the request went out (its
    // FIN crossed the request): nothing of the request was processed, and
    // an idempotent one goes on a new connection, as browsers and Go's
    // transport retry a reused connection that gave no response byte.
    let replayable = conn.reused && replayable(req);
    let mut upload = if framing == encode::ReqFraming::None {
        let written = async {
            conn.io.write_all(&head).await?;
            conn.io.flush().await
        }
        .await;
        drop(head);
        if let Err(e) = written {
            return Err(ProxyError::unsent(conn.reused).caused_by(e));
        }
        // A request without a body stays in its slot: when the exchange
        // fails, it goes back whole (a retry needs no copy of its headers).
        None
    } else {
        // With a body, the head goes out with the body's first bytes; the
        // request is the upload's from here (a failed write is a reset).
        let Some(req) = slot.take() else {
            return Err(ProxyError::new(ErrorKind::Internal));
        };
        Some(Box::new(encode::Upload::new(
            head.freeze(),
            req.into_body(),
            framing,
        )))
    };
    let mut upload_failed = false;
    let mut buf = BytesMut::with_capacity(READ_SIZE);
    let head = poll_fn(|cx| loop {
        if let Some(up) = &mut upload {
            match up.poll(&mut conn.io, cx) {
                Poll::Ready(Ok(())) => upload = None,
                Poll::Ready(Err(encode::UploadError::Body(e))) => {
                    return Poll::Ready(Err(ProxyError::with_cause(
                        ErrorKind::UpstreamProtocol,
                        e,
                    )));
                }
                Poll::Ready(Err(e)) => {
                    // The server stopped reading (it may be answering
                    // already, a 413 say): its response still counts.
                    tracing::debug!(error = %e, "upstream request not sent whole");
                    upload = None;
                    upload_failed = true;
                }
                Poll::Pending => {}
            }
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(READ_SIZE);
        }
        let failed = match poll_read_buf(Pin::new(&mut conn.io), cx, &mut buf) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(0)) => Some(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before the response head",
            )),
            Poll::Ready(Ok(_)) => None,
            Poll::Ready(Err(e)) => Some(e),
        };
        if let Some(e) = failed {
            let closed = matches!(
                e.kind(),
                io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::BrokenPipe
            );
            if closed && replayable && buf.is_empty() {
                return Poll::Ready(Err(ProxyError::unsent(true).caused_by(e)));
            }
            return Poll::Ready(Err(read_error(e)));
        }
        // Parsed only when new bytes came (each parse starts over).
        match decode::head(&mut buf, head_request) {
            Ok(Some(head)) => return Poll::Ready(Ok(head)),
            Ok(None) => {}
            Err(e) => {
                return Poll::Ready(Err(ProxyError::with_cause(ErrorKind::UpstreamProtocol, e)))
            }
        }
    })
    .await?;
    let mut resp = Response::new(());
    *resp.status_mut() = head.status;
    *resp.version_mut() = head.version;
    let keep_alive = head.keep_alive && !upload_failed;
    let body = Body::new(conn, buf, head.framing, upload, keep_alive);
    *resp.headers_mut() = head.headers;
    Ok(resp.map(|()| body))
}

/// Longest wait to send the rest of a request body after the response
/// ended, before the connection can go back to the pool.
const FINISH_UPLOAD: Duration = Duration::from_secs(5);

/// Gives `conn` back to `state`'s pool once `upload` (the rest of a request
/// body the server answered before reading) is sent, in a task of its own
/// so the response's end is not held up; at most [`FINISH_UPLOAD`], then
/// the connection is closed. hyper's client does the same: a connection is
/// reusable when both the request and the response are complete.
pub fn finish_upload(
    mut conn: Conn,
    upload: Option<Box<encode::Upload>>,
    state: &std::sync::Arc<super::ServerState>,
    max_idle: usize,
) {
    let Some(mut upload) = upload else {
        super::pool::checkin(conn, state, max_idle);
        return;
    };
    if max_idle == 0 || tokio::runtime::Handle::try_current().is_err() {
        return;
    }
    let state = std::sync::Arc::downgrade(state);
    tokio::spawn(async move {
        let sent =
            tokio::time::timeout(FINISH_UPLOAD, poll_fn(|cx| upload.poll(&mut conn.io, cx))).await;
        if let (Ok(Ok(())), Some(state)) = (sent, state.upgrade()) {
            if conn.is_usable(true) {
                super::pool::checkin(conn, &state, max_idle);
            }
        }
    });
}

/// The error of a failed read: a reset or close is [`ErrorKind::UpstreamReset`]
/// (retryable for an idempotent request), anything else (TLS) a protocol error.
fn read_error(e: io::Error) -> ProxyError {
    use io::ErrorKind as K;
    let kind = match e.kind() {
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
            ErrorKind::UpstreamReset
        }
        _ => ErrorKind::UpstreamProtocol,
    };
    ProxyError::with_cause(kind, e)
}
