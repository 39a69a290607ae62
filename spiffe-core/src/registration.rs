//! [`RegistrationEntry`]: who gets which SPIFFE ID, and the one rule every
//! entry meets, whether an authority registers it (svid-ca) or a Workload
//! API provider serves it (workload-api).

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::{EntryId, EntryIdError, Selector, SpiffeId, TrustDomain};

/// Longest hint an entry may carry (bytes; the Workload API's WL-9 limit).
pub const MAX_HINT_LEN: usize = 1024;

/// Longest DNS name an entry may carry (characters, all ASCII).
pub const MAX_DNS_NAME_LEN: usize = 253;

/// Who gets which SPIFFE ID: workloads (or nodes) whose attested selectors
/// include all of `selectors`, running under `parent_id`.
///
/// [`RegistrationEntry::validate`] is the rule every entry meets, checked by
/// svid-ca's `Registry` (which adds the authority's own limits: its trust
/// domain, reserved paths, its longest TTL) and by workload-api's
/// `MemoryIdentityProvider`.
///
/// ```
/// use spiffe_core::{EntryRuleError, RegistrationEntry, SpiffeId};
/// let id: SpiffeId = "spiffe://example.org/api".parse()?;
/// let node: SpiffeId = "spiffe://example.org/node/n1".parse()?;
/// let entry = RegistrationEntry::new(id.clone(), node.clone(), vec!["unix:uid:1000".parse()?])?
///     .with_hint("internal");
/// assert_eq!(entry.validate(), Ok(()));
/// let nothing = RegistrationEntry::new(id, node, vec![])?;
/// assert_eq!(nothing.validate(), Err(EntryRuleError::NoSelectors));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
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
    /// An operator hint passed to the workload (Workload API `hint`, WL-9).
    pub hint: Option<String>,
    /// When the entry stops matching.
    pub expires_at: Option<SystemTime>,
}

/// Which rule of a [`RegistrationEntry`] was broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryRuleError {
    /// The SPIFFE ID has no path (X509-7: leaves need one).
    #[error("an entry cannot grant the trust domain's root ID")]
    RootId,
    /// The parent is in another trust domain than the SPIFFE ID.
    #[error("parent {parent} is not in the trust domain of {spiffe_id}")]
    ForeignParent {
        /// The entry's SPIFFE ID.
        spiffe_id: SpiffeId,
        /// The parent.
        parent: SpiffeId,
    },
    /// The entry has no selector; it would match nobody (or, worse, anyone).
    #[error("an entry needs at least one selector")]
    NoSelectors,
    /// A TTL is zero.
    #[error("{kind} TTL must not be zero")]
    ZeroTtl {
        /// `X509-SVID` or `JWT-SVID`.
        kind: &'static str,
    },
    /// A DNS name is malformed.
    #[error("invalid DNS name {name:?}")]
    InvalidDnsName {
        /// The name.
        name: String,
    },
    /// The hint is longer than [`MAX_HINT_LEN`] bytes.
    #[error("hint is {len} bytes, more than the {MAX_HINT_LEN} allowed")]
    HintTooLong {
        /// Its length in bytes.
        len: usize,
    },
}

