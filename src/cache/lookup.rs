//! The request-path side of the cache: [`lookup`] before a server is
//! picked (a hit answers at once; a miss may wait for a coalesced request),
//! then [`Miss::prepare`] on the upstream request and [`Miss::respond`]
//! when its response arrives (store it, refresh a stale entry on 304, or
//! answer stale on an error). Every answer carries `Cache-Status`
//! (RFC 9211); hits carry `Age` (RFC 9111 §5.1).

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};

use super::coalesce::{Joined, Leader, Outcome};
use super::policy::{self, Directives, Usable};
use super::refresh::Refresh;
use super::store::{Entry, Slot};
use super::tee::{Pending, Tee};
use super::{key, Cache, RoutePolicy};

/// `Cache-Status` (RFC 9211).
pub static CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// The result of [`lookup`].
#[derive(Debug)]
pub enum Lookup {
    /// Answer with this stored response; when `refresh` is set, also
    /// revalidate it in the background (`stale-while-revalidate`).
    Hit {
        /// The response (status, headers with `Age` and `Cache-Status`, body).
        response: Response<Bytes>,
        /// The background revalidation to start.
        refresh: Option<Refresh>,
    },
    /// Forward to a server, then call [`Miss::respond`].
    Forward(Box<Miss>),
}

/// A request the cache could not answer, on its way to a server.
#[derive(Debug)]
pub struct Miss {
    cache: Arc<Cache>,
    policy: RoutePolicy,
    primary: Box<str>,
    method: Method,
    /// The request's headers (for `Vary` and `Authorization`), when storable.
    req_headers: HeaderMap,
    req: Directives,
    /// The response may be stored (a GET the cache handles).
    storable: bool,
    /// An unsafe method: a success invalidates the stored response (RFC 9111 §4.4).
    invalidates: bool,
    /// The stored response being revalidated (or kept for `stale-if-error`).
    stale: Option<Arc<Entry>>,
    leader: Option<Leader>,
    request_time: u64,
    /// The `fwd` parameter of `Cache-Status`.
    fwd: &'static str,
}

/// What to do with the upstream response ([`Miss::respond`]).
#[derive(Debug)]
pub enum Respond {
    /// Send the upstream response on, through the tee when it is stored.
    Stream(Option<Tee>),
    /// Send this instead (a stale entry refreshed by a 304, or served on a
    /// 5xx by `stale-if-error`); the upstream body is dropped.
    Cached(Response<Bytes>),
}

/// The access log's word for a `Cache-Status` value weir wrote: `hit`,
/// `stale` (served stale), `revalidated` (304), `collapsed` (waited for
/// another request), `stored` (a miss being stored), `bypass` (not
/// cacheable by method or `Range`) or `miss`.
pub fn log_status(value: &HeaderValue) -> &'static str {
    let v = value.to_str().unwrap_or("");
    if v.contains("stale-while-revalidate") || v.contains("stale-if-error") {
        "stale"
    } else if v.starts_with("weir; hit") {
        "hit"
    } else if v.contains("fwd-status=304") {
        "revalidated"
    } else if v.contains("collapsed") {
        "collapsed"
    } else if v.contains("; stored") {
        "stored"
    } else if v.contains("fwd=method") || v.contains("fwd=bypass") {
        "bypass"
    } else {
        "miss"
    }
}

fn now_unix() -> u64 {
    policy::unix(SystemTime::now())
}

fn status_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("weir"))
}

