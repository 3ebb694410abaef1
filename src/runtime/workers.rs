//! Workers per core: each worker is an OS thread running a current-thread
//! tokio runtime. Every listener has one `SO_REUSEPORT` socket per worker
//! (nginx's `reuseport`, HAProxy's per-thread listeners), so the kernel
//! spreads new connections over the workers and a connection lives on one
//! worker from accept to close: its requests, the upstream connections they
//! use (per-worker pools) and the counters they bump (per-worker shards)
//! never wake or write on another core.
//!
//! What must be global (health, drain, ejection, in-flight counts, EWMA, the
//! route snapshot) is read-mostly or on its own cache line; background work
//! (health probes, the admin API, reloads, signals) runs once per process on
//! the control runtime that called [`crate::Proxy::start`].

use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::shard;

/// Bytes of the allocation [`allocator_housekeeping`] makes (1 MiB: a
/// large object, served from its own segment).
const HOUSEKEEPING_BYTES: usize = 1 << 20;

/// Lets the allocator of this worker thread hand freed pages back to the
/// kernel. mimalloc purges the pages a thread freed only later, on that
/// thread's own allocation slow path; a worker whose connections all went
/// idle (parked, their buffers freed) never takes it, and kept those pages
/// resident: 16 KiB per idle connection instead of 5.5 KiB with 4,000 idle
/// connections. One large allocation per tick (every 100 ms, zeroed, so its
/// fresh pages are never touched) takes the slow path and brings idle memory
/// back down. `mi_collect` would do it directly, but it is an unsafe FFI call
/// and the crate forbids unsafe code.
pub fn allocator_housekeeping() {
    let block = std::hint::black_box(vec![0u8; HOUSEKEEPING_BYTES]);
    drop(block);
}

/// The worker count for `configured` (`workers:` or `--threads`): 0 means
/// one per CPU core.
pub fn resolve_count(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The running worker threads.
#[derive(Debug)]
pub struct Workers {
    workers: Vec<Worker>,
}

#[derive(Debug)]
struct Worker {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Workers {
    /// Starts `n` workers (at least one), named `weir-worker-N`. Each calls
    /// `on_start` in its runtime once it runs (e.g. to spawn per-worker
    /// housekeeping tasks).
    ///
    /// # Errors
    /// When a thread or a runtime cannot be created; the workers started so
    /// far stop again.
    pub fn start(n: usize, on_start: Arc<dyn Fn(usize) + Send + Sync>) -> io::Result<Self> {
        let n = n.max(1);
        shard::reserve(n);
        let mut workers = Vec::with_capacity(n);
        for index in 0..n {
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            let on_start = Arc::clone(&on_start);
            let thread = std::thread::Builder::new()
                .name(format!("weir-worker-{index}"))
                .spawn(move || {
                    shard::set_current(index);
                    let runtime = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(r) => r,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(runtime.handle().clone()));
                    runtime.block_on(async move {
                        on_start(index);
                        // Until stop is sent or the sender dropped.
                        let _ = stop_rx.await;
                    });
                    // Dropping the runtime cancels what is left (connections
                    // still open past the drain timeout).
                    runtime.shutdown_timeout(Duration::from_millis(100));
                    crate::proxy::access_log::AccessLog::flush_local();
                })?;
            let handle = ready_rx
                .recv()
                .map_err(|_| io::Error::other("worker thread died at start"))??;
            workers.push(Worker {
                handle,
                stop: Some(stop_tx),
                thread: Some(thread),
            });
        }
        Ok(Workers { workers })
    }

    /// The number of workers.
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// Never true: there is at least one worker.
    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// The runtime handle of every worker, in index order.
    pub fn handles(&self) -> impl Iterator<Item = &Handle> {
        self.workers.iter().map(|w| &w.handle)
    }

    /// Stops every worker (their remaining tasks are dropped: connections
    /// close) and waits, at most `timeout`, for the threads to end.
    pub async fn stop(&mut self, timeout: Duration) {
        let mut threads = Vec::new();
        for w in &mut self.workers {
            if let Some(stop) = w.stop.take() {
                let _ = stop.send(());
            }
            threads.extend(w.thread.take());
        }
        let join = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        });
        let _ = tokio::time::timeout(timeout, join).await;
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for w in &mut self.workers {
            if let Some(stop) = w.stop.take() {
                let _ = stop.send(());
            }
        }
    }
}