impl RegistrationEntry {
    /// An entry with a random id, the given identity, parent and selectors,
    /// and defaults for everything else. Nothing is checked until
    /// [`validate`](Self::validate).
    pub fn new(
        spiffe_id: SpiffeId,
        parent_id: SpiffeId,
        selectors: Vec<Selector>,
    ) -> Result<Self, EntryIdError> {
        Ok(RegistrationEntry {
            id: EntryId::random()?,
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

    /// Sets the id.
    pub fn with_id(mut self, id: EntryId) -> Self {
        self.id = id;
        self
    }

    /// Sets the hint (WL-9).
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Adds a trust domain whose bundle the workload also receives.
    pub fn with_federates_with(mut self, td: TrustDomain) -> Self {
        self.federates_with.push(td);
        self
    }

    /// Whether the entry has expired at `now`.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// Checks the rule every entry meets, in this order: the SPIFFE ID has
    /// a path; the parent is in the SPIFFE ID's trust domain; there is at
    /// least one selector; no TTL is zero; every DNS name is well formed;
    /// the hint is at most [`MAX_HINT_LEN`] bytes. The selectors and the id
    /// are valid by construction.
    pub fn validate(&self) -> Result<(), EntryRuleError> {
        if self.spiffe_id.is_root() {
            return Err(EntryRuleError::RootId);
        }
        if !self.parent_id.is_member_of(self.spiffe_id.trust_domain()) {
            return Err(EntryRuleError::ForeignParent {
                spiffe_id: self.spiffe_id.clone(),
                parent: self.parent_id.clone(),
            });
        }
        if self.selectors.is_empty() {
            return Err(EntryRuleError::NoSelectors);
        }
        for (kind, ttl) in [
            ("X509-SVID", self.x509_svid_ttl),
            ("JWT-SVID", self.jwt_svid_ttl),
        ] {
            if ttl.is_some_and(|t| t.is_zero()) {
                return Err(EntryRuleError::ZeroTtl { kind });
            }
        }
        if let Some(name) = self.dns_names.iter().find(|n| !valid_dns_name(n)) {
            return Err(EntryRuleError::InvalidDnsName { name: name.clone() });
        }
        if let Some(len) = self.hint.as_ref().map(String::len)
            && len > MAX_HINT_LEN
        {
            return Err(EntryRuleError::HintTooLong { len });
        }
        Ok(())
    }
}

/// A DNS name: labels of `[A-Za-z0-9-]` (1-63 chars, no leading or
/// trailing hyphen), at most [`MAX_DNS_NAME_LEN`] characters, optionally
/// starting `*.`.
fn valid_dns_name(name: &str) -> bool {
    let host = name.strip_prefix("*.").unwrap_or(name);
    !host.is_empty()
        && name.len() <= MAX_DNS_NAME_LEN
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_plain_entry_is_valid() {
        assert_eq!(entry().validate(), Ok(()));
        let e = entry()
            .with_hint("h".repeat(MAX_HINT_LEN))
            .with_federates_with("other.org".parse().unwrap());
        assert_eq!(e.validate(), Ok(()));
        assert_ne!(entry().id, entry().id, "ids are random");
    }

    #[test]
    fn entry_rules_are_checked_in_order_with_the_reason() {
        let mut root = entry();
        root.spiffe_id = id("spiffe://example.org");
        root.selectors.clear();
        assert_eq!(root.validate(), Err(EntryRuleError::RootId));

        let mut foreign = entry();
        foreign.parent_id = id("spiffe://other.org/node/n1");
        assert!(matches!(
            foreign.validate(),
            Err(EntryRuleError::ForeignParent { .. })
        ));

        let mut none = entry();
        none.selectors.clear();
        assert_eq!(none.validate(), Err(EntryRuleError::NoSelectors));

        let mut zero = entry();
        zero.x509_svid_ttl = Some(Duration::ZERO);
        assert_eq!(
            zero.validate(),
            Err(EntryRuleError::ZeroTtl { kind: "X509-SVID" })
        );

        let long = entry().with_hint("h".repeat(MAX_HINT_LEN + 1));
        assert_eq!(
            long.validate(),
            Err(EntryRuleError::HintTooLong {
                len: MAX_HINT_LEN + 1
            })
        );
    }

    #[test]
    fn dns_names_are_hostnames_or_one_leading_wildcard() {
        for good in ["a", "api.example.org", "*.example.org", "x-1.y", "A.B"] {
            assert!(valid_dns_name(good), "{good}");
        }
        let long_label = format!("{}.org", "a".repeat(64));
        let long_name = format!("{}a", "a.".repeat(MAX_DNS_NAME_LEN / 2 + 1));
        for bad in [
            "",
            "*.",
            "bad name",
            "-a.org",
            "a-.org",
            "a..org",
            "a.*.org",
            "ünïcode.org",
            long_label.as_str(),
            long_name.as_str(),
        ] {
            assert!(!valid_dns_name(bad), "{bad:?}");
        }
        let mut e = entry();
        e.dns_names = vec!["ok.org".into(), "bad name".into()];
        assert_eq!(
            e.validate(),
            Err(EntryRuleError::InvalidDnsName {
                name: "bad name".into()
            })
        );
    }

    #[test]
    fn expiry_is_inclusive_of_the_instant() {
        let now = SystemTime::now();
        let mut e = entry();
        assert!(!e.is_expired(now));
        e.expires_at = Some(now);
        assert!(e.is_expired(now));
        assert!(!e.is_expired(now - Duration::from_secs(1)));
    }

    #[test]
    fn entries_round_trip_through_serde() {
        let mut e = entry().with_hint("x");
        e.dns_names = vec!["api.example.org".into()];
        e.x509_svid_ttl = Some(Duration::from_secs(60));
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<RegistrationEntry>(&json).unwrap(), e);
    }
}
