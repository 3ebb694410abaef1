//! A server group: its servers, its balancer and its upstream connection pool,
//! built once per config and shared read-only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::affinity::Sticky;
use crate::balancer::{self, Balancer, PickContext};
use crate::config::{GroupConfig, Timeouts};
use crate::health::{GroupHealth, LazyNow};
use crate::metrics::{GlobalStats, GroupStats, ListenerStats, RouteStats};

use super::server::{Server, ServerState};

/// (group name, server id).
type StateKey = (Arc<str>, Arc<str>);

/// Live per-server state by (group name, server id), so that a rebuilt group
/// keeps the counters and health of servers that did not change.
///
/// Locked only while a config is being built, never on the request path.
#[derive(Debug, Default)]
pub struct StateRegistry {
    states: Mutex<HashMap<StateKey, Arc<ServerState>>>,
    routes: Mutex<HashMap<Arc<str>, Arc<RouteStats>>>,
    groups: Mutex<HashMap<Arc<str>, Arc<GroupStats>>>,
    listeners: Mutex<HashMap<Arc<str>, Arc<ListenerStats>>>,
    queues: Mutex<HashMap<Arc<str>, Arc<super::queue::GroupQueue>>>,
    /// Process-wide counters (reloads, config hash).
    pub global: GlobalStats,
    /// Rate-limit buckets, the Redis client and protection counters.
    pub limits: crate::limits::LimitsRegistry,
    /// The response cache (kept across reloads) and its counters.
    pub cache: crate::cache::CacheRegistry,
    /// Servers discovered from DNS, by group (`discovery:`).
    pub discovery: super::discovered::Discovered,
}

fn entry<T: Default>(map: &Mutex<HashMap<Arc<str>, Arc<T>>>, name: &Arc<str>) -> Arc<T> {
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    map.entry(name.clone()).or_default().clone()
}

fn sorted<T>(map: &Mutex<HashMap<Arc<str>, Arc<T>>>) -> Vec<(Arc<str>, Arc<T>)> {
    let map = map.lock().unwrap_or_else(|e| e.into_inner());
    let mut v: Vec<_> = map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

impl StateRegistry {
    /// Counters of the route named `name` (kept across reloads).
    pub fn route_stats(&self, name: &Arc<str>) -> Arc<RouteStats> {
        entry(&self.routes, name)
    }

    /// Counters of the group named `name` (kept across reloads).
    pub fn group_stats(&self, name: &Arc<str>) -> Arc<GroupStats> {
        entry(&self.groups, name)
    }

    /// Counters of the listener named `name` (kept across reloads).
    pub fn listener_stats(&self, name: &Arc<str>) -> Arc<ListenerStats> {
        entry(&self.listeners, name)
    }

    /// The queue of the group named `name` (kept across reloads).
    pub fn group_queue(&self, name: &Arc<str>) -> Arc<super::queue::GroupQueue> {
        entry(&self.queues, name)
    }

    /// Every listener's counters, by name.
    pub fn all_listener_stats(&self) -> Vec<(Arc<str>, Arc<ListenerStats>)> {
        sorted(&self.listeners)
    }

    /// Every route's counters, by name (routes of earlier configs included).
    pub fn all_route_stats(&self) -> Vec<(Arc<str>, Arc<RouteStats>)> {
        sorted(&self.routes)
    }

    /// Every group's counters, by name (groups of earlier configs included).
    pub fn all_group_stats(&self) -> Vec<(Arc<str>, Arc<GroupStats>)> {
        sorted(&self.groups)
    }

    /// The state of server `id` of `group`, created when new.
    pub fn state(&self, group: &Arc<str>, id: &Arc<str>) -> Arc<ServerState> {
        let mut map = self.states.lock().unwrap_or_else(|e| e.into_inner());
        map.entry((group.clone(), id.clone())).or_default().clone()
    }

    /// Forgets servers that no longer appear in any group (`keep` says which stay).
    pub fn retain(&self, keep: impl Fn(&str, &str) -> bool) {
        let mut map = self.states.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|(g, s), _| keep(g, s));
    }
}

