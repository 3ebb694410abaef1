//! Reading an HTTP/1.1 response (RFC 9112): the head, parsed with
//! `httparse` into the [`HeaderMap`] that is sent on downstream (the values
//! are slices of the read buffer, not copies), the body's framing (RFC 9112
//! §6.3) and the chunked coding (§7.1).

use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{StatusCode, Version};

/// Largest response head weir reads, in bytes (64 KiB less one, so that
/// offsets in it fit 16 bits) (status line and fields);
/// past it the response is a protocol error (502), as nginx's "upstream sent
/// too big header" (its `proxy_buffer_size` is 4–8 KiB; HAProxy's
/// `tune.bufsize` 16 KiB).
pub const MAX_HEAD: usize = 64 * 1024 - 1;
/// Most header fields in one response head or trailer section (hyper's
/// default limit).
pub const MAX_FIELDS: usize = 100;
/// Longest chunk-size line, extensions included, in bytes.
const MAX_CHUNK_LINE: usize = 4 * 1024;
/// Largest trailer section, in bytes.
const MAX_TRAILERS: usize = 16 * 1024;

/// `Keep-Alive` (RFC 9112 Appendix C.2.2; hop-by-hop), kept out of the map.
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");

/// Why a response could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The status line or a field is not HTTP/1.x.
    #[error("invalid response head: {0}")]
    Head(#[from] httparse::Error),
    /// The head is larger than [`MAX_HEAD`] bytes.
    #[error("response head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    /// `Content-Length` is not one decimal number (RFC 9112 §6.3, rule 5).
    #[error("invalid Content-Length")]
    ContentLength,
    /// The chunked coding is broken (RFC 9112 §7.1).
    #[error("invalid chunked body: {0}")]
    Chunked(&'static str),
    /// The connection closed before the body's end.
    #[error("connection closed before the response body was complete")]
    Truncated,
}

/// How the response body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: a response to `HEAD`, 1xx, 204 and 304.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the server closes the connection (no length given).
    Eof,
    /// `101 Switching Protocols`: the connection is the new protocol's.
    Upgrade,
}

/// A parsed response head.
#[derive(Debug)]
pub struct Head {
    /// The status code.
    pub status: StatusCode,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// The fields, as received (the framing fields included), less a
    /// `Connection` that lists only `keep-alive` or `close` and a
    /// `Keep-Alive` (hop-by-hop; a 101 keeps them).
    pub headers: HeaderMap,
    /// How the body is delimited.
    pub framing: Framing,
    /// False when the connection must close after this response
    /// (`Connection: close`, HTTP/1.0 without keep-alive, a body read to
    /// the close, or both framing fields).
    pub keep_alive: bool,
}

/// Parses a response head at the start of `buf`, consuming it. `head_request`
/// is true for an answer to `HEAD` (never a body). An interim response (1xx
/// other than 101) is consumed and skipped. `Ok(None)`: more bytes are needed.
///
/// # Errors
/// [`DecodeError::Head`] for a head that is not HTTP/1.x,
/// [`DecodeError::HeadTooLarge`], [`DecodeError::ContentLength`].
pub fn head(buf: &mut BytesMut, head_request: bool) -> Result<Option<Head>, DecodeError> {
    loop {
        let Some(head) = parse_one(buf, head_request)? else {
            return Ok(None);
        };
        if head.status.is_informational() && head.status != StatusCode::SWITCHING_PROTOCOLS {
            // 100 Continue, 103 Early Hints: not relayed (hyper's client skips them too).
            continue;
        }
        return Ok(Some(head));
    }
}

/// Where one field's name and value lie in the head: start and length of
/// each (a head is at most [`MAX_HEAD`] bytes, so 16 bits do).
#[derive(Clone, Copy, Default)]
struct Span {
    name: (u16, u16),
    value: (u16, u16),
}

impl Span {
    fn name(self) -> std::ops::Range<usize> {
        usize::from(self.name.0)..usize::from(self.name.0) + usize::from(self.name.1)
    }

    fn value(self) -> std::ops::Range<usize> {
        usize::from(self.value.0)..usize::from(self.value.0) + usize::from(self.value.1)
    }
}

