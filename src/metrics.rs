//! Metrics: live counters kept in atomics on the request path, encoded in the
//! Prometheus text format (prometheus-client) only when `/metrics` is scraped.
//!
//! Nothing on the request path takes a lock for metrics: every counter is an
//! atomic owned by the route, group, server or listener it describes, and the
//! scrape walks the current snapshot to read them (prometheus-client's
//! `Collector` pattern). The counters written on every request are sharded
//! per worker ([`crate::shard::Sharded`]: each worker adds to its own cache
//! line) and summed when read. Counters live in `upstream::StateRegistry`
//! keyed by name, so they stay monotonic across config reloads.

pub mod reject;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::shard::Sharded;

/// Upper bounds of the duration histogram buckets, in seconds (the `+Inf`
/// bucket is implicit).
pub const DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A histogram of durations with fixed buckets, lock-free and sharded per
/// worker (two atomic adds on the worker's own cache line per observation:
/// the bucket and the sum; the count is the buckets' total).
#[derive(Debug, Default)]
pub struct Histogram {
    shards: Sharded<HistogramShard>,
}

#[derive(Debug, Default)]
struct HistogramShard {
    buckets: [AtomicU64; DURATION_BUCKETS.len() + 1],
    sum_ns: AtomicU64,
}

impl Histogram {
    /// Records one duration.
    #[inline]
    pub fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let secs = ns as f64 / 1e9;
        let i = DURATION_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(DURATION_BUCKETS.len());
        let shard = self.shards.local();
        shard.buckets[i].fetch_add(1, Ordering::Relaxed);
        shard.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.shards
            .iter()
            .flat_map(|s| s.buckets.iter())
            .map(|b| b.load(Ordering::Relaxed))
            .sum()
    }

    /// Sum of observations in seconds.
    pub fn sum_secs(&self) -> f64 {
        let ns: u64 = self
            .shards
            .iter()
            .map(|s| s.sum_ns.load(Ordering::Relaxed))
            .sum();
        ns as f64 / 1e9
    }

    /// Cumulative buckets as `(upper bound, count)`, ending with `+Inf`.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut acc = 0;
        let mut out = Vec::with_capacity(DURATION_BUCKETS.len() + 1);
        for i in 0..=DURATION_BUCKETS.len() {
            acc += self
                .shards
                .iter()
                .map(|s| s.buckets[i].load(Ordering::Relaxed))
                .sum::<u64>();
            let le = DURATION_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY);
            out.push((le, acc));
        }
        out
    }
}

/// Status classes counted separately: 1xx..5xx.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Requests by status class, sharded per worker.
#[derive(Debug, Default)]
pub struct ByClass(Sharded<[AtomicU64; 5]>);

impl ByClass {
    /// Counts one response with `status`.
    #[inline]
    pub fn inc(&self, status: u16) {
        let i = usize::from((status / 100).clamp(1, 5)) - 1;
        self.0.local()[i].fetch_add(1, Ordering::Relaxed);
    }

    /// The count for class index `i` (0 = 1xx), summed over the workers.
    pub fn get(&self, i: usize) -> u64 {
        self.0.iter().map(|s| s[i].load(Ordering::Relaxed)).sum()
    }
}

/// A counter sharded per worker: [`Self::inc`] adds on this worker's cache
/// line, [`Self::get`] sums.
#[derive(Debug, Default)]
pub struct Counter(Sharded<AtomicU64>);

impl Counter {
    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.0.local().fetch_add(1, Ordering::Relaxed);
    }

    /// The total over the workers.
    pub fn get(&self) -> u64 {
        self.0.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// The count of worker `i` alone.
    pub fn get_shard(&self, i: usize) -> u64 {
        self.0.get(i).load(Ordering::Relaxed)
    }
}

/// A gauge sharded per worker (each worker adds and subtracts its own
/// share; the value is the sum).
#[derive(Debug, Default)]
pub struct Gauge(Sharded<AtomicI64>);

impl Gauge {
    /// Adds `d` (negative to subtract).
    #[inline]
    pub fn add(&self, d: i64) {
        self.0.local().fetch_add(d, Ordering::Relaxed);
    }

    /// The value, summed over the workers.
    pub fn get(&self) -> i64 {
        self.0.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// Counters of one route.
#[derive(Debug, Default)]
pub struct RouteStats {
    /// Responses by status class.
    pub requests: ByClass,
    /// Time from request head to response head.
    pub duration: Histogram,
}

/// Counters of one server group.
#[derive(Debug, Default)]
pub struct GroupStats {
    /// Time from request head to response head, for requests routed to the group.
    pub duration: Histogram,
    /// Requests answered 503 because no server was usable.
    pub no_server: AtomicU64,
    /// Unix second of the last "no usable server" warning (rate limit).
    no_server_logged: AtomicU64,
}

impl GroupStats {
    /// Counts a 503 for lack of a usable server; true at most once per
    /// second, so the warning does not flood the log under load.
    pub fn no_server(&self) -> bool {
        self.no_server.fetch_add(1, Ordering::Relaxed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.no_server_logged.swap(now, Ordering::Relaxed) != now
    }
}

/// Counters of one server (kept in its `ServerState`).
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Responses by status class (from the upstream, or 502/504 weir sent for it).
    pub responses: ByClass,
    /// Failed connection attempts.
    pub connect_errors: AtomicU64,
    /// Response timeouts (504).
    pub timeouts: AtomicU64,
    /// Other upstream failures (reset, closed, invalid response).
    pub protocol_errors: AtomicU64,
    /// Requests retried on another server after failing on this one.
    pub retries: AtomicU64,
    /// Health state flips (up → down and down → up).
    pub health_transitions: AtomicU64,
}

/// Counters of one listener, each sharded per worker.
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// Downstream connections open now.
    pub open: Gauge,
    /// Downstream connections accepted.
    pub accepted: Counter,
    /// Requests received (every one, also those weir answers itself).
    pub requests: Counter,
    /// Idle HTTP/1 keep-alive connections parked now: open, holding no
    /// hyper state or buffers until their next request (see `listener::conn`).
    pub parked: Gauge,
    /// Completed TLS handshakes.
    pub tls_handshakes: Counter,
    /// Failed or timed-out TLS handshakes.
    pub tls_failures: Counter,
    /// Connections closed for a missing or invalid PROXY protocol header.
    pub proxy_protocol_errors: Counter,
    /// Requests weir refused itself, by reason (`weir_downstream_rejected_total`).
    pub rejected: reject::RejectStats,
    /// `max_connections` / `max_connections_per_ip` and their counts,
    /// shared by every accept loop of the listener.
    pub conn_limit: std::sync::Arc<crate::limits::ConnLimiter>,
}

/// Process-wide counters.
#[derive(Debug, Default)]
pub struct GlobalStats {
    /// The number of workers (for exporting the per-worker counters).
    pub workers: std::sync::atomic::AtomicUsize,

    /// Successful config reloads.
    pub reloads_ok: AtomicU64,
    /// Failed config reloads (the running config stayed).
    pub reloads_failed: AtomicU64,
    /// Hash of the running config file's bytes (FNV-1a 64).
    pub config_hash: AtomicU64,
}

/// FNV-1a 64-bit hash (for the `weir_config_hash` gauge; not cryptographic).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Adds one to `c`.
pub fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}
