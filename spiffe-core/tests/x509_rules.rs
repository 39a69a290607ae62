//! X509-SVID rules (SVID-*, X509-* in docs/spec/spiffe.md), on certificates
//! generated at test time, including the odd ones.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use rustls_pki_types::CertificateDer;
use spiffe_core::x509::verify_x509_svid_full;
use spiffe_core::{
    BundleSet, JwtBundle, PrivateKey, SpiffeBundle, TrustDomain, VerifyError, X509Bundle,
    X509Error, X509Svid, verify_x509_svid,
};
use test_support::{
    CaSpec, ExtendedKeyUsagePurpose as Eku, KeyKind, KeyUsagePurpose as Ku, Leaf, LeafSpec, TestCa,
};

const ID: &str = "spiffe://example.org/ns/default/sa/web";

fn td(s: &str) -> TrustDomain {
    s.parse().unwrap()
}

fn bundles(cas: &[(&str, &TestCa)]) -> BundleSet {
    cas.iter()
        .map(|(name, ca)| {
            let x = X509Bundle::new(td(name), vec![ca.root_cert()]).unwrap();
            SpiffeBundle::new(x, JwtBundle::new(td(name))).unwrap()
        })
        .collect()
}

fn svid(leaf: &Leaf) -> Result<X509Svid, X509Error> {
    X509Svid::from_der(&leaf.chain_der(), &leaf.key_der)
}

fn verify(leaf: &Leaf, set: &BundleSet) -> Result<spiffe_core::SpiffeId, VerifyError> {
    verify_x509_svid(&leaf.chain, set, SystemTime::now())
}

fn chain_error(r: Result<spiffe_core::SpiffeId, VerifyError>) -> webpki::Error {
    match r {
        Err(VerifyError::Chain { source, .. }) => source,
        other => panic!("expected a chain error, got {other:?}"),
    }
}

#[test]
fn valid_leaf_parses_and_verifies() {
    let ca = TestCa::new("example.org");
    let leaf = ca.leaf(ID);
    let s = svid(&leaf).unwrap();
    assert_eq!(s.spiffe_id().as_str(), ID);
    assert_eq!(s.chain_der(), leaf.chain_der());
    let set = bundles(&[("example.org", &ca)]);
    let v = verify_x509_svid_full(&leaf.chain, &set, SystemTime::now()).unwrap();
    assert_eq!(v.spiffe_id().as_str(), ID);
    assert_eq!(v.not_after(), s.not_after());
    assert!(v.not_after() > SystemTime::now());
}

#[test]
fn x509_1_exactly_one_uri_san() {
    let ca = TestCa::new("example.org");
    let set = bundles(&[("example.org", &ca)]);
    let none = ca.leaf_with(LeafSpec::new(ID).uris(&[]).dns(&["web.example.org"]));
    assert_eq!(svid(&none).unwrap_err(), X509Error::NoUriSan);
    assert!(matches!(
        verify(&none, &set),
        Err(VerifyError::Svid(X509Error::NoUriSan))
    ));
    let two = ca.leaf_with(LeafSpec::new(ID).uris(&[ID, "spiffe://example.org/other"]));
    assert_eq!(
        svid(&two).unwrap_err(),
        X509Error::MultipleUriSans { count: 2 }
    );
    assert!(matches!(
        verify(&two, &set),
        Err(VerifyError::Svid(X509Error::MultipleUriSans { count: 2 }))
    ));
    let not_spiffe = ca.leaf_with(LeafSpec::new("https://example.org/web"));
    assert!(matches!(
        svid(&not_spiffe),
        Err(X509Error::InvalidSpiffeId(_))
    ));
}

#[test]
fn x509_2_other_san_types_are_allowed() {
    let ca = TestCa::new("example.org");
    let leaf = ca.leaf_with(LeafSpec::new(ID).dns(&["web.example.org", "web"]));
    assert_eq!(svid(&leaf).unwrap().spiffe_id().as_str(), ID);
    assert!(verify(&leaf, &bundles(&[("example.org", &ca)])).is_ok());
}

