//! A SPIFFE certificate authority.
//!
//! - [`CertificateAuthority`]: a self-signed root for the trust domain, or
//!   an intermediate under an [`UpstreamCa`], with separate X.509 and JWT
//!   key slots that rotate PREPARED → ACTIVE → OLD on the
//!   [`RotationPolicy`] schedule, and the trust domain's [`SpiffeBundle`]
//!   (`spiffe_core::SpiffeBundle`).
//! - Issuance: X509-SVIDs from a CSR or a public key, and JWT-SVIDs, for an
//!   [`Entitlement`].
//!
//! - [`Registry`] of [`RegistrationEntry`], matched by attested
//!   [`Selectors`] (the entry, selector and entry id types and the entry
//!   rule are spiffe-core's, re-exported here; the registry adds the
//!   authority's limits), and [`JoinTokenAttestor`] for nodes.
//! - Persistence through one small trait per concern ([`CaJournalStore`],
//!   [`EntryStore`], [`NodeStore`], [`BundleStore`]; [`Store`] is all four),
//!   with [`SqliteStore`] as the embedded default.
//!
//! Time comes from a [`Clock`], so rotation can be tested with a
//! [`ManualClock`].
//!
//! [`SpiffeBundle`]: spiffe_core::SpiffeBundle

mod attest;
mod authority;
mod clock;
mod config;
mod issuer;
mod keys;
mod registry;
mod store;
mod upstream;
mod x509pop;

pub use attest::{
    AttestError, AttestedNode, JOIN_TOKEN, JoinToken, JoinTokenAttestor, NodeAttestor,
};
pub use authority::{
    AuthorityInfo, CaBuilder, CaError, CertificateAuthority, RotationHealth, SlotKind, SlotState,
    TokioClock,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{CaConfig, ConfigError, RotationPolicy};
pub use issuer::{Entitlement, IssueError, IssuedX509, MAX_CSR_LEN};
pub use keys::{KeyError, KeyType};
pub use registry::{EntryError, RESERVED_PATH_PREFIXES, Registry, is_reserved};
/// The registration vocabulary, defined once in spiffe-core and re-exported
/// here so the authority's API keeps its names.
pub use spiffe_core::{
    EntryId, EntryIdError, EntryRuleError, MAX_ENTRY_ID_LEN, MAX_HINT_LEN, MAX_SELECTOR_LEN,
    RegistrationEntry, Selector, SelectorError, Selectors,
};
pub use store::{
    BackendError, BundleStore, CaJournal, CaJournalStore, EntryStore, JournalSlot, NodeStore,
    SCHEMA_VERSION, SqliteStore, Store, StoreError, TokenUse,
};
pub use upstream::{UpstreamCa, UpstreamError};
pub use x509pop::{X509POP, X509POP_CONTEXT, X509PopAttestor, X509PopEvidence};
