//! [`X509Bundle`]: the X.509 authorities of one trust domain.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, TrustAnchor};

use super::{X509Error, der};
use crate::TrustDomain;

/// The X.509 authorities (root certificates) of one trust domain (BUN-2).
///
/// Trust anchors are extracted once, at construction, so verification does
/// not re-parse them per handshake.
#[derive(Debug, Clone)]
pub struct X509Bundle {
    trust_domain: TrustDomain,
    authorities: Vec<CertificateDer<'static>>,
    anchors: Vec<TrustAnchor<'static>>,
}

impl X509Bundle {
    /// Builds a bundle; each authority must be a parseable certificate.
    pub fn new(
        trust_domain: TrustDomain,
        authorities: Vec<CertificateDer<'static>>,
    ) -> Result<Self, X509Error> {
        let anchors = authorities
            .iter()
            .enumerate()
            .map(|(index, cert)| {
                webpki::anchor_from_trusted_cert(cert)
                    .map(|a| a.to_owned())
                    .map_err(|e| X509Error::Malformed {
                        index,
                        reason: e.to_string(),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(X509Bundle {
            trust_domain,
            authorities,
            anchors,
        })
    }

    /// The SPIFFE IDs the authorities name in URI SANs (a SPIFFE CA usually
    /// carries `spiffe://<trust domain>`). URIs that are not SPIFFE IDs, and
    /// authorities without any, contribute nothing. Lets a consumer notice a
    /// bundle published for another trust domain.
    pub fn authority_ids(&self) -> Vec<crate::SpiffeId> {
        let mut ids = Vec::new();
        for (index, cert) in self.authorities.iter().enumerate() {
            if let Ok(info) = super::cert::parse(cert, index) {
                ids.extend(info.uris.iter().filter_map(|u| u.parse().ok()));
            }
        }
        ids
    }

    /// An empty bundle: every X509-SVID of the trust domain is untrusted (BUN-8).
    pub fn empty(trust_domain: TrustDomain) -> Self {
        X509Bundle {
            trust_domain,
            authorities: Vec::new(),
            anchors: Vec::new(),
        }
    }

    /// Parses concatenated DER certificates (the Workload API encoding).
    pub fn from_der(trust_domain: TrustDomain, der: &[u8]) -> Result<Self, X509Error> {
        let certs = der::split_der_sequence(der)?
            .into_iter()
            .map(|c| CertificateDer::from(c.to_vec()))
            .collect();
        Self::new(trust_domain, certs)
    }

    /// Parses `CERTIFICATE` PEM blocks.
    pub fn from_pem(trust_domain: TrustDomain, pem: &[u8]) -> Result<Self, X509Error> {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| X509Error::Pem {
                reason: "certificate PEM is malformed",
            })?;
        Self::new(trust_domain, certs)
    }

    /// The trust domain these authorities speak for.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The authorities' certificates.
    pub fn authorities(&self) -> &[CertificateDer<'static>] {
        &self.authorities
    }

    /// The authorities as webpki trust anchors.
    pub fn trust_anchors(&self) -> &[TrustAnchor<'static>] {
        &self.anchors
    }

    /// Whether the bundle holds no authority.
    pub fn is_empty(&self) -> bool {
        self.authorities.is_empty()
    }

    /// The authorities as concatenated DER.
    pub fn to_der(&self) -> Vec<u8> {
        self.authorities
            .iter()
            .flat_map(|c| c.iter().copied())
            .collect()
    }
}

impl PartialEq for X509Bundle {
    fn eq(&self, other: &Self) -> bool {
        self.trust_domain == other.trust_domain && self.authorities == other.authorities
    }
}

impl Eq for X509Bundle {}
