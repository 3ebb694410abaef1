//! `store: redis`: buckets shared by every weir instance on one Redis.
//!
//! One Lua script per request checks every Redis policy of the route in one
//! round trip (atomic: Redis runs a script alone), with the same GCRA as the
//! local store. Time is Redis's own clock (`TIME`), so instances with skewed
//! clocks still agree. Each key expires once its bucket would be full again,
//! so Redis holds only keys active within the last `burst / rate`.
//!
//! The client is the `redis` crate's `ConnectionManager`: one multiplexed
//! connection (concurrent requests are pipelined on it) that reconnects by
//! itself after an I/O error. Every call is bounded by `redis.timeout`; a
//! failure is handled per `redis.on_error` by the caller.

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{Client, Script};

use super::policy::{PolicyConfig, RedisConfig};
use super::rate::Decision;

/// The script. KEYS: one bucket per policy. ARGV[1]: a fixed "now" in
/// microseconds (tests) or empty (Redis's clock); then per key its token
/// period in microseconds and its burst. Checks the keys in order and stops
/// at the first that refuses; returns four integers per key checked:
/// allowed (1/0), remaining, retry-after µs, reset µs.
pub const GCRA_LUA: &str = r"
local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local out = {}
for i, key in ipairs(KEYS) do
  local period = tonumber(ARGV[i * 2])
  local burst = tonumber(ARGV[i * 2 + 1])
  local tau = period * (burst - 1)
  local tat = tonumber(redis.call('GET', key))
  if not tat or tat < now then tat = now end
  local earliest = tat - tau
  if now < earliest then
    out[#out + 1] = 0
    out[#out + 1] = 0
    out[#out + 1] = earliest - now
    out[#out + 1] = tat - now
    return out
  end
  local new_tat = tat + period
  local ttl_ms = math.ceil((new_tat - now) / 1000)
  if ttl_ms < 1 then ttl_ms = 1 end
  redis.call('SET', key, string.format('%.0f', new_tat), 'PX', ttl_ms)
  local remaining = math.floor((now + tau + period - new_tat) / period)
  if remaining < 0 then remaining = 0 end
  out[#out + 1] = 1
  out[#out + 1] = remaining
  out[#out + 1] = 0
  out[#out + 1] = new_tat - now
end
return out
";

/// Longest key value used as is in a Redis key; longer ones are hashed.
const MAX_RAW_KEY: usize = 200;

/// Why Redis gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum RedisStoreError {
    /// No answer within `redis.timeout`.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// The client or the server reported an error.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The script answered something else than it should.
    #[error("redis: unexpected script reply")]
    Reply,
}

/// The shared store: a reconnecting Redis client and the script.
pub struct RedisStore {
    config: RedisConfig,
    conn: ConnectionManager,
    script: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &redact(&self.config.url))
            .finish()
    }
}

/// The URL without its password, for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

/// Checks that `url` is a Redis URL the client accepts.
///
/// # Errors
/// The client's message.
pub fn check_url(url: &str) -> Result<(), String> {
    Client::open(url).map(|_| ()).map_err(|e| e.to_string())
}

impl RedisStore {
    /// A store for `config`. Connects lazily (the first request) and
    /// reconnects by itself; needs a tokio runtime.
    ///
    /// # Errors
    /// When the URL is not accepted.
    pub fn new(config: &RedisConfig) -> Result<Self, RedisStoreError> {
        let client = Client::open(config.url.as_str())?;
        let manager = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, manager)?;
        Ok(RedisStore {
            config: config.clone(),
            conn,
            script: Script::new(GCRA_LUA),
        })
    }

    /// The section this store was built from.
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// The Redis key of `policy`'s bucket named `value` (the tagged bytes of
    /// [`super::policy::KeyValue::write_to`]).
    pub fn key(policy: &PolicyConfig, value: &[u8]) -> Vec<u8> {
        let mut key = Vec::with_capacity(16 + policy.name.len() + value.len().min(MAX_RAW_KEY));
        key.extend_from_slice(b"weir:rl:");
        key.extend_from_slice(policy.name.as_bytes());
        key.push(b':');
        if value.len() <= MAX_RAW_KEY {
            key.extend_from_slice(value);
        } else {
            let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, value);
            key.push(b'#');
            for b in d.as_ref() {
                key.extend_from_slice(format!("{b:02x}").as_bytes());
            }
        }
        key
    }

    /// Checks one request against `buckets` (policy and Redis key) in one
    /// script call, within `redis.timeout`. `now_us` fixes the time (tests);
    /// `None` uses Redis's clock. Returns one decision per bucket checked:
    /// all of them, or up to and including the first refusal.
    ///
    /// # Errors
    /// Timeout, connection or server errors.
    pub async fn check(
        &self,
        buckets: &[(&PolicyConfig, Vec<u8>)],
        now_us: Option<u64>,
    ) -> Result<Vec<Decision>, RedisStoreError> {
        let mut inv = self.script.prepare_invoke();
        inv.arg(now_us.map_or(String::new(), |n| n.to_string()));
        for (p, key) in buckets {
            inv.key(key.as_slice());
            inv.arg(
                u64::try_from(p.period.as_micros())
                    .unwrap_or(u64::MAX)
                    .max(1),
            );
            inv.arg(p.burst);
        }
        let mut conn = self.conn.clone();
        let reply: Vec<i64> =
            match tokio::time::timeout(self.config.timeout, inv.invoke_async(&mut conn)).await {
                Ok(r) => r?,
                Err(_) => return Err(RedisStoreError::Timeout(self.config.timeout)),
            };
        if !reply.len().is_multiple_of(4) || reply.len() / 4 > buckets.len() || reply.is_empty() {
            return Err(RedisStoreError::Reply);
        }
        let us = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
        Ok(reply
            .chunks(4)
            .map(|r| {
                if r[0] == 1 {
                    Decision {
                        allowed: true,
                        remaining: u32::try_from(r[1]).unwrap_or(0),
                        retry_after: Duration::ZERO,
                        reset: us(r[3]),
                    }
                } else {
                    Decision {
                        allowed: false,
                        remaining: 0,
                        retry_after: us(r[2]),
                        reset: us(r[3]),
                    }
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::policy::{RateKey, Store};

    #[test]
    fn keys_are_bounded_and_redacted() {
        let p = PolicyConfig {
            name: "per_key".into(),
            key: RateKey::ClientIp,
            count: 1,
            period: Duration::from_secs(1),
            burst: 1,
            store: Store::Redis,
            max_keys: 1,
        };
        assert_eq!(RedisStore::key(&p, b"=abc"), b"weir:rl:per_key:=abc");
        let long = RedisStore::key(&p, &[b'x'; 1000]);
        assert_eq!(long.len(), "weir:rl:per_key:#".len() + 64);
        assert_eq!(
            redact("redis://user:secret@10.0.0.1:6379/0"),
            "redis://…@10.0.0.1:6379/0"
        );
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert!(check_url("redis://127.0.0.1:6379/0").is_ok());
        assert!(check_url("http://x").is_err());
    }
}
