//! The traffic-protection keys (issue 15): `rate_limits`, `redis`,
//! `routes[].rate_limit`, `routes[].allow`, `routes[].deny`,
//! `routes[].max_request_body`, and the listener connection caps; raw
//! structs as written, and their validation into [`LimitsConfig`].

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::validate::Errors;
use super::RawRoute;
use crate::limits::policy::{DEFAULT_MAX_KEYS, DEFAULT_REDIS_TIMEOUT};
use crate::limits::{
    Cidr, IpRules, LimitsConfig, OnError, PolicyConfig, RateKey, RedisConfig, RouteProtection,
    Store,
};

/// One rate-limit policy (`rate_limits.NAME`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    /// `client_ip | header:NAME | cookie:NAME | query:NAME | claim:NAME`.
    pub key: Spanned<String>,
    /// Sustained rate: `N/s`, `N/m` or `N/h`.
    pub rate: Spanned<String>,
    /// Bucket size (default: the count in `rate`).
    pub burst: Option<Spanned<u32>>,
    /// `local` (default) or `redis`.
    pub store: Option<Spanned<String>>,
    /// `store: local` only: most keys kept (default 100000); past it the
    /// coldest are evicted (and counted).
    pub max_keys: Option<Spanned<usize>>,
}

/// The `redis` section (needed by `store: redis`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    /// `redis://[user:password@]host:port[/db]`.
    pub url: Spanned<String>,
    /// `allow` (default: fail open, counted and warned) or `deny` (503).
    pub on_error: Option<Spanned<String>>,
    /// Longest wait for Redis per request, connecting included (default `100ms`).
    pub timeout: Option<Spanned<String>>,
}

/// `routes[].rate_limit`: one policy name or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawNames {
    /// A single policy.
    One(String),
    /// Several, checked in order.
    List(Vec<String>),
}

pub use super::units::RawByteSize;

/// Longest policy name (it appears in headers, metrics and Redis keys).
const MAX_POLICY_NAME: usize = 64;

/// Validates the policies, the `redis` section and each route's protection keys.
pub(super) fn build(
    rate_limits: &BTreeMap<String, Spanned<RawRateLimit>>,
    redis: Option<&Spanned<RawRedis>>,
    routes: &[RawRoute],
    has_jwt: bool,
    errs: &mut Errors,
) -> LimitsConfig {
    let mut policies = Vec::new();
    let mut index = HashMap::new();
    for (name, raw) in rate_limits {
        let key = format!("rate_limits.{name}");
        if let Some(p) = policy(name, raw, &key, has_jwt, errs) {
            index.insert(name.as_str(), policies.len());
            policies.push(p);
        }
    }
    let redis = redis.and_then(|r| redis_section(r, errs));
    if redis.is_none() {
        for (name, raw) in rate_limits {
            if let Some(s) = raw.value.store.as_ref().filter(|s| s.value == "redis") {
                errs.at(
                    Some(&s.referenced),
                    format!("rate_limits.{name}.store"),
                    "store: redis needs a top-level redis section with its url",
                );
            }
        }
    }
    let routes = routes
        .iter()
        .enumerate()
        .map(|(i, r)| route(r, &format!("routes[{i}]"), &index, rate_limits, errs))
        .collect();
    LimitsConfig {
        policies,
        redis,
        routes,
    }
}

fn policy(
    name: &str,
    raw: &Spanned<RawRateLimit>,
    key: &str,
    has_jwt: bool,
    errs: &mut Errors,
) -> Option<PolicyConfig> {
    let r = &raw.value;
    let before = errs.list.len();
    check_name(name, raw, key, errs);
    let rate_key = rate_key(r, key, has_jwt, errs);
    let rate = match crate::limits::parse_rate(&r.rate.value) {
        Ok(v) => Some(v),
        Err(m) => {
            errs.at(Some(&r.rate.referenced), format!("{key}.rate"), m);
            None
        }
    };
    let burst = match &r.burst {
        Some(b) if b.value == 0 => {
            errs.at(
                Some(&b.referenced),
                format!("{key}.burst"),
                "must be at least 1",
            );
            None
        }
        Some(b) => Some(b.value),
        None => rate.map(|(n, _)| n),
    };
    let (store, max_keys) = store(r, key, errs);
    if errs.list.len() > before {
        return None;
    }
    let (count, period) = rate?;
    Some(PolicyConfig {
        name: name.into(),
        key: rate_key?,
        count,
        period,
        burst: burst?,
        store,
        max_keys,
    })
}

