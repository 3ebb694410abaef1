//! weir: an L7 HTTP reverse proxy and load balancer.
//!
//! The data path, one module per step: [`listener`] (accept, TLS) →
//! [`proxy::service`] (decode, route, pick, forward, respond) → [`route`]
//! (the route table) → [`upstream`] and [`balancer`] (server groups and their
//! algorithms; [`affinity`] pins sticky clients before the balancer picks) →
//! [`upstream::forward`] (pooled upstream client). [`config`] reads and
//! validates the YAML file.
//!
//! # Layers
//!
//! Every top-level module has one line below, the highest layer first. A
//! module may name (`use crate::…`, paths, doc links) only the modules on
//! lines below its own, never one above: the imports point down and there
//! is no cycle. `tests/it/layers.rs` reads this block and checks every file
//! of `src/` against it, so a new module needs a line here.
//!
//! ```text
//! layer module     holds
//!  7    admin      admin API: /status, /metrics encoding of every view, reload, purge
//!  7    discovery  DNS discovery tasks: resolve, update a group's server set, rebuild
//!  6    listener   binding, accept loops, TLS handshakes, per-connection serving
//!  6    runtime    the worker threads the listeners hand connections to
//!  5    proxy      Snapshot, the hyper service pipeline, headers, bodies, cache/content glue
//!  5    acme       ACME certificates: account, orders, HTTP-01/TLS-ALPN-01 answers
//!  4    upstream   groups, servers and their live state, pools, connect, h2, forward, probes
//!  3    tls        server-side TLS: SNI resolver, rustls server config, client certificates
//!  3    config     the YAML file: raw structs, model, validation, loading (files, certificates)
//!  2    cache      response cache: store, policy, key, coalescing
//!  2    metrics    counters, histograms, the *Stats they form (a listener's holds its ConnLimiter)
//!  2    limits     rate limits, connection caps, body limit, IP rules
//!  2    route      the route table, matchers, JWT verification, claims
//!  2    content    content rules: compression, redirects, rewrites, header rules
//!  2    affinity   sticky sessions: cookie codec, Set-Cookie, pinned server lookup
//!  2    balancer   the algorithms over an endpoint view (Endpoint, ServerLoad), PickContext
//!  2    health     health settings, rise/fall state machine, ejection backoff and clock
//!  1    upgrade    zero-downtime binary upgrade: inherited sockets
//!  1    shard      per-worker sharded values
//!  1    clock      the one monotonic clock (tokio's Instant: pausable in tests)
//!  1    timer      a deadline that is polled only when due (LazySleep, timeout)
//!  1    http_syntax  RFC 9110 tchar, hex digits, the Cookie-header parser
//!  1    error      ErrorKind, ProxyError, Reason, the error-chain walk
//! ```
//!
//! `lib.rs` (the crate root: [`Proxy`], [`Running`]) sits above all of them.
//! Inline test modules (`#[cfg(test)] mod tests`, the last item of a file)
//! may build fixtures from any layer: a balancer test drives real
//! `upstream::Server`s. The rule is for the code that ships.
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

pub mod acme;
pub mod admin;
pub mod affinity;
pub mod balancer;
pub mod cache;
pub mod clock;
pub mod config;
pub mod content;
pub mod discovery;
pub mod error;
pub mod health;
pub mod http_syntax;
pub mod limits;
pub mod listener;
pub mod metrics;
pub mod proxy;
pub mod route;
pub mod runtime;
pub mod shard;
pub mod timer;
pub mod tls;
pub mod upgrade;
pub mod upstream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use config::ListenerConfig;
pub use config::{Config, ConfigError, ConfigErrors};
pub use error::{ErrorKind, ProxyError};
use listener::Listener;
use proxy::{SharedSnapshot, Snapshot};
use runtime::Workers;
use upstream::StateRegistry;

/// A configured proxy, not yet listening.
#[derive(Debug)]
pub struct Proxy {
    config: Config,
    registry: Arc<StateRegistry>,
    /// Worker count set by the command line (`--threads`), over the file's.
    workers_override: Option<usize>,
}

impl Proxy {
    /// A proxy for a validated `config`.
    pub fn new(config: Config) -> Self {
        let workers = runtime::workers::resolve_count(config.workers);
        // Counters made from here on have a shard per worker.
        shard::reserve(workers);
        Proxy {
            config,
            registry: Arc::new(StateRegistry::default()),
            workers_override: None,
        }
    }

    /// Runs `n` workers whatever the file's `workers` says (the
    /// `--threads` option); 0 = one per CPU core.
    pub fn with_workers(mut self, n: usize) -> Self {
        shard::reserve(runtime::workers::resolve_count(n));
        self.workers_override = Some(n);
        self
    }

