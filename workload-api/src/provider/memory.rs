//! [`MemoryIdentityProvider`]: registration entries and bundles held in
//! memory, fed by the owner.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use serde_json::Map;
use spiffe_core::jwt::{JwtClaims, JwtSigner};
use spiffe_core::{BundleSet, JwtError, PrivateKey, SpiffeId, TrustDomain, X509Svid};
use tokio::sync::watch;

use super::{IdentityProvider, IssuedSvid, MAX_HINT_LEN, MintError, MintFuture, WorkloadIdentity};
use crate::{Selector, Selectors};

/// Why the provider refused a change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// An entry must name at least one selector.
    #[error("a registration entry needs at least one selector")]
    NoSelectors,
    /// The hint is longer than [`MAX_HINT_LEN`] bytes.
    #[error("hint is {len} bytes, more than {MAX_HINT_LEN}")]
    HintTooLong {
        /// Its length.
        len: usize,
    },
    /// No entry has this id.
    #[error("no registration entry {0:?}")]
    UnknownEntry(EntryId),
    /// A replacement SVID names another SPIFFE ID than the entry.
    #[error("replacement SVID is for {found}, the entry is for {expected}")]
    WrongIdentity {
        /// The entry's SPIFFE ID.
        expected: SpiffeId,
        /// The replacement's SPIFFE ID.
        found: SpiffeId,
    },
}

/// Identifies an entry of a [`MemoryIdentityProvider`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EntryId(u64);

/// Who gets an SVID: the selectors a caller must all have, the SVID, an
/// optional hint and the federated trust domains the caller may trust.
#[derive(Debug, Clone)]
pub struct RegistrationEntry {
    selectors: Vec<Selector>,
    svid: Arc<X509Svid>,
    hint: Option<String>,
    federates_with: Vec<TrustDomain>,
}

impl RegistrationEntry {
    /// An entry granting `svid` to callers that have every one of `selectors`.
    pub fn new(selectors: impl IntoIterator<Item = Selector>, svid: X509Svid) -> Self {
        RegistrationEntry {
            selectors: selectors.into_iter().collect(),
            svid: Arc::new(svid),
            hint: None,
            federates_with: Vec::new(),
        }
    }

    /// Sets the hint (WL-9).
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Lets the caller also trust `td`'s bundle.
    pub fn federates_with(mut self, td: TrustDomain) -> Self {
        self.federates_with.push(td);
        self
    }
}

/// A loaded JWT-SVID signing key and the `kid` it is published under.
struct KidSigner {
    signer: JwtSigner,
    kid: String,
}

#[derive(Default)]
struct State {
    next_id: u64,
    entries: Vec<(EntryId, RegistrationEntry)>,
    bundles: BundleSet,
    signers: HashMap<TrustDomain, KidSigner>,
}

