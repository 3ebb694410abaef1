//! Why weir refused a request itself ([`Reason`]: fixed status, `reason`
//! label) and the per-listener counters behind
//! `weir_downstream_rejected_total{listener,reason}` ([`RejectStats`]). The
//! answers are built, counted and logged in `proxy::reject`.

use std::sync::atomic::{AtomicU64, Ordering};

use http::StatusCode;

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
    /// Every reason, in the order of [`RejectStats`]'s slots.
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

    fn index(self) -> usize {
        Reason::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// Rejected requests of one listener, by [`Reason`] (one atomic each; kept in
/// the listener's `ListenerStats`, so the count survives reloads).
#[derive(Debug, Default)]
pub struct RejectStats([AtomicU64; Reason::ALL.len()]);

impl RejectStats {
    /// Counts one rejection.
    pub fn inc(&self, reason: Reason) {
        self.0[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// The count of `reason`.
    pub fn get(&self, reason: Reason) -> u64 {
        self.0[reason.index()].load(Ordering::Relaxed)
    }

    /// `(reason, count)` for every reason.
    pub fn all(&self) -> impl Iterator<Item = (Reason, u64)> + '_ {
        Reason::ALL.iter().map(|r| (*r, self.get(*r)))
    }
}