#[test]
fn x509_3_empty_subject_with_critical_san_is_valid() {
    let ca = TestCa::new("example.org");
    let leaf = ca.leaf_with(LeafSpec::new(ID).empty_subject());
    assert_eq!(svid(&leaf).unwrap().spiffe_id().as_str(), ID);
    assert!(verify(&leaf, &bundles(&[("example.org", &ca)])).is_ok());
}

#[test]
fn x509_4_signing_certificates_need_ca_and_key_cert_sign() {
    let root = TestCa::new("example.org");
    let set = bundles(&[("example.org", &root)]);
    let good = root.intermediate(CaSpec::new("example.org"));
    let leaf = good.leaf(ID);
    assert_eq!(leaf.chain.len(), 2);
    assert!(svid(&leaf).is_ok());
    assert_eq!(verify(&leaf, &set).unwrap().as_str(), ID);

    let not_ca = root.intermediate(CaSpec {
        is_ca: false,
        ..CaSpec::new("example.org")
    });
    let leaf = not_ca.leaf(ID);
    assert_eq!(
        svid(&leaf).unwrap_err(),
        X509Error::SigningCertNotCa { index: 1 }
    );
    assert!(matches!(
        verify(&leaf, &set),
        Err(VerifyError::Chain { .. })
    ));

    let no_kcs = root.intermediate(CaSpec {
        key_cert_sign: false,
        ..CaSpec::new("example.org")
    });
    let leaf = no_kcs.leaf(ID);
    assert_eq!(
        svid(&leaf).unwrap_err(),
        X509Error::SigningCertNoKeyCertSign { index: 1 }
    );
    assert_eq!(
        verify(&leaf, &set).unwrap_err(),
        VerifyError::Svid(X509Error::SigningCertNoKeyCertSign { index: 1 })
    );
}

#[test]
fn x509_5_signing_certificates_never_authenticate() {
    let root = TestCa::new("example.org");
    let set = bundles(&[("example.org", &root)]);
    let inter = root.intermediate(CaSpec {
        uri: Some("spiffe://example.org/ca".into()),
        ..CaSpec::new("example.org")
    });
    // The intermediate's own certificate presented as a leaf.
    let chain = vec![inter.cert().clone()];
    let r = verify_x509_svid(&chain, &set, SystemTime::now());
    assert!(
        matches!(
            r,
            Err(VerifyError::Chain { .. }) | Err(VerifyError::Svid(X509Error::LeafIsCa))
        ),
        "{r:?}"
    );
}

#[test]
fn x509_6_chain_is_validated_with_the_bundle_of_the_leafs_own_trust_domain() {
    let ours = TestCa::new("example.org");
    let theirs = TestCa::new("other.org");
    // other.org's CA issues an ID in example.org: must be checked against
    // example.org's bundle, never a pooled set.
    let forged = theirs.leaf("spiffe://example.org/ns/default/sa/web");
    let set = bundles(&[("example.org", &ours), ("other.org", &theirs)]);
    assert_eq!(
        chain_error(verify(&forged, &set)),
        webpki::Error::UnknownIssuer
    );
    // Its own trust domain verifies with its own bundle.
    let legit = theirs.leaf("spiffe://other.org/w");
    assert_eq!(
        verify(&legit, &set).unwrap().as_str(),
        "spiffe://other.org/w"
    );
    // No bundle for the trust domain: untrusted.
    let stranger = TestCa::new("stranger.org").leaf("spiffe://stranger.org/w");
    assert_eq!(
        verify(&stranger, &set).unwrap_err(),
        VerifyError::NoBundle {
            trust_domain: td("stranger.org")
        }
    );
}

#[test]
fn x509_7_leaf_with_ca_true_is_rejected() {
    let ca = TestCa::new("example.org");
    let leaf = ca.leaf_with(LeafSpec::new(ID).ca(true));
    assert_eq!(svid(&leaf).unwrap_err(), X509Error::LeafIsCa);
    assert_eq!(
        chain_error(verify(&leaf, &bundles(&[("example.org", &ca)]))),
        webpki::Error::CaUsedAsEndEntity
    );
}

