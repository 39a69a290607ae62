//! [`AgentCache`]: the entries the server synced, the SVIDs signed for
//! them and the bundles; the [`IdentityProvider`] the Workload API server
//! asks.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use spiffe_core::{BundleSet, EntryId, SpiffeBundle, SpiffeId, X509Svid};
use svid_ca::RegistrationEntry;
use tokio::sync::watch;
use workload_api::{
    IdentityProvider, IssuedSvid, MintError, MintFuture, Selectors, WorkloadIdentity,
};

use crate::node_api::NodeApi;
use crate::policy_feed::PolicyBundle;

/// A cached SVID and when it is due for renewal.
pub(crate) type CachedSvid = (Arc<X509Svid>, SystemTime);

#[derive(Debug, Default)]
struct State {
    entries: HashMap<EntryId, Arc<RegistrationEntry>>,
    svids: HashMap<EntryId, CachedSvid>,
    bundle: Option<SpiffeBundle>,
    federated: HashMap<spiffe_core::TrustDomain, SpiffeBundle>,
}

/// What the agent holds for its workloads.
pub struct AgentCache {
    state: RwLock<State>,
    generation: watch::Sender<u64>,
    node: Arc<dyn NodeApi>,
    policies: watch::Sender<Arc<PolicyBundle>>,
}

impl std::fmt::Debug for AgentCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.state.read().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("AgentCache")
            .field("entries", &s.entries.len())
            .field("svids", &s.svids.len())
            .finish_non_exhaustive()
    }
}

impl AgentCache {
    /// An empty cache that mints JWT-SVIDs through `node`.
    pub fn new(node: Arc<dyn NodeApi>) -> Self {
        AgentCache {
            state: RwLock::default(),
            generation: watch::channel(0).0,
            node,
            policies: watch::channel(Arc::new(PolicyBundle::default())).0,
        }
    }

