//! End to end: the built `weir` binary on a config file, in-process upstreams,
//! driven by curl (HTTP/1.1, h2c prior knowledge, TLS with HTTP/2 and
//! HTTP/1.1) and hey (plain and TLS), then a graceful SIGTERM that lets an
//! in-flight request finish.
//!
//! Needs `curl` and `hey` on PATH (`.ci/run` installs them).

use crate::support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use http::StatusCode;
use support::*;

/// Kills the weir process if the test ends early.
struct Weir {
    child: Child,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Drop for Weir {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Weir {
    fn start(config: &std::path::Path) -> Weir {
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["--config", config.to_str().unwrap(), "--log-format", "json"])
            .env("RUST_LOG", "info,weir::access=off")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn weir");
        let (tx, rx) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Weir {
            child,
            lines: rx,
            log: Vec::new(),
        }
    }

    /// Waits for the "listening" log lines and returns listener name → address.
    fn listening(&mut self, want: usize) -> Vec<(String, SocketAddr)> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut found = Vec::new();
        while found.len() < want {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match self.lines.recv_timeout(left) {
                Ok(l) => l,
                Err(_) => panic!(
                    "weir did not log {want} listening lines within 20s; log:\n{}",
                    self.log.join("\n")
                ),
            };
            self.log.push(line.clone());
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if v["message"] == "listening" {
                let name = v["listener"].as_str().unwrap().to_string();
                let addr = v["address"].as_str().unwrap().parse().unwrap();
                found.push((name, addr));
            }
        }
        found
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `limit` for the process to exit; returns its exit code.
    fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code();
            }
            if Instant::now() > deadline {
                panic!("weir did not exit within {limit:?} after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Runs `program args` with a time limit; returns (exit code, stdout, stderr).
async fn run(program: &str, args: &[&str], limit_secs: u64) -> (Option<i32>, String, String) {
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run `{program}` ({e}); install it (e.g. apt-get install {program}) — .ci/run does")
        });
    let out = within(limit_secs, program, child.wait_with_output())
        .await
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `curl -sS -D - -o /dev/null ARGS`: returns the response head (status line and headers).
async fn curl_head(args: &[&str]) -> String {
    let mut all = vec!["-sS", "--max-time", "20", "-D", "-", "-o", "/dev/null"];
    all.extend_from_slice(args);
    let (code, out, err) = run("curl", &all, 30).await;
    assert_eq!(code, Some(0), "curl {args:?} failed: {err}");
    out
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Checks hey's report: every response 200, no errors; returns the count.
fn assert_hey_ok(report: &str, n: usize) {
    assert!(
        !report.contains("Error distribution"),
        "hey saw errors:\n{report}"
    );
    let dist = report
        .split("Status code distribution:")
        .nth(1)
        .unwrap_or_else(|| panic!("no status code distribution in hey's report:\n{report}"));
    let codes: Vec<&str> = dist
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('['))
        .collect();
    assert_eq!(
        codes,
        [format!("[200]\t{n} responses").as_str()],
        "hey report:\n{report}"
    );
}

fn config_file(yaml: &str) -> TempFile {
    TempFile::new("e2e", "weir.yaml", yaml)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_serves_curl_and_hey_and_drains_on_sigterm() {
    let a = spawn_upstream("repo-a").await;
    let b = spawn_upstream("repo-b").await;
    let p = spawn_upstream("profile").await;
    let slow = spawn_upstream_with("slow", |_req| async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        text_response(StatusCode::OK, "slow", "finally")
    })
    .await;
    let crt = path("certs-dev/localhost.crt");
    let key = path("certs-dev/localhost.key");
    let ca = path("certs-dev/ca.crt");
    let ca = ca.to_str().unwrap();
    let yaml = format!(
        "listeners:\n  - name: http\n    address: 127.0.0.1:0\n  - name: https\n    address: 127.0.0.1:0\n\
         \x20   tls:\n      certificates:\n        - cert: {}\n          key: {}\n\
         drain_timeout: 10s\n\
         routes:\n  - match:\n      path_prefix: /repositories\n    group: repositories\n\
         \x20 - match:\n      path_prefix: /profile\n    group: profile\n\
         \x20 - match:\n      path_prefix: /slow\n    group: slow\n\
         groups:\n  repositories:\n    servers:\n{}  profile:\n    servers:\n{}  slow:\n    servers:\n{}",
        crt.display(),
        key.display(),
        servers_yaml(&[(&a, 3), (&b, 1)]),
        servers_yaml(&[(&p, 1)]),
        servers_yaml(&[(&slow, 1)]),
    );
    let config = config_file(&yaml);
    let mut weir = Weir::start(&config);
    let addrs = weir.listening(2);
    let find = |n: &str| addrs.iter().find(|(name, _)| name == n).unwrap().1;
    let (http, https) = (find("http"), find("https"));
    let plain = format!("http://{http}");
    let tls_port = https.port();
    let tls = format!("https://localhost:{tls_port}");
    let resolve = format!("localhost:{tls_port}:127.0.0.1");

    // curl, HTTP/1.1.
    let head = curl_head(&[&format!("{plain}/repositories/42")]).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        matches!(header(&head, "x-server"), Some("repo-a" | "repo-b")),
        "{head}"
    );
    assert_eq!(header(&head, "via"), Some("1.1 weir"), "{head}");
    let head = curl_head(&[&format!("{plain}/profile/me")]).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(header(&head, "x-server"), Some("profile"));
    let head = curl_head(&[&format!("{plain}/nowhere")]).await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");

    // curl, h2c prior knowledge.
    let head = curl_head(&["--http2-prior-knowledge", &format!("{plain}/profile/me")]).await;
    assert!(head.starts_with("HTTP/2 200"), "{head}");
    assert_eq!(header(&head, "x-server"), Some("profile"));
    assert_eq!(p.last_seen().unwrap().headers["via"], "2.0 weir");

    // curl over TLS, verifying against the dev CA: HTTP/2 by ALPN, and HTTP/1.1.
    let head = curl_head(&[
        "--cacert",
        ca,
        "--resolve",
        &resolve,
        "--http2",
        &format!("{tls}/repositories/42"),
    ])
    .await;
    assert!(head.starts_with("HTTP/2 200"), "{head}");
    assert!(matches!(
        header(&head, "x-server"),
        Some("repo-a" | "repo-b")
    ));
    let head = curl_head(&[
        "--cacert",
        ca,
        "--resolve",
        &resolve,
        "--http1.1",
        &format!("{tls}/profile/me"),
    ])
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(p.last_seen().unwrap().headers["x-forwarded-proto"], "https");

    // hey, plain and TLS (hey sends SNI "localhost:PORT" over TLS).
    let before = (a.hits(), b.hits());
    let (code, report, err) = run(
        "hey",
        &["-n", "2000", "-c", "20", &format!("{plain}/repositories/x")],
        120,
    )
    .await;
    assert_eq!(code, Some(0), "hey failed: {err}");
    assert_hey_ok(&report, 2000);
    let (code, report, err) = run(
        "hey",
        &["-n", "2000", "-c", "20", &format!("{tls}/repositories/x")],
        120,
    )
    .await;
    assert_eq!(code, Some(0), "hey over TLS failed: {err}");
    assert_hey_ok(&report, 2000);
    let (da, db) = (a.hits() - before.0, b.hits() - before.1);
    assert_eq!(da + db, 4000);
    let share = da as f64 / 4000.0;
    assert!(
        (share - 0.75).abs() <= 0.03,
        "weights 3:1 gave {da}:{db} under hey"
    );

    // SIGTERM while a request is in flight: it finishes, new connections are
    // refused, and the process exits 0 well within the drain timeout.
    let slow_req = tokio::spawn({
        let url = format!("{plain}/slow");
        async move { run("curl", &["-sS", "--max-time", "20", &url], 30).await }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while slow.hits() == 0 {
        assert!(
            Instant::now() < deadline,
            "the slow request never reached its upstream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (code, _, err) = run("kill", &["-TERM", &weir.pid().to_string()], 10).await;
    assert_eq!(code, Some(0), "kill: {err}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (code, _, _) = run(
        "curl",
        &["-sS", "--max-time", "5", &format!("{plain}/profile/me")],
        10,
    )
    .await;
    assert_ne!(code, Some(0), "a new request was served after SIGTERM");
    let (code, body, err) = slow_req.await.unwrap();
    assert_eq!(
        code,
        Some(0),
        "in-flight request failed during drain: {err}"
    );
    assert_eq!(body, "finally");
    let exit = tokio::task::block_in_place(|| weir.wait_exit(Duration::from_secs(15)));
    assert_eq!(
        exit,
        Some(0),
        "exit code after SIGTERM; log:\n{}",
        weir.log.join("\n")
    );
}
