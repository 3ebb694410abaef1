//! The group queue (`groups.*.queue`): requests that found every usable
//! server at its `max_connections` wait here, first in first out, for a
//! slot (HAProxy's backend queue with `maxconn`/`maxqueue`/`timeout queue`).
//!
//! One queue per group name, shared by every worker and kept across
//! reloads (it lives in the state registry). The in-flight counts it waits
//! on are the servers' global atomics; a slot frees when a request's
//! in-flight guard drops, which calls [`GroupQueue::slot_freed`].
//!
//! No lost wake-ups, no busy loop:
//! - a waiter registers (pushes itself, `len` incremented, `SeqCst`) and
//!   then tries once more for a slot before it sleeps; a releaser
//!   decrements the in-flight count (`SeqCst`) and then reads `len`. In the
//!   single total order one of them sees the other: either the waiter's
//!   second try finds the slot, or the releaser sees a waiter and wakes it.
//! - a wake-up is handed to one waiter (popped from the front, its own
//!   `Notify` permit stored, so a wake before it sleeps is not lost); a
//!   waiter that leaves (timeout, client gone) after it was woken hands the
//!   wake-up on to the next one.
//! - a woken waiter that finds no slot (a new request took it first)
//!   re-registers at the front and sleeps again; its deadline stays.
//!
//! The lock is taken only when the queue is in use (a waiter registers or
//! leaves, or a slot frees while `len > 0`), never on the plain request path.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::edge::Acquire;
use super::group::Excluded;
use super::server::InFlightGuard;
use super::ServerGroup;
use crate::balancer::PickContext;
use crate::config::edge::QueueConfig;

/// One waiting request.
#[derive(Debug, Default)]
struct Waiter {
    notify: Notify,
    /// Set (under the queue lock) when a wake-up was handed to it.
    woken: AtomicBool,
}

/// A group's FIFO of requests waiting for a server slot, with its counters.
#[derive(Debug, Default)]
pub struct GroupQueue {
    waiters: Mutex<VecDeque<Arc<Waiter>>>,
    /// `waiters.len()`, readable without the lock.
    len: AtomicUsize,
    max: AtomicUsize,
    timeout_ms: AtomicU64,
    /// Requests that waited (and got a slot or not).
    pub queued: AtomicU64,
    /// Requests refused at once because `max` were waiting.
    pub rejected_full: AtomicU64,
    /// Requests that waited `timeout` without a slot.
    pub timeouts: AtomicU64,
    /// Sum of the waits of requests that left the queue, in microseconds.
    pub wait_us_sum: AtomicU64,
    /// Longest wait seen, in microseconds.
    pub wait_us_max: AtomicU64,
}

/// Why a request got no server slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// No usable server at all (503, as before queues).
    NoServer,
    /// `queue.max` requests were already waiting (503 at once).
    QueueFull,
    /// Waited `queue.timeout` (503).
    Timeout,
}

impl GroupQueue {
    /// Applies the group's queue settings (at each config build).
    pub fn configure(&self, config: QueueConfig) {
        self.max.store(config.max, Ordering::Relaxed);
        self.timeout_ms
            .store(config.timeout.as_millis() as u64, Ordering::Relaxed);
    }

    /// Requests waiting now.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::SeqCst)
    }

    /// True when no request waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<Waiter>>> {
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A server slot freed: wakes the first waiter, if any.
    pub fn slot_freed(&self) {
        if self.len.load(Ordering::SeqCst) == 0 {
            return;
        }
        self.wake_one();
    }

    fn wake_one(&self) {
        let mut q = self.lock();
        if let Some(w) = q.pop_front() {
            self.len.store(q.len(), Ordering::SeqCst);
            w.woken.store(true, Ordering::SeqCst);
            w.notify.notify_one();
        }
    }

    /// Registers a waiter (at the front when it had waited already);
    /// `None` when `max` are waiting.
    fn register(self: &Arc<Self>, front: bool) -> Option<Registration<'_>> {
        let waiter = Arc::new(Waiter::default());
        let mut q = self.lock();
        if !front && q.len() >= self.max.load(Ordering::Relaxed) {
            return None;
        }
        if front {
            q.push_front(Arc::clone(&waiter));
        } else {
            q.push_back(Arc::clone(&waiter));
        }
        self.len.store(q.len(), Ordering::SeqCst);
        Some(Registration {
            queue: self,
            waiter,
        })
    }

    fn record_wait(&self, waited: Duration) {
        let us = waited.as_micros() as u64;
        self.wait_us_sum.fetch_add(us, Ordering::Relaxed);
        self.wait_us_max.fetch_max(us, Ordering::Relaxed);
    }
}

