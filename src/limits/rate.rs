//! The local rate limiter of one policy: GCRA (the `governor` crate) over a
//! [`BoundedStore`], one timestamp per key and no timer anywhere.
//!
//! GCRA in one paragraph: each key stores a theoretical arrival time (TAT).
//! With `T` the period of one token and `τ = (burst − 1)·T`, a request at
//! time `now` conforms when `now ≥ TAT − τ`; it then sets
//! `TAT = max(TAT, now) + T`. That is a token bucket of `burst` tokens
//! refilled one per `T`, kept in a single number.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, MonotonicClock};
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::{Quota, RateLimiter};

use super::policy::{KeyValue, PolicyConfig};
use super::store::BoundedStore;

/// What a store answered for one request under one policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The request conforms (a token was taken).
    pub allowed: bool,
    /// Requests the bucket still allows at once after this one.
    pub remaining: u32,
    /// When refused: the wait until a request would conform (zero when allowed).
    pub retry_after: Duration,
    /// The wait until the bucket is full again.
    pub reset: Duration,
}

impl Decision {
    /// The decision for an allowed request that leaves `remaining` tokens.
    pub fn allowed(remaining: u32, burst: u32, period: Duration) -> Self {
        Decision {
            allowed: true,
            remaining,
            retry_after: Duration::ZERO,
            reset: period * burst.saturating_sub(remaining),
        }
    }

    /// The decision for a refused request that may retry after `wait`.
    pub fn refused(wait: Duration, burst: u32, period: Duration) -> Self {
        Decision {
            allowed: false,
            remaining: 0,
            retry_after: wait,
            reset: wait + period * burst.saturating_sub(1),
        }
    }
}

/// The shared handle governor's limiter stores its state through.
#[derive(Debug, Clone)]
pub struct SharedStore(pub Arc<BoundedStore>);

impl StateStore for SharedStore {
    type Key = u64;

    fn measure_and_replace<T, F, E>(&self, key: &u64, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        self.0.measure_and_replace(key, f)
    }
}

/// One local policy's limiter. `C` is the clock: the monotonic clock in
/// weir, governor's `FakeRelativeClock` in tests.
pub struct LocalLimiter<C: Clock = MonotonicClock> {
    limiter: RateLimiter<u64, SharedStore, C, StateInformationMiddleware>,
    store: Arc<BoundedStore>,
    burst: u32,
    period: Duration,
}

impl<C: Clock> std::fmt::Debug for LocalLimiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalLimiter")
            .field("burst", &self.burst)
            .field("period", &self.period)
            .field("store", &self.store)
            .finish()
    }
}

impl LocalLimiter<MonotonicClock> {
    /// The limiter of `policy` on the monotonic clock.
    pub fn new(policy: &PolicyConfig) -> Self {
        Self::with_clock(policy, MonotonicClock)
    }
}

impl<C: Clock> LocalLimiter<C> {
    /// The limiter of `policy` reading time from `clock`.
    pub fn with_clock(policy: &PolicyConfig, clock: C) -> Self {
        Self::from_parts(policy.period, policy.burst, policy.max_keys, clock)
    }

    /// A limiter of `burst` tokens, one back every `period`, keeping at most
    /// `max_keys` keys.
    pub fn from_parts(period: Duration, burst: u32, max_keys: usize, clock: C) -> Self {
        let period = period.max(Duration::from_nanos(1));
        let burst = burst.max(1);
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
        let store = Arc::new(BoundedStore::new(max_keys));
        LocalLimiter {
            limiter: RateLimiter::new(quota, SharedStore(Arc::clone(&store)), clock),
            store,
            burst,
            period,
        }
    }

    /// Checks (and counts, when it conforms) one request with key `key`.
    pub fn check(&self, key: &KeyValue<'_>) -> Decision {
        let hashed = self.store.key_of(|h| {
            let mut w = HasherRef(h);
            key.hash_into(&mut w);
        });
        self.check_hashed(hashed)
    }

