//! TLS and mutual TLS to the servers (`groups.*.tls`): real TLS servers
//! (hyper + tokio-rustls) with certificates from a test CA made by rcgen,
//! verified by weir; a wrong CA or name answers 502 with a log line that
//! says why; pooled TLS connections are reused and sessions resumed.

use crate::support;
use crate::upstream_support;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use support::*;
use upstream_support::*;

const H1: &[&[u8]] = &[b"http/1.1"];

fn yaml(group: &str, addr: std::net::SocketAddr, tls: &str, extra: &str) -> String {
    ConfigYaml::new()
        .listener_name(Some("web"))
        .group(
            group,
            &format!("    retries: 0\n{extra}    tls:\n{tls}"),
            &server_id(addr, &format!("{group}-1")),
        )
        .build()
}

fn ca_line(p: &Path) -> String {
    format!("      ca: {}\n", p.display())
}

#[tokio::test]
async fn a_server_verified_by_the_test_ca_answers_and_its_connection_is_reused() {
    capture_logs();
    let pki = Pki::new("tls-ok");
    let (cert, key) = pki.server("srv", &["localhost", "127.0.0.1"]);
    let up = spawn_tls_upstream("a", server_config(&cert, &key, None, H1)).await;
    // The server's address is an IP: it is verified against the IP SAN.
    let proxy = start_proxy(&format!(
        "workers: 1\n{}",
        yaml("tls_ok", up.addr, &ca_line(&pki.ca_path), "")
    ))
    .await;
    let addr = proxy.local_addr("web").unwrap();
    for _ in 0..5 {
        let r = get(addr, "/x").await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), "a");
        assert_eq!(r.headers["x-version"], "HTTP/1.1");
    }
    assert_eq!(up.hits.load(Ordering::SeqCst), 5);
    assert_eq!(
        up.handshakes.load(Ordering::SeqCst),
        1,
        "pooled TLS connection reused"
    );
}

#[tokio::test]
async fn server_name_sets_sni_and_the_verified_name() {
    capture_logs();
    let pki = Pki::new("tls-sni");
    let (cert, key) = pki.server("srv", &["api.internal"]);
    let up = spawn_tls_upstream("b", server_config(&cert, &key, None, H1)).await;
    let tls = format!("{}      server_name: api.internal\n", ca_line(&pki.ca_path));
    let proxy = start_proxy(&yaml("tls_sni", up.addr, &tls, "")).await;
    let r = get(proxy.local_addr("web").unwrap(), "/").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "b");
}

#[tokio::test]
async fn a_wrong_ca_answers_502_and_logs_unknown_issuer() {
    capture_logs();
    let pki = Pki::new("tls-ca");
    let other = Pki::new("tls-ca-other");
    let (cert, key) = pki.server("srv", &["127.0.0.1"]);
    let up = spawn_tls_upstream("c", server_config(&cert, &key, None, H1)).await;
    let proxy = start_proxy(&yaml("wrong_ca", up.addr, &ca_line(&other.ca_path), "")).await;
    let r = get(proxy.local_addr("web").unwrap(), "/").await;
    assert_eq!(r.status, 502);
    assert_eq!(up.hits.load(Ordering::SeqCst), 0);
    let line = wait_log(&["group=wrong_ca", "server=wrong_ca-1", "unknown issuer"]).await;
    assert!(line.contains("certificate verification failed"), "{line}");
}

