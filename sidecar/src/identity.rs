//! Where the sidecar's SVID and trust bundles come from.
//!
//! Two sources: anything that implements spiffe-core's [`SvidSource`] and
//! [`X509AuthoritySource`] (the Workload API's `X509Source` over the
//! agent's socket is the usual one), or three PEM files that are reloaded
//! when they change ([`FileIdentity`]), for users without an agent and for
//! the benchmark harness.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use spiffe_core::{
    BundleSet, MemoryBundleSource, MemorySvidSource, SvidSource, X509AuthoritySource, X509Bundle,
    X509Svid,
};
use tokio::sync::watch;

use crate::config::IdentityFiles;

/// The sidecar's identity: its current SVID and the bundles it trusts.
#[derive(Clone)]
pub struct Identity {
    /// The SVID presented in every handshake, read per handshake.
    pub svid: Arc<dyn SvidSource>,
    /// The bundles peers are verified against.
    pub bundles: Arc<dyn X509AuthoritySource>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field(
                "spiffe_id",
                &self.svid.x509_svid().map(|s| s.spiffe_id().to_string()),
            )
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// An identity from one value that is both sources (such as the
    /// Workload API's `X509Source`).
    pub fn from_source<S: SvidSource + X509AuthoritySource>(source: Arc<S>) -> Self {
        Identity {
            svid: source.clone(),
            bundles: source,
        }
    }

    /// Whether an SVID is held now.
    pub fn ready(&self) -> bool {
        self.svid.x509_svid().is_some()
    }
}

/// Why identity files could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The certificate chain and key do not form a valid X509-SVID.
    #[error("{path}: not a valid X509-SVID: {source}")]
    Svid {
        /// The certificate file.
        path: PathBuf,
        /// Why.
        source: spiffe_core::X509Error,
    },
    /// The bundle file holds no usable authority.
    #[error("{path}: not a valid X.509 bundle: {source}")]
    Bundle {
        /// The bundle file.
        path: PathBuf,
        /// Why.
        source: spiffe_core::X509Error,
    },
}

/// An identity read from PEM files and reloaded when they change.
///
/// The files are polled (their modification times and sizes) every
/// `interval`; a change that does not parse is logged and the previous
/// identity kept, so a half-written rotation never withdraws a working
/// SVID. Write new files by rename for atomic replacement.
#[derive(Debug)]
pub struct FileIdentity {
    files: IdentityFiles,
    svid: Arc<MemorySvidSource>,
    bundles: Arc<MemoryBundleSource>,
    stamp: std::sync::Mutex<Vec<Option<(SystemTime, u64)>>>,
}

impl FileIdentity {
    /// Loads the files once; fails if they are not a valid identity now.
    pub fn load(files: IdentityFiles) -> Result<Arc<Self>, IdentityError> {
        let (svid, bundles) = read_files(&files)?;
        let stamp = stamps(&files);
        Ok(Arc::new(FileIdentity {
            files,
            svid: Arc::new(MemorySvidSource::new(svid)),
            bundles: Arc::new(MemoryBundleSource::new(bundles)),
            stamp: std::sync::Mutex::new(stamp),
        }))
    }

    /// The identity to hand to the proxy.
    pub fn identity(&self) -> Identity {
        Identity {
            svid: self.svid.clone(),
            bundles: self.bundles.clone(),
        }
    }

    /// Re-reads the files if any of them changed. Returns whether a new
    /// identity was installed.
    pub fn reload_if_changed(&self) -> Result<bool, IdentityError> {
        let now = stamps(&self.files);
        {
            // Noted before reading: a change that does not load is
            // reported once, not on every poll until the files change.
            let mut seen = self.stamp.lock().unwrap_or_else(|e| e.into_inner());
            if *seen == now {
                return Ok(false);
            }
            *seen = now;
        }
        let (svid, bundles) = read_files(&self.files)?;
        self.svid.set(svid);
        self.bundles.set(bundles);
        Ok(true)
    }

    /// Polls the files every `interval` until `stop` changes.
    pub async fn watch(self: Arc<Self>, interval: Duration, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            match self.reload_if_changed() {
                Ok(true) => {
                    tracing::info!(cert = %self.files.cert.display(), "identity files reloaded")
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "identity files changed but do not load; keeping the previous identity")
                }
            }
        }
    }
}

fn stamps(files: &IdentityFiles) -> Vec<Option<(SystemTime, u64)>> {
    [&files.cert, &files.key, &files.bundle]
        .iter()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

fn read(path: &Path) -> Result<Vec<u8>, IdentityError> {
    std::fs::read(path).map_err(|source| IdentityError::Read {
        path: path.to_owned(),
        source,
    })
}

fn read_files(files: &IdentityFiles) -> Result<(X509Svid, BundleSet), IdentityError> {
    let cert = read(&files.cert)?;
    let key = read(&files.key)?;
    let bundle = read(&files.bundle)?;
    let svid = X509Svid::from_pem(&cert, &key).map_err(|source| IdentityError::Svid {
        path: files.cert.clone(),
        source,
    })?;
    let td = svid.spiffe_id().trust_domain().clone();
    let bundle = X509Bundle::from_pem(td, &bundle).map_err(|source| IdentityError::Bundle {
        path: files.bundle.clone(),
        source,
    })?;
    let mut set = BundleSet::new();
    set.insert_x509(bundle);
    Ok((svid, set))
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_support::TestCa;

    fn write(dir: &Path, ca: &TestCa, id: &str) {
        let leaf = ca.leaf(id);
        std::fs::write(dir.join("svid.pem"), leaf.chain_pem()).unwrap();
        std::fs::write(dir.join("svid.key"), leaf.key_pem()).unwrap();
        std::fs::write(
            dir.join("bundle.pem"),
            test_support::pem("CERTIFICATE", &ca.root_cert()),
        )
        .unwrap();
    }

    #[test]
    fn files_reload_when_they_change_and_a_bad_change_keeps_the_old_identity() {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("example.org");
        write(dir.path(), &ca, "spiffe://example.org/a");
        let files = IdentityFiles {
            cert: dir.path().join("svid.pem"),
            key: dir.path().join("svid.key"),
            bundle: dir.path().join("bundle.pem"),
        };
        let fi = FileIdentity::load(files).unwrap();
        let identity = fi.identity();
        let id = |i: &Identity| i.svid.x509_svid().unwrap().spiffe_id().to_string();
        assert_eq!(id(&identity), "spiffe://example.org/a");
        assert!(!fi.reload_if_changed().unwrap(), "nothing changed");
        write(dir.path(), &ca, "spiffe://example.org/bee");
        assert!(fi.reload_if_changed().unwrap());
        assert_eq!(
            id(&identity),
            "spiffe://example.org/bee",
            "the handed-out identity follows"
        );
        std::fs::write(dir.path().join("svid.key"), "garbage").unwrap();
        assert!(fi.reload_if_changed().is_err());
        assert_eq!(
            id(&identity),
            "spiffe://example.org/bee",
            "a bad change withdrew the SVID"
        );
        assert!(
            !fi.reload_if_changed().unwrap(),
            "the same bad state is reported once"
        );
    }

    #[test]
    fn missing_or_invalid_files_fail_to_load_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let files = IdentityFiles {
            cert: dir.path().join("none.pem"),
            key: dir.path().join("none.key"),
            bundle: dir.path().join("none.pem"),
        };
        let err = FileIdentity::load(files).unwrap_err().to_string();
        assert!(err.contains("none.pem"), "{err}");
    }
}
