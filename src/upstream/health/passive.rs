//! Passive health: eject a server after consecutive failed requests.
//!
//! Follows Envoy's outlier detection: connect failures, resets, response
//! timeouts (and with `on_5xx`, 5xx responses) count; after
//! `consecutive_failures` in a row the server is ejected for `ejection`,
//! doubling on each repeated ejection up to `max_ejection`
//! ([`ejection_time`]). An ejection ends when its time passes or when an
//! active probe passes. At most half of a group is ejected at once
//! (Envoy's `max_ejection_percent`, here fixed at 50%) unless every server
//! of the group is failing to connect.
//!
//! The counters live in [`PassiveState`] inside each server's
//! `ServerState` (atomics, no lock), so they survive config rebuilds.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};

use crate::error::ErrorKind;
use crate::health::state::ejection_time;
use crate::health::{LazyNow, PassiveConfig};
use crate::upstream::{Server, ServerGroup};

/// Passive-health counters of one server. Times are [`crate::clock::now_ms`] values.
#[derive(Debug, Default)]
pub struct PassiveState {
    /// Consecutive failed requests.
    failures: AtomicU32,
    /// End of the current ejection; 0 = not ejected.
    ejected_until: AtomicU64,
    /// End of the latest ejection (kept after it ends, for the backoff).
    last_ejection_end: AtomicU64,
    /// Doublings of the latest ejection (0 = the base time).
    ejections: AtomicU32,
    /// The latest request failed to connect.
    connect_failing: AtomicBool,
}

impl PassiveState {
    /// True while an ejection is running at `now` (no side effect).
    #[inline]
    pub fn is_ejected_at(&self, now: u64) -> bool {
        let until = self.ejected_until.load(Relaxed);
        until != 0 && now < until
    }

    /// Consecutive failed requests so far.
    pub fn failures(&self) -> u32 {
        self.failures.load(Relaxed)
    }

    /// How many times in a row the server was ejected (1 = once); 0 = never.
    pub fn ejection_streak(&self) -> u32 {
        if self.last_ejection_end.load(Relaxed) == 0 {
            0
        } else {
            self.ejections.load(Relaxed) + 1
        }
    }
}

/// True when `server` is ejected at `now`. An ejection found expired is
/// cleared here, by exactly one caller, which logs the server's return.
pub fn is_ejected(group: &str, server: &Server, now: &LazyNow) -> bool {
    let p = &server.state.passive;
    let until = p.ejected_until.load(Relaxed);
    if until == 0 {
        return false;
    }
    if now.get() < until {
        return true;
    }
    if p.ejected_until
        .compare_exchange(until, 0, Relaxed, Relaxed)
        .is_ok()
    {
        // Slow start ramps from the ejection's end (upstream/edge.rs).
        server.state.edge.came_up_at(until);
        crate::metrics::inc(&server.state.stats.health_transitions);
        tracing::info!(
            target: "weir::health",
            group = %group,
            server = %server.id,
            transition = after_ejection(server),
            reason = "ejection time elapsed",
            "server health changed"
        );
    }
    false
}

/// The state a server returns to from an ejection: up, or still down when
/// active checks marked it down meanwhile (their `down → up` follows later).
fn after_ejection(server: &Server) -> &'static str {
    if server.state.is_healthy() {
        "ejected → up"
    } else {
        "ejected → down"
    }
}

/// Ends an ejection early because an active probe passed.
pub fn probe_passed(group: &str, server: &Server) {
    let p = &server.state.passive;
    if p.ejected_until.load(Relaxed) != 0 && p.ejected_until.swap(0, Relaxed) != 0 {
        p.failures.store(0, Relaxed);
        server.state.edge.came_up();
        crate::metrics::inc(&server.state.stats.health_transitions);
        tracing::info!(
            target: "weir::health",
            group = %group,
            server = %server.id,
            transition = after_ejection(server),
            reason = "active probe passed",
            "server health changed"
        );
    }
}

