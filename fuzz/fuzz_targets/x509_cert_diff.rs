//! Differential: spiffe-core's strict DER certificate reader
//! (`x509/cert.rs`) against x509-parser on the same bytes.
//!
//! Compared fields (both must extract the same values): URI SANs in
//! order, SAN criticality, subject emptiness, basicConstraints cA,
//! keyUsage (digitalSignature, keyCertSign, cRLSign and presence),
//! extendedKeyUsage (serverAuth, clientAuth, any and presence), notBefore
//! and notAfter in Unix seconds, the SPKI algorithm OID, its OID
//! parameters and the subjectPublicKey bits.
//!
//! Accept/reject must agree, with these rules written down (see
//! fuzz/README.md):
//!
//! - x509-parser refuses, spiffe-core accepts: allowed only when the part
//!   x509-parser refuses is one the strict reader does not read (version,
//!   serial, signature algorithms, issuer and subject names inside, unique
//!   IDs, extensions other than the four above, the signature value);
//!   webpki checks those on the verification path. A refusal in the
//!   validity, the SPKI or one of the four extensions is a disagreement.
//! - spiffe-core refuses, x509-parser accepts: allowed; the reader is
//!   stricter by design (see fuzz/README.md for the classes seen).
#![no_main]

use libfuzzer_sys::fuzz_target;
use spiffe_core::__fuzz::{CertFacts, cert_facts};
use x509_parser::prelude::*;

const OID_SAN: &[u8] = &[0x55, 0x1d, 0x11];
const OID_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x0f];
const OID_BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13];
const OID_EKU: &[u8] = &[0x55, 0x1d, 0x25];
const READ_EXTENSIONS: [&[u8]; 4] = [OID_SAN, OID_KEY_USAGE, OID_BASIC_CONSTRAINTS, OID_EKU];

/// Why x509-parser gave no facts.
#[derive(Debug)]
enum Refusal {
    /// In a part the strict reader also reads: must not be accepted.
    Read(&'static str),
    /// In a part the strict reader leaves to webpki.
    Unread,
}

fuzz_target!(|der: &[u8]| {
    let ours = cert_facts(der);
    let theirs = x509_facts(der);
    match (ours, theirs) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "the readers extract different facts"),
        (Ok(a), Err(Refusal::Read(part))) => {
            panic!("spiffe-core accepted, x509-parser refuses the {part}: {a:?}")
        }
        // Refused by the strict reader and accepted by x509-parser: the
        // reader is stricter by design (fuzz/README.md lists the classes
        // seen), and webpki verifies every chain after it. Not a failure.
        (Ok(_), Err(Refusal::Unread)) | (Err(_), Err(_)) | (Err(_), Ok(_)) => {}
    }
});

