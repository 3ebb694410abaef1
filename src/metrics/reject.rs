//! The per-listener counters of the requests weir refused itself ([`Reason`],
//! defined in `crate::error`) behind
//! `weir_downstream_rejected_total{listener,reason}` ([`RejectStats`]). The
//! answers are built, counted and logged in `proxy::reject`.

use std::sync::atomic::{AtomicU64, Ordering};

pub use crate::error::Reason;

/// Rejected requests of one listener, by [`Reason`] (one atomic each; kept in
/// the listener's `ListenerStats`, so the count survives reloads).
#[derive(Debug, Default)]
pub struct RejectStats([AtomicU64; Reason::ALL.len()]);

impl RejectStats {
    /// Counts one rejection.
    pub fn inc(&self, reason: Reason) {
        self.0[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// The count of `reason`.
    pub fn get(&self, reason: Reason) -> u64 {
        self.0[reason.index()].load(Ordering::Relaxed)
    }

    /// `(reason, count)` for every reason.
    pub fn all(&self) -> impl Iterator<Item = (Reason, u64)> + '_ {
        Reason::ALL.iter().map(|r| (*r, self.get(*r)))
    }
}
