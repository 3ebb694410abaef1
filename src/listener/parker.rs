//! The parker: where the idle plain HTTP/1 keep-alive connections of one
//! listener wait for their next request, holding only their sockets.
//!
//! A parked connection has no task, no buffer and no registration with its
//! worker's event loop: its socket sits in a slab, registered with the
//! listener's own `epoll` set (a `mio::Poll`), which one thread waits on.
//! When the client sends its next request (or closes), the socket leaves
//! the set and goes back to the worker it came from (its inbox), which
//! serves it with a fresh task and a fresh hyper connection, as a newly
//! accepted one. One slab entry is about 120 bytes (the socket, both
//! addresses, the connection-limit permit, the idle deadline), against a
//! ~1 KiB task with its waiting future and the event loop's per-socket
//! state when a connection waited in its own task. nginx keeps an idle
//! keep-alive connection the same way: only its `ngx_connection_t` and its
//! event in the worker's epoll set, its buffers freed
//! (`ngx_http_set_keepalive`).
//!
//! The set is waited on by a thread of its own, not by the workers' event
//! loops: tokio can watch an arbitrary fd only through `AsyncFd`, whose
//! registration is `unsafe` (tokio#8587), and this crate forbids unsafe
//! code. The cost is one hand-over between threads per request that ends a
//! parked stretch, i.e. after at least one watchdog tick (50–100 ms) of
//! silence; a busy connection never parks.
//!
//! TLS connections keep waiting in their task (conn.rs): their session
//! state has to survive between requests anyway.
//!
//! The keep-alive idle timeout of a parked connection is kept in a heap of
//! deadlines; an entry whose connection left the parker meanwhile is
//! skipped when it comes due, and the heap is rebuilt from the live entries
//! when stale ones outnumber them, so it stays within twice the number of
//! parked connections (plus [`STALE_SLACK`]).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Token};
use tokio::sync::mpsc;

use crate::limits::ConnPermit;
use crate::metrics::ListenerStats;

/// Readiness events taken from the set per `epoll_wait`.
const EVENTS: usize = 256;

/// Stale deadline entries allowed beyond the live ones before the heap is
/// rebuilt (a small heap is not worth rebuilding).
const STALE_SLACK: usize = 64;

/// The token of the waker that interrupts the thread's wait.
const WAKER: Token = Token(usize::MAX);

/// Longest wait of the parker's thread: it ends once its parker is gone.
const MAX_WAIT: Duration = Duration::from_secs(1);

/// An idle connection between two requests: all that is kept of it.
#[derive(Debug)]
pub(super) struct Parked {
    /// The client socket (non-blocking; registered with no event loop).
    pub stream: std::net::TcpStream,
    /// The client (from the PROXY header when the listener reads one).
    pub peer: SocketAddr,
    /// The address the client connected to.
    pub local: SocketAddr,
    /// The connection's place under `max_connections` and
    /// `max_connections_per_ip`; it is released when the connection closes.
    pub permit: ConnPermit,
    /// When the keep-alive idle timeout closes the connection.
    pub deadline: Instant,
    /// The inbox ([`Parker::inbox`]) of the worker that serves it again.
    pub home: usize,
}

#[derive(Debug)]
struct Entry {
    parked: Parked,
    /// Tells this entry from a later one in the same slab slot, for the
    /// deadline heap.
    generation: u64,
}

#[derive(Debug, Default)]
struct Slots {
    entries: slab::Slab<Entry>,
    /// Deadlines, earliest first: (deadline, slab key, generation).
    deadlines: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    next_generation: u64,
    /// Set at shutdown: nothing parks any more.
    closed: bool,
}

/// The parked connections of one listener. See the module documentation.
#[derive(Debug)]
pub(super) struct Parker {
    registry: mio::Registry,
    /// Interrupts the thread's wait: an earlier deadline, or shutdown.
    waker: mio::Waker,
    slots: Mutex<Slots>,
    /// One per worker (accept loop): where its connections go back.
    inboxes: Mutex<Vec<mpsc::UnboundedSender<Parked>>>,
    stats: Arc<ListenerStats>,
}

