//! A small, fast per-thread pseudo-random generator for the balancers.
//!
//! wyrand (Wang Yi's `wyhash` PRNG, the generator of the `fastrand` crate):
//! one add and one 64×64→128 multiply per number, state in a `thread_local`
//! `Cell`, so a pick takes no lock and shares no cache line across threads.
//! Not cryptographic: it only spreads load.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

thread_local! {
    static STATE: Cell<u64> = const { Cell::new(0) };
}

/// A fresh seed per thread: std's `RandomState` keys are random per process
/// and differ per thread.
fn seed() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(0x9e37_79b9_7f4a_7c15);
    h.finish() | 1
}

/// The next pseudo-random `u64` of this thread's generator.
#[inline]
pub fn next_u64() -> u64 {
    STATE.with(|s| {
        let mut x = s.get();
        if x == 0 {
            x = seed();
        }
        x = x.wrapping_add(0xa076_1d64_78bd_642f);
        s.set(x);
        let t = u128::from(x) * u128::from(x ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    })
}

/// A pseudo-random number in `0..n` (`n > 0`), by Lemire's multiply-shift
/// (bias below `n / 2^64`, negligible here).
#[inline]
pub fn below(n: u64) -> u64 {
    ((u128::from(next_u64()) * u128::from(n)) >> 64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut seen = [0u32; 7];
        for _ in 0..7000 {
            let v = below(7) as usize;
            seen[v] += 1;
        }
        assert!(seen.iter().all(|&c| c > 800 && c < 1200), "{seen:?}");
    }

    #[test]
    fn threads_get_different_sequences() {
        let a = std::thread::spawn(next_u64).join().unwrap();
        let b = std::thread::spawn(next_u64).join().unwrap();
        assert_ne!(a, b);
    }
}
