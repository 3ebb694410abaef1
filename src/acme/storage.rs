//! ACME storage: the account credentials and the issued certificates in one
//! directory, written atomically (temporary file + rename), and the lock
//! file that keeps instances sharing the directory from ordering twice.
//!
//! Layout: `account-<directory hash>.json`, `<first domain>.crt` (PEM chain),
//! `<first domain>.key` (PEM PKCS#8), `<first domain>.lock`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::sign::CertifiedKey;

/// A lock file older than this is taken as left by a dead instance.
pub const STALE_LOCK: Duration = Duration::from_secs(10 * 60);

/// The files of one certificate in `storage`.
#[derive(Debug, Clone)]
pub struct Storage {
    dir: PathBuf,
    name: String,
    directory: String,
}

/// A certificate read from storage.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The chain and key, ready for rustls.
    pub key: Arc<CertifiedKey>,
    /// The leaf's notAfter.
    pub not_after: SystemTime,
    /// The leaf's DNS names (lowercase).
    pub names: Vec<String>,
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Storage {
    /// The storage of the certificate for `domains` (first = file name)
    /// obtained from `directory`, under `dir`.
    pub fn new(dir: &Path, domains: &[String], directory: &str) -> Self {
        let name = domains
            .first()
            .map(|d| {
                d.chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect()
            })
            .unwrap_or_else(|| "certificate".into());
        Storage {
            dir: dir.to_owned(),
            name,
            directory: directory.to_owned(),
        }
    }

    /// Creates the directory (mode 0700 on Unix) when missing.
    ///
    /// # Errors
    /// When it cannot be created.
    pub fn ensure(&self) -> std::io::Result<()> {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b.create(&self.dir)
    }

    /// Path of the account credentials (one account per directory URL).
    pub fn account_path(&self) -> PathBuf {
        self.dir
            .join(format!("account-{:016x}.json", fnv(&self.directory)))
    }

    /// Path of the PEM chain.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join(format!("{}.crt", self.name))
    }

    /// Path of the PEM private key.
    pub fn key_path(&self) -> PathBuf {
        self.dir.join(format!("{}.key", self.name))
    }

    /// Path of the order lock.
    pub fn lock_path(&self) -> PathBuf {
        self.dir.join(format!("{}.lock", self.name))
    }

    /// The stored certificate, when both files are there and parse.
    ///
    /// # Errors
    /// A message when the files exist but cannot be used.
    pub fn load(&self) -> Result<Option<Stored>, String> {
        let (cert, key) = (self.cert_path(), self.key_path());
        if !cert.exists() || !key.exists() {
            return Ok(None);
        }
        let ck = crate::tls::load_certified_key(&cert, &key).map_err(|e| match e {
            crate::tls::CertError::Cert(m) => format!("{}: {m}", cert.display()),
            crate::tls::CertError::Key(m) => format!("{}: {m}", key.display()),
        })?;
        let leaf = ck.cert.first().ok_or("empty chain")?.clone();
        let (not_after, names) = leaf_info(&leaf)?;
        Ok(Some(Stored {
            key: Arc::new(ck),
            not_after,
            names,
        }))
    }

    /// Writes the chain and key (key first, each atomically).
    ///
    /// # Errors
    /// When a file cannot be written.
    pub fn save(&self, chain_pem: &str, key_pem: &str) -> std::io::Result<()> {
        write_atomic(&self.key_path(), key_pem.as_bytes(), true)?;
        write_atomic(&self.cert_path(), chain_pem.as_bytes(), false)
    }

    /// Takes the order lock: `Ok(Some)` when taken, `Ok(None)` when another
    /// instance holds a fresh one. A lock older than [`STALE_LOCK`] is removed.
    ///
    /// # Errors
    /// When the lock file cannot be created for another reason.
    pub fn lock(&self) -> std::io::Result<Option<LockGuard>> {
        let path = self.lock_path();
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    let _ = writeln!(f, "{}", std::process::id());
                    return Ok(Some(LockGuard { path }));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let age = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok());
                    match age {
                        Some(a) if a > STALE_LOCK => {
                            tracing::warn!(lock = %path.display(), "removing a stale ACME lock");
                            let _ = std::fs::remove_file(&path);
                        }
                        _ => return Ok(None),
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }
}

/// Removes the lock file when dropped.
#[derive(Debug)]
pub struct LockGuard {
    path: PathBuf,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// notAfter and DNS names of a leaf certificate.
///
/// # Errors
/// When the DER does not parse.
pub fn leaf_info(leaf: &[u8]) -> Result<(SystemTime, Vec<String>), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| format!("invalid certificate: {e}"))?;
    let secs = cert.validity().not_after.timestamp();
    let not_after = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0));
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    Ok((not_after, names))
}

/// Writes `data` to a temporary file next to `path`, then renames it over
/// `path` (readers see the old or the new file, never half of one).
///
/// # Errors
/// When writing or renaming fails.
pub fn write_atomic(path: &Path, data: &[u8], private: bool) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, if private { 0o600 } else { 0o644 });
    #[cfg(not(unix))]
    let _ = private;
    let mut f = o.open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_is_exclusive_and_released() {
        let dir = std::env::temp_dir().join(format!("weir-acme-lock-{}", std::process::id()));
        let s = Storage::new(&dir, &["a.test".into()], "https://x/dir");
        s.ensure().unwrap();
        let g = s.lock().unwrap();
        assert!(g.is_some());
        assert!(s.lock().unwrap().is_none(), "second lock must fail");
        drop(g);
        assert!(s.lock().unwrap().is_some(), "released lock can be taken");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn atomic_write_replaces() {
        let dir = std::env::temp_dir().join(format!("weir-acme-write-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("f.crt");
        write_atomic(&p, b"one", false).unwrap();
        write_atomic(&p, b"two", false).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