    /// The policy set the server distributes, and its changes.
    pub fn policies(&self) -> watch::Receiver<Arc<PolicyBundle>> {
        self.policies.subscribe()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn bump(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    /// Applies one sync message: replaces everything on a full one,
    /// otherwise adds, changes and removes. SVIDs of removed entries are
    /// dropped, and so are those of changed entries that name another
    /// identity; a changed entry that names the same identity keeps
    /// serving its SVID until the new one is signed (it is due at once),
    /// so open streams see a rotation, never a gap.
    pub(crate) fn apply(&self, update: crate::node_api::SyncUpdate) {
        let mut s = self.write();
        if update.full {
            let keep: HashMap<_, _> = update.entries.iter().map(|e| (e.id.clone(), e)).collect();
            s.svids.retain(|id, _| keep.contains_key(id));
            let old = std::mem::take(&mut s.entries);
            for (id, e) in &old {
                if let Some(n) = keep.get(id) {
                    changed(&mut s.svids, e, n);
                }
            }
        }
        for e in update.entries {
            if let Some(old) = s.entries.get(&e.id).cloned() {
                changed(&mut s.svids, &old, &e);
            }
            s.entries.insert(e.id.clone(), Arc::new(e));
        }
        for id in &update.removed {
            s.entries.remove(id);
            s.svids.remove(id);
        }
        if let Some(b) = update.bundle {
            s.bundle = Some(b);
        }
        if let Some(p) = update.policy {
            self.policies.send_replace(Arc::new(p));
        }
        if let Some(all) = update.federated {
            s.federated = all
                .into_iter()
                .map(|b| (b.trust_domain().clone(), b))
                .collect();
        }
        drop(s);
        self.bump();
    }

    /// Withdraws every entry and SVID (the node was refused); the bundle
    /// stays.
    pub(crate) fn withdraw_all(&self) {
        let mut s = self.write();
        s.entries.clear();
        s.svids.clear();
        drop(s);
        self.bump();
    }

    /// Sets the trust domain's bundle (from disk, before the first sync).
    pub(crate) fn set_bundle(&self, bundle: SpiffeBundle) {
        self.write().bundle = Some(bundle);
        self.bump();
    }

    /// The trust domain's bundle.
    pub fn bundle(&self) -> Option<SpiffeBundle> {
        self.read().bundle.clone()
    }

    /// Stores signed SVIDs.
    pub(crate) fn put_svids(&self, svids: Vec<(EntryId, X509Svid)>) {
        if svids.is_empty() {
            return;
        }
        let mut s = self.write();
        for (id, svid) in svids {
            // An entry removed while its CSR was out gets no SVID.
            if s.entries
                .get(&id)
                .is_some_and(|e| &e.spiffe_id == svid.spiffe_id())
            {
                let due = super::renew_at(svid.not_after(), SystemTime::now(), id.as_str());
                s.svids.insert(id, (Arc::new(svid), due));
            }
        }
        drop(s);
        self.bump();
    }

    /// The entries, each with its current SVID and renewal time, if any.
    pub(crate) fn entries(&self) -> Vec<(Arc<RegistrationEntry>, Option<CachedSvid>)> {
        let s = self.read();
        s.entries
            .iter()
            .map(|(id, e)| (e.clone(), s.svids.get(id).cloned()))
            .collect()
    }

    /// How many SVIDs are cached.
    pub fn svid_count(&self) -> usize {
        self.read().svids.len()
    }

    /// How many entries are known.
    pub fn entry_count(&self) -> usize {
        self.read().entries.len()
    }
}

/// `old` became `new`: its SVID is re-signed at once, and withdrawn now if
/// it names another identity.
fn changed(
    svids: &mut HashMap<EntryId, CachedSvid>,
    old: &RegistrationEntry,
    new: &RegistrationEntry,
) {
    if old == new {
        return;
    }
    if old.spiffe_id == new.spiffe_id {
        if let Some((_, due)) = svids.get_mut(&new.id) {
            *due = SystemTime::UNIX_EPOCH;
        }
    } else {
        svids.remove(&new.id);
    }
}

impl IdentityProvider for AgentCache {
    fn identity(&self, selectors: &Selectors) -> WorkloadIdentity {
        let s = self.read();
        let mut matched: Vec<(&Arc<RegistrationEntry>, &Arc<X509Svid>)> = s
            .entries
            .iter()
            .filter(|(_, e)| selectors.satisfies(&e.selectors))
            .filter_map(|(id, e)| s.svids.get(id).map(|(svid, _)| (e, svid)))
            .collect();
        // A stable order: the first is the default identity (WL-10).
        matched.sort_by(|a, b| (&a.0.spiffe_id, &a.0.id).cmp(&(&b.0.spiffe_id, &b.0.id)));
        let mut bundles = BundleSet::new();
        if let Some(b) = &s.bundle {
            bundles.insert(b.clone());
        }
        for (e, _) in &matched {
            for td in &e.federates_with {
                if let Some(b) = s.federated.get(td) {
                    bundles.insert(b.clone());
                }
            }
        }
        WorkloadIdentity {
            svids: matched
                .iter()
                .map(|(e, svid)| IssuedSvid {
                    svid: (*svid).clone(),
                    hint: e.hint.clone(),
                })
                .collect(),
            bundles: Arc::new(bundles),
        }
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    fn mint_jwt_svid(&self, subject: &SpiffeId, audience: &[String]) -> MintFuture {
        let entry = self
            .read()
            .entries
            .values()
            .find(|e| &e.spiffe_id == subject)
            .map(|e| e.id.clone());
        let node = self.node.clone();
        let audience = audience.to_vec();
        Box::pin(async move {
            let id = entry.ok_or(MintError::Unavailable)?;
            node.mint_jwt_svid(id, audience).await.map_err(|error| {
                tracing::warn!(%error, "minting a JWT-SVID failed");
                MintError::Unavailable
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use futures_util::future::BoxFuture;
    use spiffe_core::{PrivateKey, Selector};

    use super::*;
    use crate::node_api::{Attested, NodeApiError, SignOutcome, SyncStream, SyncUpdate};

    struct NoServer;

    fn unavailable<T: Send + 'static>() -> BoxFuture<'static, Result<T, NodeApiError>> {
        Box::pin(async { Err(NodeApiError::Unavailable("no server in this test".into())) })
    }

    impl NodeApi for NoServer {
        fn attest(
            &self,
            _: &str,
            _: Vec<u8>,
            _: Vec<u8>,
        ) -> BoxFuture<'static, Result<Attested, NodeApiError>> {
            unavailable()
        }
        fn renew_node(
            &self,
            _: Vec<u8>,
        ) -> BoxFuture<'static, Result<Vec<rustls_pki_types::CertificateDer<'static>>, NodeApiError>>
        {
            unavailable()
        }
        fn sync(&self) -> BoxFuture<'static, Result<SyncStream, NodeApiError>> {
            unavailable()
        }
        fn sign_workloads(
            &self,
            _: Vec<(EntryId, Vec<u8>)>,
        ) -> BoxFuture<'static, Result<Vec<(EntryId, SignOutcome)>, NodeApiError>> {
            unavailable()
        }
        fn mint_jwt_svid(
            &self,
            _: EntryId,
            _: Vec<String>,
        ) -> BoxFuture<'static, Result<String, NodeApiError>> {
            unavailable()
        }
    }

    fn update(full: bool, entries: Vec<RegistrationEntry>) -> SyncUpdate {
        SyncUpdate {
            revision: 1,
            full,
            entries,
            removed: Vec::new(),
            bundle: None,
            federated: None,
            policy: None,
            sent_at: None,
        }
    }

    fn id(s: &str) -> SpiffeId {
        s.parse().unwrap()
    }

    #[test]
    fn a_changed_entry_keeps_its_svid_until_re_signed_unless_its_identity_changed() {
        let ca = test_support::TestCa::new("example.org");
        let svid_for = |path: &str| {
            let leaf = ca.leaf(&format!("spiffe://example.org/{path}"));
            X509Svid::new(
                leaf.chain,
                PrivateKey::from_pkcs8_der(&leaf.key_der).unwrap(),
            )
            .unwrap()
        };
        let svid = svid_for("web");
        let uid = Selector::new("unix", "uid:0").unwrap();
        let caller: workload_api::Selectors = [uid.clone()].into_iter().collect();
        let entry = RegistrationEntry::new(
            id("spiffe://example.org/web"),
            id("spiffe://example.org/node"),
            vec![uid],
        )
        .unwrap();
        let cache = AgentCache::new(Arc::new(NoServer));
        cache.apply(update(true, vec![entry.clone()]));
        cache.put_svids(vec![(entry.id.clone(), svid)]);
        let due = |cache: &AgentCache| cache.entries()[0].1.as_ref().map(|(_, due)| *due);
        assert!(due(&cache).unwrap() > SystemTime::now());

        // A new hint: the SVID stays, with the new hint, and is due now.
        for full in [false, true] {
            let hint = format!("new-{full}");
            cache.apply(update(full, vec![entry.clone().with_hint(hint.clone())]));
            let got = cache.identity(&caller);
            assert_eq!(got.svids.len(), 1, "full: {full}");
            assert_eq!(got.svids[0].hint.as_deref(), Some(hint.as_str()));
            assert!(due(&cache).unwrap() <= SystemTime::now(), "full: {full}");
        }

        // Another identity: the old SVID is withdrawn at once.
        let mut other = entry.clone();
        other.spiffe_id = id("spiffe://example.org/other");
        cache.apply(update(false, vec![other]));
        assert!(cache.identity(&caller).svids.is_empty());
        assert_eq!(due(&cache), None);

        // A refused node's workloads lose everything.
        cache.put_svids(vec![(entry.id.clone(), svid_for("other"))]);
        assert_eq!(cache.svid_count(), 1);
        cache.withdraw_all();
        assert_eq!((cache.entry_count(), cache.svid_count()), (0, 0));
        assert!(cache.identity(&caller).svids.is_empty());
    }
}
