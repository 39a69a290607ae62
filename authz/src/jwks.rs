//! JWT signature verification against a provider's inline JWKS (RA-2).

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::jwt::JwtFailure;

/// Parses an inline `jwks` document.
pub(crate) fn parse_jwks(text: &str) -> Option<JwkSet> {
    serde_json::from_str(text).ok()
}

/// Reads the payload without checking the signature, to route the token to
/// the providers of its issuer. The same reading as JWT-SVID validation
/// (spiffe-core's `unverified_payload`).
pub(crate) fn peek_claims(token: &str) -> Result<Map<String, Value>, JwtFailure> {
    spiffe_core::jwt::unverified_payload(token).ok_or(JwtFailure::Malformed)
}

/// Verifies the signature with the key named by `kid` (or any key when the
/// token has none). Times and audiences are checked by the caller.
pub(crate) fn verify(token: &str, keys: &JwkSet) -> Result<Map<String, Value>, JwtFailure> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| JwtFailure::Malformed)?;
    let mut validation = Validation::new(header.alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let candidates = keys
        .keys
        .iter()
        .filter(|k| header.kid.is_none() || k.common.key_id == header.kid);
    for jwk in candidates {
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        if let Ok(data) = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation) {
            return Ok(data.claims);
        }
    }
    Err(JwtFailure::VerificationFailed)
}
