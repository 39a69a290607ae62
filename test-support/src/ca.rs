//! Test certificate authorities and leaves.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384,
    PKCS_RSA_SHA256, RsaKeySize, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};

/// Key algorithm of a generated key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// ECDSA P-256.
    P256,
    /// ECDSA P-384.
    P384,
    /// RSA 2048.
    Rsa2048,
}

impl KeyKind {
    fn generate(self) -> KeyPair {
        let kp = match self {
            KeyKind::P256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256),
            KeyKind::P384 => KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384),
            KeyKind::Rsa2048 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048),
        };
        kp.expect("key generation with aws-lc-rs does not fail for supported algorithms")
    }
}

/// How a CA certificate is made (the odd forms for negative tests).
#[derive(Debug, Clone)]
pub struct CaSpec {
    /// basicConstraints cA.
    pub is_ca: bool,
    /// keyUsage keyCertSign.
    pub key_cert_sign: bool,
    /// URI SAN, if any (`spiffe://td` for a SPIFFE CA).
    pub uri: Option<String>,
    /// Key algorithm.
    pub key: KeyKind,
    /// Validity window.
    pub not_before: OffsetDateTime,
    /// Validity window.
    pub not_after: OffsetDateTime,
}

impl CaSpec {
    /// A well-formed SPIFFE CA for `td`, valid from an hour ago for a day.
    pub fn new(td: &str) -> Self {
        let now = OffsetDateTime::now_utc();
        CaSpec {
            is_ca: true,
            key_cert_sign: true,
            uri: Some(format!("spiffe://{td}")),
            key: KeyKind::P256,
            not_before: now - Duration::hours(1),
            not_after: now + Duration::days(1),
        }
    }
}

/// A certificate authority made for tests.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    cert: CertificateDer<'static>,
    /// Certificates between this CA and the root, this CA first, root excluded.
    chain_to_root: Vec<CertificateDer<'static>>,
    root: CertificateDer<'static>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

fn ca_params(spec: &CaSpec, cn: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "SPIFFE");
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = if spec.is_ca {
        IsCa::Ca(BasicConstraints::Unconstrained)
    } else {
        IsCa::ExplicitNoCa
    };
    p.key_usages = if spec.key_cert_sign {
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign]
    } else {
        vec![KeyUsagePurpose::CrlSign]
    };
    if let Some(uri) = &spec.uri {
        p.subject_alt_names = vec![SanType::URI(
            uri.clone().try_into().expect("test URI is IA5"),
        )];
    }
    p.not_before = spec.not_before;
    p.not_after = spec.not_after;
    p.serial_number = Some(SerialNumber::from_slice(&random_serial()));
    p.use_authority_key_identifier_extension = true;
    p
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn random_serial() -> [u8; 16] {
    let mut s = [0u8; 16];
    aws_lc_rs::rand::fill(&mut s).expect("system randomness is available in tests");
    s[0] &= 0x7f;
    s[0] |= 0x01;
    s
}

impl TestCa {
    /// A self-signed root for `td` (P-256).
    pub fn new(td: &str) -> Self {
        Self::root(CaSpec::new(td))
    }

    /// A self-signed root made to `spec`.
    pub fn root(spec: CaSpec) -> Self {
        let key = spec.key.generate();
        let params = ca_params(&spec, &format!("test root {}", hex(&random_serial()[..6])));
        let cert = params
            .self_signed(&key)
            .expect("self-signing a test root works")
            .der()
            .clone();
        TestCa {
            issuer: Issuer::new(params, key),
            root: cert.clone(),
            cert,
            chain_to_root: Vec::new(),
        }
    }

    /// An intermediate CA signed by this one.
    pub fn intermediate(&self, spec: CaSpec) -> TestCa {
        let key = spec.key.generate();
        let params = ca_params(
            &spec,
            &format!("test intermediate {}", hex(&random_serial()[..6])),
        );
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("signing a test intermediate works")
            .der()
            .clone();
        let mut chain_to_root = vec![cert.clone()];
        chain_to_root.extend(self.chain_to_root.iter().cloned());
        TestCa {
            issuer: Issuer::new(params, key),
            cert,
            chain_to_root,
            root: self.root.clone(),
        }
    }

    /// This CA's certificate.
    pub fn cert(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// The root certificate, for a bundle (for a root CA: its own cert).
    pub fn root_cert(&self) -> CertificateDer<'static> {
        self.root.clone()
    }

    /// A valid leaf SVID for `spiffe_id`.
    pub fn leaf(&self, spiffe_id: &str) -> Leaf {
        self.leaf_with(LeafSpec::new(spiffe_id))
    }

