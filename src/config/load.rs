//! The I/O of loading a config: reading the file, and resolving the bind
//! addresses named in it. Validation ([`super::validate`]) calls these.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;

use super::{load_str, read, Config, ConfigError, ConfigErrors};

/// Parses a listener address: `ip:port`, `[v6]:port`, or `name:port` resolved now.
pub(super) fn resolve_bind_address(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?} is not host:port"))?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(format!("{s:?} is not host:port"));
    }
    (host, port.parse::<u16>().unwrap_or(0))
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {s:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{s:?} resolves to no address"))
}

/// Largest config file accepted, in bytes (a guard against feeding weir a wrong file).
pub const MAX_CONFIG_BYTES: usize = 16 * 1024 * 1024;

/// Reads, parses and validates the config file at `path`.
///
/// Relative paths inside the file resolve against the file's directory.
///
/// # Errors
/// Every problem found, each naming the file, line, column and key.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    let one = |message: String| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            key: String::new(),
            message,
        }])
    };
    // A regular file only, at most MAX_CONFIG_BYTES, checked while reading
    // (`/dev/zero` or a FIFO fail at once).
    let text = read::read_bounded(path, MAX_CONFIG_BYTES as u64).map_err(one)?;
    let text = String::from_utf8(text).map_err(|e| one(format!("not UTF-8: {e}")))?;
    load_str(&text, path)
}