fn parse_one(buf: &mut BytesMut, head_request: bool) -> Result<Option<Head>, DecodeError> {
    if buf.is_empty() {
        return Ok(None);
    }
    // Left uninitialised: httparse fills what it parses (zeroing 3 KiB of
    // headers per parse was a tenth of a request's instructions).
    let mut raw = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
    // 800 bytes, zeroed (cheaper than a heap vector).
    let mut spans = [Span::default(); MAX_FIELDS];
    let base = buf.as_ptr() as usize;
    let (len, code, minor, count) = {
        let mut resp = httparse::Response::new(&mut []);
        // Only the head's first MAX_HEAD bytes are looked at, so every
        // offset fits a `u16`.
        let window = &buf[..buf.len().min(MAX_HEAD)];
        let parsed = httparse::ParserConfig::default()
            .parse_response_with_uninit_headers(&mut resp, window, &mut raw);
        let len = match parsed {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
                return Err(DecodeError::HeadTooLarge)
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(DecodeError::Head(e)),
        };
        for (span, h) in spans.iter_mut().zip(resp.headers.iter()) {
            let offset = |p: *const u8| (p as usize - base) as u16;
            *span = Span {
                name: (offset(h.name.as_ptr()), h.name.len() as u16),
                value: (offset(h.value.as_ptr()), h.value.len() as u16),
            };
        }
        (
            len,
            resp.code.unwrap_or(0),
            resp.version.unwrap_or(1),
            resp.headers.len(),
        )
    };
    let status = StatusCode::from_u16(code).map_err(|_| httparse::Error::Status)?;
    let version = if minor == 0 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let bytes = buf.split_to(len).freeze();
    // Room for the fields weir adds on the way down (`Via`, a sticky
    // cookie, rate-limit fields) without growing the map.
    let mut headers = HeaderMap::with_capacity(count + 4);
    let mut fields = Fields::default();
    let upgrade = status == StatusCode::SWITCHING_PROTOCOLS;
    for s in &spans[..count] {
        let name =
            HeaderName::from_bytes(&bytes[s.name()]).map_err(|_| httparse::Error::HeaderName)?;
        let raw = &bytes[s.value()];
        if !fields.note(&name, raw) && !upgrade {
            // A `Connection` that lists only `keep-alive` and `close`, or a
            // `Keep-Alive`: hop-by-hop fields weir would remove on the way
            // down anyway (RFC 9110 §7.6.1), never put in the map. A 101
            // keeps its fields for the tunnel's answer.
            continue;
        }
        let value = HeaderValue::from_maybe_shared(bytes.slice(s.value()))
            .map_err(|_| httparse::Error::HeaderValue)?;
        headers.append(name, value);
    }
    Ok(Some(finish(
        status,
        version,
        headers,
        fields,
        head_request,
    )?))
}

/// What the framing and connection fields of a head said, gathered while
/// its fields are read (so that the framing needs no lookups in the map).
#[derive(Debug, Default)]
struct Fields {
    /// A `Connection` field lists `keep-alive`.
    keep_alive: bool,
    /// A `Connection` field lists `close`.
    close: bool,
    /// A `Transfer-Encoding` field is present.
    transfer_encoding: bool,
    /// The last coding of the last `Transfer-Encoding` field is `chunked`.
    chunked_last: bool,
    /// A `Content-Length` field is present.
    content_length: bool,
    /// The `Content-Length`, when all its values agree.
    length: Option<u64>,
    /// A `Content-Length` value is not a number, or two disagree.
    bad_length: bool,
}

impl Fields {
    /// Takes note of one field; false when it is a `Connection` listing
    /// only connection options, or a `Keep-Alive` (kept out of the map).
    /// Standard names compare as enum tags, so other fields cost a few
    /// comparisons.
    fn note(&mut self, name: &HeaderName, value: &[u8]) -> bool {
        if name == header::CONNECTION {
            // Values that are not visible ASCII name no options (as
            // `HeaderValue::to_str` would refuse them) and stay.
            if !value
                .iter()
                .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
            {
                return true;
            }
            let mut named = false;
            for token in value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"keep-alive") {
                    self.keep_alive = true;
                } else if token.eq_ignore_ascii_case(b"close") {
                    self.close = true;
                } else if !token.is_empty() {
                    named = true;
                }
            }
            return named;
        }
        if name == header::TRANSFER_ENCODING {
            self.transfer_encoding = true;
            let visible = value
                .iter()
                .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b));
            self.chunked_last = visible
                && value
                    .rsplit(|&b| b == b',')
                    .next()
                    .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name == header::CONTENT_LENGTH {
            self.content_length = true;
            self.note_length(value);
        } else if name.as_str().len() == 10 && name == KEEP_ALIVE {
            return false;
        }
        true
    }

    /// One decimal number, or a list of the same number (RFC 9110 §8.6).
    fn note_length(&mut self, value: &[u8]) {
        for part in value.split(|&b| b == b',') {
            let part = part.trim_ascii();
            if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
                self.bad_length = true;
                return;
            }
            let n = part.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
            if self.length.is_some_and(|f| f != n) {
                self.bad_length = true;
                return;
            }
            self.length = Some(n);
        }
    }
}

