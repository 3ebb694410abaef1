//! Weighted random: each server with probability `weight / total`
//! (HAProxy's `balance random` with `draws 1`; Envoy's `RANDOM`), sampled in
//! O(1) with an alias table. An unusable draw is redrawn, at most `n` times,
//! then one exact weighted pass over the usable servers decides.

use super::alias::WeightedSampler;
use super::Endpoint;
use super::{Balancer, PickContext};

/// Weighted random choice.
#[derive(Debug)]
pub struct WeightedRandom {
    sampler: WeightedSampler,
}

impl WeightedRandom {
    /// The balancer for `servers`.
    pub fn new<E: Endpoint>(servers: &[E]) -> Self {
        WeightedRandom {
            sampler: WeightedSampler::new(servers),
        }
    }
}

impl<E: Endpoint> Balancer<E> for WeightedRandom {
    fn pick(
        &self,
        _servers: &[E],
        _ctx: &PickContext<'_>,
        usable: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        self.sampler.sample_usable(usable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::tests::{servers, TestRequest};

    #[test]
    fn follows_weights_and_skips_unusable() {
        let s = servers(&[3, 1, 4]);
        let r = WeightedRandom::new(&s);
        let owned = TestRequest::default();
        let ctx = owned.ctx();
        let mut counts = [0usize; 3];
        for _ in 0..80_000 {
            counts[r.pick(&s, &ctx, &|i| i != 2).unwrap()] += 1;
        }
        assert_eq!(counts[2], 0);
        let share = counts[0] as f64 / 80_000.0;
        assert!((share - 0.75).abs() < 0.01, "{counts:?}");
        assert_eq!(r.pick(&s, &ctx, &|_| false), None);
    }
}
