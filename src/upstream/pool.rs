//! The connection pool of one server: idle HTTP/1.1 keep-alive connections
//! (plain or TLS) waiting for their next request.
//!
//! Each server keeps its own short list (in its [`ServerState`], so the pool
//! survives reloads that keep the server's id). A request takes the most
//! recently used idle connection (its socket is warm, and older ones age out),
//! or connects a new one. The connection goes back to the list when the
//! response body has been read to its end; a response cut short closes it.
//! A connection idle longer than the group's `pool.idle_timeout` is closed by
//! its own driver task, and at most `pool.max_idle_per_server` are kept.
//!
//! Built on hyper's connection API (`hyper::client::conn::http1`) rather than
//! hyper-util's pooled client: a checkout is one uncontended lock of this
//! server's list, with no hashing of the authority, no boxed request future
//! and no task spawned per request to wait for the connection to be reusable
//! (readiness is checked when the connection is next taken). nginx's
//! `keepalive` upstream cache and HAProxy's per-server idle lists work alike.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::uri::Authority;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use super::body::UpstreamBody;
use super::connect::Connector;
use super::ServerState;
use crate::clock;
use crate::config::upstream_tls::{UpstreamProtocol, UpstreamTlsConfig};

/// Idle connections of one server, most recently used last (a deque: the
/// most recent is taken, the oldest evicted, both O(1)).
#[derive(Debug, Default)]
pub struct ConnPool {
    idle: Mutex<VecDeque<Idle>>,
}

#[derive(Debug)]
struct Idle {
    sender: SendRequest<UpstreamBody>,
    /// The address it is connected to (a reload may change a server's address).
    address: Authority,
    /// [`PoolSettings::profile`] of the group that made it.
    profile: u64,
    /// Also tells since when it is idle.
    shared: Arc<ConnShared>,
}

/// What a connection's driver task shares with the pool.
#[derive(Debug)]
struct ConnShared {
    /// When the connection went idle ([`crate::clock::now_ms`]); 0 while a
    /// request uses it.
    idle_since_ms: AtomicU64,
}

impl ConnShared {
    fn mark_idle(&self) {
        self.idle_since_ms.store(clock::now_ms(), Ordering::Relaxed);
    }

    /// True when idle for at least `limit`.
    fn idle_for(&self, limit: Duration) -> bool {
        let since = self.idle_since_ms.load(Ordering::Relaxed);
        since != 0 && clock::now_ms().saturating_sub(since) >= limit.as_millis() as u64
    }
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

/// A connection taken from the pool (or new) for one request. Give it back
/// with [`Checkout::checkin`] once the response has been read to its end;
/// dropping it closes the connection.
#[derive(Debug)]
pub struct Checkout {
    sender: SendRequest<UpstreamBody>,
    address: Authority,
    profile: u64,
    shared: Arc<ConnShared>,
    /// True when it came from the pool (it may have been closed by the
    /// server while idle).
    pub reused: bool,
}

impl ConnPool {
    /// Takes the most recently used idle connection to `address` made with
    /// `settings.profile` that is not closed and not past
    /// `settings.idle_timeout`; closed, stale and foreign ones are dropped on
    /// the way.
    pub fn take(&self, address: &Authority, settings: &PoolSettings) -> Option<Checkout> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(c) = idle.pop_back() {
            if c.sender.is_closed()
                || c.shared.idle_for(settings.idle_timeout)
                || c.address != *address
                || c.profile != settings.profile
            {
                continue;
            }
            c.shared.idle_since_ms.store(0, Ordering::Relaxed);
            return Some(Checkout {
                sender: c.sender,
                address: c.address,
                profile: c.profile,
                shared: c.shared,
                reused: true,
            });
        }
        None
    }

    fn put(&self, c: Idle, max_idle: usize) {
        if max_idle == 0 {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while idle.len() >= max_idle {
            // Full: the oldest goes (closed when dropped), as nginx's
            // `keepalive` cache closes its least recently used connection.
            idle.pop_front();
        }
        idle.push_back(c);
    }
}

impl Checkout {
    /// Connects a new connection to `address` (over TLS when `tls` is
    /// given); its driver task closes it when idle longer than
    /// `settings.idle_timeout`.
    ///
    /// # Errors
    /// The connect error (refused, unreachable, DNS), the TLS handshake
    /// error, or `TimedOut` after `settings.connect_timeout`.
    pub async fn connect(
        address: &Authority,
        resolved: Option<SocketAddr>,
        settings: &PoolSettings,
        tls: Option<&UpstreamTlsConfig>,
        client: Option<super::proxy_protocol::ClientAddrs>,
    ) -> io::Result<Checkout> {
        let connector = Connector {
            timeout: settings.connect_timeout,
            tls,
            protocol: UpstreamProtocol::Http1,
            proxy: settings.proxy_protocol.zip(client),
        };
        let stream = super::connect::open(address, resolved, connector).await?;
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(io::Error::other)?;
        let shared = Arc::new(ConnShared {
            idle_since_ms: AtomicU64::new(0),
        });
        let watch = Arc::clone(&shared);
        let idle_timeout = settings.idle_timeout;
        tokio::spawn(async move {
            let conn = conn.with_upgrades();
            tokio::pin!(conn);
            let mut tick = tokio::time::interval_at(Instant::now() + idle_timeout, idle_timeout);
            loop {
                tokio::select! {
                    res = conn.as_mut() => {
                        if let Err(e) = res {
                            tracing::debug!(error = %e, "upstream connection ended with an error");
                        }
                        return;
                    }
                    _ = tick.tick() => {
                        if watch.idle_for(idle_timeout) {
                            // Idle too long: dropping the connection closes it.
                            return;
                        }
                    }
                }
            }
        });
        Ok(Checkout {
            sender,
            address: address.clone(),
            profile: settings.profile,
            shared,
            reused: false,
        })
    }

    /// Waits until the connection can take a request (a reused connection
    /// may still be finishing its previous exchange).
    ///
    /// # Errors
    /// When the connection closed.
    pub async fn ready(&mut self) -> hyper::Result<()> {
        if self.sender.is_ready() {
            return Ok(());
        }
        self.sender.ready().await
    }

    /// Sends `req`. When the connection could not take it (it closed first),
    /// the error gives the request back untouched.
    pub async fn send(
        &mut self,
        req: http::Request<UpstreamBody>,
    ) -> Result<
        http::Response<hyper::body::Incoming>,
        hyper::client::conn::TrySendError<http::Request<UpstreamBody>>,
    > {
        self.sender.try_send_request(req).await
    }

    /// Gives the connection back to `state`'s pool for the next request.
    pub fn checkin(self, state: &ServerState, max_idle: usize) {
        if self.sender.is_closed() || max_idle == 0 {
            return;
        }
        self.shared.mark_idle();
        state.pool.local().put(
            Idle {
                sender: self.sender,
                address: self.address,
                profile: self.profile,
                shared: self.shared,
            },
            max_idle,
        );
    }
}