impl Parker {
    /// A parker with its thread, named after the listener.
    ///
    /// # Errors
    /// When the `epoll` set or the thread cannot be created.
    pub fn start(listener: &str, stats: Arc<ListenerStats>) -> io::Result<Arc<Parker>> {
        let poll = mio::Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let waker = mio::Waker::new(poll.registry(), WAKER)?;
        let parker = Arc::new(Parker {
            registry,
            waker,
            slots: Mutex::new(Slots::default()),
            inboxes: Mutex::new(Vec::new()),
            stats,
        });
        let weak = Arc::downgrade(&parker);
        std::thread::Builder::new()
            .name(format!("weir-park-{listener}"))
            .spawn(move || wait(poll, &weak))?;
        Ok(parker)
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new inbox: its index (a [`Parked::home`]) and the receiver of the
    /// connections handed back to it.
    pub fn inbox(&self) -> (usize, mpsc::UnboundedReceiver<Parked>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut inboxes = self.inboxes.lock().unwrap_or_else(|e| e.into_inner());
        inboxes.push(tx);
        (inboxes.len() - 1, rx)
    }

    /// Parks `p` until its client sends or its deadline passes. After
    /// shutdown, or when the socket cannot be registered, the connection is
    /// closed instead.
    pub fn park(&self, p: Parked) {
        let mut slots = self.slots();
        if slots.closed {
            return;
        }
        let key = slots.entries.vacant_key();
        let fd = p.stream.as_raw_fd();
        if let Err(e) = self
            .registry
            .register(&mut SourceFd(&fd), Token(key), Interest::READABLE)
        {
            tracing::debug!(error = %e, "cannot park an idle connection; closing it");
            return;
        }
        let generation = slots.next_generation;
        slots.next_generation += 1;
        let deadline = p.deadline;
        let earliest = slots
            .deadlines
            .peek()
            .is_none_or(|Reverse((d, _, _))| deadline < *d);
        slots.entries.insert(Entry {
            parked: p,
            generation,
        });
        slots.deadlines.push(Reverse((deadline, key, generation)));
        self.stats.parked.add(1);
        self.stats.open.add(1);
        drop(slots);
        if earliest {
            let _ = self.waker.wake();
        }
    }

    /// Takes the connection of `key` out of the set.
    fn take(&self, slots: &mut Slots, key: usize) -> Option<Parked> {
        let entry = slots.entries.try_remove(key)?;
        let fd = entry.parked.stream.as_raw_fd();
        let _ = self.registry.deregister(&mut SourceFd(&fd));
        self.stats.parked.add(-1);
        self.stats.open.add(-1);
        Some(entry.parked)
    }

    /// Sends the connections whose clients sent something (or closed) back
    /// to their workers. A worker that is gone closes them.
    fn hand_back(&self, events: &Events) {
        let mut ready = Vec::new();
        {
            let mut slots = self.slots();
            for event in events {
                if event.token() != WAKER {
                    ready.extend(self.take(&mut slots, event.token().0));
                }
            }
        }
        if ready.is_empty() {
            return;
        }
        let inboxes = self.inboxes.lock().unwrap_or_else(|e| e.into_inner());
        for p in ready {
            if let Some(inbox) = inboxes.get(p.home) {
                let _ = inbox.send(p);
            }
        }
    }

    /// Closes the connections whose idle deadline is past; returns the next
    /// deadline.
    fn expire(&self, now: Instant) -> Option<Instant> {
        let mut slots = self.slots();
        let mut closed = 0;
        while let Some(&Reverse((deadline, key, generation))) = slots.deadlines.peek() {
            if deadline > now {
                break;
            }
            slots.deadlines.pop();
            let live = slots
                .entries
                .get(key)
                .is_some_and(|e| e.generation == generation);
            if live {
                // Dropped: the socket closes, the permit is released.
                drop(self.take(&mut slots, key));
                closed += 1;
            }
        }
        if slots.deadlines.len() > 2 * slots.entries.len() + STALE_SLACK {
            let live: Vec<_> = slots
                .entries
                .iter()
                .map(|(key, e)| Reverse((e.parked.deadline, key, e.generation)))
                .collect();
            slots.deadlines = BinaryHeap::from(live);
        }
        if closed > 0 {
            tracing::trace!(closed, "parked connections closed at the idle timeout");
        }
        slots.deadlines.peek().map(|Reverse((d, _, _))| *d)
    }

    /// Closes every parked connection and takes no more (shutdown); the
    /// thread ends.
    pub fn close_all(&self) {
        let mut slots = self.slots();
        slots.closed = true;
        let keys: Vec<usize> = slots.entries.iter().map(|(k, _)| k).collect();
        for key in keys {
            drop(self.take(&mut slots, key));
        }
        slots.deadlines.clear();
        drop(slots);
        let _ = self.waker.wake();
    }

    fn is_closed(&self) -> bool {
        self.slots().closed
    }

    /// Parked connections now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots().entries.len()
    }
}

