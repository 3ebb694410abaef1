//! Balancing algorithms: which server of a group gets the next request.
//!
//! Each algorithm lives in its own file and implements [`Balancer`]. The
//! algorithm only orders candidates; health state and retry exclusion are
//! decided outside it and passed in as the `usable` predicate, and every walk
//! is bounded by the number of servers (pingora's `BackendIter`). A pick
//! allocates nothing and takes no lock shared across connections.
//!
//! | `algorithm`            | file                     | follows                          |
//! |------------------------|--------------------------|----------------------------------|
//! | `round_robin`          | `round_robin.rs`         | nginx smooth weighted RR         |
//! | `least_connections`    | `least_connections.rs`   | nginx `least_conn`               |
//! | `ip_hash`, `hash`      | `hash.rs`, `hash_key.rs` | ketama ring (Karger et al.)      |
//! | `least_response_time`  | `least_response_time.rs` | Finagle / linkerd peak EWMA, P2C |
//! | `power_of_two_choices` | `p2c.rs`                 | Mitzenmacher; linkerd2 `p2c`     |
//! | `random`               | `random.rs`              | weighted random (alias method)   |
//!
//! Every pick is O(1) or O(log n) in the group size (under 100 ns at 4,096
//! servers). `least_connections` finds the least load in `load_index.rs`, a
//! tournament tree of the servers' loads in atomics (HAProxy keeps its
//! `leastconn` servers in a tree too) that the servers' in-flight, health and
//! drain changes keep up to date.
//!
//! See `docs/balancing.md` for formulas and benchmarks.

mod algorithm;
pub mod alias;
mod endpoint;
pub mod hash;
pub mod hash_key;
pub mod least_connections;
pub mod least_response_time;
pub(crate) mod load_index;
pub mod p2c;
pub mod random;
pub mod rng;
pub mod round_robin;
pub mod slow_start;

use std::fmt::Debug;
use std::net::IpAddr;

use http::{HeaderMap, Uri};

pub use algorithm::{Algorithm, BalancerParams};
pub use endpoint::{Endpoint, ServerLoad};

/// What a balancer may look at in the request.
#[derive(Debug, Clone, Copy)]
pub struct PickContext<'a> {
    /// The client (downstream peer) address.
    pub client_ip: IpAddr,
    /// The request URI.
    pub uri: &'a Uri,
    /// The request headers.
    pub headers: &'a HeaderMap,
}

/// A balancing algorithm over one group snapshot's servers (`E`: the
/// endpoint view, `upstream::Server` in weir).
pub trait Balancer<E: Endpoint>: Send + Sync + Debug {
    /// The index of the server for the next request, among the indexes for
    /// which `usable` is true; `None` when none is usable. The walk is
    /// bounded by a small multiple of `servers.len()` calls of `usable`.
    fn pick(
        &self,
        servers: &[E],
        ctx: &PickContext<'_>,
        usable: &dyn Fn(usize) -> bool,
    ) -> Option<usize>;
}

/// Builds the balancer of `group`'s algorithm for `servers` (the group's
/// servers, in config order). `hash` without a `hash_key` (which validation
/// rejects) hashes nothing and falls back to round robin.
pub fn build<E: Endpoint>(group: &impl BalancerParams, servers: &[E]) -> Box<dyn Balancer<E>> {
    match group.algorithm() {
        Algorithm::RoundRobin => Box::new(round_robin::SmoothWeighted::new(servers)),
        Algorithm::LeastConnections => Box::new(least_connections::LeastConnections::new(servers)),
        Algorithm::IpHash => Box::new(hash::ConsistentHash::client_ip(servers)),
        Algorithm::Hash => match group.hash_key() {
            Some(key) => Box::new(hash::ConsistentHash::key(servers, key.clone())),
            None => Box::new(round_robin::SmoothWeighted::new(servers)),
        },
        Algorithm::LeastResponseTime => Box::new(least_response_time::LeastResponseTime::new(
            servers,
            group.default_rtt(),
            group.ewma_decay(),
        )),
        Algorithm::PowerOfTwoChoices => Box::new(p2c::PowerOfTwoChoices::new(servers)),
        Algorithm::Random => Box::new(random::WeightedRandom::new(servers)),
    }
}

/// The first usable index scanning from `start` (wrapping), at most `n` probes.
pub(crate) fn scan_from(start: usize, n: usize, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
    (0..n).map(|k| (start + k) % n).find(|&i| usable(i))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use http::{HeaderMap, Uri};

    use crate::config::ServerConfig;
    use crate::upstream::{Server, ServerState};

    /// Servers named `s0, s1, ...` with `weights`, each with fresh state.
    pub fn servers(weights: &[u32]) -> Vec<Server> {
        let names: Vec<String> = (0..weights.len()).map(|i| format!("s{i}")).collect();
        let pairs: Vec<(&str, u32)> = names
            .iter()
            .zip(weights)
            .map(|(n, w)| (n.as_str(), *w))
            .collect();
        servers_named(&pairs)
    }

    /// Servers with these ids and weights, each with fresh state.
    pub fn servers_named(spec: &[(&str, u32)]) -> Vec<Server> {
        spec.iter()
            .enumerate()
            .map(|(i, (id, w))| {
                let config = ServerConfig {
                    id: Arc::from(*id),
                    address: format!("127.0.0.1:{}", 10_000 + i).parse().unwrap(),
                    weight: *w,
                    edge: Default::default(),
                };
                Server::new(&config, Arc::new(ServerState::default()))
            })
            .collect()
    }

    /// The owned parts of a [`super::PickContext`] for a request to `/`
    /// from 127.0.0.1.
    #[derive(Debug, Default)]
    pub struct TestRequest {
        uri: Uri,
        headers: HeaderMap,
    }

    impl TestRequest {
        /// The pick context of this request.
        pub fn ctx(&self) -> super::PickContext<'_> {
            super::PickContext {
                client_ip: [127, 0, 0, 1].into(),
                uri: &self.uri,
                headers: &self.headers,
            }
        }
    }
}
