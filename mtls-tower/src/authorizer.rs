//! [`Authorizer`]: which authenticated peers may connect.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use spiffe_core::{SpiffeId, TrustDomain};

/// Decides whether a peer, already authenticated by its X509-SVID, may connect.
///
/// Called after chain validation and the X509-SVID leaf rules, during the
/// handshake: a `false` aborts it with an `access_denied` alert. Closures
/// `Fn(&SpiffeId) -> bool` are authorizers, so tests and one-off policies
/// need no type:
///
/// ```
/// use mtls_tower::Authorizer;
/// use spiffe_core::SpiffeId;
/// let only_ns_prod = |id: &SpiffeId| id.path().starts_with("/ns/prod/");
/// let id: SpiffeId = "spiffe://example.org/ns/prod/sa/api".parse()?;
/// assert!(only_ns_prod.authorize(&id));
/// # Ok::<(), spiffe_core::IdError>(())
/// ```
pub trait Authorizer: Send + Sync + 'static {
    /// Whether `peer` may connect.
    fn authorize(&self, peer: &SpiffeId) -> bool;

    /// What this authorizer admits, for the error a refused peer causes
    /// (`exact(spiffe://example.org/backend)`); closures and other custom
    /// authorizers read as `a custom authorizer` unless they say more.
    fn describe(&self) -> String {
        "a custom authorizer".to_owned()
    }
}

impl<F> Authorizer for F
where
    F: Fn(&SpiffeId) -> bool + Send + Sync + 'static,
{
    fn authorize(&self, peer: &SpiffeId) -> bool {
        self(peer)
    }
}

impl<A: Authorizer + ?Sized> Authorizer for Arc<A> {
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn authorize(&self, peer: &SpiffeId) -> bool {
        (**self).authorize(peer)
    }
}

/// Accepts every authenticated peer (of a trust domain the trust policy admits).
///
/// Must be chosen explicitly: no builder defaults to it.
pub fn any() -> Any {
    Any
}

/// Accepts exactly one SPIFFE ID.
pub fn exact(id: SpiffeId) -> Exact {
    Exact { id }
}

/// Accepts any of the given SPIFFE IDs.
pub fn one_of(ids: impl IntoIterator<Item = SpiffeId>) -> OneOf {
    OneOf {
        ids: ids.into_iter().collect(),
    }
}

/// Accepts any SPIFFE ID of the given trust domains.
pub fn member_of(tds: impl IntoIterator<Item = TrustDomain>) -> MemberOf {
    MemberOf {
        tds: tds.into_iter().collect(),
    }
}

/// See [`any`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Any;

impl Authorizer for Any {
    fn authorize(&self, _peer: &SpiffeId) -> bool {
        true
    }
    fn describe(&self) -> String {
        "any".to_owned()
    }
}

/// See [`exact`].
#[derive(Debug, Clone)]
pub struct Exact {
    id: SpiffeId,
}

impl Authorizer for Exact {
    fn authorize(&self, peer: &SpiffeId) -> bool {
        *peer == self.id
    }
    fn describe(&self) -> String {
        format!("exact({})", self.id)
    }
}

/// See [`one_of`].
#[derive(Debug, Clone)]
pub struct OneOf {
    ids: HashSet<SpiffeId>,
}

impl Authorizer for OneOf {
    fn authorize(&self, peer: &SpiffeId) -> bool {
        self.ids.contains(peer)
    }
    fn describe(&self) -> String {
        let mut ids: Vec<String> = self.ids.iter().map(ToString::to_string).collect();
        ids.sort();
        format!("one_of({})", ids.join(", "))
    }
}

/// See [`member_of`].
#[derive(Debug, Clone)]
pub struct MemberOf {
    tds: HashSet<TrustDomain>,
}

impl Authorizer for MemberOf {
    fn authorize(&self, peer: &SpiffeId) -> bool {
        self.tds.contains(peer.trust_domain())
    }
    fn describe(&self) -> String {
        let mut tds: Vec<&str> = self.tds.iter().map(TrustDomain::as_str).collect();
        tds.sort_unstable();
        format!("member_of({})", tds.join(", "))
    }
}

/// A client's authorizers, one per target server name.
///
/// The server name is the host the client dials (a DNS name or an IP
/// address, as the TLS layer sees it). A connection to a host with no entry
/// is refused: there is no fallback.
///
/// ```
/// use mtls_tower::{TargetAuthorizers, authorizer};
/// let targets = TargetAuthorizers::new()
///     .target("backend.local", authorizer::exact("spiffe://example.org/backend".parse()?))
///     .target("127.0.0.1", authorizer::member_of(["example.org".parse()?]));
/// # Ok::<(), spiffe_core::IdError>(())
/// ```
#[derive(Clone, Default)]
pub struct TargetAuthorizers {
    by_host: HashMap<String, Arc<dyn Authorizer>>,
}

