//! Signing keys: generation, restoring from PKCS#8, and their public forms.

use rcgen::{
    KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_RSA_SHA256, PublicKeyData,
    RsaKeySize, SignatureAlgorithm,
};
use rustls_pki_types::PrivatePkcs8KeyDer;
use spiffe_core::PrivateKey;
use spiffe_core::jwt::JwtSigner;
use spiffe_core::x509::KeyAlgorithm;
use zeroize::{Zeroize, Zeroizing};

/// The key types the authority can sign with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum KeyType {
    /// ECDSA on NIST P-256 with SHA-256 (the default; ES256 for JWTs).
    #[default]
    EcP256,
    /// ECDSA on NIST P-384 with SHA-384 (ES384 for JWTs).
    EcP384,
    /// RSA with a 2048-bit modulus, PKCS#1 v1.5 with SHA-256 (RS256 for JWTs).
    Rsa2048,
}

/// Why a key could not be generated or loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The crypto library refused to generate a key.
    #[error("key generation failed for {key_type:?}")]
    Generate {
        /// The requested key type.
        key_type: KeyType,
    },
    /// The PKCS#8 bytes are not a key of a supported type.
    #[error("the private key is not a supported PKCS#8 EC P-256, P-384 or RSA key")]
    Unsupported,
}

/// An rcgen key pair whose PKCS#8 copy is zeroized on drop (rcgen keeps a
/// plain `Vec<u8>` of it; the aws-lc-rs half clears its own memory).
pub(crate) struct SecretKeyPair(KeyPair);

impl Drop for SecretKeyPair {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl From<KeyPair> for SecretKeyPair {
    fn from(pair: KeyPair) -> Self {
        SecretKeyPair(pair)
    }
}

impl SecretKeyPair {
    /// A copy of the PKCS#8 DER, zeroized on drop.
    pub(crate) fn pkcs8_der(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.0.serialize_der())
    }

    /// The raw public key (for comparing with a certificate's).
    pub(crate) fn public_key_raw(&self) -> &[u8] {
        self.0.public_key_raw()
    }
}

impl PublicKeyData for SecretKeyPair {
    fn der_bytes(&self) -> &[u8] {
        self.0.der_bytes()
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        PublicKeyData::algorithm(&self.0)
    }
}

impl rcgen::SigningKey for SecretKeyPair {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.0.sign(msg)
    }
}

/// A signing key in both forms the crate needs: rcgen's (for certificates)
/// and spiffe-core's (for SVIDs and JWTs). Both zeroize their copy of the
/// private key on drop; `Debug` never shows the key.
pub(crate) struct SigningKey {
    pub(crate) pair: SecretKeyPair,
    pub(crate) private: PrivateKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("algorithm", &self.private.algorithm())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generates a fresh key of `key_type`.
    pub(crate) fn generate(key_type: KeyType) -> Result<Self, KeyError> {
        let pair = match key_type {
            KeyType::EcP256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256),
            KeyType::EcP384 => KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384),
            KeyType::Rsa2048 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048),
        }
        .map_err(|_| KeyError::Generate { key_type })?;
        let pair = SecretKeyPair(pair);
        let der = pair.pkcs8_der();
        let private = PrivateKey::from_pkcs8_der(&der).map_err(|_| KeyError::Unsupported)?;
        Ok(SigningKey { pair, private })
    }

    /// Restores a key from PKCS#8 DER.
    pub(crate) fn from_pkcs8(der: &[u8]) -> Result<Self, KeyError> {
        let private = PrivateKey::from_pkcs8_der(der).map_err(|_| KeyError::Unsupported)?;
        let alg = match private.algorithm() {
            KeyAlgorithm::EcdsaP256 => &PKCS_ECDSA_P256_SHA256,
            KeyAlgorithm::EcdsaP384 => &PKCS_ECDSA_P384_SHA384,
            KeyAlgorithm::Rsa => &PKCS_RSA_SHA256,
            _ => return Err(KeyError::Unsupported),
        };
        // Borrowed, not copied: rcgen keeps its own copy, zeroized on drop.
        let pair = KeyPair::from_pkcs8_der_and_sign_algo(&PrivatePkcs8KeyDer::from(der), alg)
            .map_err(|_| KeyError::Unsupported)?;
        Ok(SigningKey {
            pair: SecretKeyPair(pair),
            private,
        })
    }

    /// A JWT-SVID signer over this key, loaded once.
    pub(crate) fn jwt_signer(&self) -> Result<JwtSigner, KeyError> {
        JwtSigner::new(&self.private).map_err(|_| KeyError::Unsupported)
    }
}

/// `N` random bytes from the system generator; `None` only if the operating
/// system has no entropy source.
pub(crate) fn random<const N: usize>() -> Option<[u8; N]> {
    let mut buf = [0u8; N];
    aws_lc_rs::rand::fill(&mut buf).ok()?;
    Some(buf)
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `SecretKeyPair`'s `Drop` relies on rcgen's `Zeroize` clearing the
    /// key pair's PKCS#8 copy; this checks that it does.
    #[test]
    fn zeroizing_a_key_pair_clears_its_pkcs8_copy() {
        let mut pair = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        assert!(pair.serialize_der().iter().any(|b| *b != 0));
        pair.zeroize();
        assert!(pair.serialize_der().iter().all(|b| *b == 0));
    }

    #[test]
    fn signing_key_round_trips_through_pkcs8_for_every_key_type() {
        for kt in [KeyType::EcP256, KeyType::EcP384, KeyType::Rsa2048] {
            let key = SigningKey::generate(kt).unwrap();
            let der = key.pair.pkcs8_der();
            let back = SigningKey::from_pkcs8(&der).unwrap();
            assert_eq!(back.pair.public_key_raw(), key.pair.public_key_raw());
            assert!(!format!("{key:?}").contains(&hex(&der[..16])));
        }
    }
}
