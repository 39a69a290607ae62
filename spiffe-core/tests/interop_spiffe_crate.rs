//! Interoperability with code we did not write: the `spiffe` crate (0.19)
//! judges the same IDs, certificates and tokens, and `jsonwebtoken` signs
//! tokens that we validate.
//!
//! Documented differences, asserted below so a change on either side shows:
//! - Length: both accept IDs over 2048 bytes when parsing; neither differs.
//! - Case: both accept a mixed-case scheme and trust domain and print them
//!   lowercase; the path keeps its case on both sides.
//! - X.509 leaves: the `spiffe` crate's own-SVID parser does not check the
//!   extendedKeyUsage purposes; we require both serverAuth and clientAuth
//!   when the extension is present (X509 leaf profile, table 2.2). The
//!   `EKU_DIFFERENCES` case pins that.
//! - Key match: the `spiffe` crate accepts an SVID whose private key does not
//!   belong to the leaf; we refuse it (as go-spiffe's `x509svid.Parse` does),
//!   since such an SVID cannot complete a TLS handshake. Listed in
//!   `KEY_DIFFERENCES`.
//! - Chain verification: the `spiffe` crate 0.19 parses SVIDs and bundles
//!   but has no chain verifier. `spiffe-rustls` 0.11 validates a peer's
//!   chain with rustls's `WebPkiClientVerifier` over the roots of the
//!   peer's bundle, then applies its own leaf checks (private, reachable
//!   only through a Workload-API-fed handshake, which
//!   mtls-tower/tests/spiffe_rustls_interop.rs covers). Here our
//!   `verify_x509_svid` is compared with that chain step: the bundle parsed
//!   by the `spiffe` crate, its roots given to `WebPkiClientVerifier`. Where
//!   the verdicts differ it is because we apply the X509-SVID leaf rules
//!   and webpki does not (`CHAIN_DIFFERENCES`).

use std::time::{Duration, SystemTime};

use serde_json::json;
use spiffe_core::jwt::{JwtClaims, sign_jwt_svid};
use spiffe_core::{JwtBundle, JwtSvid, PrivateKey, SpiffeId, TrustDomain, X509Error, X509Svid};
use test_support::{
    CaSpec, ExtendedKeyUsagePurpose as Eku, KeyKind, KeyUsagePurpose as Ku, Leaf, LeafSpec, TestCa,
    TestJwtKey,
};

const IDS: &[&str] = &[
    "spiffe://example.org",
    "spiffe://example.org/ns/default/sa/web",
    "SPIFFE://Example.ORG/Path/Case",
    "spiffe://example.org/",
    "spiffe://example.org//a",
    "spiffe://example.org/./a",
    "spiffe://example.org/a/..",
    "spiffe://example.org/a%20b",
    "spiffe://example.org/a?q",
    "spiffe://example.org/a#f",
    "spiffe://user@example.org/a",
    "spiffe://example.org:80/a",
    "spiffe://",
    "spiffe:///a",
    "http://example.org/a",
    "example.org/a",
    "",
    "spiffe://exa mple.org",
    "spiffe://ex_am-ple.org/.dot/..dots/a..b",
    "spiffe://[::1]/a",
    "spiffe://10.0.0.1/a",
    "spiffe://example.org./a",
    "spiffe://-example.org/a",
    "spiffe://example.org/ü",
    "spiffe://example.org/a~b",
];

#[test]
fn spiffe_ids_get_the_same_verdict_and_canonical_form() {
    let long = format!("spiffe://example.org/{}", "a".repeat(3000));
    let long_td = format!("spiffe://{}/a", "a".repeat(256));
    let mut inputs: Vec<&str> = IDS.to_vec();
    inputs.push(&long);
    inputs.push(&long_td);
    for input in inputs {
        let ours = input.parse::<SpiffeId>();
        let theirs = spiffe::SpiffeId::new(input);
        assert_eq!(
            ours.is_ok(),
            theirs.is_ok(),
            "verdict differs for {input:?}: ours {ours:?}"
        );
        if let (Ok(a), Ok(b)) = (ours, theirs) {
            assert_eq!(
                a.to_string(),
                b.to_string(),
                "canonical form differs for {input:?}"
            );
            assert_eq!(a.trust_domain().as_str(), b.trust_domain().as_str());
            assert_eq!(a.path(), b.path());
        }
    }
}

