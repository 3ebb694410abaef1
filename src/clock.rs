//! The process's monotonic clock: one epoch, read as milliseconds or
//! nanoseconds since it.
//!
//! Every monotonic time stamp weir keeps in an atomic comes from here: the
//! ejection and slow-start clock of health, idle times of upstream pools
//! (HTTP/1 and HTTP/2), the request-head and idle clocks of downstream
//! connections, and the response-time EWMA of `least_response_time`. The
//! epoch is fixed at the first reading in the process, so stamps taken
//! anywhere compare with each other.
//!
//! It reads [`tokio::time::Instant`]: in a release build that is
//! `std::time::Instant` (one `clock_gettime`, vDSO), and tests that pause
//! tokio's time (`start_paused`, `tokio::time::advance`) move it too.
//!
//! Wall-clock time is not here and stays on [`std::time::SystemTime`]: the
//! timestamps of access logs, the `Date`/`Age`/`Expires` arithmetic of the
//! response cache, sticky-cookie issue times, ACME certificate expiry,
//! certificate file mtimes and the rate limiter's shared-store windows: they
//! are compared with clocks outside the process.

use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::Instant;

/// How far the epoch lies before the first reading: a test runtime whose
/// paused clock stopped a little before another thread's first reading
/// still reads a time after the epoch (never a saturated 0).
const LEAD: Duration = Duration::from_secs(3600);

/// The epoch: [`LEAD`] before the first reading of the clock in this
/// process (the first reading itself if the platform's clock cannot go
/// back that far).
#[inline]
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(|| {
        let now = Instant::now();
        now.checked_sub(LEAD).unwrap_or(now)
    })
}

/// Time since the epoch (zero if tokio's paused clock reads earlier).
#[inline]
fn since_epoch() -> Duration {
    let epoch = epoch();
    Instant::now().saturating_duration_since(epoch)
}

/// Milliseconds since the epoch, plus one, so that 0 can mean "never" in an
/// atomic time stamp.
#[inline]
pub fn now_ms() -> u64 {
    u64::try_from(since_epoch().as_millis()).unwrap_or(u64::MAX - 1) + 1
}

/// Nanoseconds since the epoch (the time base of the response-time EWMA;
/// `u64` nanoseconds last 584 years).
#[inline]
pub fn monotonic_nanos() -> u64 {
    since_epoch().as_nanos() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_readings_count_from_one_epoch() {
        let ms = now_ms();
        let ns = monotonic_nanos();
        assert!(ms >= 1);
        assert!(ns / 1_000_000 + 1 >= ms);
        std::thread::sleep(Duration::from_millis(5));
        assert!(now_ms() >= ms + 5);
        assert!(monotonic_nanos() >= ns + 5_000_000);
    }

    #[test]
    fn paused_time_moves_it() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let ms = now_ms();
            let ns = monotonic_nanos();
            tokio::time::advance(Duration::from_secs(3)).await;
            assert_eq!(now_ms(), ms + 3000);
            assert_eq!(monotonic_nanos(), ns + 3_000_000_000);
        });
    }
}