/// Records a failed request to server `index` of `group`. Errors that say
/// nothing about the server (bad requests, no route) are ignored.
pub fn request_failed(group: &ServerGroup, index: usize, kind: ErrorKind) {
    let Some(cfg) = &group.health.passive else {
        return;
    };
    let counts = matches!(
        kind,
        ErrorKind::Connect
            | ErrorKind::UpstreamReset
            | ErrorKind::UpstreamProtocol
            | ErrorKind::ResponseTimeout
    );
    if !counts {
        return;
    }
    let Some(server) = group.servers.get(index) else {
        return;
    };
    let p = &server.state.passive;
    let connect = kind == ErrorKind::Connect;
    if p.connect_failing.load(Relaxed) != connect {
        p.connect_failing.store(connect, Relaxed);
    }
    failure(group, index, cfg, kind.as_str());
}

/// Records a response from server `index` of `group`: a success, or with
/// `on_5xx` a failure when the status is 5xx. Writes nothing in the common
/// case (no failures pending).
pub fn response(group: &ServerGroup, index: usize, status: http::StatusCode) {
    let Some(cfg) = &group.health.passive else {
        return;
    };
    let Some(server) = group.servers.get(index) else {
        return;
    };
    if cfg.on_5xx && status.is_server_error() {
        failure(group, index, cfg, status.as_str());
        return;
    }
    let p = &server.state.passive;
    if p.failures.load(Relaxed) != 0 {
        p.failures.store(0, Relaxed);
    }
    if p.connect_failing.load(Relaxed) {
        p.connect_failing.store(false, Relaxed);
    }
}

fn failure(group: &ServerGroup, index: usize, cfg: &PassiveConfig, what: &str) {
    let server = &group.servers[index];
    let p = &server.state.passive;
    let failures = p.failures.fetch_add(1, Relaxed).saturating_add(1);
    if failures < cfg.consecutive_failures {
        return;
    }
    let now = LazyNow::new();
    try_eject(group, index, cfg, now.get(), failures, what);
}

/// Ejects server `index` at time `now` if it is not ejected yet and the
/// group's ejection cap allows it. Returns true when this call ejected it.
pub fn try_eject(
    group: &ServerGroup,
    index: usize,
    cfg: &PassiveConfig,
    now: u64,
    failures: u32,
    what: &str,
) -> bool {
    let server = &group.servers[index];
    let p = &server.state.passive;
    let current = p.ejected_until.load(Relaxed);
    if current != 0 && now < current {
        return false;
    }
    let n = group.servers.len();
    let ejected = group
        .servers
        .iter()
        .filter(|s| s.state.passive.is_ejected_at(now))
        .count();
    let all_refuse = group
        .servers
        .iter()
        .all(|s| s.state.passive.connect_failing.load(Relaxed));
    if (ejected + 1) * 2 > n && !all_refuse {
        tracing::debug!(
            target: "weir::health",
            group = %group.name,
            server = %server.id,
            ejected,
            "not ejecting: at most half of a group is ejected at once"
        );
        return false;
    }
    let last_end = p.last_ejection_end.load(Relaxed);
    let max_ms = u64::try_from(cfg.max_ejection.as_millis()).unwrap_or(u64::MAX);
    let doublings = if last_end != 0 && now.saturating_sub(last_end) <= max_ms {
        p.ejections.load(Relaxed).saturating_add(1)
    } else {
        0
    };
    let time = ejection_time(cfg.ejection, cfg.max_ejection, doublings);
    let until = now.saturating_add(u64::try_from(time.as_millis()).unwrap_or(u64::MAX));
    if p.ejected_until
        .compare_exchange(current, until, Relaxed, Relaxed)
        .is_err()
    {
        return false; // another request ejected it first
    }
    p.last_ejection_end.store(until, Relaxed);
    p.ejections.store(doublings, Relaxed);
    p.failures.store(0, Relaxed);
    crate::metrics::inc(&server.state.stats.health_transitions);
    tracing::warn!(
        target: "weir::health",
        group = %group.name,
        server = %server.id,
        transition = "up → ejected",
        reason = %format_args!("{failures} consecutive failed requests (last: {what}); ejected for {}", humantime::format_duration(time)),
        "server health changed"
    );
    true
}
