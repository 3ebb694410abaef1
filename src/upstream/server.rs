//! A server (endpoint) of a group and its live state.
//!
//! The [`Server`] is part of the immutable group snapshot; its
//! [`ServerState`] holds live counters in atomics, lives outside the snapshot
//! and is carried across config reloads for servers whose id is unchanged
//! (pingora lost its counters on rebuild, its issue #144; we must not).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::uri::Authority;
use http::Uri;

use crossbeam_utils::CachePadded;

use super::health::passive::PassiveState;
use crate::clock::monotonic_nanos;
use crate::config::ServerConfig;
use crate::metrics::{Counter, ServerStats};
use crate::shard::Sharded;

/// `ewma_bits` value meaning "no response-time sample yet" (a NaN).
const NO_SAMPLE: u64 = u64::MAX;

/// One worker's peak-EWMA estimate of a server.
#[derive(Debug)]
struct Ewma {
    /// In nanoseconds, as `f64` bits; [`NO_SAMPLE`] before the first sample.
    bits: AtomicU64,
    /// [`monotonic_nanos`] of the last update.
    stamp: AtomicU64,
}

impl Default for Ewma {
    fn default() -> Self {
        Ewma {
            bits: AtomicU64::new(NO_SAMPLE),
            stamp: AtomicU64::new(0),
        }
    }
}

impl Ewma {
    fn at(&self, now_ns: u64, decay_ns: f64) -> Option<f64> {
        let bits = self.bits.load(Ordering::Relaxed);
        if bits == NO_SAMPLE {
            return None;
        }
        let stamp = self.stamp.load(Ordering::Relaxed);
        let elapsed = now_ns.saturating_sub(stamp) as f64;
        let v = f64::from_bits(bits);
        if decay_ns > 0.0 {
            Some(v * (-elapsed / decay_ns).exp())
        } else {
            Some(v)
        }
    }
}

/// Live, shared counters of one server. Every field is an atomic: updated on
/// the request path without locks.
///
/// Layout for many workers: the in-flight count (written by every worker,
/// read by `least_connections` and P2C) has a cache line of its own; the
/// request counter and the idle-connection pool are per worker
/// ([`Sharded`]); health, drain, ejection and the EWMA are read on every
/// pick but written rarely (the EWMA only by groups that use it).
#[derive(Debug)]
pub struct ServerState {
    in_flight: CachePadded<AtomicU64>,
    requests: Counter,
    healthy: AtomicBool,
    drained: AtomicBool,
    /// Response and error counters (exported on `/metrics`).
    pub stats: ServerStats,
    /// Passive-health counters and ejection deadline (see `upstream::health::passive`).
    pub passive: PassiveState,
    /// Peak-EWMA of the time to response headers, one estimate per worker
    /// (each worker measures the responses it got, as each linkerd or
    /// Finagle client does): no cache line written by two cores.
    ewma: Sharded<Ewma>,
    /// Idle keep-alive connections to this server, one list per worker (a
    /// connection is driven by the worker that opened it and reused only
    /// there, as HAProxy's per-thread idle lists).
    pub pool: Sharded<super::pool::ConnPool>,
    /// Multiplexed HTTP/2 connections to this server (`protocol: http2`),
    /// one short list per worker.
    pub h2: Sharded<super::h2::H2Pool>,
    /// The `least_connections` indexes this server is in (none for other
    /// algorithms), told of every in-flight, health or drain change.
    pub(crate) indexes: crate::balancer::load_index::IndexLinks,
    /// `max_connections`, slow-start ramp and queue wake-ups (`upstream/edge.rs`).
    pub edge: super::edge::EdgeState,
}

impl Default for ServerState {
    fn default() -> Self {
        ServerState {
            in_flight: CachePadded::new(AtomicU64::new(0)),
            requests: Counter::default(),
            healthy: AtomicBool::new(true),
            drained: AtomicBool::new(false),
            stats: ServerStats::default(),
            passive: PassiveState::default(),
            ewma: Sharded::default(),
            pool: Sharded::default(),
            h2: Sharded::default(),
            indexes: Default::default(),
            edge: Default::default(),
        }
    }
}

