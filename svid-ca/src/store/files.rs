//! The files of an [`super::SqliteStore`] directory: the lock that keeps a
//! second opener out, private permissions, and the PKCS#8 key files.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::StoreError;

/// The lock file's name inside the store directory.
pub(super) const LOCK_FILE: &str = "svid-ca.lock";

/// Mode of the store directory and the key directory.
const DIR_MODE: u32 = 0o700;
/// Mode of every file the store writes (lock, database, WAL, shared memory,
/// keys). SQLite gives the `-wal` and `-shm` files the mode of the database.
const FILE_MODE: u32 = 0o600;

pub(super) fn io<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// Creates `dir` (and missing parents) and makes it 0700, also when it
/// existed with a wider mode.
pub(super) fn private_dir(dir: &Path) -> Result<(), StoreError> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(io("create", dir))?;
    fs::set_permissions(dir, Permissions::from_mode(DIR_MODE)).map_err(io("chmod", dir))
}

/// Makes `path` 0600, creating it empty if `create` and it is missing.
pub(super) fn private_file(path: &Path, create: bool) -> Result<(), StoreError> {
    if create {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(path)
            .map_err(io("create", path))?;
    } else if !path.exists() {
        return Ok(());
    }
    fs::set_permissions(path, Permissions::from_mode(FILE_MODE)).map_err(io("chmod", path))
}

/// An exclusive advisory lock (`flock`) on the store's lock file, held for
/// the life of the store and released by the kernel when the process dies,
/// so a crashed owner never leaves the store locked.
///
/// `flock` locks belong to an open file description, so a second
/// [`super::SqliteStore::open`] in the same process is refused as well.
#[derive(Debug)]
pub(super) struct StoreLock {
    _file: File,
}

impl StoreLock {
    /// Takes the lock in `dir`, or fails with [`StoreError::Locked`] at
    /// once (never waits) if someone holds it. Records our pid in the file
    /// for the error message of the next opener.
    pub(super) fn acquire(dir: &Path) -> Result<StoreLock, StoreError> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(&path)
            .map_err(io("open", &path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let holder = (&file)
                    .take(32)
                    .read_to_string(&mut text)
                    .ok()
                    .and_then(|_| text.trim().parse().ok());
                return Err(StoreError::Locked {
                    dir: dir.to_owned(),
                    holder,
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(io("lock", &path)(e)),
        }
        fs::set_permissions(&path, Permissions::from_mode(FILE_MODE))
            .map_err(io("chmod", &path))?;
        file.set_len(0).map_err(io("truncate", &path))?;
        writeln!(file, "{}", std::process::id()).map_err(io("write", &path))?;
        Ok(StoreLock { _file: file })
    }
}

/// Slot ids become file names: only hex is accepted.
pub(super) fn key_file(dir: &Path, id: &str) -> Result<PathBuf, StoreError> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(StoreError::Corrupt {
            what: "authority id",
        });
    }
    Ok(dir.join(format!("{id}.key")))
}

/// Writes a key file once (0600, synced, renamed into place, directory
/// synced). An existing file for the id is left as it is: ids are random
/// and a slot's key never changes.
pub(super) fn write_key(dir: &Path, id: &str, der: &[u8]) -> Result<(), StoreError> {
    let path = key_file(dir, id)?;
    if path.exists() {
        return Ok(());
    }
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(&tmp)
        .map_err(io("create", &tmp))?;
    f.write_all(der).map_err(io("write", &tmp))?;
    f.sync_all().map_err(io("sync", &tmp))?;
    fs::rename(&tmp, &path).map_err(io("rename", &path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync", dir))?;
    Ok(())
}

/// Removes key files (and leftover temporaries) no journaled slot refers
/// to. Only the lock holder calls this, so it never removes the keys of
/// another live store.
pub(super) fn prune_keys(dir: &Path, keep: &[&str]) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for f in entries.flatten() {
        let name = f.file_name();
        let name = name.to_string_lossy();
        let id = name
            .strip_suffix(".key")
            .or_else(|| name.strip_suffix(".tmp"));
        if let Some(id) = id
            && !keep.contains(&id)
        {
            let _ = fs::remove_file(f.path());
        }
    }
}