/// Looks `req` up in `cache` for route `route` with `policy`. `scheme` is
/// the listener's (`http`/`https`), `host` the request's host without port.
pub async fn lookup<B>(
    cache: &Arc<Cache>,
    policy: RoutePolicy,
    req: &Request<B>,
    scheme: &str,
    host: Option<&str>,
    route: &str,
) -> Lookup {
    let method = req.method();
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let primary = key::primary(scheme, host.unwrap_or(""), pq, route);
    let stats = &cache.stats;
    if let Some(fwd) = bypass(method, req.headers()) {
        stats.bypassed.inc();
        let mut miss = Miss::new(cache, policy, primary, method, fwd);
        miss.invalidates = fwd == "method" && !matches!(*method, Method::OPTIONS | Method::TRACE);
        return Lookup::Forward(Box::new(miss));
    }
    let req_d = policy::request_directives(req.headers());
    let found = find(cache, &primary, req.headers());
    let usable = found
        .entry
        .as_ref()
        .map(|e| policy::usable(e.lifetime, e.age(), &e.directives, &req_d));
    if let (Some(entry), Some(Usable::Fresh)) = (&found.entry, usable) {
        // The hot path: nothing else is allocated.
        stats.hits.inc();
        return fresh(entry, req.headers(), method);
    }
    let mut miss = Miss::new(cache, policy, primary, method, "uri-miss");
    miss.req = req_d;
    if let (Some(entry), Some(usable)) = (&found.entry, usable) {
        if usable == Usable::StaleWhileRevalidate {
            return stale_while_revalidate(miss, entry, req.headers());
        }
        // Revalidate (fresh entries were answered above).
        miss.fwd = if miss.req.no_cache {
            "request"
        } else {
            "stale"
        };
    } else if found.vary_miss {
        miss.fwd = "vary-miss";
    }
    if miss.req.only_if_cached {
        // RFC 9111 §5.2.1.7: nothing usable stored → 504.
        stats.misses.inc();
        return only_if_cached();
    }
    miss.stale = found.entry;
    if *method == Method::HEAD {
        // Only GET responses are stored; a HEAD goes through as it is.
        stats.misses.inc();
        return Lookup::Forward(Box::new(miss));
    }
    miss.storable = true;
    miss.req_headers = req.headers().clone();
    match cache.flights.join(&miss.primary) {
        Joined::Leader(l) => miss.leader = Some(l),
        Joined::Waiter(w) => {
            if let Some(Outcome::Stored(entry)) = w.wait(cache.config.lock_timeout).await {
                if let Some(hit) = collapsed(&miss, &entry, req.headers()) {
                    stats.coalesced.inc();
                    return hit;
                }
            }
            // Not stored, another variant, or the wait timed out: forward
            // on our own (without leading a flight).
        }
    }
    stats.misses.inc();
    Lookup::Forward(Box::new(miss))
}

/// The answer of a fresh stored `entry`.
#[inline]
fn fresh(entry: &Entry, req: &HeaderMap, method: &Method) -> Lookup {
    let response = answer(
        entry,
        req,
        method,
        &format!("weir; hit; ttl={}", entry.ttl()),
    );
    Lookup::Hit {
        response,
        refresh: None,
    }
}

/// Why a request goes to the server without a look at the store (the
/// `fwd` of its `Cache-Status`): a method other than GET and HEAD, or
/// partial content and protocol switches, which are not stored.
fn bypass(method: &Method, headers: &HeaderMap) -> Option<&'static str> {
    if *method != Method::GET && *method != Method::HEAD {
        return Some("method");
    }
    (headers.contains_key(header::RANGE) || headers.contains_key(header::UPGRADE))
        .then_some("bypass")
}

/// A stale `entry` within `stale-while-revalidate`: it answers, and the
/// request that leads the refresh flight revalidates it in the background.
fn stale_while_revalidate(mut miss: Miss, entry: &Arc<Entry>, req: &HeaderMap) -> Lookup {
    miss.cache.stats.stale.inc();
    let status = format!(
        "weir; hit; ttl={}; detail=stale-while-revalidate",
        entry.ttl()
    );
    let response = answer(entry, req, &miss.method, &status);
    let refresh = match miss.cache.flights.join(&miss.primary) {
        Joined::Leader(l) => {
            miss.leader = Some(l);
            miss.storable = true;
            miss.req_headers = req.clone();
            miss.stale = Some(Arc::clone(entry));
            miss.fwd = "stale";
            Some(Refresh::new(Box::new(miss)))
        }
        // A refresh is already on its way.
        Joined::Waiter(_) => None,
    };
    Lookup::Hit { response, refresh }
}

