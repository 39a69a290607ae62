//! Producing JWT-SVIDs: header `alg`/`kid`/`typ: JWT` only (JWT-2, JWT-4, JWT-5).

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING,
    ECDSA_P521_SHA512_FIXED_SIGNING, EcdsaKeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use super::{JwtAlgorithm, JwtError};
use crate::SpiffeId;
use crate::x509::{KeyAlgorithm, PrivateKey};

/// The claims of a JWT-SVID to be signed.
#[derive(Debug, Clone, PartialEq)]
pub struct JwtClaims {
    /// `sub`: the workload's SPIFFE ID (JWT-6).
    pub subject: SpiffeId,
    /// `aud`: at least one audience (JWT-7).
    pub audience: Vec<String>,
    /// `exp` (JWT-8).
    pub expiry: SystemTime,
    /// `iat`.
    pub issued_at: SystemTime,
    /// `iss`, when the authority is configured with one.
    pub issuer: Option<String>,
    /// Further claims (JWT-9); must not repeat the registered ones above.
    pub extra: Map<String, Value>,
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Signs a JWT-SVID with `key` (P-256 → ES256, P-384 → ES384, P-521 →
/// ES512, RSA → RS256) under `kid`, returning the compact token.
pub fn sign_jwt_svid(key: &PrivateKey, kid: &str, claims: &JwtClaims) -> Result<String, JwtError> {
    if claims.audience.is_empty() {
        return Err(JwtError::MissingAudience);
    }
    let alg = match key.algorithm() {
        KeyAlgorithm::EcdsaP256 => JwtAlgorithm::ES256,
        KeyAlgorithm::EcdsaP384 => JwtAlgorithm::ES384,
        KeyAlgorithm::EcdsaP521 => JwtAlgorithm::ES512,
        KeyAlgorithm::Rsa => JwtAlgorithm::RS256,
        _ => {
            return Err(JwtError::Signing {
                reason: "key algorithm is not on the JWT-SVID allow-list",
            });
        }
    };
    let header = json!({"alg": alg.as_str(), "kid": kid, "typ": "JWT"});
    let mut payload = claims.extra.clone();
    payload.insert("sub".into(), Value::String(claims.subject.to_string()));
    payload.insert("aud".into(), json!(claims.audience));
    payload.insert("exp".into(), json!(secs(claims.expiry)));
    payload.insert("iat".into(), json!(secs(claims.issued_at)));
    if let Some(iss) = &claims.issuer {
        payload.insert("iss".into(), Value::String(iss.clone()));
    }
    let mut token = URL_SAFE_NO_PAD.encode(header.to_string());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(Value::Object(payload).to_string()));
    let sig = sign(key, token.as_bytes())?;
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(sig));
    Ok(token)
}

fn sign(key: &PrivateKey, msg: &[u8]) -> Result<Vec<u8>, JwtError> {
    let rng = SystemRandom::new();
    let fail = |_| JwtError::Signing {
        reason: "signing failed",
    };
    let ec = match key.algorithm() {
        KeyAlgorithm::EcdsaP256 => Some(&ECDSA_P256_SHA256_FIXED_SIGNING),
        KeyAlgorithm::EcdsaP384 => Some(&ECDSA_P384_SHA384_FIXED_SIGNING),
        KeyAlgorithm::EcdsaP521 => Some(&ECDSA_P521_SHA512_FIXED_SIGNING),
        _ => None,
    };
    if let Some(alg) = ec {
        let kp = EcdsaKeyPair::from_pkcs8(alg, key.pkcs8_der()).map_err(|_| JwtError::Signing {
            reason: "key does not load",
        })?;
        return kp
            .sign(&rng, msg)
            .map(|s| s.as_ref().to_vec())
            .map_err(fail);
    }
    let kp = RsaKeyPair::from_pkcs8(key.pkcs8_der()).map_err(|_| JwtError::Signing {
        reason: "key does not load",
    })?;
    let mut sig = vec![0; kp.public_modulus_len()];
    kp.sign(&RSA_PKCS1_SHA256, &rng, msg, &mut sig)
        .map_err(fail)?;
    Ok(sig)
}
