//! The smallest end-to-end check: one upstream behind weir.

use crate::support;

use support::*;

#[tokio::test]
async fn proxies_a_get_to_the_only_server() {
    let up = spawn_upstream("a").await;
    let proxy = start_proxy(&format!(
        "listeners:\n  - name: http\n    address: 127.0.0.1:0\nroutes:\n  - group: g\ngroups:\n  g:\n    servers:\n{}",
        servers_yaml(&[(&up, 1)])
    ))
    .await;
    let addr = proxy.local_addr("http").unwrap();
    let reply = get(addr, "/hello").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.server().as_deref(), Some("a"));
    assert_eq!(up.last_seen().unwrap().uri.path(), "/hello");
    assert!(proxy.shutdown().await);
}
