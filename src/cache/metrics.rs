//! The cache metrics on `/metrics` (read at scrape time).

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use super::CacheRegistry;

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(v).encode(m)
}

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX)).encode(m)
}

/// Encodes the cache counters and the store's size.
///
/// # Errors
/// When the encoder fails.
pub fn encode(enc: &mut DescriptorEncoder, registry: &CacheRegistry) -> std::fmt::Result {
    let s = &registry.stats;
    counter(
        enc,
        "weir_cache_hits",
        "Requests answered from the cache with a fresh response.",
        s.hits.get(),
    )?;
    counter(
        enc,
        "weir_cache_misses",
        "Cacheable requests forwarded because nothing usable was stored (revalidations included).",
        s.misses.get(),
    )?;
    counter(
        enc,
        "weir_cache_stale",
        "Requests answered with a stale response (stale-while-revalidate, stale-if-error).",
        s.stale.get(),
    )?;
    counter(
        enc,
        "weir_cache_revalidated",
        "Stored responses the server confirmed with 304 Not Modified.",
        s.revalidated.get(),
    )?;
    counter(
        enc,
        "weir_cache_coalesced",
        "Requests that waited for another request's response instead of going to the server.",
        s.coalesced.get(),
    )?;
    counter(
        enc,
        "weir_cache_stored",
        "Responses stored.",
        s.stored.get(),
    )?;
    counter(
        enc,
        "weir_cache_too_large",
        "Responses not stored because their body is larger than max_object_size.",
        s.too_large.get(),
    )?;
    counter(
        enc,
        "weir_cache_bypassed",
        "Requests on cached routes that skip the cache (methods other than GET/HEAD, Range).",
        s.bypassed.get(),
    )?;
    let cache = registry.current();
    gauge(
        enc,
        "weir_cache_bytes",
        "Bytes held by the cache (bodies, headers, keys).",
        cache.as_ref().map_or(0, |c| c.store.weight()),
    )?;
    gauge(
        enc,
        "weir_cache_entries",
        "Entries held by the cache (responses and Vary markers).",
        cache.as_ref().map_or(0, |c| c.store.len() as u64),
    )?;
    gauge(
        enc,
        "weir_cache_capacity_bytes",
        "The cache's max_size.",
        cache.as_ref().map_or(0, |c| c.config.max_size),
    )?;
    Ok(())
}
