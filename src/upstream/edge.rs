//! Backup servers, slow start and per-server `max_connections` in the pick.
//!
//! - **Backups** (`servers[].backup`, HAProxy's `backup`): a group keeps its
//!   primary servers first and its backups after them, each tier with its
//!   own balancer. Backups are asked only when no primary is usable (up,
//!   not drained, not ejected); a primary that is merely full or already
//!   tried by this request keeps the request in the primary tier (it waits
//!   in the queue), as in HAProxy.
//! - **Slow start**: see [`crate::balancer::slow_start`]; a ramping server
//!   is admitted with the ramp's probability, and when every candidate
//!   refuses the pick is repeated without the ramp (a lone recovering
//!   server still gets the traffic).
//! - **`max_connections`**: a server at its limit is skipped by the pick;
//!   the slot is then taken with a compare-and-swap on the server's global
//!   in-flight count ([`super::ServerState::try_start_request`]), so N
//!   workers never put more than `max_connections` requests on it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwapOption;

use super::group::Excluded;
use super::queue::GroupQueue;
use super::server::InFlightGuard;
use super::ServerGroup;
use crate::balancer::{self, slow_start, Balancer, PickContext};
use crate::config::{Algorithm, GroupConfig};
use crate::health::LazyNow;

/// Edge state of one server, inside its `ServerState` (kept across reloads).
#[derive(Debug, Default)]
pub struct EdgeState {
    /// `max_connections` of the current config; 0 = no limit.
    max: AtomicU64,
    /// [`crate::clock::now_ms`] when the server last came up (health
    /// recovery, end of ejection, re-enabled); 0 = not ramping.
    up_since: AtomicU64,
    /// The queue of the server's group, woken when a slot frees.
    queue: ArcSwapOption<GroupQueue>,
}

impl EdgeState {
    /// The in-flight limit; `u64::MAX` when there is none.
    #[inline]
    pub fn limit(&self) -> u64 {
        match self.max.load(Ordering::Relaxed) {
            0 => u64::MAX,
            m => m,
        }
    }

    /// Records that the server came up now (starts its slow-start ramp).
    pub fn came_up(&self) {
        self.came_up_at(crate::clock::now_ms());
    }

    /// Records that the server came up at `ms` ([`crate::clock::now_ms`] clock).
    pub fn came_up_at(&self, ms: u64) {
        self.up_since.store(ms.max(1), Ordering::Relaxed);
    }

    /// When the server came up (0 = not ramping).
    pub fn up_since(&self) -> u64 {
        self.up_since.load(Ordering::Relaxed)
    }

    /// Called after the in-flight count dropped: wakes the first request
    /// waiting in the group's queue, if any. One relaxed load for a server
    /// without a limit.
    #[inline]
    pub fn released(&self) {
        if self.max.load(Ordering::Relaxed) == 0 {
            return;
        }
        if let Some(q) = &*self.queue.load() {
            q.slot_freed();
        }
    }
}

/// The edge part of a group snapshot.
#[derive(Debug)]
pub struct GroupEdge {
    /// Servers `0..primaries` are primaries, the rest backups.
    pub primaries: usize,
    /// The balancer of the backup tier (over `servers[primaries..]`).
    pub backups: Option<Box<dyn Balancer<super::Server>>>,
    /// Some server has `slow_start`.
    pub slow_start: bool,
    /// Slow-start draws follow this key (`ip_hash`, `hash`) instead of chance.
    key: DrawKey,
    /// The group's queue (shared across reloads through the registry).
    pub queue: Arc<GroupQueue>,
    /// The validated settings.
    pub config: crate::config::edge::GroupEdge,
}

#[derive(Debug)]
enum DrawKey {
    Random,
    ClientIp,
    Key(balancer::hash::HashKey),
}

