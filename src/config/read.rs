//! Bounded reads of the files a config names (the config itself, keys,
//! certificates, secrets, JWKS).
//!
//! Every such file must be a regular file, and is read with a size cap that is
//! checked while reading: `/dev/zero` or a file growing under weir cannot make
//! it allocate without bound, and a FIFO cannot block `--check` or a reload
//! (it is opened with `O_NONBLOCK` and refused after `fstat`, so opening it
//! never waits for a writer).

use std::fs::File;
use std::io::Read;
use std::path::Path;

/// Largest key, certificate, secret or JWKS file accepted, in bytes (1 MiB).
pub const MAX_KEY_FILE_BYTES: u64 = 1024 * 1024;

/// Reads the whole regular file at `path`, at most `cap` bytes.
///
/// # Errors
/// A short message (no path; callers name the file) when the file cannot be
/// opened, is not a regular file (a FIFO, a device such as `/dev/zero`, a
/// directory, a socket), is larger than `cap` bytes (checked by `fstat` and
/// again while reading), or a read fails.
pub fn read_bounded(path: &Path, cap: u64) -> Result<Vec<u8>, String> {
    let file = open_nonblocking(path).map_err(|e| format!("cannot read: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("cannot read: {e}"))?;
    if !meta.file_type().is_file() {
        return Err(format!("not a regular file ({})", kind(&meta)));
    }
    if meta.len() > cap {
        return Err(format!("larger than {cap} bytes"));
    }
    let mut out = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // One byte more than the cap tells a file that grew past it.
    file.take(cap.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| format!("cannot read: {e}"))?;
    if out.len() as u64 > cap {
        return Err(format!("larger than {cap} bytes"));
    }
    Ok(out)
}

/// [`read_bounded`] with [`MAX_KEY_FILE_BYTES`], as UTF-8-agnostic bytes.
///
/// # Errors
/// As [`read_bounded`].
pub fn read_key_file(path: &Path) -> Result<Vec<u8>, String> {
    read_bounded(path, MAX_KEY_FILE_BYTES)
}

/// Longest time a reload may spend reading and validating the config files
/// (a stalled network file system must not hold the reload lock forever).
pub const RELOAD_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// [`super::load_file`] on the blocking pool (not on a worker), giving up
/// after [`RELOAD_READ_TIMEOUT`].
///
/// # Errors
/// The config's errors, or one error saying the read timed out or failed.
pub async fn load_with_timeout(
    file: std::path::PathBuf,
) -> Result<super::Config, super::ConfigErrors> {
    let one = |file: &Path, message: String| {
        super::ConfigErrors(vec![super::ConfigError {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            key: String::new(),
            message,
        }])
    };
    let path = file.clone();
    let task = tokio::task::spawn_blocking(move || super::load_file(&path));
    match tokio::time::timeout(RELOAD_READ_TIMEOUT, task).await {
        Ok(Ok(loaded)) => loaded,
        Ok(Err(e)) => Err(one(&file, format!("reading the config failed: {e}"))),
        Err(_) => Err(one(
            &file,
            format!(
                "reading the config files took longer than {}s",
                RELOAD_READ_TIMEOUT.as_secs()
            ),
        )),
    }
}

#[cfg(unix)]
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

#[cfg(not(unix))]
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    File::open(path)
}

fn kind(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    "not a file"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_and_directories_are_refused() {
        let e = read_bounded(Path::new("/dev/zero"), 1024).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        let e = read_bounded(Path::new("/"), 1024).unwrap_err();
        assert!(e.contains("directory"), "{e}");
    }

    #[test]
    fn the_cap_holds() {
        let dir = std::env::temp_dir().join(format!("weir-read-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("big");
        std::fs::write(&f, vec![b'a'; 2048]).unwrap();
        assert!(read_bounded(&f, 1024)
            .unwrap_err()
            .contains("larger than 1024"));
        assert_eq!(read_bounded(&f, 2048).unwrap().len(), 2048);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
