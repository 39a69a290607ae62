//! The few facts of an X.509 certificate that the SPIFFE rules need, read
//! straight from DER: SAN URIs, basicConstraints, keyUsage, extendedKeyUsage,
//! subject emptiness, notAfter and the public key.
//!
//! A general X.509 parser builds the whole certificate (names, every
//! extension) and costs several times what webpki's own parse does; this
//! reads only what is used, in one pass. Path validation and signature checks
//! stay with webpki.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::X509Error;
use super::der::{Reader, tag};

const OID_SAN: &[u8] = &[0x55, 0x1d, 0x11];
const OID_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x0f];
const OID_BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13];
const OID_EKU: &[u8] = &[0x55, 0x1d, 0x25];
const OID_EKU_ANY: &[u8] = &[0x55, 0x1d, 0x25, 0x00];
const OID_SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
const OID_CLIENT_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];
pub(crate) const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
pub(crate) const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
pub(crate) const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
pub(crate) const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
pub(crate) const OID_P521: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23];

/// keyUsage bits, as the first two bytes of the BIT STRING (big-endian).
pub(crate) mod ku {
    pub(crate) const DIGITAL_SIGNATURE: u16 = 0x8000;
    pub(crate) const KEY_CERT_SIGN: u16 = 0x0400;
    pub(crate) const CRL_SIGN: u16 = 0x0200;
}

/// extendedKeyUsage purposes that matter here.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Eku {
    pub(crate) server_auth: bool,
    pub(crate) client_auth: bool,
    pub(crate) any: bool,
}

/// What the rules read from one certificate.
#[derive(Debug)]
pub(crate) struct CertInfo<'a> {
    /// URI SANs, in order.
    pub(crate) uris: Vec<&'a str>,
    /// Whether the SAN extension is marked critical.
    pub(crate) san_critical: bool,
    /// Whether the subject Name is an empty sequence.
    pub(crate) subject_empty: bool,
    /// basicConstraints cA (false when the extension is absent).
    pub(crate) is_ca: bool,
    /// keyUsage bits, `None` when the extension is absent.
    pub(crate) key_usage: Option<u16>,
    /// extendedKeyUsage, `None` when the extension is absent.
    pub(crate) eku: Option<Eku>,
    /// notBefore (read so that a malformed one is refused; verification
    /// leaves the time check to webpki).
    pub(crate) not_before: SystemTime,
    /// notAfter.
    pub(crate) not_after: SystemTime,
    /// The SPKI algorithm OID.
    pub(crate) key_algorithm: &'a [u8],
    /// The SPKI algorithm parameters (the curve OID for EC keys).
    pub(crate) key_parameters: Option<&'a [u8]>,
    /// The subjectPublicKey bits (unused-bits byte removed).
    pub(crate) public_key: &'a [u8],
}

/// Reads a certificate; `index` is its position in a chain, for errors.
pub(crate) fn parse(der: &[u8], index: usize) -> Result<CertInfo<'_>, X509Error> {
    read(der).ok_or_else(|| X509Error::Malformed {
        index,
        reason: "not a well-formed DER X.509 certificate".into(),
    })
}

