//! Listeners: bind (one `SO_REUSEPORT` socket per worker), one accept loop
//! per worker, one task per connection, downstream limits (TLS handshake and
//! request-header timeout, header size, keep-alive idle timeout), and
//! draining on shutdown.

pub mod cert_watch;
mod conn;
mod h2_frames;
mod parker;
pub mod proxy_protocol;

pub use crate::proxy::activity::{ConnActivity, RequestGuard};

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_util::either::Either;
use tokio_util::task::TaskTracker;

use crate::config::ListenerConfig;
use crate::metrics::ListenerStats;
use crate::proxy::activity::ActivityIo;
use crate::proxy::headers::ClientInfo;
use crate::proxy::service::{self, Downstream};
use crate::proxy::SharedSnapshot;
use crate::runtime::Workers;
use crate::tls::{self, client_auth};

/// Most concurrent HTTP/2 streams per client connection.
pub const MAX_CONCURRENT_STREAMS: u32 = 256;

/// Backlog of each listening socket: pending connections the kernel keeps
/// before weir accepts them (capped by `net.core.somaxconn`, 4096 on current
/// kernels). With 1024 a burst of 1,000 new connections overflowed it and
/// clients waited a SYN retransmit (1 s); HAProxy sizes it by `maxconn`,
/// and nginx benchmarks set `backlog=4096`.
pub const LISTEN_BACKLOG: i32 = 4096;

/// The inputs of a listener's TLS config, kept to rebuild it when a
/// watched certificate file changes.
#[derive(Debug)]
struct TlsState {
    keys: Vec<Arc<rustls::sign::CertifiedKey>>,
    auth: Option<Arc<client_auth::ClientAuth>>,
    files: Vec<cert_watch::Watched>,
}

/// A bound listener, ready to accept: one socket per worker.
pub struct Listener {
    config: ListenerConfig,
    local: SocketAddr,
    /// One socket per worker, all bound to `local` with `SO_REUSEPORT`;
    /// taken by the workers' accept loops when they start.
    sockets: Mutex<Vec<std::net::TcpListener>>,
    /// The same sockets (duplicated fds), handed to the new process of a
    /// binary upgrade (`crate::upgrade`).
    /// Emptied when the listener stops accepting, so that a removed
    /// listener's sockets close.
    passable: Mutex<Vec<std::net::TcpListener>>,
    /// Swapped whole when a reload brings new certificates.
    tls: ArcSwapOption<rustls::ServerConfig>,
    /// `tls.client_auth`: verification of client certificates (with `tls`).
    client_auth: ArcSwapOption<client_auth::ClientAuth>,
    /// What `tls` was built from, and the certificate files watched.
    tls_state: Mutex<TlsState>,
    /// `tls.acme`: the issued certificate and challenge answers.
    acme: Option<Arc<crate::acme::AcmeState>>,
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
    stats: Arc<ListenerStats>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("name", &self.config.name)
            .field("address", &self.local)
            .field("tls", &self.tls.load().is_some())
            .finish()
    }
}