/// The `504` of an `only-if-cached` request with nothing usable stored.
fn only_if_cached() -> Lookup {
    let mut r = Response::new(Bytes::from_static(b"504 Gateway Timeout\n"));
    *r.status_mut() = StatusCode::GATEWAY_TIMEOUT;
    r.headers_mut().insert(
        &CACHE_STATUS,
        HeaderValue::from_static("weir; fwd=miss; detail=only-if-cached"),
    );
    Lookup::Hit {
        response: r,
        refresh: None,
    }
}

/// The answer of a request that waited for another's flight, when the
/// response stored is this request's variant. Fetched from the server after
/// this request arrived: that satisfies a request's no-cache too.
fn collapsed(miss: &Miss, entry: &Entry, req: &HeaderMap) -> Option<Lookup> {
    let matches =
        entry.vary.is_empty() || *entry.key == *key::variant(&miss.primary, &entry.vary, req);
    if !matches {
        return None;
    }
    let status = format!("weir; fwd={}; collapsed", miss.fwd);
    Some(Lookup::Hit {
        response: answer(entry, req, &miss.method, &status),
        refresh: None,
    })
}

/// What the store holds for a request.
struct Found {
    entry: Option<Arc<Entry>>,
    /// Responses with `Vary` are stored, but not this request's variant.
    vary_miss: bool,
}

fn find(cache: &Cache, primary: &str, headers: &HeaderMap) -> Found {
    match cache.store.get(primary) {
        Some(Slot::Entry(e)) => Found {
            entry: Some(e),
            vary_miss: false,
        },
        Some(Slot::Vary(m)) => {
            let k = key::variant(primary, &m.names, headers);
            let entry = match cache.store.get(&k) {
                Some(Slot::Entry(e)) if e.stored_at >= m.since => Some(e),
                _ => None,
            };
            Found {
                vary_miss: entry.is_none(),
                entry,
            }
        }
        None => Found {
            entry: None,
            vary_miss: false,
        },
    }
}

/// The response a stored entry gives a request: its headers with `Age`
/// and `Cache-Status`, its body (none for HEAD), or `304 Not Modified`
/// when the request's `If-None-Match`/`If-Modified-Since` matches it
/// (RFC 9110 §13.1.2, §13.1.3).
fn answer(e: &Entry, req: &HeaderMap, method: &Method, status: &str) -> Response<Bytes> {
    let mut headers = e.headers.clone();
    headers.insert(header::AGE, HeaderValue::from(e.age()));
    headers.insert(&CACHE_STATUS, status_value(status));
    let not_modified = e.status == StatusCode::OK && not_modified(&e.headers, req);
    let body = if *method == Method::HEAD || not_modified {
        Bytes::new()
    } else {
        e.body.clone()
    };
    let mut r = Response::new(body);
    *r.status_mut() = if not_modified {
        headers.remove(header::CONTENT_LENGTH);
        StatusCode::NOT_MODIFIED
    } else {
        e.status
    };
    *r.headers_mut() = headers;
    r
}

/// True when the request's conditionals say its stored copy is current.
fn not_modified(stored: &HeaderMap, req: &HeaderMap) -> bool {
    if req.contains_key(header::IF_NONE_MATCH) {
        let Some(etag) = stored.get(header::ETAG).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let opaque = |t: &str| t.trim().trim_start_matches("W/").to_string();
        let ours = opaque(etag);
        return req
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim() == "*" || opaque(t) == ours);
    }
    match (
        policy::date(req, &header::IF_MODIFIED_SINCE),
        policy::date(stored, &header::LAST_MODIFIED),
    ) {
        (Some(since), Some(modified)) => modified <= since,
        _ => false,
    }
}

