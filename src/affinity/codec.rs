//! The affinity cookie value: opaque to the client, authenticated by weir.
//!
//! Bytes before encoding (all integers big-endian):
//!
//! ```text
//! [0]            version, 1
//! [1]            n = length of the server id, 1..=255
//! [2 .. 2+n]     the server's stable id (`groups.*.servers[].id`), UTF-8
//! [2+n .. 10+n]  issue time, unix seconds (u64)
//! [10+n .. 26+n] HMAC-SHA256(K, bytes 0 .. 10+n), first 16 bytes (128 bits)
//! ```
//!
//! The whole is base64url without padding (RFC 4648 §5), so it is a valid
//! RFC 6265 cookie-value. `K = HMAC-SHA256(secret, "weir affinity cookie v1"
//! || 0x00 || cookie name)`: a key per cookie name, so a cookie minted for one
//! group's cookie name is not valid under another name. The tag is truncated
//! to 128 bits as RFC 2104 §5 allows (at least half the hash length) and
//! compared in constant time (`aws_lc_rs::constant_time`, `CRYPTO_memcmp`).
//!
//! Django's `signing` and Rails' `MessageVerifier` sign cookies the same way
//! (payload, timestamp, HMAC); Envoy's stateful-session cookie, by contrast,
//! carries the upstream address in plain base64.

use aws_lc_rs::{constant_time, hmac};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// The format version byte this weir writes and accepts.
pub const VERSION: u8 = 1;
/// Length of the truncated HMAC-SHA256 tag, in bytes (128 bits).
pub const TAG_LEN: usize = 16;
/// Longest server id a cookie can carry, in bytes.
pub const MAX_ID_LEN: usize = 255;
/// Fixed bytes around the id: version, id length, issue time, tag.
const OVERHEAD: usize = 2 + 8 + TAG_LEN;
/// Longest decoded value, in bytes.
const MAX_RAW: usize = OVERHEAD + MAX_ID_LEN;
/// Decode buffer: room for base64's decoded-length estimate (a multiple of 3).
const DECODE_BUF: usize = MAX_RAW + 3;
/// Longest encoded value accepted, in characters; longer values are rejected
/// before decoding.
pub const MAX_ENCODED: usize = (MAX_RAW * 4).div_ceil(3);
/// Domain-separation label of the per-cookie key.
const LABEL: &[u8] = b"weir affinity cookie v1";

/// A verified cookie: which server it names and when it was issued.
#[derive(Clone, Copy)]
pub struct Decoded {
    buf: [u8; DECODE_BUF],
    id_len: usize,
    /// Issue time, unix seconds.
    pub issued: u64,
}

impl Decoded {
    /// The server id the cookie names (bytes as minted; UTF-8 when minted by weir).
    pub fn id(&self) -> &[u8] {
        &self.buf[2..2 + self.id_len]
    }
}

impl std::fmt::Debug for Decoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoded")
            .field("id", &String::from_utf8_lossy(self.id()))
            .field("issued", &self.issued)
            .finish()
    }
}

/// The HMAC key of one cookie name, derived from the affinity secret.
pub struct CookieKey(hmac::Key);

impl std::fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieKey(<redacted>)")
    }
}