impl ServerState {
    /// Requests sent to this server whose response has not ended yet.
    #[inline]
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Requests sent to this server since it was first configured.
    pub fn requests(&self) -> u64 {
        self.requests.get()
    }

    /// False when active health checks marked the server down (passive
    /// ejection is separate: see `ServerGroup::is_usable`).
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Marks the server up or down; returns the previous value.
    pub fn set_healthy(&self, healthy: bool) -> bool {
        let was = self.healthy.swap(healthy, Ordering::SeqCst);
        if was != healthy {
            self.indexes.changed(self);
            if healthy {
                self.edge.came_up();
            }
        }
        was
    }

    /// True when an operator drained the server by hand (admin API): it gets
    /// no new requests, in-flight ones finish.
    pub fn is_drained(&self) -> bool {
        self.drained.load(Ordering::Relaxed)
    }

    /// Drains (`true`) or re-enables (`false`) the server; returns the previous value.
    pub fn set_drained(&self, drained: bool) -> bool {
        let was = self.drained.swap(drained, Ordering::SeqCst);
        if was != drained {
            self.indexes.changed(self);
            if !drained {
                self.edge.came_up();
            }
        }
        was
    }

    /// `(in-flight, healthy and not drained)`, read in the `SeqCst` order
    /// that the least-connections index's update protocol relies on (the
    /// writes of these fields are `SeqCst` too; on x86 this costs nothing).
    #[inline]
    pub(crate) fn balancing_inputs(&self) -> (u64, bool) {
        (
            self.in_flight.load(Ordering::SeqCst),
            self.healthy.load(Ordering::SeqCst) && !self.drained.load(Ordering::SeqCst),
        )
    }

    /// Records one response time (request sent → response headers received)
    /// into the peak EWMA, with time constant `decay`.
    ///
    /// Finagle's `PeakEwma.observe` (also tower/linkerd2-proxy's
    /// `PeakEwma`): a sample above the estimate replaces it at once (peak);
    /// a lower one pulls it with weight `1 - exp(-Δt / decay)`, `Δt` being the
    /// time since the previous update.
    pub fn record_response_time(&self, rtt: Duration, decay: Duration) {
        self.observe_at(
            rtt.as_nanos() as f64,
            monotonic_nanos(),
            decay.as_nanos() as f64,
        );
    }