#[test]
fn x509_7_leaf_with_key_cert_sign_is_rejected() {
    let ca = TestCa::new("example.org");
    let leaf = ca
        .leaf_with(LeafSpec::new(ID).key_usages(Some(vec![Ku::DigitalSignature, Ku::KeyCertSign])));
    assert_eq!(svid(&leaf).unwrap_err(), X509Error::LeafKeyCertSign);
    assert_eq!(
        verify(&leaf, &bundles(&[("example.org", &ca)])).unwrap_err(),
        VerifyError::Svid(X509Error::LeafKeyCertSign)
    );
}

#[test]
fn x509_7_leaf_with_crl_sign_is_rejected() {
    let ca = TestCa::new("example.org");
    let leaf =
        ca.leaf_with(LeafSpec::new(ID).key_usages(Some(vec![Ku::DigitalSignature, Ku::CrlSign])));
    assert_eq!(svid(&leaf).unwrap_err(), X509Error::LeafCrlSign);
    assert_eq!(
        verify(&leaf, &bundles(&[("example.org", &ca)])).unwrap_err(),
        VerifyError::Svid(X509Error::LeafCrlSign)
    );
}

#[test]
fn x509_7_leaf_with_root_path_is_rejected() {
    let ca = TestCa::new("example.org");
    let leaf = ca.leaf("spiffe://example.org");
    assert!(matches!(svid(&leaf), Err(X509Error::RootPathLeaf { .. })));
    assert!(matches!(
        verify(&leaf, &bundles(&[("example.org", &ca)])),
        Err(VerifyError::Svid(X509Error::RootPathLeaf { .. }))
    ));
}

#[test]
fn leaf_without_digital_signature_is_rejected() {
    let ca = TestCa::new("example.org");
    let leaf = ca.leaf_with(LeafSpec::new(ID).key_usages(Some(vec![Ku::KeyEncipherment])));
    assert_eq!(svid(&leaf).unwrap_err(), X509Error::LeafNoDigitalSignature);
    assert_eq!(
        verify(&leaf, &bundles(&[("example.org", &ca)])).unwrap_err(),
        VerifyError::Svid(X509Error::LeafNoDigitalSignature)
    );
}

#[test]
fn leaf_without_key_usage_is_rejected() {
    let ca = TestCa::new("example.org");
    let leaf = ca.leaf_with(LeafSpec::new(ID).key_usages(None));
    assert_eq!(svid(&leaf).unwrap_err(), X509Error::LeafNoKeyUsage);
}

#[test]
fn leaf_eku_must_hold_server_and_client_auth_when_present() {
    let ca = TestCa::new("example.org");
    let server_only = ca.leaf_with(LeafSpec::new(ID).eku(vec![Eku::ServerAuth]));
    assert_eq!(svid(&server_only).unwrap_err(), X509Error::LeafEku);
    // Path validation for client authentication already needs clientAuth.
    assert!(matches!(
        chain_error(verify(&server_only, &bundles(&[("example.org", &ca)]))),
        webpki::Error::RequiredEkuNotFoundContext(_)
    ));
    let absent = ca.leaf_with(LeafSpec::new(ID).eku(vec![]));
    assert!(svid(&absent).is_ok());
    assert!(verify(&absent, &bundles(&[("example.org", &ca)])).is_ok());
}

#[test]
fn expired_and_not_yet_valid_chains_are_rejected() {
    let ca = TestCa::new("example.org");
    let set = bundles(&[("example.org", &ca)]);
    let expired =
        ca.leaf_with(LeafSpec::new(ID).valid(time::Duration::hours(-2), time::Duration::hours(-1)));
    assert!(svid(&expired).is_ok(), "an expired SVID is still an SVID");
    assert!(matches!(
        chain_error(verify(&expired, &set)),
        webpki::Error::CertExpired { .. }
    ));
    let future =
        ca.leaf_with(LeafSpec::new(ID).valid(time::Duration::hours(1), time::Duration::hours(2)));
    assert!(matches!(
        chain_error(verify(&future, &set)),
        webpki::Error::CertNotValidYet { .. }
    ));
    // The same leaf verifies at a time inside its window.
    let later = SystemTime::now() + Duration::from_secs(90 * 60);
    assert!(verify_x509_svid(&future.chain, &set, later).is_ok());
}

