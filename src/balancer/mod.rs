//! Balancing algorithms: which server of a group gets the next request.
//!
//! Each algorithm lives in its own file and implements [`Balancer`]. The
//! algorithm only orders candidates; health state and retry exclusion are
//! decided outside it and passed in as the `usable` predicate, and every walk
//! is bounded by the number of servers (pingora's `BackendIter`). A pick
//! allocates nothing and takes no lock shared across connections.

pub mod round_robin;

use std::fmt::Debug;
use std::net::IpAddr;

use http::{HeaderMap, Uri};

use crate::config::Algorithm;
use crate::upstream::Server;

/// What a balancer may look at in the request.
#[derive(Debug, Clone, Copy)]
pub struct PickContext<'a> {
    /// The client (downstream peer) address.
    pub client_ip: IpAddr,
    /// The request URI.
    pub uri: &'a Uri,
    /// The request headers.
    pub headers: &'a HeaderMap,
}

/// A balancing algorithm over one group snapshot's servers.
pub trait Balancer: Send + Sync + Debug {
    /// The index of the server for the next request, among the indexes for
    /// which `usable` is true; `None` when none is usable. The walk is
    /// bounded by `servers.len()` calls of `usable` (plus a constant).
    fn pick(
        &self,
        servers: &[Server],
        ctx: &PickContext<'_>,
        usable: &dyn Fn(usize) -> bool,
    ) -> Option<usize>;
}

/// Builds the balancer of `algorithm` for `servers`.
pub fn build(algorithm: Algorithm, servers: &[Server]) -> Box<dyn Balancer> {
    match algorithm {
        Algorithm::RoundRobin => Box::new(round_robin::SmoothWeighted::new(servers)),
    }
}

/// The first usable index scanning from `start` (wrapping), at most `n` probes.
pub(crate) fn scan_from(start: usize, n: usize, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
    (0..n).map(|k| (start + k) % n).find(|&i| usable(i))
}
