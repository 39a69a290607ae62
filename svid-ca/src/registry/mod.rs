//! The [`Registry`] of registration entries, indexed by parent and selector.

mod entry;

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use spiffe_core::{SpiffeId, TrustDomain};

pub use entry::{EntryError, RESERVED_PATH_PREFIXES, is_reserved};
use spiffe_core::{EntryId, RegistrationEntry, Selector, Selectors};

use crate::EntryStore;

/// The registration entries of a trust domain.
///
/// Each entry is indexed once, under its parent and the selector of its
/// that had the fewest entries when it was added. A lookup visits only the
/// buckets of the caller's own selectors and checks each candidate's full
/// selector set, so it stays fast with 100k entries as long as entries
/// have at least one selective selector.
#[derive(Debug)]
pub struct Registry {
    trust_domain: TrustDomain,
    max_ttl: Duration,
    store: Option<Arc<dyn EntryStore>>,
    index: RwLock<Index>,
}

#[derive(Debug, Default)]
struct Index {
    entries: HashMap<EntryId, Arc<RegistrationEntry>>,
    buckets: HashMap<SpiffeId, HashMap<Selector, Vec<EntryId>>>,
    placed: HashMap<EntryId, Selector>,
}

impl Index {
    fn insert(&mut self, entry: Arc<RegistrationEntry>) {
        let parent = self.buckets.entry(entry.parent_id.clone()).or_default();
        let key = entry
            .selectors
            .iter()
            .min_by_key(|s| parent.get(*s).map_or(0, Vec::len))
            .cloned();
        if let Some(key) = key {
            parent
                .entry(key.clone())
                .or_default()
                .push(entry.id.clone());
            self.placed.insert(entry.id.clone(), key);
        }
        self.entries.insert(entry.id.clone(), entry);
    }

    fn remove(&mut self, id: &EntryId) -> Option<Arc<RegistrationEntry>> {
        let entry = self.entries.remove(id)?;
        if let Some(key) = self.placed.remove(id)
            && let Some(parent) = self.buckets.get_mut(&entry.parent_id)
            && let Some(bucket) = parent.get_mut(&key)
        {
            bucket.retain(|e| e != id);
            if bucket.is_empty() {
                parent.remove(&key);
            }
        }
        Some(entry)
    }
}

impl Registry {
    /// An empty registry for `trust_domain` whose entries may ask for SVID
    /// TTLs up to `max_ttl` (use [`crate::CaConfig::max_svid_ttl`]).
    pub fn new(trust_domain: TrustDomain, max_ttl: Duration) -> Self {
        Registry {
            trust_domain,
            max_ttl,
            store: None,
            index: RwLock::new(Index::default()),
        }
    }

    /// A registry backed by `store`, loaded with the entries it holds.
    pub fn with_store(
        trust_domain: TrustDomain,
        max_ttl: Duration,
        store: Arc<dyn EntryStore>,
    ) -> Result<Self, EntryError> {
        let mut index = Index::default();
        for e in store.list_entries()? {
            index.insert(Arc::new(e));
        }
        Ok(Registry {
            trust_domain,
            max_ttl,
            store: Some(store),
            index: RwLock::new(index),
        })
    }

    /// Validates and adds `entry` (written to the store first, if any).
    pub fn create(&self, entry: RegistrationEntry) -> Result<Arc<RegistrationEntry>, EntryError> {
        entry::validate(&entry, &self.trust_domain, self.max_ttl)?;
        let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
        if index.entries.contains_key(&entry.id) {
            return Err(EntryError::Duplicate { id: entry.id });
        }
        if let Some(store) = &self.store {
            store.create_entry(&entry)?;
        }
        let entry = Arc::new(entry);
        index.insert(entry.clone());
        Ok(entry)
    }

