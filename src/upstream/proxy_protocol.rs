//! PROXY protocol towards servers (`groups.*.proxy_protocol: v1 | v2`):
//! the header HAProxy's `send-proxy` / `send-proxy-v2` writes first on each
//! new upstream connection, naming the client and the address it connected
//! to (HAProxy's PROXY protocol spec, sections 2.1 and 2.2).
//!
//! Connections that carried a header name one client, so a group with
//! `proxy_protocol` does not pool them (`upstream/group.rs` sets its pool
//! size to 0). Health probes send no header.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::config::edge::ProxyVersion;

/// The 12-byte signature that starts a v2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The PROXY header for a TCP connection from `client` to `local`.
///
/// v1: `PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\r\n`; a client and a
/// local address of different families are written as IPv6 (IPv4 mapped).
/// v2: version 2, command PROXY, `AF_INET`/`AF_INET6` over `STREAM`, no TLVs.
pub fn encode(version: ProxyVersion, client: SocketAddr, local: SocketAddr) -> Vec<u8> {
    let (client, local) = same_family(client, local);
    match version {
        ProxyVersion::V1 => {
            let family = if client.is_ipv4() { "TCP4" } else { "TCP6" };
            format!(
                "PROXY {family} {} {} {} {}\r\n",
                client.ip(),
                local.ip(),
                client.port(),
                local.port()
            )
            .into_bytes()
        }
        ProxyVersion::V2 => {
            let mut out = Vec::with_capacity(16 + 36);
            out.extend_from_slice(&V2_SIGNATURE);
            out.push(0x21); // version 2, PROXY
            match (client, local) {
                (SocketAddr::V4(c), SocketAddr::V4(l)) => {
                    out.push(0x11); // AF_INET, STREAM
                    out.extend_from_slice(&12u16.to_be_bytes());
                    out.extend_from_slice(&c.ip().octets());
                    out.extend_from_slice(&l.ip().octets());
                    out.extend_from_slice(&c.port().to_be_bytes());
                    out.extend_from_slice(&l.port().to_be_bytes());
                }
                (c, l) => {
                    let v6 = |a: SocketAddr| match a.ip() {
                        std::net::IpAddr::V6(ip) => ip,
                        std::net::IpAddr::V4(ip) => ip.to_ipv6_mapped(),
                    };
                    out.push(0x21); // AF_INET6, STREAM
                    out.extend_from_slice(&36u16.to_be_bytes());
                    out.extend_from_slice(&v6(c).octets());
                    out.extend_from_slice(&v6(l).octets());
                    out.extend_from_slice(&c.port().to_be_bytes());
                    out.extend_from_slice(&l.port().to_be_bytes());
                }
            }
            out
        }
    }
}

/// Both addresses in one family: IPv6 (IPv4-mapped) when they differ.
fn same_family(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    if a.is_ipv4() == b.is_ipv4() {
        return (a, b);
    }
    let v6 = |s: SocketAddr| match s {
        SocketAddr::V4(v4) => SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port()),
        v6 => v6,
    };
    (v6(a), v6(b))
}

/// Writes the PROXY header of `version` for `client` → `local` on a freshly
/// connected `stream`, before any other byte.
///
/// # Errors
/// The write error (the connection is then unusable, as a failed connect).
pub async fn write_header<S: AsyncWrite + Unpin>(
    stream: &mut S,
    version: ProxyVersion,
    client: SocketAddr,
    local: SocketAddr,
) -> io::Result<()> {
    stream.write_all(&encode(version, client, local)).await
}

/// The client of a request and the address it connected to, carried in the
/// upstream request's extensions for [`write_header`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddrs {
    /// The client (after PROXY protocol in, the address from its header).
    pub client: SocketAddr,
    /// The address the client connected to.
    pub local: SocketAddr,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_text() {
        let h = encode(
            ProxyVersion::V1,
            "192.0.2.7:5555".parse().unwrap(),
            "198.51.100.1:443".parse().unwrap(),
        );
        assert_eq!(h, b"PROXY TCP4 192.0.2.7 198.51.100.1 5555 443\r\n");
        let h = encode(
            ProxyVersion::V1,
            "[2001:db8::1]:1".parse().unwrap(),
            "127.0.0.1:80".parse().unwrap(),
        );
        assert_eq!(h, b"PROXY TCP6 2001:db8::1 ::ffff:127.0.0.1 1 80\r\n");
    }
}
