//! Sticky sessions: signed affinity cookies with failover.
//!
//! A group with `sticky:` pins each client to one server with a cookie that
//! weir inserts (HAProxy's `cookie NAME insert`, nginx Plus' `sticky cookie`,
//! Envoy's stateful session cookie). Unlike theirs, the value is opaque and
//! authenticated ([`codec`]): the server's stable id, an issue time and a
//! truncated HMAC-SHA256 under the `affinity` secret, so a client cannot pick
//! its server, and every weir instance sharing the secret honors it.
//!
//! On each request of a sticky group ([`Sticky::session`]): the cookie is read
//! and verified, then removed from the request sent upstream. A valid,
//! unexpired cookie naming a server of the group makes that server the first
//! choice while it is usable (healthy, not excluded by a failed attempt);
//! otherwise the balancer picks. The response re-pins with `Set-Cookie`
//! ([`Session::finish`]) only when the server differs from the cookie's, the
//! cookie was absent or invalid, or less than half of `max_age` remains.
//! A bad cookie never causes an error status: it is ignored.
//!
//! Non-sticky groups pay nothing: `ServerGroup::sticky` is `None`.

pub mod codec;
pub mod cookie_header;
pub mod set_cookie;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderMap};

pub use codec::CookieKey;
use set_cookie::SetCookie;

/// Shortest affinity secret accepted, in bytes (128 bits).
pub const MIN_SECRET_LEN: usize = 16;
/// Length of the random secret made when the config has none, in bytes.
pub const RANDOM_SECRET_LEN: usize = 32;
/// Most cookies of the affinity name tried per request (a client may send
/// several, e.g. one per `Path`); bounds the HMAC work a request can cause.
const MAX_TRIES: usize = 4;

/// The key material of affinity cookies (`affinity.secret*`). Its `Debug`
/// output never shows the bytes.
#[derive(Clone)]
pub struct AffinitySecret(Arc<[u8]>);

impl AffinitySecret {
    /// A secret of `bytes`.
    ///
    /// # Errors
    /// When `bytes` is shorter than [`MIN_SECRET_LEN`]; the message says so.
    pub fn new(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < MIN_SECRET_LEN {
            return Err(format!(
                "the secret is {} bytes long; at least {MIN_SECRET_LEN} are required \
                 (e.g. the output of `openssl rand -base64 32`)",
                bytes.len()
            ));
        }
        Ok(AffinitySecret(Arc::from(bytes)))
    }

    /// The secret's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for AffinitySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AffinitySecret(<{} bytes redacted>)", self.0.len())
    }
}

/// The secret used when the config has no `affinity` section: random, made
/// once per process (so it survives config reloads, not restarts), with one
/// warning log line when first made.
///
/// # Panics
/// When the operating system's random generator fails (weir cannot run safely then).
pub fn process_secret() -> &'static AffinitySecret {
    static SECRET: OnceLock<AffinitySecret> = OnceLock::new();
    SECRET.get_or_init(|| {
        let mut bytes = [0u8; RANDOM_SECRET_LEN];
        aws_lc_rs::rand::fill(&mut bytes).expect("the system random generator works");
        tracing::warn!(
            "sticky cookies use a random secret made at start (no `affinity:` in the config): \
             they will not survive a restart and other weir instances will not honor them; \
             set affinity.secret_env, secret_file or secret"
        );
        AffinitySecret(Arc::from(&bytes[..]))
    })
}

/// The current time in unix seconds (0 before 1970).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The cookie's `SameSite` attribute (RFC 6265bis §4.1.2.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    /// `SameSite=Lax` (the default, as browsers assume today).
    Lax,
    /// `SameSite=Strict`.
    Strict,
    /// `SameSite=None` (always sent with `Secure`, which browsers require).
    None,
}

/// When the cookie gets the `Secure` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secure {
    /// When the request came over TLS (the default).
    Auto,
    /// Always (e.g. weir behind a TLS-terminating load balancer).
    Always,
    /// Never.
    Never,
}

/// A validated `groups.*.sticky` section.
#[derive(Debug, Clone)]
pub struct StickyConfig {
    /// Cookie name (an RFC 6265 token).
    pub cookie: Arc<str>,
    /// Lifetime (whole seconds): `Max-Age` and the age after which a cookie is
    /// ignored. `None`: a session cookie, valid until the browser drops it.
    pub max_age: Option<Duration>,
    /// `Path` attribute.
    pub path: Arc<str>,
    /// `Domain` attribute, if any.
    pub domain: Option<Arc<str>>,
    /// When to add `Secure`.
    pub secure: Secure,
    /// `SameSite` attribute.
    pub same_site: SameSite,
    /// Whether to add `HttpOnly`.
    pub http_only: bool,
    /// The `affinity` secret; `None` uses [`process_secret`].
    pub secret: Option<AffinitySecret>,
}

