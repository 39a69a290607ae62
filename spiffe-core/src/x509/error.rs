//! Errors of X509-SVID parsing and verification.

use crate::{IdError, TrustDomain};

/// Why certificates or a key do not make a valid X509-SVID.
///
/// Variants that enforce a numbered rule of the X509-SVID standard say which.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum X509Error {
    /// No certificate was given.
    #[error("certificate chain is empty")]
    EmptyChain,
    /// A certificate could not be parsed as DER X.509.
    #[error("certificate {index} is malformed: {reason}")]
    Malformed {
        /// Position in the chain (0 = leaf).
        index: usize,
        /// What the parser reported.
        reason: String,
    },
    /// PEM input held no usable block of the expected kind.
    #[error("PEM input is invalid: {reason}")]
    Pem {
        /// What was wrong.
        reason: &'static str,
    },
    /// The leaf has no URI SAN, so it is not an SVID (X509-1).
    #[error("leaf certificate has no URI SAN (X509-1)")]
    NoUriSan,
    /// The leaf has several URI SANs (X509-1).
    #[error("leaf certificate has {count} URI SANs; exactly one is allowed (X509-1)")]
    MultipleUriSans {
        /// How many URI SANs the leaf carries.
        count: usize,
    },
    /// The URI SAN is not a valid SPIFFE ID.
    #[error("URI SAN is not a valid SPIFFE ID: {0}")]
    InvalidSpiffeId(#[source] IdError),
    /// The subject is empty but the SAN extension is not critical (X509-3).
    #[error("subject is empty but the SAN extension is not critical (X509-3)")]
    SanNotCritical,
    /// A leaf SVID must not be a CA (X509-7).
    #[error("leaf certificate has cA=true (X509-7)")]
    LeafIsCa,
    /// A leaf SVID must not have keyCertSign (X509-7).
    #[error("leaf certificate has keyUsage keyCertSign (X509-7)")]
    LeafKeyCertSign,
    /// A leaf SVID must not have cRLSign (X509-7).
    #[error("leaf certificate has keyUsage cRLSign (X509-7)")]
    LeafCrlSign,
    /// A leaf SVID must carry a keyUsage extension (X509 table 2.2).
    #[error("leaf certificate has no keyUsage extension (X509 leaf profile)")]
    LeafNoKeyUsage,
    /// A leaf SVID must have digitalSignature (X509 table 2.2).
    #[error("leaf certificate lacks keyUsage digitalSignature (X509 leaf profile)")]
    LeafNoDigitalSignature,
    /// An extendedKeyUsage extension lacks serverAuth or clientAuth (X509 table 2.2).
    #[error(
        "leaf extendedKeyUsage must contain both serverAuth and clientAuth (X509 leaf profile)"
    )]
    LeafEku,
    /// A leaf SVID's ID must have a non-root path (X509-7).
    #[error("leaf SPIFFE ID {id} has no path (X509-7)")]
    RootPathLeaf {
        /// The ID found in the leaf.
        id: String,
    },
    /// A signing certificate in the chain is not a CA (X509-4).
    #[error("signing certificate {index} does not have cA=true (X509-4)")]
    SigningCertNotCa {
        /// Position in the chain.
        index: usize,
    },
    /// A signing certificate lacks keyCertSign (X509-4).
    #[error("signing certificate {index} lacks keyUsage keyCertSign (X509-4)")]
    SigningCertNoKeyCertSign {
        /// Position in the chain.
        index: usize,
    },
    /// A signing certificate's SPIFFE ID has a path (X509 table 2.2).
    #[error("signing certificate {index} carries a SPIFFE ID with a path")]
    SigningCertIdHasPath {
        /// Position in the chain.
        index: usize,
    },
    /// The private key is not PKCS#8 or not of a supported algorithm.
    #[error("private key is not a supported PKCS#8 key (P-256, P-384, P-521, RSA or Ed25519)")]
    UnsupportedKey,
    /// The private key does not match the leaf's public key.
    #[error("private key does not match the leaf certificate's public key")]
    KeyMismatch,
}

/// Why a presented X509-SVID chain was not accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The leaf is not a valid X509-SVID.
    #[error(transparent)]
    Svid(#[from] X509Error),
    /// No X.509 bundle is known for the leaf's trust domain (X509-6, WL-FED-1).
    #[error("no X.509 bundle for trust domain {trust_domain} (X509-6)")]
    NoBundle {
        /// The trust domain named by the leaf.
        trust_domain: TrustDomain,
    },
    /// RFC 5280 path validation against the trust domain's bundle failed.
    #[error("certificate chain does not validate against the bundle of {trust_domain}: {source}")]
    Chain {
        /// The trust domain whose bundle was used.
        trust_domain: TrustDomain,
        /// What path validation reported (expiry, unknown issuer, signature, ...).
        #[source]
        source: webpki::Error,
    },
}