#[test]
fn trust_domains_get_the_same_verdict() {
    let long = "a".repeat(256);
    let cases = [
        "example.org",
        "Example.Org",
        "spiffe://example.org",
        "spiffe://example.org/path",
        "example.org:80",
        "ex%41.org",
        "",
        long.as_str(),
        "..",
        "a_b-c.d",
    ];
    for input in cases {
        let ours = input.parse::<TrustDomain>();
        let theirs = spiffe::TrustDomain::new(input);
        assert_eq!(
            ours.is_ok(),
            theirs.is_ok(),
            "verdict differs for {input:?}: ours {ours:?}"
        );
        if let (Ok(a), Ok(b)) = (ours, theirs) {
            assert_eq!(a.as_str(), b.as_str());
        }
    }
}

fn fixtures() -> Vec<(&'static str, Leaf)> {
    fixtures_of(&TestCa::new("example.org"))
}

fn fixtures_of(ca: &TestCa) -> Vec<(&'static str, Leaf)> {
    const ID: &str = "spiffe://example.org/ns/default/sa/web";
    let inter_not_ca = ca.intermediate(CaSpec {
        is_ca: false,
        ..CaSpec::new("example.org")
    });
    let inter = ca.intermediate(CaSpec::new("example.org"));
    let valid = ca.leaf(ID);
    let mut mismatch = ca.leaf(ID);
    mismatch.key_der = ca.leaf(ID).key_der;
    vec![
        ("valid", valid),
        ("valid with intermediate", inter.leaf(ID)),
        (
            "valid with DNS SAN",
            ca.leaf_with(LeafSpec::new(ID).dns(&["web.example.org"])),
        ),
        (
            "valid with empty subject",
            ca.leaf_with(LeafSpec::new(ID).empty_subject()),
        ),
        (
            "leaf with CA=true",
            ca.leaf_with(LeafSpec::new(ID).ca(true)),
        ),
        (
            "leaf with keyCertSign",
            ca.leaf_with(
                LeafSpec::new(ID).key_usages(Some(vec![Ku::DigitalSignature, Ku::KeyCertSign])),
            ),
        ),
        (
            "leaf with cRLSign",
            ca.leaf_with(
                LeafSpec::new(ID).key_usages(Some(vec![Ku::DigitalSignature, Ku::CrlSign])),
            ),
        ),
        (
            "leaf without digitalSignature",
            ca.leaf_with(LeafSpec::new(ID).key_usages(Some(vec![Ku::KeyEncipherment]))),
        ),
        (
            "leaf without keyUsage",
            ca.leaf_with(LeafSpec::new(ID).key_usages(None)),
        ),
        (
            "two URI SANs",
            ca.leaf_with(LeafSpec::new(ID).uris(&[ID, "spiffe://example.org/b"])),
        ),
        (
            "no URI SAN",
            ca.leaf_with(LeafSpec::new(ID).uris(&[]).dns(&["x.org"])),
        ),
        ("root-path ID", ca.leaf("spiffe://example.org")),
        ("intermediate without CA", inter_not_ca.leaf(ID)),
        (
            "expired",
            ca.leaf_with(
                LeafSpec::new(ID).valid(time::Duration::hours(-2), time::Duration::hours(-1)),
            ),
        ),
        ("key mismatch", mismatch),
        (
            "RSA leaf",
            ca.leaf_with(LeafSpec::new(ID).key(KeyKind::Rsa2048)),
        ),
    ]
}

/// Fixtures we refuse and the `spiffe` crate accepts (see the module docs).
const KEY_DIFFERENCES: &[&str] = &["key mismatch"];

#[test]
fn x509_svids_get_the_same_verdict() {
    for (name, leaf) in fixtures() {
        let ours = X509Svid::from_der(&leaf.chain_der(), &leaf.key_der);
        let theirs = spiffe::X509Svid::parse_from_der(&leaf.chain_der(), &leaf.key_der);
        if KEY_DIFFERENCES.contains(&name) {
            assert!(
                matches!(ours, Err(X509Error::KeyMismatch)) && theirs.is_ok(),
                "documented difference changed: {name}"
            );
            continue;
        }
        assert_eq!(
            ours.is_ok(),
            theirs.is_ok(),
            "verdict differs for {name}: ours {:?}, theirs {:?}",
            ours.as_ref().err(),
            theirs.as_ref().err()
        );
        if let (Ok(a), Ok(b)) = (&ours, &theirs) {
            assert_eq!(a.spiffe_id().to_string(), b.spiffe_id().to_string());
        }
    }
}

