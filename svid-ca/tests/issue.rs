//! Issuance: CSR checks, extensions, interop with the `spiffe` crate and openssl.

mod common;

use std::path::Path;
use std::process::Command;

use base64::Engine;
use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::CertificateDer;
use spiffe_core::{JwtSvid, verify_x509_svid};
use svid_ca::{
    CaConfig, CertificateAuthority, Clock, Entitlement, IssueError, UpstreamCa, UpstreamError,
};
use x509_parser::prelude::*;

fn csr(uris: &[&str], dns: &[&str], key: &KeyPair) -> Vec<u8> {
    let mut p = CertificateParams::default();
    for u in uris {
        p.subject_alt_names
            .push(SanType::URI((*u).try_into().unwrap()));
    }
    for d in dns {
        p.subject_alt_names
            .push(SanType::DnsName((*d).try_into().unwrap()));
    }
    p.serialize_request(key).unwrap().der().to_vec()
}

fn web_ent() -> Entitlement {
    let mut e = ent("/web");
    e.dns_names = vec!["web.example.org".into(), "web".into()];
    e
}

#[test]
fn x509_1_csr_for_entitled_identity_is_signed() {
    let (ca, _clock) = ca();
    let key = KeyPair::generate().unwrap();
    let der = csr(&["spiffe://example.org/web"], &["web"], &key);
    let issued = ca.sign_csr(&der, &[ent("/other"), web_ent()]).unwrap();
    assert_eq!(issued.spiffe_id.to_string(), "spiffe://example.org/web");
    let id = verify_x509_svid(&issued.chain, ca.bundle().x509(), ca.now()).unwrap();
    assert_eq!(id, issued.spiffe_id);
    let (_, cert) = X509Certificate::from_der(&issued.chain[0]).unwrap();
    assert_eq!(
        *cert.public_key().subject_public_key.data,
        *key.public_key_raw()
    );
}

#[test]
fn csr_for_identity_the_caller_may_not_have_is_rejected() {
    let (ca, _clock) = ca();
    let key = KeyPair::generate().unwrap();
    let der = csr(&["spiffe://example.org/admin"], &[], &key);
    assert!(matches!(
        ca.sign_csr(&der, &[web_ent()]),
        Err(IssueError::NotEntitled { requested }) if requested.path() == "/admin"
    ));
    let der = csr(&["spiffe://example.org/web"], &["evil.example.com"], &key);
    assert!(matches!(
        ca.sign_csr(&der, &[web_ent()]),
        Err(IssueError::DnsNotEntitled { name }) if name == "evil.example.com"
    ));
}

#[test]
fn x509_1_csr_with_zero_or_two_uri_sans_is_rejected() {
    let (ca, _clock) = ca();
    let key = KeyPair::generate().unwrap();
    assert!(matches!(
        ca.sign_csr(&csr(&[], &["web"], &key), &[web_ent()]),
        Err(IssueError::CsrNoIdentity)
    ));
    let two = csr(
        &["spiffe://example.org/web", "spiffe://example.org/x"],
        &[],
        &key,
    );
    assert!(matches!(
        ca.sign_csr(&two, &[web_ent()]),
        Err(IssueError::CsrMultipleIdentities { count: 2 })
    ));
    let bad = csr(&["https://example.org/web"], &[], &key);
    assert!(matches!(
        ca.sign_csr(&bad, &[web_ent()]),
        Err(IssueError::InvalidRequestedId(_))
    ));
}

#[test]
fn x509_7_csr_asking_for_ca_true_is_rejected() {
    let (ca, _clock) = ca();
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::default();
    p.subject_alt_names
        .push(SanType::URI("spiffe://example.org/web".try_into().unwrap()));
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let der = p.serialize_request(&key).unwrap().der().to_vec();
    assert!(matches!(
        ca.sign_csr(&der, &[web_ent()]),
        Err(IssueError::CsrRequestsCa)
    ));
}

#[test]
fn malformed_unsigned_or_odd_csrs_are_rejected() {
    let (ca, _clock) = ca();
    let key = KeyPair::generate().unwrap();
    let mut der = csr(&["spiffe://example.org/web"], &[], &key);
    assert!(matches!(
        ca.sign_csr(&der[..der.len() / 2], &[web_ent()]),
        Err(IssueError::MalformedCsr)
    ));
    assert!(matches!(
        ca.sign_csr(b"not a csr", &[web_ent()]),
        Err(IssueError::MalformedCsr)
    ));
    let huge = vec![0x30u8; svid_ca::MAX_CSR_LEN + 1];
    assert!(matches!(
        ca.sign_csr(&huge, &[web_ent()]),
        Err(IssueError::CsrTooLarge { len }) if len == svid_ca::MAX_CSR_LEN + 1
    ));
    // Corrupt the signature (the last bytes of the DER).
    let last = der.len() - 3;
    der[last] ^= 0x55;
    assert!(matches!(
        ca.sign_csr(&der, &[web_ent()]),
        Err(IssueError::CsrSignature) | Err(IssueError::MalformedCsr)
    ));
    let mut p = CertificateParams::default();
    p.subject_alt_names
        .push(SanType::URI("spiffe://example.org/web".try_into().unwrap()));
    p.custom_extensions
        .push(CustomExtension::from_oid_content(&[1, 2, 3, 4], vec![5, 0]));
    let odd = p.serialize_request(&key).unwrap().der().to_vec();
    assert!(matches!(
        ca.sign_csr(&odd, &[web_ent()]),
        Err(IssueError::CsrUnsupportedExtension)
    ));
}

