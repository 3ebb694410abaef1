//! Binary upgrade without a dropped request (nginx's `SIGUSR2`) and systemd
//! socket activation.
//!
//! **Upgrade.** [`Running::upgrade`] starts the binary at weir's own path
//! (`/proc/self/exe`; a binary replaced on disk is started from the new
//! file) with the same arguments, handing it every listening socket the way
//! systemd does: the sockets are the child's fds 3, 4, … and `LISTEN_FDS`
//! says how many (no `LISTEN_PID`: the child cannot be named before it
//! exists; `listenfd` accepts that). Every socket is passed: the
//! `SO_REUSEPORT` socket of each worker of each listener and the admin
//! listener's, so not one connection waiting in a kernel accept queue is
//! lost. The new process matches each inherited socket to a listener by its
//! local address ([`take`]) instead of binding, and when it serves it says so
//! through `WEIR_UPGRADE_READY` (an abstract Unix socket the old process
//! listens on). Only then does the old process stop accepting, drain
//! (`drain_timeout`) and exit. A new process that exits first, or is not
//! ready within [`READY_TIMEOUT`], changes nothing: the old one keeps
//! serving and logs why (a child that hangs is killed).
//!
//! **Socket activation.** The same variables from systemd (`LISTEN_FDS`,
//! `LISTEN_PID`, fds from 3) are read by [`inherit_from_env`]: a listener
//! whose address matches an inherited socket serves on it. With more workers
//! than inherited sockets for an address, the other workers bind their own
//! `SO_REUSEPORT` sockets (or, when the inherited socket lacks
//! `SO_REUSEPORT`, share it).

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use command_fds::{CommandFdExt, FdMapping};

use crate::Running;

/// The environment variable naming the abstract Unix socket on which a new
/// process says it serves.
pub const READY_ENV: &str = "WEIR_UPGRADE_READY";

/// Longest wait for a new binary to be serving before it is killed and the
/// old process carries on.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Sockets inherited at start and not yet used by a listener.
static INHERITED: Mutex<Vec<(SocketAddr, std::net::TcpListener)>> = Mutex::new(Vec::new());

/// Why a binary upgrade did not happen (the old process keeps serving).
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// The new process could not be started.
    #[error("cannot start {path}: {source}")]
    Spawn {
        /// The binary.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The new process exited before it served (e.g. a bad config).
    #[error("the new process exited before serving: {0}")]
    Exited(std::process::ExitStatus),
    /// The new process did not say it serves within [`READY_TIMEOUT`].
    #[error("the new process was not serving after {0:?}; killed it")]
    Timeout(Duration),
    /// Local setup (the readiness socket, the fds).
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Takes the listening sockets passed by systemd socket activation or by
/// the old process of a binary upgrade (`LISTEN_FDS`, fds from 3), keeping
/// them for [`take`]. Call once, at start, before binding; clears the
/// variables so that a later upgrade does not see them.
pub fn inherit_from_env() {
    let mut fds = listenfd::ListenFd::from_env();
    std::env::remove_var("LISTEN_FDNAMES");
    let mut inherited = INHERITED.lock().unwrap_or_else(|e| e.into_inner());
    for i in 0..fds.len() {
        match fds.take_tcp_listener(i) {
            Ok(Some(l)) => match l.local_addr() {
                Ok(addr) => {
                    let _ = l.set_nonblocking(true);
                    tracing::info!(fd = 3 + i, address = %addr, "inherited a listening socket");
                    inherited.push((addr, l));
                }
                Err(e) => {
                    tracing::warn!(fd = 3 + i, error = %e, "inherited socket has no address; ignored")
                }
            },
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(fd = 3 + i, error = %e, "inherited fd is not a TCP listening socket; ignored")
            }
        }
    }
}

