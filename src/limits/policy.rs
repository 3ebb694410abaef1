//! The validated `rate_limits` policies and `redis` section, and the request
//! key a policy counts by.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Uri};
use serde_json::{Map, Value};

use crate::balancer::hash_key::HashKey;
use crate::balancer::PickContext;

/// Default `redis.timeout`: the longest wait for one rate-limit script.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(100);
/// Default `rate_limits.*.max_keys`: keys kept per local policy.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// One named policy (`rate_limits.NAME`): a token bucket per key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyConfig {
    /// The policy's name (metrics, headers, Redis keys).
    pub name: Arc<str>,
    /// What the bucket is keyed by.
    pub key: RateKey,
    /// The count written in `rate` (`100` of `100/s`).
    pub count: u32,
    /// The time one token takes to come back (`10ms` for `100/s`).
    pub period: Duration,
    /// Bucket size: requests allowed at once.
    pub burst: u32,
    /// Where the buckets live.
    pub store: Store,
    /// Local store: most keys kept; the least recently useful are evicted past it.
    pub max_keys: usize,
}

impl PolicyConfig {
    /// The time an empty bucket takes to fill up again (`burst × period`).
    pub fn window(&self) -> Duration {
        self.period * self.burst
    }
}

/// Where a policy's buckets live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// In this process (`store: local`, the default).
    Local,
    /// In Redis, shared by every instance on it (`store: redis`).
    Redis,
}

/// What happens to a request when Redis cannot answer in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Let it through (counted, warned at most once a second).
    Allow,
    /// Answer 503.
    Deny,
}

/// The validated `redis` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://host:port/db` (or `rediss://`, `redis+unix://`).
    pub url: String,
    /// When Redis is unreachable or slow.
    pub on_error: OnError,
    /// Longest wait for one answer (connecting included).
    pub timeout: Duration,
}

/// The key a policy counts requests by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateKey {
    /// The client address (the socket's, or the PROXY protocol's).
    ClientIp,
    /// A header, cookie or query parameter (`header:NAME`, `cookie:NAME`, `query:NAME`).
    Request(HashKey),
    /// A claim of the verified bearer token (`claim:NAME`; dots walk nested objects).
    Claim(Box<str>),
}

impl RateKey {
    /// Parses `client_ip`, `header:NAME`, `cookie:NAME`, `query:NAME` or `claim:NAME`.
    ///
    /// # Errors
    /// A message naming what is wrong.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s == "client_ip" {
            return Ok(RateKey::ClientIp);
        }
        if let Some(name) = s.strip_prefix("claim:") {
            if name.is_empty() || name.starts_with('.') || name.ends_with('.') {
                return Err(format!("{s:?}: not a valid claim name"));
            }
            return Ok(RateKey::Claim(name.into()));
        }
        HashKey::parse(s).map(RateKey::Request).map_err(|e| {
            if e.contains("unknown key source") || !s.contains(':') {
                format!(
                    "{s:?}: expected client_ip, header:NAME, cookie:NAME, query:NAME or claim:NAME"
                )
            } else {
                e
            }
        })
    }

    /// True for `claim:NAME` (the route needs the verified token).
    pub fn needs_claims(&self) -> bool {
        matches!(self, RateKey::Claim(_))
    }

    /// The key's value in a request; [`KeyValue::Absent`] when the request
    /// does not carry it (all such requests share one bucket).
    pub fn extract<'a>(&self, req: &KeyInput<'a>) -> KeyValue<'a> {
        match self {
            RateKey::ClientIp => KeyValue::Ip(req.client_ip),
            RateKey::Request(k) => {
                let ctx = PickContext {
                    client_ip: req.client_ip,
                    uri: req.uri,
                    headers: req.headers,
                };
                k.extract(&ctx).map_or(KeyValue::Absent, KeyValue::Bytes)
            }
            RateKey::Claim(name) => {
                match req
                    .claims
                    .and_then(|c| crate::route::claims::lookup(c, name))
                {
                    None | Some(Value::Null) => KeyValue::Absent,
                    Some(Value::String(s)) if s.is_empty() => KeyValue::Absent,
                    Some(Value::String(s)) => KeyValue::Bytes(s.as_bytes()),
                    Some(other) => KeyValue::Owned(other.to_string()),
                }
            }
        }
    }
}

