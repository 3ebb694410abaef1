//! Binary upgrade (`SIGUSR2`): the real weir binary under `hey -c 16 -z 8s`
//! starts its successor with every listening socket, which serves while the
//! old process drains and exits: zero errors. A successor that cannot start
//! (the config became invalid) leaves the old process serving.

use crate::support;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::StatusCode;
use support::*;

/// A free port on 127.0.0.1 (bound and released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

fn alive(pid: u32) -> bool {
    // A zombie (exited, not yet reaped) counts as gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

/// Kills the processes it holds when the test ends, passed or not.
struct Reaper(Vec<u32>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for pid in &self.0 {
            signal(*pid, "-KILL");
        }
    }
}

struct Weir {
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
    port: u16,
    admin: u16,
    config: PathBuf,
}

impl Weir {
    fn start(dir: &Path, upstream: SocketAddr) -> Weir {
        Weir::start_under(dir, upstream, |_, _| Vec::new())
    }

    /// Starts weir as the last arguments of `wrapper(port, admin)`'s
    /// command (none: weir itself).
    fn start_under(
        dir: &Path,
        upstream: SocketAddr,
        wrapper: impl Fn(u16, u16) -> Vec<String>,
    ) -> Weir {
        let (port, admin) = (free_port(), free_port());
        let config = dir.join("weir.yaml");
        std::fs::write(
            &config,
            format!(
                "workers: 2\ndrain_timeout: 5s\nadmin:\n  address: 127.0.0.1:{admin}\n\
                 listeners:\n  - name: http\n    address: 127.0.0.1:{port}\n\
                 routes:\n  - group: g\ngroups:\n  g:\n    servers:\n      - address: {upstream}\n"
            ),
        )
        .unwrap();
        let mut argv = wrapper(port, admin);
        argv.push(env!("CARGO_BIN_EXE_weir").to_string());
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .arg("--config")
            .arg(&config)
            .args(["--log-format", "json", "--log", "info,weir::access=off"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("weir starts");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&logs);
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Weir {
            child,
            logs,
            port,
            admin,
            config,
        }
    }

    fn logged(&self, needle: &str) -> Option<String> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.contains(needle))
            .cloned()
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    async fn wait_serving(&self) {
        let admin = SocketAddr::from(([127, 0, 0, 1], self.admin));
        let t0 = Instant::now();
        loop {
            if tokio::net::TcpStream::connect(admin).await.is_ok()
                && get(admin, "/healthz").await.status == StatusCode::OK
            {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "weir did not start:\n{}",
                self.logs.lock().unwrap().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (at most `secs`) until `needle` is logged.
    async fn wait_logged(&self, needle: &str, secs: u64) -> String {
        let t0 = Instant::now();
        loop {
            if let Some(l) = self.logged(needle) {
                return l;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(secs),
                "not logged within {secs}s: {needle}\n{}",
                self.logs.lock().unwrap().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn temp_dir(name: &str) -> TempDir {
    TempDir::new(&format!("upgrade-{name}"))
}

fn hey() -> String {
    let hey = ["/usr/bin/hey", "/usr/local/bin/hey"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .map(str::to_string)
        .or_else(|| std::env::var("HEY").ok())
        .expect("hey is installed (.ci/run installs it)");
    hey
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr2_under_load_drops_nothing_and_the_old_process_exits() {
    let dir = temp_dir("load");
    let up = spawn_upstream("a").await;
    let mut weir = Weir::start(&dir, up.addr);
    let old = weir.child.id();
    let mut reaper = Reaper(vec![old]);
    weir.wait_serving().await;

    let url = format!("http://{}/", weir.addr());
    let load = tokio::task::spawn_blocking(move || {
        Command::new(hey())
            .args(["-c", "16", "-z", "8s", &url])
            .output()
            .expect("hey runs")
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    signal(old, "-USR2");

    let line = weir.wait_logged("\"new_pid\"", 30).await;
    let new: u32 = line
        .split("\"new_pid\":")
        .nth(1)
        .and_then(|s| {
            s.split(|c: char| !c.is_ascii_digit())
                .next()
                .map(str::to_string)
        })
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no new pid in {line}"));
    reaper.0.push(new);
    assert_ne!(new, old);

    // The old process drains and exits, by itself.
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = weir.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the old process did not exit"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "old process: {status}");

    let out = within(30, "hey", load).await.unwrap();
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "hey failed:\n{report}");
    assert!(
        !report.contains("Error distribution"),
        "errors during the upgrade:\n{report}"
    );
    let ok: usize = report
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("[200]")
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or_else(|| panic!("no 200s:\n{report}"));
    assert!(ok > 100, "too few answers:\n{report}");
    assert!(
        !report.lines().any(|l| l.trim().starts_with('[')
            && !l.trim().starts_with("[200]")
            && l.contains("responses")),
        "non-200 answers:\n{report}"
    );

    // The new process owns the sockets: it alone answers now.
    assert!(alive(new), "the new process runs");
    assert!(!alive(old));
    assert_eq!(get(weir.addr(), "/").await.status, StatusCode::OK);
    let admin = SocketAddr::from(([127, 0, 0, 1], weir.admin));
    assert_eq!(get(admin, "/healthz").await.status, StatusCode::OK);

    signal(new, "-TERM");
    let t0 = Instant::now();
    while alive(new) && t0.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!alive(new), "the new process stops on SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_binary_that_fails_to_start_leaves_the_old_one_serving() {
    let dir = temp_dir("fail");
    let up = spawn_upstream("a").await;
    let mut weir = Weir::start(&dir, up.addr);
    let old = weir.child.id();
    let _reaper = Reaper(vec![old]);
    weir.wait_serving().await;

    // The successor reads the same file: now invalid, so it exits at once.
    std::fs::write(&weir.config, "listeners: [nonsense\n").unwrap();
    signal(old, "-USR2");
    let line = weir.wait_logged("binary upgrade failed", 30).await;
    assert!(line.contains("exited"), "{line}");

    assert!(weir.child.try_wait().unwrap().is_none(), "the old one runs");
    for _ in 0..5 {
        assert_eq!(get(weir.addr(), "/").await.status, StatusCode::OK);
    }
    signal(old, "-TERM");
    let t0 = Instant::now();
    while weir.child.try_wait().unwrap().is_none() {
        assert!(t0.elapsed() < Duration::from_secs(10), "no exit on SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_socket_activation_serves_on_the_passed_sockets() {
    // systemd-socket-activate (package systemd) binds like a .socket unit
    // (no SO_REUSEPORT) and passes LISTEN_FDS/LISTEN_PID.
    let tool = "/usr/bin/systemd-socket-activate";
    assert!(
        Path::new(tool).exists(),
        "systemd-socket-activate is installed (.ci/run installs systemd)"
    );
    let dir = temp_dir("systemd");
    let up = spawn_upstream("a").await;
    let weir = Weir::start_under(&dir, up.addr, |port, admin| {
        vec![
            tool.to_string(),
            "-l".into(),
            format!("127.0.0.1:{port}"),
            "-l".into(),
            format!("127.0.0.1:{admin}"),
        ]
    });
    let _reaper = Reaper(vec![weir.child.id()]);
    weir.wait_serving().await;
    weir.wait_logged("inherited a listening socket", 10).await;
    for _ in 0..10 {
        assert_eq!(get(weir.addr(), "/").await.status, StatusCode::OK);
    }
    let logs = weir.logs.lock().unwrap().join("\n");
    assert_eq!(
        logs.matches("inherited a listening socket").count(),
        2,
        "{logs}"
    );
    assert!(logs.contains("inherited socket"), "{logs}");
}
