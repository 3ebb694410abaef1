//! PROXY protocol on listeners (`listeners[].proxy_protocol: true`): every
//! connection starts with a v1 (text) or v2 (binary) header from an L4
//! balancer, read before anything else (before the TLS handshake too), and
//! its source address becomes the connection's client address (HAProxy's
//! PROXY protocol spec; HAProxy's `accept-proxy`, nginx's `proxy_protocol`).
//!
//! A connection without a valid header within the deadline is closed.
//! `PROXY UNKNOWN` (v1) and the v2 `LOCAL` command (health checks of the
//! balancer itself) keep the real peer address, as the spec says; so do v2
//! headers of families other than TCP over IPv4/IPv6 (UNIX sockets, UDP).
//! TLVs are skipped.
//!
//! The parser is a pure function over the bytes seen so far ([`parse`]);
//! it never panics on any input (property-tested). Reading takes exactly
//! the header's bytes from the socket: it peeks, and consumes only what
//! belongs to the header, so nothing is left to replay.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::upstream::proxy_protocol::V2_SIGNATURE;

/// Longest v1 header, CRLF included (spec section 2.1).
pub const V1_MAX: usize = 107;
/// Longest v2 header accepted: the 16-byte prefix and up to 4 KiB of
/// addresses and TLVs (the spec allows 64 KiB; balancers send well under 1 KiB).
pub const V2_MAX: usize = 16 + 4096;

/// What the bytes seen so far are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse {
    /// A complete header of `len` bytes; `addrs` = (source, destination),
    /// `None` for `UNKNOWN`/`LOCAL`/other families (use the real peer).
    Done {
        /// Header length in bytes.
        len: usize,
        /// (client, destination) from the header.
        addrs: Option<(SocketAddr, SocketAddr)>,
    },
    /// A valid prefix: more bytes are needed. `Some(n)` when the total
    /// header length is known (v2).
    Partial(Option<usize>),
    /// Not a PROXY header.
    Invalid(&'static str),
}

/// Parses the start of `buf` as a PROXY v1 or v2 header.
pub fn parse(buf: &[u8]) -> Parse {
    let v1 = b"PROXY ";
    let n = buf.len().min(12);
    if buf[..n] == V2_SIGNATURE[..n] {
        return if buf.len() < 16 {
            Parse::Partial(None)
        } else {
            parse_v2(buf)
        };
    }
    let n = buf.len().min(v1.len());
    if buf[..n] == v1[..n] {
        return parse_v1(buf);
    }
    Parse::Invalid("no PROXY protocol signature")
}

fn parse_v1(buf: &[u8]) -> Parse {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX {
            Parse::Invalid("v1 header longer than 107 bytes")
        } else if window.contains(&b'\n') {
            Parse::Invalid("v1 header with a bare LF")
        } else {
            Parse::Partial(None)
        };
    };
    let len = end + 2;
    let Ok(line) = std::str::from_utf8(&buf[..end]) else {
        return Parse::Invalid("v1 header is not ASCII");
    };
    let mut parts = line.split(' ');
    parts.next(); // "PROXY"
    match parts.next() {
        Some("UNKNOWN") => Parse::Done { len, addrs: None },
        Some(family @ ("TCP4" | "TCP6")) => {
            let fields: Vec<&str> = parts.collect();
            let [src, dst, sport, dport] = fields[..] else {
                return Parse::Invalid("v1 header needs 4 address fields");
            };
            let ip = |s: &str| -> Option<IpAddr> {
                if family == "TCP4" {
                    s.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
                } else {
                    s.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
                }
            };
            // Ports: decimal without sign or leading zeros (0 itself allowed).
            let port = |s: &str| -> Option<u16> {
                if s.is_empty() || (s.len() > 1 && s.starts_with('0')) {
                    return None;
                }
                if !s.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                s.parse().ok()
            };
            match (ip(src), ip(dst), port(sport), port(dport)) {
                (Some(s), Some(d), Some(sp), Some(dp)) => Parse::Done {
                    len,
                    addrs: Some((SocketAddr::new(s, sp), SocketAddr::new(d, dp))),
                },
                _ => Parse::Invalid("v1 header with a bad address or port"),
            }
        }
        _ => Parse::Invalid("v1 header with an unknown protocol"),
    }
}

