//! The access log: one line per request, written when the response body
//! ends (so bytes and duration are the real ones), off the request path.
//!
//! A request only moves its [`AccessRecord`] into its worker's buffer. The
//! buffer goes to the writer thread in batches (64 records, or every 100 ms
//! from the worker's flush task) through a bounded channel; the writer
//! formats (text or JSON) and writes to stderr or a file. When the writer
//! falls behind (a slow disk) a full channel drops the batch and counts it
//! (`weir_access_log_dropped_total`) instead of blocking a request: nginx's
//! `access_log ... buffer=` and HAProxy's ring-buffered log do the same.
//! `SIGUSR1` ([`AccessLog::reopen`]) reopens the file after logrotate moved it.
//!
//! Config: `access_log: { enabled, format: text|json, path }`. Without the
//! section the log is on, as text on stderr, unless the log filter turns the
//! `weir::access` target off (`--log warn`, `RUST_LOG=info,weir::access=off`).

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use http::{Method, Uri};

pub use crate::config::{AccessLogConfig, AccessLogFormat as Format};

/// Records a worker buffers before it hands them to the writer.
pub const BATCH: usize = 64;
/// Batches the channel to the writer holds; past it batches are dropped
/// (64 × 1024 = 65,536 lines of slack).
pub const QUEUE: usize = 1024;
/// How often each worker hands over a partial batch, in ms.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// What the access log line of one request says.
#[derive(Debug)]
pub struct AccessRecord {
    /// When the request arrived.
    pub start: Instant,
    /// Client (downstream peer) address.
    pub client: SocketAddr,
    /// Request method.
    pub method: Method,
    /// Request URI as received.
    pub uri: Uri,
    /// Path and query sent upstream when a route's `rewrite` changed them.
    pub upstream_path: Option<Box<str>>,
    /// Response status sent.
    pub status: u16,
    /// Route name, if one matched.
    pub route: Option<Arc<str>>,
    /// Group name, if a route matched.
    pub group: Option<Arc<str>>,
    /// Server id, if one was picked.
    pub server: Option<Arc<str>>,
    /// Response body bytes sent.
    pub bytes: u64,
    /// True when the body did not end normally (client went away, upstream reset).
    pub aborted: bool,
    /// The response cache's verdict on a cached route (`hit`, `miss`,
    /// `stale`, …; see `cache::lookup::log_status`); `None` elsewhere.
    pub cache: Option<&'static str>,
    /// Set when the record is emitted: wall-clock end time and duration (µs).
    end: Option<(SystemTime, u64)>,
}

impl AccessRecord {
    /// A record of a request that arrived at `start` from `client`.
    pub fn new(start: Instant, client: SocketAddr, method: Method, uri: Uri) -> Self {
        AccessRecord {
            start,
            client,
            method,
            uri,
            upstream_path: None,
            status: 0,
            route: None,
            group: None,
            server: None,
            bytes: 0,
            aborted: false,
            cache: None,
            end: None,
        }
    }

    /// Hands the record to this worker's buffer (or, on a thread that is not
    /// a worker, writes it through `tracing`).
    pub fn emit(mut self: Box<Self>) {
        let micros = u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.end = Some((SystemTime::now(), micros));
        LOCAL.with(|l| match &mut *l.borrow_mut() {
            Some(local) => local.push(*self),
            None => self.trace(),
        });
    }

    fn path(&self) -> &str {
        self.uri.path_and_query().map_or("/", |p| p.as_str())
    }

    fn duration_ms(&self) -> f64 {
        self.end.map_or(0, |(_, us)| us) as f64 / 1000.0
    }

    fn trace(&self) {
        tracing::info!(
            target: "weir::access",
            client = %self.client,
            method = %self.method,
            path = %self.path(),
            upstream_path = self.upstream_path.as_deref().unwrap_or("-"),
            status = self.status,
            route = self.route.as_deref().unwrap_or("-"),
            group = self.group.as_deref().unwrap_or("-"),
            server = self.server.as_deref().unwrap_or("-"),
            duration_ms = format_args!("{:.3}", self.duration_ms()),
            bytes = self.bytes,
            aborted = self.aborted,
            cache = self.cache.unwrap_or("-"),
        );
    }

