//! Tokens as the engine sees them: where a token was found
//! ([`TokenLocation`]), what verification said ([`PresentedToken`]), why a
//! token was refused ([`JwtFailure`]), and the request identity a verified
//! token establishes. The RequestAuthentication rules live in `authn`.

use serde_json::{Map, Value};

/// Where a token was found in the request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenLocation {
    /// A header (name compared case-insensitively) with the prefix stripped.
    Header {
        /// Header name.
        name: String,
        /// Prefix before the token, e.g. `"Bearer "`.
        prefix: String,
    },
    /// A query parameter.
    Param(String),
    /// A cookie.
    Cookie(String),
}

impl TokenLocation {
    /// `Authorization: Bearer <token>`, the default location.
    pub fn bearer() -> Self {
        TokenLocation::Header {
            name: "authorization".to_owned(),
            prefix: "Bearer ".to_owned(),
        }
    }

    pub(crate) fn same(&self, other: &TokenLocation) -> bool {
        match (self, other) {
            (
                TokenLocation::Header { name: a, prefix: p },
                TokenLocation::Header { name: b, prefix: q },
            ) => a.eq_ignore_ascii_case(b) && p == q,
            (TokenLocation::Param(a), TokenLocation::Param(b)) => a == b,
            (TokenLocation::Cookie(a), TokenLocation::Cookie(b)) => a == b,
            _ => false,
        }
    }
}

/// Why a presented token was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtFailure {
    /// Bad signature or otherwise unverifiable.
    #[error("Jwt verification fails")]
    VerificationFailed,
    /// Not three base64url parts.
    #[error("Jwt is not in the form of Header.Payload.Signature")]
    Malformed,
    /// `exp` is in the past.
    #[error("Jwt is expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("Jwt not yet valid")]
    NotYetValid,
    /// No rule for the token's issuer at this location.
    #[error("Jwt issuer is not configured")]
    UnknownIssuer,
    /// The JWKS could not be fetched.
    #[error("Jwks remote fetch is failed")]
    JwksUnavailable,
    /// Valid token, but none of its audiences is allowed (answered with 403).
    #[error("Audiences in Jwt are not allowed")]
    AudienceNotAllowed,
    /// `exp`, `nbf` or `iat` is present but not a number: the token is
    /// invalid, never treated as if the claim were absent.
    #[error("Jwt payload [{claim}] field is not a number")]
    TimeClaimNotNumeric {
        /// The claim: `exp`, `nbf` or `iat`.
        claim: &'static str,
    },
    /// `aud` is present but neither a string nor a list of strings: the
    /// token is invalid, never treated as if it had no audience.
    #[error("Jwt payload [aud] field is not a string or a list of strings")]
    AudienceNotString,
}

impl JwtFailure {
    /// The HTTP status the sidecar answers with (RA-3).
    pub fn status(self) -> u16 {
        match self {
            JwtFailure::AudienceNotAllowed => 403,
            _ => 401,
        }
    }
}

#[derive(Clone, PartialEq)]
pub(crate) enum Verdict {
    /// The raw token; the engine verifies it against the provider's JWKS.
    Raw(String),
    Verified(Map<String, Value>),
    Failed(JwtFailure),
}

/// Never prints the token: a raw token is a bearer credential.
impl std::fmt::Debug for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Raw(_) => f.write_str("Raw(<redacted>)"),
            Verdict::Verified(claims) => f
                .debug_tuple("Verified")
                .field(&claims.keys().collect::<Vec<_>>())
                .finish(),
            Verdict::Failed(why) => f.debug_tuple("Failed").field(why).finish(),
        }
    }
}

/// A token found in a request, with the outcome of signature verification.
/// `Debug` shows the location and the verdict, never the token (for a
/// verified token, only the claim names).
#[derive(Debug, Clone, PartialEq)]
pub struct PresentedToken {
    pub(crate) location: TokenLocation,
    pub(crate) verdict: Verdict,
}

impl PresentedToken {
    /// A raw token as found in the request; the engine verifies its
    /// signature against the inline `jwks` of the matching jwtRules.
    pub fn raw(location: TokenLocation, token: impl Into<String>) -> Self {
        PresentedToken {
            location,
            verdict: Verdict::Raw(token.into()),
        }
    }

    /// A token whose signature the caller already verified; `claims` is its payload.
    pub fn verified(location: TokenLocation, claims: Map<String, Value>) -> Self {
        PresentedToken {
            location,
            verdict: Verdict::Verified(claims),
        }
    }

    /// A token that failed verification.
    pub fn failed(location: TokenLocation, failure: JwtFailure) -> Self {
        PresentedToken {
            location,
            verdict: Verdict::Failed(failure),
        }
    }
}

/// The request identity established by a verified token.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RequestIdentity {
    pub(crate) iss: String,
    pub(crate) sub: String,
    pub(crate) claims: Map<String, Value>,
}

/// `aud` as a list of strings (absent: none); `None` when it is neither a
/// string nor a list of strings. spiffe-core's reading, shared with
/// JWT-SVID validation.
pub(crate) fn audiences(claims: &Map<String, Value>) -> Option<Vec<&str>> {
    spiffe_core::jwt::audience_claim(claims)
}