/// A server group (cluster) snapshot.
#[derive(Debug)]
pub struct ServerGroup {
    /// Group name.
    pub name: Arc<str>,
    /// Servers, in config order.
    pub servers: Vec<Server>,
    /// Upstream timeouts.
    pub timeouts: Timeouts,
    /// Extra attempts on another server when safe.
    pub retries: u32,
    /// The balancing algorithm (for `/status`).
    pub algorithm: crate::config::Algorithm,
    /// The balancing algorithm's state.
    pub balancer: Box<dyn Balancer<Server>>,
    /// Time constant of the servers' peak-EWMA response time (see
    /// [`ServerState::record_response_time`]).
    pub ewma_decay: Duration,
    /// How the group connects to its servers and pools the connections
    /// (each server's idle connections are in its [`ServerState`]).
    pub pool: super::pool::PoolSettings,
    /// Cookie affinity (`sticky:`); `None` for groups without it.
    pub sticky: Option<Sticky>,
    /// Passive ejection settings and fail-open behaviour.
    pub health: GroupHealth,
    /// Counters of the group (kept across reloads).
    pub stats: Arc<GroupStats>,
    /// The protocol spoken to the servers (`protocol`).
    pub protocol: crate::config::upstream_tls::UpstreamProtocol,
    /// TLS to the servers (`tls`); `None` = plain TCP.
    pub tls: Option<Arc<crate::config::upstream_tls::UpstreamTlsConfig>>,
    /// Backups, slow start, queue, PROXY protocol (`upstream/edge.rs`).
    pub edge: super::edge::GroupEdge,
}

impl ServerGroup {
    /// Builds the group of `config`, taking live state from `registry`
    /// (servers that keep their id keep their state and pooled connections).
    pub fn new(config: &GroupConfig, registry: &StateRegistry) -> Self {
        let discovered = registry.discovery.extend(config);
        let config = discovered.as_ref().unwrap_or(config);
        let pool = super::pool::PoolSettings {
            connect_timeout: config.timeouts.connect,
            idle_timeout: config.pool_idle_timeout,
            // A PROXY header names one client: such connections are not reused.
            max_idle: match config.edge.proxy_protocol {
                Some(_) => 0,
                None => config.pool_max_idle_per_server,
            },
            profile: config.tls.as_ref().map_or(0, |t| t.id),
            proxy_protocol: config.edge.proxy_protocol,
        };
        // Primaries first, then backups (each tier a slice with its balancer).
        let servers: Vec<Server> = super::edge::order(config)
            .into_iter()
            .map(|s| Server::new(s, registry.state(&config.name, &s.id)))
            .collect();
        let edge =
            super::edge::GroupEdge::new(config, &servers, registry.group_queue(&config.name));
        let balancer = balancer::build(config, &servers[..edge.primaries]);
        let sticky = config.sticky.as_ref().map(|s| {
            let ids: Vec<Arc<str>> = servers.iter().map(|s| s.id.clone()).collect();
            Sticky::new(s, &ids)
        });
        if config.tls.as_ref().is_some_and(|t| t.insecure) {
            crate::config::upstream_tls::warn_insecure_once(&config.name);
        }
        ServerGroup {
            name: config.name.clone(),
            timeouts: config.timeouts,
            retries: config.retries,
            balancer,
            pool,
            stats: registry.group_stats(&config.name),
            sticky,
            health: GroupHealth::new(config.passive, config.fail_open),
            ewma_decay: config.ewma_decay,
            algorithm: config.algorithm,
            servers,
            protocol: config.protocol,
            tls: config.tls.clone(),
            edge,
        }
    }

    /// Picks a server that is usable (see [`Self::is_usable`]) and not in
    /// `excluded` (a bit set of server indexes already tried by this request),
    /// or `None` when no server is usable. With `fail_open`, when no server
    /// at all is usable, picks among all servers not in `excluded` (sozu's
    /// fallback chain; Envoy's panic threshold). Allocates nothing.
    pub fn pick(&self, ctx: &PickContext<'_>, excluded: &Excluded) -> Option<usize> {
        self.pick_with(ctx, excluded, &|_| true)
    }

