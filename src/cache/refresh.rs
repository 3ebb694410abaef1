//! A background revalidation (`stale-while-revalidate`, RFC 5861 §3) that a
//! cache hit hands to the proxy: the proxy sends it (`proxy::cache_refresh`),
//! since the cache does no I/O of its own.

use super::lookup::Miss;

/// A background revalidation to start (it leads the key's flight, so only
/// one runs per key).
#[derive(Debug)]
pub struct Refresh {
    miss: Box<Miss>,
}

impl Refresh {
    /// A refresh that ends `miss`.
    pub fn new(miss: Box<Miss>) -> Self {
        Refresh { miss }
    }

    /// The miss this refresh ends (for the task that sends it).
    pub fn into_miss(self) -> Box<Miss> {
        self.miss
    }
}
