//! A builder for the YAML configs the tests start weir with: the skeleton
//! (listeners on 127.0.0.1 port 0, optional admin, routes, server groups)
//! written once, each test adding only the keys it is about.
//!
//! Every piece is raw YAML text, indented as it sits in the file: listener
//! and group extras at four spaces, route entries at two (`  - group: g`).

use std::net::SocketAddr;

/// A weir config under construction; [`ConfigYaml::build`] writes it out.
#[derive(Debug, Clone)]
pub struct ConfigYaml {
    top: String,
    listeners: Vec<(Option<String>, String, String)>,
    admin: Option<String>,
    routes: Option<String>,
    groups: Vec<(String, String, String)>,
}

impl Default for ConfigYaml {
    fn default() -> Self {
        Self::new()
    }
}

impl ConfigYaml {
    /// One listener named `http` on 127.0.0.1 port 0, no groups yet.
    pub fn new() -> Self {
        ConfigYaml {
            top: String::new(),
            listeners: vec![(Some("http".into()), "127.0.0.1:0".into(), String::new())],
            admin: None,
            routes: None,
            groups: Vec::new(),
        }
    }

    /// Names the first listener `name` (`None`: no `name:` key, weir's default).
    pub fn listener_name(mut self, name: Option<&str>) -> Self {
        self.listeners[0].0 = name.map(str::to_string);
        self
    }

    /// Sets the first listener's address (default `127.0.0.1:0`).
    pub fn listener_address(mut self, address: impl std::fmt::Display) -> Self {
        self.listeners[0].1 = address.to_string();
        self
    }

    /// Appends keys to the first listener (four-space indent).
    pub fn listener_extra(mut self, extra: &str) -> Self {
        self.listeners[0].2.push_str(extra);
        self
    }

    /// Adds another listener on 127.0.0.1 port 0 with `extra` keys.
    pub fn listener(mut self, name: &str, extra: &str) -> Self {
        self.listeners
            .push((Some(name.into()), "127.0.0.1:0".into(), extra.into()));
        self
    }

    /// An admin listener on 127.0.0.1 port 0 with `extra` keys (two-space indent).
    pub fn admin(mut self, extra: &str) -> Self {
        self.admin = Some(extra.into());
        self
    }

    /// Top-level sections written before `listeners:` (`workers:`,
    /// `affinity:`, `rate_limits:`, ...), each at column 0.
    pub fn top(mut self, text: &str) -> Self {
        self.top.push_str(text);
        self
    }

    /// The route entries (default: one catch-all route to the first group).
    pub fn routes(mut self, entries: &str) -> Self {
        self.routes = Some(entries.into());
        self
    }

    /// A server group `name` with `extra` keys (four-space indent) and a
    /// `servers:` list (see [`servers_yaml`](super::servers_yaml), [`server`]).
    pub fn group(mut self, name: &str, extra: &str, servers: &str) -> Self {
        self.groups
            .push((name.into(), extra.into(), servers.into()));
        self
    }

    /// The YAML text.
    pub fn build(&self) -> String {
        let mut s = self.top.clone();
        s.push_str("listeners:\n");
        for (name, address, extra) in &self.listeners {
            match name {
                Some(n) => s.push_str(&format!("  - name: {n}\n    address: {address}\n")),
                None => s.push_str(&format!("  - address: {address}\n")),
            }
            s.push_str(extra);
        }
        if let Some(extra) = &self.admin {
            s.push_str("admin:\n  address: 127.0.0.1:0\n");
            s.push_str(extra);
        }
        s.push_str("routes:\n");
        match &self.routes {
            Some(r) => s.push_str(r),
            None => {
                let first = self.groups.first().map_or("g", |g| g.0.as_str());
                s.push_str(&format!("  - group: {first}\n"));
            }
        }
        s.push_str("groups:\n");
        for (name, extra, servers) in &self.groups {
            s.push_str(&format!("  {name}:\n{extra}    servers:\n{servers}"));
        }
        s
    }
}

/// One `servers:` entry for `addr` (no id: weir numbers it `<group>-1`, ...).
pub fn server(addr: SocketAddr) -> String {
    format!("      - address: {addr}\n")
}

/// One `servers:` entry for `addr` with an explicit `id`.
pub fn server_id(addr: SocketAddr, id: &str) -> String {
    format!("      - address: {addr}\n        id: {id}\n")
}

#[test]
fn the_builder_writes_a_config_weir_accepts() {
    let yaml = ConfigYaml::new()
        .top("workers: 1\n")
        .listener_extra("    request_header_timeout: 400ms\n")
        .admin("")
        .group(
            "g",
            "    retries: 0\n",
            &server("127.0.0.1:9".parse().unwrap()),
        )
        .build();
    assert!(
        yaml.starts_with("workers: 1\nlisteners:\n  - name: http\n"),
        "{yaml}"
    );
    let config = super::config(&yaml);
    assert_eq!(config.groups.len(), 1, "{yaml}");
}