    /// A leaf made to `spec`; the chain holds the leaf and any intermediates.
    pub fn leaf_with(&self, spec: LeafSpec) -> Leaf {
        let key = spec.key.generate();
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        if !spec.empty_subject {
            dn.push(DnType::OrganizationName, "SPIRE");
        }
        p.distinguished_name = dn;
        p.subject_alt_names = spec
            .uris
            .iter()
            .map(|u| SanType::URI(u.clone().try_into().expect("test URI is IA5")))
            .chain(
                spec.dns
                    .iter()
                    .map(|d| SanType::DnsName(d.clone().try_into().expect("test DNS name is IA5"))),
            )
            .collect();
        p.is_ca = if spec.is_ca {
            IsCa::Ca(BasicConstraints::Unconstrained)
        } else {
            IsCa::ExplicitNoCa
        };
        p.key_usages = spec.key_usages.clone().unwrap_or_default();
        p.extended_key_usages = spec.eku.clone();
        p.not_before = spec.not_before;
        p.not_after = spec.not_after;
        p.serial_number = Some(SerialNumber::from_slice(&random_serial()));
        p.use_authority_key_identifier_extension = true;
        let leaf = p
            .signed_by(&key, &self.issuer)
            .expect("signing a test leaf works")
            .der()
            .clone();
        let mut chain = vec![leaf];
        chain.extend(self.chain_to_root.iter().cloned());
        Leaf {
            chain,
            key_der: key.serialize_der(),
        }
    }
}

/// How a leaf certificate is made. Defaults form a valid X509-SVID.
#[derive(Debug, Clone)]
pub struct LeafSpec {
    /// URI SANs (a valid SVID has exactly one).
    pub uris: Vec<String>,
    /// DNS SANs.
    pub dns: Vec<String>,
    /// basicConstraints cA.
    pub is_ca: bool,
    /// keyUsage bits; `None` omits the extension.
    pub key_usages: Option<Vec<KeyUsagePurpose>>,
    /// extendedKeyUsage purposes; empty omits the extension.
    pub eku: Vec<ExtendedKeyUsagePurpose>,
    /// An empty subject (SAN then marked critical by rcgen).
    pub empty_subject: bool,
    /// Validity start.
    pub not_before: OffsetDateTime,
    /// Validity end.
    pub not_after: OffsetDateTime,
    /// Key algorithm.
    pub key: KeyKind,
}

impl LeafSpec {
    /// A valid leaf for `spiffe_id`: KU digitalSignature, EKU server+client,
    /// valid from a minute ago for an hour.
    pub fn new(spiffe_id: &str) -> Self {
        let now = OffsetDateTime::now_utc();
        LeafSpec {
            uris: vec![spiffe_id.to_owned()],
            dns: Vec::new(),
            is_ca: false,
            key_usages: Some(vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
                KeyUsagePurpose::KeyAgreement,
            ]),
            eku: vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            empty_subject: false,
            not_before: now - Duration::minutes(1),
            not_after: now + Duration::hours(1),
            key: KeyKind::P256,
        }
    }

    /// Sets basicConstraints cA.
    pub fn ca(mut self, is_ca: bool) -> Self {
        self.is_ca = is_ca;
        self
    }

    /// Sets the keyUsage bits (`None`: no extension).
    pub fn key_usages(mut self, ku: Option<Vec<KeyUsagePurpose>>) -> Self {
        self.key_usages = ku;
        self
    }

    /// Sets the URI SANs.
    pub fn uris(mut self, uris: &[&str]) -> Self {
        self.uris = uris.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    /// Adds DNS SANs.
    pub fn dns(mut self, dns: &[&str]) -> Self {
        self.dns = dns.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    /// Sets the EKU purposes (empty: no extension).
    pub fn eku(mut self, eku: Vec<ExtendedKeyUsagePurpose>) -> Self {
        self.eku = eku;
        self
    }

    /// Sets the validity window relative to now.
    pub fn valid(mut self, from_now: Duration, until_now: Duration) -> Self {
        let now = OffsetDateTime::now_utc();
        self.not_before = now + from_now;
        self.not_after = now + until_now;
        self
    }

    /// Makes the subject empty.
    pub fn empty_subject(mut self) -> Self {
        self.empty_subject = true;
        self
    }

    /// Sets the key algorithm.
    pub fn key(mut self, key: KeyKind) -> Self {
        self.key = key;
        self
    }
}

/// A generated leaf: chain (leaf first, intermediates after) and PKCS#8 key.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// Leaf first, then intermediates (never the root).
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf key, PKCS#8 DER.
    pub key_der: Vec<u8>,
}

impl Leaf {
    /// The chain as concatenated DER (the Workload API encoding).
    pub fn chain_der(&self) -> Vec<u8> {
        self.chain.iter().flat_map(|c| c.iter().copied()).collect()
    }

    /// The chain as PEM.
    pub fn chain_pem(&self) -> String {
        self.chain
            .iter()
            .map(|c| crate::pem("CERTIFICATE", c))
            .collect()
    }

    /// The key as PEM (`PRIVATE KEY`).
    pub fn key_pem(&self) -> String {
        crate::pem("PRIVATE KEY", &self.key_der)
    }
}
