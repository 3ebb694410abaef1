//! A tiny demo upstream ("origin") server for weir examples, benchmarks and
//! manual experiments.
//!
//! Include it from an example with:
//!
//! ```ignore
//! #[path = "support/upstream_server.rs"]
//! mod upstream_server;
//! ```
//!
//! It speaks HTTP/1.1 and cleartext HTTP/2 with prior knowledge (h2c) on the
//! same port and answers every request with a JSON echo:
//!
//! ```json
//! {"server": "NAME", "version": "HTTP/1.1", "method": "GET", "path": "/a",
//!  "query": "x=1", "headers": {"host": "..."}, "body_bytes": 0}
//! ```
//!
//! `query` is the raw (not percent-decoded) query string, or `null` when the
//! request URI has none. Repeated headers are joined with `", "`.
//!
//! Special behaviour:
//!
//! * `GET /healthz` (or `HEAD`) → `200 ok` (text/plain), regardless of query.
//! * `?delay_ms=N` → wait `N` ms (capped at 60 000) before answering.
//! * `?status=N` → answer with status `N` (must be within `100..=599`, else
//!   400). 1xx statuses also get a 400: they cannot be a final response
//!   (hyper would turn them into a 500 on HTTP/1.1 and reset the stream on
//!   HTTP/2). 204 and 304 are sent with an empty body.
//! * `?bytes=N` → instead of JSON, stream `N` bytes of `'x'` (capped at 1 GiB)
//!   in 64 KiB chunks with `content-type: application/octet-stream` and an
//!   exact `content-length`.
//!
//! Parameters combine (`?delay_ms=100&status=503&bytes=10`); unknown
//! parameters are ignored; for repeated parameters the first one wins.
//! An unparsable number is a `400` with a JSON `{"error": ...}` body.
//! Request bodies are always read to the end and discarded; their size is
//! reported as `body_bytes`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// Upper bound for `?delay_ms=`.
const MAX_DELAY_MS: u64 = 60_000;
/// Upper bound for `?bytes=`.
const MAX_BYTES: u64 = 1 << 30;
/// Chunk size used when streaming `?bytes=` responses.
const CHUNK_SIZE: usize = 64 * 1024;
/// Shared payload for `?bytes=` responses (sliced, never copied).
static XS: [u8; CHUNK_SIZE] = [b'x'; CHUNK_SIZE];

/// Bind `addr` (use port 0 for an ephemeral port), spawn [`serve`] on a tokio
/// task and return the address actually bound.
///
/// The server runs until the tokio runtime shuts down.
#[allow(dead_code)]
pub async fn bind(addr: SocketAddr, name: &str) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(serve(listener, name.to_owned()));
    Ok(local)
}

/// Accept connections on `listener` forever, serving each one (HTTP/1.1 or
/// h2c) on its own task. `name` is reported as `"server"` in every JSON reply.
///
/// Accept errors (e.g. running out of file descriptors) are logged and
/// retried after a short pause; this function never returns.
#[allow(dead_code)]
pub async fn serve(listener: TcpListener, name: String) {
    let name: Arc<str> = name.into();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);

    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(err) => {
                tracing::warn!(%err, "upstream: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let name = Arc::clone(&name);
        let builder = Arc::clone(&builder);
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, Arc::clone(&name)));
            if let Err(err) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, %err, "upstream: connection ended with error");
            }
        });
    }
}

/// Response body used by the demo server: `remaining` bytes produced by
/// repeating (a prefix of) `chunk`. A plain fixed body is simply
/// `remaining == chunk.len()`.
struct DemoBody {
    chunk: Bytes,
    remaining: u64,
}

impl DemoBody {
    fn full(data: impl Into<Bytes>) -> Self {
        let chunk = data.into();
        let remaining = chunk.len() as u64;
        Self { chunk, remaining }
    }

    fn empty() -> Self {
        Self::full(Bytes::new())
    }

    fn repeat_x(len: u64) -> Self {
        Self {
            chunk: Bytes::from_static(&XS),
            remaining: len,
        }
    }
}

