//! `RequestAuthentication` (§15).

use super::common::{Selector, TargetRef};

/// A validated `RequestAuthentication`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestAuthentication {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `spec.selector`, if any.
    pub selector: Option<Selector>,
    /// `spec.targetRefs`; sidecars ignore policies that have any.
    pub target_refs: Vec<TargetRef>,
    /// `spec.jwtRules`.
    pub jwt_rules: Vec<JwtRule>,
}

/// One `jwtRules[]` entry (RA-2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JwtRule {
    /// `issuer`: must equal the token's `iss`.
    pub issuer: Option<String>,
    /// `audiences`: the token must carry one of them; empty = no check.
    pub audiences: Vec<String>,
    /// `jwksUri`.
    pub jwks_uri: Option<String>,
    /// `jwks`: inline JWKS document.
    pub jwks: Option<String>,
    /// `fromHeaders`.
    pub from_headers: Vec<JwtHeader>,
    /// `fromParams`.
    pub from_params: Vec<String>,
    /// `fromCookies`.
    pub from_cookies: Vec<String>,
    /// `outputPayloadToHeader`.
    pub output_payload_to_header: Option<String>,
    /// `forwardOriginalToken`.
    pub forward_original_token: bool,
    /// `outputClaimToHeaders` as (header, claim) pairs.
    pub output_claim_to_headers: Vec<(String, String)>,
    /// `spaceDelimitedClaims`.
    pub space_delimited_claims: Vec<String>,
}

/// One `fromHeaders[]` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JwtHeader {
    /// Header name.
    pub name: String,
    /// Prefix stripped before decoding, e.g. `"Bearer "`.
    pub prefix: String,
}
