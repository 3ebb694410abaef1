//! The body tee: a response on its way to the first client is copied as it
//! streams (the client is never held back), and stored when it ended
//! cleanly within `cache.max_object_size`. A body that grows past the
//! limit, fails or is cut short (the client went away) is not stored; the
//! coalesced waiters are released at once then.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::coalesce::{Leader, Outcome};
use super::store::Entry;
use super::Cache;

/// What a tee stores when its body ends; built by the cache on a miss.
#[derive(Debug)]
pub struct Pending {
    /// The stored response but for its body (its `body` is empty here).
    pub entry: Entry,
    /// The primary key.
    pub primary: Box<str>,
}

/// Copies a streaming body for the cache (see the module docs).
#[derive(Debug)]
pub struct Tee {
    cache: Arc<Cache>,
    pending: Option<Box<Pending>>,
    buf: BytesMut,
    leader: Option<Leader>,
}

impl Tee {
    /// A tee that stores `pending` in `cache` at the end, ending `leader`'s
    /// flight with the stored entry.
    pub fn new(cache: Arc<Cache>, pending: Pending, leader: Option<Leader>, hint: u64) -> Self {
        let cap = usize::try_from(hint.min(cache.config.max_object_size)).unwrap_or(0);
        Tee {
            cache,
            pending: Some(Box::new(pending)),
            buf: BytesMut::with_capacity(cap),
            leader,
        }
    }

    /// One data frame went to the client.
    pub fn data(&mut self, data: &Bytes) {
        if self.pending.is_none() {
            return;
        }
        if (self.buf.len() + data.len()) as u64 > self.cache.config.max_object_size {
            // Too large: streams on uncached; waiters go to the server.
            self.pending = None;
            self.buf = BytesMut::new();
            self.cache.stats.too_large.inc();
            if let Some(l) = self.leader.take() {
                l.finish(Outcome::NotStored);
            }
            return;
        }
        self.buf.extend_from_slice(data);
    }

    /// The body ended cleanly: store it.
    pub fn end(&mut self) {
        let Some(p) = self.pending.take() else { return };
        let Pending { mut entry, primary } = *p;
        entry.body = std::mem::take(&mut self.buf).freeze();
        entry.weight = Entry::weigh(&entry.key, &entry.headers, &entry.body);
        entry.stored_at = Instant::now();
        let entry = Arc::new(entry);
        self.cache.put(primary, &entry);
        if let Some(l) = self.leader.take() {
            l.finish(Outcome::Stored(entry));
        }
    }
}
