//! The balancing algorithms by config name, and what [`super::build`] needs
//! to know of a group (the config's `GroupConfig` provides it).

use std::time::Duration;

use super::hash::HashKey;

/// Balancing algorithm of a group (`groups.*.algorithm`). Every one honors
/// server weights; see `docs/balancing.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `round_robin`: smooth weighted round robin (nginx).
    RoundRobin,
    /// `least_connections`: fewest in-flight requests per weight (nginx `least_conn`).
    LeastConnections,
    /// `ip_hash`: consistent hashing of the client address (ketama ring).
    IpHash,
    /// `hash`: consistent hashing of the group's `hash_key`.
    Hash,
    /// `least_response_time`: peak EWMA × (in-flight + 1) / weight, two choices.
    LeastResponseTime,
    /// `power_of_two_choices`: two distinct weighted-random servers, less loaded wins.
    PowerOfTwoChoices,
    /// `random`: weighted random.
    Random,
}

impl Algorithm {
    /// Every algorithm with its config name.
    pub const ALL: [(&'static str, Algorithm); 7] = [
        ("round_robin", Algorithm::RoundRobin),
        ("least_connections", Algorithm::LeastConnections),
        ("ip_hash", Algorithm::IpHash),
        ("hash", Algorithm::Hash),
        ("least_response_time", Algorithm::LeastResponseTime),
        ("power_of_two_choices", Algorithm::PowerOfTwoChoices),
        ("random", Algorithm::Random),
    ];

    /// The algorithm named `name` in the config.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, a)| *a)
    }

    /// The config name of the algorithm.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, a)| *a == self)
            .map_or("round_robin", |(n, _)| n)
    }
}

/// The settings of a group that choose and tune its balancer.
pub trait BalancerParams {
    /// The algorithm (`groups.*.algorithm`).
    fn algorithm(&self) -> Algorithm;
    /// The key `hash` hashes (set when the algorithm is `hash`).
    fn hash_key(&self) -> Option<&HashKey>;
    /// `least_response_time`: the response time of a server without samples.
    fn default_rtt(&self) -> Duration;
    /// Time constant of the peak-EWMA response time.
    fn ewma_decay(&self) -> Duration;
}