impl GroupEdge {
    /// The edge part of `config`'s group whose servers are `servers`
    /// (primaries first, see [`order`]); attaches the servers' limits and
    /// the queue to their live state.
    pub fn new(config: &GroupConfig, servers: &[super::Server], queue: Arc<GroupQueue>) -> Self {
        let primaries = servers.iter().filter(|s| !s.edge.backup).count();
        queue.configure(config.edge.queue);
        for s in servers {
            let e = &s.state.edge;
            e.max
                .store(s.edge.max_connections.unwrap_or(0), Ordering::Relaxed);
            e.queue.store(Some(Arc::clone(&queue)));
        }
        let backups =
            (primaries < servers.len()).then(|| balancer::build(config, &servers[primaries..]));
        GroupEdge {
            primaries,
            backups,
            slow_start: servers.iter().any(|s| s.edge.slow_start.is_some()),
            key: match (config.algorithm, &config.hash_key) {
                (Algorithm::IpHash, _) => DrawKey::ClientIp,
                (Algorithm::Hash, Some(k)) => DrawKey::Key(k.clone()),
                _ => DrawKey::Random,
            },
            queue,
            config: config.edge,
        }
    }

    fn seed(&self, ctx: &PickContext<'_>) -> u64 {
        match &self.key {
            DrawKey::ClientIp => balancer::hash::hash_ip(ctx.client_ip),
            DrawKey::Key(k) => match k.extract(ctx) {
                Some(bytes) => balancer::hash::hash_bytes(bytes),
                None => balancer::rng::next_u64(),
            },
            DrawKey::Random => balancer::rng::next_u64(),
        }
    }
}

/// The config's servers reordered primaries first (stable), so that each
/// tier is a contiguous slice for its balancer.
pub fn order(config: &GroupConfig) -> Vec<&crate::config::ServerConfig> {
    let (mut primaries, backups): (Vec<_>, Vec<_>) =
        config.servers.iter().partition(|s| !s.edge.backup);
    primaries.extend(backups);
    primaries
}

impl ServerGroup {
    /// The algorithm's pick over the usable tier: primaries, or backups
    /// when no primary is usable; ramping servers admitted by their factor.
    pub(crate) fn pick_tiered(
        &self,
        ctx: &PickContext<'_>,
        usable: &dyn Fn(usize) -> bool,
        now: &LazyNow,
    ) -> Option<usize> {
        let p = self.edge.primaries;
        let primary_up = p == self.servers.len() || (0..p).any(|i| self.usable_at(i, now));
        let (servers, offset, balancer): (_, usize, &dyn Balancer<super::Server>) =
            match &self.edge.backups {
                Some(b) if !primary_up => (&self.servers[p..], p, &**b),
                _ => (&self.servers[..p], 0, &*self.balancer),
            };
        let tier_usable = |j: usize| usable(j + offset);
        if self.edge.slow_start {
            let seed = self.edge.seed(ctx);
            let admitted = |j: usize| tier_usable(j) && self.admits(j + offset, seed, now);
            if let Some(j) = balancer.pick(servers, ctx, &admitted) {
                return Some(j + offset);
            }
        }
        balancer
            .pick(servers, ctx, &tier_usable)
            .map(|j| j + offset)
    }

