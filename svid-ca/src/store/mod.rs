//! Persistence, one small trait per concern: [`CaJournalStore`],
//! [`EntryStore`], [`NodeStore`], [`BundleStore`], and [`Store`], all four
//! together. [`SqliteStore`] is the default backend. Errors are
//! [`StoreError`], the same for every backend.

mod error;
mod files;
mod sqlite;

use std::time::SystemTime;

use spiffe_core::{SpiffeBundle, SpiffeId};
use zeroize::Zeroizing;

use crate::{AttestedNode, AuthorityInfo, EntryId, RegistrationEntry};

pub use error::{BackendError, StoreError};
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

/// The authority's key journal: [`crate::CertificateAuthority`] reads it
/// once at build and writes it before every key change takes effect.
pub trait CaJournalStore: Send + Sync + std::fmt::Debug {
    /// The journal, if the authority ran before.
    fn load_ca_journal(&self) -> Result<Option<CaJournal>, StoreError>;
    /// Replaces the journal and records `bundle` in the bundle history, in
    /// one transaction: afterwards the store holds either the old journal
    /// or the new one with its bundle.
    fn save_ca_journal(&self, journal: &CaJournal, bundle: &SpiffeBundle)
    -> Result<(), StoreError>;
}

/// Registration entries, for [`crate::Registry`].
pub trait EntryStore: Send + Sync + std::fmt::Debug {
    /// Adds a registration entry; [`StoreError::Conflict`] if its id exists.
    fn create_entry(&self, entry: &RegistrationEntry) -> Result<(), StoreError>;
    /// Deletes a registration entry (no error if absent).
    fn delete_entry(&self, id: &EntryId) -> Result<(), StoreError>;
    /// Replaces the registration entry with `entry.id`;
    /// [`StoreError::NotFound`] if there is none.
    fn update_entry(&self, entry: &RegistrationEntry) -> Result<(), StoreError>;
    /// Every registration entry, oldest first.
    fn list_entries(&self) -> Result<Vec<RegistrationEntry>, StoreError>;
}

/// Join tokens and attested nodes, for [`crate::JoinTokenAttestor`] and
/// other node attestors.
pub trait NodeStore: Send + Sync + std::fmt::Debug {
    /// Records a join token by its hash, valid until `expires_at`;
    /// [`StoreError::Conflict`] if the hash exists.
    fn create_join_token(&self, hash: &str, expires_at: SystemTime) -> Result<(), StoreError>;
    /// Consumes the join token with `hash` if it is still valid at `now`
    /// (deleting it, so it works once) and records `node`, the node it
    /// attests, in the same transaction: a token is never used up without
    /// its node on record. An expired or unknown token writes nothing.
    ///
    /// Concurrent calls with one token (from any number of threads or, for
    /// a shared database, servers) consume it at most once: exactly one
    /// sees [`TokenUse::Consumed`], the others [`TokenUse::Unknown`].
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
    /// Every attested node, in SPIFFE ID order.
    fn list_attested_nodes(&self) -> Result<Vec<AttestedNode>, StoreError>;
    /// Forgets an attested node (eviction); whether it was on record.
    fn delete_attested_node(&self, id: &SpiffeId) -> Result<bool, StoreError>;
}

/// The bundles of federated trust domains.
pub trait BundleStore: Send + Sync + std::fmt::Debug {
    /// Stores (or replaces) the bundle of a federated trust domain.
    fn put_federated_bundle(&self, bundle: &SpiffeBundle) -> Result<(), StoreError>;
    /// Every federated bundle, by trust domain name.
    fn federated_bundles(&self) -> Result<Vec<SpiffeBundle>, StoreError>;
}

/// Everything the authority persists: a backend that implements each
/// concern's trait is a `Store` (there is a blanket impl), and one
/// `Arc<dyn Store>` can be handed to every caller, each of which takes
/// only the trait it needs. Every method is one transaction: it either
/// fully happens or not at all.
///
/// [`SqliteStore`] is the embedded default; a shared database (for
/// several server replicas) is another implementation of the same four
/// traits, and callers do not change.
pub trait Store: CaJournalStore + EntryStore + NodeStore + BundleStore {}

impl<T: CaJournalStore + EntryStore + NodeStore + BundleStore + ?Sized> Store for T {}