fn read(der: &[u8]) -> Option<CertInfo<'_>> {
    let mut outer = Reader::new(der);
    let cert = outer.expect(tag::SEQUENCE)?;
    if !outer.is_empty() {
        return None;
    }
    let mut cert = Reader::new(cert);
    let mut tbs = Reader::new(cert.expect(tag::SEQUENCE)?);
    cert.expect(tag::SEQUENCE)?; // signatureAlgorithm
    cert.expect(tag::BIT_STRING)?; // signatureValue
    if !cert.is_empty() {
        return None;
    }

    tbs.optional(tag::EXPLICIT_0)?; // version
    tbs.expect(tag::INTEGER)?; // serialNumber
    tbs.expect(tag::SEQUENCE)?; // signature
    tbs.expect(tag::SEQUENCE)?; // issuer
    let mut validity = Reader::new(tbs.expect(tag::SEQUENCE)?);
    let not_before = validity_time(&mut validity)?;
    let not_after = validity_time(&mut validity)?;
    if !validity.is_empty() {
        return None;
    }
    let subject_empty = tbs.expect(tag::SEQUENCE)?.is_empty();
    let mut spki = Reader::new(tbs.expect(tag::SEQUENCE)?);
    let mut alg = Reader::new(spki.expect(tag::SEQUENCE)?);
    let key_algorithm = alg.oid()?;
    let key_parameters = alg.optional_oid()?;
    // AlgorithmIdentifier ::= SEQUENCE { algorithm, parameters ANY OPTIONAL }:
    // at most one parameters element (NULL for RSA), nothing after it.
    if key_parameters.is_none() && !alg.is_empty() {
        alg.any()?;
    }
    let (_, public_key) = spki.bit_string()?;
    if !alg.is_empty() || !spki.is_empty() {
        return None;
    }
    tbs.optional(tag::IMPLICIT_1)?;
    tbs.optional(tag::IMPLICIT_2)?;

    let mut info = CertInfo {
        uris: Vec::new(),
        san_critical: false,
        subject_empty,
        is_ca: false,
        key_usage: None,
        eku: None,
        not_before,
        not_after,
        key_algorithm,
        key_parameters,
        public_key,
    };
    if let Some(exts) = tbs.optional(tag::EXPLICIT_3)? {
        let mut exts = Reader::new(Reader::new(exts).expect(tag::SEQUENCE)?);
        // RFC 5280 §4.2: at most one instance of each extension. The OIDs
        // seen are kept on the stack (a certificate rarely has more than
        // a dozen extensions); only a longer list spills to the heap.
        let mut seen: [&[u8]; 16] = [&[]; 16];
        let mut seen_more: Vec<&[u8]> = Vec::new();
        let mut count = 0;
        while !exts.is_empty() {
            let mut ext = Reader::new(exts.expect(tag::SEQUENCE)?);
            let oid = ext.oid()?;
            if seen[..count.min(seen.len())].contains(&oid) || seen_more.contains(&oid) {
                return None;
            }
            match seen.get_mut(count) {
                Some(slot) => *slot = oid,
                None => seen_more.push(oid),
            }
            count += 1;
            let critical = match ext.optional(tag::BOOLEAN)? {
                Some([0xff]) => true,
                Some([0x00]) | None => false,
                Some(_) => return None,
            };
            let value = ext.expect(tag::OCTET_STRING)?;
            if !ext.is_empty() {
                return None;
            }
            extension(&mut info, oid, critical, value)?;
        }
    }
    tbs.is_empty().then_some(info)
}

fn extension<'a>(
    info: &mut CertInfo<'a>,
    oid: &[u8],
    critical: bool,
    value: &'a [u8],
) -> Option<()> {
    let mut v = Reader::new(value);
    match oid {
        OID_SAN => {
            info.san_critical = critical;
            let mut names = Reader::new(v.expect(tag::SEQUENCE)?);
            while !names.is_empty() {
                match names.any()? {
                    (tag::URI_NAME, uri, _) => info.uris.push(std::str::from_utf8(uri).ok()?),
                    // The other GeneralName choices, each in the one form
                    // DER allows: otherName [0], rfc822Name [1], dNSName [2],
                    // x400Address [3], directoryName [4], ediPartyName [5],
                    // iPAddress [7], registeredID [8].
                    (0xa0 | 0x81 | 0x82 | 0xa3 | 0xa4 | 0xa5 | 0x87 | 0x88, _, _) => {}
                    _ => return None,
                }
            }
        }
        OID_BASIC_CONSTRAINTS => {
            // BasicConstraints ::= SEQUENCE { cA BOOLEAN DEFAULT FALSE,
            //   pathLenConstraint INTEGER OPTIONAL }, nothing else.
            let mut bc = Reader::new(v.expect(tag::SEQUENCE)?);
            info.is_ca = match bc.optional(tag::BOOLEAN)? {
                None => false,
                Some([0xff]) => true,
                Some([0x00]) => false,
                Some(_) => return None, // DER's BOOLEAN is one byte, 00 or FF
            };
            bc.optional(tag::INTEGER)?;
            if !bc.is_empty() {
                return None;
            }
        }
        OID_KEY_USAGE => {
            let (_unused, bytes) = v.bit_string()?;
            let hi = u16::from(bytes.first().copied().unwrap_or(0));
            let lo = u16::from(bytes.get(1).copied().unwrap_or(0));
            info.key_usage = Some(hi << 8 | lo);
        }
        OID_EKU => {
            let mut eku = Eku::default();
            let mut purposes = Reader::new(v.expect(tag::SEQUENCE)?);
            while !purposes.is_empty() {
                match purposes.oid()? {
                    OID_SERVER_AUTH => eku.server_auth = true,
                    OID_CLIENT_AUTH => eku.client_auth = true,
                    OID_EKU_ANY => eku.any = true,
                    _ => {}
                }
            }
            info.eku = Some(eku);
        }
        _ => return Some(()),
    }
    v.is_empty().then_some(())
}

