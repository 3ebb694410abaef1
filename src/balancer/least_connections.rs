//! Least connections: the usable server with the fewest in-flight requests
//! relative to its weight (`in_flight / weight`), nginx's `least_conn`
//! (`ngx_http_upstream_least_conn_module.c`).
//!
//! Like nginx, ties are broken by the weighted rotation: the scan starts at
//! the next server of the smooth weighted round robin and keeps the first
//! server of least load it meets, so with equal loads (idle, or sequential
//! traffic) the servers take turns by weight, never always the first one.
//! Loads are compared without division: `a/wa < b/wb ⇔ a·wb < b·wa`.
//!
//! Cost: one pass over the servers (one atomic load each), stopping early at
//! a usable idle server. No lock, no allocation.

use super::round_robin::SmoothWeighted;
use super::{Balancer, PickContext};
use crate::upstream::Server;

/// Least in-flight requests per weight, ties broken in weighted rotation.
#[derive(Debug)]
pub struct LeastConnections {
    rotation: SmoothWeighted,
}

impl LeastConnections {
    /// The balancer for `servers`.
    pub fn new(servers: &[Server]) -> Self {
        LeastConnections {
            rotation: SmoothWeighted::new(servers),
        }
    }
}

impl Balancer for LeastConnections {
    fn pick(
        &self,
        servers: &[Server],
        _ctx: &PickContext<'_>,
        usable: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let n = servers.len();
        let start = self.rotation.next_in_rotation()?;
        // (index, in-flight, weight) of the best server so far.
        let mut best: Option<(usize, u64, u64)> = None;
        for k in 0..n {
            let i = if start + k >= n {
                start + k - n
            } else {
                start + k
            };
            if !usable(i) {
                continue;
            }
            let load = servers[i].state.in_flight();
            let weight = u64::from(servers[i].weight.max(1));
            match best {
                Some((_, bl, bw)) if load.saturating_mul(bw) >= bl.saturating_mul(weight) => {}
                _ => {
                    if load == 0 {
                        // Nothing beats an idle server; the first one in rotation wins.
                        return Some(i);
                    }
                    best = Some((i, load, weight));
                }
            }
        }
        best.map(|(i, _, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::tests::{servers, TestRequest};
    use crate::upstream::InFlightGuard;

    #[test]
    fn picks_the_least_loaded_relative_to_weight() {
        let s = servers(&[1, 3, 1]);
        let _g: Vec<InFlightGuard> = (0..2)
            .map(|_| s[0].state.start_request())
            .chain((0..3).map(|_| s[1].state.start_request()))
            .chain((0..2).map(|_| s[2].state.start_request()))
            .collect();
        // Loads per weight: 2, 1, 2.
        let lc = LeastConnections::new(&s);
        let owned = TestRequest::default();
        let ctx = owned.ctx();
        for _ in 0..10 {
            assert_eq!(lc.pick(&s, &ctx, &|_| true), Some(1));
        }
        // Excluded servers are skipped.
        let p = lc.pick(&s, &ctx, &|i| i != 1).unwrap();
        assert!(p == 0 || p == 2);
        assert_eq!(lc.pick(&s, &ctx, &|_| false), None);
    }

    #[test]
    fn ties_rotate_by_weight() {
        let s = servers(&[3, 1, 1]);
        let lc = LeastConnections::new(&s);
        let owned = TestRequest::default();
        let ctx = owned.ctx();
        let mut counts = [0; 3];
        for _ in 0..500 {
            counts[lc.pick(&s, &ctx, &|_| true).unwrap()] += 1;
        }
        assert_eq!(counts, [300, 100, 100]);
        // Equal load (one each) ties too, still in rotation.
        let _g: Vec<_> = s.iter().map(|s| s.state.start_request()).collect();
        let mut counts = [0; 3];
        for _ in 0..500 {
            counts[lc.pick(&s, &ctx, &|_| true).unwrap()] += 1;
        }
        // Per weight, server 0's load 1/3 is the least: it wins every time.
        assert_eq!(counts, [500, 0, 0]);
    }

    #[test]
    fn equal_weights_and_loads_spread_over_all() {
        let s = servers(&[1, 1, 1, 1]);
        let _g: Vec<_> = s.iter().map(|s| s.state.start_request()).collect();
        let lc = LeastConnections::new(&s);
        let owned = TestRequest::default();
        let ctx = owned.ctx();
        let mut counts = [0; 4];
        for _ in 0..400 {
            counts[lc.pick(&s, &ctx, &|_| true).unwrap()] += 1;
        }
        assert_eq!(counts, [100, 100, 100, 100]);
    }
}
