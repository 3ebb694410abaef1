//! Request coalescing (nginx `proxy_cache_lock`, Varnish request
//! collapsing): while one request for a key is forwarded (a miss or a
//! revalidation), later requests for the same key wait for its outcome
//! instead of going to the server too. They wait at most
//! `cache.lock_timeout`; then, or when the leader's response is not stored,
//! each goes to the server itself.
//!
//! The table of flights takes a lock only on misses; hits never touch it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::store::Entry;

/// How a flight ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The response was stored: waiters answer with it.
    Stored(Arc<Entry>),
    /// Nothing was stored (not cacheable, too large, failed, cut short):
    /// waiters forward on their own.
    NotStored,
}

type Rx = watch::Receiver<Option<Outcome>>;

/// The flights in progress, by key.
#[derive(Debug, Default)]
pub struct Flights {
    map: Mutex<HashMap<Box<str>, Rx>>,
}

/// What [`Flights::join`] gives a request.
#[derive(Debug)]
pub enum Joined {
    /// No flight for the key: this request leads one and must end it
    /// (dropping the [`Leader`] ends it with [`Outcome::NotStored`]).
    Leader(Leader),
    /// Another request leads: wait on this.
    Waiter(Waiter),
}

impl Flights {
    /// Joins the flight for `key`, or starts one.
    pub fn join(self: &Arc<Self>, key: &str) -> Joined {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(rx) = map.get(key) {
            if rx.has_changed().is_ok() {
                return Joined::Waiter(Waiter { rx: rx.clone() });
            }
        }
        let (tx, rx) = watch::channel(None);
        map.insert(key.into(), rx);
        Joined::Leader(Leader {
            flights: Arc::clone(self),
            key: key.into(),
            tx: Some(tx),
        })
    }

    /// True when a flight for `key` is in progress.
    pub fn in_flight(&self, key: &str) -> bool {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key).is_some_and(|rx| rx.has_changed().is_ok())
    }

    /// Flights in progress.
    pub fn len(&self) -> usize {
        self.map.lock().map_or(0, |m| m.len())
    }

    /// True when no flight is in progress.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The request that forwards for a key; others wait for its [`Outcome`].
#[derive(Debug)]
pub struct Leader {
    flights: Arc<Flights>,
    key: Box<str>,
    tx: Option<watch::Sender<Option<Outcome>>>,
}

impl Leader {
    /// Ends the flight with `outcome`, waking every waiter.
    pub fn finish(mut self, outcome: Outcome) {
        self.end(outcome);
    }

    fn end(&mut self, outcome: Outcome) {
        let Some(tx) = self.tx.take() else { return };
        {
            let mut map = self.flights.map.lock().unwrap_or_else(|e| e.into_inner());
            // Only our own flight (a timed-out key may have a newer one).
            if map
                .get(&*self.key)
                .is_some_and(|rx| rx.same_channel(&tx.subscribe()))
            {
                map.remove(&*self.key);
            }
        }
        let _ = tx.send(Some(outcome));
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        self.end(Outcome::NotStored);
    }
}

/// A request waiting for another's response.
#[derive(Debug)]
pub struct Waiter {
    rx: Rx,
}

impl Waiter {
    /// Waits at most `timeout` for the leader's outcome; `None` when the
    /// wait timed out.
    pub async fn wait(mut self, timeout: Duration) -> Option<Outcome> {
        let waited = tokio::time::timeout(timeout, self.rx.wait_for(Option::is_some)).await;
        match waited {
            Ok(Ok(v)) => v.clone(),
            // The leader went away without a word.
            Ok(Err(_)) => Some(Outcome::NotStored),
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waiters_get_the_leaders_outcome() {
        let flights = Arc::new(Flights::default());
        let Joined::Leader(leader) = flights.join("k") else {
            panic!("first is the leader")
        };
        let Joined::Waiter(w) = flights.join("k") else {
            panic!("second waits")
        };
        assert!(flights.in_flight("k"));
        let waiting = tokio::spawn(w.wait(Duration::from_secs(5)));
        drop(leader);
        assert!(matches!(waiting.await.unwrap(), Some(Outcome::NotStored)));
        assert!(!flights.in_flight("k"));
        assert!(matches!(flights.join("k"), Joined::Leader(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_times_out() {
        let flights = Arc::new(Flights::default());
        let _leader = flights.join("k");
        let Joined::Waiter(w) = flights.join("k") else {
            panic!("second waits")
        };
        assert!(w.wait(Duration::from_secs(5)).await.is_none());
    }
}
