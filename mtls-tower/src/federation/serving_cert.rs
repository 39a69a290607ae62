//! The `https_web` serving certificate: a chain and key read from PEM
//! files, reloaded when the files change.
//!
//! This rustls `ResolvesServerCert` lives here rather than in the crate's
//! `rustls_impls` module so the feature stays in its own files.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::error::{FederationError, ServingFileProblem};

/// What identifies one version of a file: its modification time and size.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let m = fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

struct Loaded {
    stamps: (Stamp, Stamp),
    key: Arc<CertifiedKey>,
}

/// Presents the chain and key of two PEM files. At each handshake it
/// compares the files' modification time and size with those it loaded
/// (two `stat` calls) and reloads on a change; a reload that fails (a
/// half-written file, a key that does not match) keeps the previous
/// certificate and is retried at the next handshake.
pub(crate) struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    loaded: Mutex<Loaded>,
}

impl ReloadingCert {
    /// Loads the files; they must be usable now.
    pub(crate) fn new(
        cert_path: PathBuf,
        key_path: PathBuf,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, FederationError> {
        let stamps = (stamp(&cert_path), stamp(&key_path));
        let key = load(&cert_path, &key_path, &provider)?;
        Ok(ReloadingCert {
            cert_path,
            key_path,
            provider,
            loaded: Mutex::new(Loaded {
                stamps,
                key: Arc::new(key),
            }),
        })
    }

    fn current(&self) -> Arc<CertifiedKey> {
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        let stamps = (stamp(&self.cert_path), stamp(&self.key_path));
        if stamps != loaded.stamps {
            match load(&self.cert_path, &self.key_path, &self.provider) {
                Ok(key) => {
                    tracing::info!(cert = %self.cert_path.display(), "reloaded bundle endpoint serving certificate");
                    loaded.key = Arc::new(key);
                    loaded.stamps = stamps;
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot reload bundle endpoint serving certificate; keeping the previous one");
                }
            }
        }
        loaded.key.clone()
    }
}

fn load(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, FederationError> {
    let problem = |path: &Path, reason| FederationError::ServingFile {
        path: path.to_owned(),
        reason,
    };
    let pem = fs::read(cert_path).map_err(|e| problem(cert_path, e.into()))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|_| problem(cert_path, ServingFileProblem::NoCertificate))?;
    if chain.is_empty() {
        return Err(problem(cert_path, ServingFileProblem::NoCertificate));
    }
    let pem = fs::read(key_path).map_err(|e| problem(key_path, e.into()))?;
    let key = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|_| problem(key_path, ServingFileProblem::NoKey))?;
    let signer = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| problem(key_path, ServingFileProblem::Key(e)))?;
    let key = CertifiedKey::new(chain, signer);
    key.keys_match()
        .map_err(|e| problem(key_path, ServingFileProblem::Key(e)))?;
    Ok(key)
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}