    /// Deletes an entry.
    pub fn delete(&self, id: &EntryId) -> Result<Arc<RegistrationEntry>, EntryError> {
        let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
        if !index.entries.contains_key(id) {
            return Err(EntryError::NotFound { id: id.clone() });
        }
        if let Some(store) = &self.store {
            store.delete_entry(id)?;
        }
        index
            .remove(id)
            .ok_or_else(|| EntryError::NotFound { id: id.clone() })
    }

    /// Replaces the entry with `entry.id` by `entry` (validated like a new
    /// one, written to the store first, if any); returns the old entry.
    pub fn update(&self, entry: RegistrationEntry) -> Result<Arc<RegistrationEntry>, EntryError> {
        entry::validate(&entry, &self.trust_domain, self.max_ttl)?;
        let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
        if !index.entries.contains_key(&entry.id) {
            return Err(EntryError::NotFound { id: entry.id });
        }
        if let Some(store) = &self.store {
            store.update_entry(&entry)?;
        }
        let old = index
            .remove(&entry.id)
            .ok_or_else(|| EntryError::NotFound {
                id: entry.id.clone(),
            })?;
        index.insert(Arc::new(entry));
        Ok(old)
    }

    /// Every entry, in no particular order.
    pub fn list(&self) -> Vec<Arc<RegistrationEntry>> {
        let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
        index.entries.values().cloned().collect()
    }

    /// The unexpired entries whose parent is `parent`, whatever their
    /// selectors: what a node's agent must know to serve its workloads.
    pub fn children(&self, parent: &SpiffeId, now: SystemTime) -> Vec<Arc<RegistrationEntry>> {
        let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
        let Some(buckets) = index.buckets.get(parent) else {
            return Vec::new();
        };
        buckets
            .values()
            .flatten()
            .filter_map(|id| index.entries.get(id))
            .filter(|e| !e.is_expired(now))
            .cloned()
            .collect()
    }

    /// The entry with `id`.
    pub fn get(&self, id: &EntryId) -> Option<Arc<RegistrationEntry>> {
        let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
        index.entries.get(id).cloned()
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .entries
            .len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The unexpired entries under `parent` all of whose selectors are
    /// among `selectors` ([`Selectors::satisfies`]).
    pub fn matching(
        &self,
        parent: &SpiffeId,
        selectors: &Selectors,
        now: SystemTime,
    ) -> Vec<Arc<RegistrationEntry>> {
        let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
        let Some(buckets) = index.buckets.get(parent) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for s in selectors {
            for id in buckets.get(s).into_iter().flatten() {
                if let Some(e) = index.entries.get(id)
                    && !e.is_expired(now)
                    && selectors.satisfies(&e.selectors)
                {
                    out.push(e.clone());
                }
            }
        }
        out
    }

    /// The SPIFFE ID that node alias entries use as their parent.
    pub fn server_id(&self) -> SpiffeId {
        // "/server" is a fixed, valid path.
        SpiffeId::from_path(&self.trust_domain, "/server")
            .unwrap_or_else(|_| self.trust_domain.to_spiffe_id())
    }

    /// The entries a workload on `node` (attested with `node_selectors`)
    /// with `workload_selectors` is entitled to: entries parented by the
    /// node itself or by any node alias (an entry parented by
    /// [`Registry::server_id`] whose selectors the node has).
    pub fn entries_for_workload(
        &self,
        node: &SpiffeId,
        node_selectors: &Selectors,
        workload_selectors: &Selectors,
        now: SystemTime,
    ) -> Vec<Arc<RegistrationEntry>> {
        let mut parents = vec![node.clone()];
        parents.extend(
            self.matching(&self.server_id(), node_selectors, now)
                .into_iter()
                .map(|alias| alias.spiffe_id.clone()),
        );
        parents.dedup();
        let mut out: Vec<Arc<RegistrationEntry>> = Vec::new();
        for p in &parents {
            for e in self.matching(p, workload_selectors, now) {
                if !out.iter().any(|o| o.id == e.id) {
                    out.push(e);
                }
            }
        }
        out
    }
}
