//! Errors on the request path and the HTTP status each maps to.
//!
//! Follows pingora's `pingora-error` and sozu's `RouterError`: an error carries
//! what went wrong ([`ErrorKind`]), which side caused it ([`ErrorSource`]),
//! whether the request may be sent again ([`Retry`], asked through
//! [`ProxyError::may_retry`]), and its underlying cause. The request pipeline
//! (`proxy::service`) turns it into the response, the metric and the log line
//! in one place.

use std::fmt;

use http::{HeaderMap, Method, StatusCode};

/// Which side of the proxy an error came from (used in logs and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    /// The client (downstream): bad request, no route.
    Downstream,
    /// The server (upstream): refused connection, timeout, reset.
    Upstream,
    /// weir itself.
    Internal,
}

/// What went wrong; decides the status code sent to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No route matched the request → 404.
    NoRoute,
    /// The request cannot be proxied as sent (bad host, bad URI) → 400.
    BadRequest,
    /// The group has no usable server (all down or excluded) → 503.
    NoServer,
    /// Connecting to the server failed (refused, unreachable, connect timeout) → 502.
    Connect,
    /// The server did not send response headers within `timeouts.response` → 504.
    ResponseTimeout,
    /// The server closed or reset the connection before any byte of the
    /// response → 502 (an idempotent request may be retried on another server).
    UpstreamReset,
    /// The server sent an invalid response, or failed in another way → 502.
    UpstreamProtocol,
    /// A bug or resource failure inside weir → 500.
    Internal,
    /// weir refused the request itself (malformed, disallowed, too large
    /// a head, a stalled body): the status of the [`Reason`].
    Rejected(Reason),
    /// No route matched and the request's bearer token failed
    /// verification → 401.
    Unauthorized,
    /// A route's traffic protection refused the request: an IP rule (403),
    /// `max_request_body` (413), a rate limit (429) or an unavailable rate
    /// limit store (503).
    Limited(StatusCode),
    /// The client closed the connection while sending the body → 400 (logged as 499).
    ClientGone,
    /// The group's queue was full → 503.
    QueueFull,
    /// The request waited in the group's queue longer than its timeout → 503.
    QueueTimeout,
    /// The route's path rewrite failed → 500.
    Rewrite,
}

impl ErrorKind {
    /// The HTTP status the client receives for this error.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::NoRoute => StatusCode::NOT_FOUND,
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::NoServer => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Connect | ErrorKind::UpstreamReset | ErrorKind::UpstreamProtocol => {
                StatusCode::BAD_GATEWAY
            }
            ErrorKind::ResponseTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::Internal | ErrorKind::Rewrite => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::Rejected(reason) => reason.status(),
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::Limited(status) => status,
            ErrorKind::ClientGone => StatusCode::BAD_REQUEST,
            ErrorKind::QueueFull | ErrorKind::QueueTimeout => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The status logged and counted for this error: [`ErrorKind::status`],
    /// except 499 (nginx's code) for a client that went away.
    pub fn logged_status(self) -> StatusCode {
        match self {
            ErrorKind::ClientGone => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            kind => kind.status(),
        }
    }

    /// Which side caused this kind of error.
    pub fn source(self) -> ErrorSource {
        match self {
            ErrorKind::NoRoute
            | ErrorKind::BadRequest
            | ErrorKind::Rejected(_)
            | ErrorKind::Unauthorized
            | ErrorKind::Limited(_)
            | ErrorKind::ClientGone => ErrorSource::Downstream,
            ErrorKind::NoServer
            | ErrorKind::Connect
            | ErrorKind::ResponseTimeout
            | ErrorKind::UpstreamReset
            | ErrorKind::UpstreamProtocol
            | ErrorKind::QueueFull
            | ErrorKind::QueueTimeout => ErrorSource::Upstream,
            ErrorKind::Internal | ErrorKind::Rewrite => ErrorSource::Internal,
        }
    }

