//! The `Set-Cookie` field weir sends to pin a client (RFC 6265 §4.1).
//!
//! `NAME=VALUE; Path=/[; Domain=D][; Max-Age=N]; HttpOnly; SameSite=Lax[; Secure]`
//! — the attributes are formatted once per config; a response that pins
//! formats only the value.

use bytes::Bytes;
use http::HeaderValue;

use super::codec::{CookieKey, MAX_ENCODED};
use super::{SameSite, Secure, StickyConfig};

/// A `Set-Cookie` template for one group's sticky cookie.
#[derive(Debug)]
pub struct SetCookie {
    /// `NAME=`.
    prefix: Box<str>,
    /// Every attribute but `Secure`, each with its leading `"; "`.
    attrs: Box<str>,
    secure: Secure,
}

impl SetCookie {
    /// The template for `config`'s cookie name and attributes.
    pub fn new(config: &StickyConfig) -> Self {
        let mut attrs = format!("; Path={}", config.path);
        if let Some(d) = &config.domain {
            attrs.push_str("; Domain=");
            attrs.push_str(d);
        }
        if let Some(m) = config.max_age {
            attrs.push_str(&format!("; Max-Age={}", m.as_secs()));
        }
        if config.http_only {
            attrs.push_str("; HttpOnly");
        }
        attrs.push_str(match config.same_site {
            SameSite::Lax => "; SameSite=Lax",
            SameSite::Strict => "; SameSite=Strict",
            SameSite::None => "; SameSite=None",
        });
        SetCookie {
            prefix: format!("{}=", config.cookie).into(),
            attrs: attrs.into(),
            secure: config.secure,
        }
    }

    /// The field pinning server `id` as of `issued` (unix seconds); `tls`
    /// says whether the request came over TLS (for `Secure` in auto mode).
    /// `None` when the id cannot be encoded (validation prevents it).
    pub fn header(
        &self,
        key: &CookieKey,
        id: &[u8],
        issued: u64,
        tls: bool,
    ) -> Option<HeaderValue> {
        let mut s = String::with_capacity(self.prefix.len() + MAX_ENCODED + self.attrs.len() + 8);
        s.push_str(&self.prefix);
        if !key.encode_into(id, issued, &mut s) {
            return None;
        }
        s.push_str(&self.attrs);
        let secure = match self.secure {
            Secure::Auto => tls,
            Secure::Always => true,
            Secure::Never => false,
        };
        if secure {
            s.push_str("; Secure");
        }
        HeaderValue::from_maybe_shared(Bytes::from(s)).ok()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    fn config() -> StickyConfig {
        StickyConfig {
            cookie: Arc::from("weir_repo"),
            max_age: None,
            path: Arc::from("/"),
            domain: None,
            secure: Secure::Auto,
            same_site: SameSite::Lax,
            http_only: true,
            secret: None,
        }
    }

    fn value_and_attrs(h: &HeaderValue) -> (String, String) {
        let s = h.to_str().unwrap();
        let (pair, attrs) = s.split_once(';').unwrap();
        let (name, value) = pair.split_once('=').unwrap();
        assert_eq!(name, "weir_repo");
        (value.to_string(), attrs.to_string())
    }

    #[test]
    fn default_attributes_and_secure_only_over_tls() {
        let key = CookieKey::derive(b"0123456789abcdef", "weir_repo");
        let t = SetCookie::new(&config());
        let plain = t.header(&key, b"repo-1", 100, false).unwrap();
        let (value, attrs) = value_and_attrs(&plain);
        assert_eq!(attrs, " Path=/; HttpOnly; SameSite=Lax");
        assert_eq!(key.decode(value.as_bytes()).unwrap().id(), b"repo-1");
        let tls = t.header(&key, b"repo-1", 100, true).unwrap();
        assert_eq!(
            value_and_attrs(&tls).1,
            " Path=/; HttpOnly; SameSite=Lax; Secure"
        );
    }

    #[test]
    fn optional_attributes() {
        let key = CookieKey::derive(b"0123456789abcdef", "weir_repo");
        let mut c = config();
        c.max_age = Some(Duration::from_secs(3600));
        c.path = Arc::from("/app");
        c.domain = Some(Arc::from("example.com"));
        c.same_site = SameSite::Strict;
        c.http_only = false;
        c.secure = Secure::Always;
        let h = SetCookie::new(&c).header(&key, b"a", 1, false).unwrap();
        assert_eq!(
            value_and_attrs(&h).1,
            " Path=/app; Domain=example.com; Max-Age=3600; SameSite=Strict; Secure"
        );
        c.secure = Secure::Never;
        c.same_site = SameSite::None;
        let h = SetCookie::new(&c).header(&key, b"a", 1, true).unwrap();
        assert_eq!(
            value_and_attrs(&h).1,
            " Path=/app; Domain=example.com; Max-Age=3600; SameSite=None"
        );
        assert!(SetCookie::new(&c).header(&key, b"", 1, true).is_none());
    }
}