impl CookieKey {
    /// The key for cookies named `cookie_name` under `secret`:
    /// `HMAC-SHA256(secret, "weir affinity cookie v1" || 0x00 || cookie_name)`.
    pub fn derive(secret: &[u8], cookie_name: &str) -> Self {
        let master = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let mut ctx = hmac::Context::with_key(&master);
        ctx.update(LABEL);
        ctx.update(&[0]);
        ctx.update(cookie_name.as_bytes());
        let derived = ctx.sign();
        CookieKey(hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()))
    }

    /// Appends the encoded cookie value for server `id` issued at `issued`
    /// (unix seconds) to `out`. Returns false, appending nothing, when `id` is
    /// empty or longer than [`MAX_ID_LEN`] bytes (config validation prevents both).
    pub fn encode_into(&self, id: &[u8], issued: u64, out: &mut String) -> bool {
        let Ok(n) = u8::try_from(id.len()) else {
            return false;
        };
        if n == 0 {
            return false;
        }
        let mut buf = [0u8; MAX_RAW];
        let body = 2 + id.len() + 8;
        buf[0] = VERSION;
        buf[1] = n;
        buf[2..2 + id.len()].copy_from_slice(id);
        buf[2 + id.len()..body].copy_from_slice(&issued.to_be_bytes());
        let tag = hmac::sign(&self.0, &buf[..body]);
        buf[body..body + TAG_LEN].copy_from_slice(&tag.as_ref()[..TAG_LEN]);
        URL_SAFE_NO_PAD.encode_string(&buf[..body + TAG_LEN], out);
        true
    }

    /// The encoded cookie value for server `id` issued at `issued` (unix
    /// seconds); empty when `id` cannot be encoded (see [`Self::encode_into`]).
    pub fn encode(&self, id: &str, issued: u64) -> String {
        let mut s = String::with_capacity(MAX_ENCODED);
        self.encode_into(id.as_bytes(), issued, &mut s);
        s
    }

    /// Decodes and verifies a cookie value. `None` when it is not base64url,
    /// has the wrong length or version, or its tag does not verify (forged,
    /// tampered, or minted under another secret or cookie name). Expiry is the
    /// caller's business. Allocates nothing; the tag comparison is constant time.
    pub fn decode(&self, value: &[u8]) -> Option<Decoded> {
        if value.len() > MAX_ENCODED || value.len() < (OVERHEAD + 1) * 4 / 3 {
            return None;
        }
        let mut raw = [0u8; DECODE_BUF];
        let len = URL_SAFE_NO_PAD.decode_slice(value, &mut raw).ok()?;
        if len < OVERHEAD + 1 || raw[0] != VERSION {
            return None;
        }
        let id_len = usize::from(raw[1]);
        if id_len == 0 || len != OVERHEAD + id_len {
            return None;
        }
        let body = 2 + id_len + 8;
        let tag = hmac::sign(&self.0, &raw[..body]);
        constant_time::verify_slices_are_equal(&tag.as_ref()[..TAG_LEN], &raw[body..len]).ok()?;
        let mut time = [0u8; 8];
        time.copy_from_slice(&raw[2 + id_len..body]);
        Some(Decoded {
            buf: raw,
            id_len,
            issued: u64::from_be_bytes(time),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef-test-secret";

    #[test]
    fn round_trip() {
        let key = CookieKey::derive(SECRET, "weir_repo");
        let v = key.encode("repo-1", 1_700_000_000);
        // 1 + 1 + 6 + 8 + 16 = 32 bytes -> 43 base64url characters, no padding.
        assert_eq!(v.len(), 43);
        assert!(v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        let d = key.decode(v.as_bytes()).expect("valid");
        assert_eq!(d.id(), b"repo-1");
        assert_eq!(d.issued, 1_700_000_000);
        // The value does not contain the id in clear text (base64, not plain).
        assert!(!v.contains("repo-1"));
    }

    #[test]
    fn longest_id_round_trips() {
        let key = CookieKey::derive(SECRET, "c");
        let id = "x".repeat(MAX_ID_LEN);
        let v = key.encode(&id, 7);
        assert!(v.len() <= MAX_ENCODED);
        assert_eq!(key.decode(v.as_bytes()).unwrap().id(), id.as_bytes());
        assert!(key.encode(&"x".repeat(MAX_ID_LEN + 1), 7).is_empty());
        assert!(key.encode("", 7).is_empty());
    }

    #[test]
    fn every_flipped_bit_is_rejected() {
        let key = CookieKey::derive(SECRET, "weir_repo");
        let v = key.encode("repo-2", 1_700_000_000);
        let raw = URL_SAFE_NO_PAD.decode(&v).unwrap();
        for i in 0..raw.len() {
            for bit in 0..8 {
                let mut t = raw.clone();
                t[i] ^= 1 << bit;
                let tv = URL_SAFE_NO_PAD.encode(&t);
                assert!(key.decode(tv.as_bytes()).is_none(), "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn other_secret_or_cookie_name_is_rejected() {
        let key = CookieKey::derive(SECRET, "weir_repo");
        let v = key.encode("repo-1", 1);
        assert!(CookieKey::derive(b"another-secret-of-16+", "weir_repo")
            .decode(v.as_bytes())
            .is_none());
        assert!(CookieKey::derive(SECRET, "weir_profile")
            .decode(v.as_bytes())
            .is_none());
        assert!(CookieKey::derive(SECRET, "weir_repo")
            .decode(v.as_bytes())
            .is_some());
    }

    #[test]
    fn malformed_values_are_rejected() {
        let key = CookieKey::derive(SECRET, "c");
        let good = key.encode("a", 1);
        let cases: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"x".to_vec(),
            b"not base64 at all!!".to_vec(),
            format!("{good}=").into_bytes(),
            good.as_bytes()[..good.len() - 1].to_vec(),
            format!("{good}A").into_bytes(),
            "A".repeat(MAX_ENCODED + 1).into_bytes(),
            "A".repeat(MAX_ENCODED).into_bytes(),
            vec![0xff; 40],
            // Right length, version 2.
            {
                let mut raw = URL_SAFE_NO_PAD.decode(&good).unwrap();
                raw[0] = 2;
                URL_SAFE_NO_PAD.encode(&raw).into_bytes()
            },
            // Id length pointing past the end.
            {
                let mut raw = URL_SAFE_NO_PAD.decode(&good).unwrap();
                raw[1] = 200;
                URL_SAFE_NO_PAD.encode(&raw).into_bytes()
            },
        ];
        for c in cases {
            assert!(
                key.decode(&c).is_none(),
                "{:?}",
                String::from_utf8_lossy(&c)
            );
        }
        assert!(key.decode(good.as_bytes()).is_some());
    }
}
