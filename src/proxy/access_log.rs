//! The access log: one line per request, target `weir::access`, written when
//! the response body ends (so bytes and duration are the real ones).
//!
//! Turn it off with `RUST_LOG=info,weir::access=off`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{Method, Uri};

/// What the access log line of one request says.
#[derive(Debug)]
pub struct AccessRecord {
    /// When the request arrived.
    pub start: Instant,
    /// Client (downstream peer) address.
    pub client: SocketAddr,
    /// Request method.
    pub method: Method,
    /// Request URI as received.
    pub uri: Uri,
    /// Response status sent.
    pub status: u16,
    /// Route name, if one matched.
    pub route: Option<Arc<str>>,
    /// Group name, if a route matched.
    pub group: Option<Arc<str>>,
    /// Server id, if one was picked.
    pub server: Option<Arc<str>>,
    /// Response body bytes sent.
    pub bytes: u64,
    /// True when the body did not end normally (client went away, upstream reset).
    pub aborted: bool,
}

/// True when access lines would be written (checked once per request).
pub fn enabled() -> bool {
    tracing::enabled!(target: "weir::access", tracing::Level::INFO)
}

impl AccessRecord {
    /// Writes the line.
    pub fn emit(&self) {
        let duration_ms = self.start.elapsed().as_secs_f64() * 1000.0;
        tracing::info!(
            target: "weir::access",
            client = %self.client,
            method = %self.method,
            path = %self.uri.path_and_query().map_or("/", |p| p.as_str()),
            status = self.status,
            route = self.route.as_deref().unwrap_or("-"),
            group = self.group.as_deref().unwrap_or("-"),
            server = self.server.as_deref().unwrap_or("-"),
            duration_ms = format_args!("{duration_ms:.3}"),
            bytes = self.bytes,
            aborted = self.aborted,
        );
    }
}
