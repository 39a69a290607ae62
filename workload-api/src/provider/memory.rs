//! [`MemoryIdentityProvider`]: registration entries, the SVIDs issued for
//! them, and bundles held in memory, fed by the owner.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use serde_json::Map;
use spiffe_core::jwt::{JwtClaims, JwtSigner};
use spiffe_core::{
    BundleSet, EntryId, EntryRuleError, JwtError, PrivateKey, RegistrationEntry, SpiffeId,
    TrustDomain, X509Svid,
};
use tokio::sync::watch;

use super::{IdentityProvider, IssuedSvid, MintError, MintFuture, WorkloadIdentity};
use crate::Selectors;

/// Why the provider refused a change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// The entry breaks the rule every registration entry meets
    /// ([`RegistrationEntry::validate`], the rule svid-ca applies too).
    #[error("invalid registration entry: {0}")]
    InvalidEntry(#[from] EntryRuleError),
    /// An entry with this id is already held.
    #[error("registration entry {0} already exists")]
    DuplicateEntry(EntryId),
    /// No entry has this id.
    #[error("no registration entry {0}")]
    UnknownEntry(EntryId),
    /// The SVID names another SPIFFE ID than the entry.
    #[error("the SVID is for {found}, the entry is for {expected}")]
    WrongIdentity {
        /// The entry's SPIFFE ID.
        expected: SpiffeId,
        /// The SVID's SPIFFE ID.
        found: SpiffeId,
    },
}

/// An entry and the X509-SVID issued for it.
#[derive(Debug)]
struct Held {
    entry: RegistrationEntry,
    svid: Arc<X509Svid>,
}

/// A loaded JWT-SVID signing key and the `kid` it is published under.
struct KidSigner {
    signer: JwtSigner,
    kid: String,
}

#[derive(Default)]
struct State {
    entries: Vec<Held>,
    bundles: BundleSet,
    signers: HashMap<TrustDomain, KidSigner>,
}

/// An [`IdentityProvider`] whose registration entries, bundles and JWT
/// signing keys live in memory and are changed by its owner: the node
/// agent feeds it what the control plane issues; tests feed it directly.
///
/// Each entry is spiffe-core's [`RegistrationEntry`], checked by the same
/// rule as svid-ca's registry, together with the X509-SVID issued for it.
/// The provider uses the entry's SPIFFE ID (the SVID must carry it),
/// selectors, hint, `federates_with` and `expires_at`; the fields that
/// steer issuance (parent, TTLs, DNS names, admin) were the issuer's
/// business.
///
/// An entry matches a caller when the caller has all of the entry's
/// selectors and the entry has not expired. Entries keep insertion order,
/// so the first matching entry is the caller's default identity (WL-10).
/// Expiry is noticed when a caller's state is computed (on connect and on
/// every change); remove an entry when it expires to push that at once.
///
/// ```
/// use workload_api::{IdentityProvider, MemoryIdentityProvider, Selectors};
/// let provider = MemoryIdentityProvider::new();
/// assert!(provider.identity(&Selectors::new()).is_empty());
/// ```
pub struct MemoryIdentityProvider {
    state: RwLock<State>,
    generation: watch::Sender<u64>,
    jwt_ttl: Duration,
}

impl Default for MemoryIdentityProvider {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryIdentityProvider {
    /// An empty provider: nobody has an identity. JWT-SVIDs live 5 minutes.
    pub fn new() -> Self {
        MemoryIdentityProvider {
            state: RwLock::new(State::default()),
            generation: watch::Sender::new(0),
            jwt_ttl: Duration::from_secs(300),
        }
    }

    /// Sets the lifetime of minted JWT-SVIDs.
    pub fn with_jwt_ttl(mut self, ttl: Duration) -> Self {
        self.jwt_ttl = ttl;
        self
    }

    fn change<R>(
        &self,
        f: impl FnOnce(&mut State) -> Result<R, ProviderError>,
    ) -> Result<R, ProviderError> {
        let r = {
            let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
            f(&mut state)?
        };
        self.generation.send_modify(|g| *g += 1);
        Ok(r)
    }

    /// Adds `entry` (after the existing ones) with the X509-SVID issued for
    /// it, and returns the entry's id. The entry must pass
    /// [`RegistrationEntry::validate`], its id must be new, and the SVID
    /// must carry the entry's SPIFFE ID.
    pub fn add_entry(
        &self,
        entry: RegistrationEntry,
        svid: X509Svid,
    ) -> Result<EntryId, ProviderError> {
        entry.validate()?;
        same_identity(&entry, &svid)?;
        self.change(|s| {
            if s.entries.iter().any(|h| h.entry.id == entry.id) {
                return Err(ProviderError::DuplicateEntry(entry.id));
            }
            let id = entry.id.clone();
            s.entries.push(Held {
                entry,
                svid: Arc::new(svid),
            });
            Ok(id)
        })
    }