    /// [`Self::record_response_time`] at an explicit time: `rtt_ns` and
    /// `decay_ns` in nanoseconds, `now_ns` on the [`monotonic_nanos`] clock.
    ///
    /// Lock-free: a compare-and-swap loop on the estimate. The update time is
    /// a second atomic, so two racing updates may use a slightly stale `Δt`;
    /// the estimate stays within the range of the samples.
    pub fn observe_at(&self, rtt_ns: f64, now_ns: u64, decay_ns: f64) {
        let ewma = self.ewma.local();
        let stamp = ewma.stamp.load(Ordering::Relaxed);
        let elapsed = now_ns.saturating_sub(stamp) as f64;
        let w = if decay_ns > 0.0 {
            (-elapsed / decay_ns).exp()
        } else {
            0.0
        };
        let mut current = ewma.bits.load(Ordering::Relaxed);
        loop {
            let old = f64::from_bits(current);
            let new = if current == NO_SAMPLE || rtt_ns > old {
                rtt_ns
            } else {
                old * w + rtt_ns * (1.0 - w)
            };
            match ewma.bits.compare_exchange_weak(
                current,
                new.to_bits(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(seen) => current = seen,
            }
        }
        ewma.stamp.fetch_max(now_ns, Ordering::Relaxed);
    }

    /// The peak-EWMA response time at `now_ns` in nanoseconds, or `None`
    /// before the first sample.
    ///
    /// Like Finagle's `PeakEwma.get` (an `observe(0)`), the estimate decays
    /// toward zero while no sample arrives, so a server that was once slow is
    /// tried again; here the decay is applied on read without writing:
    /// `estimate × exp(-(now - last update) / decay)`.
    #[inline]
    pub fn ewma_at(&self, now_ns: u64, decay_ns: f64) -> Option<f64> {
        self.ewma.local().at(now_ns, decay_ns)
    }

    /// The stored peak EWMA in nanoseconds and the [`monotonic_nanos`] time
    /// of its last update, before any decay on read; `None` before the first
    /// sample. Lets a balancer compare two servers without reading the clock
    /// (the decay factor `exp(-now / decay)` is common to both).
    #[inline]
    pub fn ewma_raw(&self) -> Option<(f64, u64)> {
        let ewma = self.ewma.local();
        let bits = ewma.bits.load(Ordering::Relaxed);
        if bits == NO_SAMPLE {
            return None;
        }
        Some((f64::from_bits(bits), ewma.stamp.load(Ordering::Relaxed)))
    }

    /// The peak-EWMA time to response headers now (for metrics), with time
    /// constant `decay`: the mean of the workers' estimates; `None` before
    /// the first sample.
    pub fn response_time_ewma(&self, decay: Duration) -> Option<Duration> {
        let now = monotonic_nanos();
        let decay = decay.as_nanos() as f64;
        let (sum, n) = self
            .ewma
            .iter()
            .filter_map(|e| e.at(now, decay))
            .fold((0.0, 0u32), |(s, n), v| (s + v, n + 1));
        (n > 0).then(|| Duration::from_nanos((sum / f64::from(n)).max(0.0) as u64))
    }

    /// Counts a request to this server; the in-flight count drops when the
    /// returned guard is dropped (when the response body ends or is abandoned).
    pub fn start_request(self: &Arc<Self>) -> InFlightGuard {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.indexes.changed(&**self);
        self.requests.inc();
        InFlightGuard {
            state: Arc::clone(self),
        }
    }
}

impl ServerState {
    /// [`Self::start_request`] when fewer than the server's `max_connections`
    /// are in flight (a compare-and-swap on the global count: N workers never
    /// exceed it); `None` when full.
    pub fn try_start_request(self: &Arc<Self>) -> Option<InFlightGuard> {
        let limit = self.edge.limit();
        if limit == u64::MAX {
            return Some(self.start_request());
        }
        let mut current = self.in_flight.load(Ordering::SeqCst);
        loop {
            if current >= limit {
                return None;
            }
            match self.in_flight.compare_exchange_weak(
                current,
                current + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => break,
                Err(seen) => current = seen,
            }
        }
        self.indexes.changed(&**self);
        self.requests.inc();
        Some(InFlightGuard {
            state: Arc::clone(self),
        })
    }
}

/// Decrements its server's in-flight count when dropped.
#[derive(Debug)]
pub struct InFlightGuard {
    state: Arc<ServerState>,
}

impl InFlightGuard {
    /// The server this request is counted on.
    pub fn state(&self) -> &ServerState {
        &self.state
    }

    /// The server's state, shared (for what outlives the request: an idle
    /// connection's sweeper holds it weakly).
    pub fn shared_state(&self) -> &Arc<ServerState> {
        &self.state
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.state.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.state.indexes.changed(&*self.state);
        self.state.edge.released();
    }
}

/// One server of a group snapshot.
#[derive(Debug)]
pub struct Server {
    /// Stable id (cookies, metrics, state across reloads).
    pub id: Arc<str>,
    /// `host:port` to connect to.
    pub address: Authority,
    /// `address` as a socket address when it is an IP literal (no lookup
    /// per connect); `None` for a host name, resolved at each connect.
    pub resolved: Option<std::net::SocketAddr>,
    /// Relative weight (1..=1000).
    pub weight: u32,
    /// Live counters, shared with earlier and later snapshots.
    pub state: Arc<ServerState>,
    /// `max_connections`, `backup`, `slow_start`.
    pub edge: crate::config::edge::ServerEdge,
}

impl Server {
    /// A server of `config` with live `state`.
    pub fn new(config: &ServerConfig, state: Arc<ServerState>) -> Self {
        Server {
            id: config.id.clone(),
            address: config.address.clone(),
            resolved: config.address.as_str().parse().ok(),
            weight: config.weight,
            state,
            edge: config.edge,
        }
    }

