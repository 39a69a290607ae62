//! In-memory sources that the owner updates.

use std::fmt;
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::sync::watch;

use super::{BundleSource, SvidSource};
use crate::{BundleSet, SpiffeBundle, TrustDomain, X509Svid};

/// An [`SvidSource`] holding a value its owner sets.
///
/// ```
/// use spiffe_core::{MemorySvidSource, SvidSource};
/// let source = MemorySvidSource::empty();
/// assert!(source.x509_svid().is_none());
/// assert_eq!(source.generation(), 0);
/// ```
pub struct MemorySvidSource {
    current: ArcSwapOption<X509Svid>,
    generation: watch::Sender<u64>,
}

impl MemorySvidSource {
    /// A source holding `svid`, at generation 1.
    pub fn new(svid: X509Svid) -> Self {
        let s = Self::empty();
        s.set(svid);
        s
    }

    /// A source with no SVID yet, at generation 0.
    pub fn empty() -> Self {
        MemorySvidSource {
            current: ArcSwapOption::empty(),
            generation: watch::Sender::new(0),
        }
    }

    /// Replaces the SVID. Readers see the old or the new one, never a mix.
    pub fn set(&self, svid: X509Svid) {
        self.current.store(Some(Arc::new(svid)));
        self.generation.send_modify(|g| *g += 1);
    }

    /// Withdraws the SVID: readers get `None` from now on.
    pub fn withdraw(&self) {
        self.current.store(None);
        self.generation.send_modify(|g| *g += 1);
    }
}

impl SvidSource for MemorySvidSource {
    fn x509_svid(&self) -> Option<Arc<X509Svid>> {
        self.current.load_full()
    }
    fn generation(&self) -> u64 {
        *self.generation.borrow()
    }
    fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }
}

impl fmt::Debug for MemorySvidSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let current = self.current.load();
        f.debug_struct("MemorySvidSource")
            .field(
                "spiffe_id",
                &current.as_ref().map(|s| s.spiffe_id().clone()),
            )
            .field("generation", &self.generation())
            .finish()
    }
}

/// A [`BundleSource`] holding a [`BundleSet`] its owner updates.
pub struct MemoryBundleSource {
    current: ArcSwap<BundleSet>,
    generation: watch::Sender<u64>,
}

impl MemoryBundleSource {
    /// A source holding `set`, at generation 1.
    pub fn new(set: BundleSet) -> Self {
        MemoryBundleSource {
            current: ArcSwap::from_pointee(set),
            generation: watch::Sender::new(1),
        }
    }

    /// Replaces the whole set.
    pub fn set(&self, set: BundleSet) {
        self.current.store(Arc::new(set));
        self.generation.send_modify(|g| *g += 1);
    }

    /// Adds or replaces one trust domain's bundle.
    pub fn insert(&self, bundle: SpiffeBundle) {
        self.update(|set| {
            set.insert(bundle);
        });
    }

    /// Removes one trust domain's bundle.
    pub fn remove(&self, td: &TrustDomain) {
        self.update(|set| {
            set.remove(td);
        });
    }

    fn update(&self, f: impl FnOnce(&mut BundleSet)) {
        let mut next = BundleSet::clone(&self.current.load());
        f(&mut next);
        self.set(next);
    }
}

impl super::X509BundleSource for MemoryBundleSource {}

impl BundleSource for MemoryBundleSource {
    fn bundle_set(&self) -> Arc<BundleSet> {
        self.current.load_full()
    }
    fn generation(&self) -> u64 {
        *self.generation.borrow()
    }
    fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }
}

impl fmt::Debug for MemoryBundleSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = self.current.load();
        let mut tds: Vec<_> = set.iter().map(|b| b.trust_domain().clone()).collect();
        tds.sort();
        f.debug_struct("MemoryBundleSource")
            .field("trust_domains", &tds)
            .field("generation", &self.generation())
            .finish()
    }
}
