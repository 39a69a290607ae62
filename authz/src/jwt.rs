//! RequestAuthentication outcomes (§15): which tokens count, and whether the
//! request is rejected with 401/403 before authorization.
//!
//! Signature verification is the caller's job: a [`PresentedToken`] is either
//! a verified payload or a failure. This module applies issuer, audience,
//! location and time rules and turns a verified token into request identity.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use jsonwebtoken::jwk::JwkSet;

use crate::jwks;
use crate::jwks_fetch::{JwksCache, discovery_uri};
use crate::model::{JwtRule, RequestAuthentication};

/// Allowed clock skew for `exp`/`nbf`, Envoy's default (`clock_skew_seconds`).
const CLOCK_SKEW_SECS: f64 = 60.0;

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

#[derive(Debug, Clone, PartialEq)]
enum Verdict {
    /// The raw token; the engine verifies it against the provider's JWKS.
    Raw(String),
    Verified(Map<String, Value>),
    Failed(JwtFailure),
}

/// A token found in a request, with the outcome of signature verification.
#[derive(Debug, Clone, PartialEq)]
pub struct PresentedToken {
    location: TokenLocation,
    verdict: Verdict,
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

#[derive(Debug, Clone)]
struct Provider {
    issuer: Option<String>,
    audiences: Vec<String>,
    locations: Vec<TokenLocation>,
    /// Inline JWKS; `None` when the keys are fetched instead.
    keys: Option<JwkSet>,
    /// Where the keys are fetched from: `jwksUri`, or the issuer's OIDC
    /// discovery document when neither `jwks` nor `jwksUri` is set (RA-2).
    /// Until fetched, raw tokens for this rule fail (JWKS unavailable).
    jwks_uri: Option<String>,
    forward_original_token: bool,
    output_payload_to_header: Option<String>,
    output_claim_to_headers: Vec<(String, String)>,
}

/// What the HTTP layer does with a token location after a request is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenHandling {
    pub(crate) location: TokenLocation,
    /// `forwardOriginalToken` of any provider at this location.
    pub(crate) forward: bool,
    /// `outputPayloadToHeader` values of providers at this location.
    pub(crate) payload_headers: Vec<String>,
    /// `outputClaimToHeaders` (header, claim) pairs of providers at this location.
    pub(crate) claim_headers: Vec<(String, String)>,
}

/// The merged jwtRules of every RequestAuthentication selecting a workload (RA-1).
#[derive(Debug, Clone, Default)]
pub(crate) struct Authenticator {
    providers: Vec<Provider>,
    pub(crate) space_delimited: Vec<String>,
}

fn locations(rule: &JwtRule) -> Vec<TokenLocation> {
    let mut out: Vec<TokenLocation> = rule
        .from_headers
        .iter()
        .map(|h| TokenLocation::Header {
            name: h.name.clone(),
            prefix: h.prefix.clone(),
        })
        .collect();
    out.extend(rule.from_params.iter().cloned().map(TokenLocation::Param));
    out.extend(rule.from_cookies.iter().cloned().map(TokenLocation::Cookie));
    if out.is_empty() {
        out.push(TokenLocation::bearer());
        out.push(TokenLocation::Param("access_token".to_owned()));
    }
    out
}

fn claim_time(claims: &Map<String, Value>, name: &str) -> Option<f64> {
    claims.get(name).and_then(Value::as_f64)
}

