//! Config of sticky sessions: the `affinity` secret sources and
//! `groups.*.sticky` validation, each error with file:line:col and key.

use crate::support;

use std::path::Path;

use support::*;

fn base(affinity: &str, sticky: &str) -> String {
    format!(
        "listeners:\n  - address: 127.0.0.1:0\n{affinity}routes:\n  - group: g\ngroups:\n  g:\n    servers:\n      - address: 127.0.0.1:9\n        id: s1\n{sticky}"
    )
}

fn errors(yaml: &str, file: &Path) -> String {
    match weir::config::load_str(yaml, file) {
        Ok(_) => panic!("config accepted:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

fn temp_dir(tag: &str) -> TempDir {
    TempDir::new(&format!("affinity-{tag}"))
}

#[test]
fn secret_sources() {
    let file = root().join("test.yaml");
    let sticky = "    sticky:\n      cookie: c\n";

    // Literal.
    let c = config(&base("affinity:\n  secret: \"0123456789abcdef\"\n", sticky));
    assert_eq!(c.affinity.unwrap().bytes(), b"0123456789abcdef");
    assert_eq!(&*c.groups[0].sticky.as_ref().unwrap().cookie, "c");

    // Environment variable: set, unset, too short.
    std::env::set_var("WEIR_TEST_AFFINITY_ENV_OK", "from-the-environment!");
    let c = config(&base(
        "affinity:\n  secret_env: WEIR_TEST_AFFINITY_ENV_OK\n",
        sticky,
    ));
    assert_eq!(c.affinity.unwrap().bytes(), b"from-the-environment!");
    let e = errors(
        &base(
            "affinity:\n  secret_env: WEIR_TEST_AFFINITY_UNSET\n",
            sticky,
        ),
        &file,
    );
    assert!(
        e.contains("test.yaml:4:15: affinity.secret_env: environment variable WEIR_TEST_AFFINITY_UNSET is not set"),
        "{e}"
    );
    std::env::set_var("WEIR_TEST_AFFINITY_ENV_SHORT", "short");
    let e = errors(
        &base(
            "affinity:\n  secret_env: WEIR_TEST_AFFINITY_ENV_SHORT\n",
            sticky,
        ),
        &file,
    );
    assert!(
        e.contains("test.yaml:4:15: affinity.secret_env: the secret is 5 bytes long; at least 16"),
        "{e}"
    );

    // File, relative to the config's directory, final newline ignored.
    let dir = temp_dir("file");
    std::fs::write(dir.join("secret.txt"), "file-secret-0123456789\n").unwrap();
    let yaml = base("affinity:\n  secret_file: secret.txt\n", sticky);
    let c = weir::config::load_str(&yaml, &dir.join("weir.yaml")).unwrap();
    assert_eq!(c.affinity.unwrap().bytes(), b"file-secret-0123456789");
    let yaml = base("affinity:\n  secret_file: missing.txt\n", sticky);
    let e = errors(&yaml, &dir.join("weir.yaml"));
    assert!(e.contains("weir.yaml:4:16: affinity.secret_file: "), "{e}");
    assert!(e.contains("missing.txt: cannot read"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);

    // Exactly one source.
    let e = errors(
        &base(
            "affinity:\n  secret: \"0123456789abcdef\"\n  secret_env: X\n",
            sticky,
        ),
        &file,
    );
    assert!(
        e.contains("affinity: set exactly one of secret_env, secret_file, secret"),
        "{e}"
    );
    let e = errors(&base("affinity: {}\n", sticky), &file);
    assert!(
        e.contains("test.yaml:3:11: affinity: set exactly one"),
        "{e}"
    );
    let e = errors(&base("affinity:\n  secret: \"short\"\n", sticky), &file);
    assert!(
        e.contains("test.yaml:4:11: affinity.secret: the secret is 5 bytes"),
        "{e}"
    );
    let e = errors(&base("affinity:\n  key: x\n", sticky), &file);
    assert!(e.contains("affinity"), "{e}");
}

#[test]
fn sticky_validation() {
    let file = root().join("test.yaml");
    let bad = |sticky: &str, want: &str| {
        let e = errors(&base("", sticky), &file);
        assert!(e.contains(want), "want {want:?} in:\n{e}");
    };
    bad(
        "    sticky:\n      cookie: \"bad name\"\n",
        "test.yaml:11:15: groups.g.sticky.cookie: \"bad name\" is not a valid cookie name",
    );
    bad(
        "    sticky:\n      cookie: \"a;b\"\n",
        "groups.g.sticky.cookie: \"a;b\" is not a valid cookie name",
    );
    bad(
        "    sticky:\n      cookie: \"\"\n",
        "is not a valid cookie name",
    );
    bad(
        "    sticky:\n      cookie: c\n      max_age: 500ms\n",
        "test.yaml:12:16: groups.g.sticky.max_age: must be at least 1s",
    );
    bad(
        "    sticky:\n      cookie: c\n      max_age: 1500ms\n",
        "groups.g.sticky.max_age: must be a whole number of seconds",
    );
    bad(
        "    sticky:\n      cookie: c\n      max_age: soon\n",
        "groups.g.sticky.max_age: \"soon\"",
    );
    bad(
        "    sticky:\n      cookie: c\n      path: app\n",
        "groups.g.sticky.path: must start with /",
    );
    bad(
        "    sticky:\n      cookie: c\n      domain: \"exa mple.com\"\n",
        "groups.g.sticky.domain: \"exa mple.com\" is not a domain name",
    );
    bad(
        "    sticky:\n      cookie: c\n      same_site: sometimes\n",
        "groups.g.sticky.same_site: \"sometimes\": expected lax, strict or none",
    );
    bad(
        "    sticky:\n      cookie: c\n      same_site: none\n      secure: false\n",
        "groups.g.sticky.secure: cannot be false",
    );
    bad(
        "    sticky:\n      cookie: __Host-c\n      path: /app\n",
        "groups.g.sticky.cookie: a __Host- cookie needs path /",
    );
    bad("    sticky:\n      max_age: 1h\n", "cookie");
    bad(
        "    sticky:\n      cookie: c\n      colour: red\n",
        "unknown field",
    );

    // Two sticky groups with one cookie name.
    let yaml = "listeners:\n  - address: 127.0.0.1:0\nroutes:\n  - group: g\ngroups:\n  g:\n    sticky:\n      cookie: same\n    servers:\n      - address: 127.0.0.1:9\n  h:\n    sticky:\n      cookie: same\n    servers:\n      - address: 127.0.0.1:9\n";
    let e = errors(yaml, &file);
    assert!(
        e.contains("test.yaml:13:15: groups.h.sticky.cookie: cookie name \"same\" is already used by group \"g\""),
        "{e}"
    );

    // Server ids longer than a cookie can carry.
    let long = "x".repeat(256);
    let yaml = format!("listeners:\n  - address: 127.0.0.1:0\nroutes:\n  - group: g\ngroups:\n  g:\n    sticky:\n      cookie: c\n    servers:\n      - address: 127.0.0.1:9\n        id: {long}\n");
    let e = errors(&yaml, &file);
    assert!(e.contains("longer than 255 bytes"), "{e}");

    // Every optional key, resolved.
    let c = config(&base(
        "",
        "    sticky:\n      cookie: __Secure-s\n      max_age: 2h\n      path: /app\n      domain: example.com\n      same_site: Strict\n      http_only: false\n",
    ));
    let s = c.groups[0].sticky.as_ref().unwrap();
    assert_eq!(s.max_age, Some(std::time::Duration::from_secs(7200)));
    assert_eq!(&*s.path, "/app");
    assert_eq!(s.domain.as_deref(), Some("example.com"));
    assert_eq!(s.same_site, weir::affinity::SameSite::Strict);
    assert_eq!(
        s.secure,
        weir::affinity::Secure::Always,
        "__Secure- implies Secure"
    );
    assert!(!s.http_only);
    assert!(s.secret.is_none());
}

/// `weir --check` names the file, line and column of a missing secret.
#[test]
fn check_reports_a_missing_secret_env() {
    let dir = temp_dir("check");
    let file = dir.join("weir.yaml");
    std::fs::write(
        &file,
        base(
            "affinity:\n  secret_env: WEIR_TEST_AFFINITY_NEVER_SET\n",
            "    sticky:\n      cookie: c\n",
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("--check")
        .arg("--config")
        .arg(&file)
        .env_remove("WEIR_TEST_AFFINITY_NEVER_SET")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!(
            "{}:4:15: affinity.secret_env: environment variable WEIR_TEST_AFFINITY_NEVER_SET is not set",
            file.display()
        )),
        "{stderr}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("--check")
        .arg("--config")
        .arg(&file)
        .env("WEIR_TEST_AFFINITY_NEVER_SET", "now-it-is-set-0123456789")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The example config pins `repositories` and reads its secret from the environment.
#[test]
fn example_config_pins_repositories() {
    std::env::set_var("WEIR_AFFINITY_SECRET", "example-secret-0123456789");
    let c = weir::config::load_file(&path("routes.example.yaml")).unwrap();
    let repos = c
        .groups
        .iter()
        .find(|g| &*g.name == "repositories")
        .unwrap();
    let s = repos.sticky.as_ref().expect("repositories is sticky");
    assert_eq!(&*s.cookie, "weir_repo");
    assert_eq!(s.max_age, Some(std::time::Duration::from_secs(3600)));
    assert!(c.affinity.is_some());
}
