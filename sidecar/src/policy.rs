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
    seen: std::sync::Mutex<Vec<(PathBuf, Option<SystemTime>, u64)>>,
}

impl PolicyDir {
    /// A directory to read `*.yaml` and `*.yml` files from.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        PolicyDir {
            dir: dir.into(),
            seen: std::sync::Mutex::new(Vec::new()),
        }
    }

    fn listing(&self) -> std::io::Result<Vec<(PathBuf, Option<SystemTime>, u64)>> {
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
    /// (always on the first call). `Ok(None)`: nothing changed.
    pub fn load_if_changed(&self) -> Result<Option<PolicySet>, String> {
        let listing = self
            .listing()
            .map_err(|e| format!("{}: {e}", self.dir.display()))?;
        if *self.seen.lock().unwrap_or_else(|e| e.into_inner()) == listing && !listing.is_empty() {
            return Ok(None);
        }
        let paths: Vec<&PathBuf> = listing.iter().map(|(p, _, _)| p).collect();
        let set = PolicySet::load(&paths).map_err(|e| e.to_string())?;
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = listing;
        Ok(Some(set))
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
