//! RequestAuthentication outcomes (§15): which tokens count, and whether the
//! request is rejected with 401/403 before authorization.
//!
//! A [`PresentedToken`] is raw (verified here against the provider's inline
//! or fetched JWKS), verified by the caller, or a failure. This module
//! applies issuer, audience, location and time rules, turns an accepted
//! token into request identity, and derives the RA-2 output headers of
//! each provider from the payload that provider verified.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use jsonwebtoken::jwk::JwkSet;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::decision::TokenHeaders;
use crate::jwks;
use crate::jwks_fetch::{JwksCache, discovery_uri};
use crate::jwt::{JwtFailure, PresentedToken, RequestIdentity, TokenLocation, Verdict, audiences};
use crate::model::{JwtRule, RequestAuthentication};

/// Allowed clock skew for `exp`/`nbf`, Envoy's default (`clock_skew_seconds`).
const CLOCK_SKEW_SECS: f64 = 60.0;

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

/// What the HTTP layer needs to know about tokens: where to look for them,
/// whether to forward them, and which headers RA-2 outputs may write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TokenHandling {
    /// Every configured location, with `forwardOriginalToken` of any
    /// provider at that location.
    pub(crate) locations: Vec<(TokenLocation, bool)>,
    /// Every `outputPayloadToHeader` and `outputClaimToHeaders` header of
    /// every provider, lowercased, once each. The layer strips them from
    /// every allowed request before writing the verified values.
    pub(crate) output_headers: Vec<String>,
}

