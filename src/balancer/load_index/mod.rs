//! The index behind `least_connections`: a tournament tree (a tree of
//! minimums) over the servers' `in_flight / weight`, kept in atomics and
//! updated by the in-flight changes themselves, so that a pick reads
//! O(log n) nodes instead of every server.
//!
//! HAProxy keeps its `leastconn` servers in an ebtree keyed by load
//! (`lb_fwlc.c`) under the server lock; here the tree is an 8-ary tree of
//! `AtomicU64` keys, each node's eight children on one cache line, updated
//! without a lock:
//!
//! - **Leaf** `i` holds server `i`'s load `in_flight × 2^20 / weight` (fixed
//!   point; `2^20 > 1000²`, so two different ratios of weights ≤ 1000 never
//!   round to the same key or to the wrong order), or [`UNAVAILABLE`] when
//!   the server is down, drained or parked (see below). An **inner node**
//!   holds the least key of its eight children; the least key of all is the
//!   minimum of the top line. 4,096 servers make 4 levels (4,096, 512, 64, 8).
//! - **Updates.** Each server's [`ServerState`] knows the indexes it is in
//!   ([`IndexLinks`]); a change of its in-flight count, health or drain
//!   re-settles its leaf and walks up while the minimum changes: at most one
//!   compare-and-swap per level, and the walk stops at the first level whose
//!   minimum does not change. A state in no index pays one load of a flag.
//! - **Races self-heal.** A node is settled by: read it, read the inputs
//!   (children, or the server's counters for a leaf), compare-and-swap in
//!   their minimum, read the inputs again and retry if they moved. A writer
//!   that loses a compare-and-swap stops: the winner re-reads the inputs
//!   after its swap (all in `SeqCst`), so it sees the loser's change and
//!   carries it up. When the inputs are already reflected, the walk stops
//!   early. Once updates stop, every node equals the minimum of its
//!   children and every leaf its server's true load (the concurrency test
//!   checks this). A node that keeps moving under its writer for `RETRIES`
//!   rounds marks the index dirty, and the next pick rebuilds it in O(n).
//! - **Picks** keep nginx's tie-break: from the next position `s` of the
//!   smooth weighted rotation, the first server at or after `s` (wrapping)
//!   whose key is the least: along the rest of `s`'s line, up a level at
//!   each line's end, then down to the first qualifying leaf. A candidate the
//!   `usable` predicate refuses (passive ejection or retry exclusion, which
//!   the index does not see) is masked and the minimum recomputed without it
//!   (O(log n) per masked leaf); after a few, the pick falls back to the
//!   scan.
//! - **Parking.** An ejected server found by a pick is *parked* (its leaf set
//!   to [`UNAVAILABLE`]) so that later picks do not meet it first on every
//!   request; ejection ends by time, with no event, so parked servers are
//!   released every [`PARK_RECHECK_MS`] (on the ejection clock) and parked
//!   again by the next pick that meets one still ejected.
//!
//! Files: this one holds the tree, its keys and its updates; `search.rs` the
//! picks' walks; `links.rs` the [`IndexLinks`] of each server's state.

mod links;
mod search;

use std::fmt;
use std::sync::atomic::{
    AtomicBool, AtomicU64, AtomicUsize,
    Ordering::{Relaxed, SeqCst},
};

use super::{Endpoint, ServerLoad};

pub use links::IndexLinks;

/// Children per inner node: one cache line of `AtomicU64`.
const FANOUT: usize = 8;
/// The most servers an index holds; a larger group is scanned.
pub(crate) const MAX_SERVERS: usize = 1 << 24;
/// Levels of a tree of [`MAX_SERVERS`] leaves: 8^8 = 2^24.
const MAX_LEVELS: usize = 9;
/// Fixed-point bits of a load: `key = in_flight × 2^SCALE_BITS / weight`.
const SCALE_BITS: u32 = 20;
/// In-flight counts from here up compare equal (keeps the reciprocal
/// multiplication of [`load_key`] exact).
const LOAD_CAP: u64 = (1 << 23) - 1;
/// The key of a server that may not be picked (down, drained or parked)
/// and of the padding slots past the last server.
pub(crate) const UNAVAILABLE: u64 = u64::MAX;
/// Rounds of read–swap–recheck on one node before it is left to a rebuild.
const RETRIES: usize = 8;
/// How often parked (ejected) servers are released to be checked again, in
/// milliseconds of the ejection clock ([`crate::clock::now_ms`]).
pub(crate) const PARK_RECHECK_MS: u64 = 10;

