//! [`PrivateKey`]: a PKCS#8 key that zeroizes on drop and never prints.

use std::fmt;

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING, ECDSA_P521_SHA512_ASN1_SIGNING,
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair,
};
use rustls_pki_types::PrivatePkcs8KeyDer;
use zeroize::Zeroizing;

use super::X509Error;

/// An unencrypted PKCS#8 private key (DER).
///
/// The bytes are wiped from memory when the key is dropped, and `Debug`
/// prints only the algorithm, never the key.
#[derive(Clone)]
pub struct PrivateKey {
    der: Zeroizing<Vec<u8>>,
    alg: KeyAlgorithm,
}

/// The algorithm family of a key, as far as this crate needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyAlgorithm {
    /// ECDSA on NIST P-256.
    EcdsaP256,
    /// ECDSA on NIST P-384.
    EcdsaP384,
    /// ECDSA on NIST P-521.
    EcdsaP521,
    /// RSA.
    Rsa,
    /// Ed25519.
    Ed25519,
}

impl PrivateKey {
    /// Parses a PKCS#8 DER key, refusing anything aws-lc-rs cannot load.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, X509Error> {
        let (alg, _) = load(der)?;
        Ok(PrivateKey {
            der: Zeroizing::new(der.to_vec()),
            alg,
        })
    }

    /// The key's algorithm family.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.alg
    }

    /// The PKCS#8 DER bytes. Handle with care.
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.der
    }

    /// A copy in the form rustls takes.
    pub fn to_pkcs8_der(&self) -> PrivatePkcs8KeyDer<'static> {
        PrivatePkcs8KeyDer::from(self.der.to_vec())
    }

    /// The public key in the form JWT bundles hold, for keys that can sign
    /// JWT-SVIDs (EC P-256/P-384/P-521 and RSA).
    pub fn jwt_key(&self) -> Result<crate::jwt::JwtKey, crate::JwtError> {
        crate::jwt::JwtSigner::new(self).map(|s| s.public_key().clone())
    }

    /// The raw public key (the contents of a certificate's subjectPublicKey).
    pub(crate) fn public_key_bytes(&self) -> Result<Vec<u8>, X509Error> {
        load(&self.der).map(|(_, pk)| pk)
    }
}

fn load(der: &[u8]) -> Result<(KeyAlgorithm, Vec<u8>), X509Error> {
    let ec = [
        (KeyAlgorithm::EcdsaP256, &ECDSA_P256_SHA256_ASN1_SIGNING),
        (KeyAlgorithm::EcdsaP384, &ECDSA_P384_SHA384_ASN1_SIGNING),
        (KeyAlgorithm::EcdsaP521, &ECDSA_P521_SHA512_ASN1_SIGNING),
    ];
    for (alg, signing) in ec {
        if let Ok(kp) = EcdsaKeyPair::from_pkcs8(signing, der) {
            return Ok((alg, kp.public_key().as_ref().to_vec()));
        }
    }
    if let Ok(kp) = RsaKeyPair::from_pkcs8(der) {
        return Ok((KeyAlgorithm::Rsa, kp.public_key().as_ref().to_vec()));
    }
    if let Ok(kp) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
        return Ok((KeyAlgorithm::Ed25519, kp.public_key().as_ref().to_vec()));
    }
    Err(X509Error::UnsupportedKey)
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("algorithm", &self.alg)
            .field("der", &"<redacted>")
            .finish()
    }
}

impl PartialEq for PrivateKey {
    fn eq(&self, other: &Self) -> bool {
        *self.der == *other.der
    }
}

impl Eq for PrivateKey {}