/// A waiter's place in the queue; leaving (drop) removes it, or hands on a
/// wake-up it got but did not use.
struct Registration<'a> {
    queue: &'a GroupQueue,
    waiter: Arc<Waiter>,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let mut q = self.queue.lock();
        if let Some(pos) = q.iter().position(|w| Arc::ptr_eq(w, &self.waiter)) {
            q.remove(pos);
            self.queue.len.store(q.len(), Ordering::SeqCst);
            return;
        }
        drop(q);
        if self.waiter.woken.swap(false, Ordering::SeqCst) {
            // Woken, but leaving without taking the slot: pass it on.
            self.queue.wake_one();
        }
    }
}

impl Registration<'_> {
    /// The wake-up was used (a slot was taken): nothing to hand on.
    fn consumed(self) {
        self.waiter.woken.store(false, Ordering::SeqCst);
        drop(self);
    }
}

/// A server slot for this request: at once when a usable server has one,
/// else after waiting in `group`'s queue (FIFO, up to `queue.timeout`).
///
/// # Errors
/// [`Refused`]: no usable server, queue full, or the wait timed out.
pub async fn acquire(
    group: &ServerGroup,
    pinned: Option<usize>,
    ctx: &PickContext<'_>,
    excluded: &Excluded,
) -> Result<(usize, InFlightGuard), Refused> {
    match group.try_acquire(pinned, ctx, excluded) {
        Acquire::Server(i, g) => return Ok((i, g)),
        Acquire::NoServer => return Err(Refused::NoServer),
        Acquire::Full => {}
    }
    let queue = &group.edge.queue;
    let start = tokio::time::Instant::now();
    let timeout = Duration::from_millis(queue.timeout_ms.load(Ordering::Relaxed));
    let deadline = start + timeout;
    let mut front = false;
    let mut counted = false;
    loop {
        let Some(reg) = queue.register(front) else {
            queue.rejected_full.fetch_add(1, Ordering::Relaxed);
            return Err(Refused::QueueFull);
        };
        if !counted {
            counted = true;
            queue.queued.fetch_add(1, Ordering::Relaxed);
        }
        // Registered: a slot freed from now on wakes us; one freed before
        // is found by this second try.
        std::sync::atomic::fence(Ordering::SeqCst);
        let outcome = match group.try_acquire(pinned, ctx, excluded) {
            Acquire::Full => None,
            other => Some(other),
        };
        let outcome = match outcome {
            Some(o) => o,
            None => {
                let woken = tokio::time::timeout_at(deadline, reg.waiter.notify.notified()).await;
                if woken.is_err() {
                    drop(reg);
                    queue.record_wait(start.elapsed());
                    queue.timeouts.fetch_add(1, Ordering::Relaxed);
                    return Err(Refused::Timeout);
                }
                group.try_acquire(pinned, ctx, excluded)
            }
        };
        match outcome {
            Acquire::Server(i, g) => {
                reg.consumed();
                queue.record_wait(start.elapsed());
                return Ok((i, g));
            }
            Acquire::NoServer => {
                drop(reg);
                queue.record_wait(start.elapsed());
                return Err(Refused::NoServer);
            }
            Acquire::Full => {
                // Woken but the slot went to another request: wait again,
                // first in line. (The wake-up is spent: the slot's taker
                // will free one later.)
                reg.consumed();
                front = true;
            }
        }
    }
}
