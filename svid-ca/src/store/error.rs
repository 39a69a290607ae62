//! [`StoreError`]: what a store reports, the same words for every backend.

use std::fmt;
use std::path::PathBuf;

/// The cause reported by a storage backend (SQLite, PostgreSQL, ...),
/// kept as an opaque error so no backend's types reach the public API.
/// Its `Display` is the backend's message.
pub struct BackendError(Box<dyn std::error::Error + Send + Sync + 'static>);

impl BackendError {
    /// Wraps a backend's error. Backends outside this crate use this to
    /// fill [`StoreError`]'s `source` fields.
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        BackendError(Box::new(error))
    }
}

impl fmt::Debug for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Why the store failed. A failed write changed nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database could not be opened or configured.
    #[error("cannot open the database {path}: {source}")]
    Open {
        /// The database (file or address).
        path: PathBuf,
        /// The backend's cause.
        source: BackendError,
    },
    /// Migrating the schema to `version` failed; the database is left at
    /// the version before it.
    #[error("schema migration to version {version} failed: {source}")]
    Migrate {
        /// The version being migrated to.
        version: i64,
        /// The backend's cause.
        source: BackendError,
    },
    /// Reading `what` failed.
    #[error("reading {what} failed: {source}")]
    Read {
        /// What was read (`ca journal`, `entries`, ...).
        what: &'static str,
        /// The backend's cause.
        source: BackendError,
    },
    /// Writing `what` failed; nothing was changed.
    #[error("writing {what} failed: {source}")]
    Write {
        /// What was written (`ca journal`, `entry`, ...).
        what: &'static str,
        /// The backend's cause.
        source: BackendError,
    },
    /// A record with the same key already exists; nothing was changed.
    #[error("{what} already exists in the store")]
    Conflict {
        /// What was written (`entry`, `join token`).
        what: &'static str,
    },
    /// Another store holds the directory: another process, or another
    /// `SqliteStore` in this process. Nothing was opened or changed.
    #[error(
        "the store in {dir} is in use{}; only one authority may open it at a time",
        holder.map(|p| format!(" by process {p}")).unwrap_or_default()
    )]
    Locked {
        /// The store directory.
        dir: PathBuf,
        /// The pid recorded by the holder, when it could be read.
        holder: Option<u32>,
    },
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The database was written by a newer version of this crate.
    #[error(
        "the store has schema version {found}, newer than the supported {supported}; upgrade svid-ca"
    )]
    SchemaTooNew {
        /// The version in the database.
        found: i64,
        /// The newest version this build understands.
        supported: i64,
    },
    /// No record with that key exists; nothing was changed.
    #[error("no such {what} in the store")]
    NotFound {
        /// What was looked for (`entry`).
        what: &'static str,
    },
    /// Stored data does not decode.
    #[error("corrupt {what} in the store")]
    Corrupt {
        /// Which record.
        what: &'static str,
    },
}
