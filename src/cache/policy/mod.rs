//! The RFC 9111 rules as pure functions: `Cache-Control` parsing (§5.2),
//! whether a response may be stored (§3, §3.5), its freshness lifetime
//! (§4.2.1, heuristics §4.2.2), its age (§4.2.3), and whether a stored
//! response may answer a request (§4, §4.2.4, §5.2.1; RFC 5861's
//! `stale-while-revalidate` and `stale-if-error`).
//!
//! Times are whole seconds (the unit of `Age` and `max-age`); the caller
//! passes the clock in, so every rule is testable without waiting.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderName};
use http::{HeaderMap, Method, StatusCode};

/// Largest delta-seconds value kept (RFC 9111 §1.2.2: 2^31).
pub const MAX_DELTA: u64 = 1 << 31;
/// Cap of the `Last-Modified` heuristic lifetime (one day).
pub const MAX_HEURISTIC: u64 = 24 * 3600;

/// The `Cache-Control` directives weir acts on, of a request or a response
/// (RFC 9111 §5.2). Unknown directives are ignored (§5.2.3).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Directives {
    /// `max-age=N` (first occurrence; an invalid value counts as 0, §4.2.1).
    pub max_age: Option<u64>,
    /// `s-maxage=N` (responses; shared caches prefer it, §5.2.2.10).
    pub s_maxage: Option<u64>,
    /// `no-store`.
    pub no_store: bool,
    /// `no-cache` (with or without field names: weir revalidates the whole response).
    pub no_cache: bool,
    /// `private` (with or without field names: weir does not store it).
    pub private: bool,
    /// `public`.
    pub public: bool,
    /// `must-revalidate` or `proxy-revalidate`: never served stale.
    pub must_revalidate: bool,
    /// `stale-while-revalidate=N` (RFC 5861 §3).
    pub stale_while_revalidate: Option<u64>,
    /// `stale-if-error=N` (RFC 5861 §4; request or response).
    pub stale_if_error: Option<u64>,
    /// Request `max-stale` (`Some(None)` = any staleness).
    pub max_stale: Option<Option<u64>>,
    /// Request `min-fresh=N`.
    pub min_fresh: Option<u64>,
    /// Request `only-if-cached`.
    pub only_if_cached: bool,
}

/// Splits a `Cache-Control` value at commas outside quoted strings.
fn split_list(s: &str) -> impl Iterator<Item = &str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, b) in s.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b',' if !quoted => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts.into_iter().map(str::trim).filter(|p| !p.is_empty())
}

/// A delta-seconds value (§1.2.2): digits, capped at [`MAX_DELTA`]; quoted
/// values are accepted; anything else is invalid (`None`).
fn delta(v: Option<&str>) -> Option<u64> {
    let v = v?.trim().trim_matches('"');
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(v.parse::<u64>().unwrap_or(MAX_DELTA).min(MAX_DELTA))
}

/// Parses every `Cache-Control` field of `headers` (§5.2). The first
/// occurrence of a directive wins; an invalid `max-age`/`s-maxage` value
/// counts as 0 (stale, §4.2.1).
pub fn directives(headers: &HeaderMap) -> Directives {
    let mut d = Directives::default();
    for value in headers.get_all(header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for part in split_list(value) {
            let (name, arg) = match part.split_once('=') {
                Some((n, a)) => (n.trim(), Some(a)),
                None => (part, None),
            };
            let name = name.to_ascii_lowercase();
            match name.as_str() {
                "max-age" => {
                    d.max_age = d.max_age.or(Some(delta(arg).unwrap_or(0)));
                }
                "s-maxage" => {
                    d.s_maxage = d.s_maxage.or(Some(delta(arg).unwrap_or(0)));
                }
                "no-store" => d.no_store = true,
                "no-cache" => d.no_cache = true,
                "private" => d.private = true,
                "public" => d.public = true,
                "must-revalidate" | "proxy-revalidate" => d.must_revalidate = true,
                "stale-while-revalidate" => {
                    d.stale_while_revalidate = d.stale_while_revalidate.or(delta(arg));
                }
                "stale-if-error" => d.stale_if_error = d.stale_if_error.or(delta(arg)),
                "max-stale" => d.max_stale = d.max_stale.or(Some(delta(arg))),
                "min-fresh" => d.min_fresh = d.min_fresh.or(delta(arg)),
                "only-if-cached" => d.only_if_cached = true,
                _ => {}
            }
        }
    }
    d
}

