//! Searches of the tree: the least key without some servers, and the first
//! server from a position whose key is at most a bound (the pick's walk:
//! along a line, up a level at its end, down to the first leaf).

use std::sync::atomic::Ordering::SeqCst;

use super::{LoadIndex, FANOUT, UNAVAILABLE};

impl LoadIndex {
    /// The least key over all servers but those in `skip` ([`Self::least`]
    /// when `skip` is empty): O(|skip| · log n) loads.
    #[inline]
    pub(crate) fn least_without(&self, skip: &[usize]) -> u64 {
        if skip.is_empty() {
            return self.least();
        }
        let top = self.top();
        (0..self.lens[top])
            .map(|j| self.masked(top, j, skip))
            .fold(UNAVAILABLE, u64::min)
    }

    /// Node `j` of level `k` (leaves `j·8^k ..`) without the leaves in `skip`.
    fn masked(&self, k: usize, j: usize, skip: &[usize]) -> u64 {
        let span = 1usize << (3 * k);
        let lo = j * span;
        if !skip.iter().any(|&s| s >= lo && s - lo < span) {
            return self.val(k, j);
        }
        if k == 0 {
            return UNAVAILABLE;
        }
        (FANOUT * j..FANOUT * j + FANOUT)
            .map(|c| self.masked(k - 1, c, skip))
            .fold(UNAVAILABLE, u64::min)
    }

    /// The first server at or after `start` (wrapping) whose key is at most
    /// `m` and which is not in `skip`; `None` when the tree shows none (it
    /// may have moved since `m` was read).
    #[inline]
    pub(crate) fn find(&self, start: usize, m: u64, skip: &[usize]) -> Option<usize> {
        if skip.is_empty() {
            // The top line's first and last subtrees holding key `m`: when
            // `start` lies outside them, the answer is the first leaf of the
            // first (directly, or after wrapping), one descent.
            let top = self.top();
            let line = self.line(top, 0);
            let (mut first, mut last) = (FANOUT, 0);
            for (j, node) in line.0.iter().enumerate() {
                if node.load(SeqCst) <= m {
                    first = first.min(j);
                    last = j;
                }
            }
            if first == FANOUT {
                return None;
            }
            let at = start >> (3 * top);
            if at < first || at > last {
                return self.descend(top, first, m);
            }
        }
        let mut from = start;
        while let Some(i) = self.first_from(from, m) {
            if !skip.contains(&i) {
                return Some(i);
            }
            from = i + 1;
        }
        let mut next = self.leftmost(m);
        while let Some(i) = next {
            if i >= start {
                return None;
            }
            if !skip.contains(&i) {
                return Some(i);
            }
            next = self.first_from(i + 1, m);
        }
        None
    }

    /// The first server in `start..n` whose key is at most `m`: along the
    /// rest of each line, climbing a level at each line's end, then down to
    /// the first qualifying leaf.
    fn first_from(&self, start: usize, m: u64) -> Option<usize> {
        if start >= self.n {
            return None;
        }
        let (mut k, mut pos) = (0, start);
        loop {
            // Padding slots are UNAVAILABLE: no need to stop at `lens[k]`.
            if pos < self.lens[k] {
                let (l, c) = (pos / FANOUT, pos % FANOUT);
                let line = self.line(k, l);
                if let Some(c) = (c..FANOUT).find(|&c| line.0[c].load(SeqCst) <= m) {
                    return self.descend(k, l * FANOUT + c, m);
                }
            }
            if k == self.top() {
                return None;
            }
            pos = pos / FANOUT + 1;
            k += 1;
        }
    }

    /// The first server whose key is at most `m`.
    fn leftmost(&self, m: u64) -> Option<usize> {
        let top = self.top();
        let line = self.line(top, 0);
        let j = (0..FANOUT).find(|&j| line.0[j].load(SeqCst) <= m)?;
        self.descend(top, j, m)
    }

    /// From node `j` of level `k` (whose key is at most `m`) down to its
    /// first leaf whose key is at most `m`.
    fn descend(&self, mut k: usize, mut j: usize, m: u64) -> Option<usize> {
        while k > 0 {
            k -= 1;
            let line = self.line(k, j);
            j = FANOUT * j + (0..FANOUT).find(|&c| line.0[c].load(SeqCst) <= m)?;
        }
        (j < self.n).then_some(j)
    }
}
