//! Key slots: one CA key (X.509) or JWT signing key, and its lifecycle state.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyUsagePurpose, SanType,
    SerialNumber,
};
use rustls_pki_types::CertificateDer;
use spiffe_core::PrivateKey;
use spiffe_core::jwt::JwtSigner;

use super::CaError;
use crate::CaConfig;
use crate::keys::{self, SecretKeyPair, SigningKey};

/// Which kind of signing key a slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SlotKind {
    /// An X.509 CA key and certificate (signs X509-SVIDs).
    X509,
    /// A JWT signing key (signs JWT-SVIDs).
    Jwt,
}

/// Where a key is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SlotState {
    /// Published in the bundle, not yet signing.
    Prepared,
    /// Signing new SVIDs.
    Active,
    /// Replaced; still published until it expires (or is revoked).
    Old,
}

/// A public description of one key slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorityInfo {
    /// Slot id; for JWT keys this is the `kid`.
    pub id: String,
    /// X.509 or JWT.
    pub kind: SlotKind,
    /// Lifecycle state.
    pub state: SlotState,
    /// Whether an operator tainted the key (SVIDs it signed should be
    /// replaced); a tainted key can then be revoked.
    pub tainted: bool,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity; the key leaves the bundle then.
    pub not_after: SystemTime,
    /// The CA certificate (X.509 slots only).
    pub certificate: Option<CertificateDer<'static>>,
}

/// The secret half of a slot, shared read-only by issuance.
pub(crate) struct Material {
    pub(crate) private: PrivateKey,
    pub(crate) signer: Signer,
}

pub(crate) enum Signer {
    X509 {
        issuer: Box<Issuer<'static, SecretKeyPair>>,
        /// Certificates appended after the leaf: our CA certificate and the
        /// upstream chain, when running under an upstream CA.
        chain_tail: Vec<CertificateDer<'static>>,
    },
    Jwt {
        /// Loaded once; signs every JWT-SVID of this slot.
        signer: JwtSigner,
    },
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Material")
            .field("algorithm", &self.private.algorithm())
            .finish_non_exhaustive()
    }
}

/// A slot: its description and its key.
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    pub(crate) info: AuthorityInfo,
    pub(crate) material: Arc<Material>,
}

/// Truncates to whole seconds, the resolution of certificates and JWTs.
pub(crate) fn whole_secs(t: SystemTime) -> SystemTime {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    UNIX_EPOCH + Duration::from_secs(secs)
}

pub(crate) fn random_serial() -> Result<SerialNumber, CaError> {
    keys::random::<16>()
        .map(|b| SerialNumber::from_slice(&b))
        .ok_or(CaError::Random)
}

fn new_id() -> Result<String, CaError> {
    keys::random::<16>()
        .map(|b| keys::hex(&b))
        .ok_or(CaError::Random)
}

impl Slot {
    /// Generates a new slot of `kind`, valid from `now` for the CA TTL (cut
    /// to the upstream CA's expiry).
    pub(crate) fn generate(
        kind: SlotKind,
        config: &CaConfig,
        now: SystemTime,
    ) -> Result<Slot, CaError> {
        let now = whole_secs(now);
        let mut not_after = now + config.ca_ttl;
        if let Some(up) = &config.upstream {
            not_after = not_after.min(whole_secs(up.not_after()));
        }
        let id = new_id()?;
        match kind {
            SlotKind::X509 => {
                let key = SigningKey::generate(config.x509_key_type)?;
                let not_before = now.checked_sub(config.backdate).unwrap_or(now);
                let mut params = CertificateParams::default();
                params.distinguished_name = rcgen::DistinguishedName::new();
                params
                    .distinguished_name
                    .push(DnType::OrganizationName, config.trust_domain.as_str());
                params
                    .distinguished_name
                    .push(DnType::CommonName, id.as_str());
                params.not_before = not_before.into();
                params.not_after = not_after.into();
                params.serial_number = Some(random_serial()?);
                params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
                params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
                let td_uri = config.trust_domain.id_str();
                params.subject_alt_names = vec![SanType::URI(
                    td_uri.try_into().map_err(|_| CaError::Certificate)?,
                )];
                let cert = match &config.upstream {
                    None => params.self_signed(&key.pair),
                    Some(up) => {
                        params.use_authority_key_identifier_extension = true;
                        params.signed_by(&key.pair, up.issuer())
                    }
                }
                .map_err(|_| CaError::Certificate)?;
                let cert = cert.der().clone();
                let info = AuthorityInfo {
                    id,
                    kind,
                    state: SlotState::Prepared,
                    tainted: false,
                    not_before,
                    not_after,
                    certificate: Some(cert),
                };
                Slot::restore(info, key, config)
            }
            SlotKind::Jwt => {
                let key = SigningKey::generate(config.jwt_key_type)?;
                let info = AuthorityInfo {
                    id,
                    kind,
                    state: SlotState::Prepared,
                    tainted: false,
                    not_before: now,
                    not_after,
                    certificate: None,
                };
                Slot::restore(info, key, config)
            }
        }
    }

    /// Rebuilds a slot from its description and key (after a restart).
    pub(crate) fn restore(
        info: AuthorityInfo,
        key: SigningKey,
        config: &CaConfig,
    ) -> Result<Slot, CaError> {
        let private = key.private.clone();
        let signer = match (&info.kind, &info.certificate) {
            (SlotKind::X509, Some(cert)) => {
                if !cert_matches_key(cert, &key) {
                    return Err(CaError::JournalKeyMismatch {
                        id: info.id.clone(),
                    });
                }
                let issuer =
                    Issuer::from_ca_cert_der(cert, key.pair).map_err(|_| CaError::Certificate)?;
                let chain_tail = match &config.upstream {
                    None => Vec::new(),
                    Some(up) => std::iter::once(cert.clone())
                        .chain(
                            up.chain()
                                .iter()
                                .filter(|c| !up.roots().contains(c))
                                .cloned(),
                        )
                        .collect(),
                };
                Signer::X509 {
                    issuer: Box::new(issuer),
                    chain_tail,
                }
            }
            (SlotKind::X509, None) => return Err(CaError::Certificate),
            (SlotKind::Jwt, _) => Signer::Jwt {
                signer: key.jwt_signer()?,
            },
        };
        Ok(Slot {
            info,
            material: Arc::new(Material { private, signer }),
        })
    }
}

fn cert_matches_key(cert: &CertificateDer<'_>, key: &SigningKey) -> bool {
    use x509_parser::prelude::{FromDer, X509Certificate};
    X509Certificate::from_der(cert)
        .is_ok_and(|(_, c)| *c.public_key().subject_public_key.data == *key.pair.public_key_raw())
}
