//! Producing JWT-SVIDs: header `alg`/`kid`/`typ: JWT` only (JWT-2, JWT-4, JWT-5).

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING,
    ECDSA_P521_SHA512_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use super::{EcCurve, JwtAlgorithm, JwtError, JwtKey};
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

/// Signs JWT-SVIDs with one key, loaded once: P-256 → ES256, P-384 →
/// ES384, P-521 → ES512, RSA → RS256. The header holds only `alg`, `kid`
/// and `typ: JWT` (JWT-2, JWT-4, JWT-5).
///
/// ```
/// # fn demo(key: &spiffe_core::PrivateKey, claims: &spiffe_core::jwt::JwtClaims)
/// #     -> Result<(), spiffe_core::JwtError> {
/// use spiffe_core::jwt::JwtSigner;
/// let signer = JwtSigner::new(key)?;
/// let token = signer.sign("key-1", claims)?;
/// # Ok(()) }
/// ```
pub struct JwtSigner {
    alg: JwtAlgorithm,
    key: SignerKey,
    public: JwtKey,
    rng: SystemRandom,
}

enum SignerKey {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

impl JwtSigner {
    /// Loads `key` for signing.
    pub fn new(key: &PrivateKey) -> Result<Self, JwtError> {
        let load_fail = |_| JwtError::Signing {
            reason: "key does not load",
        };
        let ec = |alg| {
            EcdsaKeyPair::from_pkcs8(alg, key.pkcs8_der())
                .map(SignerKey::Ec)
                .map_err(load_fail)
        };
        let (alg, key) = match key.algorithm() {
            KeyAlgorithm::EcdsaP256 => (JwtAlgorithm::ES256, ec(&ECDSA_P256_SHA256_FIXED_SIGNING)?),
            KeyAlgorithm::EcdsaP384 => (JwtAlgorithm::ES384, ec(&ECDSA_P384_SHA384_FIXED_SIGNING)?),
            KeyAlgorithm::EcdsaP521 => (JwtAlgorithm::ES512, ec(&ECDSA_P521_SHA512_FIXED_SIGNING)?),
            KeyAlgorithm::Rsa => (
                JwtAlgorithm::RS256,
                SignerKey::Rsa(RsaKeyPair::from_pkcs8(key.pkcs8_der()).map_err(load_fail)?),
            ),
            _ => {
                return Err(JwtError::Signing {
                    reason: "key algorithm is not on the JWT-SVID allow-list",
                });
            }
        };
        let public = match &key {
            SignerKey::Ec(kp) => JwtKey::Ec {
                curve: match alg {
                    JwtAlgorithm::ES384 => EcCurve::P384,
                    JwtAlgorithm::ES512 => EcCurve::P521,
                    _ => EcCurve::P256,
                },
                point: kp.public_key().as_ref().to_vec(),
            },
            SignerKey::Rsa(kp) => {
                rsa_public_key(kp.public_key().as_ref()).ok_or(JwtError::Signing {
                    reason: "RSA public key does not encode",
                })?
            }
        };
        Ok(JwtSigner {
            alg,
            key,
            public,
            rng: SystemRandom::new(),
        })
    }

    /// The algorithm this signer uses.
    pub fn algorithm(&self) -> JwtAlgorithm {
        self.alg
    }

    /// The public key, for publishing in a JWT bundle.
    pub fn public_key(&self) -> &JwtKey {
        &self.public
    }

    /// Signs a JWT-SVID under `kid`, returning the compact token.
    pub fn sign(&self, kid: &str, claims: &JwtClaims) -> Result<String, JwtError> {
        if claims.audience.is_empty() {
            return Err(JwtError::MissingAudience);
        }
        let header = json!({"alg": self.alg.as_str(), "kid": kid, "typ": "JWT"});
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
        let fail = |_| JwtError::Signing {
            reason: "signing failed",
        };
        let sig = match &self.key {
            SignerKey::Ec(kp) => kp
                .sign(&self.rng, token.as_bytes())
                .map_err(fail)?
                .as_ref()
                .to_vec(),
            SignerKey::Rsa(kp) => {
                let mut sig = vec![0; kp.public_modulus_len()];
                kp.sign(&RSA_PKCS1_SHA256, &self.rng, token.as_bytes(), &mut sig)
                    .map_err(fail)?;
                sig
            }
        };
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(sig));
        Ok(token)
    }
}

impl std::fmt::Debug for JwtSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSigner")
            .field("algorithm", &self.alg)
            .finish_non_exhaustive()
    }
}

/// Reads `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }`.
pub(crate) fn rsa_public_key(der: &[u8]) -> Option<JwtKey> {
    use crate::x509::{Reader, tag};
    let mut seq = Reader::new(Reader::new(der).expect(tag::SEQUENCE)?);
    let n = seq.expect(tag::INTEGER)?;
    let e = seq.expect(tag::INTEGER)?;
    Some(JwtKey::Rsa {
        n: n.strip_prefix(&[0]).unwrap_or(n).to_vec(),
        e: e.to_vec(),
    })
}

/// Signs one JWT-SVID with `key`; see [`JwtSigner`], which loads the key
/// once for many tokens.
pub fn sign_jwt_svid(key: &PrivateKey, kid: &str, claims: &JwtClaims) -> Result<String, JwtError> {
    JwtSigner::new(key)?.sign(kid, claims)
}