    /// Binds every listener (and the admin listener) and starts serving.
    /// Returns once all are bound, so their addresses are known (port 0 gets
    /// a free port).
    ///
    /// # Errors
    /// When a listener cannot be bound (address in use, permission) or its
    /// TLS config cannot be built; nothing is left listening then.
    pub async fn start(self) -> std::io::Result<Running> {
        let count =
            runtime::workers::resolve_count(self.workers_override.unwrap_or(self.config.workers));
        discovery::initial(&self.config, &self.registry.discovery).await;
        let snapshot = Arc::new(SharedSnapshot::new(Arc::new(Snapshot::build(
            &self.config,
            &self.registry,
        ))));
        let (shutdown, _) = watch::channel(false);
        let tracker = TaskTracker::new();
        let mut bound = Vec::new();
        for l in &self.config.listeners {
            bound.push(bind(l, &self.registry, count)?);
        }
        let access_log = proxy::access_log::AccessLog::start(&self.config.access_log)?;
        let log = access_log.clone();
        let workers = Workers::start(
            count,
            Arc::new(move |_| {
                // Each worker buffers its access lines and hands them over
                // at least every FLUSH_INTERVAL; the same tick, when no
                // request came since the last one, lets the allocator give
                // back the pages of parked connections (a busy worker's
                // allocator takes its slow path by itself).
                log.attach();
                tokio::spawn(async {
                    let mut tick = tokio::time::interval(proxy::access_log::FLUSH_INTERVAL);
                    loop {
                        tick.tick().await;
                        proxy::access_log::AccessLog::flush_local();
                        if !shard::take_busy() {
                            runtime::workers::allocator_housekeeping();
                        }
                    }
                });
            }),
        )?;
        self.registry
            .global
            .workers
            .store(workers.len(), Ordering::Relaxed);
        tracing::info!(workers = workers.len(), "workers started");
        let admin = match self.config.admin {
            Some(addr) => Some(admin::bind(addr).await?),
            None => None,
        };
        let admin_addr = admin.as_ref().and_then(|l| l.local_addr().ok());
        let admin_socket = admin.as_ref().and_then(|l| {
            socket2::SockRef::from(l)
                .try_clone()
                .ok()
                .map(std::net::TcpListener::from)
        });
        self.registry
            .global
            .config_hash
            .store(self.config.hash, Ordering::Relaxed);
        let inner = Arc::new(Inner {
            file: self.config.file.clone(),
            snapshot,
            registry: self.registry,
            listeners: tokio::sync::Mutex::new(Vec::new()),
            shutdown,
            tracker,
            drain_timeout: Mutex::new(self.config.drain_timeout),
            admin_addr,
            admin_socket,
            probes: Mutex::new(watch::channel(false).0),
            workers: tokio::sync::Mutex::new(workers),
            workers_fixed: self.workers_override.is_some(),
            access_log,
        });
        inner.restart_probes(&self.config, &inner.snapshot.load_full());
        {
            let mut listeners = inner.listeners.lock().await;
            let workers = inner.workers.lock().await;
            for b in bound {
                inner.spawn_listener(&b, &workers);
                listeners.push(b);
            }
        }
        let running = Running { inner };
        if let Some(listener) = admin {
            let shutdown = running.inner.shutdown.subscribe();
            running
                .inner
                .tracker
                .spawn(admin::serve(listener, running.clone(), shutdown));
        }
        discovery::restart(&running, Arc::new(self.config));
        Ok(running)
    }
}

/// Binds listener `l` once per worker, logging its address.
fn bind(l: &ListenerConfig, registry: &StateRegistry, workers: usize) -> std::io::Result<Bound> {
    let listener = Listener::bind(l, registry.listener_stats(&l.name), workers)?;
    let local = listener.local_addr()?;
    tracing::info!(listener = %l.name, address = %local, tls = l.tls.is_some(), "listening");
    let (stop, _) = watch::channel(false);
    Ok(Bound {
        name: l.name.clone(),
        configured: l.address,
        local,
        listener: Arc::new(listener),
        stop,
    })
}

/// A bound listener of the running proxy.
#[derive(Debug)]
struct Bound {
    name: Arc<str>,
    configured: SocketAddr,
    local: SocketAddr,
    listener: Arc<Listener>,
    stop: watch::Sender<bool>,
}

impl Bound {
    /// True when `l` describes this listener: same name, and the same address
    /// as configured or as bound (a file that said port 0 may name the port
    /// it got).
    fn is(&self, l: &ListenerConfig) -> bool {
        self.name == l.name && (self.configured == l.address || self.local == l.address)
    }
}