    /// A short, stable, lowercase name for logs ("connect", "response_timeout", ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NoRoute => "no_route",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::NoServer => "no_server",
            ErrorKind::Connect => "connect",
            ErrorKind::ResponseTimeout => "response_timeout",
            ErrorKind::UpstreamReset => "upstream_reset",
            ErrorKind::UpstreamProtocol => "upstream_protocol",
            ErrorKind::Internal => "internal",
            ErrorKind::Rejected(reason) => reason.as_str(),
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Limited(_) => "limited",
            ErrorKind::ClientGone => "client_gone",
            ErrorKind::QueueFull => "queue_full",
            ErrorKind::QueueTimeout => "queue_timeout",
            ErrorKind::Rewrite => "rewrite",
        }
    }

    /// Whether, and where, a request that failed this way may be sent
    /// again: a connect failure reached no server ([`Retry::Unsent`]); a
    /// reset before any byte of the response is safe to repeat for an
    /// idempotent method ([`Retry::IfIdempotent`]); nothing else is.
    fn retry(self) -> Retry {
        match self {
            ErrorKind::Connect => Retry::Unsent,
            ErrorKind::UpstreamReset => Retry::IfIdempotent,
            _ => Retry::Never,
        }
    }
}

/// Whether a failed request may be sent again. Decided where the failure
/// happened (it knows what reached the server); the retry loops ask it
/// through [`ProxyError::may_retry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Not again: the server may have acted on it.
    Never,
    /// It was written, but the server closed or reset the connection before
    /// any byte of the response: an idempotent method may go to another server.
    IfIdempotent,
    /// Nothing reached the server (the connection could not be made):
    /// another server may take it.
    Unsent,
    /// A pooled (reused) connection turned out closed before the request
    /// was written (the server closed it while idle): the request goes on
    /// the server's next connection, and this is not the server's failure.
    Stale,
}

/// Idempotent methods (RFC 9110 §9.2.2): GET, HEAD, OPTIONS, PUT, DELETE,
/// TRACE. Only these are re-sent after the upstream closed the connection
/// without answering (nginx `proxy_next_upstream` does the same; POST and
/// PATCH are never re-sent once bytes went out).
pub fn is_idempotent(method: &Method) -> bool {
    use http::Method as M;
    [M::GET, M::HEAD, M::OPTIONS, M::PUT, M::DELETE, M::TRACE].contains(method)
}

/// Why weir refused a request. Each reason has a fixed status and a stable
/// lowercase name (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// HTTP/1.1 request without `Host` (RFC 9112 §3.2) → 400.
    MissingHost,
    /// More than one `Host` field (RFC 9112 §3.2) → 400.
    DuplicateHost,
    /// A `Host` or authority with userinfo, spaces or other invalid
    /// characters (RFC 9112 §3.2, RFC 3986 §3.2) → 400.
    InvalidHost,
    /// HTTP/2 `host` differing from `:authority` (RFC 9113 §8.3.1) → 400.
    HostMismatch,
    /// A path whose `..` segments climb above `/` → 400 (as nginx).
    PathAboveRoot,
    /// A request the HTTP/1 parser refused: bad syntax, both
    /// `Transfer-Encoding` and `Content-Length` (RFC 9112 §6.3, §11.2) → 400.
    Malformed,
    /// A request body with broken framing (bad chunk size, RFC 9112 §7.1) → 400.
    MalformedBody,
    /// `CONNECT` (weir is not a forward proxy) → 405.
    Connect,
    /// `TRACE` on a route that does not list it in `methods` (RFC 9110
    /// §9.3.8; nginx answers 405) → 405.
    Trace,
    /// The request head did not arrive within `request_header_timeout`
    /// (slowloris) → 408 (the connection closes).
    HeaderTimeout,
    /// The request body stalled longer than `client_body_timeout` → 408.
    BodyTimeout,
    /// More header fields than `max_headers` → 431 (RFC 6585 §5).
    TooManyHeaders,
    /// A header section larger than `max_header_bytes` → 431.
    HeadersTooLarge,
    /// A request body larger than the route allows → 413 (for the body
    /// limits of issue 15; weir itself does not produce it yet).
    BodyTooLarge,
}

impl Reason {
    /// Every reason, in the order of `proxy::reject::RejectStats`'s slots.
    pub const ALL: [Reason; 14] = [
        Reason::MissingHost,
        Reason::DuplicateHost,
        Reason::InvalidHost,
        Reason::HostMismatch,
        Reason::PathAboveRoot,
        Reason::Malformed,
        Reason::MalformedBody,
        Reason::Connect,
        Reason::Trace,
        Reason::HeaderTimeout,
        Reason::BodyTimeout,
        Reason::TooManyHeaders,
        Reason::HeadersTooLarge,
        Reason::BodyTooLarge,
    ];

