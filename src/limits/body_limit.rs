//! `routes[].max_request_body`: a request whose `Content-Length` says more
//! is answered 413 before anything is sent upstream; a body without a length
//! (chunked HTTP/1.1, HTTP/2 DATA frames) is counted as it streams, and when
//! it passes the limit the upstream request is abandoned (its connection is
//! closed, never pooled, never retried: the body was already being read) and
//! the client gets 413.
//!
//! The counting happens where the body is polled for the upstream
//! (`upstream::body::UpstreamBody`): past the limit that poll never yields the
//! frame (it returns pending), and [`BodyLimit::race`] drops the upstream
//! request in favour of the 413.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use http::HeaderMap;
use tokio::sync::Notify;

/// The byte count of one streaming request body against its limit.
#[derive(Debug)]
pub struct BodyLimit {
    max: u64,
    seen: AtomicU64,
    exceeded: AtomicBool,
    notify: Notify,
}

impl BodyLimit {
    /// A counter for a body of at most `max` bytes.
    pub fn new(max: u64) -> Arc<Self> {
        Arc::new(BodyLimit {
            max,
            seen: AtomicU64::new(0),
            exceeded: AtomicBool::new(false),
            notify: Notify::new(),
        })
    }

    /// The limit in bytes.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Counts `len` more bytes; true when the body is now past the limit
    /// (the frame must not be forwarded).
    pub fn add(&self, len: usize) -> bool {
        let total = self.seen.fetch_add(len as u64, Ordering::Relaxed) + len as u64;
        if total > self.max {
            self.exceeded.store(true, Ordering::Release);
            self.notify.notify_waiters();
            return true;
        }
        false
    }

    /// True once the body has passed the limit.
    pub fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::Acquire)
    }

    async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.exceeded() {
                return;
            }
            notified.await;
        }
    }

    /// Runs `f` (the upstream exchange) unless the body passes the limit
    /// first: `None` then, and `f` is dropped (aborting the upstream request).
    pub async fn race<F: Future>(&self, f: F) -> Option<F::Output> {
        let out = tokio::select! {
            out = f => Some(out),
            () = self.wait() => None,
        };
        // An exchange that failed because its body stalled at the limit is
        // the client's 413, not the server's 502.
        out.filter(|_| !self.exceeded())
    }
}

/// True when the request's `Content-Length` is larger than `max`.
pub fn content_length_exceeds(headers: &HeaderMap, max: u64) -> bool {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn race_gives_way_to_the_limit() {
        let l = BodyLimit::new(10);
        assert!(!l.add(6));
        assert_eq!(l.race(async { 1 }).await, Some(1));
        let l2 = Arc::clone(&l);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            l2.add(5);
        });
        let out = l.race(tokio::time::sleep(Duration::from_secs(60))).await;
        assert!(out.is_none());
        assert!(l.exceeded());
    }

    #[test]
    fn content_length() {
        let mut h = HeaderMap::new();
        assert!(!content_length_exceeds(&h, 10));
        h.insert(http::header::CONTENT_LENGTH, "11".parse().unwrap());
        assert!(content_length_exceeds(&h, 10));
        assert!(!content_length_exceeds(&h, 11));
    }
}
