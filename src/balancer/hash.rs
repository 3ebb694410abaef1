//! Consistent hashing for `ip_hash` (the client address) and `hash` (a
//! request header, cookie or query parameter): a ketama ring
//! (Karger et al., "Consistent hashing and random trees", STOC 1997; the
//! libketama layout nginx uses for `hash ... consistent`).
//!
//! # Why a ring and not Maglev
//! Each server owns `POINTS_PER_WEIGHT × weight` points on a 32-bit ring,
//! placed by hashing its stable id — independent of every other server. A
//! key belongs to the first point clockwise of its hash. So:
//!
//! - **Removing** (or marking down) a server moves exactly the keys that were
//!   on it — to the next points clockwise, spread over the others by weight —
//!   and **no other key moves**. Maglev's table (Eisenbud et al., NSDI 2016)
//!   is rebuilt by a greedy fill in which the other servers' slots shift too,
//!   so it only bounds that disruption approximately.
//! - **Adding** a server of weight `w` moves only the keys that land on its new
//!   points: on average `w / W_new` of all keys (1/6 when a 6th equal server
//!   joins five), nothing between the old servers.
//! - The share of a server is `weight / total` within the randomness of its
//!   points' arcs: with `k` of `N` points the standard deviation of a share `p`
//!   is about `sqrt(p(1-p)/N)` — 0.7 percentage point for weights 3:1.
//!
//! These bounds are exact while the ring stays under [`MAX_POINTS`]
//! (total weight ≤ 512). A larger group gets `weight × MAX_POINTS / total`
//! points per server instead; a server's `j`-th point does not depend on its
//! point count, so a membership change that alters the counts moves, besides
//! the keys above, only the keys of the points gained or lost — about
//! `|Δcount| / count` of each server's keys (under 1% when a 4097th server
//! joins 4096 of weight 1, 128 points each).
//!
//! Weir instances with the same servers (ids and weights) map every key the
//! same way: the hash is fixed, not seeded per process.
//!
//! # Lookup
//! An index by the top bits of the hash (8 to 16 points per bucket) narrows
//! the binary search to one or two cache lines: two or three memory reads
//! per pick.

use std::net::IpAddr;

pub use super::hash_key::HashKey;
use super::round_robin::SmoothWeighted;
use super::Endpoint;
use super::{scan_from, Balancer, PickContext};

/// Ring points per unit of weight.
pub const POINTS_PER_WEIGHT: u64 = 1024;
/// Largest ring, in points (8 bytes each: 4 MiB, plus a 256 KiB index; small
/// enough for the CPU caches and TLB to keep a pick under 100 ns).
pub const MAX_POINTS: u64 = 1 << 19;

// === stable hashing ===

/// MurmurHash3's 64-bit finalizer (`fmix64`): a bijective avalanche mix.
#[inline]
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// A fixed (unseeded, so equal across processes and weir instances) 64-bit
/// hash of `bytes`: 8-byte words folded with `fmix64`, length included.
#[inline]
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h = 0x9e37_79b9_7f4a_7c15 ^ (bytes.len() as u64).wrapping_mul(0x2545_f491_4f6c_dd1d);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h ^ mix(u64::from_le_bytes(w)))
            .rotate_left(27)
            .wrapping_mul(5)
            .wrapping_add(0x52dc_e729);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h ^= mix(u64::from_le_bytes(w) ^ 0xff);
    }
    mix(h)
}

/// The hash of a client address: the whole address (like HAProxy's
/// `balance source`, unlike nginx's `ip_hash`, which keeps the first three
/// IPv4 octets). An IPv4-mapped IPv6 address hashes as its IPv4 address.
#[inline]
pub fn hash_ip(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => hash_bytes(&v4.octets()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => hash_bytes(&v4.octets()),
            None => hash_bytes(&v6.octets()),
        },
    }
}

// === the ring ===

/// The ketama ring of one group snapshot.
#[derive(Debug)]
pub struct Ring {
    /// `position << 32 | server index`, ascending by position: a point and
    /// its owner share a cache line.
    entries: Vec<u64>,
    /// `index[b]`: the first entry whose position's top `bits` bits are ≥ `b`
    /// (`2^bits + 1` entries, 8 to 16 points per bucket: one or two cache lines).
    index: Vec<u32>,
    /// `32 - bits`.
    shift: u32,
}