/// `⌈2^60 / weight⌉`: [`load_key`] multiplies by it instead of dividing.
fn reciprocal(weight: u32) -> u64 {
    let w = u64::from(weight.max(1));
    (1u64 << 60).div_ceil(w)
}

/// `⌊min(in_flight, LOAD_CAP) × 2^20 / weight⌋`, computed as
/// `in_flight × ⌈2^60 / weight⌉ >> 40`. Exact: the rounding of the
/// reciprocal adds less than `2^23 / 2^40 = 2^-17` to a quotient whose
/// fractional part is at most `1 − 1/weight`, and `1/weight > 2^-17` for
/// every weight up to 2^17 (weights are at most 1000).
#[inline]
fn load_key(in_flight: u64, reciprocal: u64) -> u64 {
    ((u128::from(in_flight.min(LOAD_CAP)) * u128::from(reciprocal)) >> (60 - SCALE_BITS)) as u64
}

/// What settling one node did.
enum Step {
    /// The node was written: its parent must be settled too.
    Changed,
    /// The node already held its inputs' value.
    Unchanged,
    /// Another writer changed the node first; it re-reads the inputs and
    /// carries on upward.
    Lost,
}

/// Eight nodes on one cache line: the children of one inner node.
#[repr(align(64))]
struct Line([AtomicU64; FANOUT]);

impl Line {
    fn new() -> Self {
        Line(std::array::from_fn(|_| AtomicU64::new(UNAVAILABLE)))
    }

    fn min(&self) -> u64 {
        self.0
            .iter()
            .map(|a| a.load(SeqCst))
            .fold(UNAVAILABLE, u64::min)
    }
}

/// A least-connections tournament tree over one group snapshot's servers.
pub(crate) struct LoadIndex {
    n: usize,
    /// Every level's lines, level after level. Level 0 holds the leaves
    /// (server `i` at slot `i`); slot `j` of level `k + 1` is the minimum of
    /// line `j` of level `k`. The last level is one line; the least key is
    /// its minimum.
    lines: Box<[Line]>,
    /// Number of levels.
    levels: usize,
    /// First line of each level in `lines`.
    first: [usize; MAX_LEVELS],
    /// Slots in use per level.
    lens: [usize; MAX_LEVELS],
    /// Per server, [`reciprocal`] of its weight.
    reciprocals: Box<[u64]>,
    /// Bit set of parked servers.
    parked: Box<[AtomicU64]>,
    /// At least the number of bits set in `parked`.
    parked_count: AtomicUsize,
    /// Ejection-clock time at which parked servers are released.
    recheck_at: AtomicU64,
    /// Some node may be stale: the next pick rebuilds.
    dirty: AtomicBool,
}

impl fmt::Debug for LoadIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadIndex")
            .field("servers", &self.n)
            .field("least_key", &self.least())
            .field("parked", &self.parked_count.load(Relaxed))
            .finish()
    }
}

impl LoadIndex {
    /// The index of `servers` (1 to [`MAX_SERVERS`]), filled from their
    /// current state. Not attached to the servers yet (see [`IndexLinks`]).
    pub(crate) fn new<E: Endpoint>(servers: &[E]) -> Self {
        let n = servers.len();
        assert!(
            n > 0 && n <= MAX_SERVERS,
            "an index holds 1 to 2^24 servers"
        );
        let (mut lens, mut first) = ([0; MAX_LEVELS], [0; MAX_LEVELS]);
        let (mut levels, mut len, mut total) = (0, n, 0);
        loop {
            lens[levels] = len;
            first[levels] = total;
            total += len.div_ceil(FANOUT);
            levels += 1;
            if len <= FANOUT {
                break;
            }
            len = len.div_ceil(FANOUT);
        }
        let index = LoadIndex {
            n,
            lines: (0..total).map(|_| Line::new()).collect(),
            levels,
            first,
            lens,
            reciprocals: servers.iter().map(|s| reciprocal(s.weight())).collect(),
            parked: (0..n.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
            parked_count: AtomicUsize::new(0),
            recheck_at: AtomicU64::new(0),
            dirty: AtomicBool::new(false),
        };
        for (i, s) in servers.iter().enumerate() {
            index
                .slot(0, i)
                .store(index.leaf_value(i, &**s.load()), Relaxed);
        }
        for k in 1..index.levels {
            for j in 0..index.lens[k] {
                index.slot(k, j).store(index.line(k - 1, j).min(), Relaxed);
            }
        }
        index
    }

    /// Number of servers.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.n
    }