#[test]
fn x509_documented_difference_eku_purposes() {
    let ca = TestCa::new("example.org");
    let leaf = ca.leaf_with(LeafSpec::new("spiffe://example.org/w").eku(vec![Eku::ServerAuth]));
    assert_eq!(
        X509Svid::from_der(&leaf.chain_der(), &leaf.key_der).unwrap_err(),
        X509Error::LeafEku
    );
    assert!(spiffe::X509Svid::parse_from_der(&leaf.chain_der(), &leaf.key_der).is_ok());
}

/// Fixtures whose chains we refuse and webpki (the chain step of
/// `spiffe-rustls`) accepts: each breaks an X509-SVID leaf rule that is not
/// a path-validation rule.
const CHAIN_DIFFERENCES: &[&str] = &[
    "leaf with keyCertSign",
    "leaf with cRLSign",
    "leaf without digitalSignature",
    "leaf without keyUsage",
    "two URI SANs",
    "no URI SAN",
    "root-path ID",
];

/// The fixtures, plus chains that only path validation can refuse.
fn chain_fixtures(ca: &TestCa) -> Vec<(&'static str, Leaf)> {
    const ID: &str = "spiffe://example.org/ns/default/sa/web";
    let mut all = fixtures_of(ca);
    all.push(("signed by another CA", TestCa::new("example.org").leaf(ID)));
    let mut broken = ca.leaf(ID);
    let mut der = broken.chain[0].to_vec();
    let last = der.len() - 1;
    der[last] ^= 0x01;
    broken.chain[0] = der.into();
    all.push(("broken signature", broken));
    all.push((
        "not yet valid",
        ca.leaf_with(LeafSpec::new(ID).valid(time::Duration::hours(1), time::Duration::hours(2))),
    ));
    all
}

#[test]
fn x509_chains_get_the_same_verification_verdict_as_webpki_over_their_bundle() {
    let ca = TestCa::new("example.org");
    let root = ca.root_cert();
    let ours_bundle =
        spiffe_core::X509Bundle::new("example.org".parse().unwrap(), vec![root.clone()]).unwrap();
    let theirs_bundle = spiffe::X509Bundle::parse_from_der(
        spiffe::TrustDomain::new("example.org").unwrap(),
        root.as_ref(),
    )
    .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for authority in theirs_bundle.authorities() {
        roots
            .add(rustls_pki_types::CertificateDer::from(
                authority.as_ref().to_vec(),
            ))
            .unwrap();
    }
    let theirs = rustls::server::WebPkiClientVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
    )
    .build()
    .unwrap();
    let mut differences = Vec::new();
    for (name, leaf) in chain_fixtures(&ca) {
        let ours = spiffe_core::verify_x509_svid(&leaf.chain, &ours_bundle, SystemTime::now());
        let their = theirs.verify_client_cert(
            &leaf.chain[0],
            &leaf.chain[1..],
            rustls_pki_types::UnixTime::now(),
        );
        match (&ours, &their) {
            (Ok(id), Ok(_)) => assert_eq!(id.as_str(), "spiffe://example.org/ns/default/sa/web"),
            (Err(_), Ok(_)) => differences.push(name),
            (Ok(_), Err(e)) => panic!("{name}: we accept a chain webpki refuses ({e:?})"),
            (Err(o), Err(t)) => {
                // Where webpki refuses, our refusal comes from the same step.
                assert!(
                    matches!(o, spiffe_core::VerifyError::Chain { .. }),
                    "{name}: ours {o:?}, webpki {t:?}"
                );
            }
        }
    }
    assert_eq!(differences, CHAIN_DIFFERENCES);
}

fn their_bundle_set(ours: &JwtBundle) -> spiffe::JwtBundleSet {
    let td = spiffe::TrustDomain::new(ours.trust_domain().as_str()).unwrap();
    let b = spiffe::JwtBundle::from_jwt_authorities(td, &ours.to_jwks()).unwrap();
    let mut set = spiffe::JwtBundleSet::new();
    set.add_bundle(b);
    set
}

