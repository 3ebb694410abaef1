//! Response compression (`routes[].compression`): content-coding negotiation
//! from `Accept-Encoding` (RFC 9110 §12.5.3) and a streaming encoder body
//! (zstd, brotli, gzip through `async-compression`).
//!
//! Negotiation happens on the request ([`negotiate`], before the request's
//! headers move into the upstream request); the response is wrapped at the
//! very end of the response path ([`apply`]), after header rules, so any
//! `Response<ProxyBody>` (a forwarded one, one built from a cache) can go
//! through it.
//!
//! The encoder never holds the body: each upstream frame is compressed into
//! a small output buffer that is handed on as one frame; when the upstream
//! has nothing more to give for now, the encoder is flushed, so a slow
//! stream (server-sent events, a long download) reaches the client as it
//! comes. Memory per compressed response is the codec's state: the window
//! is capped at 512 KiB for zstd and brotli ([`WINDOW_LOG`]), nginx's
//! `brotli_window` default.
//!
//! Files by job: this one holds the config types (`routes[].compression`);
//! `negotiate.rs` reads `Accept-Encoding`, `response.rs` decides which
//! responses are compressed and rewrites their headers, `body.rs` is the
//! streaming encoder.

mod body;
mod negotiate;
mod response;

pub use body::Compressed;

/// A response body that [`apply`] can wrap in a compressing stream (the
/// proxy's `ProxyBody`); a trait so that content stays below the proxy,
/// with static dispatch.
pub trait Compressible: Sized {
    /// `self` compressed with `encoding` at `levels` as it streams.
    fn compressed(self, encoding: Encoding, levels: Levels) -> Self;
}
pub use negotiate::{choose, negotiate};
pub use response::{apply, compressible};

/// Window of the zstd and brotli encoders, as a power of two (19 = 512 KiB):
/// bounds each compressed response's memory; web responses gain little from
/// a longer window.
pub const WINDOW_LOG: u32 = 19;

/// Default `min_size`: bodies known to be shorter are sent as they are
/// (nginx's `gzip_min_length` is 20; below about 1 KiB the saving rarely
/// pays for the CPU and the framing).
pub const DEFAULT_MIN_SIZE: u64 = 1024;

/// Default zstd level (fast; ratio close to gzip 6 at several times the speed).
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;
/// Default brotli quality (the common choice for on-the-fly compression).
pub const DEFAULT_BR_LEVEL: u32 = 4;
/// Default gzip level (zlib's and nginx's `gzip_comp_level` middle ground).
pub const DEFAULT_GZIP_LEVEL: u32 = 6;

/// Default `types`: text, JSON, JavaScript, XML, SVG and WebAssembly.
pub const DEFAULT_TYPES: &[&str] = &[
    "text/*",
    "application/json",
    "application/*+json",
    "application/javascript",
    "application/xml",
    "application/*+xml",
    "image/svg+xml",
    "application/wasm",
];

/// A content coding weir can produce (RFC 9110 §8.4.1, RFC 8878, RFC 7932).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// `zstd` (RFC 8878).
    Zstd,
    /// `br`, brotli (RFC 7932).
    Br,
    /// `gzip` (RFC 1952); `x-gzip` in a request means the same.
    Gzip,
}

impl Encoding {
    /// Every coding, in the default server preference.
    pub const ALL: [Encoding; 3] = [Encoding::Zstd, Encoding::Br, Encoding::Gzip];

    /// The coding's token, as in `Content-Encoding`.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Zstd => "zstd",
            Encoding::Br => "br",
            Encoding::Gzip => "gzip",
        }
    }

    /// The coding named `name` in the config (`zstd`, `br`, `gzip`).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == name)
    }

    /// True when the `Accept-Encoding` token `token` names this coding
    /// (case-insensitive; `x-gzip` is gzip, RFC 9110 §8.4.1.3).
    fn is_named(self, token: &str) -> bool {
        token.eq_ignore_ascii_case(self.as_str())
            || (self == Encoding::Gzip && token.eq_ignore_ascii_case("x-gzip"))
    }
}

