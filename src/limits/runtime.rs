//! The protection state a config snapshot holds ([`Limits`]), and what
//! outlives a reload ([`LimitsRegistry`]): each local policy's buckets (kept
//! while the policy is unchanged), the Redis client (kept while the `redis`
//! section is), and the counters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use http::HeaderValue;

use super::headers;
use super::policy::{KeyInput, OnError, PolicyConfig, Store};
use super::rate::{Decision, LocalLimiter};
use super::redis_store::RedisStore;
use super::{IpRules, LimitsConfig};

/// Counters of one route's checks.
#[derive(Debug, Default)]
pub struct RouteCounters {
    /// Requests refused with 403 by `allow`/`deny`.
    pub ip_denied: AtomicU64,
    /// Requests refused with 413 by `max_request_body`.
    pub body_too_large: AtomicU64,
}

/// Counters of one policy.
#[derive(Debug, Default)]
pub struct PolicyCounters {
    /// Requests let through because Redis failed (`on_error: allow`).
    pub redis_failed_open: AtomicU64,
    /// Requests answered 503 because Redis failed (`on_error: deny`).
    pub redis_failed_closed: AtomicU64,
}

/// Local limiters by policy name, with the policy they were built for.
type LocalLimiters = HashMap<Arc<str>, (PolicyConfig, Arc<LocalLimiter>)>;
/// 429 counters by (route, policy).
type LimitedCounters = HashMap<(Arc<str>, Arc<str>), Arc<AtomicU64>>;

