//! The admin API: /metrics after traffic, /status, /healthz, 404/405,
//! drain and enable.

use crate::support;

use bytes::Bytes;
use http_body_util::Full;
use support::*;

async fn proxy_with_admin(ups: &[(&Upstream, u32)]) -> weir::Running {
    start_proxy(&format!(
        "listeners:\n  - name: web\n    address: 127.0.0.1:0\nadmin:\n  address: 127.0.0.1:0\n\
         routes:\n  - name: api\n    match:\n      path_prefix: /api\n    group: g\n\
         groups:\n  g:\n    servers:\n{}",
        servers_yaml(ups)
    ))
    .await
}

/// The value of the sample `name{labels}` in a Prometheus text exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn admin(proxy: &weir::Running, method: &str, path: &str) -> Reply {
    let req = http::Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", proxy.admin_addr().unwrap()))
        .body(Full::new(Bytes::new()))
        .unwrap();
    send(&client(), req).await
}

#[tokio::test]
async fn metrics_count_the_traffic() {
    let a = spawn_upstream("a").await;
    let b = spawn_upstream("b").await;
    let proxy = proxy_with_admin(&[(&a, 3), (&b, 1)]).await;
    let web = proxy.local_addr("web").unwrap();
    for _ in 0..40 {
        assert_eq!(get(web, "/api/x").await.status, 200);
    }
    for _ in 0..3 {
        assert_eq!(get(web, "/nothing").await.status, 404);
    }

    let m = admin(&proxy, "GET", "/metrics").await;
    assert_eq!(m.status, 200);
    let text = m.text();
    assert_eq!(
        sample(
            &text,
            r#"weir_route_requests_total{route="api",class="2xx"}"#
        ),
        Some(40.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"weir_server_requests_total{group="g",server="a",class="2xx"}"#
        ),
        Some(30.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"weir_server_requests_total{group="g",server="b",class="2xx"}"#
        ),
        Some(10.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"weir_route_request_duration_seconds_count{route="api"}"#
        ),
        Some(40.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"weir_group_request_duration_seconds_count{group="g"}"#
        ),
        Some(40.0)
    );
    assert_eq!(
        sample(&text, r#"weir_server_in_flight{group="g",server="a"}"#),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, r#"weir_server_healthy{group="g",server="a"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, r#"weir_listener_connections_total{listener="web"}"#),
        Some(43.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"weir_upstream_connect_errors_total{group="g",server="a"}"#
        ),
        Some(0.0)
    );
    assert!(text.contains("weir_config_info{hash=\""), "{text}");
    assert_eq!(
        sample(&text, r#"weir_server_ejected{group="g",server="a"}"#),
        Some(0.0)
    );
    let ewma = sample(
        &text,
        r#"weir_server_response_time_ewma_seconds{group="g",server="a"}"#,
    )
    .expect("EWMA exported after traffic");
    assert!(ewma > 0.0 && ewma < 1.0, "{ewma}");
    assert!(text.trim_end().ends_with("# EOF"));
    proxy.shutdown().await;
}

#[tokio::test]
async fn connect_errors_and_retries_are_counted() {
    let a = spawn_upstream("a").await;
    let dead = spawn_upstream("dead").await;
    dead.stop();
    let proxy = proxy_with_admin(&[(&a, 1), (&dead, 1)]).await;
    let web = proxy.local_addr("web").unwrap();
    for _ in 0..10 {
        assert_eq!(get(web, "/api").await.status, 200);
    }
    let text = admin(&proxy, "GET", "/metrics").await.text();
    // Every attempt on the dead server fails to connect and is retried on a
    // (without passive health checks the rotation keeps offering it).
    let errors = sample(
        &text,
        r#"weir_upstream_connect_errors_total{group="g",server="dead"}"#,
    )
    .unwrap();
    let retries = sample(
        &text,
        r#"weir_upstream_retries_total{group="g",server="dead"}"#,
    )
    .unwrap();
    assert!(errors >= 5.0, "{text}");
    assert_eq!(errors, retries);
    assert_eq!(
        sample(
            &text,
            r#"weir_server_requests_total{group="g",server="dead",class="2xx"}"#
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"weir_server_requests_total{group="g",server="a",class="2xx"}"#
        ),
        Some(10.0)
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn status_healthz_and_errors() {
    let a = spawn_upstream("a").await;
    let proxy = proxy_with_admin(&[(&a, 2)]).await;
    let s = admin(&proxy, "GET", "/status").await;
    assert_eq!(s.status, 200);
    assert_eq!(s.headers["content-type"], "application/json");
    let v: serde_json::Value = serde_json::from_slice(&s.body).unwrap();
    assert_eq!(v["groups"][0]["name"], "g");
    let server = &v["groups"][0]["servers"][0];
    assert_eq!(server["id"], "a");
    assert_eq!(server["address"], a.addr.to_string());
    assert_eq!(server["weight"], 2);
    assert_eq!(server["healthy"], true);
    assert_eq!(server["drained"], false);
    assert_eq!(server["in_flight"], 0);
    assert_eq!(server["ejected"], false);
    assert_eq!(server["usable"], true);
    assert!(
        server["response_time_ewma_ms"].is_null(),
        "no sample before traffic"
    );
    assert_eq!(v["groups"][0]["algorithm"], "round_robin");
    assert_eq!(v["routes"][0]["name"], "api");
    assert_eq!(v["routes"][0]["group"], "g");
    assert_eq!(v["listeners"][0]["name"], "web");

    let h = admin(&proxy, "GET", "/healthz").await;
    assert_eq!((h.status.as_u16(), h.text().as_str()), (200, "ok\n"));
    assert_eq!(admin(&proxy, "GET", "/nope").await.status, 404);
    let r = admin(&proxy, "POST", "/metrics").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.headers["allow"], "GET, HEAD");
    assert_eq!(admin(&proxy, "GET", "/reload").await.status, 405);
    assert_eq!(
        admin(&proxy, "POST", "/groups/g/servers/zzz/drain")
            .await
            .status,
        404
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn drain_then_enable() {
    let a = spawn_upstream("a").await;
    let b = spawn_upstream("b").await;
    let proxy = proxy_with_admin(&[(&a, 1), (&b, 1)]).await;
    let web = proxy.local_addr("web").unwrap();

    let r = admin(&proxy, "POST", "/groups/g/servers/a/drain").await;
    assert_eq!(r.status, 200, "{}", r.text());
    for _ in 0..20 {
        assert_eq!(get(web, "/api").await.server().as_deref(), Some("b"));
    }
    assert_eq!(a.hits(), 0);
    let v: serde_json::Value =
        serde_json::from_slice(&admin(&proxy, "GET", "/status").await.body).unwrap();
    assert_eq!(v["groups"][0]["servers"][0]["drained"], true);

    assert_eq!(
        admin(&proxy, "POST", "/groups/g/servers/a/enable")
            .await
            .status,
        200
    );
    for _ in 0..20 {
        assert_eq!(get(web, "/api").await.status, 200);
    }
    assert_eq!(a.hits(), 10, "a is back in the rotation");
    proxy.shutdown().await;
}
