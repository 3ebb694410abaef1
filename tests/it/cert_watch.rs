//! Certificate files watched (`listeners[].tls.certificates`): a pair
//! renamed over or written in place serves new handshakes without a reload;
//! a garbage file or a key that does not match leaves the old pair serving
//! and is logged with the file name. Real time (weir looks every second); the
//! served certificate is read by a real rustls client.

use crate::support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use support::*;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Accepts any server certificate: the test only reads which one is served.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The leaf certificate `addr` serves in a fresh handshake.
async fn served(addr: SocketAddr) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = within(
        10,
        "TLS handshake",
        TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").unwrap(), tcp),
    )
    .await
    .expect("handshake");
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// A certificate for localhost signed by a fresh CA: (cert PEM, key PEM, DER).
fn pair(cn: &str) -> (String, String, Vec<u8>) {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(DnType::CommonName, format!("{cn} CA"));
    let ca = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
    let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &ca).unwrap();
    (cert.pem(), key.serialize_pem(), cert.der().to_vec())
}

fn dir(name: &str) -> TempDir {
    TempDir::new(&format!("cert-watch-{name}"))
}

/// Whether the process-wide log capture (every thread: the watcher has its
/// own) holds `needle`.
fn logged(needle: &str) -> bool {
    support::logs().contains(needle)
}

async fn start(d: &Path) -> (weir::Running, support::Upstream, String) {
    support::capture_logs();
    let up = spawn_upstream("a").await;
    let yaml = format!(
        "listeners:\n  - name: https\n    address: 127.0.0.1:0\n    tls:\n      certificates:\n\
         \x20       - cert: {0}/cert.pem\n          key: {0}/key.pem\n\
         routes:\n  - group: g\ngroups:\n  g:\n    servers:\n{1}",
        d.display(),
        servers_yaml(&[(&up, 1)])
    );
    let running = weir::Proxy::new(config(&yaml))
        .start()
        .await
        .expect("proxy starts");
    (running, up, yaml)
}

/// Waits (real time, at most 10 s) until `addr` serves `want`.
async fn serves_within(addr: SocketAddr, want: &[u8]) -> Duration {
    let t0 = Instant::now();
    loop {
        if served(addr).await == want {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the new certificate was not served within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renamed_over_certificate_serves_new_handshakes() {
    let d = dir("rename");
    let (c1, k1, der1) = pair("one");
    std::fs::write(d.join("cert.pem"), &c1).unwrap();
    std::fs::write(d.join("key.pem"), &k1).unwrap();
    let (running, _up, _) = start(&d).await;
    let addr = running.local_addr("https").unwrap();
    assert_eq!(served(addr).await, der1);

    // As certbot and cert-manager do: write aside, rename over (new inodes).
    let (c2, k2, der2) = pair("two");
    std::fs::write(d.join("key.pem.new"), &k2).unwrap();
    std::fs::write(d.join("cert.pem.new"), &c2).unwrap();
    std::fs::rename(d.join("key.pem.new"), d.join("key.pem")).unwrap();
    std::fs::rename(d.join("cert.pem.new"), d.join("cert.pem")).unwrap();
    serves_within(addr, &der2).await;
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_written_in_place_serves_new_handshakes() {
    let d = dir("inplace");
    let (c1, k1, der1) = pair("one");
    std::fs::write(d.join("cert.pem"), &c1).unwrap();
    std::fs::write(d.join("key.pem"), &k1).unwrap();
    let (running, _up, yaml) = start(&d).await;
    let addr = running.local_addr("https").unwrap();
    assert_eq!(served(addr).await, der1);

    let (c2, k2, der2) = pair("two");
    std::fs::write(d.join("key.pem"), &k2).unwrap();
    std::fs::write(d.join("cert.pem"), &c2).unwrap();
    serves_within(addr, &der2).await;

    // A reload keeps watching (once): a third pair still gets picked up.
    running.apply(config(&yaml)).await.expect("reload");
    assert_eq!(served(addr).await, der2);
    let (c3, k3, der3) = pair("three");
    std::fs::write(d.join("key.pem"), &k3).unwrap();
    std::fs::write(d.join("cert.pem"), &c3).unwrap();
    serves_within(addr, &der3).await;
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_certificate_leaves_the_old_one_and_is_logged() {
    let d = dir("garbage");
    let (c1, k1, der1) = pair("one");
    std::fs::write(d.join("cert.pem"), &c1).unwrap();
    std::fs::write(d.join("key.pem"), &k1).unwrap();
    let (running, _up, _) = start(&d).await;
    let addr = running.local_addr("https").unwrap();

    std::fs::write(d.join("cert.pem.new"), "this is not a certificate\n").unwrap();
    std::fs::rename(d.join("cert.pem.new"), d.join("cert.pem")).unwrap();
    let file = d.join("cert.pem").display().to_string();
    let t0 = Instant::now();
    while !logged(&file) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the bad file was not logged"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(logged("the old certificate stays"));
    assert_eq!(served(addr).await, der1, "the old certificate serves");

    // Fixed again: the pair is picked up.
    let (c2, k2, der2) = pair("two");
    std::fs::write(d.join("key.pem"), &k2).unwrap();
    std::fs::write(d.join("cert.pem"), &c2).unwrap();
    serves_within(addr, &der2).await;
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mismatched_key_leaves_the_old_pair() {
    let d = dir("mismatch");
    let (c1, k1, der1) = pair("one");
    std::fs::write(d.join("cert.pem"), &c1).unwrap();
    std::fs::write(d.join("key.pem"), &k1).unwrap();
    let (running, _up, _) = start(&d).await;
    let addr = running.local_addr("https").unwrap();

    // A new certificate, the old key: does not match.
    let (c2, _k2, _) = pair("two");
    std::fs::write(d.join("cert.pem"), &c2).unwrap();
    let file = d.join("key.pem").display().to_string();
    let t0 = Instant::now();
    while !logged(&format!("file={file}")) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the mismatched pair was not logged"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..3 {
        assert_eq!(served(addr).await, der1, "the old pair serves");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    running.shutdown().await;
}