    /// Slow start: whether ramping server `i` takes this request.
    fn admits(&self, i: usize, seed: u64, now: &LazyNow) -> bool {
        let server = &self.servers[i];
        let Some(ramp) = server.edge.slow_start else {
            return true;
        };
        let up = server.state.edge.up_since();
        if up == 0 {
            return true;
        }
        let ramp_ms = ramp.as_millis() as u64;
        let elapsed = now.get().saturating_sub(up);
        if elapsed >= ramp_ms {
            // Ramp over: later picks skip the clock for this server.
            let _ = server.state.edge.up_since.compare_exchange(
                up,
                0,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            return true;
        }
        slow_start::admits(
            slow_start::draw_for(seed, i),
            slow_start::factor(elapsed, ramp_ms),
        )
    }

    /// The slow-start factor of server `i` now (1.0 when not ramping), for `/status`.
    pub fn ramp_factor(&self, i: usize) -> f64 {
        let server = &self.servers[i];
        let (Some(ramp), up) = (server.edge.slow_start, server.state.edge.up_since()) else {
            return 1.0;
        };
        if up == 0 {
            return 1.0;
        }
        let elapsed = crate::clock::now_ms().saturating_sub(up);
        slow_start::factor(elapsed, ramp.as_millis() as u64)
    }

    /// Takes a slot on a server for this request: the pinned one (sticky)
    /// when usable and not full, else the algorithm's pick among usable
    /// servers with a free slot. [`Acquire::Full`] when usable servers
    /// exist but every one is at its `max_connections`.
    pub fn try_acquire(
        &self,
        pinned: Option<usize>,
        ctx: &PickContext<'_>,
        excluded: &Excluded,
    ) -> Acquire {
        let mut full = Excluded::default();
        for _ in 0..=self.servers.len() {
            let has_slot = |i: usize| {
                !full.contains(i)
                    && self.servers[i].state.in_flight() < self.servers[i].state.edge.limit()
            };
            let pick = match pinned {
                Some(i) if self.usable(i, excluded) && has_slot(i) => Some(i),
                _ => self.pick_with(ctx, excluded, &has_slot),
            };
            let Some(i) = pick else { break };
            match self.servers[i].state.try_start_request() {
                Some(guard) => return Acquire::Server(i, guard),
                // Another worker took the last slot meanwhile.
                None => full.insert(i),
            }
        }
        // No pick: full (a usable server with a limit exists, so a slot
        // will free) or no usable server at all. Not decided by reading the
        // in-flight counts again: a slot may have freed since the pick
        // (the queue's second try then takes it).
        let failing_open = self.health.is_failing_open();
        let any_limited = (0..self.servers.len()).any(|i| {
            self.servers[i].state.edge.limit() != u64::MAX
                && (self.usable(i, excluded)
                    || (failing_open
                        && !excluded.contains(i)
                        && !self.servers[i].state.is_drained()))
        });
        if any_limited {
            Acquire::Full
        } else {
            Acquire::NoServer
        }
    }
}

/// The outcome of [`ServerGroup::try_acquire`].
#[derive(Debug)]
pub enum Acquire {
    /// Server index and its in-flight slot.
    Server(usize, InFlightGuard),
    /// Every usable server is at its `max_connections`: queue.
    Full,
    /// No usable server.
    NoServer,
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use http::{HeaderMap, HeaderValue, Uri};

    use super::super::{ServerGroup, StateRegistry};
    use super::*;
    use crate::config::Algorithm;

    fn group(algorithm: &str, servers: &str) -> ServerGroup {
        let key = if algorithm == "hash" {
            "    hash_key: header:x-user\n"
        } else {
            ""
        };
        let yaml = format!(
            "listeners:\n  - address: 127.0.0.1:0\nroutes:\n  - group: g\ngroups:\n  g:\n    algorithm: {algorithm}\n{key}    servers:\n{servers}"
        );
        let config = crate::config::load_str(&yaml, Path::new("t.yaml")).unwrap();
        ServerGroup::new(&config.groups[0], &StateRegistry::default())
    }

    /// Share of `n` picks (distinct client addresses and keys) that go to server `id`.
    fn share(g: &ServerGroup, id: &str, n: u32) -> f64 {
        let uri = Uri::from_static("/");
        let mut hits = 0;
        for k in 0..n {
            let mut headers = HeaderMap::new();
            headers.insert("x-user", HeaderValue::from(k));
            let ctx = PickContext {
                client_ip: std::net::Ipv4Addr::from(0x0a00_0000 + k).into(),
                uri: &uri,
                headers: &headers,
            };
            let i = g.pick(&ctx, &Excluded::default()).unwrap();
            if &*g.servers[i].id == id {
                hits += 1;
            }
        }
        f64::from(hits) / f64::from(n)
    }

