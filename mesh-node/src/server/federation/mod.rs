//! The server's federation relationships: one [`Fetcher`] per federated
//! trust domain (from `mtls_tower::federation`), the last good bundle of
//! each, kept in the data directory and pushed to every agent.
//!
//! Files under `<data_dir>/federation/`, each written whole (temporary
//! file, fsync, rename, fsync of the directory):
//! - `relationships.json`: the relationships, as [`RelationshipSpec`]s;
//! - `bundles/<trust domain>.json`: the last good bundle of each, so a
//!   restarted server keeps trusting a partner whose endpoint is down.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use mtls_tower::federation::{Endpoint, Federation, Fetcher};
use rustls::crypto::CryptoProvider;
use spiffe_core::{BundleSet, BundleSource, MemoryBundleSource, SpiffeBundle, TrustDomain};
use tokio::sync::watch;

use super::metrics::ServerMetrics;
use crate::admin_api::{RelationshipSpec, RelationshipView};
use crate::config::RelationshipSettings;

mod spec;

const DIR: &str = "federation";
const RELATIONSHIPS: &str = "relationships.json";
const BUNDLES: &str = "bundles";

/// Why a relationship could not be created, changed or found.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelationshipError {
    /// The request cannot work (bad URL, missing endpoint ID, ...).
    #[error("{0}")]
    Invalid(String),
    /// No relationship with this trust domain.
    #[error("no federation relationship with {0}")]
    NotFound(TrustDomain),
    /// A relationship with this trust domain already exists.
    #[error("a federation relationship with {0} already exists")]
    Duplicate(TrustDomain),
    /// The data directory could not be written.
    #[error("{0}")]
    Persist(String),
}

fn invalid(msg: impl Into<String>) -> RelationshipError {
    RelationshipError::Invalid(msg.into())
}

/// One relationship: how it was configured and its running fetcher.
struct Relationship {
    spec: RelationshipSpec,
    fetcher: Fetcher,
    task: tokio::task::AbortHandle,
}

struct State {
    relationships: BTreeMap<TrustDomain, Relationship>,
    /// The last good bundle of each relationship: what agents are sent.
    current: Arc<BTreeMap<TrustDomain, SpiffeBundle>>,
}

/// The federation relationships of the server, their bundles, and a
/// generation that grows whenever the set of bundles sent to agents
/// changes.
pub struct FederationRegistry {
    own: TrustDomain,
    dir: PathBuf,
    federation: Federation,
    metrics: Arc<ServerMetrics>,
    state: Mutex<State>,
    changes: watch::Sender<u64>,
    /// Serializes writes to the data directory (they share temporary
    /// file names).
    writing: Mutex<()>,
}

impl std::fmt::Debug for FederationRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FederationRegistry")
            .field("own", &self.own)
            .field("relationships", &self.lock().relationships.keys())
            .finish_non_exhaustive()
    }
}