/// The outcome of request authentication that passed.
#[derive(Debug, Default)]
pub(crate) struct Authenticated {
    /// Request identity of the first accepted token.
    pub(crate) identity: Option<RequestIdentity>,
    /// RA-2 output headers of each provider that verified and accepted a
    /// token, from that token's payload.
    pub(crate) headers: TokenHeaders,
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

/// A time claim: absent is `None`; present but not a number is an error.
fn claim_time(claims: &Map<String, Value>, name: &'static str) -> Result<Option<f64>, JwtFailure> {
    // The same NumericDate reading as JWT-SVID validation.
    spiffe_core::jwt::numeric_date(claims, name)
        .map_err(|e| JwtFailure::TimeClaimNotNumeric { claim: e.claim })
}

/// RA-3 time rules with Envoy's clock skew; `iat` must only be a number.
fn check_times(claims: &Map<String, Value>, now: f64) -> Result<(), JwtFailure> {
    let exp = claim_time(claims, "exp")?;
    let nbf = claim_time(claims, "nbf")?;
    claim_time(claims, "iat")?;
    if exp.is_some_and(|exp| exp + CLOCK_SKEW_SECS <= now) {
        return Err(JwtFailure::Expired);
    }
    if nbf.is_some_and(|nbf| nbf > now + CLOCK_SKEW_SECS) {
        return Err(JwtFailure::NotYetValid);
    }
    Ok(())
}

/// `outputClaimToHeaders`: a string, number or boolean claim, nested claims
/// named with dots.
fn claim_text(claims: &Map<String, Value>, path: &str) -> Option<String> {
    let mut parts = path.split('.');
    let mut value = claims.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl Provider {
    /// RA-2 outputs of this provider for a token it verified: the payload
    /// (the token's own base64url segment, or the caller-verified claims
    /// re-encoded) and the configured claims.
    fn write_outputs(
        &self,
        claims: &Map<String, Value>,
        payload: Option<&str>,
        out: &mut TokenHeaders,
    ) {
        if let Some(header) = &self.output_payload_to_header {
            let value = match payload {
                Some(p) => p.to_owned(),
                None => URL_SAFE_NO_PAD.encode(Value::Object(claims.clone()).to_string()),
            };
            out.0.push((header.clone(), value));
        }
        for (header, claim) in &self.output_claim_to_headers {
            if let Some(value) = claim_text(claims, claim) {
                out.0.push((header.clone(), value));
            }
        }
    }
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
                    output_payload_to_header: rule
                        .output_payload_to_header
                        .as_ref()
                        .map(|h| h.to_ascii_lowercase()),
                    output_claim_to_headers: rule
                        .output_claim_to_headers
                        .iter()
                        .map(|(h, c)| (h.to_ascii_lowercase(), c.clone()))
                        .collect(),
                });
                out.space_delimited
                    .extend(rule.space_delimited_claims.iter().cloned());
            }
        }
        out
    }

    /// Every configured token location with its forwarding settings, and
    /// every header an RA-2 output may write.
    pub(crate) fn token_handling(&self) -> TokenHandling {
        let mut out = TokenHandling::default();
        let mut output = |h: &String| {
            if !out.output_headers.contains(h) {
                out.output_headers.push(h.clone());
            }
        };
        for p in &self.providers {
            p.output_payload_to_header.iter().for_each(&mut output);
            p.output_claim_to_headers
                .iter()
                .for_each(|(h, _)| output(h));
        }
        for p in &self.providers {
            for loc in &p.locations {
                match out.locations.iter_mut().find(|(l, _)| l.same(loc)) {
                    Some((_, forward)) => *forward |= p.forward_original_token,
                    None => out.locations.push((loc.clone(), p.forward_original_token)),
                }
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

    /// RA-3/RA-4/RA-5: `Ok` with no identity = continue without request
    /// identity. The outputs of each provider come only from a token that
    /// provider verified (signature, issuer, times, audience).
    pub(crate) fn authenticate(
        &self,
        tokens: &[PresentedToken],
        now: SystemTime,
        cache: Option<&JwksCache>,
    ) -> Result<Authenticated, JwtFailure> {
        let mut out = Authenticated::default();
        if !self.is_active() {
            return Ok(out);
        }
        let now = now
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
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
            let (claims, verifiers, payload) = match &token.verdict {
                Verdict::Failed(f) => return Err(*f),
                Verdict::Verified(c) => {
                    let iss = c.get("iss").and_then(Value::as_str).unwrap_or("");
                    (c, for_issuer(&here, iss), None)
                }
                Verdict::Raw(raw) => {
                    let (c, by) = verify_raw(raw, &here, cache)?;
                    verified = c;
                    (&verified, by, raw.split('.').nth(1))
                }
            };
            if verifiers.is_empty() {
                return Err(JwtFailure::UnknownIssuer);
            }
            check_times(claims, now)?;
            let aud = audiences(claims).ok_or(JwtFailure::AudienceNotString)?;
            let accepted: Vec<&Provider> = verifiers
                .into_iter()
                .filter(|p| {
                    p.audiences.is_empty() || p.audiences.iter().any(|a| aud.contains(&a.as_str()))
                })
                .collect();
            if accepted.is_empty() {
                audience_failure = true;
                continue;
            }
            for p in &accepted {
                p.write_outputs(claims, payload, &mut out.headers);
            }
            if out.identity.is_none() {
                let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
                out.identity = Some(RequestIdentity {
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
        Ok(out)
    }
}

fn for_issuer<'a>(providers: &[&'a Provider], iss: &str) -> Vec<&'a Provider> {
    providers
        .iter()
        .copied()
        .filter(|p| p.issuer.as_deref().is_none_or(|i| i == iss))
        .collect()
}

/// Routes a raw token to its issuer's providers and checks the signature
/// with each one's keys; returns the payload and the providers whose keys
/// verified it.
fn verify_raw<'a>(
    raw: &str,
    here: &[&'a Provider],
    cache: Option<&JwksCache>,
) -> Result<(Map<String, Value>, Vec<&'a Provider>), JwtFailure> {
    let unverified = jwks::peek_claims(raw)?;
    let iss = unverified.get("iss").and_then(Value::as_str).unwrap_or("");
    let providers = for_issuer(here, iss);
    if providers.is_empty() {
        return Err(JwtFailure::UnknownIssuer);
    }
    let mut failure = JwtFailure::JwksUnavailable;
    let mut claims = None;
    let mut verifiers = Vec::new();
    for p in providers {
        let fetched = p
            .jwks_uri
            .as_deref()
            .and_then(|uri| cache.and_then(|c| c.get(uri)));
        let Some(keys) = p.keys.as_ref().or(fetched.as_deref()) else {
            continue;
        };
        match jwks::verify(raw, keys) {
            Ok(c) => {
                claims.get_or_insert(c);
                verifiers.push(p);
            }
            Err(f) => failure = f,
        }
    }
    match claims {
        Some(c) => Ok((c, verifiers)),
        None => Err(failure),
    }
}