/// Policy names appear in headers, metrics and Redis keys.
fn check_name(name: &str, raw: &Spanned<RawRateLimit>, key: &str, errs: &mut Errors) {
    if name.is_empty()
        || name.len() > MAX_POLICY_NAME
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
    {
        errs.at(
            Some(&raw.referenced),
            key,
            format!(
                "policy names are 1 to {MAX_POLICY_NAME} letters, digits, '_', '-' or '.' \
                 (they appear in RateLimit headers and Redis keys)"
            ),
        );
    }
}

/// `rate_limits.NAME.key`; `claim:` keys need the `jwt` section.
fn rate_key(r: &RawRateLimit, key: &str, has_jwt: bool, errs: &mut Errors) -> Option<RateKey> {
    match RateKey::parse(&r.key.value) {
        Ok(k) => {
            if k.needs_claims() && !has_jwt {
                errs.at(
                    Some(&r.key.referenced),
                    format!("{key}.key"),
                    "claim: keys need a top-level jwt section with the verification keys",
                );
            }
            Some(k)
        }
        Err(m) => {
            errs.at(Some(&r.key.referenced), format!("{key}.key"), m);
            None
        }
    }
}

/// `store` and `max_keys` (local stores only).
fn store(r: &RawRateLimit, key: &str, errs: &mut Errors) -> (Store, usize) {
    let store = match r.store.as_ref().map(|s| (s.value.as_str(), s)) {
        None | Some(("local", _)) => Store::Local,
        Some(("redis", _)) => Store::Redis,
        Some((other, s)) => {
            errs.at(
                Some(&s.referenced),
                format!("{key}.store"),
                format!("unknown store {other:?}; expected local or redis"),
            );
            Store::Local
        }
    };
    let max_keys = match &r.max_keys {
        Some(m) if store == Store::Redis => {
            errs.at(
                Some(&m.referenced),
                format!("{key}.max_keys"),
                "only used with store: local (Redis expires idle keys by itself)",
            );
            DEFAULT_MAX_KEYS
        }
        Some(m) if m.value == 0 => {
            errs.at(
                Some(&m.referenced),
                format!("{key}.max_keys"),
                "must be at least 1",
            );
            DEFAULT_MAX_KEYS
        }
        Some(m) => m.value,
        None => DEFAULT_MAX_KEYS,
    };
    (store, max_keys)
}

fn redis_section(r: &Spanned<RawRedis>, errs: &mut Errors) -> Option<RedisConfig> {
    let v = &r.value;
    let before = errs.list.len();
    if let Err(m) = crate::limits::redis_store::check_url(&v.url.value) {
        errs.at(
            Some(&v.url.referenced),
            "redis.url",
            format!(
                "{:?}: {m}",
                crate::limits::redis_store::redact(&v.url.value)
            ),
        );
    }
    let on_error = match v.on_error.as_ref().map(|s| (s.value.as_str(), s)) {
        None | Some(("allow", _)) => OnError::Allow,
        Some(("deny", _)) => OnError::Deny,
        Some((other, s)) => {
            errs.at(
                Some(&s.referenced),
                "redis.on_error",
                format!("{other:?}: expected allow or deny"),
            );
            OnError::Allow
        }
    };
    let timeout = match &v.timeout {
        None => DEFAULT_REDIS_TIMEOUT,
        Some(t) => match super::units::parse_duration(&t.value) {
            Ok(d) if !d.is_zero() => d,
            _ => {
                errs.at(
                    Some(&t.referenced),
                    "redis.timeout",
                    format!("{:?} is not a duration above 0 such as 100ms", t.value),
                );
                DEFAULT_REDIS_TIMEOUT
            }
        },
    };
    (errs.list.len() == before).then(|| RedisConfig {
        url: v.url.value.clone(),
        on_error,
        timeout,
    })
}

