//! The agent's state on disk: its node SVID, key and last bundle, each
//! written whole (temporary file, fsync, rename, fsync of the directory),
//! so a crash leaves the old file or the new one, never half of either.

use std::path::{Path, PathBuf};

use spiffe_core::{SpiffeBundle, TrustDomain, X509Svid};

const CHAIN: &str = "node-svid.pem";
const KEY: &str = "node-svid.key";
const BUNDLE: &str = "bundle.json";

/// Why the agent's state could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PersistError {
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file does not hold what it should.
    #[error("{path}: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> PersistError + 'a {
    move |source| PersistError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// Writes `bytes` to `dir/name` atomically with mode 0600
/// ([`crate::fsutil::write_atomic`]: temporary file, fsync, rename, fsync
/// of the directory).
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), PersistError> {
    let path = dir.join(name);
    crate::fsutil::write_atomic(&path, bytes).map_err(io("write atomically", &path))
}

/// The node SVID and bundle a previous run left, if any.
pub(crate) fn load(
    dir: &Path,
    td: &TrustDomain,
) -> Result<Option<(X509Svid, SpiffeBundle)>, PersistError> {
    let (chain_path, key_path, bundle_path) = (dir.join(CHAIN), dir.join(KEY), dir.join(BUNDLE));
    if !chain_path.exists() {
        return Ok(None);
    }
    let chain = std::fs::read(&chain_path).map_err(io("read", &chain_path))?;
    let key = zeroize::Zeroizing::new(std::fs::read(&key_path).map_err(io("read", &key_path))?);
    let svid = X509Svid::from_pem(&chain, &key).map_err(|e| PersistError::Corrupt {
        path: chain_path.clone(),
        message: e.to_string(),
    })?;
    let json = std::fs::read(&bundle_path).map_err(io("read", &bundle_path))?;
    let bundle = SpiffeBundle::parse(td.clone(), &json).map_err(|e| PersistError::Corrupt {
        path: bundle_path,
        message: e.to_string(),
    })?;
    Ok(Some((svid, bundle)))
}

/// Saves the node SVID (key first, so a chain on disk always has its key).
pub(crate) fn save_svid(dir: &Path, svid: &X509Svid) -> Result<(), PersistError> {
    write_atomic(
        dir,
        KEY,
        crate::pem::private_key(svid.private_key().pkcs8_der()).as_bytes(),
    )?;
    let chain: String = svid
        .chain()
        .iter()
        .map(|c| crate::pem::certificate(c))
        .collect();
    write_atomic(dir, CHAIN, chain.as_bytes())
}

/// Saves the trust domain's bundle.
pub(crate) fn save_bundle(dir: &Path, bundle: &SpiffeBundle) -> Result<(), PersistError> {
    write_atomic(dir, BUNDLE, &bundle.to_json())
}

/// Forgets the node SVID (after eviction).
pub(crate) fn forget_svid(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(CHAIN));
    let _ = std::fs::remove_file(dir.join(KEY));
}
