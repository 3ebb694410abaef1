//! The `weir` binary's command line: `--check` prints every config error as
//! `FILE:LINE:COL: key: message` and exits 1 (0 when valid); `--version`.

use crate::support::TempFile;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs the built binary with `args`; kills it after 20 s.
fn run(args: &[&str]) -> Out {
    run_env(args, &[])
}

/// Runs the built binary with `args` and extra environment `env`; kills it after 20 s.
fn run_env(args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .envs(env.iter().copied())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn weir");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("weir {args:?} did not exit within 20s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    Out {
        code: status.code(),
        stdout,
        stderr,
    }
}

/// Writes `text` to a fresh file in the temp dir and returns its path.
fn write_config(name: &str, text: &str) -> TempFile {
    TempFile::new("cli", name, text)
}

/// `weir --check --config FILE`; asserts exit 1 and returns the error lines.
fn check_fails(name: &str, text: &str) -> (String, Vec<String>) {
    let p = write_config(name, text);
    let file = p.to_str().unwrap().to_string();
    let out = run(&["--check", "--config", &file]);
    assert_eq!(
        out.code,
        Some(1),
        "exit code for {name}\nstdout: {}\nstderr: {}",
        out.stdout,
        out.stderr
    );
    let lines: Vec<String> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    assert!(!lines.is_empty(), "no error printed for {name}");
    (file, lines)
}

/// Asserts that `lines` has a line `FILE:LINE:COL: key: ...message...` for one
/// of the allowed (line, col) positions.
fn assert_error(lines: &[String], file: &str, at: &[(u32, u32)], key: &str, message: &str) {
    let found = lines.iter().any(|l| {
        at.iter().any(|(line, col)| {
            let prefix = format!("{file}:{line}:{col}: {key}: ");
            l.starts_with(&prefix) && l.contains(message)
        })
    });
    assert!(
        found,
        "want `{file}:LINE:COL: {key}: ...{message}...` with (LINE, COL) in {at:?}; got:\n{}",
        lines.join("\n")
    );
}

const GOOD: &str = "\
listeners:
  - name: http
    address: 127.0.0.1:0
    request_header_timeout: 5s
  - name: https
    address: 127.0.0.1:0
    tls:
      certificates:
        - cert: localhost.crt
          key: localhost.key
routes:
  - name: r
    match:
      host: \"*.example.com\"
      path_prefix: /a
      methods: [GET]
      headers:
        x-canary: \"*\"
    group: g
  - match:
      path: /users/{id}
    group: g
groups:
  g:
    algorithm: round_robin
    servers:
      - address: 127.0.0.1:9001
        weight: 3
        id: one
      - address: localhost:9002
    timeouts:
      connect: 1s
      response: 30s
    retries: 1
";

#[test]
fn check_accepts_a_valid_file() {
    // Certificate paths are relative to the config file's directory.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let p = write_config("good.yaml", GOOD);
    let dir = p.parent().unwrap();
    for f in ["localhost.crt", "localhost.key"] {
        std::fs::copy(root.join("certs-dev").join(f), dir.join(f)).unwrap();
    }
    let out = run(&["--check", "--config", p.to_str().unwrap()]);
    assert_eq!(
        out.code,
        Some(0),
        "stdout: {}\nstderr: {}",
        out.stdout,
        out.stderr
    );
    assert!(out.stdout.contains("ok"), "stdout: {}", out.stdout);
    assert!(out.stderr.trim().is_empty(), "stderr: {}", out.stderr);
}

#[test]
fn check_accepts_the_example_config() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let p = root.join("routes.example.yaml");
    // The example names its affinity secret by environment variable (16+ bytes).
    let out = run_env(
        &["--check", "--config", p.to_str().unwrap()],
        &[("WEIR_AFFINITY_SECRET", "cli-test-secret-0123456789abcdef")],
    );
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
}

#[test]
fn unknown_key_is_located() {
    let (file, lines) = check_fails(
        "unknown.yaml",
        "listeners:\n  - name: http\n    address: 127.0.0.1:0\n    colour: blue\n",
    );
    assert_error(
        &lines,
        &file,
        &[(4, 5)],
        "listeners[0].colour",
        "unknown field `colour`",
    );
}

#[test]
fn unknown_top_level_key_is_located() {
    let (file, lines) = check_fails(
        "unknown_top.yaml",
        "listeners:\n  - address: 127.0.0.1:0\nroutez: []\n",
    );
    assert_error(&lines, &file, &[(3, 1)], "routez", "unknown field `routez`");
}

