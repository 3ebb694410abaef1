//! Certificate files watched (`listeners[].tls.certificates`): a changed
//! cert/key pair serves new handshakes without a reload.
//!
//! How: a cheap periodic stat, every [`POLL_INTERVAL`], of each `cert` and
//! `key` file (modification time, length, inode and device, through
//! symlinks). No inotify (`notify`): a stat sees a file written in place, a
//! file renamed over the old one (certbot, `mv new.pem cert.pem`: a new
//! inode) and a symlink swapped (Kubernetes secrets' `..data`) alike, needs
//! no watch on the directory to survive renames, and costs two `stat`s per
//! pair and second. When either file of a pair changed, the pair is loaded
//! again; a pair that does not parse, or whose key does not match, is logged
//! with the file name and the old pair keeps serving (it is tried again on
//! the next change). The watcher runs on a thread of its own (real time,
//! whatever a test's paused clock says), one per listener, and ends with it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use rustls::sign::CertifiedKey;
use tokio::sync::watch;

use super::Listener;
use crate::tls::{self, CertError};

/// How often the certificate files are looked at: a changed pair serves
/// within about this long (one second, as nginx-ingress and Caddy do).
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// What a `stat` says of a file; `None` = it cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    mtime: Option<SystemTime>,
    len: u64,
    ino: u64,
    dev: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        mtime: m.modified().ok(),
        len: m.len(),
        ino: m.ino(),
        dev: m.dev(),
    })
}

/// One watched certificate pair (`tls.certificates[i]`).
#[derive(Debug)]
pub struct Watched {
    cert: PathBuf,
    key: PathBuf,
    seen: (Option<Stamp>, Option<Stamp>),
}

impl Watched {
    /// Watches `cert` and `key`, as they are now (the pair just loaded).
    pub fn new(cert: &Path, key: &Path) -> Self {
        Watched {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            seen: (stamp(cert), stamp(key)),
        }
    }

    /// The pair loaded again when either file changed since the last look;
    /// `None` when neither changed.
    fn changed(&mut self) -> Option<Result<CertifiedKey, CertError>> {
        let now = (stamp(&self.cert), stamp(&self.key));
        if now == self.seen {
            return None;
        }
        self.seen = now;
        Some(tls::load_certified_key(&self.cert, &self.key))
    }
}

/// Watches `files` (in `tls.certificates` order).
pub fn watch_all(files: &[(PathBuf, PathBuf)]) -> Vec<Watched> {
    files.iter().map(|(c, k)| Watched::new(c, k)).collect()
}

/// Looks at every watched pair of `listener` once; changed pairs that load
/// replace the old ones in the listener's TLS config (new handshakes use
/// them), others are logged and the old pair stays.
pub(super) fn check(listener: &Listener) {
    let mut state = listener.tls_state.lock().unwrap_or_else(|e| e.into_inner());
    let mut replaced = false;
    let state = &mut *state;
    for (i, w) in state.files.iter_mut().enumerate() {
        match w.changed() {
            None => {}
            Some(Ok(key)) => {
                if let Some(slot) = state.keys.get_mut(i) {
                    *slot = Arc::new(key);
                    replaced = true;
                    tracing::info!(listener = %listener.config.name, cert = %w.cert.display(), key = %w.key.display(), "certificate file changed: new handshakes use the new certificate");
                }
            }
            Some(Err(CertError::Cert(m))) => {
                tracing::error!(listener = %listener.config.name, file = %w.cert.display(), error = %m, "certificate file changed but cannot be used: the old certificate stays");
            }
            Some(Err(CertError::Key(m))) => {
                tracing::error!(listener = %listener.config.name, file = %w.key.display(), error = %m, "key file changed but cannot be used: the old certificate stays");
            }
        }
    }
    if replaced {
        // build_tls keeps the ACME resolver of a listener with tls.acme.
        match super::build_tls(Some(&state.keys), state.auth.as_deref(), &listener.acme) {
            Ok(config) => listener.tls.store(config),
            Err(e) => {
                tracing::error!(listener = %listener.config.name, error = %e, "cannot build the TLS config with the changed certificate: the old one stays");
            }
        }
    }
}

/// Starts the watcher thread of `listener`; it ends when the listener is
/// gone or `stop` turns true.
pub(super) fn spawn(listener: &Arc<Listener>, stop: watch::Receiver<bool>) {
    let weak: Weak<Listener> = Arc::downgrade(listener);
    let name = format!("weir-certs-{}", listener.config.name);
    let spawned = std::thread::Builder::new().name(name).spawn(move || loop {
        std::thread::sleep(POLL_INTERVAL);
        if *stop.borrow() {
            return;
        }
        let Some(listener) = weak.upgrade() else {
            return;
        };
        check(&listener);
    });
    if let Err(e) = spawned {
        tracing::error!(listener = %listener.config.name, error = %e, "cannot start the certificate watcher: changed files need a reload");
    }
}