    /// Line `l` of level `k`.
    #[inline]
    fn line(&self, k: usize, l: usize) -> &Line {
        &self.lines[self.first[k] + l]
    }

    /// Slot `j` of level `k`.
    #[inline]
    fn slot(&self, k: usize, j: usize) -> &AtomicU64 {
        &self.line(k, j / FANOUT).0[j % FANOUT]
    }

    #[inline]
    fn val(&self, k: usize, j: usize) -> u64 {
        self.slot(k, j).load(SeqCst)
    }

    #[inline]
    fn top(&self) -> usize {
        self.levels - 1
    }

    /// The least key of all servers ([`UNAVAILABLE`] when none is available).
    #[inline]
    pub(crate) fn least(&self) -> u64 {
        self.line(self.top(), 0).min()
    }

    fn is_parked(&self, i: usize) -> bool {
        self.parked[i / 64].load(SeqCst) & (1 << (i % 64)) != 0
    }

    /// What leaf `i` should hold for `state`.
    fn leaf_value<S: ServerLoad>(&self, i: usize, state: &S) -> u64 {
        let (in_flight, available) = state.balancing_inputs();
        if !available || self.is_parked(i) {
            UNAVAILABLE
        } else {
            load_key(in_flight, self.reciprocals[i])
        }
    }

    /// Settles `node` to `compute()` (its inputs' value); `None` when the
    /// inputs kept moving for [`RETRIES`] rounds.
    fn settle(node: &AtomicU64, compute: impl Fn() -> u64) -> Option<Step> {
        for _ in 0..RETRIES {
            let old = node.load(SeqCst);
            let new = compute();
            if old == new {
                return Some(Step::Unchanged);
            }
            if node.compare_exchange(old, new, SeqCst, SeqCst).is_err() {
                return Some(Step::Lost);
            }
            if compute() == new {
                return Some(Step::Changed);
            }
        }
        None
    }

    /// Re-reads server `i`'s state into its leaf and carries the change up.
    /// Called after every change of the server's in-flight count, health or
    /// drain, and by picks that find a leaf stale.
    pub(crate) fn refresh_leaf<S: ServerLoad>(&self, i: usize, state: &S) {
        match Self::settle(self.slot(0, i), || self.leaf_value(i, state)) {
            Some(Step::Changed) => {}
            Some(_) => return,
            None => return self.dirty.store(true, SeqCst),
        }
        let mut j = i;
        for k in 1..self.levels {
            let line = self.line(k - 1, j / FANOUT);
            j /= FANOUT;
            match Self::settle(self.slot(k, j), || line.min()) {
                Some(Step::Changed) => {}
                Some(_) => return,
                None => return self.dirty.store(true, SeqCst),
            }
        }
    }

    /// Rebuilds every node from the servers (after a node was given up on).
    fn heal<E: Endpoint>(&self, servers: &[E]) {
        self.dirty.store(false, SeqCst);
        let mut gave_up = false;
        for (i, s) in servers.iter().enumerate() {
            gave_up |= Self::settle(self.slot(0, i), || self.leaf_value(i, &**s.load())).is_none();
        }
        for k in 1..self.levels {
            for j in 0..self.lens[k] {
                let line = self.line(k - 1, j);
                gave_up |= Self::settle(self.slot(k, j), || line.min()).is_none();
            }
        }
        if gave_up {
            self.dirty.store(true, SeqCst);
        }
    }

    /// Work a pick does first: a rebuild when dirty, releasing parked
    /// servers when due. Two loads when there is nothing to do.
    #[inline]
    pub(crate) fn tend<E: Endpoint>(&self, servers: &[E]) {
        if self.dirty.load(Relaxed) {
            self.heal(servers);
        }
        if self.parked_count.load(Relaxed) != 0 {
            self.release_parked(servers);
        }
    }

