//! The servers discovered from DNS (`groups.NAME.discovery`), by group: the
//! last good set of each group, which [`super::ServerGroup`]s are built
//! with. The tasks that resolve the names and rebuild are in
//! the `discovery` module (above `proxy`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::config::discovery::DiscoveryConfig;
use crate::config::{Config, GroupConfig, ServerConfig};

/// A group's discovery config and its last good set (sorted).
pub(crate) type Set = (DiscoveryConfig, Vec<SocketAddr>);

/// `(added, removed, first)`: how a lookup changed a group's set.
pub(crate) type Change = (Vec<SocketAddr>, Vec<SocketAddr>, bool);

/// The discovered addresses of each group, and the running config they are
/// added to. Lives in the [`StateRegistry`](super::StateRegistry);
/// locked only by the discovery tasks and while a config is being built.
#[derive(Debug, Default)]
pub struct Discovered {
    /// Group name → (its discovery config, last good set, sorted).
    pub(crate) sets: Mutex<HashMap<Arc<str>, Set>>,
    /// The running config (without discovered servers).
    pub(crate) base: Mutex<Option<Arc<Config>>>,
    /// Stops the tasks of the previous config.
    pub(crate) stop: Mutex<Option<watch::Sender<bool>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Discovered {
    /// `config` with the discovered servers of its group appended (weight
    /// 1, id `ip:port`, not backup; an id already configured is skipped), or
    /// `None` when the group has no discovered server.
    pub fn extend(&self, config: &GroupConfig) -> Option<GroupConfig> {
        let d = config.discovery.as_ref()?;
        let sets = lock(&self.sets);
        let (cfg, addrs) = sets.get(&config.name)?;
        if cfg != d || addrs.is_empty() {
            return None;
        }
        let mut out = config.clone();
        for a in addrs {
            let id = a.to_string();
            if out.servers.iter().any(|s| *s.id == *id) {
                continue;
            }
            let Ok(address) = id.parse() else { continue };
            out.servers.push(ServerConfig {
                id: Arc::from(id),
                address,
                weight: 1,
                edge: crate::config::edge::ServerEdge {
                    slow_start: d.slow_start,
                    ..Default::default()
                },
            });
        }
        Some(out)
    }

    /// True when `id` is a discovered server of `group` (its live state is
    /// kept across rebuilds).
    pub fn contains(&self, group: &str, id: &str) -> bool {
        lock(&self.sets)
            .get(group)
            .is_some_and(|(_, a)| a.iter().any(|a| a.to_string() == id))
    }

    /// The discovered addresses of `group` (empty when none).
    pub fn addresses(&self, group: &str) -> Vec<SocketAddr> {
        lock(&self.sets)
            .get(group)
            .map(|(_, a)| a.clone())
            .unwrap_or_default()
    }

    /// Records `addrs` as the set of `group`; returns `(added, removed)`
    /// when it changed, `None` when it did not.
    pub(crate) fn set(
        &self,
        group: &Arc<str>,
        cfg: &DiscoveryConfig,
        addrs: Vec<SocketAddr>,
    ) -> Option<Change> {
        let mut sets = lock(&self.sets);
        let (first, old) = match sets.get(group) {
            Some((c, old)) if c == cfg => (false, old.clone()),
            _ => (true, Vec::new()),
        };
        if !first && old == addrs {
            return None;
        }
        let added = addrs.iter().filter(|a| !old.contains(a)).copied().collect();
        let removed = old.iter().filter(|a| !addrs.contains(a)).copied().collect();
        sets.insert(group.clone(), (cfg.clone(), addrs));
        Some((added, removed, first))
    }
}
