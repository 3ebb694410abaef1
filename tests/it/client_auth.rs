//! `listeners[].tls.client_auth` with an rcgen-made client CA: `required:
//! true` refuses a client without a (valid) certificate; a valid one passes
//! and its subject and SAN reach the server in `x-client-cert` (Envoy's
//! XFCC shape); a client-sent `x-client-cert` is always removed; `required:
//! false` serves every client and forwards only verified certificates.

use crate::support;

use std::net::SocketAddr;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

/// A client certificate (chain of one) and its key, signed by `issuer`.
fn client_cert(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    cn: &str,
) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let mut p = CertificateParams::new(vec!["client.example.com".to_string()]).unwrap();
    // Subject O=Acme, CN=...: RFC 2253 writes it most specific first.
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::OrganizationName, "Acme");
    p.distinguished_name.push(DnType::CommonName, cn);
    p.subject_alt_names.push(SanType::URI(
        "spiffe://example.com/client".try_into().unwrap(),
    ));
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, issuer).unwrap();
    (
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
}

/// Writes `issuer`'s certificate to a fresh temporary PEM file.
fn ca_file(issuer: &CertifiedIssuer<'static, KeyPair>) -> TempFile {
    TempFile::new("client-ca", "ca.pem", issuer.pem())
}

fn yaml(up: &Upstream, ca: &std::path::Path, required: bool) -> String {
    ConfigYaml::new()
        .listener_name(None)
        .listener_extra(&format!(
            "    tls:\n      certificates:\n\
             \x20       - cert: certs-dev/localhost.crt\n          key: certs-dev/localhost.key\n\
             \x20     client_auth:\n        ca: {}\n        required: {required}\n",
            ca.display()
        ))
        .listener("plain", "")
        .group("g", "", &servers_yaml(&[(up, 1)]))
        .build()
}

fn client_config(
    cert: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> rustls::ClientConfig {
    support::tls::client_config_with(
        support::tls::dev_roots(),
        support::tls::ClientOptions {
            cert,
            ..Default::default()
        },
    )
}

/// One GET over TLS with a forged `x-client-cert`; the raw answer, or
/// `None` when the handshake or the exchange failed.
async fn tls_get(addr: SocketAddr, config: rustls::ClientConfig) -> Option<String> {
    let mut tls = support::tls::try_connect(addr, config, "localhost")
        .await
        .ok()?;
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nx-client-cert: Hash=forged;Subject=\"CN=admin\"\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut out = String::new();
    within(10, "answer", tls.read_to_string(&mut out))
        .await
        .ok()?;
    (!out.is_empty()).then_some(out)
}

fn seen_cert(up: &Upstream) -> Option<String> {
    let seen = up.last_seen()?;
    let all: Vec<_> = seen.headers.get_all("x-client-cert").iter().collect();
    assert!(all.len() <= 1, "several x-client-cert headers: {all:?}");
    all.first().map(|v| v.to_str().unwrap().to_string())
}

#[tokio::test]
async fn required_refuses_clients_without_a_valid_certificate() {
    let up = spawn_upstream("mtls").await;
    let good = ca("clients");
    let other = ca("someone else");
    let ca_path = ca_file(&good);
    let proxy = start_proxy(&yaml(&up, &ca_path, true)).await;
    let addr = proxy.local_addrs()[0].1;
    assert!(
        tls_get(addr, client_config(None)).await.is_none(),
        "served without a certificate"
    );
    assert!(
        tls_get(addr, client_config(Some(client_cert(&other, "intruder"))))
            .await
            .is_none(),
        "served a certificate of another CA"
    );
    assert_eq!(up.hits(), 0);
    let out = tls_get(addr, client_config(Some(client_cert(&good, "client-1"))))
        .await
        .expect("a valid certificate is served");
    assert_eq!(raw_status(&out), 200, "{out}");
    let xfcc = seen_cert(&up).expect("x-client-cert reaches the server");
    assert!(xfcc.starts_with("Hash="), "{xfcc}");
    assert!(!xfcc.contains("forged"), "{xfcc}");
    assert!(xfcc.contains(";Subject=\"CN=client-1,O=Acme\""), "{xfcc}");
    assert!(xfcc.contains(";URI=spiffe://example.com/client"), "{xfcc}");
    assert!(xfcc.contains(";DNS=client.example.com"), "{xfcc}");
    // The plain listener removes a forged header too.
    let plain = proxy.local_addrs()[1].1;
    let out = raw_exchange(
        plain,
        b"GET / HTTP/1.1\r\nHost: x\r\nx-client-cert: Hash=forged\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&out), 200);
    assert_eq!(seen_cert(&up), None);
    proxy.shutdown().await;
    let _ = std::fs::remove_file(ca_path);
}

#[tokio::test]
async fn optional_serves_everyone_and_forwards_only_verified_certificates() {
    let up = spawn_upstream("optional").await;
    let good = ca("clients");
    let other = ca("someone else");
    let ca_path = ca_file(&good);
    let proxy = start_proxy(&yaml(&up, &ca_path, false)).await;
    let addr = proxy.local_addrs()[0].1;
    let out = tls_get(addr, client_config(None))
        .await
        .expect("served without a certificate");
    assert_eq!(raw_status(&out), 200);
    assert_eq!(seen_cert(&up), None, "forged header must be removed");
    let out = tls_get(addr, client_config(Some(client_cert(&other, "intruder"))))
        .await
        .expect("served with an unverified certificate");
    assert_eq!(raw_status(&out), 200);
    assert_eq!(
        seen_cert(&up),
        None,
        "an unverified certificate was forwarded"
    );
    let out = tls_get(addr, client_config(Some(client_cert(&good, "client-2"))))
        .await
        .expect("served with a valid certificate");
    assert_eq!(raw_status(&out), 200);
    let xfcc = seen_cert(&up).unwrap();
    assert!(xfcc.contains("Subject=\"CN=client-2,O=Acme\""), "{xfcc}");
    proxy.shutdown().await;
    let _ = std::fs::remove_file(ca_path);
}

#[test]
fn a_bad_ca_file_is_a_config_error_naming_the_key() {
    let yaml = "listeners:\n  - address: 127.0.0.1:0\n    tls:\n      certificates:\n        - cert: certs-dev/localhost.crt\n          key: certs-dev/localhost.key\n      client_auth:\n        ca: no/such/ca.pem\nroutes:\n  - group: g\ngroups:\n  g:\n    servers:\n      - address: 127.0.0.1:9\n";
    let e = weir::config::load_str(yaml, &root().join("test.yaml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("test.yaml:8:") && e.contains("listeners[0].tls.client_auth.ca"),
        "{e}"
    );
}
