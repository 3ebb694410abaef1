//! The active-check state machine and the ejection backoff: pure logic,
//! no clock, no I/O.
//!
//! [`HealthCounter::record`] returns a [`Transition`] only when the state
//! flips, so callers log and count flips, not every probe (sozu
//! `lib/src/backends.rs` `HealthState`; pingora `health_check.rs`
//! `observe_health`; HAProxy's `rise`/`fall`).

use std::fmt;
use std::time::Duration;

/// Up/down state of one server with its consecutive-result streak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthCounter {
    healthy: bool,
    streak: u32,
    rise: u32,
    fall: u32,
}

/// A flip of a server's state, as reported by [`HealthCounter::record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The new state: true = up.
    pub healthy: bool,
    /// How many consecutive results caused it (the threshold).
    pub after: u32,
}

impl Transition {
    /// `"up → down"` or `"down → up"`.
    pub fn arrow(&self) -> &'static str {
        if self.healthy {
            "down → up"
        } else {
            "up → down"
        }
    }
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.arrow())
    }
}

impl HealthCounter {
    /// A server in state `healthy` that needs `rise` consecutive passes to
    /// come up and `fall` consecutive failures to go down (both at least 1).
    pub fn new(healthy: bool, rise: u32, fall: u32) -> Self {
        HealthCounter {
            healthy,
            streak: 0,
            rise: rise.max(1),
            fall: fall.max(1),
        }
    }

    /// The current state.
    pub fn is_healthy(&self) -> bool {
        self.healthy
    }

    /// Records one probe result; returns the flip it caused, if any. A result
    /// that agrees with the current state resets the opposite streak.
    pub fn record(&mut self, success: bool) -> Option<Transition> {
        if success == self.healthy {
            self.streak = 0;
            return None;
        }
        self.streak = self.streak.saturating_add(1);
        let needed = if self.healthy { self.fall } else { self.rise };
        if self.streak < needed {
            return None;
        }
        self.healthy = success;
        self.streak = 0;
        Some(Transition {
            healthy: success,
            after: needed,
        })
    }
}

/// Ejection time of the `n`th consecutive ejection (0-based): `base × 2ⁿ`,
/// capped at `max` (Envoy's `base_ejection_time` growing to
/// `max_ejection_time`; nginx `fail_timeout` does not grow).
pub fn ejection_time(base: Duration, max: Duration, n: u32) -> Duration {
    let factor = 1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX);
    base.checked_mul(factor).unwrap_or(max).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goes_down_after_exactly_fall_failures() {
        let mut c = HealthCounter::new(true, 2, 3);
        assert_eq!(c.record(false), None);
        assert_eq!(c.record(false), None);
        assert_eq!(
            c.record(false),
            Some(Transition {
                healthy: false,
                after: 3
            })
        );
        assert!(!c.is_healthy());
        // Further failures report nothing.
        assert_eq!(c.record(false), None);
    }

    #[test]
    fn comes_up_after_exactly_rise_passes() {
        let mut c = HealthCounter::new(false, 2, 3);
        assert_eq!(c.record(true), None);
        let t = c.record(true).expect("flip");
        assert!(t.healthy);
        assert_eq!(t.to_string(), "down → up");
        assert_eq!(c.record(true), None);
    }

    #[test]
    fn an_agreeing_result_resets_the_streak() {
        let mut c = HealthCounter::new(true, 2, 3);
        c.record(false);
        c.record(false);
        assert_eq!(c.record(true), None);
        assert_eq!(c.record(false), None);
        assert_eq!(c.record(false), None);
        assert!(c.record(false).is_some());
    }

    #[test]
    fn thresholds_of_one_flip_at_once() {
        let mut c = HealthCounter::new(true, 1, 1);
        assert_eq!(c.record(false).map(|t| t.healthy), Some(false));
        assert_eq!(c.record(true).map(|t| t.healthy), Some(true));
    }

    #[test]
    fn ejection_time_doubles_up_to_the_cap() {
        let s = Duration::from_secs;
        let times: Vec<_> = (0..6).map(|n| ejection_time(s(30), s(300), n)).collect();
        assert_eq!(times, [s(30), s(60), s(120), s(240), s(300), s(300)]);
        assert_eq!(ejection_time(s(30), s(300), u32::MAX), s(300));
        assert_eq!(ejection_time(s(1), s(1), 0), s(1));
    }
}