impl FederationRegistry {
    /// Loads the relationships and bundles kept in `data_dir`, creates the
    /// static ones absent from it, and starts every fetcher. Must run in a
    /// Tokio runtime.
    pub(crate) fn open(
        own: TrustDomain,
        data_dir: &Path,
        provider: Arc<CryptoProvider>,
        metrics: Arc<ServerMetrics>,
        static_relationships: &[RelationshipSettings],
    ) -> Result<Arc<Self>, RelationshipError> {
        let dir = data_dir.join(DIR);
        std::fs::create_dir_all(dir.join(BUNDLES))
            .map_err(|e| RelationshipError::Persist(format!("{}: {e}", dir.display())))?;
        let local = Arc::new(MemoryBundleSource::new(BundleSet::new()));
        let registry = Arc::new(FederationRegistry {
            own,
            dir,
            federation: Federation::new(provider, local),
            metrics,
            state: Mutex::new(State {
                relationships: BTreeMap::new(),
                current: Arc::default(),
            }),
            changes: watch::Sender::new(0),
            writing: Mutex::new(()),
        });
        let specs: Vec<RelationshipSpec> = match std::fs::read(registry.dir.join(RELATIONSHIPS)) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                RelationshipError::Persist(format!(
                    "{}: {e}",
                    registry.dir.join(RELATIONSHIPS).display()
                ))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(RelationshipError::Persist(e.to_string())),
        };
        let mut current = BTreeMap::new();
        for spec in &specs {
            let td = spec::parse_td(&spec.trust_domain)?;
            let path = registry.bundle_path(&td);
            if let Ok(b) = std::fs::read(&path) {
                match SpiffeBundle::parse(td.clone(), &b) {
                    Ok(bundle) => {
                        current.insert(td, bundle);
                    }
                    Err(error) => {
                        tracing::warn!(path = %path.display(), %error, "ignoring unreadable federated bundle")
                    }
                }
            }
        }
        registry.lock().current = Arc::new(current);
        for spec in specs {
            let td = spec::parse_td(&spec.trust_domain)?;
            registry.start(td, spec)?;
        }
        for s in static_relationships {
            let td = spec::parse_td(&s.trust_domain)?;
            if registry.lock().relationships.contains_key(&td) {
                continue;
            }
            let spec = spec::spec_from_settings(s)?;
            registry.start(td, spec)?;
        }
        registry.persist_relationships()?;
        registry.sync();
        Ok(registry)
    }

    /// The last good bundle of every relationship.
    pub fn current(&self) -> Arc<BTreeMap<TrustDomain, SpiffeBundle>> {
        self.lock().current.clone()
    }

    /// Sees every change of [`FederationRegistry::current`].
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Follows the fetchers: every accepted bundle that differs from the
    /// held one replaces it, is written to the data directory and bumps
    /// the generation. Runs until dropped.
    pub(crate) async fn run(&self) {
        let bundles = self.federation.bundles();
        let mut rx = bundles.subscribe();
        while rx.changed().await.is_ok() {
            self.sync();
        }
    }

    /// Stops every fetcher (the server is stopping).
    pub(crate) fn stop(&self) {
        for r in self.lock().relationships.values() {
            r.task.abort();
        }
    }

    /// Every relationship, by trust domain.
    pub(crate) fn list(&self) -> Vec<RelationshipView> {
        let state = self.lock();
        state
            .relationships
            .iter()
            .map(|(td, r)| spec::view(&r.spec, &r.fetcher.status(), state.current.get(td)))
            .collect()
    }

    /// One relationship.
    pub(crate) fn show(&self, td: &TrustDomain) -> Result<RelationshipView, RelationshipError> {
        let state = self.lock();
        let r = state
            .relationships
            .get(td)
            .ok_or_else(|| RelationshipError::NotFound(td.clone()))?;
        Ok(spec::view(
            &r.spec,
            &r.fetcher.status(),
            state.current.get(td),
        ))
    }

    /// Creates a relationship and starts its fetcher.
    pub(crate) fn create(
        &self,
        spec: RelationshipSpec,
    ) -> Result<RelationshipView, RelationshipError> {
        let td = spec::parse_td(&spec.trust_domain)?;
        if self.lock().relationships.contains_key(&td) {
            return Err(RelationshipError::Duplicate(td));
        }
        self.start(td.clone(), spec)?;
        self.persist_relationships()?;
        self.sync();
        self.show(&td)
    }

    /// Changes a relationship: fields absent from `patch` keep their
    /// value. The held bundle stays (it authenticates the next fetch of a
    /// self-serving `https_spiffe` endpoint unless a new bundle is given).
    pub(crate) fn update(
        &self,
        td: &TrustDomain,
        patch: RelationshipSpec,
    ) -> Result<RelationshipView, RelationshipError> {
        let old = self
            .lock()
            .relationships
            .get(td)
            .map(|r| r.spec.clone())
            .ok_or_else(|| RelationshipError::NotFound(td.clone()))?;
        // A new profile takes none of the old profile's fields.
        let same_profile = patch.profile.is_none() || patch.profile == old.profile;
        let keep = |new: Option<String>, old: Option<String>| match same_profile {
            true => new.or(old),
            false => new,
        };
        let spec = RelationshipSpec {
            trust_domain: old.trust_domain.clone(),
            url: patch.url.or(old.url),
            profile: patch.profile.or(old.profile),
            endpoint_spiffe_id: keep(patch.endpoint_spiffe_id, old.endpoint_spiffe_id),
            bundle: keep(patch.bundle.clone(), old.bundle),
            web_roots: keep(patch.web_roots, old.web_roots),
            poll_floor: patch.poll_floor.or(old.poll_floor),
        };
        // Check the new spec before touching the running relationship.
        let held = if patch.bundle.is_some() {
            None
        } else {
            self.lock().current.get(td).cloned()
        };
        let endpoint = spec::endpoint(&self.own, td, &spec, held)?;
        if let Some(r) = self.lock().relationships.remove(td) {
            r.task.abort();
        }
        self.federation.remove(td);
        self.spawn(td.clone(), spec, endpoint)?;
        self.persist_relationships()?;
        self.sync();
        self.show(td)
    }

    /// Ends a relationship: its fetcher stops and its bundle is removed
    /// from the data directory and from every agent (FED-10).
    pub(crate) fn delete(&self, td: &TrustDomain) -> Result<RelationshipView, RelationshipError> {
        let shown = self.show(td)?;
        {
            let mut state = self.lock();
            if let Some(r) = state.relationships.remove(td) {
                r.task.abort();
            }
            let mut current = BTreeMap::clone(&state.current);
            current.remove(td);
            state.current = Arc::new(current);
        }
        self.federation.remove(td);
        {
            let _writing = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
            let _ = std::fs::remove_file(self.bundle_path(td));
        }
        self.persist_relationships()?;
        self.changes.send_modify(|g| *g += 1);
        tracing::info!(trust_domain = %td, "federation relationship deleted");
        Ok(shown)
    }

    /// Fetches `td`'s bundle now; the relationship's view afterwards
    /// (a failure shows in it).
    pub(crate) async fn refresh(
        &self,
        td: &TrustDomain,
    ) -> Result<RelationshipView, RelationshipError> {
        let fetcher = self
            .lock()
            .relationships
            .get(td)
            .map(|r| r.fetcher.clone())
            .ok_or_else(|| RelationshipError::NotFound(td.clone()))?;
        let _ = fetcher.fetch().await;
        self.sync();
        self.show(td)
    }

    /// Starts a relationship from its spec, using the held bundle (if any)
    /// as the initial one of a self-serving endpoint.
    fn start(&self, td: TrustDomain, spec: RelationshipSpec) -> Result<(), RelationshipError> {
        let held = self.lock().current.get(&td).cloned();
        let endpoint = spec::endpoint(&self.own, &td, &spec, held)?;
        self.spawn(td, spec, endpoint)
    }

    fn spawn(
        &self,
        td: TrustDomain,
        spec: RelationshipSpec,
        endpoint: Endpoint,
    ) -> Result<(), RelationshipError> {
        let fetcher = self
            .federation
            .trust(td.clone(), endpoint)
            .map_err(|e| invalid(e.to_string()))?;
        let metrics = self.metrics.clone();
        let counted = fetcher.subscribe();
        let runner = fetcher.clone();
        let task = tokio::spawn(async move {
            tokio::select! {
                () = runner.run() => {}
                () = spec::count_fetches(counted, metrics) => {}
            }
        })
        .abort_handle();
        self.lock().relationships.insert(
            td,
            Relationship {
                spec,
                fetcher,
                task,
            },
        );
        Ok(())
    }

    /// Takes every newly accepted bundle into `current`.
    fn sync(&self) {
        let bundles = self.federation.bundles();
        let mut changed = Vec::new();
        {
            let mut state = self.lock();
            let mut current = BTreeMap::clone(&state.current);
            for td in state.relationships.keys() {
                if let Some(b) = bundles.federated(td)
                    && current.get(td) != Some(&b)
                {
                    current.insert(td.clone(), b.clone());
                    changed.push(b);
                }
            }
            if changed.is_empty() {
                return;
            }
            state.current = Arc::new(current);
        }
        let _writing = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        for b in &changed {
            let path = self.bundle_path(b.trust_domain());
            if let Err(error) = crate::fsutil::write_atomic(&path, &b.to_json()) {
                tracing::warn!(path = %path.display(), %error, "cannot keep the federated bundle");
            }
            tracing::info!(
                trust_domain = %b.trust_domain(),
                sequence = ?b.sequence(),
                "federated bundle changed; pushing to agents"
            );
        }
        self.changes.send_modify(|g| *g += 1);
    }

    fn persist_relationships(&self) -> Result<(), RelationshipError> {
        let specs: Vec<RelationshipSpec> = self
            .lock()
            .relationships
            .values()
            .map(|r| r.spec.clone())
            .collect();
        let json = serde_json::to_vec_pretty(&specs).unwrap_or_default();
        let _writing = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        crate::fsutil::write_atomic(&self.dir.join(RELATIONSHIPS), &json)
            .map_err(|e| RelationshipError::Persist(e.to_string()))
    }

    fn bundle_path(&self, td: &TrustDomain) -> PathBuf {
        self.dir.join(BUNDLES).join(format!("{td}.json"))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
