//! The request path: the hyper service that routes, picks a server, forwards
//! and answers; proxy header rewriting; body types; the access log.

pub mod access_log;
pub mod body;
pub mod client_body;
pub mod headers;
pub mod reject;
pub mod request_checks;
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
    /// The admin token (`admin.token*`), read by the admin API on each
    /// mutating request, so a reload can change it.
    pub admin_token: Option<Arc<[u8]>>,
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
        Snapshot {
            routes: RouteTable::new(config.routes.clone()).with_jwt(config.jwt.clone()),
            groups,
            route_stats: config
                .routes
                .iter()
                .map(|r| registry.route_stats(&r.name))
                .collect(),
            admin_token: config.admin_token.clone(),
        }
    }

    /// The group named `name`.
    pub fn group(&self, name: &str) -> Option<&Arc<ServerGroup>> {
        self.groups.iter().find(|g| &*g.name == name)
    }
}
