//! The endpoint view a balancer works on: a server's weight and id (fixed
//! for one snapshot) and its live load. The balancers are generic over it,
//! so they name no upstream type (pingora's `BackendSelection` works on a
//! backend view the same way); `upstream::Server` and `upstream::ServerState`
//! implement it, and every pick is statically dispatched.

use std::sync::Arc;

use super::load_index::IndexLinks;

/// The live load of one server, as the balancers read it.
pub trait ServerLoad: std::fmt::Debug + Send + Sync + 'static {
    /// Requests in flight (a relaxed read: a pick's estimate).
    fn in_flight(&self) -> u64;
    /// In-flight requests and whether the server is available (healthy and
    /// not drained), read in the order the least-connections index needs
    /// (sequentially consistent).
    fn balancing_inputs(&self) -> (u64, bool);
    /// Whether passive health has the server ejected at `now_ms`
    /// ([`crate::clock::now_ms`]); `0` asks whether it was ever ejected.
    fn is_ejected_at(&self, now_ms: u64) -> bool;
    /// The response-time EWMA (ns) and the time of its last sample
    /// ([`crate::clock::monotonic_nanos`]); `None` before the first sample.
    fn ewma_raw(&self) -> Option<(f64, u64)>;
    /// The EWMA (ns) decayed to `now_ns` over `decay_ns`; `None` before the
    /// first sample.
    fn ewma_at(&self, now_ns: u64, decay_ns: f64) -> Option<f64>;
    /// The least-connections indexes this server is a leaf of.
    fn index_links(&self) -> &IndexLinks;
}

/// One server of a group, as the balancers see it.
pub trait Endpoint {
    /// Its live load.
    type Load: ServerLoad;
    /// Relative weight from the config (the balancers treat 0 as 1).
    fn weight(&self) -> u32;
    /// Its stable id (the consistent-hash ring is built from it).
    fn id(&self) -> &str;
    /// Its live load, shared with the requests in flight.
    fn load(&self) -> &Arc<Self::Load>;
}