impl Body for DemoBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(self.chunk.len());
        self.remaining -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// Parsed special query parameters.
#[derive(Default)]
struct Params {
    delay_ms: Option<u64>,
    status: Option<StatusCode>,
    bytes: Option<u64>,
}

impl Params {
    fn parse(query: Option<&str>) -> Result<Self, String> {
        let mut params = Params::default();
        for pair in query.unwrap_or("").split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "delay_ms" if params.delay_ms.is_none() => {
                    params.delay_ms = Some(parse_u64(key, value)?.min(MAX_DELAY_MS));
                }
                "status" if params.status.is_none() => {
                    let code = parse_u64(key, value)?;
                    let status = u16::try_from(code)
                        .ok()
                        .filter(|c| (100..=599).contains(c))
                        .and_then(|c| StatusCode::from_u16(c).ok())
                        .ok_or_else(|| format!("status must be within 100..=599, got {code}"))?;
                    if status.is_informational() {
                        // hyper cannot send a 1xx as the final response (HTTP/1.1 turns
                        // it into a 500 and drops the connection, HTTP/2 resets the
                        // stream), so reject it up front for a consistent answer.
                        return Err(format!(
                            "status {code} is informational (1xx) and cannot be a final response"
                        ));
                    }
                    params.status = Some(status);
                }
                "bytes" if params.bytes.is_none() => {
                    params.bytes = Some(parse_u64(key, value)?.min(MAX_BYTES));
                }
                _ => {}
            }
        }
        Ok(params)
    }
}

fn parse_u64(key: &str, value: &str) -> Result<u64, String> {
    value
        .parse::<u64>()
        .map_err(|_| format!("{key} must be a non-negative integer, got {value:?}"))
}

/// The request handler. Never fails: every problem becomes a 4xx/5xx.
async fn handle(req: Request<Incoming>, name: Arc<str>) -> Result<Response<DemoBody>, Infallible> {
    let (parts, body) = req.into_parts();

    if matches!(parts.method, Method::GET | Method::HEAD) && parts.uri.path() == "/healthz" {
        return Ok(text(StatusCode::OK, "ok"));
    }

    // Always drain the request body so HTTP/1.1 connections stay reusable.
    let mut body = body;
    let mut body_bytes: u64 = 0;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    body_bytes += data.len() as u64;
                }
            }
            Err(err) => {
                return Ok(error(
                    StatusCode::BAD_REQUEST,
                    &format!("reading request body: {err}"),
                ));
            }
        }
    }

    let params = match Params::parse(parts.uri.query()) {
        Ok(params) => params,
        Err(msg) => return Ok(error(StatusCode::BAD_REQUEST, &msg)),
    };

    if let Some(ms) = params.delay_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    let status = params.status.unwrap_or(StatusCode::OK);
    if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        let mut resp = Response::new(DemoBody::empty());
        *resp.status_mut() = status;
        return Ok(resp);
    }

    if let Some(len) = params.bytes {
        let mut resp = Response::new(DemoBody::repeat_x(len));
        *resp.status_mut() = status;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        return Ok(resp);
    }

    let mut headers = serde_json::Map::new();
    for (key, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        match headers.get_mut(key.as_str()) {
            Some(serde_json::Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(&value);
            }
            _ => {
                headers.insert(key.as_str().to_owned(), value.into_owned().into());
            }
        }
    }
    let echo = serde_json::json!({
        "server": &*name,
        "version": format!("{:?}", parts.version),
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers,
        "body_bytes": body_bytes,
    });
    Ok(json(status, &echo))
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<DemoBody> {
    // Serializing a `Value` cannot fail; fall back to an empty object anyway.
    let mut body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    body.push(b'\n');
    let mut resp = Response::new(DemoBody::full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn error(status: StatusCode, msg: &str) -> Response<DemoBody> {
    json(status, &serde_json::json!({ "error": msg }))
}

fn text(status: StatusCode, msg: &'static str) -> Response<DemoBody> {
    let mut resp = Response::new(DemoBody::full(Bytes::from_static(msg.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