/// Protection state that lives across reloads. One per process.
#[derive(Debug, Default)]
pub struct LimitsRegistry {
    local: Mutex<LocalLimiters>,
    redis: Mutex<Option<Arc<RedisStore>>>,
    limited: Mutex<LimitedCounters>,
    routes: Mutex<HashMap<Arc<str>, Arc<RouteCounters>>>,
    policies: Mutex<HashMap<Arc<str>, Arc<PolicyCounters>>>,
    warned: Arc<AtomicU64>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl LimitsRegistry {
    /// The limiter of local policy `p`: the existing one when `p` is
    /// unchanged (its buckets carry over), else a new one.
    fn local(&self, p: &PolicyConfig) -> Arc<LocalLimiter> {
        let mut map = lock(&self.local);
        if let Some((old, l)) = map.get(&p.name) {
            if old == p {
                return Arc::clone(l);
            }
        }
        let l = Arc::new(LocalLimiter::new(p));
        map.insert(p.name.clone(), (p.clone(), Arc::clone(&l)));
        l
    }

    fn redis(&self, config: &LimitsConfig) -> Option<Arc<RedisStore>> {
        let wanted = config.redis.as_ref()?;
        let mut current = lock(&self.redis);
        if let Some(s) = current.as_ref().filter(|s| s.config() == wanted) {
            return Some(Arc::clone(s));
        }
        // The client spawns its connection task on the current runtime.
        tokio::runtime::Handle::try_current().ok()?;
        match RedisStore::new(wanted) {
            Ok(s) => {
                let s = Arc::new(s);
                *current = Some(Arc::clone(&s));
                Some(s)
            }
            Err(e) => {
                tracing::error!(error = %e, "redis: cannot create the client; store: redis policies follow on_error");
                None
            }
        }
    }

    fn limited_counter(&self, route: &Arc<str>, policy: &Arc<str>) -> Arc<AtomicU64> {
        let mut map = lock(&self.limited);
        Arc::clone(map.entry((route.clone(), policy.clone())).or_default())
    }

    fn route_counters(&self, route: &Arc<str>) -> Arc<RouteCounters> {
        Arc::clone(lock(&self.routes).entry(route.clone()).or_default())
    }

    fn policy_counters(&self, policy: &Arc<str>) -> Arc<PolicyCounters> {
        Arc::clone(lock(&self.policies).entry(policy.clone()).or_default())
    }

    /// `(route, policy, requests refused with 429)`, sorted.
    pub fn rate_limited(&self) -> Vec<(Arc<str>, Arc<str>, u64)> {
        let mut v: Vec<_> = lock(&self.limited)
            .iter()
            .map(|((r, p), c)| (r.clone(), p.clone(), c.load(Ordering::Relaxed)))
            .collect();
        v.sort();
        v
    }

    /// Every route's counters, by name.
    pub fn route_stats(&self) -> Vec<(Arc<str>, Arc<RouteCounters>)> {
        let mut v: Vec<_> = lock(&self.routes)
            .iter()
            .map(|(k, c)| (k.clone(), Arc::clone(c)))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Every policy's counters, by name.
    pub fn policy_stats(&self) -> Vec<(Arc<str>, Arc<PolicyCounters>)> {
        let mut v: Vec<_> = lock(&self.policies)
            .iter()
            .map(|(k, c)| (k.clone(), Arc::clone(c)))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Every local policy's store: `(name, keys, max_keys, evictions, bytes)`.
    pub fn local_stores(&self) -> Vec<(Arc<str>, usize, usize, u64, usize)> {
        let mut v: Vec<_> = lock(&self.local)
            .iter()
            .map(|(n, (_, l))| {
                let s = l.store();
                (
                    n.clone(),
                    s.len(),
                    s.max_keys(),
                    s.evictions(),
                    s.memory_used(),
                )
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

/// One policy as a route uses it.
#[derive(Debug)]
pub struct RoutePolicy {
    /// The policy.
    pub config: PolicyConfig,
    /// Its local limiter (`store: local`).
    local: Option<Arc<LocalLimiter>>,
    /// `weir_rate_limited_total{route, policy}`.
    limited: Arc<AtomicU64>,
    counters: Arc<PolicyCounters>,
}

/// A route's checks, ready to run.
#[derive(Debug)]
pub struct RouteLimits {
    /// `allow`/`deny`.
    pub ip_rules: Option<IpRules>,
    /// `max_request_body` in bytes.
    pub max_request_body: Option<u64>,
    /// The rate-limit policies, local ones first, then Redis ones (checked
    /// together in one script).
    pub policies: Vec<RoutePolicy>,
    /// A policy keys on a JWT claim: the route needs the verified token.
    pub needs_claims: bool,
    /// `RateLimit-Policy` of the route's policies, built once.
    policy_header: Option<HeaderValue>,
    /// The route's counters.
    pub counters: Arc<RouteCounters>,
    redis: Option<Arc<RedisStore>>,
    on_error: OnError,
    /// Unix second of the last Redis warning (shared by every route).
    warned: Arc<AtomicU64>,
}

/// The outcome of a route's rate limits for one request.
#[derive(Debug)]
pub enum RateOutcome {
    /// Go on; add these `RateLimit-Policy` and `RateLimit` values to the response.
    Allowed(Option<(HeaderValue, HeaderValue)>),
    /// Refuse with 429 and these headers.
    Limited {
        /// `Retry-After` (seconds).
        retry_after: HeaderValue,
        /// `RateLimit-Policy` and `RateLimit`.
        headers: Option<(HeaderValue, HeaderValue)>,
    },
    /// Redis could not answer and `on_error: deny`: refuse with 503.
    Unavailable,
}

impl RouteLimits {
    /// Runs the route's rate limits for one request: local policies in
    /// order, then the Redis ones in one script; the first refusal stops
    /// (the policies before it have counted the request).
    pub async fn check(&self, input: &KeyInput<'_>) -> RateOutcome {
        let mut checked: Vec<(&PolicyConfig, Decision)> = Vec::with_capacity(self.policies.len());
        let mut buckets = Vec::new();
        for p in &self.policies {
            let key = p.config.key.extract(input);
            match &p.local {
                Some(l) => {
                    let d = l.check(&key);
                    checked.push((&p.config, d));
                    if !d.allowed {
                        return self.refused(&checked);
                    }
                }
                None => {
                    let mut tagged = Vec::new();
                    key.write_to(&mut tagged);
                    buckets.push((&p.config, RedisStore::key(&p.config, &tagged)));
                }
            }
        }
        if !buckets.is_empty() {
            let result = match &self.redis {
                Some(r) => r.check(&buckets, None).await.map_err(|e| e.to_string()),
                None => Err("the redis client could not be created".to_string()),
            };
            match result {
                Ok(decisions) => {
                    for ((p, _), d) in buckets.iter().zip(decisions) {
                        checked.push((p, d));
                        if !d.allowed {
                            return self.refused(&checked);
                        }
                    }
                }
                Err(error) => {
                    let deny = self.on_error == OnError::Deny;
                    for p in self.policies.iter().filter(|p| p.local.is_none()) {
                        let c = if deny {
                            &p.counters.redis_failed_closed
                        } else {
                            &p.counters.redis_failed_open
                        };
                        c.fetch_add(1, Ordering::Relaxed);
                    }
                    if should_warn(&self.warned) {
                        tracing::warn!(
                            %error,
                            action = if deny { "deny (503)" } else { "allow" },
                            "redis rate limit store unavailable (logged at most once a second; counted in weir_rate_limit_redis_errors_total)"
                        );
                    }
                    if deny {
                        return RateOutcome::Unavailable;
                    }
                }
            }
        }
        RateOutcome::Allowed(self.headers(&checked))
    }

    fn refused(&self, checked: &[(&PolicyConfig, Decision)]) -> RateOutcome {
        let Some((last, d)) = checked.last() else {
            return RateOutcome::Allowed(None);
        };
        if let Some(p) = self.policies.iter().find(|p| p.config.name == last.name) {
            p.limited.fetch_add(1, Ordering::Relaxed);
        }
        RateOutcome::Limited {
            retry_after: headers::retry_after(d),
            headers: self.headers(checked),
        }
    }

    fn headers(&self, checked: &[(&PolicyConfig, Decision)]) -> Option<(HeaderValue, HeaderValue)> {
        let state = headers::state_value(checked.iter().map(|(p, d)| (*p, d)))?;
        Some((self.policy_header.clone()?, state))
    }
}

/// True at most once a second per clock: whether to log a failure now.
fn should_warn(last: &AtomicU64) -> bool {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    last.swap(now, Ordering::Relaxed) != now
}

/// The protection of every route of one config snapshot.
#[derive(Debug, Default)]
pub struct Limits {
    routes: Vec<Option<RouteLimits>>,
}

impl Limits {
    /// Builds the checks of `config` for routes named `route_names` (in
    /// route order), reusing state from `registry`.
    pub fn build(
        config: &LimitsConfig,
        route_names: &[Arc<str>],
        registry: &LimitsRegistry,
    ) -> Self {
        let needs_redis = config.policies.iter().any(|p| p.store == Store::Redis);
        let redis = if needs_redis {
            registry.redis(config)
        } else {
            None
        };
        let routes = config
            .routes
            .iter()
            .zip(route_names)
            .map(|(r, name)| {
                if r.is_empty() {
                    return None;
                }
                let mut policies: Vec<RoutePolicy> = r
                    .policies
                    .iter()
                    .filter_map(|&i| config.policies.get(i))
                    .map(|p| RoutePolicy {
                        config: p.clone(),
                        local: (p.store == Store::Local).then(|| registry.local(p)),
                        limited: registry.limited_counter(name, &p.name),
                        counters: registry.policy_counters(&p.name),
                    })
                    .collect();
                // Stable: local ones keep their order, Redis ones theirs.
                policies.sort_by_key(|p| p.local.is_none());
                Some(RouteLimits {
                    ip_rules: r.ip_rules.clone(),
                    max_request_body: r.max_request_body,
                    needs_claims: policies.iter().any(|p| p.config.key.needs_claims()),
                    policy_header: headers::policy_value(policies.iter().map(|p| &p.config)),
                    policies,
                    counters: registry.route_counters(name),
                    redis: redis.clone(),
                    on_error: config.redis.as_ref().map_or(OnError::Allow, |r| r.on_error),
                    warned: Arc::clone(&registry.warned),
                })
            })
            .collect();
        Limits { routes }
    }

    /// The checks of route `index`, or `None` when it has none.
    pub fn route(&self, index: usize) -> Option<&RouteLimits> {
        self.routes.get(index).and_then(Option::as_ref)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_at_most_once_a_second() {
        let clock = AtomicU64::new(0);
        assert!(should_warn(&clock));
        let again: Vec<bool> = (0..1000).map(|_| should_warn(&clock)).collect();
        // At most one more warning, when the second turned over meanwhile.
        assert!(again.iter().filter(|w| **w).count() <= 1);
    }

    #[test]
    fn unchanged_policies_keep_their_limiter() {
        let p = PolicyConfig {
            name: "p".into(),
            key: super::super::RateKey::ClientIp,
            count: 1,
            period: std::time::Duration::from_secs(1),
            burst: 1,
            store: Store::Local,
            max_keys: 10,
        };
        let reg = LimitsRegistry::default();
        let a = reg.local(&p);
        assert!(Arc::ptr_eq(&a, &reg.local(&p)));
        let changed = PolicyConfig { burst: 2, ..p };
        assert!(!Arc::ptr_eq(&a, &reg.local(&changed)));
    }
}
