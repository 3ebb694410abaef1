//! Config-referenced files are read with bounds (issue 13, item 6): a device
//! (`/dev/zero`) or a FIFO named as the config, a secret, a certificate or a
//! key makes `weir --check` exit non-zero within a second with a clear
//! message, instead of growing by gigabytes or hanging.

use crate::support::TempDir;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Dir(TempDir);

impl Dir {
    fn new(tag: &str) -> Self {
        Dir(TempDir::new(&format!("h13-{tag}")))
    }

    fn fifo(&self, name: &str) -> PathBuf {
        let p = self.0.join(name);
        let ok = Command::new("mkfifo").arg(&p).status().unwrap().success();
        assert!(ok, "mkfifo {}", p.display());
        p
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        self.0.write(name, text)
    }
}

/// Runs `weir --check --config FILE`; fails the test unless it exits
/// within one second. Returns (exit code, stderr + stdout).
fn check(config: &Path) -> (i32, String) {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["--check", "--config"])
        .arg(config)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("weir --check {} did not exit", config.display());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(1),
        "--check took {elapsed:?} on {}",
        config.display()
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    (out.status.code().unwrap_or(-1), text)
}

const BASE: &str =
    "routes:\n  - group: g\ngroups:\n  g:\n    servers:\n      - address: 127.0.0.1:1\n";

#[test]
fn dev_zero_and_fifo_are_refused_at_once() {
    let dir = Dir::new("files");
    let fifo = dir.fifo("fifo");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let cert = root.join("certs-dev/localhost.crt");
    let key = root.join("certs-dev/localhost.key");
    let cases = [
        (
            "secret_file /dev/zero",
            format!("listeners:\n  - address: 127.0.0.1:0\naffinity:\n  secret_file: /dev/zero\n{BASE}"),
            "affinity.secret_file",
        ),
        (
            "secret_file FIFO",
            format!("listeners:\n  - address: 127.0.0.1:0\naffinity:\n  secret_file: {}\n{BASE}", fifo.display()),
            "affinity.secret_file",
        ),
        (
            "certificate FIFO",
            format!(
                "listeners:\n  - address: 127.0.0.1:0\n    tls:\n      certificates:\n        - cert: {}\n          key: {}\n{BASE}",
                fifo.display(),
                key.display()
            ),
            ".cert",
        ),
        (
            "key /dev/zero",
            format!(
                "listeners:\n  - address: 127.0.0.1:0\n    tls:\n      certificates:\n        - cert: {}\n          key: /dev/zero\n{BASE}",
                cert.display()
            ),
            ".key",
        ),
        (
            "jwt public_key_file /dev/zero",
            format!("listeners:\n  - address: 127.0.0.1:0\njwt:\n  keys:\n    - algorithm: RS256\n      public_key_file: /dev/zero\n{BASE}"),
            "public_key_file",
        ),
        (
            "admin token_file FIFO",
            format!("listeners:\n  - address: 127.0.0.1:0\nadmin:\n  address: 127.0.0.1:0\n  token_file: {}\n{BASE}", fifo.display()),
            "admin.token_file",
        ),
    ];
    for (what, yaml, key_name) in cases {
        let file = dir.write("weir.yaml", &yaml);
        let (code, out) = check(&file);
        assert_ne!(code, 0, "{what}: {out}");
        assert!(out.contains("not a regular file"), "{what}: {out}");
        assert!(out.contains(key_name), "{what}: {out}");
    }
}

#[test]
fn the_config_file_itself_must_be_a_regular_file() {
    let dir = Dir::new("config");
    let fifo = dir.fifo("weir.yaml");
    for path in [Path::new("/dev/zero"), fifo.as_path()] {
        let (code, out) = check(path);
        assert_ne!(code, 0, "{}: {out}", path.display());
        assert!(
            out.contains("not a regular file"),
            "{}: {out}",
            path.display()
        );
    }
}

#[test]
fn a_config_file_over_the_cap_is_refused() {
    let dir = Dir::new("big");
    let mut yaml = format!("listeners:\n  - address: 127.0.0.1:0\n{BASE}");
    yaml.push('#');
    yaml.push_str(&"x".repeat(weir::config::MAX_CONFIG_BYTES));
    let file = dir.write("weir.yaml", &yaml);
    let e = weir::config::load_file(&file).unwrap_err().to_string();
    assert!(e.contains("larger than"), "{e}");
}

#[tokio::test]
async fn a_reload_onto_dev_zero_or_a_fifo_fails_fast_and_keeps_the_config() {
    let dir = Dir::new("reload");
    let good = format!("listeners:\n  - name: http\n    address: 127.0.0.1:0\n{BASE}");
    let file = dir.write("weir.yaml", &good);
    let config = weir::config::load_file(&file).unwrap();
    let running = weir::Proxy::new(config).start().await.unwrap();
    let fifo = dir.fifo("secret");
    for secret in [PathBuf::from("/dev/zero"), fifo] {
        dir.write(
            "weir.yaml",
            &format!("{good}affinity:\n  secret_file: {}\n", secret.display()),
        );
        let started = Instant::now();
        let e = tokio::time::timeout(Duration::from_secs(5), running.reload())
            .await
            .expect("reload returns")
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }
    // The config file itself replaced by a FIFO.
    std::fs::remove_file(&file).unwrap();
    dir.fifo("weir.yaml");
    let started = Instant::now();
    let e = tokio::time::timeout(Duration::from_secs(5), running.reload())
        .await
        .expect("reload returns")
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(e.to_string().contains("not a regular file"), "{e}");
    assert!(running.local_addr("http").is_some());
    running.shutdown().await;
}