impl Authenticator {
    pub(crate) fn new<'a>(selected: impl IntoIterator<Item = &'a RequestAuthentication>) -> Self {
        let mut out = Authenticator::default();
        for ra in selected {
            for rule in &ra.jwt_rules {
                out.providers.push(Provider {
                    issuer: rule.issuer.clone(),
                    audiences: rule.audiences.clone(),
                    locations: locations(rule),
                    keys: rule.jwks.as_deref().and_then(jwks::parse_jwks),
                    jwks_uri: match (&rule.jwks, &rule.jwks_uri, &rule.issuer) {
                        (None, None, Some(issuer)) => Some(discovery_uri(issuer)),
                        _ => rule.jwks_uri.clone(),
                    },
                    forward_original_token: rule.forward_original_token,
                    output_payload_to_header: rule.output_payload_to_header.clone(),
                    output_claim_to_headers: rule.output_claim_to_headers.clone(),
                });
                out.space_delimited
                    .extend(rule.space_delimited_claims.iter().cloned());
            }
        }
        out
    }

    /// Every configured token location with its forwarding settings.
    pub(crate) fn token_handling(&self) -> Vec<TokenHandling> {
        let mut out: Vec<TokenHandling> = Vec::new();
        for p in &self.providers {
            for loc in &p.locations {
                let entry = match out.iter_mut().position(|h| h.location.same(loc)) {
                    Some(i) => &mut out[i],
                    None => {
                        out.push(TokenHandling {
                            location: loc.clone(),
                            forward: false,
                            payload_headers: Vec::new(),
                            claim_headers: Vec::new(),
                        });
                        let last = out.len() - 1;
                        &mut out[last]
                    }
                };
                entry.forward |= p.forward_original_token;
                if let Some(h) = &p.output_payload_to_header {
                    entry.payload_headers.push(h.clone());
                }
                entry
                    .claim_headers
                    .extend(p.output_claim_to_headers.iter().cloned());
            }
        }
        out
    }

    /// Every URI keys are fetched from: `jwksUri`s and OIDC discovery URIs.
    pub(crate) fn jwks_uris(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .providers
            .iter()
            .filter_map(|p| p.jwks_uri.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Whether any RequestAuthentication selects the workload.
    pub(crate) fn is_active(&self) -> bool {
        !self.providers.is_empty()
    }

    /// RA-3/RA-4/RA-5: `Ok(None)` = continue without request identity.
    pub(crate) fn authenticate(
        &self,
        tokens: &[PresentedToken],
        now: SystemTime,
        cache: Option<&JwksCache>,
    ) -> Result<Option<RequestIdentity>, JwtFailure> {
        if !self.is_active() {
            return Ok(None);
        }
        let now = now
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let mut identity = None;
        let mut audience_failure = false;
        for token in tokens {
            let here: Vec<&Provider> = self
                .providers
                .iter()
                .filter(|p| p.locations.iter().any(|l| l.same(&token.location)))
                .collect();
            if here.is_empty() {
                continue; // Not in a configured location: not a token for us.
            }
            let verified;
            let claims = match &token.verdict {
                Verdict::Failed(f) => return Err(*f),
                Verdict::Verified(c) => c,
                Verdict::Raw(raw) => {
                    verified = verify_raw(raw, &here, cache)?;
                    &verified
                }
            };
            let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
            let by_issuer = for_issuer(&here, iss);
            if by_issuer.is_empty() {
                return Err(JwtFailure::UnknownIssuer);
            }
            if claim_time(claims, "exp").is_some_and(|exp| exp + CLOCK_SKEW_SECS <= now) {
                return Err(JwtFailure::Expired);
            }
            if claim_time(claims, "nbf").is_some_and(|nbf| nbf > now + CLOCK_SKEW_SECS) {
                return Err(JwtFailure::NotYetValid);
            }
            let aud = audiences(claims);
            let aud_ok = by_issuer.iter().any(|p| {
                p.audiences.is_empty() || p.audiences.iter().any(|a| aud.contains(&a.as_str()))
            });
            if !aud_ok {
                audience_failure = true;
                continue;
            }
            if identity.is_none() {
                identity = Some(RequestIdentity {
                    iss: iss.to_owned(),
                    sub: claims
                        .get("sub")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    claims: claims.clone(),
                });
            }
        }
        if audience_failure {
            return Err(JwtFailure::AudienceNotAllowed);
        }
        Ok(identity)
    }
}

fn for_issuer<'a>(providers: &[&'a Provider], iss: &str) -> Vec<&'a Provider> {
    providers
        .iter()
        .copied()
        .filter(|p| p.issuer.as_deref().is_none_or(|i| i == iss))
        .collect()
}

/// Routes a raw token to its issuer's providers and checks the signature.
fn verify_raw(
    raw: &str,
    here: &[&Provider],
    cache: Option<&JwksCache>,
) -> Result<Map<String, Value>, JwtFailure> {
    let unverified = jwks::peek_claims(raw)?;
    let iss = unverified.get("iss").and_then(Value::as_str).unwrap_or("");
    let providers = for_issuer(here, iss);
    if providers.is_empty() {
        return Err(JwtFailure::UnknownIssuer);
    }
    let mut failure = JwtFailure::JwksUnavailable;
    for p in providers {
        let fetched = p
            .jwks_uri
            .as_deref()
            .and_then(|uri| cache.and_then(|c| c.get(uri)));
        let Some(keys) = p.keys.as_ref().or(fetched.as_deref()) else {
            continue;
        };
        match jwks::verify(raw, keys) {
            Ok(claims) => return Ok(claims),
            Err(f) => failure = f,
        }
    }
    Err(failure)
}

/// `aud` as a list of strings (a string or a list of strings).
pub(crate) fn audiences(claims: &Map<String, Value>) -> Vec<&str> {
    match claims.get("aud") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}