fn route(
    r: &RawRoute,
    key: &str,
    index: &HashMap<&str, usize>,
    declared: &BTreeMap<String, Spanned<RawRateLimit>>,
    errs: &mut Errors,
) -> RouteProtection {
    let mut out = RouteProtection::default();
    if let Some(names) = &r.rate_limit {
        let list: Vec<&String> = match &names.value {
            RawNames::One(n) => vec![n],
            RawNames::List(l) => l.iter().collect(),
        };
        for (j, n) in list.iter().enumerate() {
            let nkey = match &names.value {
                RawNames::One(_) => format!("{key}.rate_limit"),
                RawNames::List(_) => format!("{key}.rate_limit[{j}]"),
            };
            match index.get(n.as_str()) {
                Some(&i) if out.policies.contains(&i) => errs.at(
                    Some(&names.referenced),
                    nkey,
                    format!("policy {n:?} is listed twice"),
                ),
                Some(&i) => out.policies.push(i),
                // Declared but invalid: its own error is reported already.
                None if declared.contains_key(n.as_str()) => {}
                None => errs.at(
                    Some(&names.referenced),
                    nkey,
                    format!("no policy named {n:?} under rate_limits"),
                ),
            }
        }
    }
    let allow = r
        .allow
        .as_ref()
        .map(|l| cidrs(l, &format!("{key}.allow"), errs));
    let deny = r
        .deny
        .as_ref()
        .map(|l| cidrs(l, &format!("{key}.deny"), errs));
    if allow.is_some() || deny.is_some() {
        out.ip_rules = Some(IpRules {
            allow_set: allow.is_some(),
            allow: allow.unwrap_or_default(),
            deny: deny.unwrap_or_default(),
        });
    }
    if let Some(m) = &r.max_request_body {
        match m.value.bytes() {
            Ok(n) => out.max_request_body = Some(n),
            Err(e) => errs.at(Some(&m.referenced), format!("{key}.max_request_body"), e),
        }
    }
    out
}

