//! The request path: the hyper service that routes, picks a server, forwards
//! and answers; proxy header rewriting; body types; the access log.

pub mod access_log;
pub mod body;
pub mod headers;
pub mod service;

use std::sync::Arc;

use crate::config::Config;
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
}

impl Snapshot {
    /// Builds the snapshot of `config`, keeping live server state from `registry`.
    pub fn build(config: &Config, registry: &StateRegistry) -> Self {
        Snapshot {
            routes: RouteTable::new(config.routes.clone()).with_jwt(config.jwt.clone()),
            groups: config
                .groups
                .iter()
                .map(|g| Arc::new(ServerGroup::new(g, registry)))
                .collect(),
        }
    }
}
