//! The HTTPS client of the ACME directory: one HTTP/1.1 connection per
//! request (hyper over tokio-rustls), trusting `directory_ca` or the system
//! store. ACME exchanges are a handful of requests per order, so pooling
//! would buy nothing.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use hyper_util::rt::TokioIo;
use instant_acme::{BodyWrapper, BytesResponse, Error, HttpClient};
use rustls::RootCertStore;
use rustls_pki_types::ServerName;

/// Longest time one ACME request (connect, TLS, exchange) may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads the PEM certificates of `path` into a root store.
///
/// # Errors
/// When the file is unreadable or holds no usable certificate.
pub fn load_roots(path: &Path) -> Result<RootCertStore, String> {
    crate::config::load::load_roots(path, "certificate")
}

/// An [`HttpClient`] for instant-acme over weir's own hyper and rustls.
pub struct AcmeHttp {
    tls: tokio_rustls::TlsConnector,
}

impl AcmeHttp {
    /// A client trusting the roots in `ca` (PEM), or the system's when `None`.
    ///
    /// # Errors
    /// When the roots cannot be loaded.
    pub fn new(ca: Option<&Path>) -> Result<Self, String> {
        let roots = match ca {
            Some(p) => load_roots(p)?,
            None => {
                let mut roots = RootCertStore::empty();
                for c in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(c);
                }
                roots
            }
        };
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(AcmeHttp {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn send(
    tls: tokio_rustls::TlsConnector,
    mut req: Request<BodyWrapper<Bytes>>,
) -> Result<BytesResponse, BoxError> {
    let uri = req.uri().clone();
    if uri.scheme_str() != Some("https") {
        return Err(format!("{uri}: only https:// is supported").into());
    }
    let host = uri.host().ok_or("URL without host")?.to_owned();
    let port = uri.port_u16().unwrap_or(443);
    let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port)).await?;
    let name = ServerName::try_from(host.trim_matches(['[', ']']).to_owned())?;
    let stream = tls.connect(name, tcp).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let authority = match uri.port_u16() {
        Some(p) => format!("{host}:{p}"),
        None => host,
    };
    req.headers_mut()
        .insert(http::header::HOST, http::HeaderValue::from_str(&authority)?);
    // HTTP/1.1 origin form: the path and query only.
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    *req.uri_mut() = path.parse()?;
    let rsp = sender.send_request(req).await?;
    Ok(BytesResponse::from(rsp))
}

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, Error>> + Send>> {
        let tls = self.tls.clone();
        Box::pin(async move {
            match tokio::time::timeout(REQUEST_TIMEOUT, send(tls, req)).await {
                Ok(Ok(r)) => Ok(r),
                Ok(Err(e)) => Err(Error::Other(e)),
                Err(_) => Err(Error::Str("ACME request timed out")),
            }
        })
    }
}
