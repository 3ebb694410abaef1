//! A server group: its servers, its balancer and its upstream connection pool,
//! built once per config and shared read-only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::balancer::{self, Balancer, PickContext};
use crate::config::{GroupConfig, Timeouts};
use crate::forward::UpstreamClient;
use crate::health::{self, GroupHealth, LazyNow};

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
}

impl StateRegistry {
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
    /// The balancing algorithm's state.
    pub balancer: Box<dyn Balancer>,
    /// The pooled upstream client of this group.
    pub client: UpstreamClient,
    /// Passive ejection settings and fail-open behaviour.
    pub health: GroupHealth,
}

impl ServerGroup {
    /// Builds the group of `config`, taking live state from `registry`.
    pub fn new(config: &GroupConfig, registry: &StateRegistry) -> Self {
        let servers: Vec<Server> = config
            .servers
            .iter()
            .map(|s| Server::new(s, registry.state(&config.name, &s.id)))
            .collect();
        let balancer = balancer::build(config.algorithm, &servers);
        ServerGroup {
            name: config.name.clone(),
            timeouts: config.timeouts,
            retries: config.retries,
            balancer,
            client: crate::forward::client(config),
            health: GroupHealth::new(config.passive, config.fail_open),
            servers,
        }
    }

    /// Picks a server that is usable (see [`Self::is_usable`]) and not in
    /// `excluded` (a bit set of server indexes already tried by this request),
    /// or `None` when no server is usable. With `fail_open`, when no server
    /// at all is usable, picks among all servers not in `excluded` (sozu's
    /// fallback chain; Envoy's panic threshold). Allocates nothing.
    pub fn pick(&self, ctx: &PickContext<'_>, excluded: &Excluded) -> Option<usize> {
        let now = LazyNow::new();
        let usable = |i: usize| !excluded.contains(i) && self.usable_at(i, &now);
        let any_usable = || (0..self.servers.len()).any(|i| self.usable_at(i, &now));
        let not_excluded = |i: usize| !excluded.contains(i);
        if self.health.is_failing_open() {
            if !any_usable() {
                return self.balancer.pick(&self.servers, ctx, &not_excluded);
            }
            self.health.leave_fail_open(&self.name);
        }
        let picked = self.balancer.pick(&self.servers, ctx, &usable);
        if picked.is_none() && !any_usable() && self.health.enter_fail_open(&self.name) {
            return self.balancer.pick(&self.servers, ctx, &not_excluded);
        }
        picked
    }

    /// True when server `i` may receive traffic: marked up by active health
    /// checks and not ejected by passive health.
    pub fn is_usable(&self, i: usize) -> bool {
        self.usable_at(i, &LazyNow::new())
    }

    fn usable_at(&self, i: usize, now: &LazyNow) -> bool {
        let server = &self.servers[i];
        server.state.is_healthy() && !health::passive::is_ejected(&self.name, server, now)
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
