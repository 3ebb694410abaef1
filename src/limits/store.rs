//! The local key store of a rate-limit policy: one GCRA timestamp (the
//! "theoretical arrival time", TAT) per key, in a cache with a hard cap.
//!
//! Memory is bounded by construction: a key is stored as a 64-bit SipHash
//! of its bytes under a per-process random seed (so clients cannot aim
//! collisions at someone else's bucket; two real keys share a bucket with
//! probability about n²/2⁶⁵, 3·10⁻⁸ for a million keys), and the value is the
//! 64-bit TAT. Each entry therefore has a fixed size, and the cache
//! (quick_cache, a sharded CLOCK-Pro/S3-FIFO-style cache) holds at most
//! `max_keys` of them. Past the cap the coldest keys are evicted and counted:
//! a flood of one-time keys churns through the cold queue while keys seen
//! repeatedly stay hot. An evicted key starts again with a full bucket,
//! which is what it would have after being idle anyway. The measured cost is
//! in `docs/limits.md`: about 73 bytes per key of the cap as quick_cache
//! accounts it (entries, index, ghost list), so 100,000 keys ≈ 7.3 MB; the
//! tests hold it under 96 bytes per key.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use governor::nanos::Nanos;
use governor::state::StateStore;
use quick_cache::sync::{Cache, EntryAction, EntryResult};
use quick_cache::{Lifecycle, UnitWeighter};

/// Counts evictions from the store.
#[derive(Debug, Clone, Default)]
pub struct EvictionCounter(Arc<AtomicU64>);

impl Lifecycle<u64, u64> for EvictionCounter {
    type RequestState = ();

    fn on_evict(&self, _state: &mut (), _key: u64, _val: u64) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// The keys are already SipHash outputs: hash them no further.
#[derive(Debug, Clone, Copy, Default)]
pub struct IdentityHash;

/// The hasher of [`IdentityHash`].
#[derive(Debug, Default)]
pub struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed; fold anything else in for completeness.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl BuildHasher for IdentityHash {
    type Hasher = IdentityHasher;
    fn build_hasher(&self) -> IdentityHasher {
        IdentityHasher(0)
    }
}

/// A capped key → TAT store, usable as a `governor` state store.
pub struct BoundedStore {
    cache: Cache<u64, u64, UnitWeighter, IdentityHash, EvictionCounter>,
    evictions: EvictionCounter,
    seed: std::hash::RandomState,
    max_keys: usize,
}

impl std::fmt::Debug for BoundedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundedStore")
            .field("len", &self.len())
            .field("max_keys", &self.max_keys)
            .field("evictions", &self.evictions())
            .finish()
    }
}

impl BoundedStore {
    /// A store that holds at most `max_keys` keys (at least 1).
    pub fn new(max_keys: usize) -> Self {
        let max_keys = max_keys.max(1);
        let evictions = EvictionCounter::default();
        BoundedStore {
            cache: Cache::with(
                max_keys,
                max_keys as u64,
                UnitWeighter,
                IdentityHash,
                evictions.clone(),
            ),
            evictions,
            seed: std::hash::RandomState::new(),
            max_keys,
        }
    }

    /// The stored form of a key: its seeded 64-bit hash, fed by `write`.
    pub fn key_of(&self, write: impl FnOnce(&mut dyn Hasher)) -> u64 {
        let mut h = self.seed.build_hasher();
        write(&mut h);
        h.finish()
    }

    /// Keys stored now.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    /// True when no key is stored.
    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    /// The cap.
    pub fn max_keys(&self) -> usize {
        self.max_keys
    }

    /// Keys evicted so far to stay under the cap.
    pub fn evictions(&self) -> u64 {
        self.evictions.0.load(Ordering::Relaxed)
    }

    /// Bytes held by the cache's tables (entries, index and ghost list).
    /// Keys and values are plain integers, so this is all of it.
    pub fn memory_used(&self) -> usize {
        let m = self.cache.memory_used();
        m.entries + m.map
    }
}

impl StateStore for BoundedStore {
    type Key = u64;

    fn measure_and_replace<T, F, E>(&self, key: &u64, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        // The decision runs under the shard's write lock: read, decide and
        // write back are one step, as governor's CAS loop makes them.
        let mut outcome = None;
        let entry = self.cache.entry(key, None, |_, tat| {
            let r = f(Some(Nanos::from(*tat)));
            if let Ok((_, next)) = &r {
                *tat = next.as_u64();
            }
            outcome = Some(r.map(|(t, _)| t));
            EntryAction::Retain(())
        });
        match entry {
            EntryResult::Vacant(guard) => match f(None) {
                Ok((t, next)) => {
                    let _ = guard.insert(next.as_u64());
                    Ok(t)
                }
                Err(e) => Err(e),
            },
            _ => match outcome {
                Some(r) => r,
                // Not reached (no timeout was given); decide as for a new key.
                None => f(None).map(|(t, _)| t),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_holds_and_evictions_count() {
        let store = BoundedStore::new(1000);
        for i in 0..10_000u64 {
            let k = store.key_of(|h| h.write_u64(i));
            let _: Result<(), ()> = store.measure_and_replace(&k, |_| Ok(((), Nanos::from(1))));
        }
        assert!(store.len() <= 1000, "{}", store.len());
        assert!(store.evictions() >= 9000, "{}", store.evictions());
    }
}
