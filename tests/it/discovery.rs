//! Servers from DNS (`groups.*.discovery`) against a real DNS server: a
//! `dnsmasq` on loopback serving an `addn-hosts` file that the test edits
//! (and SIGHUPs dnsmasq to re-read). Upstreams listen on 127.0.0.1:P and
//! 127.0.0.2:P (the same port: a discovered server is `ip:port`).

use crate::support;

use std::collections::HashSet;
use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use support::*;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

fn dnsmasq_bin() -> Option<PathBuf> {
    ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq", "/sbin/dnsmasq"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// A dnsmasq on 127.0.0.1:port answering from `hosts` only; killed on drop.
struct Dnsmasq {
    child: Child,
    port: u16,
}

impl Dnsmasq {
    fn start(bin: &Path, hosts: &Path, dir: &Path) -> Dnsmasq {
        // A free UDP port (dnsmasq also binds TCP on it; retried on failure).
        for _ in 0..5 {
            let port = UdpSocket::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut child = Command::new(bin)
                .args([
                    "--no-daemon",
                    "--no-resolv",
                    "--no-hosts",
                    "--listen-address=127.0.0.1",
                    "--bind-interfaces",
                    "--user=root",
                    "--cache-size=0",
                    "--log-queries",
                ])
                .arg(format!("--port={port}"))
                .arg(format!("--addn-hosts={}", hosts.display()))
                .arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("dnsmasq starts");
            std::thread::sleep(Duration::from_millis(300));
            if child.try_wait().unwrap().is_none() {
                return Dnsmasq { child, port };
            }
        }
        panic!("dnsmasq did not stay up");
    }

    fn hup(&self) {
        let ok = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -HUP dnsmasq");
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An HTTP/1.1 upstream on `addr` answering its own IP as the body.
async fn upstream(addr: SocketAddr) -> JoinHandle<()> {
    let listener = TcpListener::bind(addr).await.unwrap();
    let name = addr.ip().to_string();
    tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let name = name.clone();
            conns.spawn(async move {
                let svc = service_fn(move |_req| {
                    let name = name.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from(name),
                        )))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    })
}

fn write_hosts(path: &Path, ips: &[&str]) {
    let mut f = std::fs::File::create(path).unwrap();
    for ip in ips {
        writeln!(f, "{ip} api.test").unwrap();
    }
}

/// The servers that answered `n` requests.
async fn answered(addr: SocketAddr, n: usize) -> HashSet<String> {
    let mut seen = HashSet::new();
    for _ in 0..n {
        let r = get(addr, "/").await;
        assert_eq!(r.status, 200, "{}", r.text());
        seen.insert(r.text());
    }
    seen
}

/// Captured log lines of this test's discovery (its DNS name is `api.test`).
fn count_logs(needle: &str) -> usize {
    support::logs()
        .lines()
        .filter(|l| l.contains(needle) && l.contains("api.test"))
        .count()
}

fn healthy(running: &weir::Running, id: &str) -> Option<bool> {
    let snap = running.snapshot();
    let g = snap.group("api")?;
    g.servers
        .iter()
        .find(|s| &*s.id == id)
        .map(|s| s.state.is_healthy())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_records_add_and_remove_servers_and_a_dead_resolver_keeps_the_set() {
    let Some(bin) = dnsmasq_bin() else {
        panic!("dnsmasq not found: apt-get install dnsmasq-base (see .ci/run)");
    };
    support::capture_logs();

    let dir = std::env::temp_dir().join(format!("weir-discovery-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let hosts = dir.join("hosts");
    write_hosts(&hosts, &["127.0.0.1", "127.0.0.2"]);
    let mut dns = Dnsmasq::start(&bin, &hosts, &dir);

    // Same port on both loopback addresses.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let one: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let two: SocketAddr = format!("127.0.0.2:{port}").parse().unwrap();
    let _up1 = upstream(one).await;
    let up2 = upstream(two).await;

    let yaml = format!(
        "access_log:\n  enabled: false\nlisteners:\n  - address: 127.0.0.1:0\nroutes:\n  - group: api\ngroups:\n  api:\n    discovery:\n      dns: api.test:{port}\n      interval: 300ms\n      resolver: 127.0.0.1:{}\n      slow_start: 1s\n    servers: []\n    retries: 0\n    health_check:\n      type: tcp\n      interval: 100ms\n      timeout: 500ms\n      unhealthy_threshold: 2\n      healthy_threshold: 1\n",
        dns.port
    );
    let running = weir::Proxy::new(config(&yaml)).start().await.unwrap();
    let addr = running.local_addrs()[0].1;
    let both: HashSet<String> = ["127.0.0.1".to_string(), "127.0.0.2".to_string()].into();

    // Both records are servers from the start (the first lookup is awaited).
    assert_eq!(answered(addr, 20).await, both);
    let id2 = two.to_string();
    assert_eq!(healthy(&running, &id2), Some(true));

    // A removed record: the server leaves within a few intervals.
    write_hosts(&hosts, &["127.0.0.1"]);
    dns.hup();
    support::wait_until(5, "127.0.0.2 removed", || async {
        healthy(&running, &id2).is_none()
    })
    .await;
    let only_one: HashSet<String> = ["127.0.0.1".to_string()].into();
    assert_eq!(answered(addr, 20).await, only_one);

    // An added record: the server joins (ramping over slow_start) and gets traffic.
    write_hosts(&hosts, &["127.0.0.1", "127.0.0.2"]);
    dns.hup();
    support::wait_until(5, "127.0.0.2 added", || async {
        healthy(&running, &id2).is_some()
    })
    .await;
    support::wait_until(10, "127.0.0.2 gets traffic", || async {
        answered(addr, 10).await.contains("127.0.0.2")
    })
    .await;
    assert_eq!(count_logs("discovery: servers changed"), 2);

    // Active health checks cover the discovered server: stop it, it goes down.
    up2.abort();
    support::wait_until(5, "127.0.0.2 marked down by the probe", || async {
        healthy(&running, &id2) == Some(false)
    })
    .await;
    assert_eq!(answered(addr, 10).await, only_one);
    let _up2 = upstream(two).await;
    support::wait_until(5, "127.0.0.2 up again", || async {
        healthy(&running, &id2) == Some(true)
    })
    .await;

    // A dead resolver: the last good set stays, one log line for many failed rounds.
    dns.kill();
    tokio::time::sleep(Duration::from_millis(300 * 4 + 2 * 2000)).await;
    assert_eq!(healthy(&running, &id2), Some(true));
    assert!(healthy(&running, &one.to_string()).is_some());
    support::wait_until(10, "127.0.0.2 still gets traffic", || async {
        answered(addr, 10).await == both
    })
    .await;
    assert_eq!(
        count_logs("discovery: resolver failed"),
        1,
        "one warning while the resolver is down"
    );

    // A reload keeps the discovered set of an unchanged discovery section
    // (the resolver is still down: nothing to resolve it again from).
    running.apply(config(&yaml)).await.unwrap();
    assert_eq!(healthy(&running, &id2), Some(true));
    assert_eq!(answered(addr, 10).await, both);

    running.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