/// The sticky policy of one group snapshot: the cookie key, the server ids
/// and the `Set-Cookie` template. Built with the group; read-only after.
#[derive(Debug)]
pub struct Sticky {
    name: Arc<str>,
    key: CookieKey,
    max_age: Option<u64>,
    /// Server id → index in the group snapshot.
    index: HashMap<Box<[u8]>, usize>,
    /// Index → server id.
    ids: Vec<Arc<str>>,
    set_cookie: SetCookie,
}

impl Sticky {
    /// The policy of `config` over the group's servers, given by their
    /// `ids` in group order.
    pub fn new(config: &StickyConfig, ids: &[Arc<str>]) -> Self {
        let secret = config.secret.as_ref().unwrap_or_else(|| process_secret());
        Sticky {
            name: config.cookie.clone(),
            key: CookieKey::derive(secret.bytes(), &config.cookie),
            max_age: config.max_age.map(|d| d.as_secs()),
            index: ids
                .iter()
                .enumerate()
                .map(|(i, id)| (Box::from(id.as_bytes()), i))
                .collect(),
            ids: ids.to_vec(),
            set_cookie: SetCookie::new(config),
        }
    }

    /// The cookie name.
    pub fn cookie_name(&self) -> &str {
        &self.name
    }

    /// The cookie key (to mint or inspect values, e.g. in tests and tools).
    pub fn key(&self) -> &CookieKey {
        &self.key
    }

    /// The server index and issue time of a cookie value when it verifies, is
    /// not older than `max_age` at `now` (unix seconds) and names a server of
    /// this group. A cookie issued "in the future" (clock skew between
    /// instances) counts as fresh.
    pub fn verify(&self, value: &[u8], now: u64) -> Option<(usize, u64)> {
        let d = self.key.decode(value)?;
        if let Some(max) = self.max_age {
            if now.saturating_sub(d.issued) > max {
                return None;
            }
        }
        let i = *self.index.get(d.id())?;
        Some((i, d.issued))
    }

    /// Starts a request: reads the affinity cookie from `headers`, then
    /// removes it so the upstream never sees it. `now` is unix seconds.
    /// Allocates only when the cookie is present (to rebuild `Cookie`).
    pub fn session(&self, headers: &mut HeaderMap, now: u64) -> Session<'_> {
        let mut present = false;
        let mut pin = None;
        for value in cookie_header::values(headers, &self.name).take(MAX_TRIES) {
            present = true;
            pin = self.verify(value, now);
            if pin.is_some() {
                break;
            }
        }
        if present {
            cookie_header::remove(headers, &self.name);
        }
        Session {
            sticky: self,
            pin,
            now,
        }
    }
}

/// The affinity state of one request of a sticky group.
#[derive(Debug)]
pub struct Session<'a> {
    sticky: &'a Sticky,
    /// The valid cookie's server index and issue time.
    pin: Option<(usize, u64)>,
    now: u64,
}

