//! Server health state: the settings, the rise/fall state machine and the
//! ejection clock, with no I/O and no upstream types (below the balancers).
//!
//! * [`state`]: the up/down state machine of active checks (rise/fall), which
//!   reports flips instead of states (sozu's `HealthState`, pingora's
//!   `observe_health`), and the ejection backoff.
//! * [`HealthCheck`], [`PassiveConfig`]: validated settings of a group.
//! * [`GroupHealth`]: per-group settings the request path needs, and the
//!   latched warning of `fail_open`.
//! * [`LazyNow`]: the ejection clock ([`crate::clock::now_ms`]), read at most once.
//!
//! The probes and passive ejection, which act on a group's servers, are in
//! `upstream::health`. The live state (up/down flag, failure
//! counters, ejection deadline) is in each server's `upstream::ServerState`,
//! which outlives config rebuilds; the probe tasks only hold their rise/fall
//! counters.

pub mod state;

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::uri::PathAndQuery;
use http::{HeaderValue, Method};

pub use state::{HealthCounter, Transition};

/// Validated active health check settings of a group (`groups.*.health_check`).
#[derive(Debug, Clone)]
pub struct HealthCheck {
    /// What a probe does.
    pub kind: ProbeKind,
    /// Time between the starts of two probe rounds (jittered ±10%).
    pub interval: Duration,
    /// Time one probe may take, connect included; longer is a failure.
    pub timeout: Duration,
    /// Consecutive passed probes that bring a down server up (rise).
    pub healthy_threshold: u32,
    /// Consecutive failed probes that take an up server down (fall).
    pub unhealthy_threshold: u32,
}

/// The kind of probe.
#[derive(Debug, Clone)]
pub enum ProbeKind {
    /// An HTTP/1.1 request on a fresh connection (`type: http`, the default).
    Http(HttpProbe),
    /// A TCP connect, closed at once (`type: tcp`, HAProxy's plain `check`).
    Tcp,
    /// `grpc.health.v1.Health/Check` over HTTP/2 (`type: grpc`, Envoy's
    /// `grpc_health_check`); passes when the answer is `SERVING`.
    Grpc(GrpcProbe),
}

/// The request of a gRPC health probe.
#[derive(Debug, Clone)]
pub struct GrpcProbe {
    /// The `service` field of the `HealthCheckRequest` (empty = the whole server).
    pub service: String,
}

/// The request of an HTTP probe and the statuses that pass.
#[derive(Debug, Clone)]
pub struct HttpProbe {
    /// `GET` or `HEAD`.
    pub method: Method,
    /// Path and query sent.
    pub path: PathAndQuery,
    /// `Host` header; `None` = the server's `host:port`.
    pub host: Option<HeaderValue>,
    /// Statuses that count as a pass.
    pub expected: StatusMatch,
}

/// A set of HTTP statuses, as inclusive ranges (`"200-399"`, `"200"`, or a list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusMatch(pub Vec<(u16, u16)>);

impl StatusMatch {
    /// True when `status` is in one of the ranges.
    pub fn matches(&self, status: u16) -> bool {
        self.0.iter().any(|&(lo, hi)| (lo..=hi).contains(&status))
    }
}

impl std::fmt::Display for StatusMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (lo, hi)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if lo == hi {
                write!(f, "{lo}")?;
            } else {
                write!(f, "{lo}-{hi}")?;
            }
        }
        Ok(())
    }
}

/// Validated passive ejection settings of a group (`groups.*.passive`),
/// following Envoy's outlier detection (`consecutive_gateway_failure`,
/// `base_ejection_time`, `max_ejection_time`, `max_ejection_percent: 50`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassiveConfig {
    /// Consecutive failed requests that eject a server.
    pub consecutive_failures: u32,
    /// First ejection time; doubles on each repeated ejection.
    pub ejection: Duration,
    /// Cap of the doubled ejection time.
    pub max_ejection: Duration,
    /// Whether 5xx responses count as failures (connect errors, resets and
    /// response timeouts always do).
    pub on_5xx: bool,
}

/// Per-group health settings used on the request path, and the latch of the
/// fail-open warning (one warning per episode, sozu/Envoy's panic mode).
#[derive(Debug, Default)]
pub struct GroupHealth {
    /// Passive ejection; `None` = off.
    pub passive: Option<PassiveConfig>,
    /// Send to every server when none is usable, instead of answering 503.
    pub fail_open: bool,
    failing_open: AtomicBool,
}

impl GroupHealth {
    /// Settings of one group.
    pub fn new(passive: Option<PassiveConfig>, fail_open: bool) -> Self {
        GroupHealth {
            passive,
            fail_open,
            failing_open: AtomicBool::new(false),
        }
    }

    /// Called when no server is usable: true when the group fails open (and
    /// then warns once per episode).
    pub fn enter_fail_open(&self, group: &str) -> bool {
        if !self.fail_open {
            return false;
        }
        if !self.failing_open.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                target: "weir::health",
                group = %group,
                "no healthy server in group; fail_open: sending to all servers as if healthy"
            );
        }
        true
    }

    /// True during a fail-open episode (one relaxed load; always false
    /// without `fail_open`).
    pub fn is_failing_open(&self) -> bool {
        self.failing_open.load(Ordering::Relaxed)
    }

    /// Ends a fail-open episode because a server is usable again (one line).
    pub fn leave_fail_open(&self, group: &str) {
        if self.failing_open.swap(false, Ordering::Relaxed) {
            tracing::info!(
                target: "weir::health",
                group = %group,
                "group has a healthy server again; fail_open episode ended"
            );
        }
    }
}

/// [`crate::clock::now_ms`] (the ejection clock) read at most once, on first use (a pick reads the clock only
/// when some server is ejected).
#[derive(Debug, Default)]
pub struct LazyNow(Cell<u64>);

impl LazyNow {
    /// A clock not read yet.
    pub fn new() -> Self {
        LazyNow(Cell::new(0))
    }

    /// A fixed time (tests).
    pub fn at(ms: u64) -> Self {
        LazyNow(Cell::new(ms))
    }

    /// The time, read on first call.
    pub fn get(&self) -> u64 {
        match self.0.get() {
            0 => {
                let now = crate::clock::now_ms();
                self.0.set(now);
                now
            }
            t => t,
        }
    }
}