    /// Replaces an entry's SVID (rotation). The new SVID must carry the
    /// entry's SPIFFE ID.
    pub fn rotate(&self, id: &EntryId, svid: X509Svid) -> Result<(), ProviderError> {
        self.change(|s| {
            let held = s
                .entries
                .iter_mut()
                .find(|h| h.entry.id == *id)
                .ok_or_else(|| ProviderError::UnknownEntry(id.clone()))?;
            same_identity(&held.entry, &svid)?;
            held.svid = Arc::new(svid);
            Ok(())
        })
    }

    /// Removes an entry: its callers lose that identity.
    pub fn remove_entry(&self, id: &EntryId) -> Result<(), ProviderError> {
        self.change(|s| {
            let before = s.entries.len();
            s.entries.retain(|h| h.entry.id != *id);
            if s.entries.len() == before {
                return Err(ProviderError::UnknownEntry(id.clone()));
            }
            Ok(())
        })
    }

    /// Replaces all bundles (own trust domains and federated ones).
    pub fn set_bundles(&self, bundles: BundleSet) {
        let _ = self.change(|s| {
            s.bundles = bundles;
            Ok(())
        });
    }

    /// Sets the key that signs JWT-SVIDs of `trust_domain`, published to
    /// verifiers under `kid` (its public key, [`PrivateKey::jwt_key`],
    /// belongs in the JWT bundle). The key is loaded once, here; a key that
    /// cannot sign JWT-SVIDs is refused.
    pub fn set_jwt_signer(
        &self,
        trust_domain: TrustDomain,
        key: &PrivateKey,
        kid: impl Into<String>,
    ) -> Result<(), JwtError> {
        let signer = KidSigner {
            signer: JwtSigner::new(key)?,
            kid: kid.into(),
        };
        let _ = self.change(|s| {
            s.signers.insert(trust_domain, signer);
            Ok(())
        });
        Ok(())
    }
}

/// The SVID must carry the entry's SPIFFE ID.
fn same_identity(entry: &RegistrationEntry, svid: &X509Svid) -> Result<(), ProviderError> {
    if svid.spiffe_id() != &entry.spiffe_id {
        return Err(ProviderError::WrongIdentity {
            expected: entry.spiffe_id.clone(),
            found: svid.spiffe_id().clone(),
        });
    }
    Ok(())
}

impl IdentityProvider for MemoryIdentityProvider {
    fn identity(&self, selectors: &Selectors) -> WorkloadIdentity {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        let mut svids = Vec::new();
        let mut bundles = BundleSet::new();
        let now = SystemTime::now();
        for Held { entry, svid } in &state.entries {
            if entry.is_expired(now) || !selectors.satisfies(&entry.selectors) {
                continue;
            }
            let own = entry.spiffe_id.trust_domain();
            for td in std::iter::once(own).chain(&entry.federates_with) {
                if let Some(b) = state.bundles.get(td) {
                    bundles.insert(b.clone());
                }
            }
            svids.push(IssuedSvid {
                svid: Arc::clone(svid),
                hint: entry.hint.clone(),
            });
        }
        WorkloadIdentity {
            svids,
            bundles: Arc::new(bundles),
        }
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    fn mint_jwt_svid(&self, subject: &SpiffeId, audience: &[String]) -> MintFuture {
        let result = {
            let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
            let td = subject.trust_domain();
            match state.signers.get(td) {
                None => Err(MintError::NoSigningKey {
                    trust_domain: td.clone(),
                }),
                Some(signer) => {
                    let now = SystemTime::now();
                    let claims = JwtClaims {
                        subject: subject.clone(),
                        audience: audience.to_vec(),
                        expiry: now + self.jwt_ttl,
                        issued_at: now,
                        issuer: None,
                        extra: Map::new(),
                    };
                    signer
                        .signer
                        .sign(&signer.kid, &claims)
                        .map_err(MintError::from)
                }
            }
        };
        Box::pin(std::future::ready(result))
    }
}

impl fmt::Debug for MemoryIdentityProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("MemoryIdentityProvider")
            .field("entries", &state.entries.len())
            .field("bundles", &state.bundles.len())
            .field("jwt_signers", &state.signers.keys().collect::<Vec<_>>())
            .field("generation", &*self.generation.borrow())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use spiffe_core::{MAX_HINT_LEN, Selector};
    use test_support::TestCa;

    use super::*;

    fn svid(ca: &TestCa, id: &str) -> X509Svid {
        let leaf = ca.leaf(id);
        X509Svid::from_der(&leaf.chain_der(), &leaf.key_der).unwrap()
    }

    fn sel(s: &str) -> Selector {
        s.parse().unwrap()
    }

    /// An entry for `id` under node `n1` of the same trust domain.
    fn entry(id: &str, selectors: &[&str]) -> RegistrationEntry {
        let id: SpiffeId = id.parse().unwrap();
        let node = SpiffeId::from_path(id.trust_domain(), "/node/n1").unwrap();
        RegistrationEntry::new(id, node, selectors.iter().map(|s| sel(s)).collect()).unwrap()
    }

