//! The SPIFFE vocabulary: identities, SVIDs, bundles and their verification.
//!
//! `spiffe-core` is pure: it parses, validates and verifies, and does no
//! network I/O (the only I/O is the explicit file loaders in [`source`]).
//! Every other crate of the workspace builds on it.
//!
//! - [`SpiffeId`] and [`TrustDomain`]: identities as types, parsed exactly as
//!   the SPIFFE ID standard says.
//! - [`X509Svid`], [`X509Bundle`] and [`verify_x509_svid`]: X.509 identity
//!   documents and their verification against the bundle of the peer's own
//!   trust domain.
//! - [`JwtSvid`], [`JwtBundle`]: JWT identity documents, validated in the
//!   order the JWT-SVID standard prescribes.
//! - [`SpiffeBundle`], [`BundleSet`]: the SPIFFE bundle document and the set
//!   of bundles a workload trusts, keyed by trust domain.
//! - [`PeerIdentity`] and [`ConnectionFacts`]: what an accepted connection
//!   proved (only verification builds a `PeerIdentity`) and the facts taken
//!   when it was accepted (addresses, SNI, ALPN).
//! - [`Selector`], [`Selectors`], [`EntryId`] and [`RegistrationEntry`]:
//!   the registration vocabulary shared by svid-ca and workload-api, each
//!   with one validation rule.
//! - [`SvidSource`], [`BundleSource`]: the seams through which the rest of the
//!   workspace reads current identity and trust, with change notification.
//!
//! ```
//! use spiffe_core::{SpiffeId, TrustDomain};
//! let id: SpiffeId = "spiffe://example.org/ns/prod/sa/api".parse()?;
//! assert!(id.is_member_of(&"example.org".parse::<TrustDomain>()?));
//! assert!("spiffe://example.org/a/../b".parse::<SpiffeId>().is_err());
//! # Ok::<(), spiffe_core::IdError>(())
//! ```

#[doc(hidden)]
#[path = "fuzz_hooks.rs"]
pub mod __fuzz;
mod bundle;
mod conn;
mod entry;
mod id;
pub mod jwt;
mod registration;
mod report;
pub mod source;
pub mod x509;

pub use bundle::{BundleError, BundleSet, SpiffeBundle};
pub use conn::ConnectionFacts;
pub use entry::{
    EntryId, EntryIdError, MAX_ENTRY_ID_LEN, MAX_SELECTOR_LEN, Selector, SelectorError, Selectors,
};
pub use id::{
    IdError, MAX_SPIFFE_ID_LEN, MAX_TRUST_DOMAIN_LEN, SPIFFE_SCHEME, SpiffeId, TrustDomain,
};
pub use jwt::{JwtBundle, JwtError, JwtSvid};
pub use registration::{EntryRuleError, MAX_DNS_NAME_LEN, MAX_HINT_LEN, RegistrationEntry};
pub use report::error_chain;
pub use source::{
    BundleSource, MemoryBundleSource, MemorySvidSource, SvidSource, X509AuthoritySource,
};
pub use x509::{
    PeerIdentity, PrivateKey, VerifyError, X509Bundle, X509Error, X509Svid, verify_x509_svid,
};
