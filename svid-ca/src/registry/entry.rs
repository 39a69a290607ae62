//! The authority's checks of a [`RegistrationEntry`] and why an entry is
//! refused. The entry type, its own rule, [`Selector`](spiffe_core::Selector)
//! and [`EntryId`] are spiffe-core's, shared with the Workload API.

use std::time::Duration;

use spiffe_core::{
    EntryId, EntryIdError, EntryRuleError, RegistrationEntry, SelectorError, SpiffeId, TrustDomain,
};

use crate::Entitlement;

/// Paths under these prefixes are reserved for the authority's own
/// identities (attested nodes, the server) and cannot be registered.
pub const RESERVED_PATH_PREFIXES: [&str; 2] = ["/node", "/server"];

/// Checks `entry` against the rule every entry meets
/// ([`RegistrationEntry::validate`]) and the authority's own limits: both
/// ids in `td`, no reserved path, no TTL above `max_ttl`.
pub(crate) fn validate(
    entry: &RegistrationEntry,
    td: &TrustDomain,
    max_ttl: Duration,
) -> Result<(), EntryError> {
    for id in [&entry.spiffe_id, &entry.parent_id] {
        if !id.is_member_of(td) {
            return Err(EntryError::ForeignTrustDomain { id: id.clone() });
        }
    }
    entry.validate()?;
    if is_reserved(&entry.spiffe_id) {
        return Err(EntryError::ReservedPath {
            id: entry.spiffe_id.clone(),
        });
    }
    for (kind, ttl) in [
        ("X509-SVID", entry.x509_svid_ttl),
        ("JWT-SVID", entry.jwt_svid_ttl),
    ] {
        if let Some(ttl) = ttl.filter(|t| *t > max_ttl) {
            return Err(EntryError::TtlTooLong {
                kind,
                ttl,
                max: max_ttl,
            });
        }
    }
    Ok(())
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

/// Why a registration entry was refused. Nothing is written on error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    /// An id or parent id is outside the authority's trust domain (for the
    /// parent, also [`EntryRuleError::ForeignParent`]).
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
    /// The hint is longer than [`spiffe_core::MAX_HINT_LEN`] bytes.
    #[error(
        "hint is {len} bytes, more than the {} allowed",
        spiffe_core::MAX_HINT_LEN
    )]
    HintTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The entry breaks a rule of [`RegistrationEntry::validate`] that has
    /// no variant of its own here.
    #[error("invalid entry: {0}")]
    Invalid(EntryRuleError),
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
    /// The store failed; nothing changed.
    #[error("store: {0}")]
    Store(#[from] crate::StoreError),
}

/// Each broken entry rule has its own [`EntryError`] variant, so callers
/// match the same variants whichever check found the fault.
impl From<EntryRuleError> for EntryError {
    fn from(e: EntryRuleError) -> Self {
        match e {
            EntryRuleError::RootId => EntryError::RootId,
            EntryRuleError::ForeignParent { parent, .. } => {
                EntryError::ForeignTrustDomain { id: parent }
            }
            EntryRuleError::NoSelectors => EntryError::NoSelectors,
            EntryRuleError::ZeroTtl { kind } => EntryError::ZeroTtl { kind },
            EntryRuleError::InvalidDnsName { name } => EntryError::InvalidDnsName { name },
            EntryRuleError::HintTooLong { len } => EntryError::HintTooLong { len },
            // `EntryRuleError` is non-exhaustive: a rule added there and not
            // yet given a variant here is still an invalid entry.
            other => EntryError::Invalid(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use spiffe_core::MAX_HINT_LEN;

    use super::*;
    use crate::Registry;

    fn id(s: &str) -> SpiffeId {
        s.parse().unwrap()
    }

    fn entry() -> RegistrationEntry {
        RegistrationEntry::new(
            id("spiffe://example.org/api"),
            id("spiffe://example.org/node/n1"),
            vec!["unix:uid:1".parse().unwrap()],
        )
        .unwrap()
    }

    fn registry() -> Registry {
        Registry::new("example.org".parse().unwrap(), Duration::from_secs(3600))
    }

    #[test]
    fn hint_longer_than_max_hint_len_is_refused_by_the_registry_as_by_the_workload_api() {
        let r = registry();
        // svid-ca used to store any hint; the Workload API refused these.
        let long = entry().with_hint("h".repeat(MAX_HINT_LEN + 1));
        assert!(matches!(
            r.create(long),
            Err(EntryError::HintTooLong { len }) if len == MAX_HINT_LEN + 1
        ));
        r.create(entry().with_hint("h".repeat(MAX_HINT_LEN)))
            .unwrap();
    }

    #[test]
    fn the_registry_applies_the_shared_entry_rule_before_its_own_limits() {
        // Whatever RegistrationEntry::validate refuses, the registry refuses
        // with the matching variant.
        let mut cases: Vec<RegistrationEntry> = Vec::new();
        let mut e = entry();
        e.selectors.clear();
        cases.push(e);
        let mut e = entry();
        e.jwt_svid_ttl = Some(Duration::ZERO);
        cases.push(e);
        let mut e = entry();
        e.dns_names = vec!["a..b".into()];
        cases.push(e);
        let mut e = entry();
        e.spiffe_id = id("spiffe://example.org");
        cases.push(e);
        let r = registry();
        for e in cases {
            let rule = e.validate().unwrap_err();
            let got = r.create(e).unwrap_err();
            assert_eq!(got.to_string(), EntryError::from(rule).to_string());
        }
        // A reserved path with no selectors breaks the shared rule first.
        let mut e = entry();
        e.spiffe_id = id("spiffe://example.org/node/x");
        e.selectors.clear();
        assert!(matches!(r.create(e), Err(EntryError::NoSelectors)));
        assert!(r.is_empty());
    }
}