#[derive(Debug)]
struct Inner {
    file: PathBuf,
    snapshot: Arc<SharedSnapshot>,
    registry: Arc<StateRegistry>,
    /// Also serializes reloads.
    listeners: tokio::sync::Mutex<Vec<Bound>>,
    shutdown: watch::Sender<bool>,
    tracker: TaskTracker,
    drain_timeout: Mutex<Duration>,
    admin_addr: Option<SocketAddr>,
    /// The admin listener's socket (a duplicate), for a binary upgrade.
    admin_socket: Option<std::net::TcpListener>,
    /// Stops the active health probes of the current snapshot.
    probes: Mutex<watch::Sender<bool>>,
    /// The worker threads that serve connections.
    workers: tokio::sync::Mutex<Workers>,
    /// True when the worker count came from the command line (a reload's
    /// `workers` is then not compared).
    workers_fixed: bool,
    /// The access log's writer.
    access_log: proxy::access_log::AccessLog,
}

impl Inner {
    /// Stops the probe tasks of the previous snapshot and starts one per
    /// group with a `health_check` in `snapshot` (health state carries over:
    /// it lives in each server's `ServerState`).
    fn restart_probes(&self, config: &Config, snapshot: &Snapshot) {
        let (stop, rx) = watch::channel(false);
        for (cfg, group) in config.groups.iter().zip(&snapshot.groups) {
            if let Some(check) = &cfg.health_check {
                self.tracker.spawn(upstream::health::active::run(
                    Arc::clone(group),
                    check.clone(),
                    rx.clone(),
                ));
            }
        }
        let old = std::mem::replace(
            &mut *self.probes.lock().unwrap_or_else(|e| e.into_inner()),
            stop,
        );
        let _ = old.send(true);
    }

    fn spawn_listener(&self, b: &Bound, workers: &Workers) {
        b.listener
            .start(workers, &self.snapshot, &b.stop.subscribe(), &self.tracker);
        if let Some(state) = b.listener.acme() {
            self.tracker.spawn(acme::run(
                state,
                b.stop.subscribe(),
                self.shutdown.subscribe(),
            ));
        }
    }
}

/// Waits until every task of `tracker` ended, at most `timeout` of real
/// time. The connections live on the workers, which run on real time: on a
/// thread of its own (which also keeps a paused test clock from jumping past
/// the drain timeout while the workers are still closing).
async fn drain(tracker: TaskTracker, timeout: Duration) -> bool {
    let wait = tokio::task::spawn_blocking(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        else {
            return false;
        };
        rt.block_on(async { tokio::time::timeout(timeout, tracker.wait()).await.is_ok() })
    });
    wait.await.unwrap_or(false)
}

/// Why a reload did not take effect (the running config stays).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file did not parse or validate.
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    /// A new listener could not be bound, or its TLS config built.
    #[error("{0}")]
    Listener(#[from] std::io::Error),
}

/// A running proxy: its bound addresses, reload and shutdown. Cheap to clone
/// (the admin API and the signal handler hold clones).
#[derive(Debug, Clone)]
pub struct Running {
    inner: Arc<Inner>,
}