impl Ring {
    /// The ring of `servers`: `POINTS_PER_WEIGHT × weight` points each, placed
    /// by the hash of the server id.
    pub fn new<E: Endpoint>(servers: &[E]) -> Self {
        Self::with_limits(servers, POINTS_PER_WEIGHT, MAX_POINTS)
    }

    fn with_limits<E: Endpoint>(servers: &[E], per_weight: u64, max_points: u64) -> Self {
        let total: u64 = servers.iter().map(|s| u64::from(s.weight().max(1))).sum();
        let uncapped = total.saturating_mul(per_weight) <= max_points;
        let points_of = |weight: u32| {
            let w = u64::from(weight.max(1));
            if uncapped {
                w * per_weight
            } else {
                (w * max_points / total).max(1)
            }
        };
        let count: u64 = servers.iter().map(|s| points_of(s.weight())).sum();
        let mut points: Vec<(u32, u64, u32)> = Vec::with_capacity(count as usize);
        for (i, s) in servers.iter().enumerate() {
            let id = hash_bytes(s.id().as_bytes());
            for j in 0..points_of(s.weight()) {
                let p = mix(id ^ (j + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                points.push(((p >> 32) as u32, id, i as u32));
            }
        }
        // Equal positions: the order of the ids decides, not config order.
        points.sort_unstable_by_key(|&(p, id, _)| (p, id));
        let entries: Vec<u64> = points
            .iter()
            .map(|&(p, _, owner)| (u64::from(p) << 32) | u64::from(owner))
            .collect();
        drop(points);
        let bits = (usize::BITS - entries.len().max(1).leading_zeros()).clamp(5, 26) - 4;
        let shift = 32 - bits;
        let mut index = Vec::with_capacity((1usize << bits) + 1);
        let mut pos = 0usize;
        for b in 0..=(1u64 << bits) {
            while pos < entries.len() && (entries[pos] >> (32 + shift)) < b {
                pos += 1;
            }
            index.push(pos as u32);
        }
        Ring {
            entries,
            index,
            shift,
        }
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the ring has no point (no server).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The position of the first point clockwise of `hash` (top 32 bits used).
    #[inline]
    fn position(&self, hash: u64) -> usize {
        let p = hash >> 32;
        let b = (p >> self.shift) as usize;
        let lo = self.index[b] as usize;
        let hi = self.index[b + 1] as usize;
        let pos = lo + self.entries[lo..hi].partition_point(|&e| (e >> 32) < p);
        if pos == self.entries.len() {
            0
        } else {
            pos
        }
    }

    #[inline]
    fn owner(&self, pos: usize) -> usize {
        (self.entries[pos] & 0xffff_ffff) as usize
    }

    /// The server owning `hash`, walking clockwise past servers that are not
    /// `usable` (at most `n` points, then a plain scan: bounded by `2n`).
    #[inline]
    pub fn lookup(&self, hash: u64, n: usize, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        if self.entries.is_empty() {
            return None;
        }
        let mut pos = self.position(hash);
        let first = self.owner(pos);
        let mut last = usize::MAX;
        for _ in 0..n.min(self.entries.len()) {
            let i = self.owner(pos);
            if i != last {
                if usable(i) {
                    return Some(i);
                }
                last = i;
            }
            pos += 1;
            if pos == self.entries.len() {
                pos = 0;
            }
        }
        scan_from(first, n, usable)
    }
}

/// What a consistent-hash balancer hashes.
#[derive(Debug)]
enum Source {
    ClientIp,
    Key(HashKey),
}

/// `ip_hash` and `hash`: the ketama ring over a request key.
#[derive(Debug)]
pub struct ConsistentHash {
    ring: Ring,
    source: Source,
    /// `hash` without its key in the request: smooth weighted round robin
    /// (HAProxy's `balance hdr()` does the same).
    fallback: SmoothWeighted,
}

impl ConsistentHash {
    /// `ip_hash`: hashes the client address.
    pub fn client_ip<E: Endpoint>(servers: &[E]) -> Self {
        ConsistentHash {
            ring: Ring::new(servers),
            source: Source::ClientIp,
            fallback: SmoothWeighted::new(servers),
        }
    }

    /// `hash`: hashes `key`, round robin when the request lacks it.
    pub fn key<E: Endpoint>(servers: &[E], key: HashKey) -> Self {
        ConsistentHash {
            ring: Ring::new(servers),
            source: Source::Key(key),
            fallback: SmoothWeighted::new(servers),
        }
    }
}

impl<E: Endpoint> Balancer<E> for ConsistentHash {
    fn pick(
        &self,
        servers: &[E],
        ctx: &PickContext<'_>,
        usable: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let hash = match &self.source {
            Source::ClientIp => hash_ip(ctx.client_ip),
            Source::Key(key) => match key.extract(ctx) {
                Some(bytes) => hash_bytes(bytes),
                None => return self.fallback.pick(servers, ctx, usable),
            },
        };
        self.ring.lookup(hash, servers.len(), usable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::tests::servers_named;

    fn owner_of(ring: &Ring, key: &[u8], n: usize) -> usize {
        ring.lookup(hash_bytes(key), n, &|_| true).unwrap()
    }

    #[test]
    fn hash_is_stable_across_processes() {
        // Fixed values: weir instances must agree.
        assert_eq!(hash_bytes(b""), hash_bytes(b""));
        assert_ne!(hash_bytes(b"a"), hash_bytes(b"b"));
        assert_ne!(hash_bytes(b"abcdefgh1"), hash_bytes(b"abcdefgh2"));
        // Golden values: changing the hash remaps every key of every deployment.
        assert_eq!(hash_bytes(b"weir"), 0x73b5_efad_0435_7579);
        assert_eq!(hash_bytes(b"127.0.0.1 and more"), 0x80fb_1779_de0c_c772);
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        let v4: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(hash_ip(mapped), hash_ip(v4));
    }

    #[test]
    fn weights_are_honored_over_distinct_keys() {
        let s = servers_named(&[("a", 3), ("b", 1)]);
        let ring = Ring::new(&s);
        let mut counts = [0usize; 2];
        for k in 0..40_000 {
            counts[owner_of(&ring, format!("key-{k}").as_bytes(), 2)] += 1;
        }
        let share = counts[0] as f64 / 40_000.0;
        assert!((share - 0.75).abs() < 0.03, "{counts:?}");
    }

    #[test]
    fn removing_a_server_moves_only_its_keys() {
        let five = servers_named(&[("s1", 1), ("s2", 1), ("s3", 1), ("s4", 1), ("s5", 1)]);
        let four = servers_named(&[("s1", 1), ("s2", 1), ("s4", 1), ("s5", 1)]);
        let (r5, r4) = (Ring::new(&five), Ring::new(&four));
        for k in 0..20_000 {
            let key = format!("k{k}");
            let before = &five[owner_of(&r5, key.as_bytes(), 5)].id;
            let after = &four[owner_of(&r4, key.as_bytes(), 4)].id;
            if &**before != "s3" {
                assert_eq!(before, after, "{key}");
            }
        }
    }

    #[test]
    fn a_down_server_moves_only_its_keys_spread_over_the_others() {
        let s = servers_named(&[("s1", 1), ("s2", 1), ("s3", 1), ("s4", 1), ("s5", 1)]);
        let ring = Ring::new(&s);
        let mut moved_to = [0usize; 5];
        for k in 0..20_000 {
            let h = hash_bytes(format!("k{k}").as_bytes());
            let up = ring.lookup(h, 5, &|_| true).unwrap();
            let down = ring.lookup(h, 5, &|i| i != 2).unwrap();
            if up != 2 {
                assert_eq!(up, down);
            } else {
                moved_to[down] += 1;
            }
        }
        assert_eq!(moved_to[2], 0);
        assert!(
            moved_to.iter().enumerate().all(|(i, &c)| i == 2 || c > 500),
            "{moved_to:?}"
        );
        assert_eq!(ring.lookup(1, 5, &|_| false), None);
    }

    #[test]
    fn big_groups_are_capped() {
        let names: Vec<(String, u32)> = (0..500).map(|i| (format!("s{i}"), 1000)).collect();
        let refs: Vec<(&str, u32)> = names.iter().map(|(n, w)| (n.as_str(), *w)).collect();
        let ring = Ring::with_limits(&servers_named(&refs), 1024, 1 << 16);
        assert!(ring.len() as u64 <= (1 << 16) + 500);
        assert!(ring.len() >= 1 << 15);
        // Still a ring: every key finds a server.
        assert!(ring.lookup(hash_bytes(b"k"), 500, &|_| true).is_some());
    }
}