    #[test]
    fn entries_follow_the_shared_entry_rule() {
        let ca = TestCa::new("example.org");
        let p = MemoryIdentityProvider::new();
        let a = || svid(&ca, "spiffe://example.org/a");
        assert_eq!(
            p.add_entry(entry("spiffe://example.org/a", &[]), a()),
            Err(ProviderError::InvalidEntry(EntryRuleError::NoSelectors))
        );
        let long = entry("spiffe://example.org/a", &["unix:uid:1"])
            .with_hint("h".repeat(MAX_HINT_LEN + 1));
        assert_eq!(
            p.add_entry(long, a()),
            Err(ProviderError::InvalidEntry(EntryRuleError::HintTooLong {
                len: MAX_HINT_LEN + 1
            }))
        );
        let mut zero = entry("spiffe://example.org/a", &["unix:uid:1"]);
        zero.x509_svid_ttl = Some(Duration::ZERO);
        assert_eq!(
            p.add_entry(zero, a()),
            Err(ProviderError::InvalidEntry(EntryRuleError::ZeroTtl {
                kind: "X509-SVID"
            }))
        );
        assert_eq!(
            p.identity(&[sel("unix:uid:1")].into_iter().collect())
                .svids
                .len(),
            0
        );
    }

    #[test]
    fn the_svid_must_carry_the_entrys_spiffe_id() {
        let ca = TestCa::new("example.org");
        let p = MemoryIdentityProvider::new();
        let err = p
            .add_entry(
                entry("spiffe://example.org/a", &["unix:uid:1"]),
                svid(&ca, "spiffe://example.org/b"),
            )
            .unwrap_err();
        assert!(matches!(err, ProviderError::WrongIdentity { .. }), "{err}");
    }

    #[test]
    fn entry_ids_are_unique() {
        let ca = TestCa::new("example.org");
        let p = MemoryIdentityProvider::new();
        let e = entry("spiffe://example.org/a", &["unix:uid:1"]);
        let id = p
            .add_entry(e.clone(), svid(&ca, "spiffe://example.org/a"))
            .unwrap();
        assert_eq!(id, e.id);
        assert_eq!(
            p.add_entry(e, svid(&ca, "spiffe://example.org/a")),
            Err(ProviderError::DuplicateEntry(id))
        );
    }

    #[test]
    fn rotation_must_keep_the_spiffe_id() {
        let ca = TestCa::new("example.org");
        let p = MemoryIdentityProvider::new();
        let id = p
            .add_entry(
                entry("spiffe://example.org/a", &["unix:uid:1"]),
                svid(&ca, "spiffe://example.org/a"),
            )
            .unwrap();
        assert!(matches!(
            p.rotate(&id, svid(&ca, "spiffe://example.org/b")),
            Err(ProviderError::WrongIdentity { .. })
        ));
        p.rotate(&id, svid(&ca, "spiffe://example.org/a")).unwrap();
        p.remove_entry(&id).unwrap();
        assert_eq!(
            p.remove_entry(&id),
            Err(ProviderError::UnknownEntry(id.clone()))
        );
        assert_eq!(
            p.rotate(&id, svid(&ca, "spiffe://example.org/a")),
            Err(ProviderError::UnknownEntry(id))
        );
    }

    #[test]
    fn an_entry_matches_only_callers_with_all_its_selectors() {
        let ca = TestCa::new("example.org");
        let p = MemoryIdentityProvider::new();
        let mut rx = p.subscribe();
        p.add_entry(
            entry("spiffe://example.org/a", &["unix:uid:1", "unix:gid:2"]),
            svid(&ca, "spiffe://example.org/a"),
        )
        .unwrap();
        assert!(rx.has_changed().unwrap());
        let partial: Selectors = [sel("unix:uid:1")].into_iter().collect();
        assert!(p.identity(&partial).is_empty());
        let full: Selectors = [sel("unix:uid:1"), sel("unix:gid:2"), sel("unix:user:x")]
            .into_iter()
            .collect();
        let got = p.identity(&full);
        assert_eq!(got.svids.len(), 1);
        // No bundle for the trust domain was set: none is handed out.
        assert!(got.bundles.is_empty());
        rx.borrow_and_update();
    }

    #[test]
    fn an_expired_entry_matches_nobody() {
        let ca = TestCa::new("example.org");
        let p = MemoryIdentityProvider::new();
        let mut e = entry("spiffe://example.org/a", &["unix:uid:1"]);
        e.expires_at = Some(SystemTime::now() - Duration::from_secs(1));
        p.add_entry(e, svid(&ca, "spiffe://example.org/a")).unwrap();
        let caller: Selectors = [sel("unix:uid:1")].into_iter().collect();
        assert!(p.identity(&caller).is_empty());
    }

    #[tokio::test]
    async fn minting_needs_a_signer_for_the_trust_domain() {
        let p = MemoryIdentityProvider::new();
        let id: SpiffeId = "spiffe://example.org/a".parse().unwrap();
        let err = p.mint_jwt_svid(&id, &["aud".into()]).await.unwrap_err();
        assert!(matches!(err, MintError::NoSigningKey { .. }), "{err}");
    }
}
