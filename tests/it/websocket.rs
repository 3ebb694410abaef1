//! WebSocket through weir: the Upgrade is forwarded, 101 comes back, and
//! frames flow both ways until a side closes.

use crate::support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use support::*;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

/// A WebSocket echo server on 127.0.0.1 (tokio-tungstenite).
async fn echo_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_close() {
                        break;
                    }
                    if ws.send(msg).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn websocket_echo_through_weir() {
    let upstream = echo_server().await;
    let proxy = start_proxy(&format!(
        "listeners:\n  - name: web\n    address: 127.0.0.1:0\nroutes:\n  - group: ws\n\
         groups:\n  ws:\n    servers:\n      - address: {upstream}\n        id: echo\n"
    ))
    .await;
    let web = proxy.local_addr("web").unwrap();
    let (mut ws, resp) = tokio_tungstenite::connect_async(format!("ws://{web}/chat"))
        .await
        .expect("upgrade through weir");
    assert_eq!(resp.status(), 101);
    let state = proxy.snapshot().groups[0].servers[0].state.clone();
    assert_eq!(
        state.in_flight(),
        1,
        "an open WebSocket is one request in flight"
    );

    for i in 0..5 {
        ws.send(Message::text(format!("hello {i}"))).await.unwrap();
        let echo = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(echo, Message::text(format!("hello {i}")));
    }
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    let echo = ws.next().await.unwrap().unwrap();
    assert_eq!(echo, Message::binary(vec![0u8, 1, 2, 255]));
    ws.close(None).await.unwrap();
    drop(ws);

    let mut released = false;
    for _ in 0..100 {
        if state.in_flight() == 0 {
            released = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(released, "in-flight drops when the tunnel closes");
    proxy.shutdown().await;
}

#[tokio::test]
async fn upgrade_refused_by_the_server_is_a_plain_response() {
    // A plain HTTP upstream answers 200 to an Upgrade request: weir passes the
    // 200 through and keeps the connection HTTP.
    let up = spawn_upstream("plain").await;
    let proxy = start_proxy(&format!(
        "listeners:\n  - name: web\n    address: 127.0.0.1:0\nroutes:\n  - group: g\n\
         groups:\n  g:\n    servers:\n{}",
        servers_yaml(&[(&up, 1)])
    ))
    .await;
    let web = proxy.local_addr("web").unwrap();
    let err = tokio_tungstenite::connect_async(format!("ws://{web}/chat")).await;
    assert!(err.is_err(), "no 101, no WebSocket");
    let seen = up.last_seen().unwrap();
    assert_eq!(seen.headers["upgrade"], "websocket");
    assert_eq!(seen.headers["connection"], "upgrade");
    assert_eq!(get(web, "/").await.status, 200);
    proxy.shutdown().await;
}

/// A graceful shutdown waits for an open WebSocket tunnel (it is tracked
/// like a connection), and returns once the client closes it.
#[tokio::test]
async fn shutdown_waits_for_an_open_websocket() {
    let upstream = echo_server().await;
    let proxy = start_proxy(&format!(
        "drain_timeout: 10s\nlisteners:\n  - name: web\n    address: 127.0.0.1:0\nroutes:\n  - group: ws\n\
         groups:\n  ws:\n    servers:\n      - address: {upstream}\n        id: echo\n"
    ))
    .await;
    let web = proxy.local_addr("web").unwrap();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{web}/chat"))
        .await
        .expect("upgrade through weir");
    let shutdown = tokio::spawn(proxy.shutdown());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !shutdown.is_finished(),
        "shutdown returned while a WebSocket was open"
    );
    // The tunnel still carries frames while the proxy drains.
    ws.send(Message::text("still here")).await.unwrap();
    let echo = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("echo while draining")
        .unwrap()
        .unwrap();
    assert_eq!(echo, Message::text("still here"));
    ws.close(None).await.unwrap();
    drop(ws);
    let drained = tokio::time::timeout(Duration::from_secs(5), shutdown)
        .await
        .expect("shutdown ends once the WebSocket closed")
        .unwrap();
    assert!(drained, "drained within drain_timeout");
}
