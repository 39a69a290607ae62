//! Trust-domain bundle rules (BUN-*, MAP-*, X509-8/9 in docs/spec/spiffe.md).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use spiffe_core::{BundleError, BundleSet, JwtBundle, SpiffeBundle, TrustDomain, X509Bundle};
use test_support::{KeyKind, TestCa, TestJwtKey};

fn td(s: &str) -> TrustDomain {
    s.parse().unwrap()
}

fn x509_jwk(ca: &TestCa) -> Value {
    json!({"kty": "EC", "use": "x509-svid", "x5c": [STANDARD.encode(ca.cert())]})
}

fn jwt_jwk(key: &TestJwtKey, kid: &str) -> Value {
    let mut j = key.jwk(kid);
    j["use"] = json!("jwt-svid");
    j
}

fn parse(doc: &Value) -> Result<SpiffeBundle, BundleError> {
    SpiffeBundle::parse(td("example.org"), doc.to_string().as_bytes())
}

#[test]
fn bun_1_several_keys_and_key_types() {
    let a = TestCa::new("example.org");
    let b = TestCa::new("example.org");
    let k1 = TestJwtKey::generate(KeyKind::P256);
    let k2 = TestJwtKey::generate(KeyKind::Rsa2048);
    let doc = json!({"keys": [x509_jwk(&a), x509_jwk(&b), jwt_jwk(&k1, "1"), jwt_jwk(&k2, "2")]});
    let bundle = parse(&doc).unwrap();
    assert_eq!(bundle.x509().authorities().len(), 2);
    assert!(bundle.jwt().key("1").is_some() && bundle.jwt().key("2").is_some());
}

