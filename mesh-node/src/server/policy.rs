//! Policy distribution: the server reads Istio security YAML from a
//! directory, reloads it when it changes, keeps the last good set when a
//! change does not validate, and publishes each accepted set with a
//! version that agents receive on their sync stream.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::policy_feed::{PolicyBundle, PolicyFile};

/// How often the directory is looked at.
const POLL: Duration = Duration::from_millis(250);
/// A change must be still for this long before it is read, so an editor's
/// several writes become one reload.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// What `mesh-node policy status` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyStatus {
    /// The policy directory, if one is configured.
    pub dir: Option<String>,
    /// The version in force.
    pub version: u64,
    /// Its files.
    pub files: Vec<String>,
    /// Documents loaded: authorization, peer and request authentication.
    pub policies: [usize; 3],
    /// Unix seconds of the last accepted load.
    pub loaded_at: Option<u64>,
    /// Why the newest content of the directory was refused, if it was;
    /// the version in force is then the last good one.
    pub error: Option<String>,
}

/// The server's policies.
#[derive(Debug)]
pub struct PolicyStore {
    dir: Option<PathBuf>,
    current: watch::Sender<Arc<PolicyBundle>>,
    status: Mutex<PolicyStatus>,
    /// The directory as it was when it was first read, so a change made
    /// before [`PolicyStore::watch_dir`] starts is not missed.
    opened: Option<Fingerprint>,
}

/// Name, length and modification time of each policy file: what changes
/// when the directory changes.
type Fingerprint = Vec<(String, u64, Option<SystemTime>)>;

fn policy_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml" | "json")
                )
        })
        .collect();
    out.sort();
    Ok(out)
}

fn fingerprint(dir: &Path) -> std::io::Result<Fingerprint> {
    policy_files(dir)?
        .into_iter()
        .map(|p| {
            let m = std::fs::metadata(&p)?;
            Ok((
                p.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                m.len(),
                m.modified().ok(),
            ))
        })
        .collect()
}

impl PolicyStore {
    /// A store reading `dir` (none: an empty set, version 0, forever).
    /// The first load happens here; a directory that does not validate is
    /// an error at start.
    pub fn open(dir: Option<PathBuf>) -> Result<Self, String> {
        let opened = dir.as_deref().and_then(|d| fingerprint(d).ok());
        let store = PolicyStore {
            opened,
            dir: dir.clone(),
            current: watch::channel(Arc::new(PolicyBundle::default())).0,
            status: Mutex::new(PolicyStatus {
                dir: dir.as_ref().map(|d| d.display().to_string()),
                ..PolicyStatus::default()
            }),
        };
        if let Some(d) = &dir {
            let files = read(d)?;
            store.accept(files)?;
        }
        Ok(store)
    }

    /// The set in force.
    pub fn current(&self) -> Arc<PolicyBundle> {
        self.current.borrow().clone()
    }

    /// A receiver that sees every accepted set.
    pub fn subscribe(&self) -> watch::Receiver<Arc<PolicyBundle>> {
        self.current.subscribe()
    }

    /// The status for `policy status`.
    pub fn status(&self) -> PolicyStatus {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Validates `files` as a whole and, if they pass, publishes them as
    /// the next version.
    fn accept(&self, files: Vec<PolicyFile>) -> Result<u64, String> {
        let candidate = PolicyBundle {
            version: self.current.borrow().version + 1,
            files,
        };
        let parsed = candidate.parse().map_err(|e| e.to_string());
        let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        match parsed {
            Ok(set) => {
                let version = candidate.version;
                status.version = version;
                status.files = candidate.files.iter().map(|f| f.name.clone()).collect();
                status.policies = [
                    set.authorization.len(),
                    set.peer_authentication.len(),
                    set.request_authentication.len(),
                ];
                status.loaded_at = Some(crate::admin_api::unix(SystemTime::now()));
                status.error = None;
                for w in &set.warnings {
                    tracing::warn!(warning = %w, "policy warning");
                }
                self.current.send_replace(Arc::new(candidate));
                tracing::info!(version, "policies loaded");
                Ok(version)
            }
            Err(e) => {
                status.error = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Watches the directory forever: a change, once still for 100 ms, is
    /// read and validated; a valid set becomes the next version, an invalid
    /// one is reported (log, metric, status) and the last good set stays.
    pub(crate) async fn watch_dir(&self, on_error: impl Fn()) {
        let Some(dir) = self.dir.clone() else {
            return std::future::pending().await;
        };
        let mut seen = self.opened.clone();
        loop {
            tokio::time::sleep(POLL).await;
            let now = fingerprint(&dir).ok();
            if now == seen {
                continue;
            }
            // Wait until the directory holds still.
            let mut settled = now;
            loop {
                tokio::time::sleep(DEBOUNCE).await;
                let again = fingerprint(&dir).ok();
                if again == settled {
                    break;
                }
                settled = again;
            }
            seen = settled;
            let result = read(&dir).and_then(|files| self.accept(files));
            if let Err(error) = result {
                on_error();
                tracing::error!(%error, dir = %dir.display(), "policy change refused; the last good set stays in force");
                self.status
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .error = Some(error);
            }
        }
    }
}

fn read(dir: &Path) -> Result<Vec<PolicyFile>, String> {
    let files = policy_files(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    files
        .iter()
        .map(|p| {
            Ok(PolicyFile {
                name: p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                yaml: std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALLOW: &str = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: a\n  namespace: ns\nspec:\n  action: ALLOW\n  rules:\n  - {}\n";

    #[tokio::test]
    async fn a_changed_directory_is_reloaded_and_a_bad_change_keeps_the_last_good_set() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), ALLOW).unwrap();
        let store = Arc::new(PolicyStore::open(Some(dir.path().to_owned())).unwrap());
        assert_eq!(store.current().version, 1);
        assert_eq!(store.status().policies, [1, 0, 0]);
        let errors = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (s, e) = (store.clone(), errors.clone());
        let task = tokio::spawn(async move {
            s.watch_dir(|| {
                e.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            })
            .await
        });
        let mut rx = store.subscribe();
        std::fs::write(
            dir.path().join("b.yaml"),
            ALLOW.replace("name: a", "name: b"),
        )
        .unwrap();
        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(store.current().version, 2);
        assert_eq!(store.current().files.len(), 2);

        std::fs::write(
            dir.path().join("c.yaml"),
            "kind: AuthorizationPolicy\nspec: [nonsense\n",
        )
        .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while store.status().error.is_none() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the bad change was never reported"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(store.current().version, 2, "the last good set stays");
        assert!(store.status().error.unwrap().contains("c.yaml"));
        assert_eq!(errors.load(std::sync::atomic::Ordering::SeqCst), 1);

        std::fs::remove_file(dir.path().join("c.yaml")).unwrap();
        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(store.current().version, 3);
        assert!(store.status().error.is_none());
        task.abort();
    }

    #[test]
    fn an_invalid_directory_at_start_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("bad.yaml"),
            "kind: AuthorizationPolicy\nspec: 3\n",
        )
        .unwrap();
        let err = PolicyStore::open(Some(dir.path().to_owned())).unwrap_err();
        assert!(err.contains("bad.yaml"), "{err}");
        assert_eq!(PolicyStore::open(None).unwrap().current().version, 0);
    }
}