#[tokio::test]
async fn a_wrong_name_answers_502_and_logs_name_mismatch() {
    capture_logs();
    let pki = Pki::new("tls-name");
    let (cert, key) = pki.server("srv", &["api.internal"]);
    let up = spawn_tls_upstream("d", server_config(&cert, &key, None, H1)).await;
    // Default name = the server's host (127.0.0.1), which the certificate lacks.
    let proxy = start_proxy(&yaml("wrong_name", up.addr, &ca_line(&pki.ca_path), "")).await;
    let r = get(proxy.local_addr("web").unwrap(), "/").await;
    assert_eq!(r.status, 502);
    wait_log(&["group=wrong_name", "server=wrong_name-1", "name mismatch"]).await;
    // And a server_name the certificate does not hold.
    let tls = format!(
        "{}      server_name: other.internal\n",
        ca_line(&pki.ca_path)
    );
    let proxy = start_proxy(&yaml("wrong_name2", up.addr, &tls, "")).await;
    let r = get(proxy.local_addr("web").unwrap(), "/").await;
    assert_eq!(r.status, 502);
    let line = wait_log(&["group=wrong_name2", "name mismatch"]).await;
    assert!(line.contains("other.internal"), "{line}");
    assert_eq!(up.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_expired_certificate_answers_502_and_logs_expired() {
    capture_logs();
    let pki = Pki::new("tls-expired");
    let (cert, key) = pki.server_expired("srv", &["127.0.0.1"]);
    let up = spawn_tls_upstream("e", server_config(&cert, &key, None, H1)).await;
    let proxy = start_proxy(&yaml("expired", up.addr, &ca_line(&pki.ca_path), "")).await;
    let r = get(proxy.local_addr("web").unwrap(), "/").await;
    assert_eq!(r.status, 502);
    wait_log(&["group=expired", "server=expired-1", "certificate expired"]).await;
    assert_eq!(up.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn mutual_tls_to_a_server_that_requires_client_certificates() {
    capture_logs();
    let pki = Pki::new("mtls");
    let clients = Pki::new("mtls-clients");
    let (cert, key) = pki.server("srv", &["127.0.0.1"]);
    let (ccert, ckey) = clients.client("weir", "weir-client");
    let up = spawn_tls_upstream("m", server_config(&cert, &key, Some(&clients.ca_path), H1)).await;
    let tls = format!(
        "{}      client_cert: {}\n      client_key: {}\n",
        ca_line(&pki.ca_path),
        ccert.display(),
        ckey.display()
    );
    let proxy = start_proxy(&yaml("mtls", up.addr, &tls, "")).await;
    let r = get(proxy.local_addr("web").unwrap(), "/").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "m");

    // Without a client certificate the server refuses: 502 and a log line.
    let proxy = start_proxy(&yaml("mtls_none", up.addr, &ca_line(&pki.ca_path), "")).await;
    let r = get(proxy.local_addr("web").unwrap(), "/").await;
    assert_eq!(r.status, 502);
    let line = wait_log(&[
        "group=mtls_none",
        "server=mtls_none-1",
        "upstream request failed",
    ])
    .await;
    assert!(line.contains("CertificateRequired"), "{line}");
    assert_eq!(up.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn insecure_skip_verify_accepts_any_certificate_and_warns() {
    capture_logs();
    let pki = Pki::new("tls-insecure");
    let (cert, key) = pki.server("srv", &["somewhere.else"]);
    let up = spawn_tls_upstream("i", server_config(&cert, &key, None, H1)).await;
    let proxy = start_proxy(&yaml(
        "insecure",
        up.addr,
        "      insecure_skip_verify: true\n",
        "",
    ))
    .await;
    let r = get(proxy.local_addr("web").unwrap(), "/").await;
    assert_eq!(r.status, 200);
    wait_log(&["insecure_skip_verify", "insecure", "NOT verified"]).await;
}

#[tokio::test]
async fn new_connections_resume_the_tls_session() {
    capture_logs();
    let pki = Pki::new("tls-resume");
    let (cert, key) = pki.server("srv", &["127.0.0.1"]);
    let up = spawn_tls_upstream("r", server_config(&cert, &key, None, H1)).await;
    // No pooling: every request opens a new TLS connection.
    let extra = "    pool:\n      max_idle_per_server: 0\n";
    let proxy = start_proxy(&yaml("resume", up.addr, &ca_line(&pki.ca_path), extra)).await;
    let addr = proxy.local_addr("web").unwrap();
    for _ in 0..4 {
        assert_eq!(get(addr, "/").await.status, 200);
    }
    assert_eq!(up.handshakes.load(Ordering::SeqCst), 4);
    assert!(
        up.resumed.load(Ordering::SeqCst) >= 2,
        "resumed {} of 4 handshakes",
        up.resumed.load(Ordering::SeqCst)
    );
}

#[tokio::test]
async fn health_checks_of_a_tls_group_go_over_tls() {
    capture_logs();
    let pki = Pki::new("tls-hc");
    let (cert, key) = pki.server("srv", &["127.0.0.1"]);
    let up = spawn_tls_upstream("h", server_config(&cert, &key, None, H1)).await;
    let extra =
        "    health_check:\n      path: /healthz\n      interval: 100ms\n      timeout: 1s\n      \
                 healthy_threshold: 1\n      unhealthy_threshold: 1\n";
    let proxy = start_proxy(&yaml("tls_hc", up.addr, &ca_line(&pki.ca_path), extra)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while up.hits.load(Ordering::SeqCst) < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "no TLS probe reached the server"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Probes passed over TLS: the server is up.
    let r = get(proxy.local_addr("web").unwrap(), "/").await;
    assert_eq!(r.status, 200);
}

#[test]
fn bad_tls_files_are_config_errors_naming_the_key() {
    let pki = Pki::new("tls-cfg");
    let junk = pki.dir.join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let load = |tls: &str| {
        let y = format!(
            "listeners:\n  - address: 127.0.0.1:0\nroutes:\n  - group: g\ngroups:\n  g:\n    tls:\n{tls}    servers:\n      - address: 127.0.0.1:1\n"
        );
        weir::config::load_str(&y, &root().join("t.yaml"))
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let e = load(&format!("      ca: {}\n", junk.display())).unwrap_err();
    assert!(
        e.contains("groups.g.tls.ca:") && e.contains("no CERTIFICATE"),
        "{e}"
    );
    let e = load("      ca: /nonexistent/ca.pem\n").unwrap_err();
    assert!(e.contains("t.yaml:8:11: groups.g.tls.ca:"), "{e}");
    let (cert, _) = pki.client("c", "c");
    let e = load(&format!("      client_cert: {}\n", cert.display())).unwrap_err();
    assert!(
        e.contains("groups.g.tls.client_key: client_cert needs client_key"),
        "{e}"
    );
    let e = load(&format!(
        "      client_cert: {}\n      client_key: {}\n",
        cert.display(),
        junk.display()
    ))
    .unwrap_err();
    assert!(
        e.contains("groups.g.tls.client_key:") && e.contains("private key"),
        "{e}"
    );
    let e = load("      server_name: \"not a name!\"\n").unwrap_err();
    assert!(e.contains("groups.g.tls.server_name"), "{e}");
    let e = load("      verify: false\n").unwrap_err();
    assert!(e.contains("unknown field `verify`"), "{e}");
    assert!(load(&format!("      ca: {}\n", pki.ca_path.display())).is_ok());
}

#[tokio::test]
async fn hey_with_20_connections_through_a_tls_group_has_no_errors() {
    let Some(hey) = which("hey") else {
        eprintln!("SKIPPED: hey is not installed (.ci/run installs it)");
        return;
    };
    capture_logs();
    let pki = Pki::new("tls-hey");
    let (cert, key) = pki.server("srv", &["127.0.0.1"]);
    let up = spawn_tls_upstream("hey", server_config(&cert, &key, None, H1)).await;
    let proxy = start_proxy(&format!(
        "workers: 2\n{}",
        yaml("tls_hey", up.addr, &ca_line(&pki.ca_path), "")
    ))
    .await;
    let addr = proxy.local_addr("web").unwrap();
    let out = tokio::process::Command::new(hey)
        .args([
            "-n",
            "2000",
            "-c",
            "20",
            "-t",
            "10",
            &format!("http://{addr}/"),
        ])
        .output();
    let out = within(120, "hey", out).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("[200]\t2000 responses"), "{text}");
    assert!(!text.contains("Error distribution"), "{text}");
    assert_eq!(up.hits.load(Ordering::SeqCst), 2000);
}

fn which(bin: &str) -> Option<std::path::PathBuf> {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| Path::new(d).join(bin))
        .find(|p| p.is_file())
}

#[tokio::test]
async fn a_reload_that_changes_tls_does_not_reuse_old_connections() {
    capture_logs();
    let pki = Pki::new("tls-reload");
    let other = Pki::new("tls-reload-other");
    let (cert, key) = pki.server("srv", &["127.0.0.1"]);
    let up = spawn_tls_upstream("rl", server_config(&cert, &key, None, H1)).await;
    let port = free_port();
    let file = pki.dir.join("weir.yaml");
    let write = |ca: &Path| {
        let y = yaml("tls_reload", up.addr, &ca_line(ca), "").replace(
            "address: 127.0.0.1:0",
            &format!("address: 127.0.0.1:{port}"),
        );
        std::fs::write(&file, format!("workers: 1\n{y}")).unwrap();
    };
    write(&pki.ca_path);
    let proxy = weir::Proxy::new(weir::config::load_file(&file).unwrap())
        .start()
        .await
        .unwrap();
    let addr = proxy.local_addr("web").unwrap();
    assert_eq!(get(addr, "/").await.status, 200);
    // Now trust another CA: the verified, pooled connection must not be
    // reused; the new handshake fails verification.
    write(&other.ca_path);
    proxy.reload().await.expect("reload");
    assert_eq!(get(addr, "/").await.status, 502);
    wait_log(&["group=tls_reload", "unknown issuer"]).await;
    assert_eq!(up.hits.load(Ordering::SeqCst), 1);
}
