//! Raw config → runtime [`Config`] (`model.rs`): the top-level keys here,
//! each section in its own file (`listeners.rs`, `groups.rs`, `routes.rs`, …);
//! parsed addresses, compiled route matchers, route → group references
//! checked, defaults applied. What needs I/O (secrets, certificates, key
//! files, DNS) is read through `load.rs`.
//!
//! Validation collects every error it finds rather than stopping at the first,
//! so `weir --check` shows them all at once.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use serde_saphyr::Location;

use super::load::resolve_bind_address;
use super::model::*;
use super::units;
use super::{ConfigError, ConfigErrors, RawConfig};
use crate::affinity::AffinitySecret;

/// The errors found so far; each names the file, line, column and key.
pub(super) struct Errors<'a> {
    file: &'a Path,
    pub(super) list: Vec<ConfigError>,
}

impl Errors<'_> {
    pub(super) fn at(
        &mut self,
        loc: Option<&Location>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        let (line, column) = loc.map_or((0, 0), |l| (l.line(), l.column()));
        self.list.push(ConfigError {
            file: self.file.to_path_buf(),
            line,
            column,
            key: key.into(),
            message: message.into(),
        });
    }
}

/// Checks `raw` and builds the runtime config. `file` anchors relative paths
/// and names the file in errors.
///
/// # Errors
/// Every problem found.
pub fn validate(raw: RawConfig, file: &Path) -> Result<Config, ConfigErrors> {
    let mut errs = Errors {
        file,
        list: Vec::new(),
    };
    let base = file.parent().unwrap_or(Path::new("."));

    let admin = raw
        .admin
        .as_ref()
        .and_then(|a| match resolve_bind_address(&a.address.value) {
            Ok(addr) => Some(addr),
            Err(m) => {
                errs.at(Some(&a.address.referenced), "admin.address", m);
                None
            }
        });
    let admin_token = raw
        .admin
        .as_ref()
        .and_then(|a| super::admin::token(a, base, &mut errs));
    let secret = super::affinity::secret(raw.affinity.as_ref(), base, &mut errs);
    let jwt = raw
        .jwt
        .as_ref()
        .and_then(|j| super::jwt::build(j, base, &mut errs))
        .map(Arc::new);

    let listeners = listeners(&raw, base, &mut errs);
    let (groups, routes) = groups_and_routes(&raw, secret.as_ref(), base, &mut errs);
    let limits = super::limits::build(
        &raw.rate_limits,
        raw.redis.as_ref(),
        &raw.routes,
        raw.jwt.is_some(),
        &mut errs,
    );

    let workers = match &raw.workers {
        Some(w) if w.value > MAX_WORKERS => {
            errs.at(
                Some(&w.referenced),
                "workers",
                format!("at most {MAX_WORKERS} workers"),
            );
            0
        }
        Some(w) => w.value,
        None => 0,
    };

    let drain_timeout = units::nonzero_or_default(
        raw.drain_timeout.as_ref(),
        DEFAULT_DRAIN_TIMEOUT,
        "drain_timeout".into(),
        &mut errs,
    );
    let access_log = access_log(raw.access_log.as_ref(), base, &mut errs);
    let cache = super::cache::build(raw.cache.as_ref(), &raw.routes, &mut errs);

    if !errs.list.is_empty() {
        return Err(ConfigErrors(errs.list));
    }
    Ok(Config {
        file: file.to_path_buf(),
        listeners,
        routes,
        groups,
        jwt,
        drain_timeout,
        admin,
        admin_token,
        hash: 0,
        affinity: secret,
        limits,
        workers,
        access_log,
        cache,
    })
}

/// `listeners`: at least one, names unique.
fn listeners(raw: &RawConfig, base: &Path, errs: &mut Errors) -> Vec<ListenerConfig> {
    if raw.listeners.is_empty() {
        errs.at(None, "listeners", "at least one listener is required");
    }
    let mut listeners = Vec::new();
    let mut names = HashSet::new();
    for (i, l) in raw.listeners.iter().enumerate() {
        if let Some(l) = super::listeners::listener(l, i, base, errs) {
            if !names.insert(l.name.clone()) {
                errs.at(
                    Some(&raw.listeners[i].address.referenced),
                    format!("listeners[{i}].name"),
                    format!("duplicate listener name {:?}", l.name),
                );
            }
            listeners.push(l);
        }
    }
    listeners
}

/// `groups` (sorted by name) and `routes` (at least one), whose `group`
/// keys are resolved to group indexes.
fn groups_and_routes(
    raw: &RawConfig,
    secret: Option<&AffinitySecret>,
    base: &Path,
    errs: &mut Errors,
) -> (Vec<GroupConfig>, Vec<RouteConfig>) {
    let group_index: HashMap<&str, usize> = raw
        .groups
        .keys()
        .enumerate()
        .map(|(i, k)| (k.as_str(), i))
        .collect();
    let mut groups = Vec::new();
    for (name, g) in &raw.groups {
        if let Some(g) = super::groups::group(name, g, secret, base, errs) {
            groups.push(g);
        }
    }
    super::affinity::unique_cookie_names(&raw.groups, errs);

    let mut routes = Vec::new();
    for (i, r) in raw.routes.iter().enumerate() {
        if let Some(r) = super::routes::route(r, i, &group_index, raw.jwt.is_some(), errs) {
            routes.push(r);
        }
    }
    if raw.routes.is_empty() {
        errs.at(None, "routes", "at least one route is required");
    }
    (groups, routes)
}

fn access_log(
    raw: Option<&super::RawAccessLog>,
    base: &Path,
    errs: &mut Errors,
) -> AccessLogConfig {
    let mut config = AccessLogConfig::default();
    let Some(raw) = raw else {
        return config;
    };
    config.enabled = raw.enabled.unwrap_or(true);
    if let Some(f) = &raw.format {
        match f.value.as_str() {
            "text" => config.format = AccessLogFormat::Text,
            "json" => config.format = AccessLogFormat::Json,
            other => errs.at(
                Some(&f.referenced),
                "access_log.format",
                format!("unknown format {other:?}: text or json"),
            ),
        }
    }
    config.path = raw.path.as_ref().map(|p| base.join(p));
    config
}
