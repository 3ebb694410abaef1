//! The shared in-memory response cache (RFC 9111), for routes with
//! `cache: true` or `cache: { default_ttl }`; sized by the top-level
//! `cache: { max_size, max_object_size, lock_timeout }`. See `docs/cache.md`.
//!
//! - [`policy`]: the RFC 9111 rules as pure functions (storable?
//!   freshness, age, may a stored response answer this request?).
//! - [`key`]: primary keys (scheme, host, path and query) and `Vary` variants.
//! - [`store`]: the size-bounded store ([`quick_cache`], weighted by bytes).
//! - [`coalesce`]: concurrent misses for one key make one upstream request.
//! - [`tee`]: the body is copied while it streams to the first client and
//!   stored at its end when complete and within `max_object_size`.
//! - [`lookup`]: the request-path hooks `proxy::service` calls.
//! - [`refresh`]: a background revalidation for `stale-while-revalidate`
//!   (sent by `proxy::cache_refresh`).
//!
//! The cache lives in the [`CacheRegistry`] (part of the state registry that
//! outlives reloads): a reload keeps the stored responses unless
//! `max_size` or `max_object_size` changed; a config without any cached
//! route drops them.

pub mod coalesce;
pub mod key;
pub mod lookup;
pub mod metrics;
pub mod policy;
pub mod refresh;
pub mod store;
pub mod tee;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::metrics::Counter;

/// Default `cache.max_size`: 256 MiB.
pub const DEFAULT_MAX_SIZE: u64 = 256 << 20;
/// Default `cache.max_object_size`: 8 MiB.
pub const DEFAULT_MAX_OBJECT_SIZE: u64 = 8 << 20;
/// Default `cache.lock_timeout`: how long a coalesced request waits for the
/// one that went to the server (nginx `proxy_cache_lock_timeout`'s 5 s).
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// The validated top-level `cache` section (defaults when a route asks for
/// caching and the section is absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Most bytes held (bodies, headers and keys), evicting by size and use.
    pub max_size: u64,
    /// Largest body stored; larger ones stream through uncached.
    pub max_object_size: u64,
    /// Longest wait of a coalesced request for the leader's response.
    pub lock_timeout: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_size: DEFAULT_MAX_SIZE,
            max_object_size: DEFAULT_MAX_OBJECT_SIZE,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
        }
    }
}

/// A route's `cache` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RoutePolicy {
    /// `default_ttl`: also store responses without freshness information
    /// (whose status is cacheable by default) for this long.
    pub default_ttl: Option<Duration>,
}

/// The cache part of a validated config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheSettings {
    /// The cache's sizes; `None` when no route caches.
    pub config: Option<CacheConfig>,
    /// Each route's setting, in route order (`None` = not cached).
    pub routes: Vec<Option<RoutePolicy>>,
}

/// Cache counters, kept across reloads (sharded per worker).
#[derive(Debug, Default)]
pub struct CacheStats {
    /// Answered from the cache with a fresh response.
    pub hits: Counter,
    /// Forwarded because nothing usable was stored.
    pub misses: Counter,
    /// Answered with a stale response (`stale-while-revalidate`, `stale-if-error`).
    pub stale: Counter,
    /// Stale responses validated by the server with a 304.
    pub revalidated: Counter,
    /// Requests that waited for another's response instead of forwarding.
    pub coalesced: Counter,
    /// Responses stored.
    pub stored: Counter,
    /// Responses not stored because their body passed `max_object_size`.
    pub too_large: Counter,
    /// Forwarded past the cache (methods other than GET/HEAD, `Range`).
    pub bypassed: Counter,
}

/// One cache instance: its store, flights and config.
#[derive(Debug)]
pub struct Cache {
    /// Its sizes.
    pub config: CacheConfig,
    /// The stored responses.
    pub store: Arc<store::Store>,
    /// Requests in flight to the server, by key.
    pub flights: Arc<coalesce::Flights>,
    /// Counters.
    pub stats: Arc<CacheStats>,
}