/// The parker's thread: waits on the set until the next deadline, hands
/// back what became readable, closes what expired; ends at shutdown or
/// once the parker is gone.
fn wait(mut poll: mio::Poll, parker: &Weak<Parker>) {
    let mut events = Events::with_capacity(EVENTS);
    let mut next = None;
    loop {
        let timeout = next.map_or(MAX_WAIT, |d: Instant| {
            d.saturating_duration_since(Instant::now()).min(MAX_WAIT)
        });
        let polled = poll.poll(&mut events, Some(timeout));
        let Some(parker) = parker.upgrade() else {
            return;
        };
        if let Err(e) = polled {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            tracing::error!(error = %e, "the parker's epoll set failed; closing its connections");
            parker.close_all();
            return;
        }
        if parker.is_closed() {
            return;
        }
        parker.hand_back(&events);
        next = parker.expire(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn stats() -> Arc<ListenerStats> {
        Arc::new(ListenerStats::default())
    }

    /// A connected pair: (client end, server end, non-blocking; client).
    fn pair() -> (std::net::TcpStream, std::net::TcpStream, SocketAddr) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, peer) = l.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        (client, server, peer)
    }

    async fn parked(stream: std::net::TcpStream, peer: SocketAddr, idle: Duration) -> Parked {
        let limiter = crate::limits::ConnLimiter::new(Some(10), None);
        Parked {
            local: stream.local_addr().unwrap(),
            stream,
            peer,
            permit: limiter.reserve().await.admit(peer.ip()).unwrap(),
            deadline: Instant::now() + idle,
            home: 0,
        }
    }

    async fn next(rx: &mut mpsc::UnboundedReceiver<Parked>) -> Parked {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("handed back within 5 s")
            .expect("inbox open")
    }

    #[tokio::test]
    async fn a_client_that_sends_gets_its_connection_back() {
        let stats = stats();
        let parker = Parker::start("t", Arc::clone(&stats)).unwrap();
        let (_, mut rx) = parker.inbox();
        let (mut c1, s1, p1) = pair();
        let (_c2, s2, p2) = pair();
        parker.park(parked(s1, p1, Duration::from_secs(60)).await);
        parker.park(parked(s2, p2, Duration::from_secs(60)).await);
        assert_eq!((stats.parked.get(), stats.open.get()), (2, 2));

        c1.write_all(b"GET / HTTP/1.1\r\n").unwrap();
        let mut back = next(&mut rx).await;
        assert_eq!(back.peer, p1, "the connection that sent");
        assert_eq!(parker.len(), 1);
        assert_eq!((stats.parked.get(), stats.open.get()), (1, 1));
        // The bytes are still in the socket for the next reader.
        let mut buf = [0u8; 64];
        let n = back.stream.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"GET / HTTP/1.1\r\n");
        assert!(rx.try_recv().is_err(), "the quiet one stays parked");
    }

    #[tokio::test]
    async fn bytes_sent_before_parking_are_seen() {
        let parker = Parker::start("t", stats()).unwrap();
        let (_, mut rx) = parker.inbox();
        let (mut c, s, p) = pair();
        c.write_all(b"G").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        parker.park(parked(s, p, Duration::from_secs(60)).await);
        assert_eq!(next(&mut rx).await.peer, p);
    }

    #[tokio::test]
    async fn a_client_that_closes_is_handed_back_to_see_the_end() {
        let parker = Parker::start("t", stats()).unwrap();
        let (_, mut rx) = parker.inbox();
        let (c, s, p) = pair();
        parker.park(parked(s, p, Duration::from_secs(60)).await);
        drop(c);
        let mut back = next(&mut rx).await;
        let mut buf = [0u8; 8];
        assert_eq!(back.stream.read(&mut buf).unwrap(), 0);
    }

    #[tokio::test]
    async fn the_idle_deadline_closes_a_parked_connection() {
        let stats = stats();
        let parker = Parker::start("t", Arc::clone(&stats)).unwrap();
        let (_, _rx) = parker.inbox();
        let (mut c_late, s_late, p_late) = pair();
        let (mut c_soon, s_soon, p_soon) = pair();
        parker.park(parked(s_late, p_late, Duration::from_secs(60)).await);
        // Parked second with an earlier deadline: the thread's wait is cut.
        let start = Instant::now();
        parker.park(parked(s_soon, p_soon, Duration::from_millis(200)).await);
        c_soon
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(c_soon.read(&mut buf).unwrap(), 0, "closed at its deadline");
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(190), "closed after {took:?}");
        assert!(took < MAX_WAIT, "the wait was not cut short: {took:?}");
        assert_eq!(stats.parked.get(), 1);
        c_late.set_nonblocking(true).unwrap();
        assert_eq!(
            c_late.read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock,
            "the later one stays open"
        );
    }

    #[tokio::test]
    async fn stale_deadlines_do_not_pile_up() {
        let parker = Parker::start("t", stats()).unwrap();
        let (_, mut rx) = parker.inbox();
        let (mut c, mut s, p) = pair();
        // The same connection parks and wakes 300 times.
        for _ in 0..300 {
            parker.park(parked(s, p, Duration::from_secs(60)).await);
            c.write_all(b"x").unwrap();
            s = next(&mut rx).await.stream;
            let mut b = [0u8; 1];
            s.read_exact(&mut b).unwrap();
        }
        let heap = parker.slots().deadlines.len();
        assert!(
            heap <= STALE_SLACK + 3,
            "{heap} deadline entries for 0 parked"
        );
    }

    #[tokio::test]
    async fn close_all_closes_and_refuses_more() {
        let stats = stats();
        let parker = Parker::start("t", Arc::clone(&stats)).unwrap();
        let (mut c, s, p) = pair();
        parker.park(parked(s, p, Duration::from_secs(60)).await);
        parker.close_all();
        assert_eq!((stats.parked.get(), stats.open.get()), (0, 0));
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(c.read(&mut buf).unwrap(), 0);
        let (mut c2, s2, p2) = pair();
        parker.park(parked(s2, p2, Duration::from_secs(60)).await);
        assert_eq!(stats.parked.get(), 0, "no parking after shutdown");
        c2.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(c2.read(&mut buf).unwrap(), 0);
    }
}