#[test]
fn jwt_svids_signed_by_us_validate_in_the_spiffe_crate() {
    for kind in [KeyKind::P256, KeyKind::P384, KeyKind::Rsa2048] {
        let key = TestJwtKey::generate(kind);
        let jwks = json!({"keys": [key.jwk("kid-1")]});
        let ours =
            JwtBundle::from_jwks("example.org".parse().unwrap(), jwks.to_string().as_bytes())
                .unwrap();
        let pk = PrivateKey::from_pkcs8_der(key.pkcs8()).unwrap();
        let claims = JwtClaims {
            subject: "spiffe://example.org/w".parse().unwrap(),
            audience: vec!["api".into()],
            expiry: SystemTime::now() + Duration::from_secs(300),
            issued_at: SystemTime::now(),
            issuer: None,
            extra: Default::default(),
        };
        let token = sign_jwt_svid(&pk, "kid-1", &claims).unwrap();
        let theirs =
            spiffe::JwtSvid::parse_and_validate(&token, &their_bundle_set(&ours), &["api"])
                .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        assert_eq!(theirs.spiffe_id().to_string(), "spiffe://example.org/w");
        // Both refuse the wrong audience.
        let theirs =
            spiffe::JwtSvid::parse_and_validate(&token, &their_bundle_set(&ours), &["other"])
                .unwrap_err();
        assert!(
            matches!(&theirs, spiffe::JwtSvidError::InvalidToken(e)
                if e.kind() == spiffe::JwtVerificationErrorKind::AudienceMismatch),
            "{kind:?}: {theirs:?}"
        );
        let ours = JwtSvid::validate(&token, &ours, "other", SystemTime::now()).unwrap_err();
        assert!(
            matches!(&ours, spiffe_core::JwtError::AudienceMismatch { expected } if expected == "other"),
            "{kind:?}: {ours:?}"
        );
    }
}

#[test]
fn jwt_svids_signed_by_jsonwebtoken_validate_in_ours_and_theirs() {
    let key = TestJwtKey::generate(KeyKind::P256);
    let jwks = json!({"keys": [key.jwk("kid-9")]});
    let ours =
        JwtBundle::from_jwks("example.org".parse().unwrap(), jwks.to_string().as_bytes()).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("kid-9".into());
    let exp = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 300;
    let claims = json!({"sub": "spiffe://example.org/w", "aud": ["api"], "exp": exp});
    let token = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ec_der(key.pkcs8()),
    )
    .unwrap();
    let svid = JwtSvid::validate(&token, &ours, "api", SystemTime::now()).unwrap();
    assert_eq!(svid.spiffe_id().as_str(), "spiffe://example.org/w");
    assert!(
        spiffe::JwtSvid::parse_and_validate(&token, &their_bundle_set(&ours), &["api"]).is_ok()
    );
    // A token signed by another key fails on both sides.
    let other = TestJwtKey::generate(KeyKind::P256);
    let forged = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ec_der(other.pkcs8()),
    )
    .unwrap();
    let our_err = JwtSvid::validate(&forged, &ours, "api", SystemTime::now()).unwrap_err();
    assert!(
        matches!(our_err, spiffe_core::JwtError::BadSignature),
        "{our_err:?}"
    );
    let their_err =
        spiffe::JwtSvid::parse_and_validate(&forged, &their_bundle_set(&ours), &["api"])
            .unwrap_err();
    assert!(
        matches!(&their_err, spiffe::JwtSvidError::InvalidToken(e)
            if e.kind() == spiffe::JwtVerificationErrorKind::InvalidSignature),
        "{their_err:?}"
    );
}

#[test]
fn hostile_jwt_headers_get_the_same_verdict() {
    let key = TestJwtKey::generate(KeyKind::P256);
    let jwks = json!({"keys": [key.jwk("k")]});
    let ours =
        JwtBundle::from_jwks("example.org".parse().unwrap(), jwks.to_string().as_bytes()).unwrap();
    let exp = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 300;
    let claims = json!({"sub": "spiffe://example.org/w", "aud": "api", "exp": exp});
    let headers = [
        json!({"alg": "ES256", "kid": "k"}),
        json!({"alg": "ES256", "kid": "k", "typ": "JOSE"}),
        json!({"alg": "ES256", "kid": "k", "typ": "foo"}),
        json!({"alg": "ES256"}),
        json!({"alg": "ES256", "kid": "k", "crit": ["exp"]}),
        json!({"alg": "ES256", "kid": "k", "jku": "https://evil"}),
        json!({"alg": "HS256", "kid": "k"}),
        json!({"alg": "none", "kid": "k"}),
    ];
    for h in headers {
        let token = test_support::sign_raw(&h, &claims, Some(&key));
        let a = JwtSvid::validate(&token, &ours, "api", SystemTime::now());
        let b = spiffe::JwtSvid::parse_and_validate(&token, &their_bundle_set(&ours), &["api"]);
        assert_eq!(
            a.is_ok(),
            b.is_ok(),
            "verdict differs for header {h}: ours {:?}, theirs {:?}",
            a.err(),
            b.err()
        );
    }
}