#[test]
fn csr_signature_tamper_of_signed_content_is_rejected() {
    let (ca, _clock) = ca();
    let key = KeyPair::generate().unwrap();
    let der = csr(&["spiffe://example.org/web"], &[], &key);
    // Change one character of the URI inside the signed request info.
    let pos = der.windows(3).position(|w| w == b"web").unwrap();
    let mut tampered = der.clone();
    tampered[pos] = b'x';
    let xent = ent("/xeb");
    assert!(matches!(
        ca.sign_csr(&tampered, &[web_ent(), xent]),
        Err(IssueError::CsrSignature)
    ));
}

#[test]
fn x509_7_root_or_foreign_identity_is_not_issued() {
    let (ca, _clock) = ca();
    let root = Entitlement::new("spiffe://example.org".parse().unwrap());
    assert!(matches!(
        ca.issue_x509_svid(&root),
        Err(IssueError::IdentityNotIssuable { .. })
    ));
    let foreign = Entitlement::new("spiffe://other.org/a".parse().unwrap());
    assert!(matches!(
        ca.issue_jwt_svid(&foreign, &["a".into()]),
        Err(IssueError::IdentityNotIssuable { .. })
    ));
    assert!(matches!(
        ca.sign_public_key(b"\x30\x00", &ent("/a")),
        Err(IssueError::MalformedPublicKey)
    ));
}

#[test]
fn x509_7_leaf_has_exactly_the_listed_extensions() {
    let (ca, clock) = ca();
    let svid = ca.issue_x509_svid(&web_ent()).unwrap();
    let (_, cert) = X509Certificate::from_der(svid.leaf()).unwrap();
    let mut oids: Vec<String> = cert
        .extensions()
        .iter()
        .map(|e| e.oid.to_id_string())
        .collect();
    oids.sort();
    let mut want = vec![
        "2.5.29.17", // SAN
        "2.5.29.19", // basicConstraints
        "2.5.29.15", // keyUsage
        "2.5.29.37", // extKeyUsage
        "2.5.29.14", // SKID
        "2.5.29.35", // AKID
    ];
    want.sort();
    assert_eq!(oids, want);
    assert!(!cert.is_ca());
    let ku = cert.key_usage().unwrap().unwrap();
    assert!(ku.critical);
    assert!(
        ku.value.digital_signature() && ku.value.key_encipherment() && ku.value.key_agreement()
    );
    assert!(!ku.value.key_cert_sign() && !ku.value.crl_sign());
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth && eku.other.is_empty());
    let serial = cert.raw_serial();
    assert!(serial.len() >= 15 && serial.len() <= 17, "{serial:?}");
    let nb = std::time::SystemTime::from(cert.validity().not_before.to_datetime());
    assert_eq!(clock.now().duration_since(nb).unwrap().as_secs(), 10);
    let nb_na = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
    assert_eq!(nb_na, 3600 + 10);
    // SKID/AKID link to the CA.
    let bundle = ca.bundle();
    let (_, root) = X509Certificate::from_der(&bundle.x509().authorities()[0]).unwrap();
    let skid = root
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
        .unwrap();
    let akid = cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(skid, akid);
}

#[test]
fn jwt_2_jwt_5_header_is_alg_kid_typ_jwt_and_claims_are_set() {
    let mut cfg = config();
    cfg.jwt_issuer = Some("https://issuer.example.org".into());
    let (ca, clock) = ca_with(cfg);
    let jwt = ca.issue_jwt_svid(&ent("/w"), &["svc".into()]).unwrap();
    let mut parts = jwt.token().split('.');
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(parts.next().unwrap())
        .unwrap();
    let header: serde_json::Value = serde_json::from_slice(&header).unwrap();
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["kid"], jwt.kid());
    assert_eq!(header.as_object().unwrap().len(), 3, "JWT-2");
    assert_eq!(jwt.claims()["iss"], "https://issuer.example.org");
    assert_eq!(
        jwt.expiry().duration_since(clock.now()).unwrap().as_secs(),
        300
    );
    JwtSvid::validate(jwt.token(), ca.bundle().jwt(), "svc", clock.now()).unwrap();
    let err = ca.issue_jwt_svid(&ent("/w"), &[]).unwrap_err();
    assert!(
        matches!(
            err,
            svid_ca::IssueError::Jwt(spiffe_core::JwtError::MissingAudience)
        ),
        "JWT-7: audience required: {err:?}"
    );
}