/// An [`IdentityProvider`] whose registration entries, bundles and JWT
/// signing keys live in memory and are changed by its owner: the node
/// agent feeds it what the control plane issues; tests feed it directly.
///
/// An entry matches a caller when the caller has all of the entry's
/// selectors. Entries keep insertion order, so the first matching entry is
/// the caller's default identity (WL-10).
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

    /// Adds an entry (after the existing ones) and returns its id.
    pub fn add_entry(&self, entry: RegistrationEntry) -> Result<EntryId, ProviderError> {
        if entry.selectors.is_empty() {
            return Err(ProviderError::NoSelectors);
        }
        if let Some(len) = entry
            .hint
            .as_ref()
            .map(String::len)
            .filter(|l| *l > MAX_HINT_LEN)
        {
            return Err(ProviderError::HintTooLong { len });
        }
        self.change(|s| {
            s.next_id += 1;
            let id = EntryId(s.next_id);
            s.entries.push((id, entry));
            Ok(id)
        })
    }

    /// Replaces an entry's SVID (rotation). The new SVID must carry the
    /// same SPIFFE ID.
    pub fn rotate(&self, id: EntryId, svid: X509Svid) -> Result<(), ProviderError> {
        self.change(|s| {
            let (_, entry) = s
                .entries
                .iter_mut()
                .find(|(e, _)| *e == id)
                .ok_or(ProviderError::UnknownEntry(id))?;
            if entry.svid.spiffe_id() != svid.spiffe_id() {
                return Err(ProviderError::WrongIdentity {
                    expected: entry.svid.spiffe_id().clone(),
                    found: svid.spiffe_id().clone(),
                });
            }
            entry.svid = Arc::new(svid);
            Ok(())
        })
    }

    /// Removes an entry: its callers lose that identity.
    pub fn remove_entry(&self, id: EntryId) -> Result<(), ProviderError> {
        self.change(|s| {
            let before = s.entries.len();
            s.entries.retain(|(e, _)| *e != id);
            if s.entries.len() == before {
                return Err(ProviderError::UnknownEntry(id));
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

impl IdentityProvider for MemoryIdentityProvider {
    fn identity(&self, selectors: &Selectors) -> WorkloadIdentity {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        let mut svids = Vec::new();
        let mut bundles = BundleSet::new();
        for (_, entry) in &state.entries {
            if !selectors.satisfies(&entry.selectors) {
                continue;
            }
            let own = entry.svid.spiffe_id().trust_domain();
            for td in std::iter::once(own).chain(&entry.federates_with) {
                if let Some(b) = state.bundles.get(td) {
                    bundles.insert(b.clone());
                }
            }
            svids.push(IssuedSvid {
                svid: Arc::clone(&entry.svid),
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
    use test_support::TestCa;

    use super::*;

    fn svid(ca: &TestCa, id: &str) -> X509Svid {
        let leaf = ca.leaf(id);
        X509Svid::from_der(&leaf.chain_der(), &leaf.key_der).unwrap()
    }

    fn sel(s: &str) -> Selector {
        s.parse().unwrap()
    }

    #[test]
    fn entries_need_selectors_and_short_hints() {
        let ca = TestCa::new("example.org");
        let p = MemoryIdentityProvider::new();
        let none: [Selector; 0] = [];
        assert_eq!(
            p.add_entry(RegistrationEntry::new(
                none,
                svid(&ca, "spiffe://example.org/a")
            )),
            Err(ProviderError::NoSelectors)
        );
        let long = "h".repeat(MAX_HINT_LEN + 1);
        assert_eq!(
            p.add_entry(
                RegistrationEntry::new([sel("unix:uid:1")], svid(&ca, "spiffe://example.org/a"))
                    .with_hint(long)
            ),
            Err(ProviderError::HintTooLong {
                len: MAX_HINT_LEN + 1
            })
        );
    }

    #[test]
    fn rotation_must_keep_the_spiffe_id() {
        let ca = TestCa::new("example.org");
        let p = MemoryIdentityProvider::new();
        let id = p
            .add_entry(RegistrationEntry::new(
                [sel("unix:uid:1")],
                svid(&ca, "spiffe://example.org/a"),
            ))
            .unwrap();
        assert!(matches!(
            p.rotate(id, svid(&ca, "spiffe://example.org/b")),
            Err(ProviderError::WrongIdentity { .. })
        ));
        p.remove_entry(id).unwrap();
        assert_eq!(p.remove_entry(id), Err(ProviderError::UnknownEntry(id)));
        assert_eq!(
            p.rotate(id, svid(&ca, "spiffe://example.org/a")),
            Err(ProviderError::UnknownEntry(id))
        );
    }

    #[test]
    fn an_entry_matches_only_callers_with_all_its_selectors() {
        let ca = TestCa::new("example.org");
        let p = MemoryIdentityProvider::new();
        let mut rx = p.subscribe();
        p.add_entry(RegistrationEntry::new(
            [sel("unix:uid:1"), sel("unix:gid:2")],
            svid(&ca, "spiffe://example.org/a"),
        ))
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

    #[tokio::test]
    async fn minting_needs_a_signer_for_the_trust_domain() {
        let p = MemoryIdentityProvider::new();
        let id: SpiffeId = "spiffe://example.org/a".parse().unwrap();
        let err = p.mint_jwt_svid(&id, &["aud".into()]).await.unwrap_err();
        assert!(matches!(err, MintError::NoSigningKey { .. }), "{err}");
    }
}