impl Miss {
    /// A miss of `method` for `primary` that goes to the server as `fwd`,
    /// not (yet) storable.
    fn new(
        cache: &Arc<Cache>,
        policy: RoutePolicy,
        primary: Box<str>,
        method: &Method,
        fwd: &'static str,
    ) -> Miss {
        Miss {
            cache: Arc::clone(cache),
            policy,
            primary,
            method: method.clone(),
            req_headers: HeaderMap::new(),
            req: Directives::default(),
            storable: false,
            invalidates: false,
            stale: None,
            leader: None,
            request_time: now_unix(),
            fwd,
        }
    }

    /// Adjusts the upstream request's headers: a storable request loses the
    /// client's `If-None-Match`/`If-Modified-Since` (the cache wants the
    /// whole response), and a revalidation gets the stored response's
    /// validators instead (RFC 9111 §4.3.1).
    pub fn prepare(&self, headers: &mut HeaderMap) {
        if !self.storable {
            return;
        }
        headers.remove(header::IF_NONE_MATCH);
        headers.remove(header::IF_MODIFIED_SINCE);
        if let Some(e) = &self.stale {
            if let Some(etag) = e.headers.get(header::ETAG) {
                headers.insert(header::IF_NONE_MATCH, etag.clone());
            }
            if let Some(lm) = e.headers.get(header::LAST_MODIFIED) {
                headers.insert(header::IF_MODIFIED_SINCE, lm.clone());
            }
        }
    }

    fn status(&self, rest: &str) -> HeaderValue {
        status_value(&format!("weir; fwd={}{rest}", self.fwd))
    }

    /// Decides on the upstream response `parts` (headers already rewritten
    /// for the client, before any per-client header): stores it (through a
    /// [`Tee`]), refreshes the stale entry on a 304, or answers stale on a
    /// 5xx within `stale-if-error`. Adds `Cache-Status`.
    pub fn respond(mut self, parts: &mut http::response::Parts) -> Respond {
        let status = parts.status;
        let now = now_unix();
        if !self.storable {
            if self.invalidates && (status.is_success() || status.is_redirection()) {
                self.cache.store.remove(&self.primary);
            }
            parts.headers.insert(&CACHE_STATUS, self.status(""));
            return Respond::Stream(None);
        }
        if let Some(old) = self.stale.clone() {
            if status == StatusCode::NOT_MODIFIED {
                return Respond::Cached(self.revalidated(&old, &parts.headers, now));
            }
            if status.is_server_error() {
                if let Some(r) = self.serve_stale(&old, Some(status)) {
                    return Respond::Cached(r);
                }
            }
        }
        self.store(parts, now)
    }

    /// A `304 Not Modified` for the stale entry `old`: the entry refreshed
    /// with the 304's headers is stored, answers, and ends the flight.
    fn revalidated(&mut self, old: &Entry, headers: &HeaderMap, now: u64) -> Response<Bytes> {
        let entry = Arc::new(refreshed(old, headers, self.request_time, now, self.policy));
        self.cache.put(self.primary.clone(), &entry);
        self.cache.stats.revalidated.inc();
        let response = answer(
            &entry,
            &self.req_headers,
            &self.method,
            &format!("weir; fwd={}; fwd-status=304; stored", self.fwd),
        );
        if let Some(l) = self.leader.take() {
            l.finish(Outcome::Stored(entry));
        }
        response
    }