fn parse_v2(buf: &[u8]) -> Parse {
    let ver_cmd = buf[12];
    if ver_cmd >> 4 != 2 {
        return Parse::Invalid("v2 header with a version other than 2");
    }
    let command = ver_cmd & 0x0f;
    if command > 1 {
        return Parse::Invalid("v2 header with an unknown command");
    }
    let fam = buf[13];
    let body = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let len = 16 + body;
    if len > V2_MAX {
        return Parse::Invalid("v2 header longer than 4 KiB");
    }
    if buf.len() < len {
        return Parse::Partial(Some(len));
    }
    if command == 0 {
        // LOCAL: the balancer's own connection; the real peer stays.
        return Parse::Done { len, addrs: None };
    }
    let b = &buf[16..len];
    let addrs = match fam {
        0x11 => {
            if b.len() < 12 {
                return Parse::Invalid("v2 IPv4 header shorter than its addresses");
            }
            let ip = |o: usize| IpAddr::V4(Ipv4Addr::new(b[o], b[o + 1], b[o + 2], b[o + 3]));
            let port = |o: usize| u16::from_be_bytes([b[o], b[o + 1]]);
            Some((
                SocketAddr::new(ip(0), port(8)),
                SocketAddr::new(ip(4), port(10)),
            ))
        }
        0x21 => {
            if b.len() < 36 {
                return Parse::Invalid("v2 IPv6 header shorter than its addresses");
            }
            let ip = |o: usize| {
                let mut a = [0u8; 16];
                a.copy_from_slice(&b[o..o + 16]);
                IpAddr::V6(Ipv6Addr::from(a))
            };
            let port = |o: usize| u16::from_be_bytes([b[o], b[o + 1]]);
            Some((
                SocketAddr::new(ip(0), port(32)),
                SocketAddr::new(ip(16), port(34)),
            ))
        }
        // UNSPEC, UDP, UNIX: no TCP address to use; keep the real peer.
        _ => None,
    };
    Parse::Done { len, addrs }
}

/// Warns when a reload changes `proxy_protocol` of a listener that stays
/// bound: like the listener's other socket settings it applies at the next
/// start (or when the listener is removed and added back).
pub fn warn_on_reload(
    running: &crate::config::ListenerConfig,
    new: &crate::config::ListenerConfig,
) {
    if running.edge.proxy_protocol.is_some() != new.edge.proxy_protocol.is_some() {
        tracing::warn!(
            listener = %new.name,
            running = running.edge.proxy_protocol.is_some(),
            configured = new.edge.proxy_protocol.is_some(),
            "reload: proxy_protocol of a bound listener changes at the next start"
        );
    }
}

