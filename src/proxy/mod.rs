//! The request path: the hyper service that routes, picks a server, forwards
//! and answers; proxy header rewriting; body types; the access log.

pub mod access_log;
pub mod body;
pub mod headers;
pub mod protection;
pub mod service;
pub mod upgrade;

use std::sync::Arc;

use crate::config::Config;
use crate::metrics::RouteStats;
use crate::route::RouteTable;
use crate::upstream::{ServerGroup, StateRegistry};

/// Everything a request needs from the config: the route table and the
/// groups, built once per config and published whole through one `ArcSwap`
/// (pingora's selector-as-snapshot, with a single swap instead of two).
#[derive(Debug)]
pub struct Snapshot {
    /// The route table.
    pub routes: RouteTable,
    /// Server groups; `Route::group` indexes into this.
    pub groups: Vec<Arc<ServerGroup>>,
    /// Counters of each route, in route order.
    pub route_stats: Vec<Arc<RouteStats>>,
    /// Rate limits, IP rules and body limits of each route.
    pub limits: crate::limits::Limits,
}

impl Snapshot {
    /// Builds the snapshot of `config`, keeping live server state, pooled
    /// connections and counters from `registry`.
    pub fn build(config: &Config, registry: &StateRegistry) -> Self {
        let groups = config
            .groups
            .iter()
            .map(|g| Arc::new(ServerGroup::new(g, registry)))
            .collect();
        // Listener connection caps apply at start and on every reload.
        for l in &config.listeners {
            registry
                .listener_stats(&l.name)
                .conn_limit
                .configure(l.max_connections, l.max_connections_per_ip);
        }
        let route_names: Vec<Arc<str>> = config.routes.iter().map(|r| r.name.clone()).collect();
        Snapshot {
            limits: crate::limits::Limits::build(&config.limits, &route_names, &registry.limits),
            routes: RouteTable::new(config.routes.clone()).with_jwt(config.jwt.clone()),
            groups,
            route_stats: config
                .routes
                .iter()
                .map(|r| registry.route_stats(&r.name))
                .collect(),
        }
    }

    /// The group named `name`.
    pub fn group(&self, name: &str) -> Option<&Arc<ServerGroup>> {
        self.groups.iter().find(|g| &*g.name == name)
    }
}