/// The framing and keep-alive of a parsed head (RFC 9112 §6.3, §9.3).
fn finish(
    status: StatusCode,
    version: Version,
    mut headers: HeaderMap,
    fields: Fields,
    head_request: bool,
) -> Result<Head, DecodeError> {
    // HTTP/1.0 keeps the connection only when asked to; `close` anywhere wins.
    let mut keep_alive = (version != Version::HTTP_10 || fields.keep_alive) && !fields.close;
    let framing = if status == StatusCode::SWITCHING_PROTOCOLS {
        Framing::Upgrade
    } else if head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        Framing::Empty
    } else if fields.transfer_encoding {
        if fields.content_length {
            // Both: Transfer-Encoding wins, and the connection is not
            // reused (RFC 9112 §6.3, rule 3: it may be a smuggling attempt).
            headers.remove(header::CONTENT_LENGTH);
            keep_alive = false;
        }
        if fields.chunked_last {
            Framing::Chunked
        } else {
            keep_alive = false;
            Framing::Eof
        }
    } else if fields.bad_length {
        return Err(DecodeError::ContentLength);
    } else if let Some(n) = fields.length {
        Framing::Length(n)
    } else {
        keep_alive = false;
        Framing::Eof
    };
    Ok(Head {
        status,
        version,
        headers,
        framing,
        keep_alive,
    })
}

/// Where a chunked body's decoder stands (RFC 9112 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunked {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk's data, with this many bytes left.
    Data(u64),
    /// After a chunk's data, before its CRLF.
    DataEnd,
    /// After the last chunk, in the trailer section.
    Trailers,
    /// The body ended.
    Done,
}

/// What the chunked decoder got out of the buffer.
#[derive(Debug)]
pub enum Step {
    /// Body bytes.
    Data(Bytes),
    /// The trailer fields.
    Trailers(HeaderMap),
    /// The body ended.
    End,
}

impl Chunked {
    /// Decodes the next step from `buf`, consuming what it used.
    /// `Ok(None)`: more bytes are needed.
    ///
    /// # Errors
    /// [`DecodeError::Chunked`] for a broken coding or trailer section.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Step>, DecodeError> {
        loop {
            match *self {
                Chunked::Size => {
                    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
                        if buf.len() > MAX_CHUNK_LINE {
                            return Err(DecodeError::Chunked("chunk-size line too long"));
                        }
                        return Ok(None);
                    };
                    if nl > MAX_CHUNK_LINE {
                        return Err(DecodeError::Chunked("chunk-size line too long"));
                    }
                    let size = chunk_size(&buf[..nl])?;
                    buf.advance(nl + 1);
                    *self = if size == 0 {
                        Chunked::Trailers
                    } else {
                        Chunked::Data(size)
                    };
                }
                Chunked::Data(left) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let data = buf.split_to(take).freeze();
                    let left = left - take as u64;
                    *self = if left == 0 {
                        Chunked::DataEnd
                    } else {
                        Chunked::Data(left)
                    };
                    return Ok(Some(Step::Data(data)));
                }
                Chunked::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(None);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(DecodeError::Chunked("no CRLF after chunk data"));
                    }
                    buf.advance(2);
                    *self = Chunked::Size;
                }
                Chunked::Trailers => {
                    if buf.starts_with(b"\r\n") {
                        buf.advance(2);
                        *self = Chunked::Done;
                        return Ok(Some(Step::End));
                    }
                    if buf.len() < 2 {
                        return Ok(None);
                    }
                    let mut raw = [httparse::EMPTY_HEADER; MAX_FIELDS];
                    let (len, fields) = match httparse::parse_headers(buf, &mut raw) {
                        Ok(httparse::Status::Complete((len, fields))) => (len, fields),
                        Ok(httparse::Status::Partial) if buf.len() > MAX_TRAILERS => {
                            return Err(DecodeError::Chunked("trailer section too large"))
                        }
                        Ok(httparse::Status::Partial) => return Ok(None),
                        Err(_) => return Err(DecodeError::Chunked("invalid trailer field")),
                    };
                    let mut trailers = HeaderMap::with_capacity(fields.len());
                    for f in fields.iter() {
                        let (Ok(name), Ok(value)) = (
                            HeaderName::from_bytes(f.name.as_bytes()),
                            HeaderValue::from_bytes(f.value),
                        ) else {
                            return Err(DecodeError::Chunked("invalid trailer field"));
                        };
                        trailers.append(name, value);
                    }
                    buf.advance(len);
                    *self = Chunked::Done;
                    return Ok(Some(Step::Trailers(trailers)));
                }
                Chunked::Done => return Ok(Some(Step::End)),
            }
        }
    }
}

