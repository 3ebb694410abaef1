//! The access log: written off the request path by a writer thread, as text
//! or JSON, to stderr or a file that SIGUSR1 reopens (logrotate).

use crate::support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Waits (at most 5 s) until `path` holds `n` lines.
async fn wait_lines(path: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let l = lines(path);
        if l.len() >= n || Instant::now() > deadline {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn json_access_log_file_gets_one_line_per_request() {
    let dir = TempDir::new("access-json");
    let log = dir.path().join("access.log");
    let up = spawn_upstream("a").await;
    let proxy = start_proxy(&format!(
        "workers: 2\naccess_log:\n  format: json\n  path: {}\nlisteners:\n  - name: web\n    address: 127.0.0.1:0\n\
         routes:\n  - name: api\n    group: g\ngroups:\n  g:\n    servers:\n{}",
        log.display(),
        servers_yaml(&[(&up, 1)])
    ))
    .await;
    let addr = proxy.local_addr("web").unwrap();
    for i in 0..5 {
        assert_eq!(get(addr, &format!("/item/{i}?q=1")).await.status, 200);
    }
    assert_eq!(get(addr, "/missing").await.status, 200);
    let got = wait_lines(&log, 6).await;
    assert_eq!(got.len(), 6, "{got:?}");
    let mut paths = Vec::new();
    for line in &got {
        let v: serde_json::Value = serde_json::from_str(line).expect("one JSON object per line");
        assert_eq!(v["method"], "GET");
        assert_eq!(v["status"], 200);
        assert_eq!(v["route"], "api");
        assert_eq!(v["group"], "g");
        assert_eq!(v["server"], "a");
        assert!(v["duration_ms"].as_f64().unwrap() >= 0.0);
        assert_eq!(v["bytes"], 1);
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
        assert!(v["client"].as_str().unwrap().starts_with("127.0.0.1:"));
        paths.push(v["path"].as_str().unwrap().to_string());
    }
    paths.sort();
    assert_eq!(paths[0], "/item/0?q=1");
    assert_eq!(proxy.access_log().written(), 6);
    assert_eq!(proxy.access_log().dropped(), 0);
    proxy.shutdown().await;
}

#[tokio::test]
async fn access_log_can_be_turned_off() {
    let dir = TempDir::new("access-off");
    let log = dir.path().join("access.log");
    let up = spawn_upstream("a").await;
    let proxy = start_proxy(&format!(
        "access_log:\n  enabled: false\n  path: {}\nlisteners:\n  - name: web\n    address: 127.0.0.1:0\n\
         routes:\n  - group: g\ngroups:\n  g:\n    servers:\n{}",
        log.display(),
        servers_yaml(&[(&up, 1)])
    ))
    .await;
    let addr = proxy.local_addr("web").unwrap();
    for _ in 0..3 {
        assert_eq!(get(addr, "/").await.status, 200);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(lines(&log).is_empty());
    assert_eq!(proxy.access_log().written(), 0);
    proxy.shutdown().await;
}

struct Weir(Child);

impl Drop for Weir {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

/// The built binary reopens its access log on SIGUSR1: after logrotate
/// renamed the file, new lines go to a new file at the configured path.
#[tokio::test]
async fn sigusr1_reopens_the_access_log_file() {
    let dir = TempDir::new("access-usr1");
    let log = dir.path().join("access.log");
    let up = spawn_upstream("a").await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let file = dir.path().join("weir.yaml");
    std::fs::write(
        &file,
        format!(
            "workers: 2\naccess_log:\n  path: access.log\nlisteners:\n  - address: 127.0.0.1:{port}\n\
             routes:\n  - group: g\ngroups:\n  g:\n    servers:\n{}",
            servers_yaml(&[(&up, 1)])
        ),
    )
    .unwrap();
    let weir = Weir(
        Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["--config", file.to_str().unwrap(), "--log", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    within(10, "weir listening", async {
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    for _ in 0..3 {
        assert_eq!(get(addr, "/before").await.status, 200);
    }
    assert_eq!(wait_lines(&log, 3).await.len(), 3);
    let rotated = dir.path().join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    signal(&weir.0, "-USR1");
    // The writer reopens before the next batch it writes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..2 {
        assert_eq!(get(addr, "/after").await.status, 200);
    }
    let new = wait_lines(&log, 2).await;
    assert_eq!(new.len(), 2, "{new:?}");
    assert!(new
        .iter()
        .all(|l| l.contains("path=/after") && l.contains("status=200")));
    let old = lines(&rotated);
    assert_eq!(old.len(), 3);
    assert!(old.iter().all(|l| l.contains("path=/before")));
    signal(&weir.0, "-TERM");
}
