//! [`RegistrationEntry`] and its validation. [`Selector`] and [`EntryId`]
//! are spiffe-core's, shared with the Workload API.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use spiffe_core::{EntryId, EntryIdError, Selector, SelectorError, SpiffeId, TrustDomain};

use crate::Entitlement;

/// Paths under these prefixes are reserved for the authority's own
/// identities (attested nodes, the server) and cannot be registered.
pub const RESERVED_PATH_PREFIXES: [&str; 2] = ["/node", "/server"];

/// Who gets which SPIFFE ID: workloads (or nodes) whose attested selectors
/// include all of `selectors`, running under `parent_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RegistrationEntry {
    /// The entry's id.
    pub id: EntryId,
    /// The identity granted.
    pub spiffe_id: SpiffeId,
    /// The node (or node alias) the workload must run under.
    pub parent_id: SpiffeId,
    /// All of these must be attested.
    pub selectors: Vec<Selector>,
    /// X509-SVID TTL; the authority's default when `None`.
    pub x509_svid_ttl: Option<Duration>,
    /// JWT-SVID TTL; the authority's default when `None`.
    pub jwt_svid_ttl: Option<Duration>,
    /// DNS SANs of the X509-SVID.
    pub dns_names: Vec<String>,
    /// Trust domains whose bundles the workload receives.
    pub federates_with: Vec<TrustDomain>,
    /// Whether the workload may administer the authority.
    pub admin: bool,
    /// An operator hint passed to the workload (Workload API `hint`).
    pub hint: Option<String>,
    /// When the entry stops matching.
    pub expires_at: Option<SystemTime>,
}

impl RegistrationEntry {
    /// An entry with a random id, the given identity, parent and selectors,
    /// and defaults for everything else.
    pub fn new(
        spiffe_id: SpiffeId,
        parent_id: SpiffeId,
        selectors: Vec<Selector>,
    ) -> Result<Self, EntryError> {
        Ok(RegistrationEntry {
            id: EntryId::random().map_err(|_| EntryError::Random)?,
            spiffe_id,
            parent_id,
            selectors,
            x509_svid_ttl: None,
            jwt_svid_ttl: None,
            dns_names: Vec::new(),
            federates_with: Vec::new(),
            admin: false,
            hint: None,
            expires_at: None,
        })
    }

    /// Whether the entry has expired at `now`.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// Checks the entry against the rules of `td` and the TTL limit.
    pub(crate) fn validate(&self, td: &TrustDomain, max_ttl: Duration) -> Result<(), EntryError> {
        for id in [&self.spiffe_id, &self.parent_id] {
            if !id.is_member_of(td) {
                return Err(EntryError::ForeignTrustDomain { id: id.clone() });
            }
        }
        if self.spiffe_id.is_root() {
            return Err(EntryError::RootId);
        }
        if is_reserved(&self.spiffe_id) {
            return Err(EntryError::ReservedPath {
                id: self.spiffe_id.clone(),
            });
        }
        if self.selectors.is_empty() {
            return Err(EntryError::NoSelectors);
        }
        for (kind, ttl) in [
            ("X509-SVID", self.x509_svid_ttl),
            ("JWT-SVID", self.jwt_svid_ttl),
        ] {
            match ttl {
                Some(t) if t.is_zero() => return Err(EntryError::ZeroTtl { kind }),
                Some(ttl) if ttl > max_ttl => {
                    return Err(EntryError::TtlTooLong {
                        kind,
                        ttl,
                        max: max_ttl,
                    });
                }
                _ => {}
            }
        }
        if let Some(name) = self.dns_names.iter().find(|n| !valid_dns_name(n)) {
            return Err(EntryError::InvalidDnsName { name: name.clone() });
        }
        Ok(())
    }
}

impl From<&RegistrationEntry> for Entitlement {
    fn from(e: &RegistrationEntry) -> Self {
        Entitlement {
            spiffe_id: e.spiffe_id.clone(),
            dns_names: e.dns_names.clone(),
            x509_svid_ttl: e.x509_svid_ttl,
            jwt_svid_ttl: e.jwt_svid_ttl,
        }
    }
}

/// Whether `id` lies under a reserved path.
pub fn is_reserved(id: &SpiffeId) -> bool {
    RESERVED_PATH_PREFIXES.iter().any(|p| {
        id.path()
            .strip_prefix(p)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// A DNS name: labels of `[A-Za-z0-9-]` (1-63 chars, no leading or
/// trailing hyphen), at most 253 characters, optionally starting `*.`.
pub(crate) fn valid_dns_name(name: &str) -> bool {
    let host = name.strip_prefix("*.").unwrap_or(name);
    !host.is_empty()
        && name.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Why a registration entry was refused. Nothing is written on error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    /// An id or parent id is outside the authority's trust domain.
    #[error("{id} is not in this authority's trust domain")]
    ForeignTrustDomain {
        /// The offending id.
        id: SpiffeId,
    },
    /// The SPIFFE ID has no path (X509-7: leaves need one).
    #[error("an entry cannot grant the trust domain's root ID")]
    RootId,
    /// The SPIFFE ID lies under a reserved path.
    #[error("{id} is under a reserved path (/node, /server)")]
    ReservedPath {
        /// The id.
        id: SpiffeId,
    },
    /// The entry has no selector.
    #[error("an entry needs at least one selector")]
    NoSelectors,
    /// A selector is malformed.
    #[error("invalid selector: {0}")]
    InvalidSelector(#[from] SelectorError),
    /// A TTL is zero.
    #[error("{kind} TTL must not be zero")]
    ZeroTtl {
        /// `X509-SVID` or `JWT-SVID`.
        kind: &'static str,
    },
    /// A TTL exceeds the authority's maximum.
    #[error("{kind} TTL {ttl:?} exceeds the authority's maximum {max:?}")]
    TtlTooLong {
        /// `X509-SVID` or `JWT-SVID`.
        kind: &'static str,
        /// The TTL asked for.
        ttl: Duration,
        /// The maximum.
        max: Duration,
    },
    /// A DNS name is malformed.
    #[error("invalid DNS name {name:?}")]
    InvalidDnsName {
        /// The name.
        name: String,
    },
    /// An entry id is malformed.
    #[error("invalid entry id: {0}")]
    InvalidEntryId(#[from] EntryIdError),
    /// An entry with this id exists.
    #[error("entry {id} already exists")]
    Duplicate {
        /// The id.
        id: EntryId,
    },
    /// No entry has this id.
    #[error("no entry {id}")]
    NotFound {
        /// The id.
        id: EntryId,
    },
    /// The system random generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// The store failed; nothing changed.
    #[error("store: {0}")]
    Store(#[from] crate::StoreError),
}
