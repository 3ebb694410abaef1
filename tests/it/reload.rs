//! Zero-downtime reload: the file is re-read, validated, and swapped in under
//! load; a bad file changes nothing.

use crate::support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use support::*;

/// A unique temp dir for this test's config file.
fn temp_config(tag: &str) -> TempFile {
    TempFile::new(&format!("reload-{tag}"), "weir.yaml", "")
}

fn yaml(listener_port: u16, servers: &[&Upstream], extra_route: bool) -> String {
    let mut routes = String::new();
    if extra_route {
        routes.push_str("  - name: extra\n    match:\n      path_prefix: /extra\n    group: g\n");
    }
    routes.push_str("  - name: main\n    group: g\n");
    let servers: String = servers.iter().map(|u| server_id(u.addr, &u.name)).collect();
    ConfigYaml::new()
        .listener_address(format!("127.0.0.1:{listener_port}"))
        .routes(&routes)
        .group("g", "", &servers)
        .build()
}

async fn start_from_file(path: &std::path::Path) -> weir::Running {
    capture_logs();
    let config = weir::config::load_file(path).expect("valid config");
    weir::Proxy::new(config).start().await.expect("starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_reloads_under_load_fail_no_request() {
    let ups: Vec<Upstream> = futures_util::future::join_all(
        (0..4).map(|i| async move { spawn_upstream(&format!("s{i}")).await }),
    )
    .await;
    let path = temp_config("load");
    std::fs::write(&path, yaml(0, &[&ups[0], &ups[1]], false)).unwrap();
    let proxy = start_from_file(&path).await;
    let addr = proxy.local_addr("http").unwrap();
    // Later files bind the same port the first one got.
    let port = addr.port();

    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..20 {
        let (ok, failed, stop) = (ok.clone(), failed.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let client = client();
            let deadline = Instant::now() + Duration::from_secs(20);
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                let req = http::Request::get(format!("http://{addr}/x"))
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                match tokio::time::timeout(Duration::from_secs(5), client.request(req)).await {
                    Ok(Ok(resp)) if resp.status() == 200 => {
                        let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }));
    }

    for i in 0..20 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Rotate through server sets: servers come and go, a route appears and disappears.
        let set: Vec<&Upstream> = match i % 4 {
            0 => vec![&ups[0], &ups[1], &ups[2]],
            1 => vec![&ups[2], &ups[3]],
            2 => vec![&ups[1], &ups[2], &ups[3]],
            _ => vec![&ups[0], &ups[3]],
        };
        std::fs::write(&path, yaml(port, &set, i % 2 == 0)).unwrap();
        proxy.reload().await.expect("reload succeeds");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    assert!(ok > 200, "load ran: {ok} requests");
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed during reloads",
        ok + failed
    );

    // The last file (i = 19: servers s0 and s3, no /extra route) is live.
    let snapshot = proxy.snapshot();
    let ids: Vec<&str> = snapshot.groups[0].servers.iter().map(|s| &*s.id).collect();
    assert_eq!(ids, vec!["s0", "s3"]);
    assert_eq!(snapshot.routes.routes().len(), 1);
    let metrics = weir::admin::prometheus::render(&proxy);
    assert!(
        metrics.contains("weir_reloads_total{result=\"ok\"} 20"),
        "{metrics}"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn bad_file_keeps_the_running_config_and_counts_the_failure() {
    let up = spawn_upstream("a").await;
    let path = temp_config("bad");
    std::fs::write(&path, yaml(0, &[&up], false)).unwrap();
    let proxy = start_from_file(&path).await;
    let addr = proxy.local_addr("http").unwrap();
    assert_eq!(get(addr, "/").await.status, 200);

    std::fs::write(&path, "listeners: [\n").unwrap();
    let err = proxy.reload().await.expect_err("a broken file is refused");
    assert!(err.to_string().contains("weir.yaml:"), "{err}");
    std::fs::write(
        &path,
        format!("{}    retries: 99\n", yaml(addr.port(), &[&up], false)),
    )
    .unwrap();
    let err = proxy
        .reload()
        .await
        .expect_err("an invalid file is refused");
    assert!(err.to_string().contains("groups.g.retries"), "{err}");

    let reply = get(addr, "/").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.server().as_deref(), Some("a"));
    let metrics = weir::admin::prometheus::render(&proxy);
    assert!(
        metrics.contains("weir_reloads_total{result=\"failed\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("weir_reloads_total{result=\"ok\"} 0"),
        "{metrics}"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn reload_keeps_server_state_and_pooled_connections() {
    let up = spawn_upstream("a").await;
    let other = spawn_upstream("b").await;
    let path = temp_config("state");
    std::fs::write(&path, yaml(0, &[&up], false)).unwrap();
    let proxy = start_from_file(&path).await;
    let addr = proxy.local_addr("http").unwrap();
    let c = client();
    for _ in 0..5 {
        let req = http::Request::get(format!("http://{addr}/"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(send(&c, req).await.status, 200);
    }
    let before = proxy.snapshot().groups[0].servers[0].state.clone();
    assert_eq!(before.requests(), 5);
    let conns_before = up.connections();

    // Same server, one more added and a new route: state and pool of "a" carry over.
    std::fs::write(&path, yaml(addr.port(), &[&up, &other], true)).unwrap();
    proxy.reload().await.unwrap();
    let after = proxy.snapshot().groups[0].servers[0].state.clone();
    assert!(
        Arc::ptr_eq(&before, &after),
        "server state survives the reload"
    );
    for _ in 0..6 {
        let req = http::Request::get(format!("http://{addr}/extra"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(send(&c, req).await.status, 200);
    }
    assert_eq!(
        after.requests(),
        8,
        "5 before + 3 of 6 after (round robin of two)"
    );
    assert_eq!(other.hits(), 3);
    assert_eq!(
        up.connections(),
        conns_before,
        "the pooled connection to a was reused"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn reload_adds_and_removes_listeners() {
    let up = spawn_upstream("a").await;
    let path = temp_config("listeners");
    std::fs::write(&path, yaml(0, &[&up], false)).unwrap();
    let proxy = start_from_file(&path).await;
    let first = proxy.local_addr("http").unwrap();

    // Find a free port for the second listener.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let second_port = free.local_addr().unwrap().port();
    drop(free);
    let two = yaml(first.port(), &[&up], false).replacen(
        "listeners:\n",
        &format!("listeners:\n  - name: second\n    address: 127.0.0.1:{second_port}\n"),
        1,
    );
    std::fs::write(&path, two).unwrap();
    proxy.reload().await.unwrap();
    let second = proxy.local_addr("second").expect("second listener bound");
    assert_eq!(get(second, "/").await.status, 200);
    assert_eq!(get(first, "/").await.status, 200);

    // Drop the first listener: it stops accepting.
    let only_second = format!(
        "listeners:\n  - name: second\n    address: 127.0.0.1:{second_port}\nroutes:\n  - group: g\ngroups:\n  g:\n    servers:\n      - address: {}\n",
        up.addr
    );
    std::fs::write(&path, only_second).unwrap();
    proxy.reload().await.unwrap();
    assert!(proxy.local_addr("http").is_none());
    let mut refused = false;
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(first).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "the removed listener no longer accepts");
    assert_eq!(get(second, "/").await.status, 200);
    proxy.shutdown().await;
}
