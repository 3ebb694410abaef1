//! Redirects (`routes[].redirect`, issue 16 point 3): the route answers
//! without a group, replacing any of scheme, host, port and path and
//! keeping the rest; `redirect: { scheme: https }` is the HTTP→HTTPS
//! redirect; the route's IP rules and `response_headers` apply.

use crate::support;

use support::*;

const CONFIG: &str = "\
listeners:
  - name: http
    address: 127.0.0.1:0
routes:
  - name: to-https
    match: { host: example.com }
    redirect: { scheme: https }
    response_headers:
      set: { strict-transport-security: \"max-age=31536000\" }
  - name: moved
    match: { host: old.example.com }
    redirect: { host: new.example.com, path: /landing, status: 308 }
  - name: port
    match: { host: ports.example.com }
    redirect: { port: 9000, status: 302 }
  - name: blocked
    match: { host: blocked.example.com }
    redirect: { scheme: https }
    deny: [127.0.0.0/8]
  - name: app
    group: g
groups:
  g:
    servers:
      - address: {UP}
";

#[tokio::test]
async fn http_to_https_keeps_path_and_query() {
    let up = spawn_upstream("app").await;
    let weir = start_proxy(&CONFIG.replace("{UP}", &up.addr.to_string())).await;
    let addr = weir.local_addr("http").unwrap();

    let r = request_host(addr, "GET", "example.com", "/a/b?x=1&y=two", &[]).await;
    assert_eq!(r.status, 301);
    assert_eq!(r.headers["location"], "https://example.com/a/b?x=1&y=two");
    assert_eq!(r.headers["strict-transport-security"], "max-age=31536000");
    assert!(r.body.is_empty());
    // The request's port goes with the old scheme; HEAD and POST redirect too.
    let r = request_host(addr, "HEAD", "example.com:8080", "/", &[]).await;
    assert_eq!(r.status, 301);
    assert_eq!(r.headers["location"], "https://example.com/");
    let r = request_host(addr, "POST", "EXAMPLE.com", "/form?id=3", &[]).await;
    assert_eq!(r.headers["location"], "https://EXAMPLE.com/form?id=3");

    // Host and path replaced, query kept, 308.
    let r = request_host(addr, "GET", "old.example.com", "/anything?q=1", &[]).await;
    assert_eq!(r.status, 308);
    assert_eq!(r.headers["location"], "http://new.example.com/landing?q=1");
    // Port replaced on the same scheme and host, 302.
    let r = request_host(addr, "GET", "ports.example.com:8080", "/p", &[]).await;
    assert_eq!(r.status, 302);
    assert_eq!(r.headers["location"], "http://ports.example.com:9000/p");
    // The route's deny rule comes first.
    let r = request_host(addr, "GET", "blocked.example.com", "/p", &[]).await;
    assert_eq!(r.status, 403);

    // No request reached a server; other hosts are forwarded.
    assert_eq!(up.hits(), 0);
    let r = request_host(addr, "GET", "other.example.com", "/p", &[]).await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "app"));
    assert_eq!(up.hits(), 1);
    weir.shutdown().await;
}

#[tokio::test]
async fn curl_follows_the_https_redirect_headers() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("curl not found: skipped");
        return;
    }
    let up = spawn_upstream("app").await;
    let weir = start_proxy(&CONFIG.replace("{UP}", &up.addr.to_string())).await;
    let addr = weir.local_addr("http").unwrap();
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "-I", "-H", "Host: example.com"])
        .arg(format!("http://{addr}/docs/page?lang=en"))
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 301"), "{text}");
    assert!(
        text.contains("location: https://example.com/docs/page?lang=en\r\n"),
        "{text}"
    );
    weir.shutdown().await;
}
