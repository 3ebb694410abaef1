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

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_compression::tokio::write::{BrotliEncoder, GzipEncoder, ZstdEncoder};
use async_compression::Level;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use tokio::io::AsyncWrite;

/// A response body that [`apply`] can wrap in a compressing stream (the
/// proxy's `ProxyBody`); a trait so that content stays below the proxy,
/// with static dispatch.
pub trait Compressible: Sized {
    /// `self` compressed with `encoding` at `levels` as it streams.
    fn compressed(self, encoding: Encoding, levels: Levels) -> Self;
}

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

// === negotiation ===

/// The coding to use for a response to this request, or `None` for identity.
///
/// `None` when there is no `compression` config, for `HEAD` (no body to
/// compress) and for a `Range` request (a range applies to the identity
/// body, RFC 9110 §14.2; compressing it would change what the range means),
/// and when the client accepts none of the configured codings.
pub fn negotiate(
    cfg: Option<&Compression>,
    method: &Method,
    headers: &HeaderMap,
) -> Option<Encoding> {
    let cfg = cfg?;
    if method == Method::HEAD || headers.contains_key(header::RANGE) {
        return None;
    }
    let mut accept = headers.get_all(header::ACCEPT_ENCODING).iter().peekable();
    let first = accept.next()?;
    if accept.peek().is_none() {
        // The usual case: one field, read in place.
        return choose(&cfg.algorithms, first.to_str().unwrap_or(""));
    }
    let mut list = String::from(first.to_str().unwrap_or(""));
    for v in accept {
        if let Ok(s) = v.to_str() {
            if !list.is_empty() {
                list.push(',');
            }
            list.push_str(s);
        }
    }
    choose(&cfg.algorithms, &list)
}

/// Picks from `algorithms` (server preference order) by the `Accept-Encoding`
/// field value `accept` (RFC 9110 §12.5.3): the first coding of
/// `algorithms` that the client accepts (a q-value above 0) wins, as the
/// issue's contract says ("the configured server preference among what the
/// client accepts"; nginx and Envoy also let the server order decide);
/// `q=0` means "not acceptable"; `*` gives its q-value to every coding not
/// listed by name.
/// An empty field value means identity only. An unparsable q-value counts
/// as 0 (not acceptable).
pub fn choose(algorithms: &[Encoding], accept: &str) -> Option<Encoding> {
    for &enc in algorithms {
        let mut named: Option<u16> = None;
        let mut star: Option<u16> = None;
        for item in accept.split(',') {
            let mut parts = item.split(';');
            let token = parts.next().unwrap_or("").trim();
            if token.is_empty() {
                continue;
            }
            let q = qvalue(parts);
            if enc.is_named(token) {
                // The highest of repeated entries for one coding.
                named = Some(named.map_or(q, |n| n.max(q)));
            } else if token == "*" {
                star = Some(star.map_or(q, |s| s.max(q)));
            }
        }
        let q = named.or(star).unwrap_or(0);
        if q > 0 {
            return Some(enc);
        }
    }
    None
}

/// The q-value among an item's parameters, in thousandths (1000 when absent;
/// 0 when malformed), per the `qvalue` grammar of RFC 9110 §12.4.2.
fn qvalue<'a>(params: impl Iterator<Item = &'a str>) -> u16 {
    for p in params {
        let Some((name, value)) = p.split_once('=') else {
            continue;
        };
        if !name.trim().eq_ignore_ascii_case("q") {
            continue;
        }
        return parse_q(value.trim()).unwrap_or(0);
    }
    1000
}

fn parse_q(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut thousandths: u16 = 0;
    for (i, b) in frac.bytes().enumerate() {
        thousandths += u16::from(b - b'0') * [100, 10, 1][i];
    }
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

// === the response ===

/// Compresses `resp` with `choice` when `cfg` allows it for this response,
/// and marks a compressible response with `Vary: Accept-Encoding` whether
/// or not this client gets it compressed (a shared cache must not hand the
/// identity body to a client that asked for zstd, nor the reverse).
///
/// Left as it is: no `cfg`; a status without content to transform (1xx,
/// 204, 206, 304); a response already encoded (`Content-Encoding` other
/// than `identity`); `Cache-Control: no-transform` (RFC 9111 §5.2.2.6);
/// a `Content-Type` outside `types` (or none); a known length under
/// `min_size`; a `Content-Range`.
///
/// When compressing: `Content-Encoding` is set, `Content-Length` and
/// `Accept-Ranges` removed (ranges of the identity body no longer apply),
/// and a strong `ETag` becomes weak (`W/"…"`): the compressed bytes differ
/// from those the strong validator named (RFC 9110 §8.8.1), as nginx does.
pub fn apply<B: Compressible>(
    mut resp: Response<B>,
    choice: Option<Encoding>,
    cfg: Option<&Compression>,
) -> Response<B> {
    let Some(cfg) = cfg else { return resp };
    if !compressible(cfg, resp.status(), resp.headers()) {
        return resp;
    }
    add_vary(resp.headers_mut());
    let Some(enc) = choice else { return resp };
    let h = resp.headers_mut();
    h.remove(header::CONTENT_LENGTH);
    h.remove(header::ACCEPT_RANGES);
    h.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static(enc.as_str()),
    );
    weaken_etag(h);
    resp.map(|body| body.compressed(enc, cfg.levels))
}