/// The request's own directives, with `Pragma: no-cache` read as
/// `Cache-Control: no-cache` when there is no `Cache-Control` (§5.4).
pub fn request_directives(headers: &HeaderMap) -> Directives {
    let mut d = directives(headers);
    if !headers.contains_key(header::CACHE_CONTROL) {
        d.no_cache = headers
            .get_all(header::PRAGMA)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| split_list(v).any(|p| p.eq_ignore_ascii_case("no-cache")));
    }
    d
}

/// Statuses cacheable by default, i.e. heuristically (RFC 9110 §15.1),
/// without 206 (weir does not store partial content).
pub fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// An HTTP date (`Date`, `Expires`, `Last-Modified`) as Unix seconds.
pub fn date(headers: &HeaderMap, name: &HeaderName) -> Option<u64> {
    let v = headers.get(name)?.to_str().ok()?;
    let t = httpdate::parse_http_date(v).ok()?;
    Some(t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
}

/// Unix seconds of `t`.
pub fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Where a freshness lifetime came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `s-maxage`, `max-age` or `Expires` (§4.2.1).
    Explicit,
    /// The route's `default_ttl` (a configured heuristic, §4.2.2).
    DefaultTtl,
    /// 10% of the time since `Last-Modified`, capped at [`MAX_HEURISTIC`] (§4.2.2).
    LastModified,
}

/// The freshness lifetime of a response in seconds, and its source
/// (RFC 9111 §4.2.1): `s-maxage`, else `max-age`, else `Expires` − `Date`
/// (an invalid `Expires` is in the past: 0); for a status cacheable by
/// default (or a `public` response) without those, the route's
/// `default_ttl`, else 10% of `Date` − `Last-Modified` (§4.2.2). `None`:
/// no freshness information. `now` stands in for a missing `Date`.
pub fn freshness_lifetime(
    status: StatusCode,
    headers: &HeaderMap,
    d: &Directives,
    default_ttl: Option<Duration>,
    now: u64,
) -> Option<(u64, Source)> {
    if let Some(s) = d.s_maxage {
        return Some((s, Source::Explicit));
    }
    if let Some(m) = d.max_age {
        return Some((m, Source::Explicit));
    }
    if headers.contains_key(header::EXPIRES) {
        let date_value = date(headers, &header::DATE).unwrap_or(now);
        let lifetime = date(headers, &header::EXPIRES).map_or(0, |e| e.saturating_sub(date_value));
        return Some((lifetime, Source::Explicit));
    }
    if !(heuristically_cacheable(status) || d.public) {
        return None;
    }
    if let Some(ttl) = default_ttl {
        return Some((ttl.as_secs(), Source::DefaultTtl));
    }
    let modified = date(headers, &header::LAST_MODIFIED)?;
    let date_value = date(headers, &header::DATE).unwrap_or(now);
    let lifetime = (date_value.saturating_sub(modified) / 10).min(MAX_HEURISTIC);
    Some((lifetime, Source::LastModified))
}

/// The `Vary` field names of a response, lower-cased and deduplicated;
/// `Err(())` for `Vary: *` (never matches a later request, §4.1).
#[allow(clippy::result_unit_err)]
pub fn vary(headers: &HeaderMap) -> Result<Vec<HeaderName>, ()> {
    let mut names: Vec<HeaderName> = Vec::new();
    for v in headers.get_all(header::VARY) {
        let Ok(v) = v.to_str() else { return Err(()) };
        for name in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "*" {
                return Err(());
            }
            let Ok(n) = HeaderName::from_bytes(name.as_bytes()) else {
                return Err(());
            };
            if !names.contains(&n) {
                names.push(n);
            }
        }
    }
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    Ok(names)
}

/// Why a response is not stored (the `detail` of its `Cache-Status`).
pub type Refusal = &'static str;

