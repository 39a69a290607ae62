//! Issuance: X509-SVIDs from a CSR or a public key, and JWT-SVIDs.

use std::time::{Duration, SystemTime};

use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData, SanType, SubjectPublicKeyInfo,
};
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer};
use spiffe_core::jwt::JwtClaims;
use spiffe_core::{IdError, JwtError, JwtSvid, PrivateKey, SpiffeId, X509Error, X509Svid};

use crate::authority::{Signer, Slot, random_serial, whole_secs};
use crate::keys::SecretKeyPair;
use crate::{CaError, CertificateAuthority, SlotKind};

/// The largest CSR accepted, in bytes.
pub const MAX_CSR_LEN: usize = 16 * 1024;

/// One identity a caller may receive, with what its SVIDs carry.
/// Usually built from a registration entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entitlement {
    /// The SPIFFE ID.
    pub spiffe_id: SpiffeId,
    /// DNS names for the X509-SVID's DNS SANs (the first is also the CN).
    pub dns_names: Vec<String>,
    /// X509-SVID TTL; the authority's default when `None`.
    pub x509_svid_ttl: Option<Duration>,
    /// JWT-SVID TTL; the authority's default when `None`.
    pub jwt_svid_ttl: Option<Duration>,
}

impl Entitlement {
    /// An entitlement to `spiffe_id` with no DNS names and default TTLs.
    pub fn new(spiffe_id: SpiffeId) -> Self {
        Entitlement {
            spiffe_id,
            dns_names: Vec::new(),
            x509_svid_ttl: None,
            jwt_svid_ttl: None,
        }
    }
}

/// An X509-SVID certificate chain issued for a caller-held key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedX509 {
    /// The identity in the leaf's URI SAN.
    pub spiffe_id: SpiffeId,
    /// Leaf first, then any intermediates (under an upstream CA).
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's notAfter.
    pub not_after: SystemTime,
    /// The id of the CA key that signed it.
    pub authority_id: String,
}

