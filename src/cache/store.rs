//! The in-memory store: stored responses in a [`quick_cache`] cache (a
//! sharded S3-FIFO/CLOCK-Pro style cache, size-aware through its weighter),
//! bounded by `cache.max_size` bytes of bodies, headers and keys.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::HeaderName;
use http::{HeaderMap, StatusCode};
use quick_cache::sync::Cache;
use quick_cache::{DefaultHashBuilder, OptionsBuilder, Weighter};

use super::key;
use super::policy::Directives;

/// Bytes counted for an entry besides its body, headers and key (the
/// structs, the map slot, the allocator's rounding).
pub const ENTRY_OVERHEAD: u64 = 256;

/// One stored response, immutable: a revalidation stores a new one.
#[derive(Debug)]
pub struct Entry {
    /// Status as received.
    pub status: StatusCode,
    /// Headers as received, after weir's hop-by-hop removal (and `Via`).
    pub headers: HeaderMap,
    /// The whole (identity) body.
    pub body: Bytes,
    /// When it was stored (the resident time counts from here).
    pub stored_at: Instant,
    /// Corrected initial age in seconds (RFC 9111 §4.2.3).
    pub initial_age: u64,
    /// Freshness lifetime in seconds.
    pub lifetime: u64,
    /// The response's `Cache-Control` directives.
    pub directives: Directives,
    /// Its `Vary` field names (sorted; empty = none).
    pub vary: Arc<[HeaderName]>,
    /// Its weight in the store (bytes, approximately).
    pub weight: u64,
    /// The key it is stored under (the variant key with `Vary`).
    pub key: Box<str>,
}

impl Entry {
    /// Its current age in seconds (RFC 9111 §4.2.3: initial age plus
    /// resident time).
    pub fn age(&self) -> u64 {
        self.initial_age + self.stored_at.elapsed().as_secs()
    }

    /// Remaining freshness in seconds (negative when stale): the `ttl` of
    /// `Cache-Status` (RFC 9211 §2.4).
    pub fn ttl(&self) -> i64 {
        i64::try_from(self.lifetime).unwrap_or(i64::MAX)
            - i64::try_from(self.age()).unwrap_or(i64::MAX)
    }

    /// The weight of a response with these parts under `key`.
    pub fn weigh(key: &str, headers: &HeaderMap, body: &Bytes) -> u64 {
        let headers: usize = headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 32)
            .sum();
        ENTRY_OVERHEAD + (key.len() + headers + body.len()) as u64
    }
}

/// A slot of the store: a response, or, under the primary key of a
/// response with `Vary`, the field names that select its variants.
#[derive(Debug, Clone)]
pub enum Slot {
    /// A stored response.
    Entry(Arc<Entry>),
    /// The `Vary` names; the variants are under [`key::variant`] keys.
    Vary(Arc<VaryMarker>),
}

/// What the primary key of a response with `Vary` holds.
#[derive(Debug)]
pub struct VaryMarker {
    /// The field names (sorted).
    pub names: Arc<[HeaderName]>,
    /// Variants stored before this are not used (they belong to an
    /// earlier marker that was replaced or invalidated).
    pub since: Instant,
}

#[derive(Debug, Clone)]
struct Weigh;

impl Weighter<Box<str>, Slot> for Weigh {
    fn weight(&self, key: &Box<str>, slot: &Slot) -> u64 {
        match slot {
            Slot::Entry(e) => e.weight,
            Slot::Vary(m) => ENTRY_OVERHEAD + key.len() as u64 + 32 * m.names.len() as u64,
        }
    }
}

/// The store.
#[derive(Debug)]
pub struct Store {
    cache: Cache<Box<str>, Slot, Weigh>,
}

impl Store {
    /// A store of at most `max_size` bytes for objects of at most
    /// `max_object_size`. The shards (each bounded on its own) are chosen so
    /// that each holds at least two of the largest objects.
    pub fn new(max_size: u64, max_object_size: u64) -> Self {
        let fit = (max_size / max_object_size.max(1) / 2).max(1);
        let shards = (1u64 << (63 - fit.leading_zeros())).min(16) as usize;
        let items = usize::try_from(max_size / 4096)
            .unwrap_or(usize::MAX)
            .max(64);
        let options = OptionsBuilder::new()
            .shards(shards)
            .estimated_items_capacity(items)
            .weight_capacity(max_size)
            .build();
        let cache = match options {
            Ok(o) => {
                Cache::with_options(o, Weigh, DefaultHashBuilder::default(), Default::default())
            }
            Err(_) => Cache::with_weighter(items, max_size, Weigh),
        };
        Store { cache }
    }

    /// The slot under `key`.
    pub fn get(&self, key: &str) -> Option<Slot> {
        self.cache.get(key)
    }

    /// Stores `slot` under `key` (replacing what was there).
    pub fn insert(&self, key: Box<str>, slot: Slot) {
        self.cache.insert(key, slot);
    }

    /// Removes the slot under `key`.
    pub fn remove(&self, key: &str) {
        self.cache.remove(key);
    }

    /// Removes every entry whose path (and query) starts with `prefix`
    /// (all of them when `prefix` is empty); returns how many went.
    pub fn purge(&self, prefix: &str) -> usize {
        let before = self.cache.len();
        if prefix.is_empty() {
            self.cache.clear();
        } else {
            self.cache
                .retain(|k, _| !key::path_of(k).starts_with(prefix));
        }
        before.saturating_sub(self.cache.len())
    }

    /// Slots held (responses and `Vary` markers).
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    /// Bytes held (the weights' sum).
    pub fn weight(&self) -> u64 {
        self.cache.weight()
    }

    /// The byte capacity.
    pub fn capacity(&self) -> u64 {
        self.cache.capacity()
    }
}
