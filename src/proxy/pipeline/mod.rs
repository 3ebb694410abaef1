//! The steps of one proxied request, each returning `Result<_, ProxyError>`:
//!
//! 1. [`prepare`]: route the request, then the route's checks before anything
//!    goes upstream (traffic protection, the path rewrite, the response cache),
//!    and the upstream request's head;
//! 2. [`attempt`]: pick a server and send, again on another server while the
//!    error says the request may be retried ([`crate::error::ProxyError::may_retry`]);
//! 3. [`finish`]: the upstream (or cached) response, with the per-client headers;
//! 4. [`fail`]: the one place an error becomes the response, the route's
//!    metrics and the log line.
//!
//! `proxy::service::proxy` runs them in this order.

pub(super) mod attempt;
pub(super) mod fail;
pub(super) mod finish;
pub(super) mod prepare;

use std::sync::Arc;
use std::time::Instant;

use crate::metrics::RouteStats;
use crate::route::Route;
use crate::upstream::ServerGroup;

/// The route and group a request was sent to: from here on every answer,
/// error or not, is counted in the route's and the group's metrics.
pub(super) struct Scope<'s> {
    /// The route's index in the route table.
    pub index: usize,
    /// The route.
    pub route: &'s Route,
    /// The route's group.
    pub group: &'s Arc<ServerGroup>,
    /// The route's counters.
    pub stats: &'s RouteStats,
    /// When the request arrived.
    pub start: Instant,
}

impl<'s> Scope<'s> {
    #[inline]
    /// Counts an answer with `status` in the route's requests and its
    /// duration in the route's and the group's histograms.
    pub fn observe(&self, status: u16) {
        let elapsed = self.start.elapsed();
        self.stats.requests.inc(status);
        self.stats.duration.observe(elapsed);
        self.group.stats.duration.observe(elapsed);
    }

    /// The route's content rules.
    pub fn content(&self) -> Option<&'s crate::content::RouteContent> {
        self.route.content.as_deref()
    }
}
