//! The rate-limit response headers: `Retry-After` (RFC 9110 §10.2.3) and the
//! IETF draft `RateLimit-Policy` / `RateLimit` fields
//! (draft-ietf-httpapi-ratelimit-headers): structured-field lists with one
//! item per policy the request was checked against.
//!
//! ```text
//! RateLimit-Policy: "per_client";q=10;w=1
//! RateLimit: "per_client";r=0;t=1
//! ```
//! `q` is the bucket size (`burst`), `w` the seconds it takes to refill
//! (`burst / rate`, so `q/w` is the sustained rate), `r` the requests left
//! now and `t` the seconds until the bucket is full again.

use std::fmt::Write;
use std::time::Duration;

use http::HeaderValue;

use super::policy::PolicyConfig;
use super::rate::Decision;

/// Whole seconds, rounded up; at least `min`.
pub fn ceil_secs(d: Duration, min: u64) -> u64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    s.max(min)
}

/// The `Retry-After` value for a refused decision (whole seconds, at least 1).
pub fn retry_after(d: &Decision) -> HeaderValue {
    HeaderValue::from(ceil_secs(d.retry_after, 1))
}

/// The `RateLimit-Policy` value of a route's policies (built once per
/// config). Policy names are validated to be tokens (letters, digits, `_`,
/// `-`, `.`), so they need no escaping.
pub fn policy_value<'a>(
    policies: impl IntoIterator<Item = &'a PolicyConfig>,
) -> Option<HeaderValue> {
    let mut out = String::new();
    for p in policies {
        if !out.is_empty() {
            out.push_str(", ");
        }
        let _ = write!(
            out,
            "\"{}\";q={};w={}",
            p.name,
            p.burst,
            ceil_secs(p.window(), 1)
        );
    }
    to_value(out)
}

/// The `RateLimit` value for the policies a request was checked against,
/// in order.
pub fn state_value<'a>(
    checked: impl IntoIterator<Item = (&'a PolicyConfig, &'a Decision)>,
) -> Option<HeaderValue> {
    let mut out = String::with_capacity(48);
    for (p, d) in checked {
        if !out.is_empty() {
            out.push_str(", ");
        }
        let _ = write!(
            out,
            "\"{}\";r={};t={}",
            p.name,
            d.remaining,
            ceil_secs(d.reset, 0)
        );
    }
    to_value(out)
}

fn to_value(s: String) -> Option<HeaderValue> {
    if s.is_empty() {
        return None;
    }
    // No copy: the string's buffer becomes the header's.
    HeaderValue::from_maybe_shared(bytes::Bytes::from(s)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::policy::{RateKey, Store};

    #[test]
    fn formats_draft_fields() {
        let p = PolicyConfig {
            name: "per_client".into(),
            key: RateKey::ClientIp,
            count: 10,
            period: Duration::from_millis(100),
            burst: 10,
            store: Store::Local,
            max_keys: 10,
        };
        let q = PolicyConfig {
            name: "per_key".into(),
            burst: 50,
            period: Duration::from_secs(1),
            ..p.clone()
        };
        let refused = Decision::refused(Duration::from_millis(100), 10, p.period);
        let ok = Decision::allowed(49, 50, q.period);
        let policy = policy_value([&p, &q]).unwrap();
        let state = state_value([(&p, &refused), (&q, &ok)]).unwrap();
        assert_eq!(policy, "\"per_client\";q=10;w=1, \"per_key\";q=50;w=50");
        assert_eq!(state, "\"per_client\";r=0;t=1, \"per_key\";r=49;t=1");
        assert_eq!(retry_after(&refused), "1");
        assert_eq!(
            retry_after(&Decision::refused(Duration::from_millis(2500), 1, q.period)),
            "3"
        );
        assert!(state_value([]).is_none());
        assert!(policy_value([]).is_none());
    }
}
