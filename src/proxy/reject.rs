//! Requests weir refuses itself (400, 405, 408, 413, 431), by reason
//! ([`Reason`], in `crate::error`): the counter behind
//! `weir_downstream_rejected_total{listener,reason}`, and the line of a
//! rejection below the service. The service's answers to them are built,
//! counted and logged in `proxy::pipeline::fail`.
//!
//! None of these ever reaches a server, or counts against one.

pub use crate::metrics::reject::{Reason, RejectStats};

/// Counts and logs a rejection that happened below the service (the HTTP/1
/// parser, the head timeout): no access record exists for it, so the line is
/// written here, on the access-log target.
pub fn connection_level(stats: &RejectStats, listener: &str, reason: Reason) {
    stats.inc(reason);
    if super::access_log::enabled() {
        tracing::info!(
            target: "weir::access",
            listener = %listener,
            status = reason.status().as_u16(),
            rejected = reason.as_str(),
            "request rejected before routing"
        );
    }
}
