//! Support for the upstream-protocol tests (tests/it/upstream_tls.rs,
//! tests/it/upstream_h2.rs, tests/it/grpc.rs): a test PKI made with rcgen, real
//! TLS servers (hyper + tokio-rustls) that answer with the HTTP version they
//! saw, a log capture, and nginx discovery.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

/// A directory of test certificates under the system temp dir, removed when dropped.
pub struct Pki {
    pub dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
    /// The CA certificate (PEM file).
    pub ca_path: PathBuf,
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

impl Pki {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!(
            "weir-{name}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("weir test CA {name}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let ca_path = dir.join("ca.pem");
        std::fs::write(&ca_path, ca.pem()).unwrap();
        Pki { dir, ca, ca_path }
    }

    /// Issues a server certificate for `names` (DNS names or IP addresses);
    /// returns (cert path, key path).
    pub fn server(&self, file: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        self.issue(file, names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// Issues a server certificate for `names` that expired in 2020.
    pub fn server_expired(&self, file: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        self.issue_with(file, names, ExtendedKeyUsagePurpose::ServerAuth, |p| {
            p.not_before = rcgen::date_time_ymd(2019, 1, 1);
            p.not_after = rcgen::date_time_ymd(2020, 1, 1);
        })
    }

    /// Issues a client certificate with CN `cn`; returns (cert path, key path).
    pub fn client(&self, file: &str, cn: &str) -> (PathBuf, PathBuf) {
        self.issue(file, &[cn], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(
        &self,
        file: &str,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
    ) -> (PathBuf, PathBuf) {
        self.issue_with(file, names, usage, |_| {})
    }

    fn issue_with(
        &self,
        file: &str,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
        edit: impl FnOnce(&mut CertificateParams),
    ) -> (PathBuf, PathBuf) {
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, names[0].to_string());
        params.extended_key_usages = vec![usage];
        edit(&mut params);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let cert_path = self.dir.join(format!("{file}.crt"));
        let key_path = self.dir.join(format!("{file}.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A rustls server config for `cert`/`key`, offering `alpn`; with
/// `client_ca`, client certificates signed by it are required.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
    alpn: &[&[u8]],
) -> Arc<ServerConfig> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca).unwrap() {
                roots.add(c.unwrap()).unwrap();
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A real TLS server on 127.0.0.1 (HTTP/1.1 and HTTP/2 by ALPN): answers
/// every request with `x-server: NAME`, `x-version: HTTP/x` and body NAME.
pub struct TlsUpstream {
    pub addr: SocketAddr,
    /// TLS handshakes completed.
    pub handshakes: Arc<AtomicUsize>,
    /// Requests served.
    pub hits: Arc<AtomicUsize>,
    /// Handshakes that resumed an earlier session.
    pub resumed: Arc<AtomicUsize>,
    /// The accept loop, aborted when the upstream is dropped.
    _tasks: JoinSet<()>,
}

/// Starts a [`TlsUpstream`] named `name` with `config`.
pub async fn spawn_tls_upstream(name: &str, config: Arc<ServerConfig>) -> TlsUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let hits = Arc::new(AtomicUsize::new(0));
    let resumed = Arc::new(AtomicUsize::new(0));
    let r = resumed.clone();
    let mut tasks = JoinSet::new();
    let acceptor = TlsAcceptor::from(config);
    let name = name.to_string();
    let (h, n) = (handshakes.clone(), hits.clone());
    tasks.spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let (h, n, name, r) = (h.clone(), n.clone(), name.clone(), r.clone());
            conns.spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                h.fetch_add(1, Ordering::SeqCst);
                if tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
                    r.fetch_add(1, Ordering::SeqCst);
                }
                let svc = service_fn(move |req: Request<Incoming>| {
                    n.fetch_add(1, Ordering::SeqCst);
                    let resp = Response::builder()
                        .header("x-server", name.as_str())
                        .header("x-version", format!("{:?}", req.version()))
                        .body(Full::new(Bytes::from(name.clone())))
                        .unwrap();
                    async move { Ok::<_, Infallible>(resp) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    TlsUpstream {
        addr,
        handshakes,
        hits,
        resumed,
        _tasks: tasks,
    }
}

/// The nginx binary, if installed (`NGINX` env var, PATH, /usr/sbin).
pub fn nginx() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NGINX") {
        return Some(PathBuf::from(p));
    }
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/usr/local/sbin"])
    {
        let p = Path::new(dir).join("nginx");
        if p.is_file() {
            return Some(p);
        }
    }
    None
}

/// A free TCP port on 127.0.0.1 (for servers started as processes).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