fn cidrs(list: &Spanned<Vec<String>>, key: &str, errs: &mut Errors) -> Vec<Cidr> {
    let mut out = Vec::new();
    for (j, s) in list.value.iter().enumerate() {
        match Cidr::parse(s) {
            Ok(c) => out.push(c),
            Err(m) => errs.at(Some(&list.referenced), format!("{key}[{j}]"), m),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;

    fn load(top: &str, route: &str) -> Result<crate::Config, String> {
        let yaml = format!(
            "listeners:\n  - address: 127.0.0.1:0\n{top}routes:\n  - group: g\n{route}groups:\n  g:\n    servers:\n      - address: 127.0.0.1:9001\n"
        );
        crate::config::load_str(&yaml, Path::new("t.yaml")).map_err(|e| e.to_string())
    }

    #[test]
    fn policies_and_route_keys() {
        let c = load(
            "rate_limits:\n  per_client:\n    key: client_ip\n    rate: 10/s\n  per_key:\n    key: header:x-api-key\n    rate: 600/m\n    burst: 5\n    max_keys: 50\n",
            "    rate_limit: [per_client, per_key]\n    allow: [127.0.0.0/8, \"::1\"]\n    deny: [127.0.0.3]\n    max_request_body: 10MiB\n",
        )
        .unwrap();
        let l = &c.limits;
        assert_eq!(l.policies.len(), 2);
        let pc = &l.policies[0];
        assert_eq!(
            (&*pc.name, pc.burst, pc.period),
            ("per_client", 10, Duration::from_millis(100))
        );
        assert_eq!(pc.max_keys, DEFAULT_MAX_KEYS);
        let pk = &l.policies[1];
        assert_eq!(
            (pk.burst, pk.period, pk.max_keys),
            (5, Duration::from_millis(100), 50)
        );
        let r = &l.routes[0];
        assert_eq!(r.policies, vec![0, 1]);
        assert_eq!(r.max_request_body, Some(10 << 20));
        let rules = r.ip_rules.as_ref().unwrap();
        assert!(rules.permits("127.0.0.2".parse().unwrap()));
        assert!(!rules.permits("127.0.0.3".parse().unwrap()));
        assert!(!rules.permits("10.0.0.1".parse().unwrap()));

        let c = load(
            "rate_limits:\n  one:\n    key: client_ip\n    rate: 1/h\n",
            "    rate_limit: one\n    max_request_body: 1024\n",
        )
        .unwrap();
        assert_eq!(c.limits.routes[0].policies, vec![0]);
        assert_eq!(c.limits.routes[0].max_request_body, Some(1024));
    }

    #[test]
    fn errors_name_the_key() {
        let e = load(
            "rate_limits:\n  p:\n    key: ip\n    rate: 10/d\n    burst: 0\n",
            "",
        )
        .unwrap_err();
        assert!(e.contains("t.yaml:5:10: rate_limits.p.key:"), "{e}");
        assert!(e.contains("t.yaml:6:11: rate_limits.p.rate:"), "{e}");
        assert!(e.contains("rate_limits.p.burst: must be at least 1"), "{e}");
        let e = load("", "    rate_limit: nope\n").unwrap_err();
        assert!(
            e.contains("routes[0].rate_limit: no policy named \"nope\""),
            "{e}"
        );
        let e = load(
            "rate_limits:\n  p:\n    key: client_ip\n    rate: 1/s\n    store: redis\n",
            "",
        )
        .unwrap_err();
        assert!(
            e.contains("rate_limits.p.store: store: redis needs a top-level redis section"),
            "{e}"
        );
        let e = load(
            "rate_limits:\n  p:\n    key: claim:sub\n    rate: 1/s\n",
            "",
        )
        .unwrap_err();
        assert!(
            e.contains("claim: keys need a top-level jwt section"),
            "{e}"
        );
        let e = load("redis:\n  url: http://x\n  on_error: maybe\n", "").unwrap_err();
        assert!(e.contains("redis.url:"), "{e}");
        assert!(
            e.contains("redis.on_error: \"maybe\": expected allow or deny"),
            "{e}"
        );
        let e = load(
            "",
            "    allow: [10.0.0.1/8]\n    deny: [bogus]\n    max_request_body: 10XB\n",
        )
        .unwrap_err();
        assert!(
            e.contains("routes[0].allow[0]: \"10.0.0.1/8\" has bits set"),
            "{e}"
        );
        assert!(
            e.contains("routes[0].deny[0]: \"bogus\" is not an IP address"),
            "{e}"
        );
        assert!(e.contains("routes[0].max_request_body:"), "{e}");
        let e = load(
            "rate_limits:\n  p:\n    key: client_ip\n    rate: 1/s\n    colour: red\n",
            "",
        )
        .unwrap_err();
        assert!(e.contains("unknown field `colour`"), "{e}");
        let e = load("listeners_extra: 1\n", "").unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
    }

    #[test]
    fn redis_section_defaults() {
        let c = load("rate_limits:\n  p:\n    key: client_ip\n    rate: 1/s\n    store: redis\nredis:\n  url: redis://127.0.0.1:6379/0\n", "    rate_limit: p\n").unwrap();
        let r = c.limits.redis.as_ref().unwrap();
        assert_eq!(r.on_error, OnError::Allow);
        assert_eq!(r.timeout, DEFAULT_REDIS_TIMEOUT);
        let c = load(
            "redis:\n  url: redis://127.0.0.1:6379\n  on_error: deny\n  timeout: 20ms\n",
            "",
        )
        .unwrap();
        let r = c.limits.redis.as_ref().unwrap();
        assert_eq!(
            (r.on_error, r.timeout),
            (OnError::Deny, Duration::from_millis(20))
        );
    }

    #[test]
    fn listener_caps() {
        let yaml = "listeners:\n  - address: 127.0.0.1:0\n    max_connections: 100\n    max_connections_per_ip: 4\nroutes:\n  - group: g\ngroups:\n  g:\n    servers:\n      - address: 127.0.0.1:9001\n";
        let c = crate::config::load_str(yaml, Path::new("t.yaml")).unwrap();
        assert_eq!(c.listeners[0].max_connections, Some(100));
        assert_eq!(c.listeners[0].max_connections_per_ip, Some(4));
        let bad = yaml.replace("max_connections: 100", "max_connections: 0");
        let e = crate::config::load_str(&bad, Path::new("t.yaml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("listeners[0].max_connections: must be at least 1"),
            "{e}"
        );
    }
}
