//! JWT signing keys for tests, able to sign any header and payload (for
//! malformed-token tests), and to publish their public JWK.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    RSA_PKCS1_SHA256, RSA_PSS_SHA256, RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::KeyKind;

/// A JWT signing key.
pub struct TestJwtKey {
    kind: KeyKind,
    pkcs8: Vec<u8>,
}

impl std::fmt::Debug for TestJwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestJwtKey")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl TestJwtKey {
    /// Generates a key.
    pub fn generate(kind: KeyKind) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = match kind {
            KeyKind::P256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .expect("P-256 generation works")
                .as_ref()
                .to_vec(),
            KeyKind::P384 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng)
                .expect("P-384 generation works")
                .as_ref()
                .to_vec(),
            KeyKind::Rsa2048 => RsaKeyPair::generate(KeySize::Rsa2048)
                .expect("RSA generation works")
                .as_der()
                .expect("RSA key encodes")
                .as_ref()
                .to_vec(),
        };
        TestJwtKey { kind, pkcs8 }
    }

    /// The PKCS#8 DER private key.
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The public JWK (no `use`), with `kid`.
    pub fn jwk(&self, kid: &str) -> Value {
        let enc = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        match self.kind {
            KeyKind::P256 | KeyKind::P384 => {
                let (alg, crv, len) = if self.kind == KeyKind::P256 {
                    (&ECDSA_P256_SHA256_FIXED_SIGNING, "P-256", 32)
                } else {
                    (&ECDSA_P384_SHA384_FIXED_SIGNING, "P-384", 48)
                };
                let kp = EcdsaKeyPair::from_pkcs8(alg, &self.pkcs8).expect("own key loads");
                let pt = kp.public_key().as_ref();
                json!({"kty": "EC", "kid": kid, "crv": crv,
                       "x": enc(&pt[1..1 + len]), "y": enc(&pt[1 + len..])})
            }
            KeyKind::Rsa2048 => {
                let kp = RsaKeyPair::from_pkcs8(&self.pkcs8).expect("own key loads");
                let (n, e) = rsa_components(kp.public_key().as_ref());
                json!({"kty": "RSA", "kid": kid, "n": enc(&n), "e": enc(&e)})
            }
        }
    }

    /// Signs `input` the way `alg` says (ES256/ES384 fixed, RS256, PS256).
    pub fn sign(&self, alg: &str, input: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self.kind {
            KeyKind::P256 | KeyKind::P384 => {
                let a = if self.kind == KeyKind::P256 {
                    &ECDSA_P256_SHA256_FIXED_SIGNING
                } else {
                    &ECDSA_P384_SHA384_FIXED_SIGNING
                };
                let kp = EcdsaKeyPair::from_pkcs8(a, &self.pkcs8).expect("own key loads");
                kp.sign(&rng, input)
                    .expect("signing works")
                    .as_ref()
                    .to_vec()
            }
            KeyKind::Rsa2048 => {
                let kp = RsaKeyPair::from_pkcs8(&self.pkcs8).expect("own key loads");
                let pad = if alg.starts_with("PS") {
                    &RSA_PSS_SHA256
                } else {
                    &RSA_PKCS1_SHA256
                };
                let mut sig = vec![0; kp.public_modulus_len()];
                kp.sign(pad, &rng, input, &mut sig).expect("signing works");
                sig
            }
        }
    }
}

/// Reads n and e from a DER RSAPublicKey (SEQUENCE of two INTEGERs).
fn rsa_components(der: &[u8]) -> (Vec<u8>, Vec<u8>) {
    fn read(b: &[u8]) -> (&[u8], &[u8]) {
        // tag, length, value
        let (len, hdr) = if b[1] < 0x80 {
            (b[1] as usize, 2)
        } else {
            let n = (b[1] & 0x7f) as usize;
            (
                b[2..2 + n].iter().fold(0usize, |a, &x| a << 8 | x as usize),
                2 + n,
            )
        };
        (&b[hdr..hdr + len], &b[hdr + len..])
    }
    let (seq, _) = read(der);
    let (n, rest) = read(seq);
    let (e, _) = read(rest);
    let strip = |v: &[u8]| v.strip_prefix(&[0]).unwrap_or(v).to_vec();
    (strip(n), strip(e))
}

/// Builds a compact JWS from any header and payload, signed by `key` with the
/// header's `alg` (or with a bogus signature when `key` is `None`).
pub fn sign_raw(header: &Value, payload: &Value, key: Option<&TestJwtKey>) -> String {
    let mut token = URL_SAFE_NO_PAD.encode(header.to_string());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(payload.to_string()));
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("ES256");
    let sig = match key {
        Some(k) => k.sign(alg, token.as_bytes()),
        None => vec![0u8; 64],
    };
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(sig));
    token
}
