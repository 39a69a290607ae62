//! Loading SVIDs and bundles from files, once, at construction.

use std::path::{Path, PathBuf};

use crate::{BundleError, SpiffeBundle, TrustDomain, X509Bundle, X509Error, X509Svid};

/// Why material could not be loaded from a file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file's certificates or key are not a valid SVID or bundle.
    #[error("{path}: {source}")]
    X509 {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        #[source]
        source: X509Error,
    },
    /// The file is not a valid SPIFFE bundle document.
    #[error("{path}: {source}")]
    Bundle {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        #[source]
        source: BundleError,
    },
}

fn read(path: &Path) -> Result<Vec<u8>, FileError> {
    std::fs::read(path).map_err(|source| FileError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Loads an X509-SVID from a PEM chain file (leaf first) and a PEM PKCS#8
/// key file.
pub fn svid_from_pem_files(chain: &Path, key: &Path) -> Result<X509Svid, FileError> {
    let chain_pem = read(chain)?;
    let key_pem = zeroize::Zeroizing::new(read(key)?);
    X509Svid::from_pem(&chain_pem, &key_pem).map_err(|source| FileError::X509 {
        path: chain.to_owned(),
        source,
    })
}

/// Loads a trust domain's bundle from a file holding either a SPIFFE bundle
/// document (JSON) or PEM certificates (X.509 authorities only).
pub fn bundle_from_file(td: TrustDomain, path: &Path) -> Result<SpiffeBundle, FileError> {
    let bytes = read(path)?;
    if bytes.trim_ascii_start().starts_with(b"{") {
        return SpiffeBundle::parse(td, &bytes).map_err(|source| FileError::Bundle {
            path: path.to_owned(),
            source,
        });
    }
    let x509 = X509Bundle::from_pem(td.clone(), &bytes).map_err(|source| FileError::X509 {
        path: path.to_owned(),
        source,
    })?;
    Ok(SpiffeBundle::from_x509(x509))
}