impl Listener {
    /// Binds `config.address` once per worker (`workers` sockets sharing
    /// the address through `SO_REUSEPORT`; port 0 picks one free port for
    /// all) and prepares TLS.
    ///
    /// # Errors
    /// When the address cannot be bound or the TLS config cannot be built.
    pub fn bind(
        config: &ListenerConfig,
        stats: Arc<ListenerStats>,
        workers: usize,
    ) -> io::Result<Self> {
        let err = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot bind listener {} on {}: {e}",
                    config.name, config.address
                ),
            )
        };
        // Sockets passed by systemd or the old process of a binary upgrade
        // are served instead of binding (crate::upgrade).
        let mut sockets = crate::upgrade::take(config.address);
        if sockets.is_empty() {
            sockets.push(bind_reuseport(config.address).map_err(err)?);
        }
        let local = sockets[0].local_addr()?;
        while sockets.len() < workers.max(1) {
            // An inherited socket without SO_REUSEPORT is shared instead.
            let more = bind_reuseport(local).or_else(|e| match sockets[0].try_clone() {
                Ok(s) if e.kind() == io::ErrorKind::AddrInUse => Ok(s),
                _ => Err(e),
            });
            sockets.push(more.map_err(err)?);
        }
        let passable = sockets
            .iter()
            .map(std::net::TcpListener::try_clone)
            .collect::<io::Result<Vec<_>>>()?;
        let auth = match &config.edge.client_auth {
            Some(c) => Some(Arc::new(
                client_auth::ClientAuth::new(c).map_err(io::Error::other)?,
            )),
            None => None,
        };
        let acme = config
            .acme
            .as_ref()
            .map(|a| crate::acme::AcmeState::new(&config.name, a));
        let tls = ArcSwapOption::new(build_tls(config.tls.as_deref(), auth.as_deref(), &acme)?);
        let tls_state = Mutex::new(TlsState {
            keys: config.tls.clone().unwrap_or_default(),
            auth: auth.clone(),
            files: cert_watch::watch_all(&config.tls_files),
        });
        let client_auth = ArcSwapOption::new(auth);
        let mut h1 = http1::Builder::new();
        h1.timer(TokioTimer::new())
            // The request-head timeout is ours (see ConnActivity): hyper's
            // also runs while a keep-alive connection waits, which would cut
            // the idle timeout down to it.
            .header_read_timeout(None)
            .max_buf_size(config.max_header_bytes)
            // The exact limit (431): the buffer bound alone lets a head
            // that arrives in one large read through.
            .max_header_size(config.max_header_bytes)
            .keep_alive(true);
        // The same field count for HTTP/2 is checked per request
        // (proxy::request_checks). hyper's own limit is the default (100):
        // set explicitly, hyper sizes its parse arrays at run time, 1.7k
        // instructions more per request (callgrind).
        if config.max_headers != crate::config::model::DEFAULT_MAX_HEADERS {
            h1.max_headers(config.max_headers);
        }
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX))
            .max_concurrent_streams(MAX_CONCURRENT_STREAMS);
        Ok(Listener {
            config: config.clone(),
            local,
            sockets: Mutex::new(sockets),
            passable: Mutex::new(passable),
            tls,
            client_auth,
            tls_state,
            acme,
            h1,
            h2,
            stats,
        })
    }

    /// The listener's config.
    pub fn config(&self) -> &ListenerConfig {
        &self.config
    }

    /// Installs the certificates of a reloaded config; new connections use
    /// them, established ones keep theirs.
    ///
    /// # Errors
    /// When the TLS config cannot be built; the old certificates stay.
    pub fn update_tls(
        &self,
        keys: Option<&[Arc<rustls::sign::CertifiedKey>]>,
        client_auth: Option<&crate::config::edge::ClientAuthConfig>,
        files: &[(std::path::PathBuf, std::path::PathBuf)],
    ) -> io::Result<()> {
        let mut state = self.tls_state.lock().unwrap_or_else(|e| e.into_inner());
        let auth = match client_auth {
            Some(c) => Some(Arc::new(
                client_auth::ClientAuth::new(c).map_err(io::Error::other)?,
            )),
            None => None,
        };
        let config = build_tls(keys, auth.as_deref(), &self.acme)?;
        self.tls.store(config);
        *state = TlsState {
            keys: keys.map(<[_]>::to_vec).unwrap_or_default(),
            auth: auth.clone(),
            files: cert_watch::watch_all(files),
        };
        self.client_auth.store(auth);
        Ok(())
    }

    /// Every listening socket of this listener (one per worker, or as many
    /// as were inherited), for a binary upgrade.
    ///
    /// # Errors
    /// When a socket cannot be duplicated (out of fds).
    pub fn sockets_for_upgrade(&self) -> io::Result<Vec<std::net::TcpListener>> {
        self.passable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(std::net::TcpListener::try_clone)
            .collect()
    }

    /// The ACME state of a listener with `tls.acme` (its task is started
    /// by the caller, on the control runtime).
    pub fn acme(&self) -> Option<Arc<crate::acme::AcmeState>> {
        self.acme.clone()
    }

    /// The bound address (with the real port when 0 was asked).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }

    /// Starts one accept loop per worker, each on its own socket and on its
    /// worker's runtime, tracked by `tracker`; see [`Self::run`].
    pub fn start(
        self: &Arc<Self>,
        workers: &Workers,
        snapshot: &Arc<SharedSnapshot>,
        shutdown: &watch::Receiver<bool>,
        tracker: &TaskTracker,
    ) {
        cert_watch::spawn(self, shutdown.clone());
        let sockets = self
            .sockets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect::<Vec<_>>()
            .into_iter();
        // More sockets than workers (inherited from a process that ran
        // more): every socket gets an accept loop, round robin.
        let handles: Vec<_> = workers.handles().collect();
        // Idle plain connections wait in the listener's parker (parker.rs);
        // without one (no fd or thread for it), in their tasks.
        let parker = match parker::Parker::start(&self.config.name, Arc::clone(&self.stats)) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(listener = %self.config.name, error = %e, "cannot start the parker; idle connections wait in their tasks");
                None
            }
        };
        for (i, socket) in sockets.enumerate() {
            let handle = handles[i % handles.len()];
            tracker.spawn_on(
                Arc::clone(self).run(
                    socket,
                    Arc::clone(snapshot),
                    shutdown.clone(),
                    tracker.clone(),
                    parker.clone(),
                ),
                handle,
            );
        }
    }

    /// Accepts connections on `socket` until `shutdown` turns true, serving
    /// each on its own task (on the current worker) tracked by `tracker`;
    /// connections drain on shutdown.
    async fn run(
        self: Arc<Self>,
        socket: std::net::TcpListener,
        snapshot: Arc<SharedSnapshot>,
        mut shutdown: watch::Receiver<bool>,
        tracker: TaskTracker,
        parker: Option<Arc<parker::Parker>>,
    ) {
        let this = self;
        let tcp = match TcpListener::from_std(socket) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(listener = %this.config.name, error = %e, "cannot register the listening socket");
                return;
            }
        };
        // This worker's inbox at the listener's parker: its parked
        // connections come back to it.
        let (parker, inbox) = match parker {
            Some(p) => {
                let (home, inbox) = p.inbox();
                (Some((p, home)), Some(inbox))
            }
            None => (None, None),
        };
        let ctx = ConnCtx {
            snapshot,
            shutdown: shutdown.clone(),
            tracker: tracker.clone(),
            parker,
        };
        if let Some(inbox) = inbox {
            tracker.spawn(Arc::clone(&this).serve_unparked(inbox, ctx.clone()));
        }
        let conn_limit = Arc::clone(&this.stats.conn_limit);
        loop {
            // max_connections: at the cap, no accept (connections wait in
            // the kernel backlog).
            tokio::select! {
                () = conn_limit.below_cap() => {}
                _ = stopped(&mut shutdown) => break,
            }
            tokio::select! {
                accepted = tcp.accept() => match accepted {
                    Ok((stream, peer)) => {
                        // Usually at once; when other workers took the last
                        // slots meanwhile, this connection waits for one.
                        let slot = tokio::select! {
                            slot = conn_limit.reserve() => slot,
                            _ = stopped(&mut shutdown) => break,
                        };
                        if let Some(deadline) = this.config.edge.proxy_protocol {
                            // PROXY protocol: the header's client is the one
                            // max_connections_per_ip counts (proxy_protocol.rs).
                            let this = Arc::clone(&this);
                            let ctx = ctx.clone();
                            tracker.spawn(async move {
                                let Some((stream, peer, local)) = this.read_proxy_header(stream, peer, deadline).await else { return };
                                let Some(permit) = slot.admit(peer.ip()) else { return };
                                this.serve_and_park(stream, peer, Some(local), permit, false, ctx).await;
                            });
                            continue;
                        }
                        // max_connections_per_ip: past it, closed at once.
                        let Some(permit) = slot.admit(peer.ip()) else {
                            drop(stream);
                            continue;
                        };
                        let this = Arc::clone(&this);
                        tracker.spawn(this.serve_and_park(stream, peer, None, permit, false, ctx.clone()));
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off briefly.
                        tracing::warn!(listener = %this.config.name, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                },
                _ = stopped(&mut shutdown) => break,
            }
        }
        if let Some((parker, _)) = &ctx.parker {
            parker.close_all();
        }
        // A stopped listener's sockets close with its accept loops.
        this.passable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        tracing::info!(listener = %this.config.name, "listener closed");
    }

    /// Reads the PROXY header of a new connection: (stream, client,
    /// destination), or `None` (logged, connection closed) without a valid one.
    async fn read_proxy_header(
        &self,
        mut stream: TcpStream,
        peer: SocketAddr,
        deadline: Duration,
    ) -> Option<(TcpStream, SocketAddr, SocketAddr)> {
        match proxy_protocol::read_header(&mut stream, deadline).await {
            Ok(Some((client, local))) => Some((stream, client, local)),
            Ok(None) => {
                let local = stream.local_addr().ok()?;
                Some((stream, peer, local))
            }
            Err(e) => {
                self.stats.proxy_protocol_errors.inc();
                tracing::info!(listener = %self.config.name, peer = %peer, error = %e, "connection closed: PROXY protocol header missing or invalid");
                None
            }
        }
    }

    /// Serves again each parked connection the parker hands back to this
    /// worker (its client sent its next request, or closed), until
    /// shutdown.
    async fn serve_unparked(
        self: Arc<Self>,
        mut inbox: tokio::sync::mpsc::UnboundedReceiver<parker::Parked>,
        ctx: ConnCtx,
    ) {
        let mut shutdown = ctx.shutdown.clone();
        loop {
            let p = tokio::select! {
                p = inbox.recv() => match p {
                    Some(p) => p,
                    None => break,
                },
                _ = stopped(&mut shutdown) => break,
            };
            // Registered with this worker's event loop again.
            let Ok(stream) = TcpStream::from_std(p.stream) else {
                continue;
            };
            ctx.tracker.spawn(Arc::clone(&self).serve_and_park(
                stream,
                p.peer,
                Some(p.local),
                p.permit,
                true,
                ctx.clone(),
            ));
        }
    }

    /// Serves a connection (`resumed`: one the parker handed back, whose
    /// next request is arriving) until it closes or goes idle; an idle plain
    /// connection is parked, holding `permit`.
    async fn serve_and_park(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        local: Option<SocketAddr>,
        permit: crate::limits::ConnPermit,
        resumed: bool,
        ctx: ConnCtx,
    ) {
        let local = local
            .or_else(|| stream.local_addr().ok())
            .unwrap_or(self.local);
        let mut ctx = ctx;
        let parker = ctx.parker.take();
        let idle = self
            .serve_connection(stream, peer, local, resumed, parker.is_some(), ctx)
            .await;
        let (Some((io, deadline)), Some((parker, home))) = (idle, parker) else {
            return;
        };
        // Out of the worker's event loop: the parker's set watches it.
        let Ok(stream) = io.inner.into_std() else {
            return;
        };
        // On the parker's clock (std's): the time left, so that a paused
        // tokio clock in tests does not skew it.
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        parker.park(parker::Parked {
            stream,
            peer,
            local,
            permit,
            deadline: std::time::Instant::now() + left,
            home,
        });
    }

    /// Serves one connection until it closes or, with `park` (there is a
    /// parker) on a plain connection, until it goes idle: then its socket
    /// and idle deadline are returned, to be parked. `resumed`: a parked connection whose next request is
    /// arriving (HTTP/1, counted as accepted already). The setup runs
    /// before the returned future, which holds only what serving needs (an
    /// `async fn` would keep each argument in the connection's task as well).
    fn serve_connection(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        local: SocketAddr,
        resumed: bool,
        park: bool,
        ctx: ConnCtx,
    ) -> impl std::future::Future<Output = Option<(ActivityIo, tokio::time::Instant)>> + Send + '_
    {
        let ConnCtx {
            snapshot,
            shutdown,
            tracker,
            ..
        } = ctx;
        let protocol = if resumed {
            conn::Protocol::Http1
        } else {
            let _ = stream.set_nodelay(true);
            self.stats.accepted.inc();
            conn::Protocol::Detect
        };
        self.stats.open.add(1);
        let open = OpenGuard(&self.stats);
        let activity = Arc::new(ConnActivity::new());
        let io = ActivityIo {
            inner: stream,
            activity: Arc::clone(&activity),
        };
        let tls = self.tls.load_full();
        let serve = conn::Serve {
            config: &self.config,
            stats: &self.stats,
            h1: &self.h1,
            h2: &self.h2,
            activity: Arc::clone(&activity),
            shutdown,
            hand_off: park && tls.is_none(),
        };
        let downstream = {
            let (listener, stats, limits) = (
                self.config.name.clone(),
                Arc::clone(&self.stats),
                service::Limits::of(&self.config),
            );
            let tls = tls.is_some();
            move || Downstream {
                peer,
                local,
                client_cert: Default::default(),
                client: ClientInfo::new(peer.ip(), tls),
                listener: listener.clone(),
                activity: Arc::clone(&activity),
                stats: Arc::clone(&stats),
                tracker: tracker.clone(),
                limits,
            }
        };
        // Built here, not in an `async` block: a block would keep what it
        // moves into the serving future twice (its captures stay for its
        // whole life).
        let serving = match tls {
            None => {
                // Plain: each hyper connection of the socket gets its own
                // `Downstream`, so a parked connection holds none (its
                // strings and counters are rebuilt when the next request
                // arrives).
                let make_svc = move || {
                    let downstream = Arc::new(downstream());
                    let snapshot = Arc::clone(&snapshot);
                    service_fn(move |req| {
                        service::handle(snapshot.local(), Arc::clone(&downstream), req)
                    })
                };
                Either::Left(serve.run(io, protocol, make_svc))
            }
            Some(config) => {
                // TLS: one `Downstream` for the connection (it carries the
                // verified client certificate of the handshake). Boxed: a
                // plain connection's task stays small; a TLS stream is
                // kilobytes.
                let conn_info = Arc::new(downstream());
                let shared = Arc::clone(&conn_info);
                let svc = service_fn(move |req| {
                    service::handle(snapshot.local(), Arc::clone(&shared), req)
                });
                Either::Right(Box::pin(self.serve_tls(io, config, serve, svc, conn_info)))
            }
        };
        Counted {
            serving,
            _open: open,
        }
    }

    /// The TLS handshake (bounded by the request-head timeout), then HTTP/2
    /// or HTTP/1 as ALPN chose.
    /// Always `None`: a TLS connection waits for its next request in its
    /// task (its session has to survive).
    async fn serve_tls<S: conn::ProxyService>(
        &self,
        io: ActivityIo,
        config: Arc<rustls::ServerConfig>,
        serve: conn::Serve<'_>,
        svc: S,
        conn_info: Arc<Downstream>,
    ) -> Option<(ActivityIo, tokio::time::Instant)> {
        let peer = conn_info.peer;
        let handshake = tokio::time::timeout(
            self.config.request_header_timeout,
            TlsAcceptor::from(config).accept(io),
        );
        let result = handshake.await;
        let counter = match &result {
            Ok(Ok(_)) => &self.stats.tls_handshakes,
            _ => &self.stats.tls_failures,
        };
        counter.inc();
        match result {
            Ok(Ok(tls)) => {
                if let Some(auth) = &*self.client_auth.load() {
                    if let Some(v) = auth.header_for(tls.get_ref().1.peer_certificates()) {
                        let _ = conn_info.client_cert.set(v);
                    }
                }
                let protocol = match tls.get_ref().1.alpn_protocol() {
                    // TLS-ALPN-01 validation: the handshake was the answer.
                    Some(crate::acme::challenge::ACME_TLS_ALPN) => return None,
                    Some(b"h2") => conn::Protocol::Http2,
                    Some(_) => conn::Protocol::Http1,
                    None => conn::Protocol::Detect,
                };
                // hand_off is false: the stream never comes back.
                serve.run(tls, protocol, move || svc.clone()).await;
            }
            Ok(Err(e)) => {
                tracing::debug!(listener = %self.config.name, client = %peer, error = %e, "TLS handshake failed");
            }
            Err(_) => {
                tracing::debug!(listener = %self.config.name, client = %peer, "TLS handshake timed out");
            }
        }
        None
    }
}

