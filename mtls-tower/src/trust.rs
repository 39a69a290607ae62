//! [`TrustPolicy`]: which trust domains' peers a config will authenticate.

use std::collections::HashSet;
use std::sync::Arc;

use spiffe_core::BundleSet;
use spiffe_core::TrustDomain;
use spiffe_core::x509::{X509Bundle, X509BundleLookup};

/// Told the trust domain of a peer whose certificate chain the bundle of
/// that trust domain did not anchor (unknown issuer), or whose admitted
/// trust domain has no bundle: see
/// [`crate::ServerConfigBuilder::on_unknown_authority`].
pub type UnknownAuthorityHook = Arc<dyn Fn(&TrustDomain) + Send + Sync>;

/// Which trust domains' SVIDs the verifiers will validate at all.
///
/// The default is the local trust domain only: the trust domain of the SVID
/// the local workload currently holds. Federated trust domains are admitted
/// only when named, and only while the bundle source holds their bundle; a
/// peer is always validated against the bundle of its own trust domain,
/// never a pooled set (X509-6, FED-12).
///
/// ```
/// use mtls_tower::TrustPolicy;
/// let policy = TrustPolicy::local_only().with_federated(["partner.org".parse()?]);
/// # Ok::<(), spiffe_core::IdError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustPolicy {
    federated: HashSet<TrustDomain>,
    any_in_bundle_set: bool,
}

impl TrustPolicy {
    /// Only the local trust domain (the default).
    pub fn local_only() -> Self {
        Self::default()
    }

    /// Also admits these federated trust domains.
    pub fn with_federated(mut self, tds: impl IntoIterator<Item = TrustDomain>) -> Self {
        self.federated.extend(tds);
        self
    }

    /// Admits every trust domain the bundle source holds a bundle for.
    ///
    /// Permissive: a new federation relationship then silently widens who
    /// may connect. Prefer [`TrustPolicy::with_federated`].
    pub fn any_in_bundle_set() -> Self {
        TrustPolicy {
            federated: HashSet::new(),
            any_in_bundle_set: true,
        }
    }

    /// Whether a peer of `peer` may be validated, given the local trust domain.
    pub(crate) fn admits(&self, local: Option<&TrustDomain>, peer: &TrustDomain) -> bool {
        self.any_in_bundle_set || local == Some(peer) || self.federated.contains(peer)
    }
}

/// A bundle lookup that only answers for admitted trust domains.
pub(crate) struct AdmittedBundles<'a> {
    pub(crate) set: &'a BundleSet,
    pub(crate) policy: &'a TrustPolicy,
    pub(crate) local: Option<&'a TrustDomain>,
}

impl X509BundleLookup for AdmittedBundles<'_> {
    fn x509_bundle(&self, td: &TrustDomain) -> Option<&X509Bundle> {
        if self.policy.admits(self.local, td) {
            self.set.x509_bundle(td)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn td(s: &str) -> TrustDomain {
        s.parse().unwrap()
    }

    #[test]
    fn default_admits_local_trust_domain_only() {
        let p = TrustPolicy::default();
        assert!(p.admits(Some(&td("a.org")), &td("a.org")));
        assert!(!p.admits(Some(&td("a.org")), &td("b.org")));
        // Without a local SVID, nothing is local.
        assert!(!p.admits(None, &td("a.org")));
    }

    #[test]
    fn federated_trust_domains_only_when_named() {
        let p = TrustPolicy::local_only().with_federated([td("b.org")]);
        assert!(p.admits(Some(&td("a.org")), &td("b.org")));
        assert!(!p.admits(Some(&td("a.org")), &td("c.org")));
        assert!(TrustPolicy::any_in_bundle_set().admits(None, &td("c.org")));
    }

    #[test]
    fn lookup_hides_bundles_of_unadmitted_trust_domains() {
        let mut set = BundleSet::new();
        set.insert_x509(X509Bundle::empty(td("a.org")));
        set.insert_x509(X509Bundle::empty(td("b.org")));
        let policy = TrustPolicy::local_only();
        let local = td("a.org");
        let l = AdmittedBundles {
            set: &set,
            policy: &policy,
            local: Some(&local),
        };
        assert!(l.x509_bundle(&td("a.org")).is_some());
        assert!(l.x509_bundle(&td("b.org")).is_none());
    }
}
