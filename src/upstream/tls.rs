//! TLS to the servers: the client handshake over a connected TCP stream
//! (rustls, the group's config from `config::upstream_tls`), the stream type
//! the pools speak HTTP on, and a readable reason when verification fails.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use rustls::pki_types::ServerName;
use rustls::{AlertDescription, CertificateError};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::config::upstream_tls::{UpstreamProtocol, UpstreamTlsConfig};

/// A connection to a server: plain TCP, or TLS over TCP.
#[derive(Debug)]
pub enum UpstreamStream {
    /// Plain TCP (no `tls` in the group).
    Plain(TcpStream),
    /// TLS over TCP (boxed: the TLS state is large and the plain case common).
    Tls(Box<TlsStream<TcpStream>>),
}

/// Runs the TLS client handshake on `tcp` to the server at `host` (the host
/// part of its address): SNI and the verified name are the group's
/// `server_name`, else `host` (an IP address is verified against the
/// certificate's IP SANs). An `http2` group offers ALPN `h2` and requires
/// the server to select it; an `http1` group offers `http/1.1`.
///
/// # Errors
/// `InvalidData` with a readable reason: verification failed (unknown
/// issuer, name mismatch, expired, ...), the server refused the handshake
/// (for example it wants a client certificate), the server did not select
/// `h2`, or any other TLS or I/O error.
pub async fn handshake(
    config: &UpstreamTlsConfig,
    protocol: UpstreamProtocol,
    tcp: TcpStream,
    host: &str,
) -> io::Result<UpstreamStream> {
    let name = match &config.server_name {
        Some(n) => n.clone(),
        None => server_name_of(host)?,
    };
    let connector = TlsConnector::from(config.client_config(protocol).clone());
    let stream = connector
        .connect(name.clone(), tcp)
        .await
        .map_err(|e| describe(e, host, &name, protocol))?;
    if protocol == UpstreamProtocol::Http2 && stream.get_ref().1.alpn_protocol() != Some(b"h2") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "TLS handshake with {host}: the server did not select h2 by ALPN \
                 (protocol: http2 needs a server that speaks HTTP/2 over TLS)"
            ),
        ));
    }
    Ok(UpstreamStream::Tls(Box::new(stream)))
}

/// The default SNI/verified name of a server host: a DNS name, or an IP
/// address (brackets of an IPv6 literal removed).
fn server_name_of(host: &str) -> io::Result<ServerName<'static>> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{host:?} is not a valid TLS server name; set tls.server_name"),
        )
    })
}

/// Turns a handshake error into one readable line that says why.
fn describe(
    e: io::Error,
    host: &str,
    name: &ServerName<'_>,
    protocol: UpstreamProtocol,
) -> io::Error {
    let name = name.to_str();
    let reason = match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(c)) => {
            format!("certificate verification failed: {}", cert_reason(c, &name))
        }
        Some(rustls::Error::AlertReceived(AlertDescription::NoApplicationProtocol)) => {
            let offered = match protocol {
                UpstreamProtocol::Http1 => "http/1.1",
                UpstreamProtocol::Http2 => "h2",
            };
            format!(
                "the server did not select {offered} by ALPN (no_application_protocol alert):                  check the group's protocol"
            )
        }
        Some(rustls::Error::AlertReceived(alert)) => match alert {
            AlertDescription::CertificateRequired
            | AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::HandshakeFailure => format!(
                "the server refused the handshake ({alert:?}): it may require a client \
                 certificate (tls.client_cert) it trusts"
            ),
            other => format!("the server sent TLS alert {other:?}"),
        },
        Some(other) => format!("TLS error: {other}"),
        None => format!("{e}"),
    };
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("TLS handshake with {host} (server name {name}): {reason}"),
    )
}

fn cert_reason(c: &CertificateError, name: &str) -> String {
    match c {
        CertificateError::UnknownIssuer => {
            "unknown issuer (not signed by a trusted CA: check tls.ca)".into()
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            format!(
                "name mismatch (the certificate is not valid for {name}: check tls.server_name)"
            )
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "certificate expired".into()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "certificate not valid yet".into()
        }
        CertificateError::Revoked => "certificate revoked".into(),
        CertificateError::BadSignature => "bad certificate signature".into(),
        other => format!("{other:?}"),
    }
}

impl AsyncRead for UpstreamStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamStream::Plain(s) => s.is_write_vectored(),
            UpstreamStream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_flush(cx),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