    /// The status the client receives.
    pub fn status(self) -> StatusCode {
        match self {
            Reason::Connect | Reason::Trace => StatusCode::METHOD_NOT_ALLOWED,
            Reason::HeaderTimeout | Reason::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Reason::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Reason::TooManyHeaders | Reason::HeadersTooLarge => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The `reason` label: short, stable, lowercase.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MissingHost => "missing_host",
            Reason::DuplicateHost => "duplicate_host",
            Reason::InvalidHost => "invalid_host",
            Reason::HostMismatch => "host_mismatch",
            Reason::PathAboveRoot => "path_above_root",
            Reason::Malformed => "malformed",
            Reason::MalformedBody => "malformed_body",
            Reason::Connect => "connect",
            Reason::Trace => "trace",
            Reason::HeaderTimeout => "header_timeout",
            Reason::BodyTimeout => "body_timeout",
            Reason::TooManyHeaders => "too_many_headers",
            Reason::HeadersTooLarge => "headers_too_large",
            Reason::BodyTooLarge => "body_too_large",
        }
    }

    /// The position of this reason in [`Reason::ALL`] (a counter slot).
    pub(crate) fn index(self) -> usize {
        Reason::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// An error on the request path: its kind, its cause, and whether the request
/// may be sent again.
#[derive(Debug)]
pub struct ProxyError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// Whether the request may be sent again (by default from the kind).
    pub retry: Retry,
    /// The underlying error, if any.
    pub cause: Option<Box<dyn std::error::Error + Send + Sync>>,
    /// Headers for weir's error response (a 429's `Retry-After` and
    /// `RateLimit` fields); empty, and not allocated, for most errors.
    pub headers: HeaderMap,
}

impl ProxyError {
    /// An error of `kind` with no underlying cause.
    pub fn new(kind: ErrorKind) -> Self {
        ProxyError {
            kind,
            retry: kind.retry(),
            cause: None,
            headers: HeaderMap::new(),
        }
    }

    /// An error of `kind` caused by `cause`.
    pub fn with_cause(
        kind: ErrorKind,
        cause: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        ProxyError {
            cause: Some(cause.into()),
            ..ProxyError::new(kind)
        }
    }

    /// A request that was never written: on a `reused` (pooled) connection
    /// the server closed it while idle ([`Retry::Stale`]); on a new one the
    /// connection could not be made ([`ErrorKind::Connect`], [`Retry::Unsent`]).
    pub fn unsent(reused: bool) -> Self {
        let mut e = ProxyError::new(ErrorKind::Connect);
        if reused {
            e.retry = Retry::Stale;
        }
        e
    }

    /// The error with `cause` as its underlying error.
    pub fn caused_by(mut self, cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        self.cause = Some(cause.into());
        self
    }

    /// Whether a request with `method` that failed this way may be sent
    /// again (the retry budget and the body are the caller's to check).
    pub fn may_retry(&self, method: &Method) -> bool {
        match self.retry {
            Retry::Never => false,
            Retry::IfIdempotent => is_idempotent(method),
            Retry::Unsent | Retry::Stale => true,
        }
    }

    /// Whether the failure was a closed pooled connection that the same
    /// server's next connection takes over ([`Retry::Stale`]).
    pub fn is_stale(&self) -> bool {
        self.retry == Retry::Stale
    }

    /// Which side caused the error.
    pub fn source(&self) -> ErrorSource {
        self.kind.source()
    }

    /// The HTTP status the client receives.
    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }
}

impl From<ErrorKind> for ProxyError {
    fn from(kind: ErrorKind) -> Self {
        ProxyError::new(kind)
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.as_str())?;
        if let Some(cause) = &self.cause {
            write!(f, ": {}", Chain(&**cause))?;
        }
        Ok(())
    }
}

impl std::error::Error for ProxyError {}

/// `e` and the errors of its [`source`](std::error::Error::source) chain,
/// outermost first: the one walk of an error chain in weir (telling an
/// error by a cause deep inside hyper's, or printing the chain with
/// [`Chain`]).
pub fn chain<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |e| e.source())
}

/// Displays an error and every error of its source chain, joined by `": "`
/// (hyper wraps the interesting error, e.g. "Connection refused", in its
/// source chain).
#[derive(Debug, Clone, Copy)]
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in chain(self.0).enumerate() {
            if i > 0 {
                f.write_str(": ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod chain_tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("client error (Connect)")
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn the_chain_is_joined_outermost_first() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let outer = Outer(refused);
        assert_eq!(chain(&outer).count(), 2);
        assert_eq!(Chain(&outer).to_string(), "client error (Connect): refused");
        let e = ProxyError::with_cause(ErrorKind::Connect, outer);
        let kind = ErrorKind::Connect.as_str();
        assert_eq!(
            e.to_string(),
            format!("{kind}: client error (Connect): refused")
        );
    }
}