/// Why an SVID was not issued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// The CSR does not parse.
    #[error("the CSR is malformed")]
    MalformedCsr,
    /// The CSR is larger than [`MAX_CSR_LEN`].
    #[error("the CSR is {len} bytes, more than the {MAX_CSR_LEN} allowed")]
    CsrTooLarge {
        /// Its size.
        len: usize,
    },
    /// The CSR's self-signature does not verify.
    #[error("the CSR signature does not verify")]
    CsrSignature,
    /// The CSR asks for an extension other than SAN, key usage, extended
    /// key usage or basic constraints.
    #[error("the CSR requests an unsupported extension")]
    CsrUnsupportedExtension,
    /// The CSR asks for cA=true.
    #[error("the CSR requests a CA certificate (cA=true); only leaf SVIDs are issued")]
    CsrRequestsCa,
    /// The CSR names no SPIFFE ID (X509-1).
    #[error("the CSR has no URI SAN naming the requested SPIFFE ID")]
    CsrNoIdentity,
    /// The CSR names more than one URI (X509-1).
    #[error("the CSR has {count} URI SANs; exactly one is allowed")]
    CsrMultipleIdentities {
        /// How many.
        count: usize,
    },
    /// The requested URI is not a valid SPIFFE ID.
    #[error("the requested identity is not a SPIFFE ID: {0}")]
    InvalidRequestedId(#[from] IdError),
    /// The caller may not have the requested identity.
    #[error("the caller is not entitled to {requested}")]
    NotEntitled {
        /// The identity asked for.
        requested: SpiffeId,
    },
    /// The CSR asks for a DNS name its entitlement does not carry.
    #[error("the caller is not entitled to DNS name {name:?}")]
    DnsNotEntitled {
        /// The name asked for.
        name: String,
    },
    /// An entitlement or request carries a DNS name that cannot be encoded.
    #[error("invalid DNS name {name:?}")]
    InvalidDnsName {
        /// The name.
        name: String,
    },
    /// The identity has no path (X509-7) or is outside the trust domain.
    #[error("{id} cannot be issued by this authority (root ID or foreign trust domain)")]
    IdentityNotIssuable {
        /// The identity.
        id: SpiffeId,
    },
    /// The SubjectPublicKeyInfo does not parse.
    #[error("the public key is malformed or of an unsupported type")]
    MalformedPublicKey,
    /// The authority failed.
    #[error(transparent)]
    Authority(#[from] CaError),
    /// Building the certificate failed.
    #[error("certificate signing failed")]
    Signing,
    /// The issued certificate failed spiffe-core's own X509-SVID checks.
    #[error("issued SVID rejected: {0}")]
    Svid(#[from] X509Error),
    /// JWT-SVID signing failed.
    #[error("JWT-SVID: {0}")]
    Jwt(#[from] JwtError),
}

impl CertificateAuthority {
    /// Signs an X509-SVID for the key in a PKCS#10 `csr` (DER).
    ///
    /// The CSR's signature must verify; it must name exactly one URI SAN,
    /// the SPIFFE ID requested, which must be one of `entitled`; any DNS
    /// SANs it asks for must be among that entitlement's names; it must not
    /// ask for cA=true. The SVID carries the entitlement's DNS names.
    pub fn sign_csr(&self, csr: &[u8], entitled: &[Entitlement]) -> Result<IssuedX509, IssueError> {
        let req = parse_csr(csr)?;
        let mut uris = Vec::new();
        let mut dns = Vec::new();
        for san in &req.params.subject_alt_names {
            match san {
                SanType::URI(u) => uris.push(u.as_str()),
                SanType::DnsName(d) => dns.push(d.as_str()),
                _ => {}
            }
        }
        let requested: SpiffeId = match uris.as_slice() {
            [] => return Err(IssueError::CsrNoIdentity),
            [one] => one.parse()?,
            many => {
                return Err(IssueError::CsrMultipleIdentities { count: many.len() });
            }
        };
        let ent = entitled
            .iter()
            .find(|e| e.spiffe_id == requested)
            .ok_or(IssueError::NotEntitled { requested })?;
        if let Some(name) = dns.iter().find(|d| !ent.dns_names.iter().any(|n| n == *d)) {
            return Err(IssueError::DnsNotEntitled {
                name: (*name).to_owned(),
            });
        }
        self.sign_leaf(&req.public_key, ent)
    }

    /// Signs an X509-SVID for `ent` for the key of a PKCS#10 `csr`, whatever
    /// names the CSR asks for: for a caller that learns its identity from
    /// the answer, such as a node attesting. The CSR's signature must still
    /// verify (proof of possession) and it must not ask for cA=true.
    pub fn sign_csr_key(&self, csr: &[u8], ent: &Entitlement) -> Result<IssuedX509, IssueError> {
        let req = parse_csr(csr)?;
        self.sign_leaf(&req.public_key, ent)
    }

    /// Signs an X509-SVID for a caller-held key given as a DER
    /// SubjectPublicKeyInfo. The caller must already be entitled to `ent`.
    pub fn sign_public_key(
        &self,
        spki: &[u8],
        ent: &Entitlement,
    ) -> Result<IssuedX509, IssueError> {
        let key =
            SubjectPublicKeyInfo::from_der(spki).map_err(|_| IssueError::MalformedPublicKey)?;
        self.sign_leaf(&key, ent)
    }

    /// Generates an EC P-256 key and issues an X509-SVID for it.
    pub fn issue_x509_svid(&self, ent: &Entitlement) -> Result<X509Svid, IssueError> {
        let pair = SecretKeyPair::from(
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|_| IssueError::Signing)?,
        );
        let issued = self.sign_leaf(&pair, ent)?;
        let key = PrivateKey::from_pkcs8_der(&pair.pkcs8_der())?;
        Ok(X509Svid::new(issued.chain, key)?)
    }

    /// Issues a JWT-SVID for `ent` with the given audiences (at least one),
    /// signed by the active JWT key (header `alg`, `kid`, `typ: JWT`).
    pub fn issue_jwt_svid(
        &self,
        ent: &Entitlement,
        audience: &[String],
    ) -> Result<JwtSvid, IssueError> {
        self.check_issuable(&ent.spiffe_id)?;
        let slot = self.active(SlotKind::Jwt)?;
        let now = whole_secs(self.clock.now());
        let ttl = ent.jwt_svid_ttl.unwrap_or(self.config.jwt_svid_ttl);
        let claims = JwtClaims {
            subject: ent.spiffe_id.clone(),
            audience: audience.to_vec(),
            expiry: (now + ttl).min(slot.info.not_after),
            issued_at: now,
            issuer: self.config.jwt_issuer.clone(),
            extra: serde_json::Map::new(),
        };
        let Signer::Jwt { signer } = &slot.material.signer else {
            return Err(CaError::NoActiveAuthority {
                kind: SlotKind::Jwt,
            }
            .into());
        };
        let token = signer.sign(&slot.info.id, &claims)?;
        Ok(JwtSvid::parse_insecure(&token)?)
    }

    fn active(&self, kind: SlotKind) -> Result<Slot, CaError> {
        let snap = self.snapshot.load();
        let slot = match kind {
            SlotKind::X509 => snap.x509.clone(),
            SlotKind::Jwt => snap.jwt.clone(),
        };
        slot.filter(|s| s.info.not_after > self.clock.now())
            .ok_or(CaError::NoActiveAuthority { kind })
    }

    fn check_issuable(&self, id: &SpiffeId) -> Result<(), IssueError> {
        if id.is_root() || !id.is_member_of(&self.config.trust_domain) {
            return Err(IssueError::IdentityNotIssuable { id: id.clone() });
        }
        Ok(())
    }

    fn sign_leaf(
        &self,
        key: &impl PublicKeyData,
        ent: &Entitlement,
    ) -> Result<IssuedX509, IssueError> {
        self.check_issuable(&ent.spiffe_id)?;
        let slot = self.active(SlotKind::X509)?;
        let Signer::X509 { issuer, chain_tail } = &slot.material.signer else {
            return Err(CaError::NoActiveAuthority {
                kind: SlotKind::X509,
            }
            .into());
        };
        let now = whole_secs(self.clock.now());
        let ttl = ent.x509_svid_ttl.unwrap_or(self.config.x509_svid_ttl);
        let not_after = (now + ttl).min(slot.info.not_after);
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, self.config.trust_domain.as_str());
        if let Some(first) = ent.dns_names.first() {
            params
                .distinguished_name
                .push(DnType::CommonName, first.as_str());
        }
        let uri = ent
            .spiffe_id
            .as_str()
            .try_into()
            .map_err(|_| IssueError::Signing)?;
        params.subject_alt_names.push(SanType::URI(uri));
        for name in &ent.dns_names {
            let dns = name
                .as_str()
                .try_into()
                .map_err(|_| IssueError::InvalidDnsName { name: name.clone() })?;
            params.subject_alt_names.push(SanType::DnsName(dns));
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::KeyAgreement,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial()?);
        params.not_before = now.checked_sub(self.config.backdate).unwrap_or(now).into();
        params.not_after = not_after.into();
        let cert = params
            .signed_by(key, issuer)
            .map_err(|_| IssueError::Signing)?;
        let mut chain = Vec::with_capacity(1 + chain_tail.len());
        chain.push(cert.der().clone());
        chain.extend(chain_tail.iter().cloned());
        Ok(IssuedX509 {
            spiffe_id: ent.spiffe_id.clone(),
            chain,
            not_after,
            authority_id: slot.info.id.clone(),
        })
    }
}

/// Parses a PKCS#10 CSR, checking its size, its signature and that it does
/// not ask for a CA certificate.
fn parse_csr(csr: &[u8]) -> Result<CertificateSigningRequestParams, IssueError> {
    if csr.len() > MAX_CSR_LEN {
        return Err(IssueError::CsrTooLarge { len: csr.len() });
    }
    let der = CertificateSigningRequestDer::from(csr);
    let req = CertificateSigningRequestParams::from_der(&der).map_err(|e| match e {
        rcgen::Error::InvalidCertificationRequestSignature => IssueError::CsrSignature,
        rcgen::Error::UnsupportedExtension => IssueError::CsrUnsupportedExtension,
        _ => IssueError::MalformedCsr,
    })?;
    if matches!(req.params.is_ca, IsCa::Ca(_)) {
        return Err(IssueError::CsrRequestsCa);
    }
    Ok(req)
}