/// Why a connection's PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// The header did not arrive in time.
    #[error("no PROXY header within {0:?}")]
    Timeout(Duration),
    /// The bytes are not a PROXY header.
    #[error("invalid PROXY header: {0}")]
    Invalid(&'static str),
    /// The client closed or the read failed.
    #[error("reading the PROXY header: {0}")]
    Io(#[from] io::Error),
}

/// Reads the PROXY header at the start of `stream` within `deadline` and
/// returns (client, destination) from it, or `None` for `UNKNOWN`/`LOCAL`
/// (use the real addresses). Consumes exactly the header's bytes.
///
/// # Errors
/// [`HeaderError`]: timeout, invalid header, or the connection closed.
pub async fn read_header(
    stream: &mut TcpStream,
    deadline: Duration,
) -> Result<Option<(SocketAddr, SocketAddr)>, HeaderError> {
    tokio::time::timeout(deadline, read_inner(stream))
        .await
        .map_err(|_| HeaderError::Timeout(deadline))?
}

async fn read_inner(
    stream: &mut TcpStream,
) -> Result<Option<(SocketAddr, SocketAddr)>, HeaderError> {
    // Bytes consumed so far (all of them part of the header).
    let mut got: Vec<u8> = Vec::new();
    let mut peek = [0u8; 256];
    loop {
        let n = stream.peek(&mut peek).await?;
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
        }
        let mut view = got.clone();
        view.extend_from_slice(&peek[..n]);
        match parse(&view) {
            Parse::Done { len, addrs } => {
                let mut rest = vec![0u8; len - got.len()];
                stream.read_exact(&mut rest).await?;
                return Ok(addrs);
            }
            Parse::Partial(Some(total)) => {
                // v2 with a known length: read the rest of it exactly.
                let mut rest = vec![0u8; total - got.len()];
                stream.read_exact(&mut rest).await?;
                got.extend_from_slice(&rest);
                return match parse(&got) {
                    Parse::Done { addrs, .. } => Ok(addrs),
                    Parse::Invalid(m) => Err(HeaderError::Invalid(m)),
                    Parse::Partial(_) => Err(HeaderError::Invalid("v2 header length mismatch")),
                };
            }
            Parse::Partial(None) => {
                // Everything seen belongs to the header: consume it, then
                // wait for more (peek blocks again once the buffer is empty).
                let mut chunk = vec![0u8; n];
                stream.read_exact(&mut chunk).await?;
                got.extend_from_slice(&chunk);
            }
            Parse::Invalid(m) => return Err(HeaderError::Invalid(m)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v4(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v2_binary_round_trips_from_the_upstream_encoder() {
        for (c, l) in [
            ("192.0.2.7:5555", "198.51.100.1:443"),
            ("[2001:db8::1]:1", "[::1]:8443"),
        ] {
            let (c, l): (SocketAddr, SocketAddr) = (c.parse().unwrap(), l.parse().unwrap());
            for v in [
                crate::config::edge::ProxyVersion::V1,
                crate::config::edge::ProxyVersion::V2,
            ] {
                let h = crate::upstream::proxy_protocol::encode(v, c, l);
                let parsed = parse(&h);
                assert_eq!(
                    parsed,
                    Parse::Done {
                        len: h.len(),
                        addrs: Some((c, l))
                    },
                    "{v:?}"
                );
            }
        }
    }

    #[test]
    fn v1_examples() {
        let h = b"PROXY TCP4 192.0.2.1 192.0.2.2 56324 443\r\nGET /";
        assert_eq!(
            parse(h),
            Parse::Done {
                len: 42,
                addrs: Some((v4("192.0.2.1:56324"), v4("192.0.2.2:443")))
            }
        );
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n"),
            Parse::Done {
                len: 15,
                addrs: None
            }
        );
        assert_eq!(
            parse(b"PROXY UNKNOWN ff:: ::1 1 2\r\n"),
            Parse::Done {
                len: 28,
                addrs: None
            }
        );
        assert_eq!(parse(b"PROX"), Parse::Partial(None));
        assert_eq!(parse(b"PROXY TCP4 1.2.3.4"), Parse::Partial(None));
        assert!(matches!(parse(b"GET / HTTP/1.1\r\n"), Parse::Invalid(_)));
        assert!(matches!(
            parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n"),
            Parse::Invalid(_)
        ));
        assert!(matches!(
            parse(b"PROXY TCP4 ::1 ::1 1 2\r\n"),
            Parse::Invalid(_)
        ));
        assert!(matches!(
            parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"),
            Parse::Invalid(_)
        ));
        assert!(matches!(parse(&[b'P'; 200]), Parse::Invalid(_)));
        let long = [b"PROXY TCP6 ".as_slice(), &[b'1'; 120]].concat();
        assert!(matches!(parse(&long), Parse::Invalid(_)));
    }

    #[test]
    fn v2_examples() {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend_from_slice(&[
            0x21, 0x11, 0, 12, 10, 0, 0, 1, 10, 0, 0, 2, 0x1f, 0x90, 0, 80,
        ]);
        assert_eq!(parse(&h[..10]), Parse::Partial(None));
        assert_eq!(parse(&h[..20]), Parse::Partial(Some(28)));
        assert_eq!(
            parse(&h),
            Parse::Done {
                len: 28,
                addrs: Some((v4("10.0.0.1:8080"), v4("10.0.0.2:80")))
            }
        );
        // TLVs after the addresses are skipped.
        let mut t = h.clone();
        t[15] = 12 + 5;
        t.extend_from_slice(&[0x04, 0, 2, b'h', b'i']);
        assert!(matches!(
            parse(&t),
            Parse::Done {
                len: 33,
                addrs: Some(_)
            }
        ));
        // LOCAL: keep the peer.
        let mut l = V2_SIGNATURE.to_vec();
        l.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(
            parse(&l),
            Parse::Done {
                len: 16,
                addrs: None
            }
        );
        // Version 1 in the binary header, command 2, short address block.
        let mut bad = h.clone();
        bad[12] = 0x11;
        assert!(matches!(parse(&bad), Parse::Invalid(_)));
        bad[12] = 0x22;
        assert!(matches!(parse(&bad), Parse::Invalid(_)));
        let mut short = h.clone();
        short[15] = 4;
        assert!(matches!(parse(&short[..20]), Parse::Invalid(_)));
    }

    proptest! {
        /// Fuzz: no input panics, and a complete header never claims more
        /// bytes than it was given.
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Parse::Done { len, .. } = parse(&bytes) {
                prop_assert!(len <= bytes.len());
            }
        }

        /// Fuzz around valid headers: random bytes after a valid prefix.
        #[test]
        fn prefixes_and_mutations(
            v2 in any::<bool>(),
            cut in 0usize..60,
            flip in 0usize..60,
            byte in any::<u8>(),
        ) {
            let c = v4("192.0.2.1:1234");
            let l = v4("198.51.100.2:443");
            let version = if v2 { crate::config::edge::ProxyVersion::V2 } else { crate::config::edge::ProxyVersion::V1 };
            let mut h = crate::upstream::proxy_protocol::encode(version, c, l);
            h.extend_from_slice(b"GET / HTTP/1.1\r\n");
            let header_len = h.len() - 16;
            // Every strict prefix of the header is Partial.
            let cut = cut.min(header_len - 1);
            prop_assert!(matches!(parse(&h[..cut]), Parse::Partial(_)));
            // The whole header parses to its addresses.
            prop_assert_eq!(parse(&h), Parse::Done { len: header_len, addrs: Some((c, l)) });
            // A mutated byte never panics.
            let flip = flip.min(h.len() - 1);
            h[flip] = byte;
            let _ = parse(&h);
        }
    }
}