#[test]
fn key_mismatch_is_rejected() {
    let ca = TestCa::new("example.org");
    let a = ca.leaf(ID);
    let b = ca.leaf(ID);
    let mixed = X509Svid::from_der(&a.chain_der(), &b.key_der);
    assert_eq!(mixed.unwrap_err(), X509Error::KeyMismatch);
}

#[test]
fn rsa_and_p384_keys_are_supported() {
    let ca = TestCa::root(CaSpec {
        key: KeyKind::P384,
        ..CaSpec::new("example.org")
    });
    for kind in [KeyKind::P384, KeyKind::Rsa2048] {
        let leaf = ca.leaf_with(LeafSpec::new(ID).key(kind));
        assert!(svid(&leaf).is_ok(), "{kind:?}");
        assert!(
            verify(&leaf, &bundles(&[("example.org", &ca)])).is_ok(),
            "{kind:?}"
        );
    }
}

#[test]
fn self_signed_certificate_with_valid_looking_id_is_untrusted() {
    let ca = TestCa::new("example.org");
    let impostor = TestCa::root(CaSpec {
        uri: Some(ID.into()),
        ..CaSpec::new("example.org")
    });
    let r = verify_x509_svid(
        &[impostor.cert().clone()],
        &bundles(&[("example.org", &ca)]),
        SystemTime::now(),
    );
    assert_eq!(chain_error(r), webpki::Error::CaUsedAsEndEntity);
    let leaf = impostor.leaf("spiffe://example.org/ns/default/sa/web");
    assert_eq!(
        chain_error(verify(&leaf, &bundles(&[("example.org", &ca)]))),
        webpki::Error::UnknownIssuer
    );
}

#[test]
fn svid_1_authority_ids_have_no_path() {
    let root = TestCa::new("example.org");
    let with_path = root.intermediate(CaSpec {
        uri: Some("spiffe://example.org/ca".into()),
        ..CaSpec::new("example.org")
    });
    let leaf = with_path.leaf(ID);
    assert_eq!(
        svid(&leaf).unwrap_err(),
        X509Error::SigningCertIdHasPath { index: 1 }
    );
}

#[test]
fn svid_2_tampered_certificate_fails_signature_check() {
    let ca = TestCa::new("example.org");
    let leaf = ca.leaf("spiffe://example.org/ns/default/sa/aaa");
    let mut der = leaf.chain[0].to_vec();
    // The SAN's own bytes: a bare "aaa" may also occur by chance in the
    // random serial or key identifiers, and tampering with the authority
    // key identifier makes the issuer unknown instead.
    let uri = b"spiffe://example.org/ns/default/sa/aaa";
    let pos = der.windows(uri.len()).position(|w| w == uri).unwrap() + uri.len() - 3;
    der[pos..pos + 3].copy_from_slice(b"bbb");
    let chain = vec![CertificateDer::from(der)];
    let r = verify_x509_svid(&chain, &bundles(&[("example.org", &ca)]), SystemTime::now());
    assert!(
        matches!(
            r,
            Err(VerifyError::Chain {
                source: webpki::Error::InvalidSignatureForPublicKey,
                ..
            })
        ),
        "{r:?}"
    );
}

