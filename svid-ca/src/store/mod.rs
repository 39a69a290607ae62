//! The [`Store`] trait: where the authority keeps its journal, entries,
//! join tokens, attested nodes and bundles. [`SqliteStore`] is the default.

mod files;
mod sqlite;

use std::time::SystemTime;

use spiffe_core::{SpiffeBundle, SpiffeId};
use zeroize::Zeroizing;

use crate::{AttestedNode, AuthorityInfo, EntryId, RegistrationEntry};

pub use sqlite::{SCHEMA_VERSION, SqliteStore};

/// What happened when a join token was presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenUse {
    /// The token was valid and is now used up.
    Consumed,
    /// The token exists but expired at this time; nothing was changed.
    Expired(SystemTime),
    /// No such token (never issued, or already used).
    Unknown,
}

/// One journaled key slot. `Debug` never shows the key.
pub struct JournalSlot {
    /// The slot's description (with its certificate, for X.509 keys).
    pub info: AuthorityInfo,
    /// The private key, PKCS#8 DER.
    pub key_pkcs8: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for JournalSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalSlot")
            .field("info", &self.info)
            .field("key_pkcs8", &"<redacted>")
            .finish()
    }
}

/// The authority's journal: every key slot it holds and the bundle sequence.
#[derive(Debug)]
pub struct CaJournal {
    /// The trust domain the journal belongs to.
    pub trust_domain: String,
    /// The `spiffe_sequence` of the bundle these slots produce.
    pub sequence: u64,
    /// The slots.
    pub slots: Vec<JournalSlot>,
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] rusqlite::Error),
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Another store holds the directory: another process, or another
    /// `SqliteStore` in this process. Nothing was opened or changed.
    #[error(
        "the store in {dir} is in use{}; only one authority may open it at a time",
        holder.map(|p| format!(" by process {p}")).unwrap_or_default()
    )]
    Locked {
        /// The store directory.
        dir: std::path::PathBuf,
        /// The pid recorded by the holder, when it could be read.
        holder: Option<u32>,
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
    /// Stored data does not decode.
    #[error("corrupt {what} in the store")]
    Corrupt {
        /// Which record.
        what: &'static str,
    },
}

/// Persistence for the authority. Every method is one transaction: it
/// either fully happens or not at all.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// The journal, if the authority ran before.
    fn load_ca_journal(&self) -> Result<Option<CaJournal>, StoreError>;
    /// Replaces the journal and records `bundle` in the bundle history.
    fn save_ca_journal(&self, journal: &CaJournal, bundle: &SpiffeBundle)
    -> Result<(), StoreError>;
    /// Adds a registration entry.
    fn create_entry(&self, entry: &RegistrationEntry) -> Result<(), StoreError>;
    /// Deletes a registration entry (no error if absent).
    fn delete_entry(&self, id: &EntryId) -> Result<(), StoreError>;
    /// Every registration entry.
    fn list_entries(&self) -> Result<Vec<RegistrationEntry>, StoreError>;
    /// Records a join token by its hash, valid until `expires_at`.
    fn create_join_token(&self, hash: &str, expires_at: SystemTime) -> Result<(), StoreError>;
    /// Consumes the join token with `hash` if it is still valid at `now`
    /// (deleting it, so it works once) and records `node`, the node it
    /// attests, in the same transaction: a token is never used up without
    /// its node on record. An expired or unknown token writes nothing.
    fn consume_join_token(
        &self,
        hash: &str,
        now: SystemTime,
        node: &AttestedNode,
    ) -> Result<TokenUse, StoreError>;
    /// Records (or refreshes) an attested node.
    fn put_attested_node(&self, node: &AttestedNode) -> Result<(), StoreError>;
    /// The attested node with `id`.
    fn attested_node(&self, id: &SpiffeId) -> Result<Option<AttestedNode>, StoreError>;
    /// Stores the bundle of a federated trust domain.
    fn put_federated_bundle(&self, bundle: &SpiffeBundle) -> Result<(), StoreError>;
    /// Every federated bundle.
    fn federated_bundles(&self) -> Result<Vec<SpiffeBundle>, StoreError>;
}
