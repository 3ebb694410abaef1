//! The request path: the hyper service that routes, picks a server, forwards
//! and answers; proxy header rewriting; body types; the access log.

pub mod access_log;
pub mod activity;
pub mod body;
pub mod cache_refresh;
pub mod grpc;
pub mod headers;
mod pipeline;
pub mod protection;
pub mod redirect;
pub mod reject;
pub mod request_checks;
pub mod service;
pub mod upgrade;

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

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
    /// The admin token (`admin.token*`), read by the admin API on each
    /// mutating request, so a reload can change it.
    pub admin_token: Option<Arc<[u8]>>,
    /// The response cache and each route's cache policy.
    pub cache: crate::cache::RouteCaches,
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
            admin_token: config.admin_token.clone(),
            cache: crate::cache::RouteCaches::build(&config.cache, &config.routes, &registry.cache),
        }
    }

    /// The group named `name`.
    pub fn group(&self, name: &str) -> Option<&Arc<ServerGroup>> {
        self.groups.iter().find(|g| &*g.name == name)
    }
}

/// The published snapshot: swapped whole by a reload, read by every worker.
///
/// Each worker keeps its own replica ([`LocalSnapshot`], one allocation per
/// worker and config), so that a request clones an `Arc` whose reference
/// count only its own worker writes; a reload bumps the generation, and each
/// worker takes the new snapshot on its next request. A request costs one
/// read of the (read-mostly) generation, no write on a shared cache line.
#[derive(Debug)]
pub struct SharedSnapshot {
    current: ArcSwap<Snapshot>,
    generation: AtomicU64,
    id: u64,
}

/// A worker's replica of the published [`Snapshot`] (derefs to it).
#[derive(Debug)]
pub struct LocalSnapshot(Arc<Snapshot>);

impl std::ops::Deref for LocalSnapshot {
    type Target = Snapshot;

    fn deref(&self) -> &Snapshot {
        &self.0
    }
}

struct Replica {
    id: u64,
    generation: u64,
    local: Arc<LocalSnapshot>,
}

thread_local! {
    static REPLICAS: RefCell<Vec<Replica>> = const { RefCell::new(Vec::new()) };
}

impl SharedSnapshot {
    /// Publishes `snapshot` as the first one.
    pub fn new(snapshot: Arc<Snapshot>) -> Self {
        static IDS: AtomicU64 = AtomicU64::new(0);
        SharedSnapshot {
            current: ArcSwap::new(snapshot),
            generation: AtomicU64::new(0),
            id: IDS.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Publishes `snapshot`: requests that start from now on use it.
    pub fn store(&self, snapshot: Arc<Snapshot>) {
        self.current.store(snapshot);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The current snapshot (for the control plane: admin, reload).
    pub fn load_full(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// This thread's replica of the current snapshot.
    #[inline]
    pub fn local(&self) -> Arc<LocalSnapshot> {
        let generation = self.generation.load(Ordering::Acquire);
        REPLICAS.with(|r| {
            let mut replicas = r.borrow_mut();
            if let Some(e) = replicas.iter_mut().find(|e| e.id == self.id) {
                if e.generation != generation {
                    e.generation = generation;
                    e.local = Arc::new(LocalSnapshot(self.current.load_full()));
                }
                return Arc::clone(&e.local);
            }
            let local = Arc::new(LocalSnapshot(self.current.load_full()));
            replicas.push(Replica {
                id: self.id,
                generation,
                local: Arc::clone(&local),
            });
            local
        })
    }
}

impl Drop for SharedSnapshot {
    fn drop(&mut self) {
        // The replica of this thread; other threads' replicas go with their
        // (worker) threads.
        let _ = REPLICAS.try_with(|r| {
            if let Ok(mut r) = r.try_borrow_mut() {
                r.retain(|e| e.id != self.id);
            }
        });
    }
}
