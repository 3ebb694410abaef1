//! A server group: its servers, its balancer and its upstream connection pool,
//! built once per config and shared read-only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::balancer::{self, Balancer, PickContext};
use crate::config::{GroupConfig, Timeouts};
use crate::forward::UpstreamClient;

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
    /// Time constant of the servers' peak-EWMA response time (see
    /// [`ServerState::record_response_time`]).
    pub ewma_decay: Duration,
    /// The pooled upstream client of this group.
    pub client: UpstreamClient,
}

impl ServerGroup {
    /// Builds the group of `config`, taking live state from `registry`.
    pub fn new(config: &GroupConfig, registry: &StateRegistry) -> Self {
        let servers: Vec<Server> = config
            .servers
            .iter()
            .map(|s| Server::new(s, registry.state(&config.name, &s.id)))
            .collect();
        let balancer = balancer::build(config, &servers);
        ServerGroup {
            name: config.name.clone(),
            timeouts: config.timeouts,
            retries: config.retries,
            balancer,
            ewma_decay: config.ewma_decay,
            client: crate::forward::client(config),
            servers,
        }
    }

    /// Picks a server that is healthy and not in `excluded` (a bit set of
    /// server indexes already tried by this request), or `None` when no server
    /// is usable. Allocates nothing.
    pub fn pick(&self, ctx: &PickContext<'_>, excluded: &Excluded) -> Option<usize> {
        let usable = |i: usize| !excluded.contains(i) && self.servers[i].state.is_healthy();
        self.balancer.pick(&self.servers, ctx, &usable)
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