/// One Time of a Validity: UTCTime or GeneralizedTime.
fn validity_time(validity: &mut Reader<'_>) -> Option<SystemTime> {
    match validity.any()? {
        (tag::UTC_TIME, v, _) => time(v, false),
        (tag::GENERALIZED_TIME, v, _) => time(v, true),
        _ => None,
    }
}

/// Parses `YYMMDDHHMMSSZ` (UTCTime) or `YYYYMMDDHHMMSSZ` (GeneralizedTime).
fn time(v: &[u8], generalized: bool) -> Option<SystemTime> {
    let (z, digits) = v.split_last()?;
    if *z != b'Z' || digits.len() != if generalized { 14 } else { 12 } {
        return None;
    }
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let num = |i: usize, n: usize| -> u64 {
        digits[i..i + n]
            .iter()
            .fold(0, |acc, d| acc * 10 + u64::from(d - b'0'))
    };
    let (year, rest) = if generalized {
        (num(0, 4), 4)
    } else {
        let yy = num(0, 2);
        (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
    };
    let (month, day) = (num(rest, 2), num(rest + 2, 2));
    let (h, m, s) = (num(rest + 4, 2), num(rest + 6, 2), num(rest + 8, 2));
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day)?;
    let secs = days
        .checked_mul(86_400)?
        .checked_add(h * 3600 + m * 60 + s)?;
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (1970 or later).
fn days_from_civil(y: u64, m: u64, d: u64) -> Option<u64> {
    let y = if m <= 2 { y.checked_sub(1)? } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).checked_sub(719_468)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(t: SystemTime) -> u64 {
        t.duration_since(UNIX_EPOCH).unwrap().as_secs()
    }

    #[test]
    fn times_match_known_instants() {
        assert_eq!(secs(time(b"700101000000Z", false).unwrap()), 0);
        assert_eq!(secs(time(b"491231235959Z", false).unwrap()), 2_524_607_999);
        assert_eq!(secs(time(b"20240229120000Z", true).unwrap()), 1_709_208_000);
        assert_eq!(
            secs(time(b"99991231235959Z", true).unwrap()),
            253_402_300_799
        );
    }

    #[test]
    fn bad_times_are_refused() {
        for bad in [
            &b"700101000000"[..],
            b"7001010000Z",
            b"701301000000Z",
            b"700100000000Z",
            b"70010124000Z0",
            b"70010100000aZ",
            b"19691231235959Z",
            b"",
        ] {
            let generalized = bad.len() == 15;
            assert!(
                time(bad, generalized).is_none(),
                "{:?}",
                std::str::from_utf8(bad)
            );
        }
    }

    /// Differential check against x509-parser on every fixture shape.
    #[test]
    fn agrees_with_x509_parser() {
        use test_support::{
            CaSpec, ExtendedKeyUsagePurpose as E, KeyKind, KeyUsagePurpose as K, LeafSpec, TestCa,
        };
        use x509_parser::prelude::*;
        let ca = TestCa::new("example.org");
        let id = "spiffe://example.org/w";
        let leaves = [
            ca.leaf(id),
            ca.leaf_with(LeafSpec::new(id).ca(true)),
            ca.leaf_with(LeafSpec::new(id).key_usages(None)),
            ca.leaf_with(LeafSpec::new(id).key_usages(Some(vec![K::KeyCertSign, K::CrlSign]))),
            ca.leaf_with(LeafSpec::new(id).eku(vec![E::ServerAuth])),
            ca.leaf_with(LeafSpec::new(id).eku(vec![])),
            ca.leaf_with(LeafSpec::new(id).uris(&[id, "spiffe://x/y"]).dns(&["a.b"])),
            ca.leaf_with(LeafSpec::new(id).empty_subject()),
            ca.leaf_with(LeafSpec::new(id).key(KeyKind::Rsa2048)),
            ca.leaf_with(LeafSpec::new(id).key(KeyKind::P384)),
        ];
        let mut certs: Vec<_> = leaves.iter().map(|l| l.chain[0].clone()).collect();
        certs.push(ca.cert().clone());
        certs.push(
            ca.intermediate(CaSpec {
                key_cert_sign: false,
                ..CaSpec::new("example.org")
            })
            .cert()
            .clone(),
        );
        for der in &certs {
            let ours = parse(der, 0).unwrap();
            let (_, theirs) = X509Certificate::from_der(der).unwrap();
            let uris: Vec<&str> = theirs
                .subject_alternative_name()
                .unwrap()
                .map(|s| {
                    s.value
                        .general_names
                        .iter()
                        .filter_map(|n| match n {
                            GeneralName::URI(u) => Some(*u),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(ours.uris, uris);
            assert_eq!(
                ours.san_critical,
                theirs
                    .subject_alternative_name()
                    .unwrap()
                    .is_some_and(|s| s.critical)
            );
            assert_eq!(ours.subject_empty, theirs.subject().iter().next().is_none());
            assert_eq!(ours.is_ca, theirs.is_ca());
            let ku = theirs.key_usage().unwrap().map(|k| *k.value);
            assert_eq!(ours.key_usage.is_some(), ku.is_some());
            if let (Some(bits), Some(k)) = (ours.key_usage, ku) {
                assert_eq!(bits & ku::DIGITAL_SIGNATURE != 0, k.digital_signature());
                assert_eq!(bits & ku::KEY_CERT_SIGN != 0, k.key_cert_sign());
                assert_eq!(bits & ku::CRL_SIGN != 0, k.crl_sign());
            }
            let eku = theirs
                .extended_key_usage()
                .unwrap()
                .map(|e| (e.value.server_auth, e.value.client_auth, e.value.any));
            assert_eq!(ours.eku.map(|e| (e.server_auth, e.client_auth, e.any)), eku);
            assert_eq!(
                secs(ours.not_after),
                theirs.validity().not_after.timestamp() as u64
            );
            assert_eq!(
                secs(ours.not_before),
                theirs.validity().not_before.timestamp() as u64
            );
            assert_eq!(
                ours.public_key,
                theirs.public_key().subject_public_key.data.as_ref()
            );
        }
    }

    /// Every truncation and every single-bit flip of a real certificate is
    /// either read or refused; nothing panics.
    #[test]
    fn mutations_never_panic() {
        let ca = test_support::TestCa::new("example.org");
        let der = ca.leaf("spiffe://example.org/w").chain[0].to_vec();
        for len in 0..der.len() {
            assert!(
                parse(&der[..len], 0).is_err(),
                "truncation to {len} must be refused"
            );
        }
        let mut refused = 0;
        for i in 0..der.len() {
            for bit in 0..8 {
                let mut m = der.clone();
                m[i] ^= 1 << bit;
                refused += usize::from(parse(&m, 0).is_err());
            }
        }
        assert!(refused > 0);
    }

    /// notBefore is read, not skipped: a certificate whose notBefore is not
    /// a time is malformed (webpki refuses it too), even though the rules
    /// only compare notAfter.
    #[test]
    fn malformed_not_before_is_refused() {
        let ca = test_support::TestCa::new("example.org");
        let der = ca.leaf("spiffe://example.org/w").chain[0].to_vec();
        let at = der
            .windows(2)
            .position(|w| w == [tag::UTC_TIME, 13] || w == [tag::GENERALIZED_TIME, 15])
            .expect("a certificate has a validity time");
        assert!(parse(&der, 0).is_ok());
        let mut bad = der.clone();
        bad[at + 3] = b'x';
        assert!(parse(&bad, 0).is_err(), "a non-digit in notBefore");
        let mut wrong_tag = der;
        wrong_tag[at] = 0x04;
        assert!(
            parse(&wrong_tag, 0).is_err(),
            "notBefore that is not a time"
        );
    }

    /// The SPKI's AlgorithmIdentifier holds an OID and at most one
    /// well-formed parameters element; anything after it, or after the key
    /// bits, is refused (x509_cert_diff found a certificate whose
    /// AlgorithmIdentifier ended in a truncated element that the reader
    /// had skipped).
    #[test]
    fn spki_allows_one_parameters_element_and_nothing_more() {
        let ca = test_support::TestCa::new("example.org");
        let der = ca.leaf("spiffe://example.org/w").chain[0].to_vec();
        // The EC key's AlgorithmIdentifier: SEQUENCE { id-ecPublicKey, curve }.
        let alg = [
            0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
        ];
        let at = der
            .windows(alg.len())
            .position(|w| w == alg)
            .expect("an EC key's algorithm");
        assert!(parse(&der, 0).is_ok());
        // The curve OID's tag turned into a multi-byte tag: not an OID, and
        // not a readable element either.
        let mut bad = der.clone();
        bad[at + 11] = 0xff;
        assert!(parse(&bad, 0).is_err(), "an unreadable parameters element");
        // Another single element in place of the curve OID is read as the
        // parameters (RSA's NULL takes this path) and is not an OID.
        let mut other = der;
        other[at + 11] = 0x04;
        let info = parse(&other, 0).expect("one parameters element is allowed");
        assert_eq!(info.key_parameters, None);
    }

    /// A SAN entry that is not one of GeneralName's context-specific
    /// choices makes the certificate malformed (x509_cert_diff: a name of
    /// the private class had been skipped).
    #[test]
    fn san_names_must_be_general_names() {
        let ca = test_support::TestCa::new("example.org");
        let der = ca.leaf("spiffe://example.org/w").chain[0].to_vec();
        let uri = b"spiffe://example.org/w";
        let at = der
            .windows(uri.len())
            .position(|w| w == uri)
            .expect("the URI SAN")
            - 2;
        assert_eq!(der[at], tag::URI_NAME);
        assert!(parse(&der, 0).is_ok());
        let mut dns = der.clone();
        dns[at] = 0x82; // dNSName: another choice, not a URI
        assert!(parse(&dns, 0).unwrap().uris.is_empty());
        let mut private = der.clone();
        private[at] = 0xc6;
        assert!(parse(&private, 0).is_err());
        let mut constructed_uri = der;
        constructed_uri[at] = 0xa6; // a URI is a primitive IA5String
        assert!(parse(&constructed_uri, 0).is_err());
    }

    /// basicConstraints holds a DER BOOLEAN and an optional INTEGER and
    /// nothing else (x509_cert_diff: an element of another type had been
    /// skipped, reading as "not a CA").
    #[test]
    fn basic_constraints_are_read_whole() {
        let ca = test_support::TestCa::new("example.org");
        let der = ca.leaf("spiffe://example.org/w").chain[0].to_vec();
        let mut info = parse(&der, 0).unwrap();
        let mut read = |value: &'static [u8]| {
            extension(&mut info, OID_BASIC_CONSTRAINTS, true, value).map(|()| info.is_ca)
        };
        assert_eq!(read(&[0x30, 0x00]), Some(false));
        assert_eq!(read(&[0x30, 0x03, 0x01, 0x01, 0xff]), Some(true));
        assert_eq!(
            read(&[0x30, 0x06, 0x01, 0x01, 0xff, 0x02, 0x01, 0x00]),
            Some(true)
        );
        assert_eq!(
            read(&[0x30, 0x03, 0x09, 0x01, 0xff]),
            None,
            "a REAL, not a BOOLEAN"
        );
        assert_eq!(
            read(&[0x30, 0x03, 0x01, 0x01, 0x01]),
            None,
            "BOOLEAN TRUE is FF in DER"
        );
        assert_eq!(
            read(&[0x30, 0x06, 0x01, 0x01, 0xff, 0x04, 0x01, 0x00]),
            None,
            "an element after cA that is not pathLenConstraint"
        );
    }

    /// An extension may appear once (RFC 5280 §4.2), whether or not the
    /// reader reads it (x509_cert_diff: a second SAN had been merged into
    /// the first).
    #[test]
    fn an_extension_appears_at_most_once() {
        let ca = test_support::TestCa::new("example.org");
        let der = ca.leaf("spiffe://example.org/w").chain[0].to_vec();
        let ski = [0x06, 0x03, 0x55, 0x1d, 0x0e];
        let aki = [0x06, 0x03, 0x55, 0x1d, 0x23];
        assert!(der.windows(5).any(|w| w == aki), "the leaf has an AKI");
        let at = der
            .windows(5)
            .position(|w| w == ski)
            .expect("the leaf has an SKI");
        assert!(parse(&der, 0).is_ok());
        let mut twice = der;
        twice[at + 4] = 0x23; // the SKI becomes a second AKI
        assert!(parse(&twice, 0).is_err());
    }

    #[test]
    fn garbage_is_malformed() {
        assert!(parse(b"", 0).is_err());
        assert!(parse(&[0x30, 0x00], 0).is_err());
        assert!(parse(&[0x30, 0x03, 0x30, 0x01, 0x00], 3).is_err());
    }
}