    /// Writes the line in `format` to `out`.
    ///
    /// # Errors
    /// The writer's.
    pub fn write_line(&self, format: Format, out: &mut impl Write) -> io::Result<()> {
        let time = humantime::format_rfc3339_millis(self.end.map_or_else(SystemTime::now, |e| e.0));
        // Only a rewritten request shows where it went; other lines keep their shape.
        let upstream = self.upstream_path.as_deref();
        match format {
            Format::Text => write!(
                out,
                "{time} client={} method={} path={}{}{} status={} route={} group={} server={} duration_ms={:.3} bytes={} aborted={}",
                self.client,
                self.method,
                self.path(),
                if upstream.is_some() { " upstream_path=" } else { "" },
                upstream.unwrap_or(""),
                self.status,
                self.route.as_deref().unwrap_or("-"),
                self.group.as_deref().unwrap_or("-"),
                self.server.as_deref().unwrap_or("-"),
                self.duration_ms(),
                self.bytes,
                self.aborted,
            )
            .and_then(|()| match self.cache {
                // Only on cached routes, so other lines keep their shape.
                Some(c) => writeln!(out, " cache={c}"),
                None => writeln!(out),
            }),
            Format::Json => {
                let mut line = serde_json::json!({
                    "time": time.to_string(),
                    "client": self.client.to_string(),
                    "method": self.method.as_str(),
                    "path": self.path(),
                    "upstream_path": upstream,
                    "status": self.status,
                    "route": self.route.as_deref(),
                    "group": self.group.as_deref(),
                    "server": self.server.as_deref(),
                    "duration_ms": self.duration_ms(),
                    "bytes": self.bytes,
                    "aborted": self.aborted,
                });
                if let Some(c) = self.cache {
                    line["cache"] = c.into();
                }
                serde_json::to_writer(&mut *out, &line)?;
                out.write_all(b"\n")
            }
        }
    }
}

/// True when this thread's requests are logged (checked once per request).
#[inline]
pub fn enabled() -> bool {
    LOCAL.with(|l| match &*l.borrow() {
        Some(local) => local.log.shared.enabled.load(Ordering::Relaxed),
        None => tracing::enabled!(target: "weir::access", tracing::Level::INFO),
    })
}

/// A worker's buffer.
struct Local {
    log: AccessLog,
    buf: Vec<AccessRecord>,
}

impl Local {
    fn push(&mut self, record: AccessRecord) {
        self.buf.push(record);
        if self.buf.len() >= BATCH {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut self.buf, Vec::with_capacity(BATCH));
        self.log.send(Msg::Batch(batch));
    }
}

thread_local! {
    static LOCAL: RefCell<Option<Local>> = const { RefCell::new(None) };
}

enum Msg {
    Batch(Vec<AccessRecord>),
    /// Answers once everything sent before it is written.
    Flush(mpsc::Sender<()>),
}

#[derive(Debug)]
struct Shared {
    enabled: AtomicBool,
    /// Format and path; read by the writer before each batch.
    settings: Mutex<AccessLogConfig>,
    /// Set by reopen and by a new path; the writer reopens its file.
    reopen: AtomicBool,
    dropped: AtomicU64,
    written: AtomicU64,
    errors: AtomicU64,
}

/// The access log of one proxy: its writer thread and its settings. Cheap
/// to clone.
#[derive(Debug, Clone)]
pub struct AccessLog {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
}