    /// Stores the response when it may be (RFC 9111 §3): its body goes
    /// through the tee on its way to the client. Otherwise (not storable,
    /// too large) it streams on, and the `Cache-Status` says why.
    fn store(&mut self, parts: &mut http::response::Parts, now: u64) -> Respond {
        let status = parts.status;
        let resp = policy::directives(&parts.headers);
        let verdict = policy::storable(
            &self.method,
            &self.req_headers,
            &self.req,
            status,
            &parts.headers,
            &resp,
            self.policy.default_ttl,
            now,
        );
        let lifetime = match verdict {
            Ok(l) => l,
            Err(reason) => {
                if let Some(old) = &self.stale {
                    self.cache.store.remove(&old.key);
                }
                parts
                    .headers
                    .insert(&CACHE_STATUS, self.status(&format!("; detail={reason}")));
                return Respond::Stream(None);
            }
        };
        let length = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if length.is_some_and(|n| n > self.cache.config.max_object_size) {
            self.cache.stats.too_large.inc();
            parts
                .headers
                .insert(&CACHE_STATUS, self.status("; detail=too-large"));
            return Respond::Stream(None);
        }
        let vary: Arc<[HeaderName]> = policy::vary(&parts.headers).unwrap_or_default().into();
        let key = if vary.is_empty() {
            self.primary.clone()
        } else {
            key::variant(&self.primary, &vary, &self.req_headers)
        };
        let entry = Entry {
            status,
            headers: owned(&parts.headers),
            body: Bytes::new(),
            stored_at: Instant::now(),
            initial_age: policy::initial_age(&parts.headers, self.request_time, now),
            lifetime,
            directives: resp,
            vary,
            weight: 0,
            key,
        };
        parts.headers.insert(&CACHE_STATUS, self.status("; stored"));
        let pending = Pending {
            entry,
            primary: self.primary.clone(),
        };
        Respond::Stream(Some(Tee::new(
            Arc::clone(&self.cache),
            pending,
            self.leader.take(),
            length.unwrap_or(0),
        )))
    }

    /// The stale entry, when `stale-if-error` lets it answer for a server
    /// that failed (`status` = its 5xx, `None` = no response at all).
    pub fn stale_on_error(self) -> Option<Response<Bytes>> {
        let old = self.stale.clone()?;
        self.serve_stale(&old, None)
    }

    fn serve_stale(&self, old: &Entry, status: Option<StatusCode>) -> Option<Response<Bytes>> {
        if !policy::stale_if_error(old.lifetime, old.age(), &old.directives, &self.req) {
            return None;
        }
        self.cache.stats.stale.inc();
        let fwd_status = status.map_or(String::new(), |s| format!("; fwd-status={}", s.as_u16()));
        let text = format!(
            "weir; fwd={}{fwd_status}; ttl={}; detail=stale-if-error",
            self.fwd,
            old.ttl()
        );
        Some(answer(old, &self.req_headers, &self.method, &text))
    }
}

/// A copy of `v` in its own allocation: a received value shares the
/// connection's read buffer, which a stored entry must not keep alive
/// (it would escape `max_size`).
fn own(v: &HeaderValue) -> HeaderValue {
    let mut copy = HeaderValue::from_bytes(v.as_bytes()).unwrap_or_else(|_| v.clone());
    copy.set_sensitive(v.is_sensitive());
    copy
}

/// `headers` with every value in its own allocation (see [`own`]).
fn owned(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, v) in headers {
        out.append(name.clone(), own(v));
    }
    out
}

/// The stored response `old` updated by a `304` with `headers` (RFC 9111
/// §4.3.4): its fields replace the stored ones (but `Content-Length`), and
/// freshness and age start again from the 304.
fn refreshed(
    old: &Entry,
    headers: &HeaderMap,
    request_time: u64,
    now: u64,
    policy: RoutePolicy,
) -> Entry {
    let mut merged = old.headers.clone();
    for name in headers.keys() {
        if name == header::CONTENT_LENGTH {
            continue;
        }
        merged.remove(name);
        for v in headers.get_all(name) {
            merged.append(name.clone(), own(v));
        }
    }
    let directives = policy::directives(&merged);
    let lifetime = if directives.no_cache {
        0
    } else {
        policy::freshness_lifetime(old.status, &merged, &directives, policy.default_ttl, now)
            .map_or(0, |(l, _)| l)
    };
    let weight = Entry::weigh(&old.key, &merged, &old.body);
    Entry {
        status: old.status,
        initial_age: policy::initial_age(headers, request_time, now),
        headers: merged,
        body: old.body.clone(),
        stored_at: Instant::now(),
        lifetime,
        directives,
        vary: Arc::clone(&old.vary),
        weight,
        key: old.key.clone(),
    }
}
