//! Errors on the request path and the HTTP status each maps to.
//!
//! Follows pingora's `pingora-error` and sozu's `RouterError`: an error carries
//! which side caused it ([`ErrorSource`]), whether another server may be tried
//! ([`ProxyError::retryable`]), and its underlying cause.

use std::fmt;

use http::StatusCode;

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
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Which side caused this kind of error.
    pub fn source(self) -> ErrorSource {
        match self {
            ErrorKind::NoRoute | ErrorKind::BadRequest => ErrorSource::Downstream,
            ErrorKind::NoServer
            | ErrorKind::Connect
            | ErrorKind::ResponseTimeout
            | ErrorKind::UpstreamReset
            | ErrorKind::UpstreamProtocol => ErrorSource::Upstream,
            ErrorKind::Internal => ErrorSource::Internal,
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
        }
    }
}

/// An error on the request path: its kind, its cause, and whether the request
/// may be sent to another server.
#[derive(Debug)]
pub struct ProxyError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// True when nothing of the request reached the server, so another server may be tried.
    pub retryable: bool,
    /// The underlying error, if any.
    pub cause: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl ProxyError {
    /// An error of `kind` with no underlying cause.
    pub fn new(kind: ErrorKind) -> Self {
        ProxyError {
            kind,
            retryable: false,
            cause: None,
        }
    }

    /// An error of `kind` caused by `cause`.
    pub fn with_cause(
        kind: ErrorKind,
        cause: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        ProxyError {
            kind,
            retryable: false,
            cause: Some(cause.into()),
        }
    }

    /// Marks the error as safe to retry on another server.
    pub fn retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// The HTTP status the client receives.
    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.as_str())?;
        if let Some(cause) = &self.cause {
            write!(f, ": {cause}")?;
            // hyper wraps the interesting error (e.g. "Connection refused") in its source chain.
            let mut source = cause.source();
            while let Some(s) = source {
                write!(f, ": {s}")?;
                source = s.source();
            }
        }
        Ok(())
    }
}

impl std::error::Error for ProxyError {}
