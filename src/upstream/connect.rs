//! Opening a connection to a server: TCP connect, then (for groups with
//! `tls`) the TLS handshake. Both the HTTP/1.1 pool and the HTTP/2 pool
//! connect through [`open`].
//!
//! Anything that must be written on a new connection before TLS (a PROXY
//! protocol header) goes between [`connect_stream`] and the handshake in
//! [`open`].

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use http::uri::Authority;
use tokio::net::TcpStream;

use super::proxy_protocol::ClientAddrs;
use super::tls::{self, UpstreamStream};
use crate::config::edge::ProxyVersion;
use crate::config::upstream_tls::{UpstreamProtocol, UpstreamTlsConfig};

/// TCP keepalive probe interval on upstream connections.
const TCP_KEEPALIVE: Duration = Duration::from_secs(30);

/// How to open connections to the servers of one group.
#[derive(Debug, Clone, Copy)]
pub struct Connector<'a> {
    /// TCP connect timeout; it bounds the TLS handshake too.
    pub timeout: Duration,
    /// The group's TLS settings; `None` = plain TCP.
    pub tls: Option<&'a UpstreamTlsConfig>,
    /// The protocol that will run on the connection (selects the ALPN offer).
    pub protocol: UpstreamProtocol,
    /// `groups.*.proxy_protocol`: the PROXY header (version, and the
    /// client and local addresses it names) written first, before TLS.
    pub proxy: Option<(ProxyVersion, ClientAddrs)>,
}

/// Connects a TCP stream to `address` (to `resolved` when the address was
/// resolved at load), with `TCP_NODELAY` and TCP keepalive set.
///
/// # Errors
/// The connect error (refused, unreachable, DNS).
pub async fn connect_stream(
    address: &Authority,
    resolved: Option<SocketAddr>,
) -> io::Result<TcpStream> {
    let stream = match resolved {
        Some(addr) => TcpStream::connect(addr).await?,
        None => TcpStream::connect(address.as_str()).await?,
    };
    stream.set_nodelay(true)?;
    let keepalive = socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE);
    let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
    Ok(stream)
}

/// Opens a connection to `address`: TCP, then TLS when the group has `tls`,
/// all within `connector.timeout`.
///
/// # Errors
/// The connect or handshake error (with a readable reason for certificate
/// verification failures), or `TimedOut` after the timeout.
pub async fn open(
    address: &Authority,
    resolved: Option<SocketAddr>,
    connector: Connector<'_>,
) -> io::Result<UpstreamStream> {
    let attempt = async {
        let mut tcp = connect_stream(address, resolved).await?;
        if let Some((version, c)) = connector.proxy {
            super::proxy_protocol::write_header(&mut tcp, version, c.client, c.local).await?;
        }
        match connector.tls {
            None => Ok(UpstreamStream::Plain(tcp)),
            Some(t) => tls::handshake(t, connector.protocol, tcp, address.host()).await,
        }
    };
    tokio::time::timeout(connector.timeout, attempt)
        .await
        .map_err(|_| {
            let what = if connector.tls.is_some() {
                "connect and TLS handshake"
            } else {
                "connect"
            };
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{what} timed out after {:?}", connector.timeout),
            )
        })?
}
