//! `listeners[].max_connections` and `listeners[].max_connections_per_ip`.
//!
//! The listener cap is enforced before `accept`: an accept loop first
//! [reserves](ConnLimiter::reserve) a slot, waiting while every slot is
//! taken, so new connections queue in the kernel's listen backlog (and are
//! accepted as soon as one closes) rather than being accepted and dropped.
//! The per-address cap is checked right after `accept`
//! ([`Slot::admit`]): a connection past it is closed at once.
//!
//! One limiter is shared by every accept loop of a listener: the slot count
//! is one atomic (a compare-and-swap per accepted connection), and the
//! per-address counts are in 16 mutex-guarded shards, touched once when a
//! connection opens and once when it closes (never per request).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

const SHARDS: usize = 16;

/// The connection limits of one listener, and its counts. Cheap to share.
#[derive(Debug)]
pub struct ConnLimiter {
    /// `max_connections`; 0 = no cap.
    max: AtomicUsize,
    /// `max_connections_per_ip`; 0 = no cap.
    per_ip: AtomicUsize,
    /// Connections holding a slot (accepted and open, or being accepted).
    open: AtomicUsize,
    /// Woken when a slot frees or the caps change.
    freed: Notify,
    /// Open connections per client address (only while a per-address cap is set).
    ips: Box<[Mutex<HashMap<IpAddr, u32>>]>,
    hasher: std::hash::RandomState,
    /// Connections closed at once because their address was at its cap.
    rejected_per_ip: AtomicU64,
    /// Times the accept loop had to wait for a free slot.
    paused: AtomicU64,
}

impl Default for ConnLimiter {
    fn default() -> Self {
        ConnLimiter {
            max: AtomicUsize::new(0),
            per_ip: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            freed: Notify::new(),
            ips: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: std::hash::RandomState::new(),
            rejected_per_ip: AtomicU64::new(0),
            paused: AtomicU64::new(0),
        }
    }
}

impl ConnLimiter {
    /// A limiter with the given caps (`None` = no cap).
    pub fn new(max: Option<usize>, per_ip: Option<usize>) -> Arc<Self> {
        let l = Arc::new(ConnLimiter::default());
        l.configure(max, per_ip);
        l
    }

    /// Sets the caps (at start and on reload); open connections stay.
    pub fn configure(&self, max: Option<usize>, per_ip: Option<usize>) {
        self.max.store(max.unwrap_or(0), Ordering::Relaxed);
        self.per_ip.store(per_ip.unwrap_or(0), Ordering::Relaxed);
        self.freed.notify_waiters();
    }

    /// `max_connections` (`None` = no cap).
    pub fn max(&self) -> Option<usize> {
        Some(self.max.load(Ordering::Relaxed)).filter(|&m| m > 0)
    }

    /// `max_connections_per_ip` (`None` = no cap).
    pub fn max_per_ip(&self) -> Option<usize> {
        Some(self.per_ip.load(Ordering::Relaxed)).filter(|&m| m > 0)
    }

    /// Connections holding a slot now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// True while every slot is taken (the accept loop waits).
    pub fn at_capacity(&self) -> bool {
        self.max().is_some_and(|m| self.open() >= m)
    }