impl TargetAuthorizers {
    /// No targets: every connection is refused until targets are added.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requires servers reached as `host` to satisfy `authorizer`.
    /// Host names compare case-insensitively.
    pub fn target(mut self, host: &str, authorizer: impl Authorizer) -> Self {
        self.by_host
            .insert(host.to_ascii_lowercase(), Arc::new(authorizer));
        self
    }

    /// The authorizer for `host`.
    pub(crate) fn get(&self, host: &str) -> Option<&dyn Authorizer> {
        self.by_host
            .get(&host.to_ascii_lowercase())
            .map(|a| a.as_ref())
    }
}

impl fmt::Debug for TargetAuthorizers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut hosts: Vec<_> = self.by_host.keys().collect();
        hosts.sort();
        f.debug_struct("TargetAuthorizers")
            .field("hosts", &hosts)
            .finish()
    }
}

/// A type-erased authorizer, as the TLS verifiers hold it.
#[derive(Clone)]
pub(crate) struct DynAuthorizer(pub(crate) Arc<dyn Authorizer>);

impl fmt::Debug for DynAuthorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Authorizer")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SpiffeId {
        s.parse().unwrap()
    }

    #[test]
    fn authorizers_describe_what_they_admit() {
        assert_eq!(any().describe(), "any");
        assert_eq!(
            exact(id("spiffe://example.org/a")).describe(),
            "exact(spiffe://example.org/a)"
        );
        assert_eq!(
            one_of([id("spiffe://example.org/b"), id("spiffe://example.org/a")]).describe(),
            "one_of(spiffe://example.org/a, spiffe://example.org/b)"
        );
        let tds = ["b.org", "a.org"].map(|t| t.parse().unwrap());
        assert_eq!(member_of(tds).describe(), "member_of(a.org, b.org)");
        let closure = |_: &SpiffeId| true;
        assert_eq!(closure.describe(), "a custom authorizer");
        assert_eq!(Arc::new(any()).describe(), "any");
    }

    #[test]
    fn any_accepts_everything() {
        assert!(any().authorize(&id("spiffe://a.org/x")));
    }

    #[test]
    fn exact_accepts_only_its_id() {
        let a = exact(id("spiffe://example.org/ns/default/sa/frontend"));
        assert!(a.authorize(&id("spiffe://example.org/ns/default/sa/frontend")));
        assert!(!a.authorize(&id("spiffe://example.org/ns/default/sa/backend")));
        assert!(!a.authorize(&id("spiffe://other.org/ns/default/sa/frontend")));
    }

    #[test]
    fn exact_compares_canonical_ids() {
        let a = exact(id("spiffe://Example.ORG/w"));
        assert!(a.authorize(&id("spiffe://example.org/w")));
        // The path is case-sensitive.
        assert!(!a.authorize(&id("spiffe://example.org/W")));
    }

    #[test]
    fn one_of_accepts_members_only() {
        let a = one_of([id("spiffe://a.org/x"), id("spiffe://b.org/y")]);
        assert!(a.authorize(&id("spiffe://a.org/x")));
        assert!(a.authorize(&id("spiffe://b.org/y")));
        assert!(!a.authorize(&id("spiffe://a.org/y")));
        assert!(!one_of([]).authorize(&id("spiffe://a.org/x")));
    }

    #[test]
    fn member_of_checks_trust_domain() {
        let a = member_of(["a.org".parse().unwrap(), "b.org".parse().unwrap()]);
        assert!(a.authorize(&id("spiffe://a.org/x")));
        assert!(a.authorize(&id("spiffe://b.org/anything/else")));
        assert!(!a.authorize(&id("spiffe://c.org/x")));
        assert!(!a.authorize(&id("spiffe://sub.a.org/x")));
    }

    #[test]
    fn targets_pick_by_host_and_refuse_unknown_hosts() {
        let t = TargetAuthorizers::new()
            .target("Backend.Local", exact(id("spiffe://a.org/backend")))
            .target("127.0.0.1", any());
        let a = t.get("backend.local").unwrap();
        assert!(a.authorize(&id("spiffe://a.org/backend")));
        assert!(!a.authorize(&id("spiffe://a.org/other")));
        assert!(t.get("127.0.0.1").is_some());
        assert!(t.get("localhost").is_none());
    }

    #[test]
    fn closures_boxed_closures_and_arcs_are_authorizers() {
        let a: Box<dyn Fn(&SpiffeId) -> bool + Send + Sync> = Box::new(|p| p.path() == "/ok");
        assert!(a.authorize(&id("spiffe://a.org/ok")));
        assert!(!a.authorize(&id("spiffe://a.org/no")));
        let shared: Arc<dyn Authorizer> = Arc::new(exact(id("spiffe://a.org/ok")));
        assert!(shared.authorize(&id("spiffe://a.org/ok")));
    }
}
