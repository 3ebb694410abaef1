//! Per-worker shards: one copy of a value per worker thread, each on its own
//! cache line, so that counters and pools written on the request path are
//! never written by two cores (sozu's thread-local metrics, HAProxy's
//! per-thread idle connection lists). Readers (a `/metrics` scrape) sum the
//! shards.
//!
//! The worker threads (see `runtime::workers`) call [`set_current`] once at
//! start; every other thread (the control runtime, tests) uses shard 0.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;

/// Shards made by [`Sharded::default`]: the number of CPU cores, raised by
/// [`reserve`] when a proxy runs more workers than that. 0 = not read yet.
static DEFAULT_SHARDS: AtomicUsize = AtomicUsize::new(0);

/// The shard count of values made from now on: at least the CPU count and
/// every worker count [`reserve`]d.
pub fn default_count() -> usize {
    let n = DEFAULT_SHARDS.load(Ordering::Relaxed);
    if n != 0 {
        return n;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    DEFAULT_SHARDS.fetch_max(cores, Ordering::Relaxed);
    DEFAULT_SHARDS.load(Ordering::Relaxed)
}

/// Makes later values have at least `workers` shards (a proxy calls it with
/// its worker count before it builds its counters). Values made earlier
/// keep their count; a worker beyond it shares a shard (correct, slower).
pub fn reserve(workers: usize) {
    default_count();
    DEFAULT_SHARDS.fetch_max(workers.clamp(1, 1024), Ordering::Relaxed);
}

thread_local! {
    static CURRENT: Cell<usize> = const { Cell::new(0) };
}

/// Marks this thread as worker `index` (0-based): [`Sharded::local`] then
/// returns shard `index % len`.
pub fn set_current(index: usize) {
    CURRENT.with(|c| c.set(index));
}

/// The worker index of this thread (0 outside the workers).
#[inline]
pub fn current() -> usize {
    CURRENT.with(Cell::get)
}

thread_local! {
    static BUSY: Cell<bool> = const { Cell::new(false) };
}

/// Notes that this worker thread served a request (one thread-local write;
/// read back by [`take_busy`]).
#[inline]
pub fn mark_busy() {
    BUSY.with(|b| b.set(true));
}

/// True when this thread called [`mark_busy`] since the last call; clears
/// the mark. The worker's 100 ms tick uses it to do idle-only housekeeping.
pub fn take_busy() -> bool {
    BUSY.with(|b| b.replace(false))
}

/// One `T` per worker, each padded to its own cache line (128 bytes on
/// x86_64, crossbeam-utils' `CachePadded`).
#[derive(Debug)]
pub struct Sharded<T> {
    shards: Box<[CachePadded<T>]>,
}

impl<T: Default> Sharded<T> {
    /// `n` shards (at least one), each `T::default()`.
    pub fn new(n: usize) -> Self {
        Sharded {
            shards: (0..n.max(1))
                .map(|_| CachePadded::new(T::default()))
                .collect(),
        }
    }
}

impl<T: Default> Default for Sharded<T> {
    /// [`default_count`] shards.
    fn default() -> Self {
        Sharded::new(default_count())
    }
}

impl<T> Sharded<T> {
    /// This thread's shard.
    #[inline]
    pub fn local(&self) -> &T {
        let i = current();
        let n = self.shards.len();
        &self.shards[if i < n { i } else { i % n }]
    }

    /// Every shard, for summing.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.shards.iter().map(|s| &**s)
    }

    /// Shard `i` (modulo the shard count).
    pub fn get(&self, i: usize) -> &T {
        &self.shards[i % self.shards.len()]
    }

    /// The number of shards.
    pub fn len(&self) -> usize {
        self.shards.len()
    }

    /// Never true (there is at least one shard).
    pub fn is_empty(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn each_worker_thread_writes_its_own_shard() {
        let s = std::sync::Arc::new(Sharded::<AtomicU64>::new(2));
        let handles: Vec<_> = (0..2)
            .map(|w| {
                let s = s.clone();
                std::thread::spawn(move || {
                    set_current(w);
                    for _ in 0..(w + 1) * 10 {
                        s.local().fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(s.get(0).load(Ordering::Relaxed), 10);
        assert_eq!(s.get(1).load(Ordering::Relaxed), 20);
        assert_eq!(s.iter().map(|a| a.load(Ordering::Relaxed)).sum::<u64>(), 30);
        // Worker 5 of a 2-shard value wraps around to shard 1.
        set_current(5);
        s.local().fetch_add(1, Ordering::Relaxed);
        set_current(0);
        assert_eq!(s.get(1).load(Ordering::Relaxed), 21);
    }
}
