//! [`JwtSvid`]: parsing and validating JWT-SVIDs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::{Map, Value};

use super::jwk::VerifyFail;
use super::{
    JwtAlgorithm, JwtBundleLookup, JwtError, audience_claim, b64url, compact_segments,
    decode_payload,
};
use crate::SpiffeId;

/// A JWT-SVID whose claims have been read (and, through
/// [`JwtSvid::validate`], verified).
///
/// `Debug` shows the subject, audience, expiry and key id, never the
/// token: a bearer token in a log line is a credential handed to whoever
/// reads the log.
#[derive(Clone, PartialEq)]
pub struct JwtSvid {
    token: String,
    spiffe_id: SpiffeId,
    audience: Vec<String>,
    expiry: SystemTime,
    kid: String,
    alg: JwtAlgorithm,
    claims: Map<String, Value>,
}

impl std::fmt::Debug for JwtSvid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSvid")
            .field("token", &"<redacted>")
            .field("spiffe_id", &self.spiffe_id)
            .field("audience", &self.audience)
            .field("expiry", &self.expiry)
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// The JOSE header: only `alg`, `kid` and `typ` (JWT-2). Serde's derive
/// refuses unknown and duplicate fields, and non-string values.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    alg: String,
    kid: Option<String>,
    typ: Option<String>,
}

struct Parts<'a> {
    signing_input: &'a str,
    alg: JwtAlgorithm,
    kid: String,
    claims: Map<String, Value>,
    signature: &'a str,
}

fn split(token: &str) -> Result<Parts<'_>, JwtError> {
    let (h, p, s) = compact_segments(token).ok_or(JwtError::NotCompact)?;
    let malformed = |part, reason: &str| JwtError::Malformed {
        part,
        reason: reason.to_owned(),
    };
    let header = b64url(h).ok_or_else(|| malformed("header", "not base64url"))?;
    let header: Header = serde_json::from_slice(&header).map_err(|e| {
        if e.is_data() {
            JwtError::ForbiddenHeader {
                reason: e.to_string(),
            }
        } else {
            malformed("header", "not a JSON object")
        }
    })?;
    // JWT-3: the algorithm is checked before anything else is processed.
    let alg: JwtAlgorithm = header.alg.parse()?;
    let kid = header
        .kid
        .filter(|k| !k.is_empty())
        .ok_or(JwtError::MissingKid)?;
    if let Some(typ) = header.typ
        && typ != "JWT"
        && typ != "JOSE"
    {
        return Err(JwtError::BadTyp {
            typ: typ.chars().take(32).collect(),
        });
    }
    let claims =
        decode_payload(p).ok_or_else(|| malformed("payload", "not a base64url JSON object"))?;
    Ok(Parts {
        signing_input: &token[..h.len() + 1 + p.len()],
        alg,
        kid,
        claims,
        signature: s,
    })
}

/// A registered time claim (RFC 7519 NumericDate): absent is `Ok(None)`;
/// present but not a non-negative number makes the token invalid, never
/// "absent" (a string `exp` must not turn into "no expiry").
fn numeric_date(
    claims: &Map<String, Value>,
    claim: &'static str,
) -> Result<Option<SystemTime>, JwtError> {
    let secs = super::claims::numeric_date(claims, claim)
        .map_err(|e| JwtError::InvalidTimeClaim { claim: e.claim })?;
    Ok(secs.map(|s| UNIX_EPOCH + Duration::from_secs_f64(s.min(1e12))))
}

fn audiences(claims: &Map<String, Value>) -> Result<Vec<String>, JwtError> {
    match audience_claim(claims) {
        Some(aud) if !aud.is_empty() => Ok(aud.into_iter().map(str::to_owned).collect()),
        _ => Err(JwtError::MissingAudience),
    }
}