    /// Client addresses with at least one open connection counted against
    /// the per-address cap.
    pub fn tracked_ips(&self) -> usize {
        self.ips
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    /// Connections closed at once for their address being at its cap.
    pub fn rejected_per_ip(&self) -> u64 {
        self.rejected_per_ip.load(Ordering::Relaxed)
    }

    /// Times an accept loop waited for a slot.
    pub fn pauses(&self) -> u64 {
        self.paused.load(Ordering::Relaxed)
    }

    /// Takes a connection slot, waiting while all are taken. Call before
    /// `accept`, so that past the cap connections wait in the kernel backlog.
    pub async fn reserve(self: &Arc<Self>) -> Slot {
        let mut counted_pause = false;
        loop {
            let max = self.max.load(Ordering::Relaxed);
            if max == 0 {
                // No cap: one atomic add, no waiting machinery.
                self.open.fetch_add(1, Ordering::AcqRel);
                return self.slot();
            }
            let cur = self.open.load(Ordering::Relaxed);
            if cur < max {
                if self
                    .open
                    .compare_exchange(cur, cur + 1, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    return self.slot();
                }
                continue;
            }
            // At the cap. Register for the wake-up before checking again, so
            // a release between the check and the await is not missed.
            let notified = self.freed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let max = self.max.load(Ordering::Relaxed);
            if max == 0 || self.open.load(Ordering::Relaxed) < max {
                continue;
            }
            if !counted_pause {
                counted_pause = true;
                self.paused.fetch_add(1, Ordering::Relaxed);
            }
            notified.await;
        }
    }

    /// Waits until fewer than `max_connections` are open, without taking a
    /// slot. Each worker's accept loop waits here before it accepts: with one
    /// listening socket per worker (`SO_REUSEPORT`), a slot reserved by one
    /// worker could wait for a connection the kernel queued on another
    /// worker's socket. Several workers passing at once may accept a few
    /// connections past the cap; [`Self::reserve`] then holds them until a
    /// slot frees (at most one per worker).
    pub async fn below_cap(&self) {
        loop {
            let max = self.max.load(Ordering::Relaxed);
            if max == 0 || self.open.load(Ordering::Relaxed) < max {
                return;
            }
            let notified = self.freed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let max = self.max.load(Ordering::Relaxed);
            if max == 0 || self.open.load(Ordering::Relaxed) < max {
                return;
            }
            self.paused.fetch_add(1, Ordering::Relaxed);
            notified.await;
        }
    }

    fn slot(self: &Arc<Self>) -> Slot {
        Slot {
            limiter: Arc::clone(self),
        }
    }

    fn shard(&self, ip: &IpAddr) -> &Mutex<HashMap<IpAddr, u32>> {
        &self.ips[(self.hasher.hash_one(ip) as usize) % SHARDS]
    }

    fn release(&self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        if self.max.load(Ordering::Relaxed) != 0 {
            self.freed.notify_waiters();
        }
    }
}

/// A reserved connection slot; released when dropped (or when the
/// [`ConnPermit`] it became is).
#[derive(Debug)]
pub struct Slot {
    limiter: Arc<ConnLimiter>,
}

impl Slot {
    /// Admits a connection from `ip` into the slot, or `None` when `ip` is
    /// at its per-address cap (close the connection; the slot is released).
    pub fn admit(self, ip: IpAddr) -> Option<ConnPermit> {
        let l = &self.limiter;
        let cap = l.per_ip.load(Ordering::Relaxed);
        if cap == 0 {
            return Some(ConnPermit {
                slot: self,
                ip: None,
            });
        }
        let ip = ip.to_canonical();
        let mut map = l.shard(&ip).lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n as usize >= cap {
            if *n == 0 {
                map.remove(&ip);
            }
            drop(map);
            l.rejected_per_ip.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *n += 1;
        drop(map);
        Some(ConnPermit {
            slot: self,
            ip: Some(ip),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.limiter.release();
    }
}

/// An admitted connection; its counts drop when it does (keep it in the
/// connection's task).
#[derive(Debug)]
pub struct ConnPermit {
    slot: Slot,
    /// The address counted against the per-address cap, if any.
    ip: Option<IpAddr>,
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        if let Some(ip) = self.ip {
            let l = &self.slot.limiter;
            let mut map = l.shard(&ip).lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = map.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&ip);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn listener_cap_waits_for_a_free_slot() {
        let l = ConnLimiter::new(Some(2), None);
        let a = l.reserve().await.admit(ip("127.0.0.1")).unwrap();
        let _b = l.reserve().await.admit(ip("127.0.0.1")).unwrap();
        assert!(l.at_capacity());
        let waiting = tokio::time::timeout(Duration::from_secs(5), l.reserve()).await;
        assert!(waiting.is_err(), "a third slot was handed out past the cap");
        assert_eq!(l.pauses(), 1);
        let l2 = Arc::clone(&l);
        let third = tokio::spawn(async move { l2.reserve().await });
        tokio::task::yield_now().await;
        assert!(!third.is_finished());
        drop(a);
        let slot = tokio::time::timeout(Duration::from_secs(1), third)
            .await
            .expect("freed slot wakes the waiter")
            .unwrap();
        assert_eq!(l.open(), 2);
        drop(slot);
        assert_eq!(l.open(), 1);
        // Raising the cap wakes a waiter too.
        let _c = l.reserve().await;
        let l3 = Arc::clone(&l);
        let fourth = tokio::spawn(async move { l3.reserve().await });
        tokio::task::yield_now().await;
        l.configure(Some(3), None);
        tokio::time::timeout(Duration::from_secs(1), fourth)
            .await
            .expect("a raised cap wakes the waiter")
            .unwrap();
    }

    #[tokio::test]
    async fn per_ip_cap_rejects_the_next_connection() {
        let l = ConnLimiter::new(None, Some(4));
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(l.reserve().await.admit(ip("127.0.0.2")).unwrap());
        }
        assert!(l.reserve().await.admit(ip("127.0.0.2")).is_none());
        assert!(l.reserve().await.admit(ip("::ffff:127.0.0.2")).is_none());
        assert_eq!(l.rejected_per_ip(), 2);
        assert_eq!(l.open(), 4, "a rejected connection gives its slot back");
        let other = l.reserve().await.admit(ip("127.0.0.3")).unwrap();
        assert_eq!(l.tracked_ips(), 2);
        held.pop();
        assert!(l.reserve().await.admit(ip("127.0.0.2")).is_some());
        drop(held);
        drop(other);
        assert_eq!(l.tracked_ips(), 0);
        assert_eq!(l.open(), 0);
    }

    #[tokio::test]
    async fn unlimited_counts_only() {
        let l = ConnLimiter::new(None, None);
        let p: Vec<_> = futures_util::future::join_all((0..100).map(|_| l.reserve()))
            .await
            .into_iter()
            .map(|s| s.admit(ip("127.0.0.1")).unwrap())
            .collect();
        assert_eq!(l.open(), 100);
        assert_eq!(l.tracked_ips(), 0);
        drop(p);
        assert_eq!(l.open(), 0);
    }
}