#[test]
fn bun_2_bundle_is_stored_with_its_trust_domain() {
    let bundle = SpiffeBundle::parse(td("Example.ORG"), br#"{"keys": []}"#).unwrap();
    assert_eq!(bundle.trust_domain(), &td("example.org"));
    assert_eq!(bundle.x509().trust_domain(), &td("example.org"));
    assert_eq!(bundle.jwt().trust_domain(), &td("example.org"));
}

#[test]
fn bun_3_extra_top_level_parameters_are_ignored() {
    let doc = json!({"keys": [], "extra": {"anything": true}, "spiffe_sequence": 2});
    assert_eq!(parse(&doc).unwrap().sequence(), Some(2));
}

#[test]
fn bun_4_sequence_is_a_64_bit_integer() {
    let doc = json!({"keys": [], "spiffe_sequence": u64::MAX});
    assert_eq!(parse(&doc).unwrap().sequence(), Some(u64::MAX));
    assert!(matches!(
        parse(&json!({"keys": [], "spiffe_sequence": -1})),
        Err(BundleError::Malformed { .. })
    ));
    assert!(matches!(
        parse(&json!({"keys": [], "spiffe_sequence": "1"})),
        Err(BundleError::Malformed { .. })
    ));
}

#[test]
fn bun_5_refresh_hint_is_whole_seconds() {
    let doc = json!({"keys": [], "spiffe_refresh_hint": 300});
    assert_eq!(
        parse(&doc).unwrap().refresh_hint(),
        Some(Duration::from_secs(300))
    );
    assert_eq!(parse(&json!({"keys": []})).unwrap().refresh_hint(), None);
    assert!(matches!(
        parse(&json!({"keys": [], "spiffe_refresh_hint": 1.5})),
        Err(BundleError::Malformed { .. })
    ));
}

#[test]
fn bun_6_keys_must_be_present() {
    assert!(matches!(
        parse(&json!({})),
        Err(BundleError::Malformed { .. })
    ));
    assert!(matches!(
        parse(&json!({"keys": null})),
        Err(BundleError::Malformed { .. })
    ));
    assert!(parse(&json!({"keys": []})).is_ok());
}

#[test]
fn bun_7_unknown_use_or_kty_is_skipped_not_fatal() {
    let ca = TestCa::new("example.org");
    let doc = json!({"keys": [
        {"kty": "EC", "use": "wit-svid", "kid": "w", "crv": "P-256", "x": "a", "y": "b"},
        {"kty": "EC", "kid": "nouse", "crv": "P-256", "x": "a", "y": "b"},
        {"kty": "EC", "use": "X509-SVID", "x5c": ["!!"]},
        {"kty": "OKP", "use": "jwt-svid", "kid": "ed", "crv": "Ed25519", "x": "abc"},
        x509_jwk(&ca),
    ]});
    let bundle = parse(&doc).unwrap();
    assert_eq!(bundle.x509().authorities().len(), 1);
    assert!(bundle.jwt().is_empty());
}

#[test]
fn bun_8_empty_bundle_trusts_nothing() {
    let bundle = parse(&json!({"keys": []})).unwrap();
    assert!(bundle.x509().is_empty() && bundle.jwt().is_empty());
    let ca = TestCa::new("example.org");
    let leaf = ca.leaf("spiffe://example.org/w");
    let set: BundleSet = [bundle].into_iter().collect();
    let err =
        spiffe_core::verify_x509_svid(&leaf.chain, &set, std::time::SystemTime::now()).unwrap_err();
    assert!(
        matches!(
            err,
            spiffe_core::VerifyError::Chain {
                source: webpki::Error::UnknownIssuer,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn bun_9_kty_is_required() {
    let doc = json!({"keys": [{"use": "jwt-svid", "kid": "k"}]});
    assert_eq!(
        parse(&doc).unwrap_err(),
        BundleError::MissingKty { index: 0 }
    );
}

#[test]
fn bun_10_rotation_is_a_new_document_with_a_higher_sequence() {
    let old = TestCa::new("example.org");
    let new = TestCa::new("example.org");
    let v1 = parse(&json!({"keys": [x509_jwk(&old)], "spiffe_sequence": 1})).unwrap();
    let v2 =
        parse(&json!({"keys": [x509_jwk(&old), x509_jwk(&new)], "spiffe_sequence": 2})).unwrap();
    let v3 = parse(&json!({"keys": [x509_jwk(&new)], "spiffe_sequence": 3})).unwrap();
    assert!(v1.sequence() < v2.sequence() && v2.sequence() < v3.sequence());
    let leaf = old.leaf("spiffe://example.org/w");
    let verify = |b: &SpiffeBundle| {
        spiffe_core::verify_x509_svid(&leaf.chain, b.x509(), std::time::SystemTime::now())
    };
    assert!(verify(&v2).is_ok());
    let err = verify(&v3).unwrap_err();
    assert!(
        matches!(
            err,
            spiffe_core::VerifyError::Chain {
                source: webpki::Error::UnknownIssuer,
                ..
            }
        ),
        "removing the old key revokes its SVIDs: {err:?}"
    );
}

#[test]
fn x509_8_serialized_authorities_have_one_x5c_and_no_kid() {
    let ca = TestCa::new("example.org");
    let key = TestJwtKey::generate(KeyKind::P256);
    let bundle = parse(
        &json!({"keys": [x509_jwk(&ca), jwt_jwk(&key, "k")], "spiffe_sequence": 9,
                               "spiffe_refresh_hint": 60}),
    )
    .unwrap();
    let out: Value = serde_json::from_slice(&bundle.to_json()).unwrap();
    let keys = out["keys"].as_array().unwrap();
    let x = keys.iter().find(|k| k["use"] == "x509-svid").unwrap();
    assert!(x.get("kid").is_none());
    assert_eq!(x["x5c"].as_array().unwrap().len(), 1);
    assert_eq!(
        STANDARD.decode(x["x5c"][0].as_str().unwrap()).unwrap(),
        ca.cert().to_vec()
    );
    assert_eq!(x["kty"], "EC");
    assert_eq!(x["crv"], "P-256");
    let j = keys.iter().find(|k| k["use"] == "jwt-svid").unwrap();
    assert_eq!(j["kid"], "k");
    assert_eq!(out["spiffe_sequence"], 9);
    assert_eq!(out["spiffe_refresh_hint"], 60);
    assert_eq!(parse(&out).unwrap(), bundle, "round trip");
}

#[test]
fn x509_9_missing_x5c_is_skipped_and_only_the_first_is_used() {
    let a = TestCa::new("example.org");
    let b = TestCa::new("example.org");
    let doc = json!({"keys": [
        {"kty": "EC", "use": "x509-svid"},
        {"kty": "EC", "use": "x509-svid", "x5c": []},
        {"kty": "EC", "use": "x509-svid", "x5c": [STANDARD.encode(a.cert()), STANDARD.encode(b.cert())]},
    ]});
    let bundle = parse(&doc).unwrap();
    assert_eq!(bundle.x509().authorities(), &[a.cert().clone()]);
    let bad = json!({"keys": [{"kty": "EC", "use": "x509-svid", "x5c": ["%%%"]}]});
    assert!(matches!(
        parse(&bad),
        Err(BundleError::InvalidX5c { index: 0, .. })
    ));
    let not_cert =
        json!({"keys": [{"kty": "EC", "use": "x509-svid", "x5c": [STANDARD.encode(b"nope")]}]});
    assert!(matches!(parse(&not_cert), Err(BundleError::X509(_))));
}

#[test]
fn map_1_trust_domains_object_is_required() {
    assert!(matches!(
        BundleSet::from_bundle_map(b"{}"),
        Err(BundleError::Malformed { .. })
    ));
    assert!(
        BundleSet::from_bundle_map(br#"{"trust_domains": {}}"#)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn map_2_duplicate_trust_domains_are_rejected() {
    let doc = br#"{"trust_domains": {"example.org": {"keys": []}, "other.org": {"keys": []}, "example.org": {"keys": []}}}"#;
    assert_eq!(
        BundleSet::from_bundle_map(doc).unwrap_err(),
        BundleError::DuplicateTrustDomain {
            trust_domain: td("example.org")
        }
    );
    let case = br#"{"trust_domains": {"example.org": {"keys": []}, "EXAMPLE.org": {"keys": []}}}"#;
    assert!(matches!(
        BundleSet::from_bundle_map(case),
        Err(BundleError::DuplicateTrustDomain { .. })
    ));
    let bad_key = br#"{"trust_domains": {"bad domain": {"keys": []}}}"#;
    assert!(matches!(
        BundleSet::from_bundle_map(bad_key),
        Err(BundleError::InvalidTrustDomain { .. })
    ));
}

#[test]
fn map_3_refresh_hints_are_omitted_inside_a_map() {
    let b = SpiffeBundle::empty(td("example.org"))
        .with_sequence(4)
        .with_refresh_hint(Duration::from_secs(60));
    let set: BundleSet = [b].into_iter().collect();
    let out: Value = serde_json::from_slice(&set.to_bundle_map()).unwrap();
    let inner = &out["trust_domains"]["example.org"];
    assert!(inner.get("spiffe_refresh_hint").is_none());
    assert_eq!(inner["spiffe_sequence"], 4);
}

#[test]
fn map_4_maps_load_whole_and_round_trip() {
    let ca = TestCa::new("a.org");
    let a = SpiffeBundle::new(
        X509Bundle::new(td("a.org"), vec![ca.cert().clone()]).unwrap(),
        JwtBundle::new(td("a.org")),
    )
    .unwrap()
    .with_sequence(1);
    let b = SpiffeBundle::empty(td("b.org")).with_sequence(7);
    let set: BundleSet = [a, b].into_iter().collect();
    let again = BundleSet::from_bundle_map(&set.to_bundle_map()).unwrap();
    assert_eq!(again, set);
    // One bad bundle fails the whole map: nothing half-loaded.
    let doc = br#"{"trust_domains": {"a.org": {"keys": []}, "b.org": {"nokeys": []}}}"#;
    let err = BundleSet::from_bundle_map(doc).unwrap_err();
    assert!(
        matches!(&err, BundleError::Malformed { reason } if reason.contains("`keys`")),
        "{err:?}"
    );
}

#[test]
fn fed_6_halves_of_different_trust_domains_never_merge() {
    let err = SpiffeBundle::new(X509Bundle::empty(td("a.org")), JwtBundle::new(td("b.org")));
    assert_eq!(
        err.unwrap_err(),
        BundleError::TrustDomainMismatch {
            x509: td("a.org"),
            jwt: td("b.org")
        }
    );
}

#[test]
fn garbage_documents_fail_with_a_clear_error() {
    for doc in [
        &b""[..],
        b"null",
        b"[1,2]",
        b"{\"keys\": {}}",
        &[0xff, 0xfe],
    ] {
        let err = SpiffeBundle::parse(td("example.org"), doc).unwrap_err();
        assert!(matches!(err, BundleError::Malformed { .. }), "{err}");
        assert!(err.to_string().starts_with("bundle document is malformed"));
    }
}

#[test]
fn bundle_set_partial_updates_keep_the_other_half() {
    let ca = TestCa::new("example.org");
    let key = TestJwtKey::generate(KeyKind::P256);
    let mut set = BundleSet::new();
    set.insert_x509(X509Bundle::new(td("example.org"), vec![ca.cert().clone()]).unwrap());
    let jwks = json!({"keys": [key.jwk("k")]});
    set.insert_jwt(JwtBundle::from_jwks(td("example.org"), jwks.to_string().as_bytes()).unwrap());
    let b = set.get(&td("example.org")).unwrap();
    assert_eq!(b.x509().authorities().len(), 1);
    assert!(b.jwt().key("k").is_some());
    assert!(set.remove(&td("example.org")).is_some());
    assert!(set.is_empty());
}

#[test]
fn bun_9_an_authority_with_an_unknown_curve_serializes_with_a_kty() {
    // Found by the bundle_map fuzz target: a root whose namedCurve OID is
    // one this reader does not know was accepted, then written without
    // `kty`, so its own output did not parse.
    let ca = TestCa::new("example.org");
    let mut der = ca.root_cert().to_vec();
    let p256 = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    let at = der
        .windows(p256.len())
        .position(|w| w == p256)
        .expect("a P-256 root names its curve");
    der[at + 4] = 0x49; // another, unknown OID of the same length
    let doc = json!({"keys": [{
        "kty": "EC", "use": "x509-svid", "x5c": [STANDARD.encode(&der)]
    }]});
    let Ok(bundle) = parse(&doc) else {
        return; // refusing it is as good as round-tripping it
    };
    let again = SpiffeBundle::parse(td("example.org"), &bundle.to_json())
        .expect("the serialized bundle parses");
    assert_eq!(bundle.x509(), again.x509());
    let written: Value = serde_json::from_slice(&bundle.to_json()).unwrap();
    assert!(written["keys"][0]["kty"].is_string(), "{written}");
}