impl Session<'_> {
    /// The server the valid cookie names, to try before the balancer.
    pub fn pinned(&self) -> Option<usize> {
        self.pin.map(|(i, _)| i)
    }

    /// The `Set-Cookie` field for a response served by server `served`, or
    /// `None` when the client's cookie already names it and is fresh (more
    /// than half of `max_age` left, or no `max_age`). `tls`: the request came
    /// over TLS.
    pub fn set_cookie(&self, served: usize, tls: bool) -> Option<http::HeaderValue> {
        let s = self.sticky;
        if let Some((pinned, issued)) = self.pin {
            let fresh = match s.max_age {
                None => true,
                Some(max) => self.now.saturating_sub(issued) <= max / 2,
            };
            if pinned == served && fresh {
                return None;
            }
        }
        let id = s.ids.get(served)?;
        s.set_cookie.header(&s.key, id.as_bytes(), self.now, tls)
    }

    /// Adds the `Set-Cookie` field, when one is due, to the response headers
    /// of a response served by server `served`.
    pub fn finish(&self, served: usize, tls: bool, headers: &mut HeaderMap) {
        if let Some(v) = self.set_cookie(served, tls) {
            headers.append(header::SET_COOKIE, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn sticky(max_age: Option<u64>) -> Sticky {
        let ids: Vec<Arc<str>> = ["a", "b", "c"].iter().map(|id| Arc::from(*id)).collect();
        Sticky::new(&test_config(max_age), &ids)
    }

    fn test_config(max_age: Option<u64>) -> StickyConfig {
        StickyConfig {
            cookie: Arc::from("s"),
            max_age: max_age.map(Duration::from_secs),
            path: Arc::from("/"),
            domain: None,
            secure: Secure::Auto,
            same_site: SameSite::Lax,
            http_only: true,
            secret: Some(AffinitySecret::new(b"0123456789abcdef").unwrap()),
        }
    }

    fn headers(cookie: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(cookie).unwrap());
        h
    }

    /// Log lines written while `f` runs on this thread.
    fn captured_logs(f: impl FnOnce()) -> String {
        use std::sync::Mutex;
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = buf.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn random_secret_is_made_once_with_one_warning() {
        // The only test of this binary that uses the process secret.
        let logs = captured_logs(|| {
            let c = StickyConfig {
                secret: None,
                ..test_config(None)
            };
            let one = Sticky::new(&c, &[]);
            let two = Sticky::new(&c, &[]);
            let v = one.key().encode("a", 1);
            assert!(
                two.key().decode(v.as_bytes()).is_some(),
                "same process secret"
            );
            assert_eq!(process_secret().bytes().len(), RANDOM_SECRET_LEN);
        });
        assert_eq!(logs.matches("WARN").count(), 1, "{logs}");
        assert!(logs.contains("will not survive a restart"), "{logs}");
    }

    #[test]
    fn secrets_shorter_than_16_bytes_are_refused() {
        assert!(AffinitySecret::new(b"0123456789abcde").is_err());
        let s = AffinitySecret::new(b"0123456789abcdef").unwrap();
        assert!(!format!("{s:?}").contains("0123"));
    }

    #[test]
    fn valid_cookie_pins_and_is_stripped() {
        let s = sticky(Some(3600));
        let v = s.key().encode("b", 1000);
        let mut h = headers(&format!("x=1; s={v}; y=2"));
        let session = s.session(&mut h, 1100);
        assert_eq!(session.pinned(), Some(1));
        assert_eq!(h[header::COOKIE], "x=1; y=2");
        // Same server, fresh: no Set-Cookie.
        assert!(session.set_cookie(1, false).is_none());
        // Another server (failover): a new cookie naming it.
        let new = session.set_cookie(2, false).unwrap();
        let value = new.to_str().unwrap().split(';').next().unwrap();
        let value = value.strip_prefix("s=").unwrap();
        assert_eq!(s.key().decode(value.as_bytes()).unwrap().id(), b"c");
    }

    #[test]
    fn refresh_when_less_than_half_of_max_age_remains() {
        let s = sticky(Some(3600));
        let v = s.key().encode("a", 1000);
        let at = |now| {
            s.session(&mut headers(&format!("s={v}")), now)
                .set_cookie(0, false)
        };
        assert!(at(1000 + 1800).is_none());
        assert!(at(1000 + 1801).is_some());
        // Expired: ignored, not pinned.
        let mut h = headers(&format!("s={v}"));
        assert_eq!(s.session(&mut h, 1000 + 3601).pinned(), None);
        assert!(h.get(header::COOKIE).is_none());
        // Issued in the future (clock skew): fresh.
        assert_eq!(
            s.session(&mut headers(&format!("s={v}")), 10).pinned(),
            Some(0)
        );
        // Session cookie: no expiry, no refresh.
        let s = sticky(None);
        let v = s.key().encode("a", 0);
        let session = s.session(&mut headers(&format!("s={v}")), u64::MAX / 2);
        assert_eq!(session.pinned(), Some(0));
        assert!(session.set_cookie(0, false).is_none());
    }

    #[test]
    fn bad_cookies_are_ignored_and_replaced() {
        let s = sticky(None);
        let good = s.key().encode("a", 5);
        let unknown = s.key().encode("zz", 5);
        let mut tampered = good.clone().into_bytes();
        tampered[10] = if tampered[10] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        for bad in [unknown.as_str(), tampered.as_str(), "garbage", ""] {
            let mut h = headers(&format!("s={bad}"));
            let session = s.session(&mut h, 10);
            assert_eq!(session.pinned(), None, "{bad}");
            assert!(session.set_cookie(2, false).is_some());
        }
        // A bad cookie before a good one: the good one is used.
        let mut h = headers(&format!("s=garbage; s={good}"));
        assert_eq!(s.session(&mut h, 10).pinned(), Some(0));
        // No cookie: no pin, a cookie is set, headers untouched.
        let mut h = headers("other=1");
        let session = s.session(&mut h, 10);
        assert_eq!(session.pinned(), None);
        assert!(session
            .set_cookie(0, true)
            .unwrap()
            .to_str()
            .unwrap()
            .ends_with("; Secure"));
        assert_eq!(h[header::COOKIE], "other=1");
    }
}
