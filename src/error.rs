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
