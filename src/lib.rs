//! weir: an L7 HTTP reverse proxy and load balancer.
//!
//! The data path, one module per step: [`listener`] (accept, TLS) →
//! [`proxy::service`] (decode, route, pick, forward, respond) → [`route`]
//! (the route table) → [`upstream`] and [`balancer`] (server groups and their
//! algorithms) → [`forward`] (pooled upstream client). [`config`] reads and
//! validates the YAML file.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = weir::config::load_file(std::path::Path::new("routes.example.yaml"))?;
//! let running = weir::Proxy::new(config).start().await?;
//! println!("http listener on {:?}", running.local_addr("http"));
//! running.shutdown().await;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod balancer;
pub mod config;
pub mod error;
pub mod forward;
pub mod health;
pub mod listener;
pub mod proxy;
pub mod route;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

pub use config::{Config, ConfigError, ConfigErrors};
pub use error::{ErrorKind, ProxyError};
use listener::Listener;
use proxy::Snapshot;
use upstream::StateRegistry;

/// A configured proxy, not yet listening.
#[derive(Debug)]
pub struct Proxy {
    config: Config,
    registry: Arc<StateRegistry>,
}

impl Proxy {
    /// A proxy for a validated `config`.
    pub fn new(config: Config) -> Self {
        Proxy {
            config,
            registry: Arc::new(StateRegistry::default()),
        }
    }

    /// Binds every listener and starts serving. Returns once all listeners
    /// are bound, so their addresses are known (port 0 gets a free port).
    ///
    /// # Errors
    /// When a listener cannot be bound (address in use, permission) or its
    /// TLS config cannot be built; nothing is left listening then.
    pub async fn start(self) -> std::io::Result<Running> {
        let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot::build(
            &self.config,
            &self.registry,
        )));
        let mut bound = Vec::new();
        for l in &self.config.listeners {
            let listener = Listener::bind(l).await?;
            let addr = listener.local_addr()?;
            tracing::info!(
                listener = %l.name,
                address = %addr,
                tls = l.tls.is_some(),
                "listening"
            );
            bound.push((l.name.clone(), addr, listener));
        }
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let tracker = TaskTracker::new();
        // One probe task per group with a health check (issue 5).
        let groups = snapshot.load_full();
        for (cfg, group) in self.config.groups.iter().zip(&groups.groups) {
            if let Some(check) = &cfg.health_check {
                tracker.spawn(health::active::run(
                    Arc::clone(group),
                    check.clone(),
                    shutdown_rx.clone(),
                ));
            }
        }
        let mut addrs = Vec::new();
        for (name, addr, listener) in bound {
            addrs.push((name, addr));
            let snapshot = Arc::clone(&snapshot);
            let shutdown = shutdown_rx.clone();
            let conns = tracker.clone();
            tracker.spawn(listener.run(snapshot, shutdown, conns));
        }
        Ok(Running {
            addrs,
            shutdown: shutdown_tx,
            tracker,
            drain_timeout: self.config.drain_timeout,
            snapshot,
            registry: self.registry,
        })
    }
}

/// A running proxy: its bound addresses and its shutdown handle.
#[derive(Debug)]
pub struct Running {
    addrs: Vec<(Arc<str>, SocketAddr)>,
    shutdown: watch::Sender<bool>,
    tracker: TaskTracker,
    drain_timeout: Duration,
    snapshot: Arc<ArcSwap<Snapshot>>,
    registry: Arc<StateRegistry>,
}

impl Running {
    /// The bound address of the listener named `name`.
    pub fn local_addr(&self, name: &str) -> Option<SocketAddr> {
        self.addrs
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, a)| *a)
    }

    /// Every listener's name and bound address, in config order.
    pub fn local_addrs(&self) -> &[(Arc<str>, SocketAddr)] {
        &self.addrs
    }

    /// The current routes and groups.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Live per-server state, by group and server id.
    pub fn registry(&self) -> &Arc<StateRegistry> {
        &self.registry
    }

    /// Graceful shutdown: stops accepting, lets in-flight requests finish
    /// for up to the config's `drain_timeout`, then returns. Returns true
    /// when every connection closed in time.
    pub async fn shutdown(self) -> bool {
        let _ = self.shutdown.send(true);
        self.tracker.close();
        let drained = tokio::time::timeout(self.drain_timeout, self.tracker.wait())
            .await
            .is_ok();
        if !drained {
            tracing::warn!(
                drain_timeout = ?self.drain_timeout,
                open = self.tracker.len(),
                "drain timeout reached; closing remaining connections"
            );
        }
        drained
    }
}
