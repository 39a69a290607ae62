//! Crate-private parsers opened to the fuzz targets in `fuzz/` (and to
//! nothing else). Hidden from the documentation and not part of the API:
//! names and shapes here change with the fuzz targets.

use std::time::UNIX_EPOCH;

use crate::X509Error;

/// What the strict DER certificate reader (`x509/cert.rs`) took from a
/// certificate, in owned form so a differential target can compare it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    /// URI SANs, in order.
    pub uris: Vec<String>,
    /// Whether the SAN extension is critical.
    pub san_critical: bool,
    /// Whether the subject Name is an empty sequence.
    pub subject_empty: bool,
    /// basicConstraints cA (false when absent).
    pub is_ca: bool,
    /// keyUsage bits as the first two bytes of the BIT STRING, big-endian.
    pub key_usage: Option<u16>,
    /// extendedKeyUsage as (serverAuth, clientAuth, anyExtendedKeyUsage).
    pub eku: Option<(bool, bool, bool)>,
    /// notBefore, seconds since the Unix epoch.
    pub not_before: u64,
    /// notAfter, seconds since the Unix epoch.
    pub not_after: u64,
    /// The SPKI algorithm OID (contents octets).
    pub key_algorithm: Vec<u8>,
    /// The SPKI algorithm parameters when they are an OID (contents octets).
    pub key_parameters: Option<Vec<u8>>,
    /// The subjectPublicKey bits, unused-bits byte removed.
    pub public_key: Vec<u8>,
}

/// Runs the strict DER certificate reader on `der`.
pub fn cert_facts(der: &[u8]) -> Result<CertFacts, X509Error> {
    let info = crate::x509::parse_cert(der, 0)?;
    let secs = |t: std::time::SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    Ok(CertFacts {
        uris: info.uris.iter().map(|u| (*u).to_owned()).collect(),
        san_critical: info.san_critical,
        subject_empty: info.subject_empty,
        is_ca: info.is_ca,
        key_usage: info.key_usage,
        eku: info.eku.map(|e| (e.server_auth, e.client_auth, e.any)),
        not_before: secs(info.not_before),
        not_after: secs(info.not_after),
        key_algorithm: info.key_algorithm.to_vec(),
        key_parameters: info.key_parameters.map(<[u8]>::to_vec),
        public_key: info.public_key.to_vec(),
    })
}

/// Whether `contents` are the contents octets of an OBJECT IDENTIFIER the
/// strict DER reader accepts (minimal, terminated sub-identifiers).
pub fn valid_oid(contents: &[u8]) -> bool {
    crate::x509::valid_oid(contents)
}
