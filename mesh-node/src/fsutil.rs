//! Files and sockets the roles own: data directories and private Unix
//! sockets.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

/// A data directory or socket that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct FsError {
    /// The directory or socket.
    pub path: PathBuf,
    /// Why.
    pub message: String,
}

/// Creates `dir` (0700) if needed and checks that it is a directory this
/// process can write.
pub(crate) fn prepare_data_dir(dir: &Path) -> Result<(), FsError> {
    let fail = |message: String| FsError {
        path: dir.to_owned(),
        message,
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(format!("cannot create it: {e}")))?;
    let meta = std::fs::metadata(dir).map_err(|e| fail(e.to_string()))?;
    if !meta.is_dir() {
        return Err(fail("not a directory".into()));
    }
    let probe = dir.join(".write-probe");
    std::fs::write(&probe, b"").map_err(|e| fail(format!("not writable: {e}")))?;
    let _ = std::fs::remove_file(&probe);
    let mut perms = meta.permissions();
    if perms.mode() & 0o077 != 0 {
        perms.set_mode(0o700);
        std::fs::set_permissions(dir, perms).map_err(|e| fail(format!("chmod 0700: {e}")))?;
    }
    Ok(())
}

/// Binds a Unix socket at `path` that only this user can connect to,
/// replacing a stale socket file.
pub(crate) fn bind_private_socket(path: &Path) -> Result<UnixListener, FsError> {
    let bind_err = |e: std::io::Error| FsError {
        path: path.to_owned(),
        message: e.to_string(),
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(bind_err)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) => {
            std::fs::remove_file(path).map_err(bind_err)?;
        }
        Ok(_) => {
            return Err(FsError {
                path: path.to_owned(),
                message: "a file that is not a socket is in the way".into(),
            });
        }
        Err(_) => {}
    }
    let listener = UnixListener::bind(path).map_err(bind_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(bind_err)?;
    Ok(listener)
}

/// Writes `bytes` to `path` whole: temporary file, fsync, rename, fsync of
/// the directory; mode 0600.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}
