//! x509pop node attestation: the node proves possession of a key whose
//! certificate chains to a CA the server is configured with.
//!
//! The proof is a signature, with the certificate's key, over a fixed
//! context string and the SHA-256 of the CSR the node sends with it. So the
//! proof is bound to that CSR: replaying it gets an SVID only for the key
//! in the CSR, which the replayer does not hold. The node's ID is derived
//! from the certificate's SHA-1 fingerprint, as SPIRE's x509pop does:
//! `spiffe://<td>/node/x509pop/<hex>`.

use std::time::UNIX_EPOCH;

use aws_lc_rs::digest::{SHA1_FOR_LEGACY_USE_ONLY, SHA256, digest};
use base64::Engine;
use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use serde::{Deserialize, Serialize};
use spiffe_core::{Selector, SpiffeId, TrustDomain};
use std::sync::Arc;
use webpki::{EndEntityCert, KeyUsage};

use crate::keys;
use crate::{AttestError, AttestedNode, Clock, NodeAttestor, NodeStore};

/// The attestor name of [`X509PopAttestor`].
pub const X509POP: &str = "x509pop";

/// What the signature covers, before the CSR's SHA-256.
pub const X509POP_CONTEXT: &[u8] = b"mesh-node x509pop v1\0";

/// The evidence a node sends: its certificate chain (leaf first) and the
/// signature over [`X509POP_CONTEXT`] and the CSR's SHA-256.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct X509PopEvidence {
    /// DER certificates, base64, leaf first.
    pub chain: Vec<String>,
    /// The signature, base64.
    pub signature: String,
}

impl X509PopEvidence {
    /// The bytes the node signs for `csr`.
    pub fn signed_message(csr: &[u8]) -> Vec<u8> {
        let mut m = X509POP_CONTEXT.to_vec();
        m.extend_from_slice(digest(&SHA256, csr).as_ref());
        m
    }

    /// The evidence for a chain and a signature already made.
    pub fn new(chain: &[CertificateDer<'_>], signature: &[u8]) -> Self {
        let b64 = base64::engine::general_purpose::STANDARD;
        X509PopEvidence {
            chain: chain.iter().map(|c| b64.encode(c)).collect(),
            signature: b64.encode(signature),
        }
    }

    /// As the attestation payload.
    pub fn to_payload(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// x509pop attestation against a set of CA certificates.
pub struct X509PopAttestor {
    trust_domain: TrustDomain,
    anchors: Vec<TrustAnchor<'static>>,
    store: Arc<dyn NodeStore>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for X509PopAttestor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("X509PopAttestor")
            .field("trust_domain", &self.trust_domain)
            .field("anchors", &self.anchors.len())
            .finish_non_exhaustive()
    }
}

impl X509PopAttestor {
    /// An attestor that accepts nodes whose certificate chains to one of
    /// `cas`. Fails when a CA certificate cannot be a trust anchor.
    pub fn new(
        trust_domain: TrustDomain,
        cas: &[CertificateDer<'static>],
        store: Arc<dyn NodeStore>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, AttestError> {
        let anchors = cas
            .iter()
            .map(|c| {
                webpki::anchor_from_trusted_cert(c)
                    .map(|a| a.to_owned())
                    .map_err(|_| AttestError::Malformed { attestor: X509POP })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(X509PopAttestor {
            trust_domain,
            anchors,
            store,
            clock,
        })
    }
}

fn malformed() -> AttestError {
    AttestError::Malformed { attestor: X509POP }
}

impl NodeAttestor for X509PopAttestor {
    fn name(&self) -> &'static str {
        X509POP
    }

    fn attest(&self, _payload: &[u8]) -> Result<AttestedNode, AttestError> {
        // A proof not bound to a CSR could be replayed.
        Err(AttestError::Unbound { attestor: X509POP })
    }

    fn attest_bound(&self, payload: &[u8], bound_to: &[u8]) -> Result<AttestedNode, AttestError> {
        if payload.len() > 64 * 1024 {
            return Err(malformed());
        }
        let ev: X509PopEvidence = serde_json::from_slice(payload).map_err(|_| malformed())?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let chain: Vec<CertificateDer<'static>> = ev
            .chain
            .iter()
            .take(8)
            .map(|c| b64.decode(c).map(CertificateDer::from))
            .collect::<Result<_, _>>()
            .map_err(|_| malformed())?;
        let signature = b64.decode(&ev.signature).map_err(|_| malformed())?;
        let (leaf, intermediates) = chain.split_first().ok_or_else(malformed)?;
        let ee = EndEntityCert::try_from(leaf).map_err(|_| malformed())?;
        let now = self.clock.now();
        let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &self.anchors,
            intermediates,
            UnixTime::since_unix_epoch(since),
            KeyUsage::client_auth(),
            None,
            None,
        )
        .map_err(|e| AttestError::Untrusted {
            attestor: X509POP,
            reason: e.to_string(),
        })?;
        let message = X509PopEvidence::signed_message(bound_to);
        let proven = webpki::ALL_VERIFICATION_ALGS
            .iter()
            .any(|alg| ee.verify_signature(*alg, &message, &signature).is_ok());
        if !proven {
            return Err(AttestError::Untrusted {
                attestor: X509POP,
                reason: "the signature does not verify with the certificate's key".into(),
            });
        }
        let fingerprint = keys::hex(digest(&SHA1_FOR_LEGACY_USE_ONLY, leaf).as_ref());
        let spiffe_id =
            SpiffeId::from_segments(&self.trust_domain, &["node", X509POP, &fingerprint])
                .map_err(|_| malformed())?;
        let mut selectors = spiffe_core::Selectors::new();
        if let Ok(s) = Selector::new(X509POP, format!("fingerprint:{fingerprint}")) {
            selectors.insert(s);
        }
        if let Some(cn) = common_name(leaf)
            && let Ok(s) = Selector::new(X509POP, format!("subject:cn:{cn}"))
        {
            selectors.insert(s);
        }
        let node = AttestedNode {
            spiffe_id,
            attestor: X509POP.to_owned(),
            selectors,
            attested_at: now,
        };
        self.store.put_attested_node(&node)?;
        Ok(node)
    }
}

fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}
