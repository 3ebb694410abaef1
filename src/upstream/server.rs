//! A server (endpoint) of a group and its live state.
//!
//! The [`Server`] is part of the immutable group snapshot; its
//! [`ServerState`] holds live counters in atomics, lives outside the snapshot
//! and is carried across config reloads for servers whose id is unchanged
//! (pingora lost its counters on rebuild, its issue #144; we must not).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use http::uri::{Authority, Scheme};
use http::Uri;

use crate::config::ServerConfig;
use crate::health::PassiveState;
use crate::metrics::ServerStats;

/// Live, shared counters of one server. Every field is an atomic: updated on
/// the request path without locks.
#[derive(Debug)]
pub struct ServerState {
    in_flight: AtomicU64,
    requests: AtomicU64,
    healthy: AtomicBool,
    drained: AtomicBool,
    /// Response and error counters (exported on `/metrics`).
    pub stats: ServerStats,
    /// Passive-health counters and ejection deadline (see `health::passive`).
    pub passive: PassiveState,
}

impl Default for ServerState {
    fn default() -> Self {
        ServerState {
            in_flight: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
            drained: AtomicBool::new(false),
            stats: ServerStats::default(),
            passive: PassiveState::default(),
        }
    }
}

impl ServerState {
    /// Requests sent to this server whose response has not ended yet.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Requests sent to this server since it was first configured.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// False when active health checks marked the server down (passive
    /// ejection is separate: see `ServerGroup::is_usable`).
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Marks the server up or down; returns the previous value.
    pub fn set_healthy(&self, healthy: bool) -> bool {
        self.healthy.swap(healthy, Ordering::Relaxed)
    }

    /// True when an operator drained the server by hand (admin API): it gets
    /// no new requests, in-flight ones finish.
    pub fn is_drained(&self) -> bool {
        self.drained.load(Ordering::Relaxed)
    }

    /// Drains (`true`) or re-enables (`false`) the server; returns the previous value.
    pub fn set_drained(&self, drained: bool) -> bool {
        self.drained.swap(drained, Ordering::Relaxed)
    }

    /// Counts a request to this server; the in-flight count drops when the
    /// returned guard is dropped (when the response body ends or is abandoned).
    pub fn start_request(self: &Arc<Self>) -> InFlightGuard {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        InFlightGuard {
            state: Arc::clone(self),
        }
    }
}

/// Decrements its server's in-flight count when dropped.
#[derive(Debug)]
pub struct InFlightGuard {
    state: Arc<ServerState>,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.state.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One server of a group snapshot.
#[derive(Debug)]
pub struct Server {
    /// Stable id (cookies, metrics, state across reloads).
    pub id: Arc<str>,
    /// `host:port` to connect to.
    pub address: Authority,
    /// Relative weight (1..=1000).
    pub weight: u32,
    /// Live counters, shared with earlier and later snapshots.
    pub state: Arc<ServerState>,
}

impl Server {
    /// A server of `config` with live `state`.
    pub fn new(config: &ServerConfig, state: Arc<ServerState>) -> Self {
        Server {
            id: config.id.clone(),
            address: config.address.clone(),
            weight: config.weight,
            state,
        }
    }

    /// The absolute URI for `path_and_query` on this server (the upstream
    /// client needs scheme and authority to pick its pooled connection).
    pub fn uri(
        &self,
        path_and_query: Option<&http::uri::PathAndQuery>,
    ) -> Result<Uri, http::Error> {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = Some(self.address.clone());
        parts.path_and_query = Some(
            path_and_query
                .cloned()
                .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
        );
        Ok(Uri::from_parts(parts)?)
    }
}
