//! Errors of SPIFFE bundle documents and bundle maps.

use crate::jwt::JwtError;
use crate::x509::X509Error;
use crate::{IdError, TrustDomain};

/// Why a SPIFFE bundle document or bundle map was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// Not JSON, or not of the JWKS shape (`keys` missing: BUN-6).
    #[error("bundle document is malformed: {reason}")]
    Malformed {
        /// What the JSON parser reported.
        reason: String,
    },
    /// A JWK has no `kty` (BUN-9).
    #[error("key {index} has no kty (BUN-9)")]
    MissingKty {
        /// Position in `keys`.
        index: usize,
    },
    /// An `x509-svid` entry's certificate is not valid base64 DER X.509.
    #[error("x509-svid key {index} has an invalid x5c certificate: {reason}")]
    InvalidX5c {
        /// Position in `keys`.
        index: usize,
        /// What was wrong.
        reason: String,
    },
    /// An `x509-svid` entry's certificate is not a usable authority.
    #[error("x509-svid authority: {0}")]
    X509(#[from] X509Error),
    /// A `jwt-svid` entry is not a usable key (JWT-13).
    #[error("jwt-svid key: {0}")]
    Jwt(#[from] JwtError),
    /// The X.509 and JWT halves of a bundle name different trust domains.
    #[error("X.509 authorities of {x509} and JWT keys of {jwt} cannot form one bundle (FED-6)")]
    TrustDomainMismatch {
        /// The trust domain of the X.509 half.
        x509: TrustDomain,
        /// The trust domain of the JWT half.
        jwt: TrustDomain,
    },
    /// A bundle map names the same trust domain twice (MAP-2).
    #[error("bundle map names trust domain {trust_domain} twice (MAP-2)")]
    DuplicateTrustDomain {
        /// The repeated trust domain.
        trust_domain: TrustDomain,
    },
    /// A bundle map key is not a trust-domain name.
    #[error("bundle map key {key:?} is not a trust domain: {source}")]
    InvalidTrustDomain {
        /// The key as written (truncated to 64 characters).
        key: String,
        /// Why it is not a trust domain.
        #[source]
        source: IdError,
    },
}