impl Cache {
    /// Removes the stored responses whose path and query start with
    /// `prefix` (every one when it is empty); returns how many went.
    pub fn purge(&self, prefix: &str) -> usize {
        self.store.purge(prefix)
    }

    /// Stores `entry` (whose primary key is `primary`): a response without
    /// `Vary` under the primary key; one with `Vary` under its variant key,
    /// with a marker naming the fields under the primary key (kept when it
    /// names the same fields, so sibling variants stay).
    pub fn put(&self, primary: Box<str>, entry: &Arc<store::Entry>) {
        use store::{Slot, VaryMarker};
        if entry.vary.is_empty() {
            self.store.insert(primary, Slot::Entry(Arc::clone(entry)));
        } else {
            let same =
                matches!(self.store.get(&primary), Some(Slot::Vary(m)) if m.names == entry.vary);
            if !same {
                let marker = VaryMarker {
                    names: Arc::clone(&entry.vary),
                    since: entry.stored_at,
                };
                self.store.insert(primary, Slot::Vary(Arc::new(marker)));
            }
            self.store
                .insert(entry.key.clone(), Slot::Entry(Arc::clone(entry)));
        }
        self.stats.stored.inc();
    }
}

/// Holds the cache across reloads (in `upstream::StateRegistry`).
#[derive(Debug, Default)]
pub struct CacheRegistry {
    current: Mutex<Option<Arc<Cache>>>,
    /// Counters of every cache instance, monotonic across reloads.
    pub stats: Arc<CacheStats>,
}

impl CacheRegistry {
    /// The cache for `config`: the current one when its sizes are the same
    /// (stored responses survive a reload), else a new, empty one. `None`
    /// drops the current one.
    pub fn instance(&self, config: Option<&CacheConfig>) -> Option<Arc<Cache>> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let Some(config) = config else {
            *current = None;
            return None;
        };
        let cache = match current.as_ref() {
            Some(c) if c.config == *config => Arc::clone(c),
            Some(c)
                if c.config.max_size == config.max_size
                    && c.config.max_object_size == config.max_object_size =>
            {
                Arc::new(Cache {
                    config: *config,
                    store: Arc::clone(&c.store),
                    flights: Arc::clone(&c.flights),
                    stats: Arc::clone(&self.stats),
                })
            }
            _ => Arc::new(Cache {
                config: *config,
                store: Arc::new(store::Store::new(config.max_size, config.max_object_size)),
                flights: Arc::default(),
                stats: Arc::clone(&self.stats),
            }),
        };
        *current = Some(Arc::clone(&cache));
        Some(cache)
    }

    /// The current cache, if any route caches.
    pub fn current(&self) -> Option<Arc<Cache>> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The cache as a snapshot sees it: the instance and each route's policy.
#[derive(Debug, Default)]
pub struct RouteCaches {
    cache: Option<Arc<Cache>>,
    /// Each route's policy and name (part of the key: two routes may send
    /// one URL to different groups, by header or claim).
    routes: Vec<Option<(RoutePolicy, Arc<str>)>>,
}

impl RouteCaches {
    /// Builds the snapshot's view of `settings` for `routes`, reusing the
    /// registry's cache when its sizes did not change.
    pub fn build(
        settings: &CacheSettings,
        routes: &[crate::route::Route],
        registry: &CacheRegistry,
    ) -> Self {
        RouteCaches {
            cache: registry.instance(settings.config.as_ref()),
            routes: settings
                .routes
                .iter()
                .zip(routes)
                .map(|(p, r)| p.map(|p| (p, r.name.clone())))
                .collect(),
        }
    }

    /// The cache, policy and name of route `index`, when it caches.
    #[inline]
    pub fn route(&self, index: usize) -> Option<(&Arc<Cache>, RoutePolicy, &str)> {
        let (policy, name) = self.routes.get(index)?.as_ref()?;
        Some((self.cache.as_ref()?, *policy, name))
    }

    /// The cache instance, if any route caches.
    pub fn cache(&self) -> Option<&Arc<Cache>> {
        self.cache.as_ref()
    }
}