#[test]
fn svid_3_only_x509_certificates_are_accepted() {
    let key = TestCa::new("example.org").leaf(ID).key_der;
    assert!(matches!(
        X509Svid::from_der(b"\x30\x03abc", &key),
        Err(X509Error::Malformed { .. })
    ));
    assert!(matches!(
        X509Svid::from_der(b"not der", &key),
        Err(X509Error::Malformed { .. })
    ));
    assert_eq!(
        X509Svid::from_der(b"", &key).unwrap_err(),
        X509Error::EmptyChain
    );
    let set = BundleSet::new();
    assert!(matches!(
        verify_x509_svid(&[], &set, SystemTime::now()),
        Err(VerifyError::Svid(X509Error::EmptyChain))
    ));
    assert!(matches!(
        verify_x509_svid(
            &[CertificateDer::from(vec![1, 2, 3])],
            &set,
            SystemTime::now()
        ),
        Err(VerifyError::Svid(X509Error::Malformed { .. }))
    ));
}

#[test]
fn svid_4_foreign_authority_cannot_vouch_for_our_ids() {
    let ours = TestCa::new("example.org");
    let theirs = TestCa::new("other.org");
    let forged = theirs.leaf(ID);
    // Even with their root wrongly listed under their name only, and ours
    // under ours, the forged ID is checked against ours alone.
    let mut map = HashMap::new();
    map.insert(
        td("example.org"),
        X509Bundle::new(td("example.org"), vec![ours.root_cert()]).unwrap(),
    );
    map.insert(
        td("other.org"),
        X509Bundle::new(td("other.org"), vec![theirs.root_cert()]).unwrap(),
    );
    let r = verify_x509_svid(&forged.chain, &map, SystemTime::now());
    assert!(matches!(
        r,
        Err(VerifyError::Chain {
            source: webpki::Error::UnknownIssuer,
            ..
        })
    ));
}

#[test]
fn pem_parsing_and_errors() {
    let ca = TestCa::new("example.org");
    let leaf = ca.leaf(ID);
    let s = X509Svid::from_pem(leaf.chain_pem().as_bytes(), leaf.key_pem().as_bytes()).unwrap();
    assert_eq!(s.spiffe_id().as_str(), ID);
    assert_eq!(
        X509Svid::from_pem(b"", leaf.key_pem().as_bytes()).unwrap_err(),
        X509Error::EmptyChain
    );
    assert!(matches!(
        X509Svid::from_pem(leaf.chain_pem().as_bytes(), b"garbage"),
        Err(X509Error::Pem { .. })
    ));
    let b = X509Bundle::from_pem(
        td("example.org"),
        test_support::pem("CERTIFICATE", ca.cert()).as_bytes(),
    )
    .unwrap();
    assert_eq!(b.authorities(), &[ca.cert().clone()]);
    assert_eq!(
        X509Bundle::from_der(td("example.org"), &b.to_der()).unwrap(),
        b
    );
}

#[test]
fn unsupported_key_is_rejected() {
    assert_eq!(
        PrivateKey::from_pkcs8_der(b"\x30\x00").unwrap_err(),
        X509Error::UnsupportedKey
    );
}

#[test]
fn debug_never_prints_the_private_key() {
    let ca = TestCa::new("example.org");
    let leaf = ca.leaf(ID);
    let s = svid(&leaf).unwrap();
    let dbg = format!("{s:?}");
    assert!(dbg.contains("<redacted>"));
    let hex: String = leaf
        .key_der
        .iter()
        .take(40)
        .map(|b| format!("{b}, "))
        .collect();
    assert!(!dbg.contains(hex.trim_end_matches(", ")));
}

#[test]
fn single_bundle_answers_only_for_its_trust_domain() {
    let ca = TestCa::new("example.org");
    let b = X509Bundle::new(td("example.org"), vec![ca.root_cert()]).unwrap();
    let leaf = ca.leaf(ID);
    assert!(verify_x509_svid(&leaf.chain, &b, SystemTime::now()).is_ok());
    let other = TestCa::new("other.org").leaf("spiffe://other.org/x");
    assert!(matches!(
        verify_x509_svid(&other.chain, &b, SystemTime::now()),
        Err(VerifyError::NoBundle { .. })
    ));
    // BUN-8: an empty bundle trusts nothing.
    let empty = X509Bundle::empty(td("example.org"));
    assert!(matches!(
        verify_x509_svid(&leaf.chain, &empty, SystemTime::now()),
        Err(VerifyError::Chain { .. })
    ));
}
