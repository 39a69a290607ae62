//! [`X509Svid`]: a workload's own X.509 identity (chain + private key).

use std::time::SystemTime;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};

use super::{PrivateKey, X509Error, cert, der, rules};
use crate::SpiffeId;

/// An X509-SVID: a certificate chain (leaf first) and the leaf's private key.
///
/// Construction validates the leaf against X509-1, X509-3 and X509-7, every
/// further certificate against X509-4, and that the key matches the leaf.
/// Validity dates are not checked here (an expired SVID is still an SVID);
/// verification against a bundle checks them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct X509Svid {
    id: SpiffeId,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKey,
    not_after: SystemTime,
}

impl X509Svid {
    /// Builds an SVID from a chain (leaf first) and a PKCS#8 DER key.
    pub fn new(chain: Vec<CertificateDer<'static>>, key: PrivateKey) -> Result<Self, X509Error> {
        let leaf_der = chain.first().ok_or(X509Error::EmptyChain)?;
        let leaf = cert::parse(leaf_der, 0)?;
        let id = rules::leaf_id(&leaf)?;
        rules::check_leaf(&leaf, &id)?;
        for (index, der) in chain.iter().enumerate().skip(1) {
            rules::check_signing(&cert::parse(der, index)?, index)?;
        }
        if leaf.public_key != key.public_key_bytes()?.as_slice() {
            return Err(X509Error::KeyMismatch);
        }
        let not_after = leaf.not_after;
        Ok(X509Svid {
            id,
            chain,
            key,
            not_after,
        })
    }

    /// Parses the Workload API form: concatenated DER certificates and a
    /// PKCS#8 DER key.
    pub fn from_der(chain: &[u8], key: &[u8]) -> Result<Self, X509Error> {
        let certs = der::split_der_sequence(chain)?
            .into_iter()
            .map(|c| CertificateDer::from(c.to_vec()))
            .collect();
        Self::new(certs, PrivateKey::from_pkcs8_der(key)?)
    }

    /// Parses PEM: `CERTIFICATE` blocks (leaf first) and a `PRIVATE KEY` block.
    pub fn from_pem(chain: &[u8], key: &[u8]) -> Result<Self, X509Error> {
        let certs = CertificateDer::pem_slice_iter(chain)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| X509Error::Pem {
                reason: "certificate PEM is malformed",
            })?;
        if certs.is_empty() {
            return Err(X509Error::EmptyChain);
        }
        let key = PrivatePkcs8KeyDer::from_pem_slice(key).map_err(|_| X509Error::Pem {
            reason: "no PKCS#8 `PRIVATE KEY` block found",
        })?;
        Self::new(certs, PrivateKey::from_pkcs8_der(key.secret_pkcs8_der())?)
    }

    /// The SPIFFE ID of the leaf.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.id
    }

    /// The chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The leaf certificate.
    pub fn leaf(&self) -> &CertificateDer<'static> {
        &self.chain[0]
    }

    /// The leaf's private key.
    pub fn private_key(&self) -> &PrivateKey {
        &self.key
    }

    /// The leaf's notAfter.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The chain as concatenated DER, the Workload API's encoding.
    pub fn chain_der(&self) -> Vec<u8> {
        self.chain.iter().flat_map(|c| c.iter().copied()).collect()
    }
}
