//! [`UpstreamCa`]: an existing CA, loaded from PEM files, that signs our CA
//! certificates so the authority runs as an intermediate.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rcgen::Issuer;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use x509_parser::prelude::{FromDer, X509Certificate};
use zeroize::Zeroizing;

use crate::keys::{KeyError, SecretKeyPair, SigningKey};

/// An upstream CA: its signing certificate (with any intermediates up to,
/// but not including, the root), its private key, and the root(s) that go
/// into our trust bundle.
#[derive(Clone)]
pub struct UpstreamCa {
    inner: Arc<Inner>,
}

struct Inner {
    issuer: Issuer<'static, SecretKeyPair>,
    chain: Vec<CertificateDer<'static>>,
    roots: Vec<CertificateDer<'static>>,
    not_after: SystemTime,
}

impl std::fmt::Debug for UpstreamCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamCa")
            .field("chain_len", &self.inner.chain.len())
            .field("roots", &self.inner.roots.len())
            .field("not_after", &self.inner.not_after)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Why an upstream CA could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A PEM input holds no usable block of the expected kind.
    #[error("{what}: no valid PEM `{label}` block")]
    Pem {
        /// Which input (`certificate`, `key`, `bundle`).
        what: &'static str,
        /// The expected PEM label.
        label: &'static str,
    },
    /// A certificate does not parse.
    #[error("{what} certificate {index} is malformed")]
    Malformed {
        /// Which input.
        what: &'static str,
        /// Position in the input.
        index: usize,
    },
    /// The signing certificate is not a CA (cA=true and keyCertSign).
    #[error("the upstream certificate is not a CA certificate (needs cA=true and keyCertSign)")]
    NotACa,
    /// The key cannot be used.
    #[error("upstream key: {0}")]
    Key(#[from] KeyError),
    /// The private key does not belong to the signing certificate.
    #[error("the upstream private key does not match the upstream certificate")]
    KeyMismatch,
}

impl UpstreamCa {
    /// Loads the signing certificate chain, its PKCS#8 key and the root
    /// bundle from PEM files.
    pub fn from_pem_files(
        cert_chain: &Path,
        key: &Path,
        bundle: &Path,
    ) -> Result<Self, UpstreamError> {
        // Every file is read into a buffer zeroized on drop (the key file
        // is the one that matters; treating all alike keeps it simple).
        let read = |path: &Path| {
            std::fs::read(path)
                .map(Zeroizing::new)
                .map_err(|source| UpstreamError::Io {
                    path: path.to_owned(),
                    source,
                })
        };
        Self::from_pem(&read(cert_chain)?, &read(key)?, &read(bundle)?)
    }

    /// Like [`UpstreamCa::from_pem_files`], from PEM bytes.
    pub fn from_pem(cert_chain: &[u8], key: &[u8], bundle: &[u8]) -> Result<Self, UpstreamError> {
        let chain = certs(cert_chain, "certificate")?;
        let roots = certs(bundle, "bundle")?;
        let key = PrivatePkcs8KeyDer::from_pem_slice(key)
            .map(Zeroizing::new)
            .map_err(|_| UpstreamError::Pem {
                what: "key",
                label: "PRIVATE KEY",
            })?;
        let key = SigningKey::from_pkcs8(key.secret_pkcs8_der())?;
        let signing = chain.first().ok_or(UpstreamError::Pem {
            what: "certificate",
            label: "CERTIFICATE",
        })?;
        let (_, parsed) =
            X509Certificate::from_der(signing).map_err(|_| UpstreamError::Malformed {
                what: "certificate",
                index: 0,
            })?;
        let is_ca = parsed.is_ca()
            && parsed
                .key_usage()
                .ok()
                .flatten()
                .is_some_and(|ku| ku.value.key_cert_sign());
        if !is_ca {
            return Err(UpstreamError::NotACa);
        }
        if *parsed.public_key().subject_public_key.data != *key.pair.public_key_raw() {
            return Err(UpstreamError::KeyMismatch);
        }
        let not_after = SystemTime::from(parsed.validity().not_after.to_datetime());
        let issuer =
            Issuer::from_ca_cert_der(signing, key.pair).map_err(|_| UpstreamError::Malformed {
                what: "certificate",
                index: 0,
            })?;
        Ok(UpstreamCa {
            inner: Arc::new(Inner {
                issuer,
                chain,
                roots,
                not_after,
            }),
        })
    }

    /// The upstream signing certificate's notAfter: no CA certificate we
    /// issue outlives it.
    pub fn not_after(&self) -> SystemTime {
        self.inner.not_after
    }

    /// The roots published in our trust bundle.
    pub fn roots(&self) -> &[CertificateDer<'static>] {
        &self.inner.roots
    }

    /// The upstream chain (signing certificate first) appended to SVIDs.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.inner.chain
    }

    pub(crate) fn issuer(&self) -> &Issuer<'static, SecretKeyPair> {
        &self.inner.issuer
    }
}

fn certs(pem: &[u8], what: &'static str) -> Result<Vec<CertificateDer<'static>>, UpstreamError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| UpstreamError::Pem {
            what,
            label: "CERTIFICATE",
        })?;
    if certs.is_empty() {
        return Err(UpstreamError::Pem {
            what,
            label: "CERTIFICATE",
        });
    }
    for (index, der) in certs.iter().enumerate() {
        X509Certificate::from_der(der).map_err(|_| UpstreamError::Malformed { what, index })?;
    }
    Ok(certs)
}