/// Compression levels (`compression.levels`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Levels {
    /// zstd level, 1 to 22 (default 3).
    pub zstd: i32,
    /// brotli quality, 0 to 11 (default 4).
    pub br: u32,
    /// gzip level, 1 to 9 (default 6).
    pub gzip: u32,
}

impl Default for Levels {
    fn default() -> Self {
        Levels {
            zstd: DEFAULT_ZSTD_LEVEL,
            br: DEFAULT_BR_LEVEL,
            gzip: DEFAULT_GZIP_LEVEL,
        }
    }
}

/// One entry of `types`: a media type, `type/*`, or `type/*+suffix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeMatch {
    /// Exactly this `type/subtype` (lower-case).
    Exact(Box<str>),
    /// Any subtype of this type (`text/*`).
    AnySubtype(Box<str>),
    /// A subtype with this structured suffix (`application/*+json`): type, suffix.
    Suffix(Box<str>, Box<str>),
}

impl TypeMatch {
    /// Parses `text/html`, `text/*` or `application/*+json`.
    ///
    /// # Errors
    /// When the entry is not of those forms.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim().to_ascii_lowercase();
        let bad =
            || format!("{s:?} is not a media type such as text/html, text/* or application/*+json");
        let (ty, sub) = s.split_once('/').ok_or_else(bad)?;
        let token = |t: &str| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
        };
        if !token(ty) {
            return Err(bad());
        }
        if sub == "*" {
            return Ok(TypeMatch::AnySubtype(ty.into()));
        }
        if let Some(suffix) = sub.strip_prefix("*+") {
            if token(suffix) {
                return Ok(TypeMatch::Suffix(ty.into(), suffix.into()));
            }
            return Err(bad());
        }
        if !token(sub) {
            return Err(bad());
        }
        Ok(TypeMatch::Exact(s.as_str().into()))
    }

    /// True when the `Content-Type` essence `essence` (lower-case
    /// `type/subtype`, parameters removed) matches.
    pub fn matches(&self, essence: &str) -> bool {
        match self {
            TypeMatch::Exact(t) => essence == &**t,
            TypeMatch::AnySubtype(t) => essence.split_once('/').is_some_and(|(ty, _)| ty == &**t),
            TypeMatch::Suffix(t, suffix) => essence.split_once('/').is_some_and(|(ty, sub)| {
                ty == &**t && sub.rsplit_once('+').is_some_and(|(_, s)| s == &**suffix)
            }),
        }
    }
}

/// The validated `compression` section of a route.
#[derive(Debug, Clone)]
pub struct Compression {
    /// Codings in server preference order (ties between equal client
    /// q-values go to the first).
    pub algorithms: Vec<Encoding>,
    /// Bodies with a known length below this many bytes are not compressed.
    pub min_size: u64,
    /// Compressed media types.
    pub types: Vec<TypeMatch>,
    /// Levels per coding.
    pub levels: Levels,
}

impl Default for Compression {
    /// All three codings, 1 KiB, the default types and levels.
    fn default() -> Self {
        Compression {
            algorithms: Encoding::ALL.to_vec(),
            min_size: DEFAULT_MIN_SIZE,
            types: DEFAULT_TYPES
                .iter()
                .filter_map(|t| TypeMatch::parse(t).ok())
                .collect(),
            levels: Levels::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_patterns() {
        let m = |p: &str, t: &str| TypeMatch::parse(p).unwrap().matches(t);
        assert!(m("text/*", "text/html"));
        assert!(!m("text/*", "application/json"));
        assert!(m("application/json", "application/json"));
        assert!(m("Application/JSON", "application/json"));
        assert!(m("application/*+json", "application/problem+json"));
        assert!(!m("application/*+json", "application/json"));
        for bad in ["json", "text/", "/x", "a b/c", "text/*+"] {
            assert!(TypeMatch::parse(bad).is_err(), "{bad}");
        }
    }
}
