//! [`FederatedBundles`]: the local bundles plus one bundle per federation
//! relationship, as one source the TLS configs read per handshake.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use arc_swap::ArcSwap;
use spiffe_core::{BundleSet, BundleSource, SpiffeBundle, TrustDomain, X509AuthoritySource};
use tokio::sync::watch;

/// The merged set, and the local generation it was built from.
struct Merged {
    local_generation: u64,
    federated_generation: u64,
    set: Arc<BundleSet>,
}

/// The bundles a workload trusts: those of a local source (its own trust
/// domain, from the Workload API or a file) and one per federation
/// relationship, each stored under the trust domain it was configured for
/// (BUN-2, FED-5) and never merged with another's (FED-6).
///
/// A peer is always verified against the bundle of its own trust domain
/// (FED-12): a bundle fetched for `partner.org` can only ever authenticate
/// `partner.org` IDs, whatever certificates it carries. Where the local
/// source also holds a bundle for a federated trust domain, the local one
/// wins (FED-9 lets operators override a foreign bundle locally).
///
/// [`BundleSource::bundle_set`] is always current. [`BundleSource::generation`]
/// is the sum of the local source's generation and the number of federated
/// changes, so it grows on either; [`BundleSource::subscribe`] sees federated
/// changes, and local ones while [`FederatedBundles::forward_local`] runs.
#[derive(Clone)]
pub struct FederatedBundles {
    inner: Arc<Inner>,
}

struct Inner {
    local: Arc<dyn BundleSource>,
    federated: Mutex<HashMap<TrustDomain, SpiffeBundle>>,
    merged: ArcSwap<Merged>,
    changes: watch::Sender<u64>,
    federated_generation: AtomicU64,
}

impl FederatedBundles {
    /// A set holding the local source's bundles and no federated ones yet.
    pub fn new(local: impl X509AuthoritySource) -> Self {
        let local: Arc<dyn BundleSource> = Arc::new(local);
        let merged = Merged {
            local_generation: local.generation(),
            federated_generation: 0,
            set: local.bundle_set(),
        };
        let generation = merged.local_generation;
        FederatedBundles {
            inner: Arc::new(Inner {
                local,
                federated: Mutex::new(HashMap::new()),
                merged: ArcSwap::from_pointee(merged),
                changes: watch::Sender::new(generation),
                federated_generation: AtomicU64::new(0),
            }),
        }
    }

    /// The federated bundle of `td` (not the local override, if any).
    pub fn federated(&self, td: &TrustDomain) -> Option<SpiffeBundle> {
        self.lock().get(td).cloned()
    }

    /// The trust domains that have a federated bundle, sorted.
    pub fn federated_trust_domains(&self) -> Vec<TrustDomain> {
        let mut tds: Vec<_> = self.lock().keys().cloned().collect();
        tds.sort();
        tds
    }

    /// Stores the federated bundle of its trust domain, replacing the
    /// previous one.
    pub(crate) fn store(&self, bundle: SpiffeBundle) {
        let mut map = self.lock();
        map.insert(bundle.trust_domain().clone(), bundle);
        self.changed(&map);
    }

    /// Removes the federated bundle of `td` (FED-10): verifiers stop
    /// trusting it at their next handshake.
    pub(crate) fn remove(&self, td: &TrustDomain) -> Option<SpiffeBundle> {
        let mut map = self.lock();
        let old = map.remove(td);
        if old.is_some() {
            self.changed(&map);
        }
        old
    }

    /// Publishes local source changes on [`BundleSource::subscribe`] until
    /// the local source is dropped. Needed only by code that waits for
    /// changes; verification reads the current set without it.
    pub async fn forward_local(&self) {
        let mut local = self.inner.local.subscribe();
        while local.changed().await.is_ok() {
            let g = self.generation();
            self.inner.changes.send_replace(g);
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<TrustDomain, SpiffeBundle>> {
        self.inner
            .federated
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Rebuilds the merged set under the map's lock, so two concurrent
    /// changes cannot publish out of order.
    fn changed(&self, map: &HashMap<TrustDomain, SpiffeBundle>) {
        let fed = self
            .inner
            .federated_generation
            .fetch_add(1, Ordering::SeqCst)
            + 1;
        let merged = merge(&*self.inner.local, map, fed);
        let generation = merged.local_generation + fed;
        self.inner.merged.store(Arc::new(merged));
        self.inner.changes.send_replace(generation);
    }
}

fn merge(
    local: &dyn BundleSource,
    federated: &HashMap<TrustDomain, SpiffeBundle>,
    federated_generation: u64,
) -> Merged {
    let local_generation = local.generation();
    let local_set = local.bundle_set();
    let mut set = BundleSet::clone(&local_set);
    for (td, bundle) in federated {
        if set.get(td).is_none() {
            set.insert(bundle.clone());
        }
    }
    Merged {
        local_generation,
        federated_generation,
        set: Arc::new(set),
    }
}

impl BundleSource for FederatedBundles {
    fn bundle_set(&self) -> Arc<BundleSet> {
        let merged = self.inner.merged.load();
        if merged.local_generation == self.inner.local.generation() {
            return merged.set.clone();
        }
        // The local source changed since the last merge: merge again under
        // the lock (a federated change may be publishing at the same time).
        let map = self.lock();
        let current = self.inner.merged.load();
        let next = merge(&*self.inner.local, &map, current.federated_generation);
        let set = next.set.clone();
        self.inner.merged.store(Arc::new(next));
        set
    }

    fn generation(&self) -> u64 {
        self.inner.local.generation() + self.inner.federated_generation.load(Ordering::SeqCst)
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }
}

impl X509AuthoritySource for FederatedBundles {}

impl fmt::Debug for FederatedBundles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FederatedBundles")
            .field("federated", &self.federated_trust_domains())
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use spiffe_core::MemoryBundleSource;

    use super::*;

    fn td(s: &str) -> TrustDomain {
        s.parse().unwrap()
    }

    #[test]
    fn federated_bundles_are_keyed_and_local_wins() {
        let local = Arc::new(MemoryBundleSource::new(BundleSet::new()));
        local.insert(SpiffeBundle::empty(td("a.org")).with_sequence(1));
        let set = FederatedBundles::new(local.clone());
        let g0 = set.generation();
        set.store(SpiffeBundle::empty(td("b.org")).with_sequence(5));
        set.store(SpiffeBundle::empty(td("a.org")).with_sequence(9));
        assert!(set.generation() > g0);
        let s = set.bundle_set();
        assert_eq!(s.get(&td("b.org")).unwrap().sequence(), Some(5));
        assert_eq!(s.get(&td("a.org")).unwrap().sequence(), Some(1));
        local.remove(&td("a.org"));
        // The local change is seen without any task running.
        assert_eq!(
            set.bundle_set().get(&td("a.org")).unwrap().sequence(),
            Some(9)
        );
        set.remove(&td("b.org"));
        assert!(set.bundle_set().get(&td("b.org")).is_none());
    }
}