/// The size of a chunk-size line (without its `\n`): hex digits, then
/// optional extensions (`;name=value`, ignored), then `\r`.
fn chunk_size(line: &[u8]) -> Result<u64, DecodeError> {
    let Some(line) = line.strip_suffix(b"\r") else {
        return Err(DecodeError::Chunked("chunk-size line without CRLF"));
    };
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(DecodeError::Chunked("no chunk size"));
    }
    if digits > 15 {
        return Err(DecodeError::Chunked("chunk size too large"));
    }
    let rest = &line[digits..];
    let rest_ok = rest.is_empty() || {
        let ext = rest.trim_ascii_start();
        ext.starts_with(b";") && !ext.iter().any(|&b| b == b'\r' || b == 0)
    };
    if !rest_ok {
        return Err(DecodeError::Chunked("invalid chunk-size line"));
    }
    Ok(line[..digits].iter().fold(0u64, |n, &d| {
        n * 16 + u64::from((d as char).to_digit(16).unwrap_or(0))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str, head_request: bool) -> Result<Option<Head>, DecodeError> {
        let mut buf = BytesMut::from(raw.as_bytes());
        head(&mut buf, head_request)
    }

    /// A complete head of `raw`.
    fn parsed(raw: &str, head_request: bool) -> Head {
        parse(raw, head_request).unwrap().unwrap()
    }

    #[test]
    fn content_length_frames_the_body_and_keeps_the_connection() {
        let h = parsed(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\n",
            false,
        );
        assert_eq!(h.status, 200);
        assert_eq!(h.framing, Framing::Length(5));
        assert!(h.keep_alive);
        assert_eq!(h.headers["x-a"], "b");
    }

    #[test]
    fn a_partial_head_asks_for_more() {
        assert!(parse("HTTP/1.1 200 OK\r\nContent-Le", false)
            .unwrap()
            .is_none());
    }

    #[test]
    fn interim_responses_are_skipped() {
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\nrest"[..],
        );
        let h = head(&mut buf, false).unwrap().unwrap();
        assert_eq!(h.status, 201);
        assert_eq!(&buf[..], b"rest");
    }

    #[test]
    fn transfer_encoding_wins_over_content_length_and_closes() {
        let h = parsed(
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        );
        assert_eq!(h.framing, Framing::Chunked);
        assert!(!h.keep_alive);
        assert!(!h.headers.contains_key(header::CONTENT_LENGTH));
    }

    #[test]
    fn no_body_for_head_204_304_and_read_to_close_without_length() {
        let h = parsed("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true);
        assert_eq!(h.framing, Framing::Empty);
        let h = parsed("HTTP/1.1 304 Not Modified\r\n\r\n", false);
        assert_eq!(h.framing, Framing::Empty);
        let h = parsed("HTTP/1.1 200 OK\r\n\r\n", false);
        assert_eq!(h.framing, Framing::Eof);
        assert!(!h.keep_alive);
    }

    #[test]
    fn connection_close_and_http_1_0_do_not_keep_alive() {
        let h = parsed(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            false,
        );
        assert!(!h.keep_alive);
        let h = parsed("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false);
        assert!(!h.keep_alive);
        let h = parsed(
            "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
            false,
        );
        assert!(h.keep_alive);
    }

    #[test]
    fn close_in_any_connection_field_wins() {
        let h = parsed(
            "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            false,
        );
        assert!(!h.keep_alive);
        let h = parsed(
            "HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n",
            false,
        );
        assert!(!h.keep_alive);
    }

    #[test]
    fn connection_options_and_keep_alive_stay_out_of_the_map() {
        let h = parsed(
            "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nContent-Length: 0\r\nX-A: b\r\n\r\n",
            false,
        );
        assert!(h.keep_alive);
        assert!(!h.headers.contains_key(header::CONNECTION));
        assert!(!h.headers.contains_key("keep-alive"));
        assert_eq!(h.headers.len(), 2);
        // A field named in Connection stays for the hop-by-hop cleanup.
        let h = parsed(
            "HTTP/1.1 200 OK\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nContent-Length: 0\r\n\r\n",
            false,
        );
        assert!(!h.keep_alive);
        assert_eq!(h.headers[header::CONNECTION], "close, X-Hop");
        // A 101 keeps its fields for the tunnel.
        let h = parsed(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            false,
        );
        assert_eq!(h.framing, Framing::Upgrade);
        assert_eq!(h.headers[header::CONNECTION], "upgrade");
        let h = parsed(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: keep-alive\r\nUpgrade: websocket\r\n\r\n",
            false,
        );
        assert!(h.headers.contains_key(header::CONNECTION));
    }

    #[test]
    fn a_bad_length_is_no_error_when_transfer_encoding_or_no_body_frames_it() {
        let h = parsed(
            "HTTP/1.1 200 OK\r\nContent-Length: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        );
        assert_eq!(h.framing, Framing::Chunked);
        let h = parsed(
            "HTTP/1.1 204 No Content\r\nContent-Length: x\r\n\r\n",
            false,
        );
        assert_eq!(h.framing, Framing::Empty);
        let h = parsed(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        );
        assert_eq!(h.framing, Framing::Chunked);
        let h = parsed(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            false,
        );
        assert_eq!(h.framing, Framing::Eof);
        assert!(!h.keep_alive);
    }

    #[test]
    fn bad_content_lengths_are_errors_and_equal_lists_are_not() {
        for bad in ["x", "-1", "1, 2", "", "99999999999999999999"] {
            let raw = format!("HTTP/1.1 200 OK\r\nContent-Length: {bad}\r\n\r\n");
            assert!(
                matches!(parse(&raw, false), Err(DecodeError::ContentLength)),
                "{bad:?}"
            );
        }
        let h = parsed("HTTP/1.1 200 OK\r\nContent-Length: 4, 4\r\n\r\n", false);
        assert_eq!(h.framing, Framing::Length(4));
    }

    #[test]
    fn an_oversized_head_is_an_error() {
        let raw = format!("HTTP/1.1 200 OK\r\nX: {}", "a".repeat(MAX_HEAD));
        assert!(matches!(parse(&raw, false), Err(DecodeError::HeadTooLarge)));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse("SSH-2.0-OpenSSH\r\n\r\n", false).is_err());
    }

    fn decode_all(raw: &[u8]) -> Result<(Vec<u8>, Option<HeaderMap>), DecodeError> {
        let mut state = Chunked::Size;
        let mut buf = BytesMut::new();
        let (mut body, mut trailers) = (Vec::new(), None);
        // One byte at a time: every state must wait for more correctly.
        for &b in raw {
            buf.extend_from_slice(&[b]);
            while let Some(step) = state.decode(&mut buf)? {
                match step {
                    Step::Data(d) => body.extend_from_slice(&d),
                    Step::Trailers(t) => trailers = Some(t),
                    Step::End => return Ok((body, trailers)),
                }
            }
        }
        Err(DecodeError::Truncated)
    }

    #[test]
    fn chunked_bodies_decode_byte_by_byte_with_extensions_and_trailers() {
        let (body, trailers) =
            decode_all(b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 9\r\n\r\n").unwrap();
        assert_eq!(body, b"hello world");
        assert_eq!(trailers.unwrap()["x-sum"], "9");
        let (body, trailers) = decode_all(b"A\r\n0123456789\r\n0\r\n\r\n").unwrap();
        assert_eq!(body, b"0123456789");
        assert!(trailers.is_none());
    }

    #[test]
    fn broken_chunked_bodies_are_errors() {
        for bad in [
            &b"zz\r\n"[..],
            b"5\r\nhelloXX",
            b"5\n",
            b"1000000000000000\r\n",
            b"5 x\r\n",
        ] {
            assert!(
                matches!(decode_all(bad), Err(DecodeError::Chunked(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(matches!(
            decode_all(b"5\r\nhel"),
            Err(DecodeError::Truncated)
        ));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Any bytes: an error, a wait for more, or a head; never a panic.
        #[test]
        fn any_bytes_parse_without_panicking(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let mut buf = BytesMut::from(&raw[..]);
            let _ = head(&mut buf, false);
            let mut state = Chunked::Size;
            let mut buf = BytesMut::from(&raw[..]);
            while let Ok(Some(step)) = state.decode(&mut buf) {
                if matches!(step, Step::End) {
                    break;
                }
            }
        }

        /// A body cut into chunks of any sizes decodes to itself.
        #[test]
        fn chunked_round_trips(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048), cut in 1usize..300) {
            let mut raw = Vec::new();
            for chunk in body.chunks(cut) {
                raw.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                raw.extend_from_slice(chunk);
                raw.extend_from_slice(b"\r\n");
            }
            raw.extend_from_slice(b"0\r\n\r\n");
            let (decoded, _) = decode_all(&raw).unwrap();
            proptest::prop_assert_eq!(decoded, body);
        }
    }
}