impl Running {
    /// The bound address of the listener named `name`.
    pub fn local_addr(&self, name: &str) -> Option<SocketAddr> {
        self.local_addrs()
            .into_iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, a)| a)
    }

    /// Every listener's name and bound address, in config order.
    pub fn local_addrs(&self) -> Vec<(Arc<str>, SocketAddr)> {
        match self.inner.listeners.try_lock() {
            Ok(l) => l.iter().map(|b| (b.name.clone(), b.local)).collect(),
            // A reload is running; ask again after it.
            Err(_) => Vec::new(),
        }
    }

    /// The admin listener's bound address, if one is configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.inner.admin_addr
    }

    /// The current routes and groups.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.snapshot.load_full()
    }

    /// Live per-server state and counters.
    pub fn registry(&self) -> &Arc<StateRegistry> {
        &self.inner.registry
    }

    /// The access log (its counters; [`proxy::access_log::AccessLog::reopen`]
    /// on `SIGUSR1`).
    pub fn access_log(&self) -> &proxy::access_log::AccessLog {
        &self.inner.access_log
    }

    /// Re-reads the config file this proxy was started with and applies it
    /// (SIGHUP, `POST /reload`). On any error the running config stays, the
    /// error is logged with file:line:col, and the failed reload is counted.
    ///
    /// # Errors
    /// [`ReloadError`] saying why nothing changed.
    pub async fn reload(&self) -> Result<(), ReloadError> {
        let file = self.inner.file.clone();
        // Off the workers, and bounded in time (config::read bounds the size).
        let loaded = config::read::load_with_timeout(file).await;
        match loaded {
            Ok(config) => self.apply(config).await,
            Err(errors) => {
                self.inner
                    .registry
                    .global
                    .reloads_failed
                    .fetch_add(1, Ordering::Relaxed);
                for e in &errors.0 {
                    tracing::error!(error = %e, "reload failed: the running config stays");
                }
                Err(errors.into())
            }
        }
    }

    /// Applies `config` atomically: new requests use it, requests in flight
    /// finish on the old one; keep-alive client connections stay open; pooled
    /// upstream connections and live server state (in-flight, health, EWMA)
    /// carry over for unchanged servers; listeners added are bound, removed
    /// ones stop accepting and drain; new certificates serve new handshakes.
    ///
    /// # Errors
    /// When a new listener cannot be bound; nothing changed then.
    pub async fn apply(&self, config: Config) -> Result<(), ReloadError> {
        let inner = &self.inner;
        let mut listeners = inner.listeners.lock().await;
        let workers = inner.workers.lock().await;
        let wanted = runtime::workers::resolve_count(config.workers);
        if !inner.workers_fixed && wanted != workers.len() {
            tracing::warn!(
                running = workers.len(),
                configured = wanted,
                "reload: a new worker count takes effect at the next start"
            );
        }
        // Bind what is new first, so that a failure changes nothing.
        let mut added = Vec::new();
        for l in &config.listeners {
            let kept = listeners.iter().any(|b| b.is(l));
            if !kept {
                match bind(l, &inner.registry, workers.len()) {
                    Ok(b) => added.push(b),
                    Err(e) => {
                        inner
                            .registry
                            .global
                            .reloads_failed
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::error!(listener = %l.name, error = %e, "reload failed: the running config stays");
                        return Err(e.into());
                    }
                }
            }
        }
        for b in listeners.iter() {
            if let Some(l) = config.listeners.iter().find(|l| b.is(l)) {
                listener::proxy_protocol::warn_on_reload(b.listener.config(), l);
                if let Err(e) = b.listener.update_tls(
                    l.tls.as_deref(),
                    l.edge.client_auth.as_ref(),
                    &l.tls_files,
                ) {
                    tracing::error!(listener = %l.name, error = %e, "reload: keeping the old certificates");
                }
            }
        }

        let snapshot = Arc::new(Snapshot::build(&config, &inner.registry));
        inner.snapshot.store(Arc::clone(&snapshot));
        inner.access_log.configure(&config.access_log);
        inner.restart_probes(&config, &snapshot);

        listeners.retain(|b| {
            let keep = config.listeners.iter().any(|l| b.is(l));
            if !keep {
                tracing::info!(listener = %b.name, address = %b.local, "listener removed: draining");
                let _ = b.stop.send(true);
            }
            keep
        });
        for b in added {
            inner.spawn_listener(&b, &workers);
            listeners.push(b);
        }
        drop(workers);
        discovery::retain(&inner.registry, &config);
        *inner
            .drain_timeout
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = config.drain_timeout;
        inner
            .registry
            .global
            .reloads_ok
            .fetch_add(1, Ordering::Relaxed);
        inner
            .registry
            .global
            .config_hash
            .store(config.hash, Ordering::Relaxed);
        tracing::info!(file = %config.file.display(), routes = config.routes.len(), groups = config.groups.len(), "config reloaded");
        discovery::restart(self, Arc::new(config));
        Ok(())
    }

    /// Graceful shutdown: stops accepting, lets in-flight requests finish
    /// for up to the config's `drain_timeout`, then returns. Returns true
    /// when every connection closed in time.
    pub async fn shutdown(self) -> bool {
        let inner = &self.inner;
        let _ = inner.shutdown.send(true);
        let _ = inner
            .probes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(true);
        for b in inner.listeners.lock().await.iter() {
            let _ = b.stop.send(true);
        }
        inner.tracker.close();
        let drain_timeout = *inner
            .drain_timeout
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let drained = drain(inner.tracker.clone(), drain_timeout).await;
        if !drained {
            tracing::warn!(
                drain_timeout = ?drain_timeout,
                open = inner.tracker.len(),
                "drain timeout reached; closing remaining connections"
            );
        }
        // Every worker: their remaining connections close with them.
        inner
            .workers
            .lock()
            .await
            .stop(Duration::from_secs(2))
            .await;
        drained
    }
}
