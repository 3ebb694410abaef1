//! The response-cache keys (issue 16): the top-level `cache` section and
//! `routes[].cache`; raw structs as written, and their validation into
//! [`CacheSettings`].

use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::units::RawByteSize;
use super::validate::Errors;
use super::RawRoute;
use crate::cache::{CacheConfig, CacheSettings, RoutePolicy};

/// The top-level `cache` section: the shared in-memory response cache used
/// by routes with `cache`. Absent while a route caches: the defaults.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    /// Most bytes held, bodies, headers and keys counted (default `256MiB`).
    pub max_size: Option<Spanned<RawByteSize>>,
    /// Largest body stored (default `8MiB`, or `max_size` when that is
    /// smaller); larger ones stream through uncached.
    pub max_object_size: Option<Spanned<RawByteSize>>,
    /// Longest wait of a request for another's response to the same key
    /// (request coalescing; default `5s`), after which it goes to the server itself.
    pub lock_timeout: Option<Spanned<String>>,
}

/// `routes[].cache`: `true`/`false`, or the settings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawRouteCacheValue {
    /// `true` caches per RFC 9111; `false` = not cached.
    On(bool),
    /// Caching with settings.
    Settings(RawRouteCache),
}

/// `routes[].cache` as a mapping.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouteCache {
    /// Also store responses without freshness information (no
    /// `Cache-Control` max-age/s-maxage, no `Expires`) whose status is
    /// cacheable by default, for this long (`60s`).
    pub default_ttl: Option<String>,
}

/// Largest `max_size` accepted (1 TiB; memory, so far more than any machine).
const MAX_CACHE_SIZE: u64 = 1 << 40;

fn bytes(v: &Spanned<RawByteSize>, key: &str, errs: &mut Errors) -> Option<u64> {
    match v.value.bytes() {
        Ok(0) => {
            errs.at(Some(&v.referenced), key, "must be more than 0 bytes");
            None
        }
        Ok(n) if n > MAX_CACHE_SIZE => {
            errs.at(Some(&v.referenced), key, "at most 1TiB");
            None
        }
        Ok(n) => Some(n),
        Err(e) => {
            errs.at(Some(&v.referenced), key, e);
            None
        }
    }
}

fn duration(s: &str) -> Result<Duration, String> {
    match super::units::parse_duration(s) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("must be more than 0s".into()),
        Err(e) => Err(format!("{s:?} is not a duration such as 60s or 1h: {e}")),
    }
}

/// Validates the `cache` section and each route's `cache` key.
pub(super) fn build(
    raw: Option<&Spanned<RawCache>>,
    routes: &[RawRoute],
    errs: &mut Errors,
) -> CacheSettings {
    let mut out = CacheSettings::default();
    for (i, r) in routes.iter().enumerate() {
        let policy = match r.cache.as_ref().map(|c| (&c.value, c)) {
            None | Some((RawRouteCacheValue::On(false), _)) => None,
            Some((RawRouteCacheValue::On(true), _)) => Some(RoutePolicy::default()),
            Some((RawRouteCacheValue::Settings(s), spanned)) => {
                let default_ttl = s.default_ttl.as_deref().and_then(|t| {
                    duration(t)
                        .map_err(|e| {
                            errs.at(
                                Some(&spanned.referenced),
                                format!("routes[{i}].cache.default_ttl"),
                                e,
                            );
                        })
                        .ok()
                });
                Some(RoutePolicy { default_ttl })
            }
        };
        out.routes.push(policy);
    }
    let mut config = CacheConfig::default();
    if let Some(raw) = raw {
        let c = &raw.value;
        if let Some(v) = &c.max_size {
            config.max_size = bytes(v, "cache.max_size", errs).unwrap_or(config.max_size);
        }
        if let Some(v) = &c.max_object_size {
            config.max_object_size =
                bytes(v, "cache.max_object_size", errs).unwrap_or(config.max_object_size);
        }
        if let Some(v) = &c.lock_timeout {
            match duration(&v.value) {
                Ok(d) => config.lock_timeout = d,
                Err(e) => errs.at(Some(&v.referenced), "cache.lock_timeout", e),
            }
        }
        if c.max_object_size.is_none() {
            // The default never exceeds a small max_size.
            config.max_object_size = config.max_object_size.min(config.max_size);
        }
        if config.max_object_size > config.max_size {
            let at = c.max_object_size.as_ref().map(|v| &v.referenced);
            errs.at(
                at.or(Some(&raw.referenced)),
                "cache.max_object_size",
                format!(
                    "larger than max_size ({} > {} bytes)",
                    config.max_object_size, config.max_size
                ),
            );
        }
    }
    if out.routes.iter().any(Option::is_some) {
        out.config = Some(config);
    }
    out
}