/// True when a response of `status` with `headers` may be compressed under `cfg`.
pub fn compressible(cfg: &Compression, status: StatusCode, headers: &HeaderMap) -> bool {
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::PARTIAL_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return false;
    }
    if headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
        || headers.contains_key(header::CONTENT_RANGE)
    {
        return false;
    }
    if has_directive(headers, header::CACHE_CONTROL, "no-transform") {
        return false;
    }
    let Some(essence) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
    else {
        return false;
    };
    if !cfg.types.iter().any(|t| t.matches(&essence)) {
        return false;
    }
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    length.is_none_or(|n| n >= cfg.min_size.max(1))
}

/// True when a comma-separated field `name` lists `directive` (case-insensitive,
/// arguments ignored).
fn has_directive(headers: &HeaderMap, name: header::HeaderName, directive: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',').any(|d| {
                d.split('=')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case(directive)
            })
        })
    })
}

/// Appends `Accept-Encoding` to `Vary` unless it is there (or `Vary: *`).
fn add_vary(headers: &mut HeaderMap) {
    let listed = headers.get_all(header::VARY).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',').any(|t| {
                let t = t.trim();
                t == "*" || t.eq_ignore_ascii_case("accept-encoding")
            })
        })
    });
    if !listed {
        headers.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

/// `ETag: "x"` → `ETag: W/"x"`.
fn weaken_etag(headers: &mut HeaderMap) {
    let Some(tag) = headers.get(header::ETAG) else {
        return;
    };
    let bytes = tag.as_bytes();
    if bytes.starts_with(b"W/") {
        return;
    }
    let mut weak = Vec::with_capacity(bytes.len() + 2);
    weak.extend_from_slice(b"W/");
    weak.extend_from_slice(bytes);
    if let Ok(v) = HeaderValue::from_bytes(&weak) {
        headers.insert(header::ETAG, v);
    }
}

// === the body ===

/// An encoder writing into an in-memory buffer.
#[derive(Debug)]
enum Encoder {
    Zstd(ZstdEncoder<Vec<u8>>),
    /// Boxed: brotli's state is 5.6 KiB inline.
    Br(Box<BrotliEncoder<Vec<u8>>>),
    Gzip(GzipEncoder<Vec<u8>>),
}

impl Encoder {
    fn new(enc: Encoding, levels: Levels) -> Self {
        let out = Vec::new();
        match enc {
            Encoding::Zstd => Encoder::Zstd(ZstdEncoder::with_quality_and_params(
                out,
                Level::Precise(levels.zstd),
                &[async_compression::zstd::CParameter::window_log(WINDOW_LOG)],
            )),
            Encoding::Br => Encoder::Br(Box::new(BrotliEncoder::with_params(
                out,
                async_compression::brotli::EncoderParams::default()
                    .quality(Level::Precise(i32::try_from(levels.br).unwrap_or(4)))
                    .window_size(WINDOW_LOG as i32),
            ))),
            Encoding::Gzip => Encoder::Gzip(GzipEncoder::with_quality(
                out,
                Level::Precise(i32::try_from(levels.gzip).unwrap_or(6)),
            )),
        }
    }

    fn writer(&mut self) -> Pin<&mut (dyn AsyncWrite + Unpin + Send)> {
        match self {
            Encoder::Zstd(e) => Pin::new(e),
            Encoder::Br(e) => Pin::new(&mut **e),
            Encoder::Gzip(e) => Pin::new(e),
        }
    }

    fn output(&mut self) -> &mut Vec<u8> {
        match self {
            Encoder::Zstd(e) => e.get_mut(),
            Encoder::Br(e) => e.get_mut(),
            Encoder::Gzip(e) => e.get_mut(),
        }
    }

    /// Compresses all of `data` (the sink is memory: never pending).
    fn write(&mut self, cx: &mut Context<'_>, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            match self.writer().poll_write(cx, data) {
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => data = &data[n..],
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => return Err(io::ErrorKind::WouldBlock.into()),
            }
        }
        Ok(())
    }

    fn flush(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.writer().poll_flush(cx) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn finish(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.writer().poll_shutdown(cx) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    /// The compressed bytes produced so far, taken out of the buffer.
    fn take(&mut self) -> Option<Bytes> {
        let out = self.output();
        (!out.is_empty()).then(|| Bytes::from(std::mem::take(out)))
    }
}

/// A response body compressed as it streams: wraps the original body `B`
/// (the proxy's `ProxyBody`).
#[derive(Debug)]
pub struct Compressed<B> {
    inner: B,
    encoder: Encoder,
    /// Data was written since the last flush.
    dirty: bool,
    /// The encoder was finished; what is left is `trailers`, then the end.
    finished: bool,
    trailers: Option<HeaderMap>,
    done: bool,
}

impl<B: Body<Data = Bytes> + Unpin> Compressed<B> {
    /// Compresses `inner` with `enc` at `levels`.
    pub fn new(inner: B, enc: Encoding, levels: Levels) -> Self {
        Compressed {
            inner,
            encoder: Encoder::new(enc, levels),
            dirty: false,
            finished: false,
            trailers: None,
            done: false,
        }
    }

    /// Ends the compressed stream early after an encoder failure (which an
    /// in-memory sink should never see): the client's decoder sees the
    /// stream cut short.
    fn fail(&mut self, e: &io::Error) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        tracing::warn!(error = %e, "response compression failed: body cut short");
        self.done = true;
        Poll::Ready(None)
    }

    /// Polls the next compressed frame.
    pub fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            if self.finished {
                if let Some(out) = self.encoder.take() {
                    return Poll::Ready(Some(Ok(Frame::data(out))));
                }
                self.done = true;
                return Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        if data.is_empty() {
                            continue;
                        }
                        if let Err(e) = self.encoder.write(cx, &data) {
                            return self.fail(&e);
                        }
                        self.dirty = true;
                        if let Some(out) = self.encoder.take() {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                    Err(frame) => {
                        self.trailers = frame.into_trailers().ok();
                        if let Err(e) = self.encoder.finish(cx) {
                            return self.fail(&e);
                        }
                        self.finished = true;
                    }
                },
                Poll::Ready(None) => {
                    if let Err(e) = self.encoder.finish(cx) {
                        return self.fail(&e);
                    }
                    self.finished = true;
                }
                Poll::Ready(Some(Err(e))) => {
                    self.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Pending => {
                    // Nothing more for now: what was compressed goes out,
                    // so a slow stream is not held back.
                    if self.dirty {
                        self.dirty = false;
                        if let Err(e) = self.encoder.flush(cx) {
                            return self.fail(&e);
                        }
                        if let Some(out) = self.encoder.take() {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    /// True once the compressed stream has ended.
    pub fn is_end_stream(&self) -> bool {
        self.done
    }

    /// Unknown: the compressed length is known only at the end.
    pub fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use Encoding::{Br, Gzip, Zstd};

    /// RFC 9110 §12.5.3 cases: (Accept-Encoding, server preference, expected).
    #[test]
    fn negotiation_table() {
        let all = [Zstd, Br, Gzip];
        let cases: &[(&str, &[Encoding], Option<Encoding>)] = &[
            ("gzip", &all, Some(Gzip)),
            ("br", &all, Some(Br)),
            ("zstd", &all, Some(Zstd)),
            // Equal q: server preference.
            ("gzip, deflate, br, zstd", &all, Some(Zstd)),
            ("gzip, br", &all, Some(Br)),
            ("gzip, br", &[Gzip, Br, Zstd], Some(Gzip)),
            // Server preference among what the client accepts (q > 0).
            ("zstd;q=0.5, gzip;q=0.9", &all, Some(Zstd)),
            ("br;q=1.0, zstd;q=0.001", &all, Some(Zstd)),
            ("br;q=1.0, zstd;q=0.5", &[Br, Zstd], Some(Br)),
            // q=0 refuses.
            ("gzip;q=0", &all, None),
            ("gzip;q=0, br", &all, Some(Br)),
            ("gzip;q=0.000", &all, None),
            // `*` covers codings not named.
            ("*", &all, Some(Zstd)),
            ("*;q=0.5, zstd;q=0", &all, Some(Br)),
            ("*;q=0", &all, None),
            ("gzip, *;q=0", &all, Some(Gzip)),
            // identity only, or identity refused: neither decides a coding.
            ("identity", &all, None),
            ("identity;q=0", &all, None),
            ("identity;q=0, gzip", &all, Some(Gzip)),
            ("", &all, None),
            // Case-insensitive, x-gzip, spaces, other parameters.
            ("GZIP", &all, Some(Gzip)),
            ("x-gzip", &all, Some(Gzip)),
            (" gzip ; q=0.8 , deflate", &all, Some(Gzip)),
            ("gzip;Q=0.5", &all, Some(Gzip)),
            // Malformed q-values are not acceptable.
            ("gzip;q=2", &all, None),
            ("gzip;q=abc", &all, None),
            ("gzip;q=0.1234", &all, None),
            // Only configured codings are chosen.
            ("br", &[Gzip], None),
            ("deflate, compress", &all, None),
        ];
        for (accept, prefs, want) in cases {
            assert_eq!(choose(prefs, accept), *want, "Accept-Encoding: {accept:?}");
        }
    }

    #[test]
    fn negotiate_skips_head_range_and_missing_header() {
        let cfg = Compression::default();
        let mut h = HeaderMap::new();
        assert_eq!(negotiate(Some(&cfg), &Method::GET, &h), None);
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        assert_eq!(negotiate(Some(&cfg), &Method::GET, &h), Some(Gzip));
        assert_eq!(negotiate(None, &Method::GET, &h), None);
        assert_eq!(negotiate(Some(&cfg), &Method::HEAD, &h), None);
        h.insert(header::RANGE, HeaderValue::from_static("bytes=0-10"));
        assert_eq!(negotiate(Some(&cfg), &Method::GET, &h), None);
        // Several fields combine.
        let mut h = HeaderMap::new();
        h.append(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip;q=0.1"),
        );
        h.append(header::ACCEPT_ENCODING, HeaderValue::from_static("br"));
        assert_eq!(negotiate(Some(&cfg), &Method::GET, &h), Some(Br));
    }

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

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn which_responses_are_compressible() {
        let cfg = Compression::default();
        let ok = StatusCode::OK;
        let json = ("content-type", "application/json; charset=utf-8");
        assert!(compressible(&cfg, ok, &headers(&[json])));
        assert!(compressible(
            &cfg,
            ok,
            &headers(&[json, ("content-length", "1024")])
        ));
        assert!(!compressible(
            &cfg,
            ok,
            &headers(&[json, ("content-length", "1023")])
        ));
        assert!(!compressible(
            &cfg,
            ok,
            &headers(&[("content-type", "image/png")])
        ));
        assert!(!compressible(&cfg, ok, &headers(&[])));
        assert!(!compressible(
            &cfg,
            ok,
            &headers(&[json, ("content-encoding", "gzip")])
        ));
        assert!(compressible(
            &cfg,
            ok,
            &headers(&[json, ("content-encoding", "identity")])
        ));
        assert!(!compressible(
            &cfg,
            ok,
            &headers(&[json, ("cache-control", "public, No-Transform")])
        ));
        assert!(compressible(&cfg, StatusCode::NOT_FOUND, &headers(&[json])));
        for s in [
            StatusCode::PARTIAL_CONTENT,
            StatusCode::NOT_MODIFIED,
            StatusCode::NO_CONTENT,
        ] {
            assert!(!compressible(&cfg, s, &headers(&[json])), "{s}");
        }
        assert!(!compressible(
            &cfg,
            ok,
            &headers(&[json, ("content-range", "bytes 0-1/2")])
        ));
    }

    #[test]
    fn vary_and_etag() {
        let mut h = headers(&[("vary", "Origin")]);
        add_vary(&mut h);
        assert_eq!(h.get_all(header::VARY).iter().count(), 2);
        add_vary(&mut h);
        assert_eq!(h.get_all(header::VARY).iter().count(), 2);
        let mut h = headers(&[("vary", "*")]);
        add_vary(&mut h);
        assert_eq!(h.get_all(header::VARY).iter().count(), 1);
        let mut h = headers(&[("etag", "\"abc\"")]);
        weaken_etag(&mut h);
        assert_eq!(h[header::ETAG], "W/\"abc\"");
        weaken_etag(&mut h);
        assert_eq!(h[header::ETAG], "W/\"abc\"");
    }
}