#[test]
fn authority_and_registry_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<CertificateAuthority>();
    check::<svid_ca::Registry>();
    check::<svid_ca::SqliteStore>();
    check::<svid_ca::JoinTokenAttestor>();
    // Concurrent issuance from several threads.
    let ca = std::sync::Arc::new(CertificateAuthority::builder(config()).build().unwrap());
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let ca = ca.clone();
            std::thread::spawn(move || {
                ca.issue_x509_svid(&ent("/t"))
                    .map(|s| s.spiffe_id().clone())
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap().unwrap().path(), "/t");
    }
}

#[test]
fn issued_svids_parse_in_the_spiffe_crate() {
    let (ca, _clock) = ca();
    let svid = ca.issue_x509_svid(&web_ent()).unwrap();
    let parsed =
        spiffe::X509Svid::parse_from_der(&svid.chain_der(), svid.private_key().pkcs8_der())
            .unwrap();
    assert_eq!(parsed.spiffe_id().to_string(), "spiffe://example.org/web");
    let td = spiffe::TrustDomain::new("example.org").unwrap();
    let bundle = spiffe::X509Bundle::parse_from_der(td, &ca.bundle().x509().to_der()).unwrap();
    assert_eq!(bundle.authorities().len(), 1);
}

fn pem(certs: &[CertificateDer<'_>]) -> String {
    let mut out = String::new();
    for c in certs {
        let b64 = base64::engine::general_purpose::STANDARD.encode(c);
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(chunk).unwrap());
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}

/// The openssl binary on PATH; missing, the test fails under CI=true and
/// is reported as skipped elsewhere.
fn openssl() -> Option<std::path::PathBuf> {
    test_support::require_binary("svid-ca openssl interop", "openssl")
}

fn openssl_verify(
    dir: &Path,
    bundle: &[CertificateDer<'_>],
    chain: &[CertificateDer<'_>],
) -> (bool, String) {
    std::fs::write(dir.join("bundle.pem"), pem(bundle)).unwrap();
    std::fs::write(dir.join("leaf.pem"), pem(&chain[..1])).unwrap();
    std::fs::write(dir.join("untrusted.pem"), pem(&chain[1..])).unwrap();
    let mut cmd = Command::new(openssl().expect("checked by the caller"));
    cmd.arg("verify").arg("-CAfile").arg(dir.join("bundle.pem"));
    if chain.len() > 1 {
        cmd.arg("-untrusted").arg(dir.join("untrusted.pem"));
    }
    let out = cmd.arg(dir.join("leaf.pem")).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn openssl_verify_accepts_issued_svid_against_bundle_pem() {
    let _limit = test_support::time_limit(30);
    if openssl().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::builder(config()).build().unwrap();
    let svid = ca.issue_x509_svid(&web_ent()).unwrap();
    let (ok, out) = openssl_verify(dir.path(), ca.bundle().x509().authorities(), svid.chain());
    assert!(ok, "{out}");
    // A different CA's bundle does not verify it.
    let other = CertificateAuthority::builder(config()).build().unwrap();
    let (ok, _) = openssl_verify(
        dir.path(),
        other.bundle().x509().authorities(),
        svid.chain(),
    );
    assert!(!ok);
}

#[test]
fn x509_7_openssl_text_shows_exactly_the_listed_extensions() {
    let _limit = test_support::time_limit(30);
    if openssl().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::builder(config()).build().unwrap();
    let svid = ca.issue_x509_svid(&web_ent()).unwrap();
    std::fs::write(dir.path().join("leaf.pem"), pem(&svid.chain()[..1])).unwrap();
    let out = Command::new(openssl().expect("checked by the caller"))
        .args(["x509", "-noout", "-text", "-in"])
        .arg(dir.path().join("leaf.pem"))
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let mut exts: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| {
            l.starts_with("X509v3 ") && l.ends_with(':')
                || l.starts_with("X509v3 ") && l.ends_with("critical")
        })
        .filter(|l| *l != "X509v3 extensions:")
        .collect();
    exts.sort();
    assert_eq!(
        exts,
        vec![
            "X509v3 Authority Key Identifier:",
            "X509v3 Basic Constraints: critical",
            "X509v3 Extended Key Usage:",
            "X509v3 Key Usage: critical",
            "X509v3 Subject Alternative Name:",
            "X509v3 Subject Key Identifier:",
        ],
        "{text}"
    );
    let after = |h: &str| lines[lines.iter().position(|l| l.starts_with(h)).unwrap() + 1];
    assert_eq!(after("X509v3 Basic Constraints"), "CA:FALSE");
    assert_eq!(
        after("X509v3 Key Usage"),
        "Digital Signature, Key Encipherment, Key Agreement"
    );
    assert_eq!(
        after("X509v3 Extended Key Usage"),
        "TLS Web Server Authentication, TLS Web Client Authentication"
    );
    assert_eq!(
        after("X509v3 Subject Alternative Name"),
        "URI:spiffe://example.org/web, DNS:web.example.org, DNS:web"
    );
}

struct Upstream {
    dir: tempfile::TempDir,
}

fn upstream_files(mismatched_key: bool) -> Upstream {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "Upstream Root");
    let cert = p.self_signed(&key).unwrap();
    std::fs::write(dir.path().join("ca.pem"), cert.pem()).unwrap();
    let written = if mismatched_key {
        KeyPair::generate().unwrap()
    } else {
        key
    };
    std::fs::write(dir.path().join("ca.key"), written.serialize_pem()).unwrap();
    Upstream { dir }
}

fn load(up: &Upstream) -> Result<UpstreamCa, UpstreamError> {
    let p = |n: &str| up.dir.path().join(n);
    UpstreamCa::from_pem_files(&p("ca.pem"), &p("ca.key"), &p("ca.pem"))
}

#[test]
fn intermediate_under_upstream_ca_issues_verifiable_svids() {
    let up = upstream_files(false);
    let upstream = load(&up).unwrap();
    let mut cfg: CaConfig = config();
    cfg.upstream = Some(upstream.clone());
    let ca = CertificateAuthority::builder(cfg).build().unwrap();
    assert_eq!(ca.bundle().x509().authorities(), upstream.roots());
    let svid = ca.issue_x509_svid(&web_ent()).unwrap();
    assert_eq!(svid.chain().len(), 2, "leaf + our intermediate");
    verify_x509_svid(svid.chain(), ca.bundle().x509(), ca.now()).unwrap();
    if openssl().is_some() {
        let dir = tempfile::tempdir().unwrap();
        let (ok, out) = openssl_verify(dir.path(), upstream.roots(), svid.chain());
        assert!(ok, "{out}");
    }
}

#[test]
fn upstream_key_that_does_not_match_its_certificate_is_rejected() {
    let up = upstream_files(true);
    assert!(matches!(load(&up), Err(UpstreamError::KeyMismatch)));
    let p = |n: &str| up.dir.path().join(n);
    assert!(matches!(
        UpstreamCa::from_pem_files(&p("missing.pem"), &p("ca.key"), &p("ca.pem")),
        Err(UpstreamError::Io { .. })
    ));
    assert!(matches!(
        UpstreamCa::from_pem(b"junk", b"junk", b"junk"),
        Err(UpstreamError::Pem {
            what: "certificate",
            ..
        })
    ));
    // A leaf (not a CA) as upstream.
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["x".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    assert!(matches!(
        UpstreamCa::from_pem(
            leaf.pem().as_bytes(),
            key.serialize_pem().as_bytes(),
            leaf.pem().as_bytes()
        ),
        Err(UpstreamError::NotACa)
    ));
}

#[test]
fn intermediates_never_outlive_the_upstream_ca_and_expired_upstream_is_refused() {
    use std::time::Duration;
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = (start() - Duration::from_secs(3600)).into();
    p.not_after = (start() + Duration::from_secs(30 * 3600)).into();
    let cert = p.self_signed(&key).unwrap();
    let upstream = UpstreamCa::from_pem(
        cert.pem().as_bytes(),
        key.serialize_pem().as_bytes(),
        cert.pem().as_bytes(),
    )
    .unwrap();
    let mut cfg = config();
    cfg.upstream = Some(upstream.clone());
    let (ca, clock) = ca_with(cfg.clone());
    clock.advance(Duration::from_secs(13 * 3600));
    ca.rotate().unwrap();
    let latest = ca
        .authorities()
        .into_iter()
        .find(|a| a.kind == svid_ca::SlotKind::X509 && a.state == svid_ca::SlotState::Prepared)
        .unwrap();
    assert_eq!(latest.not_after, upstream.not_after());
    let svid = ca.issue_x509_svid(&web_ent()).unwrap();
    verify_x509_svid(svid.chain(), ca.bundle().x509(), ca.now()).unwrap();
    // Building after the upstream expired is refused.
    clock.advance(Duration::from_secs(20 * 3600));
    let err = CertificateAuthority::builder(cfg)
        .clock(std::sync::Arc::new(clock.clone()))
        .build()
        .unwrap_err();
    assert!(matches!(
        err,
        svid_ca::CaError::Config(svid_ca::ConfigError::UpstreamExpired { .. })
    ));
}
