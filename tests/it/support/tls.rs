//! TLS clients for tests: one way to build the rustls client config (the
//! aws-lc-rs provider weir uses, trusted roots, ALPN, optional client
//! certificate) and to connect with SNI.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// The roots of a PEM bundle.
pub fn roots_of(pem: &[u8]) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pem) {
        roots
            .add(c.expect("a PEM certificate"))
            .expect("a usable root");
    }
    roots
}

/// The development CA (`certs-dev/ca.crt`), which signed `certs-dev/*.crt`.
pub fn dev_roots() -> RootCertStore {
    roots_of(&std::fs::read(super::path("certs-dev/ca.crt")).expect("certs-dev/ca.crt"))
}

/// What a test client offers beyond its roots.
#[derive(Default)]
pub struct ClientOptions {
    /// ALPN protocols, in order (`b"h2"`, `b"http/1.1"`); none by default.
    pub alpn: Vec<Vec<u8>>,
    /// TLS versions; rustls's safe defaults (1.3 and 1.2) when `None`.
    pub versions: Option<Vec<&'static SupportedProtocolVersion>>,
    /// A client certificate chain and its key (mutual TLS).
    pub cert: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
}

/// A client config trusting `roots` and offering the ALPN protocols `alpn`.
pub fn client_config(roots: RootCertStore, alpn: &[&[u8]]) -> ClientConfig {
    client_config_with(
        roots,
        ClientOptions {
            alpn: alpn.iter().map(|p| p.to_vec()).collect(),
            ..ClientOptions::default()
        },
    )
}

/// A client config trusting `roots` with `options`.
pub fn client_config_with(roots: RootCertStore, options: ClientOptions) -> ClientConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider);
    let builder = match &options.versions {
        Some(v) => builder.with_protocol_versions(v),
        None => builder.with_safe_default_protocol_versions(),
    }
    .expect("supported TLS versions")
    .with_root_certificates(roots);
    let mut config = match options.cert {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .expect("a usable client certificate"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = options.alpn;
    config
}

/// A TLS connection to `addr` with SNI `sni` (handshake within 10 s); the
/// handshake error, if any.
pub async fn try_connect(
    addr: SocketAddr,
    config: ClientConfig,
    sni: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    handshake(tcp, config, sni).await
}

/// The client side of a TLS handshake over `tcp` (already connected, e.g.
/// after a PROXY protocol header), SNI `sni`, within 10 s.
pub async fn handshake(
    tcp: TcpStream,
    config: ClientConfig,
    sni: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let name = ServerName::try_from(sni.to_string()).expect("a valid SNI name");
    super::within(
        10,
        "TLS handshake",
        TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
}

/// A TLS connection to `addr` with SNI `sni`; panics naming the SNI when the
/// handshake fails.
pub async fn connect(addr: SocketAddr, config: ClientConfig, sni: &str) -> TlsStream<TcpStream> {
    try_connect(addr, config, sni)
        .await
        .unwrap_or_else(|e| panic!("TLS handshake with SNI {sni}: {e}"))
}