    const TWO: &str = "      - address: 127.0.0.1:9001\n        id: a\n      - address: 127.0.0.1:9002\n        id: b\n        slow_start: 10s\n";

    /// Every algorithm ramps: right after coming up the server gets about
    /// 1% of its share, halfway about half, after the ramp all of it.
    #[tokio::test(start_paused = true)]
    async fn every_algorithm_ramps_a_recovered_server() {
        for (name, _) in Algorithm::ALL {
            let g = group(name, TWO);
            let b = g.servers.iter().position(|s| &*s.id == "b").unwrap();
            assert!(
                (share(&g, "b", 2000) - 0.5).abs() < 0.1,
                "{name}: not ramping"
            );
            g.servers[b].state.set_healthy(false);
            assert_eq!(share(&g, "b", 200), 0.0, "{name}: down");
            g.servers[b].state.set_healthy(true);
            let start = share(&g, "b", 4000);
            assert!(start < 0.03, "{name}: share at the start {start}");
            tokio::time::advance(Duration::from_secs(5)).await;
            let half = share(&g, "b", 4000);
            // Factor 0.5: about half of the normal 50% share.
            assert!(
                (0.15..0.35).contains(&half),
                "{name}: share at half ramp {half}"
            );
            assert!((g.ramp_factor(b) - 0.5).abs() < 0.01);
            tokio::time::advance(Duration::from_secs(5)).await;
            let full = share(&g, "b", 2000);
            assert!(
                (full - 0.5).abs() < 0.1,
                "{name}: share after the ramp {full}"
            );
            assert_eq!(g.ramp_factor(b), 1.0);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_ramping_server_still_takes_everything() {
        let g = group(
            "round_robin",
            "      - address: 127.0.0.1:9001\n        slow_start: 10s\n",
        );
        g.servers[0].state.set_healthy(false);
        g.servers[0].state.set_healthy(true);
        assert_eq!(share(&g, "127.0.0.1:9001", 100), 1.0);
    }

    #[test]
    fn backups_only_when_no_primary_is_usable() {
        let servers = "      - address: 127.0.0.1:9003\n        id: backup\n        backup: true\n      - address: 127.0.0.1:9001\n        id: a\n      - address: 127.0.0.1:9002\n        id: b\n";
        for (name, _) in Algorithm::ALL {
            let g = group(name, servers);
            // Primaries first in the snapshot.
            assert_eq!(&*g.servers[2].id, "backup");
            assert_eq!(share(&g, "backup", 500), 0.0, "{name}");
            g.servers[0].state.set_healthy(false);
            assert_eq!(share(&g, "backup", 500), 0.0, "{name}: one primary left");
            g.servers[1].state.set_drained(true);
            assert_eq!(share(&g, "backup", 500), 1.0, "{name}: no primary usable");
            g.servers[0].state.set_healthy(true);
            assert_eq!(share(&g, "backup", 500), 0.0, "{name}: primary back");
        }
    }

    #[test]
    fn a_full_primary_does_not_spill_to_the_backup() {
        let servers = "      - address: 127.0.0.1:9001\n        id: a\n        max_connections: 1\n      - address: 127.0.0.1:9003\n        id: backup\n        backup: true\n";
        let g = group("round_robin", servers);
        let uri = Uri::from_static("/");
        let headers = HeaderMap::new();
        let ctx = PickContext {
            client_ip: [127, 0, 0, 1].into(),
            uri: &uri,
            headers: &headers,
        };
        let none = Excluded::default();
        let Acquire::Server(0, guard) = g.try_acquire(None, &ctx, &none) else {
            panic!("first request gets the primary");
        };
        assert!(matches!(g.try_acquire(None, &ctx, &none), Acquire::Full));
        drop(guard);
        assert!(matches!(
            g.try_acquire(None, &ctx, &none),
            Acquire::Server(0, _)
        ));
    }
}
