//! `listeners[].tls.acme` against a real ACME server: Pebble (Debian
//! package `pebble`) with `pebble-challtestsrv` as its DNS, on loopback.
//! weir obtains a certificate by HTTP-01 (answered on its plain listener)
//! and by TLS-ALPN-01 (on the TLS listener), serves it to a client that
//! trusts only Pebble's root, and a restart reuses it from storage (the
//! same certificate, no new order). Skipped with a message when Pebble is
//! not installed (CI installs it).

use crate::support;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DOMAIN: &str = "weir.example.test";

fn have_pebble() -> bool {
    let ok = |b: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {b}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if ok("pebble") && ok("pebble-challtestsrv") {
        return true;
    }
    eprintln!("SKIPPED: pebble / pebble-challtestsrv not installed (apt-get install pebble)");
    false
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the child processes when the test ends (pass or fail).
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A running Pebble with its DNS and the CA of its HTTPS certificate.
struct Pebble {
    _procs: Procs,
    dir: PathBuf,
    directory: String,
    management: SocketAddr,
    https_ca: PathBuf,
}

/// Starts pebble-challtestsrv (DNS: every A query → 127.0.0.1) and Pebble
/// validating HTTP-01 on `http_port` and TLS-ALPN-01 on `tls_port`.
async fn pebble(tag: &str, http_port: u16, tls_port: u16) -> Pebble {
    let dir = std::env::temp_dir().join(format!("weir-acme-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // Pebble's own HTTPS certificate, from a throwaway CA.
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("pebble.crt"), leaf.pem()).unwrap();
    std::fs::write(dir.join("pebble.key"), leaf_key.serialize_pem()).unwrap();
    let (acme, mgmt, dns, dns_mgmt) = (free_port(), free_port(), free_port(), free_port());
    let config = serde_json::json!({"pebble": {
        "listenAddress": format!("127.0.0.1:{acme}"),
        "managementListenAddress": format!("127.0.0.1:{mgmt}"),
        "certificate": dir.join("pebble.crt"),
        "privateKey": dir.join("pebble.key"),
        "httpPort": http_port,
        "tlsPort": tls_port,
        "ocspResponderURL": "",
        "externalAccountBindingRequired": false
    }});
    std::fs::write(dir.join("pebble.json"), config.to_string()).unwrap();
    let log = |name: &str| std::fs::File::create(dir.join(name)).unwrap();
    let dns_srv = Command::new("pebble-challtestsrv")
        .args(["-dns01", &format!("127.0.0.1:{dns}")])
        .args(["-management", &format!("127.0.0.1:{dns_mgmt}")])
        .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
        .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
        .stdout(log("challtestsrv.log"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let peb = Command::new("pebble")
        .arg("-config")
        .arg(dir.join("pebble.json"))
        .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
        .env("PEBBLE_VA_NOSLEEP", "1")
        .env("PEBBLE_WFE_NONCEREJECT", "0")
        .env("PEBBLE_AUTHZREUSE", "0")
        .stdout(log("pebble.log"))
        .stderr(log("pebble.err"))
        .spawn()
        .unwrap();
    let procs = Procs(vec![dns_srv, peb]);
    for port in [acme, mgmt] {
        within(20, "pebble listening", async {
            while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
    }
    Pebble {
        _procs: procs,
        directory: format!("https://127.0.0.1:{acme}/dir"),
        management: SocketAddr::from(([127, 0, 0, 1], mgmt)),
        https_ca: dir.join("ca.pem"),
        dir,
    }
}

fn client_config(roots: rustls::RootCertStore, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    Arc::new(support::tls::client_config(roots, alpn))
}

/// GET `path` from Pebble's management interface (HTTPS, our throwaway CA).
async fn management_get(p: &Pebble, path: &str) -> Vec<u8> {
    let roots = support::tls::roots_of(&std::fs::read(&p.https_ca).unwrap());
    let tcp = TcpStream::connect(p.management).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(client_config(roots, &[]))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    let at = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    out[at..].to_vec()
}

/// A TLS GET to weir with SNI `DOMAIN`, verified against `roots`: the
/// served leaf certificate and the raw answer, or the handshake error.
async fn tls_get(
    addr: SocketAddr,
    roots: rustls::RootCertStore,
) -> Result<(Vec<u8>, String), String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let mut tls = tokio_rustls::TlsConnector::from(client_config(roots, &[b"http/1.1"]))
        .connect(ServerName::try_from(DOMAIN).unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    tls.write_all(
        format!("GET / HTTP/1.1\r\nHost: {DOMAIN}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut out = String::new();
    let _ = tls.read_to_string(&mut out).await;
    Ok((leaf, out))
}

fn yaml(
    p: &Pebble,
    challenge: &str,
    http: u16,
    https: u16,
    storage: &Path,
    up: &Upstream,
) -> String {
    format!(
        "listeners:
  - name: http
    address: 127.0.0.1:{http}
  - name: https
    address: 127.0.0.1:{https}
    tls:
      acme:
        directory: {dir}
        domains: [{DOMAIN}]
        contact: [mailto:ops@example.test]
        challenge: {challenge}
        directory_ca: {ca}
        storage: {storage}
        renew_before: 1h
routes:
  - group: g
groups:
  g:
    servers:
{servers}",
        dir = p.directory,
        ca = p.https_ca.display(),
        storage = storage.display(),
        servers = servers_yaml(&[(up, 1)]),
    )
}

/// Polls until weir serves a certificate that chains to `roots` (60 s at most).
async fn wait_for_certificate(
    addr: SocketAddr,
    roots: &rustls::RootCertStore,
) -> (Vec<u8>, String) {
    within(60, "an ACME certificate served", async {
        loop {
            if let Ok(r) = tls_get(addr, roots.clone()).await {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
}

async fn obtain_and_reuse(challenge: &str, tag: &str) {
    let (http, https) = (free_port(), free_port());
    let p = pebble(tag, http, https).await;
    let up = spawn_upstream("app").await;
    let storage = p.dir.join("storage");
    let yaml = yaml(&p, challenge, http, https, &storage, &up);
    let weir = start_proxy(&yaml).await;
    let addr: SocketAddr = ([127, 0, 0, 1], https).into();
    // Pebble's issuing root, fetched from its management interface.
    let root = management_get(&p, "/roots/0").await;
    let roots = support::tls::roots_of(&root);
    let (leaf, answer) = wait_for_certificate(addr, &roots).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("app"), "{answer}");
    let crt = std::fs::read_to_string(storage.join(format!("{DOMAIN}.crt"))).unwrap();
    assert!(crt.contains("BEGIN CERTIFICATE"));
    let key_mode = std::fs::metadata(storage.join(format!("{DOMAIN}.key"))).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&key_mode.permissions()) & 0o077,
        0,
        "the key file is private"
    );
    assert!(
        !storage.join(format!("{DOMAIN}.lock")).exists(),
        "the order lock is released"
    );
    assert!(weir.shutdown().await);

    // A restart serves the stored certificate at once: the same bytes, and
    // Pebble saw no new order.
    let orders_before = pebble_orders(&p);
    assert_eq!(orders_before, 1, "one order for the first certificate");
    let weir = start_proxy(&yaml).await;
    let (again, _) = within(10, "the stored certificate", async {
        loop {
            if let Ok(r) = tls_get(addr, roots.clone()).await {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(again, leaf, "the restart reuses the stored certificate");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        pebble_orders(&p),
        orders_before,
        "no new order after the restart"
    );
    assert!(weir.shutdown().await);
    let _ = std::fs::remove_dir_all(&p.dir);
}

/// How many orders Pebble logged so far.
fn pebble_orders(p: &Pebble) -> usize {
    let log = std::fs::read_to_string(p.dir.join("pebble.log")).unwrap_or_default()
        + &std::fs::read_to_string(p.dir.join("pebble.err")).unwrap_or_default();
    log.matches("new order").count() + log.matches("Added order").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_certificate_from_pebble_and_reused_after_restart() {
    if !have_pebble() {
        return;
    }
    obtain_and_reuse("http-01", "http01").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn01_certificate_from_pebble_and_reused_after_restart() {
    if !have_pebble() {
        return;
    }
    obtain_and_reuse("tls-alpn-01", "alpn").await;
}

/// Until a certificate exists the handshake fails with an alert (here the
/// directory is unreachable, so none ever comes).
#[tokio::test]
async fn no_certificate_yet_refuses_handshakes_with_an_alert() {
    let storage = std::env::temp_dir().join(format!("weir-acme-none-{}", std::process::id()));
    let ca = root().join("certs-dev/localhost.crt");
    let up = spawn_upstream("app").await;
    let yaml = format!(
        "listeners:
  - name: https
    address: 127.0.0.1:0
    tls:
      acme:
        directory: https://127.0.0.1:1/dir
        domains: [{DOMAIN}]
        directory_ca: {ca}
        storage: {storage}
routes:
  - group: g
groups:
  g:
    servers:
{servers}",
        ca = ca.display(),
        storage = storage.display(),
        servers = servers_yaml(&[(&up, 1)]),
    );
    let weir = start_proxy(&yaml).await;
    let addr = weir.local_addr("https").unwrap();
    let roots = support::tls::roots_of(&std::fs::read(&ca).unwrap());
    let err = within(10, "handshake", tls_get(addr, roots))
        .await
        .unwrap_err();
    assert!(
        err.to_lowercase().contains("accessdenied") || err.contains("AccessDenied"),
        "{err}"
    );
    assert!(weir.shutdown().await);
    let _ = std::fs::remove_dir_all(&storage);
}

/// `tls.acme` validation: no `certificates` needed with `acme`; bad values
/// name their key; `certificates` still required without `acme`.
#[test]
fn acme_config_validation() {
    let tls = |body: &str| {
        format!(
            "listeners:\n  - address: 127.0.0.1:0\n    tls:\n{body}routes:\n  - group: g\ngroups:\n  g:\n    servers:\n      - address: 127.0.0.1:9001\n"
        )
    };
    let load = |y: &str| weir::config::load_str(y, &root().join("test.yaml"));
    let ok = tls("      acme:\n        directory: https://acme.test/dir\n        domains: [a.test]\n        storage: /tmp/weir-acme-cfg\n");
    let c = load(&ok).unwrap_or_else(|e| panic!("{e}"));
    let a = c.listeners[0].acme.as_ref().unwrap();
    assert_eq!(a.challenge, weir::config::acme::AcmeChallenge::Http01);
    assert_eq!(a.renew_before, Duration::from_secs(30 * 86400));
    let err = |y: String| load(&y).unwrap_err().to_string();
    let e = err(tls("      acme:\n        directory: https://acme.test/dir\n        domains: [a.test]\n        challenge: dns-01\n        storage: /tmp/x\n"));
    assert!(
        e.contains("tls.acme.challenge") && e.contains("test.yaml:"),
        "{e}"
    );
    let e = err(tls("      acme:\n        directory: https://acme.test/dir\n        domains: []\n        storage: /tmp/x\n"));
    assert!(e.contains("tls.acme.domains"), "{e}");
    let e = err(tls("      acme:\n        directory: ftp://acme.test/dir\n        domains: [a.test]\n        storage: /tmp/x\n"));
    assert!(e.contains("tls.acme.directory"), "{e}");
    let e = err(tls("      acme:\n        directory: https://acme.test/dir\n        domains: [a.test]\n        storage: /tmp/x\n        directory_ca: /nonexistent/ca.pem\n"));
    assert!(e.contains("tls.acme.directory_ca"), "{e}");
    let e = err(tls("      client_auth: { ca: certs-dev/ca.crt }\n"));
    assert!(
        e.contains("tls.certificates") && e.contains("test.yaml:2:"),
        "{e}"
    );
}

/// Two instances sharing `storage` start together: one orders (the lock),
/// the other waits and loads its certificate; Pebble sees one order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_sharing_storage_order_once() {
    if !have_pebble() {
        return;
    }
    let (http, https) = (free_port(), free_port());
    let (http_b, https_b) = (free_port(), free_port());
    let p = pebble("shared", http, https).await;
    let up = spawn_upstream("app").await;
    let storage = p.dir.join("storage");
    let yaml_a = yaml(&p, "http-01", http, https, &storage, &up);
    let yaml_b = yaml(&p, "http-01", http_b, https_b, &storage, &up);
    // In one process both share the HTTP-01 answers; Pebble validates on
    // instance A's plain port whichever instance ordered.
    let (a, b) = tokio::join!(start_proxy(&yaml_a), start_proxy(&yaml_b));
    let roots = support::tls::roots_of(&management_get(&p, "/roots/0").await);
    let (leaf_a, _) = wait_for_certificate(([127, 0, 0, 1], https).into(), &roots).await;
    let (leaf_b, _) = wait_for_certificate(([127, 0, 0, 1], https_b).into(), &roots).await;
    assert_eq!(leaf_a, leaf_b, "both serve the one stored certificate");
    assert_eq!(pebble_orders(&p), 1, "one order for two instances");
    assert!(a.shutdown().await);
    assert!(b.shutdown().await);
    let _ = std::fs::remove_dir_all(&p.dir);
}

/// A stored certificate within `renew_before` of its expiry is served
/// while a new one is ordered, then replaced (Pebble's certificates last
/// years, so `renew_before: 3650d` makes the stored one due at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_due_for_renewal_is_renewed() {
    if !have_pebble() {
        return;
    }
    let (http, https) = (free_port(), free_port());
    let p = pebble("renew", http, https).await;
    let up = spawn_upstream("app").await;
    let storage = p.dir.join("storage");
    let yaml1 = yaml(&p, "http-01", http, https, &storage, &up);
    let addr: SocketAddr = ([127, 0, 0, 1], https).into();
    let roots = support::tls::roots_of(&management_get(&p, "/roots/0").await);
    let weir = start_proxy(&yaml1).await;
    let (first, _) = wait_for_certificate(addr, &roots).await;
    assert!(weir.shutdown().await);
    assert_eq!(pebble_orders(&p), 1);
    let yaml2 = yaml1.replace("renew_before: 1h", "renew_before: 3650d");
    let weir = start_proxy(&yaml2).await;
    let renewed = within(60, "the renewed certificate", async {
        loop {
            if let Ok((leaf, _)) = tls_get(addr, roots.clone()).await {
                if leaf != first {
                    return leaf;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_ne!(renewed, first);
    assert_eq!(pebble_orders(&p), 2, "one renewal order");
    let stored = std::fs::read(storage.join(format!("{DOMAIN}.crt"))).unwrap();
    let stored_leaf = CertificateDer::pem_slice_iter(&stored)
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(
        stored_leaf.as_ref(),
        renewed.as_slice(),
        "the renewal is stored"
    );
    assert!(weir.shutdown().await);
    let _ = std::fs::remove_dir_all(&p.dir);
}