/// The rustls config of a listener: `None` for plain HTTP; an ACME
/// listener's resolver also serves the certificates it obtains.
pub(super) fn build_tls(
    keys: Option<&[Arc<rustls::sign::CertifiedKey>]>,
    auth: Option<&client_auth::ClientAuth>,
    acme: &Option<Arc<crate::acme::AcmeState>>,
) -> io::Result<Option<Arc<rustls::ServerConfig>>> {
    let config = match (keys, acme) {
        (None, _) => return Ok(None),
        (Some(keys), Some(state)) => crate::acme::server_config(state, keys, auth),
        (Some(keys), None) => tls::server_config_with(keys, auth),
    };
    config.map(Some).map_err(io::Error::other)
}

/// What every connection of one accept loop shares.
#[derive(Clone)]
struct ConnCtx {
    snapshot: Arc<SharedSnapshot>,
    shutdown: watch::Receiver<bool>,
    tracker: TaskTracker,
    /// Where idle plain connections wait, with this worker's inbox there
    /// (`None`: in their tasks).
    parker: Option<(Arc<parker::Parker>, usize)>,
}

/// Decrements the open-connections gauge when the connection task ends.
struct OpenGuard<'a>(&'a ListenerStats);

pin_project_lite::pin_project! {
    /// A connection's serving future with its open-connections guard.
    struct Counted<'a, F> {
        #[pin]
        serving: F,
        _open: OpenGuard<'a>,
    }
}

impl<F: std::future::Future> std::future::Future for Counted<'_, F> {
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        self.project().serving.poll(cx)
    }
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.open.add(-1);
    }
}

/// A non-blocking listening socket on `addr` with `SO_REUSEADDR` and
/// `SO_REUSEPORT`, so that every worker can bind the same address.
fn bind_reuseport(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Resolves when the shutdown flag turns true (or its sender is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await.map(|_| ());
}

#[cfg(test)]
mod task_size {
    fn size7<F, A, B, C, D, E, G, H, R>(_: &F) -> usize
    where
        F: Fn(A, B, C, D, E, G, H) -> R,
    {
        std::mem::size_of::<R>()
    }

    /// A parked keep-alive connection holds its task, whose size is this
    /// future's: a guard against it growing unnoticed (docs/data-plane.md,
    /// idle memory).
    #[test]
    fn a_connection_task_stays_small() {
        let size = size7(&super::Listener::serve_connection);
        assert!(size <= 700, "serve_connection's future is {size} bytes");
    }
}