impl JwtSvid {
    /// Validates a token per JWT-SVID Appendix A and returns it.
    ///
    /// Order: compact form (JWT-1) → header holds only `alg`/`kid`/`typ`
    /// (JWT-2) → `alg` on the allow-list (JWT-3) → `kid` present (JWT-4) →
    /// `typ` absent, `JWT` or `JOSE` (JWT-5) → `sub` is a SPIFFE ID (JWT-6) →
    /// the JWT bundle of `sub`'s trust domain (JWT-15) → key by `kid`, of the
    /// family `alg` needs → signature → `aud` contains `audience` (JWT-7) →
    /// `exp` after `now` (JWT-8; `exp == now` is expired) → `nbf`, if present,
    /// not after `now`.
    pub fn validate(
        token: &str,
        bundles: &impl JwtBundleLookup,
        audience: &str,
        now: SystemTime,
    ) -> Result<Self, JwtError> {
        let parts = split(token)?;
        let spiffe_id = subject(&parts.claims)?;
        let td = spiffe_id.trust_domain();
        let bundle = bundles.jwt_bundle(td).ok_or_else(|| JwtError::NoBundle {
            trust_domain: td.clone(),
        })?;
        let key = bundle.key(&parts.kid).ok_or_else(|| JwtError::UnknownKid {
            kid: parts.kid.clone(),
            trust_domain: td.clone(),
        })?;
        let sig = b64url(parts.signature).ok_or_else(|| JwtError::Malformed {
            part: "signature",
            reason: "not base64url".into(),
        })?;
        key.verify(parts.alg, parts.signing_input.as_bytes(), &sig)
            .map_err(|f| match f {
                VerifyFail::Mismatch => JwtError::KeyAlgorithmMismatch {
                    kid: parts.kid.clone(),
                    alg: parts.alg,
                },
                VerifyFail::Signature => JwtError::BadSignature,
            })?;
        let svid = Self::from_parts(token, parts, spiffe_id)?;
        if !svid.audience.iter().any(|a| a == audience) {
            return Err(JwtError::AudienceMismatch {
                expected: audience.to_owned(),
            });
        }
        if svid.expiry <= now {
            return Err(JwtError::Expired {
                expired_at: svid.expiry,
            });
        }
        if let Some(not_before) = numeric_date(&svid.claims, "nbf")?
            && not_before > now
        {
            return Err(JwtError::NotYetValid { not_before });
        }
        Ok(svid)
    }

    /// Reads a token without verifying its signature or times: for a
    /// workload's *own* JWT-SVID, received from a trusted Workload API.
    /// Header and claim shape are still checked (JWT-1..JWT-8).
    pub fn parse_insecure(token: &str) -> Result<Self, JwtError> {
        let parts = split(token)?;
        let id = subject(&parts.claims)?;
        Self::from_parts(token, parts, id)
    }

    fn from_parts(token: &str, parts: Parts<'_>, spiffe_id: SpiffeId) -> Result<Self, JwtError> {
        let audience = audiences(&parts.claims)?;
        let expiry = numeric_date(&parts.claims, "exp")?.ok_or(JwtError::MissingExpiry)?;
        // `nbf` and `iat` are checked for shape on every path, so a token
        // with a malformed time claim is refused even where times are not
        // compared (parse_insecure).
        numeric_date(&parts.claims, "nbf")?;
        numeric_date(&parts.claims, "iat")?;
        Ok(JwtSvid {
            token: token.to_owned(),
            spiffe_id,
            audience,
            expiry,
            kid: parts.kid,
            alg: parts.alg,
            claims: parts.claims,
        })
    }

    /// The compact token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The SPIFFE ID in `sub`.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.spiffe_id
    }

    /// The audiences in `aud`.
    pub fn audience(&self) -> &[String] {
        &self.audience
    }

    /// The `exp` claim.
    pub fn expiry(&self) -> SystemTime {
        self.expiry
    }

    /// The header's `kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The header's `alg`.
    pub fn algorithm(&self) -> JwtAlgorithm {
        self.alg
    }

    /// All claims of the payload.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }
}

fn subject(claims: &Map<String, Value>) -> Result<SpiffeId, JwtError> {
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .ok_or(JwtError::MissingSubject)?;
    sub.parse().map_err(JwtError::InvalidSubject)
}
