//! Smooth weighted round robin, nginx's scheme (`ngx_http_upstream_round_robin.c`,
//! `current_weight += weight`; pick the largest; subtract the total).
//!
//! The nginx sequence only depends on the weights, so it is computed once per
//! group snapshot and a pick is one atomic increment and one array read: no
//! lock, no allocation. Weights 5, 1, 1 give `a a b a c a a` — the spread is
//! smooth, not a burst of five `a`s.
//!
//! When the sequence would be too large to precompute (total weight × servers
//! beyond [`MAX_SEQUENCE_WORK`]), a stride walk over the weight space gives the
//! same shares per cycle with a near-smooth spread.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::Endpoint;
use super::{scan_from, Balancer, PickContext};

/// Largest `total weight × server count` for which the exact nginx sequence is
/// precomputed (bounds config build time to a few milliseconds).
pub const MAX_SEQUENCE_WORK: u64 = 32 * 1024 * 1024;

/// Smooth weighted round robin.
#[derive(Debug)]
pub struct SmoothWeighted {
    next: AtomicUsize,
    order: Order,
    n: usize,
}

#[derive(Debug)]
enum Order {
    /// nginx's exact sequence of server indexes, one cycle.
    Sequence(Vec<u32>),
    /// Prefix sums of the weights; position `k * stride mod total` picks the
    /// server whose weight range holds it (`stride` coprime with `total`).
    Stride {
        ends: Vec<u64>,
        total: u64,
        stride: u64,
    },
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl SmoothWeighted {
    /// Precomputes the order for `servers`' weights.
    pub fn new<E: Endpoint>(servers: &[E]) -> Self {
        let weights: Vec<u64> = servers
            .iter()
            .map(|s| u64::from(s.weight().max(1)))
            .collect();
        SmoothWeighted {
            next: AtomicUsize::new(0),
            order: Self::order(&weights),
            n: servers.len(),
        }
    }

    fn order(weights: &[u64]) -> Order {
        let g = weights.iter().copied().fold(0, gcd).max(1);
        let weights: Vec<i64> = weights.iter().map(|w| (w / g) as i64).collect();
        let total: i64 = weights.iter().sum();
        if (total as u64).saturating_mul(weights.len() as u64) <= MAX_SEQUENCE_WORK {
            let mut current = vec![0i64; weights.len()];
            let mut seq = Vec::with_capacity(total as usize);
            for _ in 0..total {
                let mut best = 0;
                for (i, w) in weights.iter().enumerate() {
                    current[i] += w;
                    if current[i] > current[best] {
                        best = i;
                    }
                }
                current[best] -= total;
                seq.push(best as u32);
            }
            return Order::Sequence(seq);
        }
        let mut ends = Vec::with_capacity(weights.len());
        let mut acc = 0u64;
        for w in &weights {
            acc += *w as u64;
            ends.push(acc);
        }
        let total = acc;
        // A stride near total/φ that is coprime with total spreads positions evenly.
        let mut stride = ((total as f64) * 0.618_033_988_75) as u64 | 1;
        while gcd(stride, total) != 1 {
            stride += 1;
        }
        Order::Stride {
            ends,
            total,
            stride,
        }
    }

    /// The next index of the weighted rotation (nginx's sequence), whatever
    /// its usability; `None` for an empty group. Used by `least_connections`
    /// to break ties in rotation, honoring weights.
    pub(crate) fn next_in_rotation(&self) -> Option<usize> {
        if self.n == 0 {
            return None;
        }
        Some(self.at(self.next.fetch_add(1, Ordering::Relaxed)))
    }

    fn at(&self, k: usize) -> usize {
        match &self.order {
            Order::Sequence(seq) => seq[k % seq.len()] as usize,
            Order::Stride {
                ends,
                total,
                stride,
            } => {
                let pos = ((k as u64 % total) * stride) % total;
                ends.partition_point(|&e| e <= pos)
            }
        }
    }
}

impl<E: Endpoint> Balancer<E> for SmoothWeighted {
    fn pick(
        &self,
        _servers: &[E],
        _ctx: &PickContext<'_>,
        usable: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        if self.n == 0 {
            return None;
        }
        let k = self.next.fetch_add(1, Ordering::Relaxed);
        // Walk on along the sequence first, so the share of an unusable server
        // spreads over the others by weight; then a plain scan as a bound.
        for step in 0..self.n {
            let i = self.at(k.wrapping_add(step));
            if usable(i) {
                return Some(i);
            }
        }
        scan_from(self.at(k), self.n, usable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(weights: &[u64], count: usize) -> Vec<usize> {
        let b = SmoothWeighted {
            next: AtomicUsize::new(0),
            order: SmoothWeighted::order(weights),
            n: weights.len(),
        };
        (0..count).map(|k| b.at(k)).collect()
    }

    #[test]
    fn nginx_sequence_for_5_1_1() {
        assert_eq!(seq(&[5, 1, 1], 7), vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn weights_are_reduced_and_exact_per_cycle() {
        let s = seq(&[30, 10], 4);
        assert_eq!(s, vec![0, 0, 1, 0]);
        let s = seq(&[3, 1], 4000);
        let a = s.iter().filter(|&&i| i == 0).count();
        assert_eq!(a, 3000);
    }

    #[test]
    fn stride_fallback_honors_weights() {
        let weights: Vec<u64> = (0..5000).map(|i| if i == 0 { 1000 } else { 997 }).collect();
        let order = SmoothWeighted::order(&weights);
        assert!(matches!(order, Order::Stride { .. }));
        let b = SmoothWeighted {
            next: AtomicUsize::new(0),
            order,
            n: weights.len(),
        };
        let total: u64 = weights.iter().sum();
        let mut count0 = 0;
        for k in 0..total as usize {
            if b.at(k) == 0 {
                count0 += 1;
            }
        }
        assert_eq!(count0, 1000);
    }
}