    #[cold]
    fn release_parked<E: Endpoint>(&self, servers: &[E]) {
        let now = crate::clock::now_ms();
        let due = self.recheck_at.load(Relaxed);
        if now < due
            || self
                .recheck_at
                .compare_exchange(due, now + PARK_RECHECK_MS, Relaxed, Relaxed)
                .is_err()
        {
            return;
        }
        for (w, word) in self.parked.iter().enumerate() {
            if word.load(Relaxed) == 0 {
                continue;
            }
            let mut bits = word.swap(0, SeqCst);
            while bits != 0 {
                let i = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                self.parked_count.fetch_sub(1, Relaxed);
                self.refresh_leaf(i, &**servers[i].load());
            }
        }
    }

    /// Server `i` was the best candidate but `usable` refused it: parks it
    /// when it is ejected, re-reads its leaf when its health or drain moved
    /// under the index; a retry exclusion changes nothing. True when the
    /// tree no longer offers the server (parked, or down or drained).
    pub(crate) fn refused<S: ServerLoad>(&self, i: usize, state: &S) -> bool {
        if !state.balancing_inputs().1 {
            self.refresh_leaf(i, state);
            return true;
        }
        // `is_ejected_at(0)`: an ejection deadline is set (read the clock only then).
        if !state.is_ejected_at(0) {
            return false;
        }
        let now = crate::clock::now_ms();
        if !state.is_ejected_at(now) {
            return false;
        }
        let (word, bit) = (&self.parked[i / 64], 1u64 << (i % 64));
        if word.load(SeqCst) & bit == 0 {
            // Count first, so the count never drops below the bits set.
            if self.parked_count.fetch_add(1, Relaxed) == 0 {
                self.recheck_at.store(now + PARK_RECHECK_MS, Relaxed);
            }
            if word.fetch_or(bit, SeqCst) & bit != 0 {
                self.parked_count.fetch_sub(1, Relaxed);
            }
        }
        self.refresh_leaf(i, state);
        true
    }

    /// Re-reads leaf `i` if it does not hold `state`'s value (a pick checks
    /// the server it returns; one comparison when the index is right).
    #[inline]
    pub(crate) fn verify<S: ServerLoad>(&self, i: usize, state: &S) {
        if self.val(0, i) != self.leaf_value(i, state) {
            self.refresh_leaf(i, state);
        }
    }

    /// Checks that every leaf holds its server's value and every inner node
    /// the minimum of its children (only meaningful while nothing changes).
    #[cfg(test)]
    pub(crate) fn check<E: Endpoint>(&self, servers: &[E]) -> Result<(), String> {
        for (i, s) in servers.iter().enumerate() {
            let (have, want) = (self.val(0, i), self.leaf_value(i, &**s.load()));
            if have != want {
                return Err(format!("leaf {i}: {have:#x}, server says {want:#x}"));
            }
        }
        for k in 1..self.levels {
            for j in 0..self.lens[k] {
                let (have, want) = (self.val(k, j), self.line(k - 1, j).min());
                if have != want {
                    return Err(format!(
                        "level {k} node {j}: {have:#x}, children say {want:#x}"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Overwrites node `j` of level `k` (tests of the self-healing paths).
    #[cfg(test)]
    pub(crate) fn corrupt(&self, k: usize, j: usize, value: u64, dirty: bool) {
        self.slot(k, j).store(value, SeqCst);
        if dirty {
            self.dirty.store(true, SeqCst);
        }
    }

    /// Number of parked servers (tests).
    #[cfg(test)]
    pub(crate) fn parked(&self) -> usize {
        self.parked
            .iter()
            .map(|w| w.load(SeqCst).count_ones() as usize)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reciprocal_key_is_the_exact_quotient() {
        let loads = (0..5000).chain([LOAD_CAP - 1, LOAD_CAP, LOAD_CAP + 1, u64::MAX]);
        let loads: Vec<u64> = loads.collect();
        for w in 1..=1000u32 {
            let r = reciprocal(w);
            for &x in &loads {
                let want = (x.min(LOAD_CAP) << SCALE_BITS) / u64::from(w);
                assert_eq!(load_key(x, r), want, "in_flight {x} weight {w}");
            }
        }
    }
}