#[test]
fn bad_listener_address_is_located() {
    let (file, lines) = check_fails(
        "address.yaml",
        "listeners:\n  - name: http\n    address: not-an-address\n",
    );
    assert_error(
        &lines,
        &file,
        &[(3, 14)],
        "listeners[0].address",
        "not-an-address",
    );
}

#[test]
fn bad_server_address_is_located() {
    let (file, lines) = check_fails(
        "server.yaml",
        "listeners:\n  - address: 127.0.0.1:0\ngroups:\n  g:\n    servers:\n      - address: 127.0.0.1\n",
    );
    assert_error(
        &lines,
        &file,
        &[(6, 18)],
        "groups.g.servers[0].address",
        "127.0.0.1",
    );
}

#[test]
fn unknown_group_reference_is_located() {
    let (file, lines) = check_fails(
        "group.yaml",
        "listeners:\n  - address: 127.0.0.1:0\nroutes:\n  - match:\n      path_prefix: /a\n    group: nope\n\
         groups:\n  g:\n    servers:\n      - address: 127.0.0.1:1\n",
    );
    assert_error(&lines, &file, &[(6, 12)], "routes[0].group", "nope");
}

#[test]
fn bad_duration_is_located() {
    // The duration is the first key of its mapping.
    let (file, lines) = check_fails(
        "duration_first.yaml",
        "listeners:\n  - address: 127.0.0.1:0\ngroups:\n  g:\n    servers:\n      - address: 127.0.0.1:1\n\
         \x20   timeouts:\n      connect: soon\n",
    );
    // The key's or the value's column.
    assert_error(
        &lines,
        &file,
        &[(8, 7), (8, 16)],
        "groups.g.timeouts.connect",
        "soon",
    );
}

#[test]
fn bad_duration_after_another_key_is_located() {
    let (file, lines) = check_fails(
        "duration_second.yaml",
        "listeners:\n  - address: 127.0.0.1:0\n    idle_timeout: 5x\n",
    );
    assert_error(
        &lines,
        &file,
        &[(3, 5), (3, 19)],
        "listeners[0].idle_timeout",
        "5x",
    );
}

#[test]
fn unknown_jwt_algorithm_is_located() {
    let (file, lines) = check_fails(
        "jwt.yaml",
        "listeners:\n  - address: 127.0.0.1:0\njwt:\n  keys:\n    - algorithm: HS999\n      secret: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n\
         routes:\n  - group: g\ngroups:\n  g:\n    servers:\n      - address: 127.0.0.1:1\n",
    );
    assert_error(&lines, &file, &[(5, 18)], "jwt.keys[0].algorithm", "HS999");
}

#[test]
fn several_errors_are_all_printed() {
    let (file, lines) = check_fails(
        "multi.yaml",
        "listeners:\n  - name: http\n    address: not-an-address\nroutes:\n  - group: nope\n\
         jwt:\n  keys: []\ngroups:\n  g:\n    servers:\n      - address: 127.0.0.1\n\
         \x20     - address: 127.0.0.1:2\n        weight: 0\n",
    );
    assert_error(
        &lines,
        &file,
        &[(3, 14)],
        "listeners[0].address",
        "not-an-address",
    );
    assert_error(&lines, &file, &[(5, 12)], "routes[0].group", "nope");
    assert_error(&lines, &file, &[(7, 3)], "jwt.keys", "at least one key");
    assert_error(
        &lines,
        &file,
        &[(11, 18)],
        "groups.g.servers[0].address",
        "127.0.0.1",
    );
    assert_error(
        &lines,
        &file,
        &[(13, 17)],
        "groups.g.servers[1].weight",
        "between 1 and",
    );
    assert_eq!(lines.len(), 5, "{}", lines.join("\n"));
}

#[test]
fn yaml_syntax_error_is_located() {
    let (file, lines) = check_fails(
        "syntax.yaml",
        "listeners:\n  - address: 127.0.0.1:0\nroutes: [\n",
    );
    assert!(
        lines.iter().any(|l| l.starts_with(&format!("{file}:"))
            && l[file.len() + 1..].starts_with(|c: char| c.is_ascii_digit())),
        "{}",
        lines.join("\n")
    );
}

#[test]
fn missing_file_is_an_error() {
    let missing = std::env::temp_dir().join("weir-cli-test-does-not-exist.yaml");
    let out = run(&["--check", "--config", missing.to_str().unwrap()]);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains(missing.to_str().unwrap()),
        "{}",
        out.stderr
    );
}

#[test]
fn version_is_printed() {
    let out = run(&["--version"]);
    assert_eq!(out.code, Some(0));
    assert_eq!(
        out.stdout.trim(),
        format!("weir {}", env!("CARGO_PKG_VERSION"))
    );
}