    /// Checks one request whose key is already hashed ([`BoundedStore::key_of`]).
    pub fn check_hashed(&self, key: u64) -> Decision {
        match self.limiter.check_key(&key) {
            Ok(snapshot) => {
                Decision::allowed(snapshot.remaining_burst_capacity(), self.burst, self.period)
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.limiter.clock().now());
                Decision::refused(wait, self.burst, self.period)
            }
        }
    }

    /// The key store (size, evictions, memory).
    pub fn store(&self) -> &BoundedStore {
        &self.store
    }
}

/// Adapts `&mut dyn Hasher` to `impl Hasher`.
struct HasherRef<'a>(&'a mut dyn std::hash::Hasher);

impl std::hash::Hasher for HasherRef<'_> {
    fn finish(&self) -> u64 {
        self.0.finish()
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
    }
    fn write_u8(&mut self, b: u8) {
        self.0.write_u8(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;
    use proptest::prelude::*;

    fn limiter(period_ms: u64, burst: u32) -> (LocalLimiter<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        let l =
            LocalLimiter::from_parts(Duration::from_millis(period_ms), burst, 1000, clock.clone());
        (l, clock)
    }

    #[test]
    fn burst_then_one_per_period() {
        // 10/s, burst 10.
        let (l, clock) = limiter(100, 10);
        let k = KeyValue::Bytes(b"a");
        for i in 0..10 {
            let d = l.check(&k);
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 9 - i);
        }
        let d = l.check(&k);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 0);
        assert_eq!(d.retry_after, Duration::from_millis(100));
        assert_eq!(d.reset, Duration::from_millis(1000));
        clock.advance(Duration::from_millis(99));
        assert!(!l.check(&k).allowed);
        clock.advance(Duration::from_millis(1));
        assert!(l.check(&k).allowed);
        assert!(!l.check(&k).allowed);
        // Another key has its own bucket.
        assert!(l.check(&KeyValue::Bytes(b"b")).allowed);
        // Absent is one shared bucket, distinct from the value "-".
        for _ in 0..10 {
            assert!(l.check(&KeyValue::Absent).allowed);
        }
        assert!(!l.check(&KeyValue::Absent).allowed);
        assert!(l.check(&KeyValue::Bytes(b"-")).allowed);
        // A full second refills the whole bucket, not more.
        clock.advance(Duration::from_secs(5));
        for _ in 0..10 {
            assert!(l.check(&k).allowed);
        }
        assert!(!l.check(&k).allowed);
    }

    proptest! {
        /// Over any schedule of requests, the number allowed in a span of
        /// length D never exceeds burst + D / period (the GCRA bound), and a
        /// refused request is told a positive wait.
        #[test]
        fn never_more_than_burst_plus_rate(
            period_ms in 1u64..200,
            burst in 1u32..20,
            gaps in proptest::collection::vec(0u64..300, 1..200),
        ) {
            let (l, clock) = limiter(period_ms, burst);
            let k = KeyValue::Absent;
            let mut elapsed = 0u64;
            let mut allowed = 0u64;
            for g in gaps {
                clock.advance(Duration::from_millis(g));
                elapsed += g;
                let d = l.check(&k);
                if d.allowed {
                    allowed += 1;
                    prop_assert!(d.remaining < burst);
                } else {
                    prop_assert!(d.retry_after > Duration::ZERO);
                    prop_assert!(d.retry_after <= Duration::from_millis(period_ms));
                }
            }
            prop_assert!(allowed <= u64::from(burst) + elapsed / period_ms);
        }

        /// A key that waits `burst × period` always has a full bucket again.
        #[test]
        fn idle_key_refills(period_ms in 1u64..100, burst in 1u32..20, used in 0u32..40) {
            let (l, clock) = limiter(period_ms, burst);
            let k = KeyValue::Bytes(b"k");
            for _ in 0..used {
                l.check(&k);
            }
            clock.advance(Duration::from_millis(period_ms) * burst);
            for _ in 0..burst {
                prop_assert!(l.check(&k).allowed);
            }
            prop_assert!(!l.check(&k).allowed);
        }
    }
}