    /// [`Self::pick`] among the servers for which `extra` also holds (a free
    /// `max_connections` slot); backups only when no primary is usable.
    pub fn pick_with(
        &self,
        ctx: &PickContext<'_>,
        excluded: &Excluded,
        extra: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let now = LazyNow::new();
        let usable = |i: usize| !excluded.contains(i) && self.usable_at(i, &now) && extra(i);
        let any_usable = || (0..self.servers.len()).any(|i| self.usable_at(i, &now));
        let not_excluded =
            |i: usize| !excluded.contains(i) && !self.servers[i].state.is_drained() && extra(i);
        if self.health.is_failing_open() {
            if !any_usable() {
                return self.balancer.pick(
                    &self.servers[..self.edge.primaries],
                    ctx,
                    &not_excluded,
                );
            }
            self.health.leave_fail_open(&self.name);
        }
        let picked = self.pick_tiered(ctx, &usable, &now);
        if picked.is_none() && !any_usable() && self.health.enter_fail_open(&self.name) {
            return self
                .balancer
                .pick(&self.servers[..self.edge.primaries], ctx, &not_excluded);
        }
        picked
    }

    /// True when server `i` may receive traffic: marked up by active health
    /// checks, not drained by hand and not ejected by passive health.
    pub fn is_usable(&self, i: usize) -> bool {
        self.usable_at(i, &LazyNow::new())
    }

    pub(crate) fn usable_at(&self, i: usize, now: &LazyNow) -> bool {
        let server = &self.servers[i];
        server.state.is_healthy()
            && !server.state.is_drained()
            && !super::health::passive::is_ejected(&self.name, server, now)
    }

    /// True when server index `i` may receive this request: it exists, is
    /// [usable](Self::is_usable) and is not in `excluded`.
    pub fn usable(&self, i: usize, excluded: &Excluded) -> bool {
        !excluded.contains(i) && i < self.servers.len() && self.is_usable(i)
    }

    /// `pinned` when it is [usable](Self::usable) (sticky sessions: the
    /// server a valid affinity cookie names), else [`pick`](Self::pick).
    pub fn pick_pinned(
        &self,
        pinned: Option<usize>,
        ctx: &PickContext<'_>,
        excluded: &Excluded,
    ) -> Option<usize> {
        match pinned {
            Some(i) if self.usable(i, excluded) => Some(i),
            _ => self.pick(ctx, excluded),
        }
    }
}

impl ServerGroup {
    /// Records the time server `index` took to send its response headers,
    /// into its peak EWMA (used by `least_response_time`, exported as a
    /// metric for every group).
    pub fn record_response_time(&self, index: usize, rtt: Duration) {
        if let Some(s) = self.servers.get(index) {
            s.state.record_response_time(rtt, self.ewma_decay);
        }
    }

    /// Per-server live load for metrics: `(server, in-flight requests,
    /// peak-EWMA time to response headers or None before the first sample)`.
    pub fn server_loads(&self) -> impl Iterator<Item = (&Server, u64, Option<Duration>)> + '_ {
        self.servers.iter().map(|s| {
            (
                s,
                s.state.in_flight(),
                s.state.response_time_ewma(self.ewma_decay),
            )
        })
    }
}

/// Servers already tried by one request, as a small bit set (no allocation
/// for groups of up to 128 servers; larger groups spill to a `Vec`).
#[derive(Debug, Default, Clone)]
pub struct Excluded {
    bits: u128,
    more: Vec<usize>,
}

impl Excluded {
    /// Adds server index `i`.
    pub fn insert(&mut self, i: usize) {
        if i < 128 {
            self.bits |= 1u128 << i;
        } else {
            self.more.push(i);
        }
    }

    /// True when server index `i` was added.
    pub fn contains(&self, i: usize) -> bool {
        if i < 128 {
            self.bits & (1u128 << i) != 0
        } else {
            self.more.contains(&i)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;

    #[test]
    fn load_and_ewma_survive_a_rebuild() {
        let yaml = "listeners:\n  - address: 127.0.0.1:0\nroutes:\n  - group: g\ngroups:\n  g:\n    algorithm: least_response_time\n    servers:\n      - address: 127.0.0.1:9001\n        id: a\n";
        let config = crate::config::load_str(yaml, Path::new("t.yaml")).unwrap();
        let registry = StateRegistry::default();
        let first = ServerGroup::new(&config.groups[0], &registry);
        let _guard = first.servers[0].state.start_request();
        first.record_response_time(0, Duration::from_millis(40));
        let second = ServerGroup::new(&config.groups[0], &registry);
        let (server, in_flight, ewma) = second.server_loads().next().unwrap();
        assert_eq!(&*server.id, "a");
        assert_eq!(in_flight, 1);
        let ewma = ewma.unwrap();
        assert!(ewma <= Duration::from_millis(40) && ewma > Duration::from_millis(39));
    }
}