    /// The request target sent to this server: the origin form
    /// `path?query` of RFC 9112 §3.2.1 (`/` when the client sent none, as
    /// for `OPTIONS *` or an authority-form target).
    pub fn uri(&self, path_and_query: Option<&http::uri::PathAndQuery>) -> Uri {
        Uri::from(
            path_and_query
                .cloned()
                .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
        )
    }
}

/// The balancers' view of a server's live load ([`crate::balancer::ServerLoad`]).
impl crate::balancer::ServerLoad for ServerState {
    #[inline]
    fn in_flight(&self) -> u64 {
        ServerState::in_flight(self)
    }
    #[inline]
    fn balancing_inputs(&self) -> (u64, bool) {
        ServerState::balancing_inputs(self)
    }
    #[inline]
    fn is_ejected_at(&self, now_ms: u64) -> bool {
        self.passive.is_ejected_at(now_ms)
    }
    #[inline]
    fn ewma_raw(&self) -> Option<(f64, u64)> {
        ServerState::ewma_raw(self)
    }
    #[inline]
    fn ewma_at(&self, now_ns: u64, decay_ns: f64) -> Option<f64> {
        ServerState::ewma_at(self, now_ns, decay_ns)
    }
    #[inline]
    fn index_links(&self) -> &crate::balancer::load_index::IndexLinks {
        &self.indexes
    }
}

/// The balancers' view of a server ([`crate::balancer::Endpoint`]).
impl crate::balancer::Endpoint for Server {
    type Load = ServerState;
    #[inline]
    fn weight(&self) -> u32 {
        self.weight
    }
    #[inline]
    fn id(&self) -> &str {
        &self.id
    }
    #[inline]
    fn load(&self) -> &Arc<ServerState> {
        &self.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: f64 = 1e6;
    const DECAY: f64 = 10_000.0 * MS;

    #[test]
    fn no_sample_then_first_sample_is_taken_whole() {
        let s = ServerState::default();
        assert_eq!(s.ewma_at(0, DECAY), None);
        s.observe_at(20.0 * MS, 1_000, DECAY);
        assert_eq!(s.ewma_at(1_000, DECAY), Some(20.0 * MS));
    }

    #[test]
    fn peak_jumps_up_at_once_and_decays_down_with_the_time_constant() {
        let s = ServerState::default();
        s.observe_at(10.0 * MS, 0, DECAY);
        s.observe_at(100.0 * MS, 1, DECAY);
        assert_eq!(s.ewma_at(1, DECAY), Some(100.0 * MS));
        // One time constant later a 10 ms sample pulls it by 1 - 1/e.
        let t = 1 + DECAY as u64;
        s.observe_at(10.0 * MS, t, DECAY);
        let want = 100.0 * MS / std::f64::consts::E + 10.0 * MS * (1.0 - 1.0 / std::f64::consts::E);
        let got = s.ewma_at(t, DECAY).unwrap();
        assert!((got - want).abs() < 1e-3 * MS, "{got} vs {want}");
    }

    #[test]
    fn reading_decays_toward_zero_when_idle() {
        let s = ServerState::default();
        s.observe_at(50.0 * MS, 0, DECAY);
        let later = s.ewma_at(DECAY as u64 * 2, DECAY).unwrap();
        let want = 50.0 * MS * (-2.0f64).exp();
        assert!((later - want).abs() < 1e-6 * MS);
        // Reading does not write.
        assert_eq!(s.ewma_at(0, DECAY), Some(50.0 * MS));
    }

    #[test]
    fn metrics_view_is_a_duration() {
        let s = ServerState::default();
        assert_eq!(s.response_time_ewma(Duration::from_secs(10)), None);
        s.record_response_time(Duration::from_millis(7), Duration::from_secs(10));
        let d = s.response_time_ewma(Duration::from_secs(10)).unwrap();
        assert!(d <= Duration::from_millis(7) && d > Duration::from_millis(6));
    }
}