/// The inherited sockets bound to `addr` (none when `addr` has port 0 or
/// nothing matches); each is taken once.
pub fn take(addr: SocketAddr) -> Vec<std::net::TcpListener> {
    if addr.port() == 0 {
        return Vec::new();
    }
    let mut inherited = INHERITED.lock().unwrap_or_else(|e| e.into_inner());
    let mut taken = Vec::new();
    let mut i = 0;
    while i < inherited.len() {
        if inherited[i].0 == addr {
            taken.push(inherited.swap_remove(i).1);
        } else {
            i += 1;
        }
    }
    taken
}

/// Closes inherited sockets no listener asked for, logging each.
pub fn close_unused() {
    for (addr, _) in INHERITED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain(..)
    {
        tracing::warn!(address = %addr, "inherited socket matches no listener: closed");
    }
}

/// Tells the old process of a binary upgrade (if any) that this one serves.
pub fn notify_ready() {
    let Some(name) = std::env::var_os(READY_ENV) else {
        return;
    };
    std::env::remove_var(READY_ENV);
    let sent = UnixAddr::from_abstract_name(name.as_encoded_bytes())
        .and_then(|a| UnixStream::connect_addr(&a))
        .and_then(|mut s| s.write_all(format!("ready {}\n", std::process::id()).as_bytes()));
    if let Err(e) = sent {
        tracing::warn!(error = %e, "binary upgrade: cannot tell the old process that this one serves");
    }
}

/// The binary to start: this process's own (when it was replaced on disk,
/// `/proc/self/exe` reads "… (deleted)": the path is the new file).
fn own_binary() -> io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let s = exe.to_string_lossy();
    Ok(match s.strip_suffix(" (deleted)") {
        Some(p) => PathBuf::from(p),
        None => exe,
    })
}

impl Running {
    /// Duplicates of every listening socket (each worker's, and the admin
    /// listener's), for a new process.
    async fn listen_fds(&self) -> io::Result<Vec<OwnedFd>> {
        let mut fds = Vec::new();
        for b in self.inner.listeners.lock().await.iter() {
            for s in b.listener.sockets_for_upgrade()? {
                fds.push(OwnedFd::from(s));
            }
        }
        if let Some(admin) = &self.inner.admin_socket {
            fds.push(OwnedFd::from(admin.try_clone()?));
        }
        Ok(fds)
    }

    /// Binary upgrade (`SIGUSR2`): starts this binary again with the same
    /// arguments and every listening socket, and waits until it serves.
    /// Returns the new process's id; the caller then shuts this one down
    /// ([`Running::shutdown`]: stop accepting, drain, exit).
    ///
    /// # Errors
    /// [`UpgradeError`] when the new process cannot start, exits first or is
    /// not serving within [`READY_TIMEOUT`]; this process keeps serving.
    pub async fn upgrade(&self) -> Result<u32, UpgradeError> {
        let path = own_binary()?;
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!("weir-upgrade-{}-{nonce}", std::process::id());
        let ready = UnixListener::bind_addr(&UnixAddr::from_abstract_name(name.as_bytes())?)?;
        ready.set_nonblocking(true)?;
        let fds = self.listen_fds().await?;
        let count = fds.len();
        let mappings = fds
            .into_iter()
            .zip(3..)
            .map(|(parent_fd, child_fd)| FdMapping {
                parent_fd,
                child_fd,
            })
            .collect();
        let mut cmd = std::process::Command::new(&path);
        cmd.args(std::env::args_os().skip(1))
            .env("LISTEN_FDS", count.to_string())
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDNAMES")
            .env(READY_ENV, &name)
            .fd_mappings(mappings)
            .map_err(io::Error::other)?;
        let mut child = cmd
            .spawn()
            .map_err(|source| UpgradeError::Spawn { path, source })?;
        tracing::info!(
            pid = child.id(),
            sockets = count,
            "binary upgrade: new process started"
        );
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok((mut stream, _)) = ready.accept() {
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
                let mut said = String::new();
                let _ = (&mut stream).take(64).read_to_string(&mut said);
                if said.starts_with("ready") {
                    return Ok(child.id());
                }
            }
            if let Some(status) = child.try_wait()? {
                return Err(UpgradeError::Exited(status));
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(UpgradeError::Timeout(READY_TIMEOUT));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