impl std::fmt::Display for RateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RateKey::ClientIp => f.write_str("client_ip"),
            RateKey::Request(k) => write!(f, "{k}"),
            RateKey::Claim(n) => write!(f, "claim:{n}"),
        }
    }
}

/// What a key is read from.
#[derive(Debug, Clone, Copy)]
pub struct KeyInput<'a> {
    /// The client address.
    pub client_ip: IpAddr,
    /// The request URI (for `query:`).
    pub uri: &'a Uri,
    /// The request headers (for `header:` and `cookie:`).
    pub headers: &'a HeaderMap,
    /// The verified token's claims, when the request carries a valid token.
    pub claims: Option<&'a Map<String, Value>>,
}

/// A key's value in one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyValue<'a> {
    /// The request does not carry the key: the policy's shared "absent" bucket.
    Absent,
    /// A client address.
    Ip(IpAddr),
    /// Bytes borrowed from the request.
    Bytes(&'a [u8]),
    /// A non-string claim as JSON text.
    Owned(String),
}

impl KeyValue<'_> {
    /// The bytes that name the bucket: a tag byte (so no value can collide
    /// with "absent" or an address) followed by the value.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            KeyValue::Absent => out.push(b'-'),
            KeyValue::Ip(ip) => {
                out.push(b'@');
                out.extend_from_slice(ip.to_canonical().to_string().as_bytes());
            }
            KeyValue::Bytes(b) => {
                out.push(b'=');
                out.extend_from_slice(b);
            }
            KeyValue::Owned(s) => {
                out.push(b'=');
                out.extend_from_slice(s.as_bytes());
            }
        }
    }

    /// Feeds the bucket name to a hasher without allocating.
    pub fn hash_into(&self, h: &mut impl std::hash::Hasher) {
        match self {
            KeyValue::Absent => h.write_u8(b'-'),
            KeyValue::Ip(ip) => {
                h.write_u8(b'@');
                match ip.to_canonical() {
                    IpAddr::V4(v4) => h.write(&v4.octets()),
                    IpAddr::V6(v6) => h.write(&v6.octets()),
                }
            }
            KeyValue::Bytes(b) => {
                h.write_u8(b'=');
                h.write(b);
            }
            KeyValue::Owned(s) => {
                h.write_u8(b'=');
                h.write(s.as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn parses_keys() {
        assert_eq!(RateKey::parse("client_ip").unwrap(), RateKey::ClientIp);
        assert_eq!(
            RateKey::parse("claim:sub").unwrap(),
            RateKey::Claim("sub".into())
        );
        assert!(matches!(
            RateKey::parse("header:x-api-key").unwrap(),
            RateKey::Request(HashKey::Header(_))
        ));
        for bad in ["ip", "claim:", "claim:.a", "body:x", "header:bad name", ""] {
            assert!(RateKey::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            RateKey::parse("cookie:sid").unwrap().to_string(),
            "cookie:sid"
        );
    }

    #[test]
    fn extracts_values() {
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", HeaderValue::from_static("k1"));
        let uri: Uri = "/a?user=bob".parse().unwrap();
        let claims: Map<String, Value> =
            serde_json::from_str(r#"{"sub":"alice","tier":3,"empty":""}"#).unwrap();
        let input = KeyInput {
            client_ip: "127.0.0.2".parse().unwrap(),
            uri: &uri,
            headers: &headers,
            claims: Some(&claims),
        };
        let get = |k: &str| RateKey::parse(k).unwrap().extract(&input);
        assert_eq!(get("header:x-api-key"), KeyValue::Bytes(b"k1"));
        assert_eq!(get("header:x-other"), KeyValue::Absent);
        assert_eq!(get("query:user"), KeyValue::Bytes(b"bob"));
        assert_eq!(get("claim:sub"), KeyValue::Bytes(b"alice"));
        assert_eq!(get("claim:tier"), KeyValue::Owned("3".into()));
        assert_eq!(get("claim:empty"), KeyValue::Absent);
        assert_eq!(get("claim:none"), KeyValue::Absent);
        assert_eq!(get("client_ip"), KeyValue::Ip("127.0.0.2".parse().unwrap()));
        let mut out = Vec::new();
        KeyValue::Ip("::ffff:10.0.0.1".parse().unwrap()).write_to(&mut out);
        assert_eq!(out, b"@10.0.0.1");
    }
}