/// Whether a response may be stored by a shared cache, per RFC 9111 §3:
/// a GET, a final status weir understands (not 206 or 304), no `no-store`
/// in request or response, not `private`, no `Set-Cookie` (weir's choice,
/// as nginx), not `Vary: *`, a request with `Authorization` only when the
/// response says `public`, `s-maxage` or `must-revalidate` (§3.5), and
/// freshness information (explicit, or heuristic for statuses cacheable by
/// default). A lifetime of 0 is stored only when the response has a
/// validator (`ETag`, `Last-Modified`) to revalidate it with.
///
/// On success: the freshness lifetime in seconds.
///
/// # Errors
/// The reason, a short token.
#[allow(clippy::too_many_arguments)]
pub fn storable(
    method: &Method,
    req_headers: &HeaderMap,
    req: &Directives,
    status: StatusCode,
    headers: &HeaderMap,
    resp: &Directives,
    default_ttl: Option<Duration>,
    now: u64,
) -> Result<u64, Refusal> {
    if method != Method::GET {
        return Err("method");
    }
    if status.is_informational()
        || status == StatusCode::PARTIAL_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Err("status");
    }
    if resp.no_store || req.no_store {
        return Err("no-store");
    }
    if resp.private {
        return Err("private");
    }
    if headers.contains_key(header::SET_COOKIE) {
        return Err("set-cookie");
    }
    if req_headers.contains_key(header::AUTHORIZATION)
        && !(resp.public || resp.s_maxage.is_some() || resp.must_revalidate)
    {
        return Err("authorization");
    }
    if vary(headers).is_err() {
        return Err("vary");
    }
    // no-cache: stored, but validated before each use (§5.2.2.4).
    let found = freshness_lifetime(status, headers, resp, default_ttl, now);
    let lifetime = if resp.no_cache && (found.is_some() || heuristically_cacheable(status)) {
        0
    } else {
        found.ok_or("no-freshness")?.0
    };
    let has_validator =
        headers.contains_key(header::ETAG) || headers.contains_key(header::LAST_MODIFIED);
    if lifetime == 0 && !has_validator {
        return Err("no-freshness");
    }
    Ok(lifetime)
}

/// The corrected initial age of a response in seconds (RFC 9111 §4.2.3):
/// the larger of the apparent age (`response_time` − `Date`) and the `Age`
/// it came with plus the time the request took.
pub fn initial_age(headers: &HeaderMap, request_time: u64, response_time: u64) -> u64 {
    let age_value = headers
        .get(header::AGE)
        .and_then(|v| delta(v.to_str().ok()))
        .unwrap_or(0);
    let apparent = date(headers, &header::DATE).map_or(0, |d| response_time.saturating_sub(d));
    let delay = response_time.saturating_sub(request_time);
    apparent.max(age_value.saturating_add(delay))
}

/// What a stored response can do for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usable {
    /// Fresh (or stale within the request's `max-stale`): answer with it.
    Fresh,
    /// Stale within `stale-while-revalidate`: answer with it and refresh
    /// it in the background (RFC 5861 §3).
    StaleWhileRevalidate,
    /// Must be validated with the server first (stale, `no-cache` in the
    /// request or the response, or outside the request's `max-age`/`min-fresh`).
    Revalidate,
}

/// Whether a stored response of `age` and `lifetime` (seconds) with
/// response directives `resp` may answer a request with directives `req`
/// (RFC 9111 §4.2, §5.2.1, §5.2.2; RFC 5861).
pub fn usable(lifetime: u64, age: u64, resp: &Directives, req: &Directives) -> Usable {
    if req.no_cache || resp.no_cache {
        return Usable::Revalidate;
    }
    if req.max_age.is_some_and(|m| age > m) {
        return Usable::Revalidate;
    }
    if lifetime > age {
        if req.min_fresh.is_some_and(|m| lifetime - age < m) {
            return Usable::Revalidate;
        }
        return Usable::Fresh;
    }
    let staleness = age - lifetime;
    if resp.must_revalidate {
        return Usable::Revalidate;
    }
    match req.max_stale {
        Some(None) => return Usable::Fresh,
        Some(Some(n)) if staleness <= n => return Usable::Fresh,
        _ => {}
    }
    if resp.stale_while_revalidate.is_some_and(|n| staleness <= n) {
        return Usable::StaleWhileRevalidate;
    }
    Usable::Revalidate
}

/// Whether a stale response may answer when the server failed (5xx, or no
/// connection): within `stale-if-error` of the response or the request
/// (RFC 5861 §4), never with `must-revalidate` (RFC 9111 §4.2.4).
pub fn stale_if_error(lifetime: u64, age: u64, resp: &Directives, req: &Directives) -> bool {
    if resp.must_revalidate || resp.no_cache {
        return false;
    }
    let staleness = age.saturating_sub(lifetime);
    let allowed = req.stale_if_error.or(resp.stale_if_error);
    allowed.is_some_and(|n| staleness <= n)
}

#[cfg(test)]
mod tests;
