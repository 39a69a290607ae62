//! JSON Web Keys (RFC 7517) as used in SPIFFE bundles, and the public keys
//! they carry.

use aws_lc_rs::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::{JwtAlgorithm, JwtError};

/// Decodes unpadded base64url.
pub(crate) fn b64url(input: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(input).ok()
}

/// One JSON Web Key, with the parameters SPIFFE bundles use. Unknown
/// parameters are ignored on input and not emitted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Key type: `EC`, `RSA`, ... (BUN-9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kty: Option<String>,
    /// Key id (required for JWT keys, forbidden for X.509 ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Public key use: `x509-svid` or `jwt-svid` in SPIFFE bundles.
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    /// EC curve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// EC x coordinate, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// EC y coordinate, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// RSA modulus, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// RSA exponent, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    /// X.509 certificate chain, standard base64 DER.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x5c: Option<Vec<String>>,
}

/// A public key that can verify JWT-SVID signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwtKey {
    /// An EC key: the curve's coordinate size and the uncompressed point.
    Ec {
        /// `P-256`, `P-384` or `P-521`.
        curve: EcCurve,
        /// `0x04 || x || y`.
        point: Vec<u8>,
    },
    /// An RSA key.
    Rsa {
        /// Big-endian modulus.
        n: Vec<u8>,
        /// Big-endian public exponent.
        e: Vec<u8>,
    },
}

/// The NIST curves JWT-SVIDs may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EcCurve {
    /// NIST P-256 (ES256).
    P256,
    /// NIST P-384 (ES384).
    P384,
    /// NIST P-521 (ES512).
    P521,
}

impl EcCurve {
    fn coordinate_len(self) -> usize {
        match self {
            EcCurve::P256 => 32,
            EcCurve::P384 => 48,
            EcCurve::P521 => 66,
        }
    }

    /// The JWK `crv` name.
    pub fn name(self) -> &'static str {
        match self {
            EcCurve::P256 => "P-256",
            EcCurve::P384 => "P-384",
            EcCurve::P521 => "P-521",
        }
    }
}

impl JwtKey {
    /// Reads the public key of a JWK. `Ok(None)` for a key type this crate
    /// does not use (ignored, per BUN-7).
    pub fn from_jwk(jwk: &Jwk) -> Result<Option<Self>, JwtError> {
        let kid = || jwk.kid.clone().unwrap_or_default();
        let invalid = |reason| JwtError::InvalidKey { kid: kid(), reason };
        match jwk.kty.as_deref() {
            Some("EC") => {
                let curve = match jwk.crv.as_deref() {
                    Some("P-256") => EcCurve::P256,
                    Some("P-384") => EcCurve::P384,
                    Some("P-521") => EcCurve::P521,
                    _ => return Err(invalid("unsupported or missing crv")),
                };
                let coord = |v: &Option<String>| {
                    v.as_deref()
                        .and_then(b64url)
                        .filter(|c| c.len() == curve.coordinate_len())
                };
                let (Some(x), Some(y)) = (coord(&jwk.x), coord(&jwk.y)) else {
                    return Err(invalid("EC coordinates missing or of the wrong size"));
                };
                let mut point = Vec::with_capacity(1 + 2 * x.len());
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                Ok(Some(JwtKey::Ec { curve, point }))
            }
            Some("RSA") => {
                let n = jwk.n.as_deref().and_then(b64url).filter(|n| !n.is_empty());
                let e = jwk.e.as_deref().and_then(b64url).filter(|e| !e.is_empty());
                match (n, e) {
                    (Some(n), Some(e)) => Ok(Some(JwtKey::Rsa { n, e })),
                    _ => Err(invalid("RSA n or e missing or not base64url")),
                }
            }
            Some(_) => Ok(None),
            None => Err(JwtError::InvalidJwks {
                reason: "a key has no kty (BUN-9)".into(),
            }),
        }
    }

