//! Errors of JWT-SVID and JWT bundle handling.

use std::time::SystemTime;

use crate::{IdError, TrustDomain};

/// Why a JWT-SVID or JWT bundle was refused. Variants name their rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// Not a JWS in compact serialization with three parts (JWT-1).
    #[error("token is not a compact JWS with three parts (JWT-1)")]
    NotCompact,
    /// A part of the token is not valid base64url or JSON.
    #[error("token {part} is malformed: {reason}")]
    Malformed {
        /// `header`, `payload` or `signature`.
        part: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The header has a parameter other than `alg`, `kid`, `typ` (JWT-2).
    #[error("token header has a parameter other than alg, kid and typ (JWT-2): {reason}")]
    ForbiddenHeader {
        /// The parser's description of the offending field.
        reason: String,
    },
    /// `alg` is not on the JWT-SVID allow-list (JWT-3).
    #[error("algorithm {alg:?} is not allowed for JWT-SVIDs (JWT-3)")]
    UnsupportedAlgorithm {
        /// The refused value (truncated to 32 characters).
        alg: String,
    },
    /// The header has no `kid`; this library requires one (JWT-4).
    #[error("token header has no kid (JWT-4)")]
    MissingKid,
    /// `typ` is present and neither `JWT` nor `JOSE` (JWT-5).
    #[error("token typ {typ:?} is neither JWT nor JOSE (JWT-5)")]
    BadTyp {
        /// The refused value (truncated to 32 characters).
        typ: String,
    },
    /// `sub` is missing or not a string (JWT-6).
    #[error("token has no sub claim (JWT-6)")]
    MissingSubject,
    /// `sub` is not a SPIFFE ID (JWT-6).
    #[error("token sub is not a SPIFFE ID (JWT-6): {0}")]
    InvalidSubject(#[source] IdError),
    /// No JWT bundle for the trust domain of `sub` (JWT-15).
    #[error("no JWT bundle for trust domain {trust_domain} (JWT-15)")]
    NoBundle {
        /// The trust domain named by `sub`.
        trust_domain: TrustDomain,
    },
    /// The bundle has no key with the token's `kid`.
    #[error("no key with kid {kid:?} in the bundle of {trust_domain}")]
    UnknownKid {
        /// The `kid` from the token header.
        kid: String,
        /// The bundle that was searched.
        trust_domain: TrustDomain,
    },
    /// The key's type does not fit `alg` (an EC token against an RSA key, ...).
    #[error("key {kid:?} cannot verify {alg} signatures (JWT-3)")]
    KeyAlgorithmMismatch {
        /// The key id.
        kid: String,
        /// The token's algorithm.
        alg: super::JwtAlgorithm,
    },
    /// The signature does not verify.
    #[error("token signature is invalid")]
    BadSignature,
    /// `aud` is missing or empty (JWT-7).
    #[error("token has no audience (JWT-7)")]
    MissingAudience,
    /// None of the audiences is the expected one (JWT-7).
    #[error("token audience does not contain {expected:?} (JWT-7)")]
    AudienceMismatch {
        /// The audience the validator expected.
        expected: String,
    },
    /// `exp` is missing (JWT-8).
    #[error("token has no exp claim (JWT-8)")]
    MissingExpiry,
    /// `exp`, `nbf` or `iat` is present but not a non-negative number
    /// (JWT-10: RFC 7519 NumericDate). Such a token is invalid, not one
    /// without the claim.
    #[error("token claim {claim} is not a NumericDate (JWT-10)")]
    InvalidTimeClaim {
        /// `exp`, `nbf` or `iat`.
        claim: &'static str,
    },
    /// The token has expired (JWT-8).
    #[error("token expired at {expired_at:?} (JWT-8)")]
    Expired {
        /// The `exp` claim.
        expired_at: SystemTime,
    },
    /// The token's `nbf` is in the future (JWT-8).
    #[error("token is not valid before {not_before:?} (JWT-8)")]
    NotYetValid {
        /// The `nbf` claim.
        not_before: SystemTime,
    },
    /// A JWKS document is malformed.
    #[error("JWKS is malformed: {reason}")]
    InvalidJwks {
        /// What was wrong.
        reason: String,
    },
    /// A JWK lacks a `kid`, which JWT keys require (JWT-13).
    #[error("JWT key {index} has no kid (JWT-13)")]
    KeyWithoutKid {
        /// Position in the `keys` array.
        index: usize,
    },
    /// A JWK's parameters do not form a usable public key.
    #[error("JWT key {kid:?} is invalid: {reason}")]
    InvalidKey {
        /// The key id.
        kid: String,
        /// What was wrong.
        reason: &'static str,
    },
    /// The signing key cannot produce a JWT-SVID (unsupported algorithm).
    #[error("the private key cannot sign JWT-SVIDs: {reason}")]
    Signing {
        /// What was wrong.
        reason: &'static str,
    },
}