fn x509_facts(der: &[u8]) -> Result<CertFacts, Refusal> {
    let (rest, cert) = match X509Certificate::from_der(der) {
        Ok(parsed) => parsed,
        Err(_) => return Err(refused_part(der)),
    };
    if !rest.is_empty() {
        // Trailing bytes after the certificate: both refuse.
        return Err(Refusal::Read("trailing data"));
    }
    let mut seen: Vec<&[u8]> = Vec::new();
    for ext in cert.extensions() {
        let oid = ext.oid.as_bytes();
        if !READ_EXTENSIONS.contains(&oid) {
            continue;
        }
        if seen.contains(&oid) {
            return Err(Refusal::Read("duplicate extension"));
        }
        seen.push(oid);
        if matches!(
            ext.parsed_extension(),
            ParsedExtension::ParseError { .. } | ParsedExtension::UnsupportedExtension { .. }
        ) {
            return Err(Refusal::Read("extension value"));
        }
    }
    let san = cert
        .subject_alternative_name()
        .map_err(|_| Refusal::Read("SAN"))?;
    let uris = san
        .as_ref()
        .map(|s| {
            s.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::URI(u) => Some((*u).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let key_usage = cert
        .key_usage()
        .map_err(|_| Refusal::Read("keyUsage"))?
        .map(|k| {
            let flags = k.value.flags;
            // x509-parser keeps bit 0 (digitalSignature) in the low bit;
            // spiffe-core keeps the first two bytes big-endian.
            (0..16).fold(0u16, |acc, bit| {
                if flags & (1 << bit) != 0 {
                    acc | (0x8000 >> bit)
                } else {
                    acc
                }
            })
        });
    let eku = cert
        .extended_key_usage()
        .map_err(|_| Refusal::Read("extendedKeyUsage"))?
        .map(|e| (e.value.server_auth, e.value.client_auth, e.value.any));
    let is_ca = cert
        .basic_constraints()
        .map_err(|_| Refusal::Read("basicConstraints"))?
        .is_some_and(|b| b.value.ca);
    let secs = |t: ASN1Time| u64::try_from(t.timestamp()).unwrap_or(0);
    let spki = cert.public_key();
    Ok(CertFacts {
        uris,
        san_critical: san.as_ref().is_some_and(|s| s.critical),
        // The Name's own encoding: x509-parser skips an RDN it cannot read
        // and would call such a subject empty; the fact compared is
        // whether the SEQUENCE has no content.
        subject_empty: cert.subject().as_raw() == [0x30, 0x00],
        is_ca,
        key_usage,
        eku,
        not_before: secs(cert.validity().not_before),
        not_after: secs(cert.validity().not_after),
        key_algorithm: spki.algorithm.algorithm.as_bytes().to_vec(),
        key_parameters: spki
            .algorithm
            .parameters
            .as_ref()
            // Only an OID is a parameter the strict reader keeps: RSA's
            // NULL is read by x509-parser as an (empty) OID otherwise.
            // (universal class and primitive: a context-specific [6] and a
            // constructed UNIVERSAL 6 carry the same number, and neither
            // is an OID).
            .filter(|p| {
                p.tag() == x509_parser::der_parser::asn1_rs::Tag::Oid
                    && p.class() == x509_parser::der_parser::asn1_rs::Class::Universal
                    && !p.header.is_constructed()
            })
            .and_then(|p| p.as_oid().ok())
            .map(|oid| oid.as_bytes().to_vec()),
        public_key: spki.subject_public_key.data.to_vec(),
    })
}

/// Which part of a certificate x509-parser refused: each part the strict
/// reader reads is handed to x509-parser's parser for that part alone.
fn refused_part(der: &[u8]) -> Refusal {
    let Some((cert, _, _)) = element(der) else {
        return Refusal::Read("certificate envelope");
    };
    let Some((tbs, _, _)) = element(cert) else {
        return Refusal::Read("tbsCertificate envelope");
    };
    let mut fields = tbs;
    let mut parts = Vec::new();
    while let Some((contents, whole, rest)) = element(fields) {
        parts.push((whole[0], contents, whole));
        fields = rest;
    }
    // version [0] is optional; after it: serial, signature, issuer,
    // validity, subject, SPKI, then [1], [2], [3].
    let skip = usize::from(parts.first().is_some_and(|p| p.0 == 0xa0));
    if let Some((_, _, validity)) = parts.get(skip + 3)
        && Validity::from_der(validity).is_err()
    {
        return Refusal::Read("validity");
    }
    if let Some((_, _, spki)) = parts.get(skip + 5)
        && SubjectPublicKeyInfo::from_der(spki).is_err()
    {
        return Refusal::Read("subjectPublicKeyInfo");
    }
    if let Some((_, exts, _)) = parts.iter().find(|p| p.0 == 0xa3)
        && let Some((mut list, _, _)) = element(exts)
    {
        while let Some((ext, whole, rest)) = element(list) {
            list = rest;
            let oid = element(ext).map(|(oid, _, _)| oid).unwrap_or_default();
            if READ_EXTENSIONS.contains(&oid) && X509Extension::from_der(whole).is_err() {
                return Refusal::Read("extension");
            }
        }
    }
    Refusal::Unread
}

/// One DER element: (contents, whole element, rest). Lengths as DER
/// requires them (short form below 128, else the fewest long-form bytes,
/// at most 4); enough to find parts.
fn element(input: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let (_tag, rest) = input.split_first()?;
    let (&len0, rest) = rest.split_first()?;
    let (len, rest) = if len0 < 0x80 {
        (usize::from(len0), rest)
    } else {
        let n = usize::from(len0 & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, rest) = rest.split_at(n);
        (
            bytes.iter().fold(0, |acc, &b| (acc << 8) | usize::from(b)),
            rest,
        )
    };
    if rest.len() < len {
        return None;
    }
    let (contents, tail) = rest.split_at(len);
    Some((contents, &input[..input.len() - tail.len()], tail))
}