impl AccessLog {
    /// Starts the writer thread for `config`.
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn start(config: &AccessLogConfig) -> io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let shared = Arc::new(Shared {
            enabled: AtomicBool::new(config.enabled),
            settings: Mutex::new(config.clone()),
            reopen: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            written: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        });
        let writer = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("weir-access-log".into())
            .spawn(move || write_loop(&rx, &writer))?;
        Ok(AccessLog { tx, shared })
    }

    /// Applies a reloaded config: on/off, format, and a new path (opened for
    /// the next batch).
    pub fn configure(&self, config: &AccessLogConfig) {
        let mut s = self
            .shared
            .settings
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if s.path != config.path {
            self.shared.reopen.store(true, Ordering::Relaxed);
        }
        *s = config.clone();
        self.shared.enabled.store(config.enabled, Ordering::Relaxed);
    }

    /// Reopens the file (after logrotate renamed it; `SIGUSR1`).
    pub fn reopen(&self) {
        self.shared.reopen.store(true, Ordering::Relaxed);
    }

    /// Makes this (worker) thread buffer its records for this log.
    pub fn attach(&self) {
        LOCAL.with(|l| {
            *l.borrow_mut() = Some(Local {
                log: self.clone(),
                buf: Vec::with_capacity(BATCH),
            });
        });
    }

    /// Hands this thread's buffered records to the writer.
    pub fn flush_local() {
        LOCAL.with(|l| {
            if let Some(local) = &mut *l.borrow_mut() {
                local.flush();
            }
        });
    }

    /// Waits (at most `timeout`) until every batch handed over so far is
    /// written. Workers' partial buffers are handed over by their flush
    /// tasks within [`FLUSH_INTERVAL`].
    pub fn sync(&self, timeout: Duration) -> bool {
        let (tx, rx) = mpsc::channel();
        if self.tx.send(Msg::Flush(tx)).is_err() {
            return false;
        }
        rx.recv_timeout(timeout).is_ok()
    }

    /// Lines dropped because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Lines written.
    pub fn written(&self) -> u64 {
        self.shared.written.load(Ordering::Relaxed)
    }

    /// Failed writes or opens of the log file.
    pub fn errors(&self) -> u64 {
        self.shared.errors.load(Ordering::Relaxed)
    }

    fn send(&self, msg: Msg) {
        match self.tx.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(Msg::Batch(b)) | TrySendError::Disconnected(Msg::Batch(b))) => {
                self.shared
                    .dropped
                    .fetch_add(b.len() as u64, Ordering::Relaxed);
            }
            Err(_) => {}
        }
    }
}

/// Where lines go: buffered (64 KiB) and flushed once per drained queue, so
/// a batch of lines costs one write, not several per line (stderr is
/// unbuffered in Rust).
enum Sink {
    Stderr(io::BufWriter<io::Stderr>),
    File(io::BufWriter<File>),
    /// The file could not be opened; retried at the next reopen or batch.
    Broken,
}

fn open(path: Option<&Path>) -> io::Result<Sink> {
    match path {
        None => Ok(Sink::Stderr(io::BufWriter::with_capacity(
            64 * 1024,
            io::stderr(),
        ))),
        Some(p) => Ok(Sink::File(io::BufWriter::with_capacity(
            64 * 1024,
            OpenOptions::new().create(true).append(true).open(p)?,
        ))),
    }
}

fn write_loop(rx: &Receiver<Msg>, shared: &Shared) {
    let settings = |s: &Shared| s.settings.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let open_logged = |path: Option<&Path>, shared: &Shared| match open(path) {
        Ok(s) => s,
        Err(e) => {
            shared.errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(path = ?path, error = %e, "cannot open the access log");
            Sink::Broken
        }
    };
    let mut current = settings(shared);
    let mut sink = open_logged(current.path.as_deref(), shared);
    loop {
        let msg = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(m) => Some(m),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        if shared.reopen.swap(false, Ordering::Relaxed) {
            current = settings(shared);
            let _ = flush(&mut sink);
            sink = open_logged(current.path.as_deref(), shared);
        } else if msg.is_some() {
            current.format = settings(shared).format;
        }
        let mut pending = msg;
        // Everything queued now goes out before one flush.
        while let Some(m) = pending.take() {
            match m {
                Msg::Batch(batch) => {
                    let n = batch.len() as u64;
                    let result = match &mut sink {
                        Sink::Stderr(e) => batch
                            .iter()
                            .try_for_each(|r| r.write_line(current.format, e)),
                        Sink::File(f) => batch
                            .iter()
                            .try_for_each(|r| r.write_line(current.format, f)),
                        Sink::Broken => Err(io::Error::other("not open")),
                    };
                    match result {
                        Ok(()) => shared.written.fetch_add(n, Ordering::Relaxed),
                        Err(_) => shared.dropped.fetch_add(n, Ordering::Relaxed),
                    };
                }
                Msg::Flush(done) => {
                    let _ = flush(&mut sink);
                    let _ = done.send(());
                }
            }
            pending = rx.try_recv().ok();
        }
        if flush(&mut sink).is_err() {
            shared.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn flush(sink: &mut Sink) -> io::Result<()> {
    match sink {
        Sink::Stderr(e) => e.flush(),
        Sink::File(f) => f.flush(),
        Sink::Broken => Ok(()),
    }
}
