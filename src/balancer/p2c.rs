//! Power of two choices: draw two distinct servers at random (by weight);
//! the one with fewer in-flight requests per weight wins
//! (Mitzenmacher, "The Power of Two Choices in Randomized Load Balancing",
//! 2001; linkerd2-proxy `linkerd/pool/p2c`, `gen_pair`; Envoy's least
//! request with `choice_count: 2`).
//!
//! Two choices avoid the herd behaviour of a global "least loaded" pick
//! across many proxies while keeping the maximum load exponentially closer
//! to the mean than one random choice. Loads compare without division
//! (`a/wa < b/wb ⇔ a·wb < b·wa`); an equal load goes to the first draw, so
//! with idle servers the share of each server is exactly its weight share.

use super::alias::WeightedSampler;
use super::{Balancer, PickContext};
use super::{Endpoint, ServerLoad};

/// Two distinct weighted-random candidates: `(a, Some(b))` with `a != b`, or
/// `(a, None)` when the group has one server; `None` when it has none.
#[inline]
pub fn pair(sampler: &WeightedSampler) -> Option<(usize, Option<usize>)> {
    let a = sampler.sample()?;
    Some((a, sampler.sample_other(a)))
}

/// Draws pairs until one holds a usable server and lets `better(a, b)` (true
/// when `a` should win over `b`) choose. At most `ceil(n/2)` pairs (`n`
/// calls of `usable`), then one weighted draw among the usable servers.
#[inline]
pub fn pick_pair(
    sampler: &WeightedSampler,
    usable: &dyn Fn(usize) -> bool,
    better: impl Fn(usize, usize) -> bool,
) -> Option<usize> {
    let n = sampler.len();
    for _ in 0..n.div_ceil(2) {
        let (a, b) = pair(sampler)?;
        let ua = usable(a);
        match b.filter(|&b| usable(b)) {
            Some(b) if ua => return Some(if better(b, a) { b } else { a }),
            Some(b) => return Some(b),
            None if ua => return Some(a),
            None => {}
        }
    }
    sampler.sample_usable(usable)
}

/// Power of two choices over in-flight requests per weight.
#[derive(Debug)]
pub struct PowerOfTwoChoices {
    sampler: WeightedSampler,
}

impl PowerOfTwoChoices {
    /// The balancer for `servers`.
    pub fn new<E: Endpoint>(servers: &[E]) -> Self {
        PowerOfTwoChoices {
            sampler: WeightedSampler::new(servers),
        }
    }
}

impl<E: Endpoint> Balancer<E> for PowerOfTwoChoices {
    fn pick(
        &self,
        servers: &[E],
        _ctx: &PickContext<'_>,
        usable: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        pick_pair(&self.sampler, usable, |x, y| {
            // x strictly less loaded than y, per weight.
            let (lx, wx) = (
                servers[x].load().in_flight(),
                u64::from(servers[x].weight().max(1)),
            );
            let (ly, wy) = (
                servers[y].load().in_flight(),
                u64::from(servers[y].weight().max(1)),
            );
            lx.saturating_mul(wy) < ly.saturating_mul(wx)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::tests::{servers, TestRequest};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn the_two_indices_are_always_distinct(
            weights in proptest::collection::vec(1u64..=1000, 2..64),
            draws in 1usize..200,
        ) {
            let s = WeightedSampler::from_weights(&weights);
            for _ in 0..draws {
                let (a, b) = pair(&s).unwrap();
                let b = b.unwrap();
                prop_assert_ne!(a, b);
                prop_assert!(a < weights.len() && b < weights.len());
            }
        }

        #[test]
        fn a_pick_is_always_usable_or_none(
            weights in proptest::collection::vec(1u32..=50, 1..20),
            mask in any::<u32>(),
        ) {
            let s = servers(&weights);
            let p = PowerOfTwoChoices::new(&s);
            let owned = TestRequest::default();
            let ctx = owned.ctx();
            let usable = |i: usize| mask & (1 << i) != 0;
            let any = (0..weights.len()).any(usable);
            let got = p.pick(&s, &ctx, &usable);
            prop_assert_eq!(got.is_some(), any);
            if let Some(i) = got {
                prop_assert!(usable(i));
            }
        }
    }

    #[test]
    fn one_server_groups_work() {
        let s = WeightedSampler::from_weights(&[7]);
        assert_eq!(pair(&s), Some((0, None)));
        assert_eq!(pair(&WeightedSampler::from_weights(&[])), None);
    }

    #[test]
    fn a_loaded_server_is_avoided() {
        let s = servers(&[1, 1, 1, 1]);
        let _busy: Vec<_> = (0..50).map(|_| s[2].state.start_request()).collect();
        let p = PowerOfTwoChoices::new(&s);
        let owned = TestRequest::default();
        let ctx = owned.ctx();
        for _ in 0..2000 {
            assert_ne!(p.pick(&s, &ctx, &|_| true), Some(2));
        }
    }

    #[test]
    fn idle_servers_split_by_weight() {
        let s = servers(&[3, 1]);
        let p = PowerOfTwoChoices::new(&s);
        let owned = TestRequest::default();
        let ctx = owned.ctx();
        let heavy = (0..40_000)
            .filter(|_| p.pick(&s, &ctx, &|_| true) == Some(0))
            .count();
        assert!((heavy as f64 / 40_000.0 - 0.75).abs() < 0.01, "{heavy}");
    }
}
