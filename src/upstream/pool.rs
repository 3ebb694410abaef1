//! The connection pool of one server: idle HTTP/1.1 keep-alive connections
//! (plain or TLS) waiting for their next request.
//!
//! Each server keeps its own short list per worker (in its [`ServerState`],
//! so the pool survives reloads that keep the server's id). A request takes
//! the most recently used idle connection (its socket is warm, and older ones
//! age out), or connects a new one. The connection goes back to the list when
//! the response body has been read to its end; a response cut short closes
//! it. At most `pool.max_idle_per_server` are kept (the least recently used
//! one is closed to make room, as nginx's `keepalive` cache does), and a
//! sweeper task of the list closes those idle longer than the group's
//! `pool.idle_timeout`.
//!
//! An idle connection is only its socket (weir's own client,
//! [`super::h1`]: no task, no buffers while idle), checked with one
//! non-blocking peek when it is taken. A checkout is one uncontended lock
//! of this worker's list. nginx's `keepalive` upstream cache and HAProxy's
//! per-server idle lists work alike.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use http::uri::Authority;

use super::h1::Conn;
use super::ServerState;
use crate::clock;

/// Idle connections of one server on one worker, most recently used last
/// (a deque: the most recent is taken, the oldest evicted, both O(1)).
#[derive(Debug, Default)]
pub struct ConnPool {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    idle: VecDeque<Idle>,
    /// A sweeper task is running for this list.
    sweeping: bool,
}

#[derive(Debug)]
struct Idle {
    conn: Conn,
    /// When it is to be closed ([`crate::clock::now_ms`]).
    expires_ms: u64,
}

/// How a group connects and pools (from its config).
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Idle connections older than this are closed.
    pub idle_timeout: Duration,
    /// Most idle connections kept per server; 0 disables pooling.
    pub max_idle: usize,
    /// How connections are made: 0 = plain TCP, else the id of the group's
    /// TLS config. A pooled connection is reused only by the same profile
    /// (a reload that adds or changes `tls` does not reuse old connections).
    pub profile: u64,
    /// PROXY protocol header written on each new connection (`groups.*.proxy_protocol`).
    pub proxy_protocol: Option<crate::config::edge::ProxyVersion>,
}

impl ConnPool {
    /// Takes the most recently used idle connection to `address` made with
    /// `settings.profile` that the server has not closed and that is not
    /// past its idle timeout; closed, expired and foreign ones are closed on
    /// the way. `thorough`: check each with a system call (see
    /// [`Conn::is_usable`]).
    pub fn take(
        &self,
        address: &Authority,
        settings: &PoolSettings,
        thorough: bool,
    ) -> Option<Conn> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let now = clock::now_ms();
        while let Some(mut c) = inner.idle.pop_back() {
            // Exact bytes (a memcmp; `Authority`'s `==` folds case byte by
            // byte): both come from the same config value.
            if c.expires_ms <= now
                || c.conn.address.as_str() != address.as_str()
                || c.conn.profile != settings.profile
                || !c.conn.is_usable(thorough)
            {
                continue;
            }
            c.conn.reused = true;
            return Some(c.conn);
        }
        None
    }

    /// Closes the connections past their idle timeout; the time of the next
    /// expiry, or `None` (and the sweeper ends) when none is left.
    fn sweep(&self) -> Option<u64> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let now = clock::now_ms();
        inner.idle.retain(|c| c.expires_ms > now);
        let next = inner.idle.iter().map(|c| c.expires_ms).min();
        if next.is_none() {
            inner.sweeping = false;
        }
        next
    }
}

/// Gives `conn` back to this worker's pool of `state` for the next request
/// (at most `max_idle` kept; 0 closes it). Outside a tokio runtime the
/// connection is closed (nothing could sweep it).
pub fn checkin(conn: Conn, state: &Arc<ServerState>, max_idle: usize) {
    if max_idle == 0 {
        return;
    }
    let shard = crate::shard::current();
    let pool = state.pool.get(shard);
    let expires_ms = clock::now_ms() + conn.idle_timeout.as_millis() as u64;
    let mut inner = pool.inner.lock().unwrap_or_else(|e| e.into_inner());
    while inner.idle.len() >= max_idle {
        // Full: the oldest goes (closed when dropped), as nginx's
        // `keepalive` cache closes its least recently used connection.
        inner.idle.pop_front();
    }
    if !inner.sweeping {
        // The runtime is looked up only to start a sweeper, not per check-in.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        inner.sweeping = true;
        runtime.spawn(sweeper(Arc::downgrade(state), shard, expires_ms));
    }
    inner.idle.push_back(Idle { conn, expires_ms });
}

/// Closes idle connections of `state`'s pool `shard` as they pass their
/// idle timeout; ends when the list is empty (the next check-in starts a new
/// one) or the server is gone.
async fn sweeper(state: Weak<ServerState>, shard: usize, mut next_ms: u64) {
    loop {
        let wait = next_ms.saturating_sub(clock::now_ms());
        tokio::time::sleep(Duration::from_millis(wait.max(1))).await;
        let Some(state) = state.upgrade() else {
            return;
        };
        match state.pool.get(shard).sweep() {
            Some(next) => next_ms = next,
            None => return,
        }
    }
}
