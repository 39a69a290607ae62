//! The policies the sidecar enforces, swapped whole on every update.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use authz::{Engine, MeshConfig, PolicySet, Workload};
use tokio::sync::watch;

use crate::config::WorkloadConfig;

/// The compiled policies for this sidecar's workload, and a generation
/// that grows with every update.
///
/// Requests read the engine per request, so an update applies to the next
/// request; open TCP connections are re-checked by the inbound side when
/// the generation changes (see [`Policies::subscribe`]).
#[derive(Debug)]
pub struct Policies {
    engine: Arc<Engine>,
    generation: watch::Sender<u64>,
    version: std::sync::Mutex<String>,
}

impl Policies {
    /// Compiles `set` for the workload described by `workload`.
    pub fn new(workload: &WorkloadConfig, set: &PolicySet) -> Self {
        let mut wl = Workload::new(workload.namespace.clone());
        for (k, v) in &workload.labels {
            wl = wl.label(k.clone(), v.clone());
        }
        let mut mesh = MeshConfig::default();
        if let Some(td) = &workload.trust_domain {
            mesh = mesh.with_trust_domain(td.clone());
        }
        Policies {
            engine: Arc::new(Engine::new(wl, mesh, set)),
            generation: watch::Sender::new(0),
            version: std::sync::Mutex::new(String::from("initial")),
        }
    }

    /// The engine; its decisions always use the newest set.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Replaces every policy at once. `version` names the set (the
    /// server's revision, or a file stamp) for `/config_dump`.
    pub fn update(&self, set: &PolicySet, version: impl Into<String>) {
        self.engine.reload(set);
        *self.version.lock().unwrap_or_else(|e| e.into_inner()) = version.into();
        self.generation.send_modify(|g| *g += 1);
    }

    /// The name of the set in force.
    pub fn version(&self) -> String {
        self.version
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sees every update.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }
}

/// Policies read from YAML files in a directory, reloaded when they
/// change; a set that does not load is logged and the previous one kept.
#[derive(Debug)]
pub struct PolicyDir {
    dir: PathBuf,
    seen: std::sync::Mutex<Option<Listing>>,
}

/// Each policy file with its modification time and size.
type Listing = Vec<(PathBuf, Option<SystemTime>, u64)>;

impl PolicyDir {
    /// A directory to read `*.yaml` and `*.yml` files from.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        PolicyDir {
            dir: dir.into(),
            seen: std::sync::Mutex::new(None),
        }
    }

    fn listing(&self) -> std::io::Result<Listing> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let yaml = matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            );
            if yaml {
                let meta = std::fs::metadata(&path)?;
                files.push((path, meta.modified().ok(), meta.len()));
            }
        }
        files.sort();
        Ok(files)
    }

    /// Loads the set now if the directory changed since the last call
    /// (always on the first call). `Ok(None)`: nothing changed. A change
    /// that does not load is reported once, not again until the files
    /// change once more.
    pub fn load_if_changed(&self) -> Result<Option<PolicySet>, String> {
        let listing = self
            .listing()
            .map_err(|e| format!("{}: {e}", self.dir.display()))?;
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if seen.as_ref() == Some(&listing) {
                return Ok(None);
            }
            *seen = Some(listing.clone());
        }
        if listing.is_empty() {
            return Ok(Some(PolicySet::default()));
        }
        let paths: Vec<&PathBuf> = listing.iter().map(|(p, _, _)| p).collect();
        PolicySet::load(&paths).map(Some).map_err(|e| e.to_string())
    }

    /// Applies changes to `policies` every `interval` until `stop` changes.
    pub async fn watch(
        self,
        policies: Arc<Policies>,
        interval: Duration,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reloads = 0u64;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            match self.load_if_changed() {
                Ok(Some(set)) => {
                    reloads += 1;
                    policies.update(&set, format!("files-{reloads}"));
                    tracing::info!(dir = %self.dir.display(), "policies reloaded");
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "policy files do not load; keeping the previous set")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DENY_ALL: &str = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny, namespace: default}\nspec: {}\n";

    #[test]
    fn a_directory_reloads_on_change_and_keeps_the_last_good_set() {
        let dir = tempfile::tempdir().unwrap();
        let pd = PolicyDir::new(dir.path());
        let first = pd.load_if_changed().unwrap().expect("first call loads");
        assert!(first.authorization.is_empty());
        assert!(pd.load_if_changed().unwrap().is_none(), "nothing changed");
        std::fs::write(dir.path().join("deny.yaml"), DENY_ALL).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a policy").unwrap();
        let set = pd.load_if_changed().unwrap().expect("a new file loads");
        assert_eq!(set.authorization.len(), 1);
        std::fs::write(dir.path().join("broken.yaml"), "kind: [").unwrap();
        assert!(pd.load_if_changed().is_err(), "a broken file is reported");
        assert!(
            pd.load_if_changed().unwrap().is_none(),
            "the same broken state is reported once"
        );
    }

    #[test]
    fn an_update_bumps_the_generation_and_names_the_version() {
        let workload = WorkloadConfig::default();
        let policies = Policies::new(&workload, &PolicySet::default());
        let rx = policies.subscribe();
        let set = PolicySet::from_yaml_str("deny.yaml", DENY_ALL).unwrap();
        assert!(
            policies
                .engine()
                .check(&authz::Request::http("GET", "/"))
                .allowed
        );
        policies.update(&set, "v7");
        assert!(
            !policies
                .engine()
                .check(&authz::Request::http("GET", "/"))
                .allowed
        );
        assert_eq!(*rx.borrow(), 1);
        assert_eq!(policies.version(), "v7");
    }
}
