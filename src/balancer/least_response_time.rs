//! Least response time: peak EWMA of the time to response headers, scaled
//! by load and weight, chosen by power of two choices.
//!
//! Finagle's `PeakEwma` balancer (`com.twitter.finagle.loadbalancer`) and
//! linkerd2-proxy / tower's `PeakEwma`:
//!
//! ```text
//! score(i) = ewma(i) × (in_flight(i) + 1) / weight(i)
//! ```
//!
//! where `ewma(i)` is the server's peak EWMA (kept by the upstream's
//! `ServerState::observe_at`, read through [`ServerLoad::ewma_raw`]): a
//! slower sample replaces the estimate at once, faster samples pull it down
//! with time constant `ewma_decay` (default 10 s), and while no sample
//! arrives it decays toward zero. A server without samples counts
//! `default_rtt` (default 30 ms, linkerd2-proxy's default). Two distinct
//! servers are drawn by weight (as in [`super::p2c`]); the lower score wins,
//! an equal score goes to the first draw.

use std::time::Duration;

use super::alias::WeightedSampler;
use super::p2c::pick_pair;
use super::{Balancer, PickContext};
use super::{Endpoint, ServerLoad};
use crate::clock::monotonic_nanos;

/// Peak-EWMA × load / weight, power of two choices.
#[derive(Debug)]
pub struct LeastResponseTime {
    sampler: WeightedSampler,
    default_rtt_ns: f64,
    decay_ns: f64,
}

impl LeastResponseTime {
    /// The balancer for `servers`: `default_rtt` for servers without a
    /// sample, `decay` the EWMA time constant.
    pub fn new<E: Endpoint>(servers: &[E], default_rtt: Duration, decay: Duration) -> Self {
        LeastResponseTime {
            sampler: WeightedSampler::new(servers),
            default_rtt_ns: default_rtt.as_nanos() as f64,
            decay_ns: decay.as_nanos() as f64,
        }
    }

    /// The score of `server` at `now_ns` (lower is better).
    #[inline]
    pub fn score<E: Endpoint>(&self, server: &E, now_ns: u64) -> f64 {
        let rtt = server
            .load()
            .ewma_at(now_ns, self.decay_ns)
            .unwrap_or(self.default_rtt_ns);
        rtt * load(server)
    }

    /// True when `x` scores strictly lower than `y` now.
    ///
    /// When both have samples the clock is not read: with
    /// `ewma(i) = e_i · exp(-(now - t_i)/τ)`, the common `exp(-now/τ)` cancels
    /// and `score(x) < score(y) ⇔ e_x·L_x < e_y·L_y·exp((t_y - t_x)/τ)`
    /// (`L` = (in-flight + 1) / weight): one `exp`, no clock read.
    #[inline]
    pub fn better<E: Endpoint>(&self, x: &E, y: &E) -> bool {
        match (x.load().ewma_raw(), y.load().ewma_raw()) {
            (Some((ex, tx)), Some((ey, ty))) => {
                let rel = if self.decay_ns > 0.0 {
                    ((ty as f64 - tx as f64) / self.decay_ns).clamp(-700.0, 700.0)
                } else {
                    0.0
                };
                ex * load(x) < ey * load(y) * rel.exp()
            }
            _ => {
                let now = monotonic_nanos();
                self.score(x, now) < self.score(y, now)
            }
        }
    }
}

/// `(in_flight + 1) / weight` of `server`.
#[inline]
fn load<E: Endpoint>(server: &E) -> f64 {
    (server.load().in_flight() as f64 + 1.0) / f64::from(server.weight().max(1))
}

impl<E: Endpoint> Balancer<E> for LeastResponseTime {
    fn pick(
        &self,
        servers: &[E],
        _ctx: &PickContext<'_>,
        usable: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        pick_pair(&self.sampler, usable, |x, y| {
            self.better(&servers[x], &servers[y])
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::tests::{servers, TestRequest};
    use crate::upstream::Server;

    const MS: f64 = 1e6;

    fn lrt(s: &[Server]) -> LeastResponseTime {
        LeastResponseTime::new(s, Duration::from_millis(30), Duration::from_secs(10))
    }

    #[test]
    fn score_follows_the_formula() {
        let s = servers(&[2, 1]);
        let b = lrt(&s);
        let now = monotonic_nanos();
        // No sample: the default RTT.
        assert_eq!(b.score(&s[1], now), 30.0 * MS);
        s[0].state.observe_at(40.0 * MS, now, 10_000.0 * MS);
        let _g = [s[0].state.start_request(), s[0].state.start_request()];
        assert_eq!(b.score(&s[0], now), 40.0 * MS * 3.0 / 2.0);
    }

    #[test]
    fn comparing_without_the_clock_agrees_with_the_scores() {
        let s = servers(&[1, 3, 2, 1]);
        let b = LeastResponseTime::new(&s, Duration::from_millis(30), Duration::from_secs(2));
        let base = monotonic_nanos();
        // Samples at different times; server 3 has none (default RTT).
        s[0].state.observe_at(20.0 * MS, base, 2_000.0 * MS);
        s[1].state
            .observe_at(45.0 * MS, base + 1_500_000_000, 2_000.0 * MS);
        s[2].state
            .observe_at(12.0 * MS, base + 700_000_000, 2_000.0 * MS);
        let _g = [s[1].state.start_request(), s[2].state.start_request()];
        let now = base + 3_000_000_000;
        for x in 0..4 {
            for y in 0..4 {
                let by_score = b.score(&s[x], now) < b.score(&s[y], now);
                if x != 3 && y != 3 {
                    assert_eq!(b.better(&s[x], &s[y]), by_score, "{x} vs {y}");
                }
            }
        }
    }

    #[test]
    fn the_faster_server_wins() {
        let s = servers(&[1, 1, 1]);
        let b = lrt(&s);
        let now = monotonic_nanos();
        s[0].state.observe_at(5.0 * MS, now, 10_000.0 * MS);
        s[1].state.observe_at(50.0 * MS, now, 10_000.0 * MS);
        s[2].state.observe_at(50.0 * MS, now, 10_000.0 * MS);
        let owned = TestRequest::default();
        let ctx = owned.ctx();
        let fast = (0..3000)
            .filter(|_| b.pick(&s, &ctx, &|_| true) == Some(0))
            .count();
        // Server 0 is in the pair 2/3 of the time and then always wins.
        assert!((fast as f64 / 3000.0 - 2.0 / 3.0).abs() < 0.05, "{fast}");
        // Unless it is excluded.
        assert!((0..100).all(|_| b.pick(&s, &ctx, &|i| i != 0) != Some(0)));
    }

    #[test]
    fn load_outweighs_a_small_latency_lead() {
        let s = servers(&[1, 1]);
        let b = lrt(&s);
        let now = monotonic_nanos();
        s[0].state.observe_at(10.0 * MS, now, 10_000.0 * MS);
        s[1].state.observe_at(20.0 * MS, now, 10_000.0 * MS);
        let _g: Vec<_> = (0..3).map(|_| s[0].state.start_request()).collect();
        // 10 × 4 = 40 > 20 × 1.
        let owned = TestRequest::default();
        let ctx = owned.ctx();
        assert!((0..100).all(|_| b.pick(&s, &ctx, &|_| true) == Some(1)));
    }
}