    /// Reads a DER SubjectPublicKeyInfo (EC on P-256/P-384/P-521, or RSA).
    pub fn from_spki_der(spki: &[u8]) -> Result<Self, JwtError> {
        use crate::x509::{OID_EC_PUBLIC_KEY, OID_P256, OID_P384, OID_P521, OID_RSA, Reader, tag};
        let invalid = |reason| JwtError::InvalidKey {
            kid: String::new(),
            reason,
        };
        let read = || {
            let mut spki = Reader::new(Reader::new(spki).expect(tag::SEQUENCE)?);
            let mut alg = Reader::new(spki.expect(tag::SEQUENCE)?);
            let oid = alg.expect(tag::OID)?;
            let params = alg.optional(tag::OID)?;
            let bits = spki.expect(tag::BIT_STRING)?.split_first()?.1;
            Some((oid, params, bits))
        };
        let (oid, params, bits) = read().ok_or(invalid("not a DER SubjectPublicKeyInfo"))?;
        if oid == OID_EC_PUBLIC_KEY {
            let curve = match params {
                Some(OID_P256) => EcCurve::P256,
                Some(OID_P384) => EcCurve::P384,
                Some(OID_P521) => EcCurve::P521,
                _ => return Err(invalid("unsupported EC curve")),
            };
            if bits.len() != 1 + 2 * curve.coordinate_len() || bits.first() != Some(&4) {
                return Err(invalid("EC point is not uncompressed or of the wrong size"));
            }
            Ok(JwtKey::Ec {
                curve,
                point: bits.to_vec(),
            })
        } else if oid == OID_RSA {
            super::rsa_public_key(bits).ok_or(invalid("RSA public key is malformed"))
        } else {
            Err(invalid("key type cannot sign JWT-SVIDs"))
        }
    }

    /// The JWK form of this key (public parameters only), with `kid`.
    pub fn to_jwk(&self, kid: &str) -> Jwk {
        let enc = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        let mut jwk = Jwk {
            kid: Some(kid.to_owned()),
            ..Jwk::default()
        };
        match self {
            JwtKey::Ec { curve, point } => {
                let len = curve.coordinate_len();
                jwk.kty = Some("EC".into());
                jwk.crv = Some(curve.name().into());
                jwk.x = point.get(1..1 + len).map(enc);
                jwk.y = point.get(1 + len..).map(enc);
            }
            JwtKey::Rsa { n, e } => {
                jwk.kty = Some("RSA".into());
                jwk.n = Some(enc(n));
                jwk.e = Some(enc(e));
            }
        }
        jwk
    }

    /// Verifies `sig` over `msg` with `alg`, which must fit the key's type.
    pub(crate) fn verify(
        &self,
        alg: JwtAlgorithm,
        msg: &[u8],
        sig: &[u8],
    ) -> Result<(), VerifyFail> {
        use JwtAlgorithm::*;
        match self {
            JwtKey::Ec { curve, point } => {
                let algorithm: &'static signature::EcdsaVerificationAlgorithm = match (alg, curve) {
                    (ES256, EcCurve::P256) => &signature::ECDSA_P256_SHA256_FIXED,
                    (ES384, EcCurve::P384) => &signature::ECDSA_P384_SHA384_FIXED,
                    (ES512, EcCurve::P521) => &signature::ECDSA_P521_SHA512_FIXED,
                    _ => return Err(VerifyFail::Mismatch),
                };
                UnparsedPublicKey::new(algorithm, point)
                    .verify(msg, sig)
                    .map_err(|_| VerifyFail::Signature)
            }
            JwtKey::Rsa { n, e } => {
                let params: &'static signature::RsaParameters = match alg {
                    RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                    RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                    RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                    PS256 => &signature::RSA_PSS_2048_8192_SHA256,
                    PS384 => &signature::RSA_PSS_2048_8192_SHA384,
                    PS512 => &signature::RSA_PSS_2048_8192_SHA512,
                    _ => return Err(VerifyFail::Mismatch),
                };
                RsaPublicKeyComponents { n, e }
                    .verify(params, msg, sig)
                    .map_err(|_| VerifyFail::Signature)
            }
        }
    }
}

/// Why a signature check failed.
pub(crate) enum VerifyFail {
    /// The key type does not fit the algorithm.
    Mismatch,
    /// The signature is wrong.
    Signature,
}
