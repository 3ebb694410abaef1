//! Weighted random sampling of server indexes in O(1): Walker's alias method
//! in Vose's construction ("A linear algorithm for generating random numbers
//! with a given distribution", IEEE TSE 1991), in exact integer arithmetic.
//! (Weighted round robin is `round_robin.rs`; this is weighted *random*.)
//!
//! Shared by `random`, `power_of_two_choices` and `least_response_time`.
//! Built once per group snapshot; a sample is one random number, one table
//! read and one comparison.

use super::rng;
use super::Endpoint;

/// Samples index `i` with probability `weight_i / total`.
#[derive(Debug)]
pub struct WeightedSampler {
    /// Bucket `i` keeps itself when `r < threshold` (`r` uniform in `0..total`),
    /// else it yields `alias`.
    buckets: Vec<(u32, u32)>,
    /// Prefix sums of the weights (the end of each server's range).
    ends: Vec<u64>,
    total: u64,
}

impl WeightedSampler {
    /// The sampler of `servers`' weights (a weight of 0 counts as 1).
    pub fn new<E: Endpoint>(servers: &[E]) -> Self {
        let weights: Vec<u64> = servers
            .iter()
            .map(|s| u64::from(s.weight().max(1)))
            .collect();
        Self::from_weights(&weights)
    }

    /// The sampler of `weights` (each at least 1, at most `u32::MAX / len`).
    pub fn from_weights(weights: &[u64]) -> Self {
        let n = weights.len() as u64;
        let total: u64 = weights.iter().sum();
        let mut ends = Vec::with_capacity(weights.len());
        let mut acc = 0;
        for w in weights {
            acc += w;
            ends.push(acc);
        }
        // Each bucket holds `total` units; server i brings weight_i * n units.
        let mut scaled: Vec<u64> = weights.iter().map(|w| w * n).collect();
        let mut buckets: Vec<(u32, u32)> = (0..weights.len() as u32).map(|i| (0, i)).collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) =
            (0..weights.len()).partition(|&i| scaled[i] < total);
        while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
            buckets[s] = (scaled[s] as u32, l as u32);
            scaled[l] -= total - scaled[s];
            if scaled[l] < total {
                large.pop();
                small.push(l);
            }
        }
        for i in large.into_iter().chain(small) {
            // Full buckets (and rounding leftovers, none in exact arithmetic).
            buckets[i] = (u32::MAX, i as u32);
        }
        WeightedSampler {
            buckets,
            ends,
            total,
        }
    }

    /// Number of servers.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// True when there is no server.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// A weighted-random index; `None` when there is no server.
    #[inline]
    pub fn sample(&self) -> Option<usize> {
        let n = self.buckets.len() as u64;
        if n == 0 {
            return None;
        }
        let x = rng::next_u64();
        // High half picks the bucket, low half the point inside it.
        let bucket = (((x >> 32) * n) >> 32) as usize;
        let r = ((x & 0xffff_ffff) * self.total) >> 32;
        let (threshold, alias) = self.buckets[bucket];
        if threshold == u32::MAX || r < u64::from(threshold) {
            Some(bucket)
        } else {
            Some(alias as usize)
        }
    }

    /// A weighted-random index among those that are `usable`; `None` when
    /// none is. Up to `n` draws from the table; then one exact pass of
    /// weighted reservoir sampling over the usable servers (so the shares
    /// among usable servers stay exact). At most `2n` calls of `usable`.
    pub fn sample_usable(&self, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        let n = self.buckets.len();
        for _ in 0..n {
            let i = self.sample()?;
            if usable(i) {
                return Some(i);
            }
        }
        let mut seen = 0u64;
        let mut chosen = None;
        for i in 0..n {
            if usable(i) {
                let w = self.weight(i);
                seen += w;
                if rng::below(seen) < w {
                    chosen = Some(i);
                }
            }
        }
        chosen
    }

    /// The weight of server `i`.
    fn weight(&self, i: usize) -> u64 {
        self.ends[i] - if i == 0 { 0 } else { self.ends[i - 1] }
    }

    /// A weighted-random index different from `a`: index `b` with probability
    /// `weight_b / (total - weight_a)`. `None` when there is no other server.
    ///
    /// A few rejection draws from the alias table first (cheap and exact),
    /// then an exact draw over the prefix sums with `a`'s range cut out.
    #[inline]
    pub fn sample_other(&self, a: usize) -> Option<usize> {
        let n = self.buckets.len();
        if n < 2 {
            return None;
        }
        if n == 2 {
            return Some(1 - a.min(1));
        }
        for _ in 0..4 {
            let b = self.sample()?;
            if b != a {
                return Some(b);
            }
        }
        let start = if a == 0 { 0 } else { self.ends[a - 1] };
        let end = self.ends[a];
        let mut r = rng::below(self.total - (end - start));
        if r >= start {
            r += end - start;
        }
        Some(self.ends.partition_point(|&e| e <= r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shares(
        s: &WeightedSampler,
        draws: usize,
        f: impl Fn(&WeightedSampler) -> usize,
    ) -> Vec<f64> {
        let mut counts = vec![0usize; s.len()];
        for _ in 0..draws {
            counts[f(s)] += 1;
        }
        counts.iter().map(|&c| c as f64 / draws as f64).collect()
    }

    #[test]
    fn alias_table_follows_weights() {
        let weights = [3u64, 1, 6, 10];
        let s = WeightedSampler::from_weights(&weights);
        let got = shares(&s, 200_000, |s| s.sample().unwrap());
        for (g, w) in got.iter().zip(weights) {
            let want = w as f64 / 20.0;
            assert!((g - want).abs() < 0.01, "{got:?}");
        }
    }

    #[test]
    fn usable_draws_keep_weight_shares() {
        let s = WeightedSampler::from_weights(&[3, 1, 4, 4, 4]);
        // Mostly unusable: the exact fallback pass runs often.
        let got = shares(&s, 100_000, |s| s.sample_usable(&|i| i < 2).unwrap());
        assert!((got[0] - 0.75).abs() < 0.01, "{got:?}");
        assert_eq!(s.sample_usable(&|_| false), None);
    }

    #[test]
    fn equal_weights_give_full_buckets() {
        let s = WeightedSampler::from_weights(&[5, 5, 5]);
        assert!(s.buckets.iter().all(|&(t, _)| t == u32::MAX));
    }

    #[test]
    fn sample_other_is_conditional_on_not_a() {
        let weights = [1000u64, 1, 2, 1];
        let s = WeightedSampler::from_weights(&weights);
        let got = shares(&s, 100_000, |s| s.sample_other(0).unwrap());
        assert_eq!(got[0], 0.0);
        assert!((got[2] - 0.5).abs() < 0.015, "{got:?}");
        assert!((got[1] - 0.25).abs() < 0.015, "{got:?}");
    }

    #[test]
    fn sample_other_with_two_is_the_other() {
        let s = WeightedSampler::from_weights(&[9, 1]);
        assert_eq!(s.sample_other(0), Some(1));
        assert_eq!(s.sample_other(1), Some(0));
        let one = WeightedSampler::from_weights(&[9]);
        assert_eq!(one.sample_other(0), None);
    }
}
