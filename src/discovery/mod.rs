//! Servers from DNS (`groups.NAME.discovery`): one task per such group
//! resolves the name every `interval` with `hickory-resolver`; every A/AAAA
//! record is a server (weight 1, id `ip:port`) added to the group's
//! configured `servers` (Envoy's `STRICT_DNS` cluster).
//!
//! The sets live in [`Discovered`] (in `upstream`, which builds groups from
//! them); this module holds the tasks that resolve and rebuild.
//!
//! When the set of addresses changes, the snapshot is rebuilt from the
//! running config exactly as a reload does, so servers that stay keep their
//! [`ServerState`](crate::upstream::ServerState) (health, pooled connections,
//! counters: the [`StateRegistry`](crate::upstream::StateRegistry) keys it by
//! group and id). A new address joins (ramping with `discovery.slow_start`
//! when set) and is probed at once by the group's active health check; a
//! removed one gets no new request while requests in flight on it finish on
//! the snapshot they started with (the same drain as a server removed by a
//! reload). A resolver failure keeps the last good set and is logged once,
//! until a lookup succeeds again; an answer without records (NXDOMAIN or no
//! data) is an empty set, as in Envoy.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::{Resolver, TokioResolver};
use tokio::sync::watch;

use crate::config::discovery::DiscoveryConfig;
use crate::config::Config;
use crate::proxy::Snapshot;
use crate::upstream::discovered::Discovered;
use crate::Running;

/// How long one lookup may take (each attempt; one attempt per round).
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Builds the resolver of `cfg`: its `resolver` address over UDP and TCP,
/// or the system configuration; no caching (every round asks the server).
fn resolver(cfg: &DiscoveryConfig) -> Result<TokioResolver, hickory_resolver::net::NetError> {
    let mut builder = match cfg.resolver {
        Some(addr) => {
            let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
            for c in &mut ns.connections {
                c.port = addr.port();
            }
            Resolver::builder_with_config(
                ResolverConfig::from_name_servers(vec![ns]),
                TokioRuntimeProvider::default(),
            )
        }
        None => TokioResolver::builder_tokio()?,
    };
    let o = builder.options_mut();
    o.timeout = LOOKUP_TIMEOUT;
    o.attempts = 1;
    o.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    o.positive_max_ttl = Some(Duration::ZERO);
    o.negative_max_ttl = Some(Duration::ZERO);
    builder.build()
}

/// One lookup: the sorted, deduplicated addresses, `Ok(empty)` for an
/// answer without records, `Err` for a resolver failure.
async fn lookup(r: &TokioResolver, cfg: &DiscoveryConfig) -> Result<Vec<SocketAddr>, String> {
    match tokio::time::timeout(LOOKUP_TIMEOUT * 2, r.lookup_ip(cfg.name.as_str())).await {
        Err(_) => Err("lookup timed out".into()),
        Ok(Err(e)) if e.is_no_records_found() => Ok(Vec::new()),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(ips)) => {
            let mut v: Vec<SocketAddr> =
                ips.iter().map(|ip| SocketAddr::new(ip, cfg.port)).collect();
            v.sort();
            v.dedup();
            Ok(v)
        }
    }
}

/// Resolves every discovery group of `config` once (bounded by
/// [`LOOKUP_TIMEOUT`]), so that the first snapshot has its servers.
pub(crate) async fn initial(config: &Config, discovered: &Discovered) {
    for g in &config.groups {
        let Some(d) = &g.discovery else { continue };
        let Ok(r) = resolver(d) else { continue };
        if let Ok(addrs) = lookup(&r, d).await {
            tracing::info!(group = %g.name, dns = %format!("{}:{}", d.name, d.port), servers = addrs.len(), "discovery: resolved");
            discovered.set(&g.name, d, addrs);
        }
    }
}

/// Makes `config` the running config of discovery and (re)starts one task
/// per discovery group (the previous config's tasks stop).
pub(crate) fn restart(running: &Running, config: Arc<Config>) {
    let registry = running.registry();
    let discovered = &registry.discovery;
    lock(&discovered.sets).retain(|name, (cfg, _)| {
        config
            .groups
            .iter()
            .any(|g| g.name == *name && g.discovery.as_ref() == Some(cfg))
    });
    let (stop, rx) = watch::channel(false);
    for g in &config.groups {
        if let Some(d) = &g.discovery {
            running.inner.tracker.spawn(run(
                running.clone(),
                g.name.clone(),
                d.clone(),
                rx.clone(),
            ));
        }
    }
    *lock(&discovered.base) = Some(config);
    if let Some(old) = lock(&discovered.stop).replace(stop) {
        let _ = old.send(true);
    }
}

/// The task of one group: resolve, update, sleep `interval`, until the
/// config changes or the proxy shuts down.
async fn run(
    running: Running,
    group: Arc<str>,
    cfg: DiscoveryConfig,
    mut stop: watch::Receiver<bool>,
) {
    let dns = format!("{}:{}", cfg.name, cfg.port);
    let mut shutdown = running.inner.shutdown.subscribe();
    let resolver = match resolver(&cfg) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(group = %group, dns = %dns, error = %e, "discovery: cannot build the resolver; no servers are discovered");
            return;
        }
    };
    let mut failing = false;
    loop {
        if *stop.borrow() || *shutdown.borrow() {
            return;
        }
        let result = tokio::select! {
            r = lookup(&resolver, &cfg) => r,
            _ = stop.changed() => return,
            _ = shutdown.changed() => return,
        };
        match result {
            Ok(addrs) => {
                if failing {
                    failing = false;
                    tracing::info!(group = %group, dns = %dns, servers = addrs.len(), "discovery: resolver recovered");
                }
                let count = addrs.len();
                if let Some((added, removed, first)) =
                    running.registry().discovery.set(&group, &cfg, addrs)
                {
                    if !first && cfg.slow_start.is_some() {
                        for a in &added {
                            let id: Arc<str> = Arc::from(a.to_string());
                            running.registry().state(&group, &id).edge.came_up();
                        }
                    }
                    tracing::info!(group = %group, dns = %dns, servers = count, added = ?added, removed = ?removed, "discovery: servers changed");
                    rebuild(&running).await;
                }
            }
            Err(e) => {
                if !failing {
                    failing = true;
                    let kept = running.registry().discovery.addresses(&group).len();
                    tracing::warn!(group = %group, dns = %dns, error = %e, kept, "discovery: resolver failed; keeping the last good set of servers");
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(cfg.interval) => {}
            _ = stop.changed() => return,
            _ = shutdown.changed() => return,
        }
    }
}

/// Rebuilds and publishes the snapshot of the running config with the
/// current discovered sets (serialized with reloads), restarts the probes
/// so that they cover the new servers, and forgets the state of servers
/// that left.
async fn rebuild(running: &Running) {
    let inner = &running.inner;
    let _serial = inner.listeners.lock().await;
    let Some(config) = lock(&inner.registry.discovery.base).clone() else {
        return;
    };
    let snapshot = Arc::new(Snapshot::build(&config, &inner.registry));
    inner.snapshot.store(Arc::clone(&snapshot));
    inner.restart_probes(&config, &snapshot);
    retain(&inner.registry, &config);
}

/// Forgets the live state of servers in no group of `config` (configured
/// or discovered).
pub(crate) fn retain(registry: &crate::upstream::StateRegistry, config: &Config) {
    registry.retain(|group, id| {
        config
            .groups
            .iter()
            .any(|g| &*g.name == group && g.servers.iter().any(|s| &*s.id == id))
            || registry.discovery.contains(group, id)
    });
}
