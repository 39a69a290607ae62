//! JWT-SVID rules (JWT-* in docs/spec/spiffe.md), including the hostile tokens.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use spiffe_core::jwt::{JwtAlgorithm, JwtClaims, sign_jwt_svid};
use spiffe_core::{BundleSet, JwtBundle, JwtError, JwtSvid, PrivateKey, TrustDomain};
use test_support::{KeyKind, TestJwtKey, sign_raw};

const SUB: &str = "spiffe://example.org/ns/default/sa/web";
const AUD: &str = "spiffe://example.org/ns/default/sa/api";

fn td(s: &str) -> TrustDomain {
    s.parse().unwrap()
}

fn now() -> SystemTime {
    SystemTime::now()
}

fn epoch(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs()
}

struct Fixture {
    key: TestJwtKey,
    bundle: JwtBundle,
}

fn fixture(kind: KeyKind) -> Fixture {
    let key = TestJwtKey::generate(kind);
    let jwks = json!({"keys": [key.jwk("k1")]});
    let bundle = JwtBundle::from_jwks(td("example.org"), jwks.to_string().as_bytes()).unwrap();
    Fixture { key, bundle }
}

fn header(alg: &str) -> Value {
    json!({"alg": alg, "kid": "k1", "typ": "JWT"})
}

fn claims() -> Value {
    json!({"sub": SUB, "aud": [AUD], "exp": epoch(now()) + 300, "iat": epoch(now())})
}

fn token(f: &Fixture, h: Value, c: Value) -> String {
    sign_raw(&h, &c, Some(&f.key))
}

fn validate(f: &Fixture, t: &str) -> Result<JwtSvid, JwtError> {
    JwtSvid::validate(t, &f.bundle, AUD, now())
}

#[test]
fn valid_token_validates() {
    let f = fixture(KeyKind::P256);
    let s = validate(&f, &token(&f, header("ES256"), claims())).unwrap();
    assert_eq!(s.spiffe_id().as_str(), SUB);
    assert_eq!(s.audience(), [AUD.to_owned()]);
    assert_eq!(s.kid(), "k1");
    assert_eq!(s.algorithm(), JwtAlgorithm::ES256);
    assert!(s.expiry() > now());
}

#[test]
fn jwt_1_only_compact_serialization() {
    let f = fixture(KeyKind::P256);
    let t = token(&f, header("ES256"), claims());
    assert_eq!(validate(&f, "a.b").unwrap_err(), JwtError::NotCompact);
    assert_eq!(
        validate(&f, &format!("{t}.x.y")).unwrap_err(),
        JwtError::NotCompact
    );
    assert_eq!(validate(&f, "").unwrap_err(), JwtError::NotCompact);
    let json_form = json!({"payload": "x", "signatures": []}).to_string();
    assert_eq!(validate(&f, &json_form).unwrap_err(), JwtError::NotCompact);
    assert!(matches!(
        validate(&f, "!!.??.**"),
        Err(JwtError::Malformed { part: "header", .. })
    ));
}

#[test]
fn jwt_2_only_alg_kid_typ_in_header() {
    let f = fixture(KeyKind::P256);
    for extra in ["crit", "jku", "x5u", "jwk", "cty"] {
        let mut h = header("ES256");
        h[extra] = json!("x");
        let r = validate(&f, &token(&f, h, claims()));
        assert!(
            matches!(r, Err(JwtError::ForbiddenHeader { .. })),
            "{extra}: {r:?}"
        );
    }
    // Duplicated field, written by hand.
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let dup = format!(
        "{}.{}.AAAA",
        b64(r#"{"alg":"ES256","alg":"none","kid":"k1"}"#),
        b64(&claims().to_string())
    );
    assert!(matches!(
        validate(&f, &dup),
        Err(JwtError::ForbiddenHeader { .. })
    ));
    // Non-string typ.
    let r = validate(
        &f,
        &token(&f, json!({"alg": "ES256", "kid": "k1", "typ": 1}), claims()),
    );
    assert!(matches!(r, Err(JwtError::ForbiddenHeader { .. })), "{r:?}");
}

#[test]
fn jwt_3_alg_allow_list_is_checked_first() {
    let f = fixture(KeyKind::P256);
    for alg in ["none", "HS256", "HS512", "EdDSA", "es256", ""] {
        // Payload is garbage: alg must be refused before it is looked at.
        let h = json!({"alg": alg, "kid": "k1"});
        let t = format!("{}.!!!.", token(&f, h, claims()).split('.').next().unwrap());
        assert_eq!(
            validate(&f, &t).unwrap_err(),
            JwtError::UnsupportedAlgorithm { alg: alg.into() },
            "{alg}"
        );
    }
}

#[test]
fn jwt_3_key_family_must_match_alg() {
    let ec = fixture(KeyKind::P256);
    let rsa = fixture(KeyKind::Rsa2048);
    // EC-signed token against an RSA key.
    let t = token(&ec, header("ES256"), claims());
    assert!(matches!(
        validate(&rsa, &t),
        Err(JwtError::KeyAlgorithmMismatch { .. })
    ));
    // RS256 header against an EC key.
    let t = token(&rsa, header("RS256"), claims());
    assert!(matches!(
        validate(&ec, &t),
        Err(JwtError::KeyAlgorithmMismatch { .. })
    ));
    // ES384 header against a P-256 key.
    let t = token(&ec, header("ES384"), claims());
    assert!(matches!(
        validate(&ec, &t),
        Err(JwtError::KeyAlgorithmMismatch { .. })
    ));
    // RSA tokens verify with RSA keys, both paddings.
    assert!(validate(&rsa, &token(&rsa, header("RS256"), claims())).is_ok());
    assert!(validate(&rsa, &token(&rsa, header("PS256"), claims())).is_ok());
    // P-384.
    let p384 = fixture(KeyKind::P384);
    assert!(validate(&p384, &token(&p384, header("ES384"), claims())).is_ok());
}

#[test]
fn jwt_3_symmetric_keys_are_never_used() {
    let jwks = json!({"keys": [{"kty": "oct", "kid": "k1", "k": "c2VjcmV0"}]});
    let bundle = JwtBundle::from_jwks(td("example.org"), jwks.to_string().as_bytes()).unwrap();
    assert!(bundle.is_empty(), "oct keys are ignored (BUN-7)");
    let f = fixture(KeyKind::P256);
    let t = token(&f, header("ES256"), claims());
    assert!(matches!(
        JwtSvid::validate(&t, &bundle, AUD, now()),
        Err(JwtError::UnknownKid { .. })
    ));
}

#[test]
fn jwt_4_kid_is_required() {
    let f = fixture(KeyKind::P256);
    let r = validate(&f, &token(&f, json!({"alg": "ES256"}), claims()));
    assert_eq!(r.unwrap_err(), JwtError::MissingKid);
    let r = validate(&f, &token(&f, json!({"alg": "ES256", "kid": ""}), claims()));
    assert_eq!(r.unwrap_err(), JwtError::MissingKid);
    let r = validate(
        &f,
        &token(&f, json!({"alg": "ES256", "kid": "other"}), claims()),
    );
    assert!(matches!(r, Err(JwtError::UnknownKid { .. })));
}

#[test]
fn jwt_5_typ_is_absent_jwt_or_jose() {
    let f = fixture(KeyKind::P256);
    for typ in ["JWT", "JOSE"] {
        let h = json!({"alg": "ES256", "kid": "k1", "typ": typ});
        assert!(validate(&f, &token(&f, h, claims())).is_ok(), "{typ}");
    }
    assert!(
        validate(
            &f,
            &token(&f, json!({"alg": "ES256", "kid": "k1"}), claims())
        )
        .is_ok()
    );
    for typ in ["jwt", "wit+jwt", "at+jwt"] {
        let h = json!({"alg": "ES256", "kid": "k1", "typ": typ});
        assert_eq!(
            validate(&f, &token(&f, h, claims())).unwrap_err(),
            JwtError::BadTyp { typ: typ.into() }
        );
    }
}

#[test]
fn jwt_6_sub_is_a_spiffe_id() {
    let f = fixture(KeyKind::P256);
    let mut c = claims();
    c.as_object_mut().unwrap().remove("sub");
    assert_eq!(
        validate(&f, &token(&f, header("ES256"), c)).unwrap_err(),
        JwtError::MissingSubject
    );
    let mut c = claims();
    c["sub"] = json!("https://example.org/web");
    assert!(matches!(
        validate(&f, &token(&f, header("ES256"), c)),
        Err(JwtError::InvalidSubject(_))
    ));
    let mut c = claims();
    c["sub"] = json!(42);
    assert_eq!(
        validate(&f, &token(&f, header("ES256"), c)).unwrap_err(),
        JwtError::MissingSubject
    );
}

#[test]
fn jwt_7_audience_must_contain_ours() {
    let f = fixture(KeyKind::P256);
    let mut c = claims();
    c["aud"] = json!(AUD);
    assert!(
        validate(&f, &token(&f, header("ES256"), c)).is_ok(),
        "string aud"
    );
    let mut c = claims();
    c["aud"] = json!(["other", AUD]);
    assert!(validate(&f, &token(&f, header("ES256"), c)).is_ok());
    let mut c = claims();
    c["aud"] = json!(["other"]);
    assert_eq!(
        validate(&f, &token(&f, header("ES256"), c)).unwrap_err(),
        JwtError::AudienceMismatch {
            expected: AUD.into()
        }
    );
    for bad in [json!([]), json!(null), json!(5), json!([1])] {
        let mut c = claims();
        c["aud"] = bad.clone();
        assert_eq!(
            validate(&f, &token(&f, header("ES256"), c)).unwrap_err(),
            JwtError::MissingAudience,
            "{bad}"
        );
    }
    let mut c = claims();
    c.as_object_mut().unwrap().remove("aud");
    assert_eq!(
        validate(&f, &token(&f, header("ES256"), c)).unwrap_err(),
        JwtError::MissingAudience
    );
}

#[test]
fn jwt_8_exp_required_and_in_the_future_nbf_honoured() {
    let f = fixture(KeyKind::P256);
    let mut c = claims();
    c.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        validate(&f, &token(&f, header("ES256"), c)).unwrap_err(),
        JwtError::MissingExpiry
    );
    let t = token(&f, header("ES256"), claims());
    let exp = validate(&f, &t).unwrap().expiry();
    // exp == now is expired.
    assert!(matches!(
        JwtSvid::validate(&t, &f.bundle, AUD, exp),
        Err(JwtError::Expired { .. })
    ));
    assert!(JwtSvid::validate(&t, &f.bundle, AUD, exp - Duration::from_secs(1)).is_ok());
    let mut c = claims();
    c["nbf"] = json!(epoch(now()) + 60);
    let t = token(&f, header("ES256"), c);
    assert!(matches!(
        validate(&f, &t),
        Err(JwtError::NotYetValid { .. })
    ));
    assert!(JwtSvid::validate(&t, &f.bundle, AUD, now() + Duration::from_secs(61)).is_ok());
}

#[test]
fn jwt_10_non_numeric_time_claims_make_the_token_invalid() {
    let f = fixture(KeyKind::P256);
    let cases = [
        ("exp", json!("tomorrow")),
        ("exp", json!(null)),
        ("exp", json!(-5)),
        ("exp", json!([epoch(now()) + 600])),
        ("nbf", json!("0")),
        ("nbf", json!({"at": 0})),
        ("iat", json!("now")),
        ("iat", json!(true)),
    ];
    for (claim, value) in cases {
        let mut c = claims();
        c[claim] = value.clone();
        let t = token(&f, header("ES256"), c);
        let expected = JwtError::InvalidTimeClaim { claim };
        assert_eq!(validate(&f, &t).unwrap_err(), expected, "{claim}={value}");
        // Not checking times is no reason to accept a malformed one.
        assert_eq!(
            JwtSvid::parse_insecure(&t).unwrap_err(),
            expected,
            "{claim}={value}"
        );
    }
    // Numeric values, integer or fractional, are dates.
    let mut c = claims();
    c["iat"] = json!(epoch(now()) as f64 - 0.5);
    c["nbf"] = json!(epoch(now()) - 1);
    assert!(validate(&f, &token(&f, header("ES256"), c)).is_ok());
}

#[test]
fn jwt_svid_debug_never_shows_the_token() {
    let f = fixture(KeyKind::P256);
    let t = token(&f, header("ES256"), claims());
    let svid = validate(&f, &t).unwrap();
    let shown = format!("{svid:?} {:#?}", svid);
    let signature = t.rsplit('.').next().unwrap();
    assert!(!shown.contains(signature), "{shown}");
    assert!(!shown.contains(t.split('.').nth(1).unwrap()), "{shown}");
    assert!(shown.contains("spiffe://"), "{shown}");
}

#[test]
fn jwt_9_other_claims_are_kept() {
    let f = fixture(KeyKind::P256);
    let mut c = claims();
    c["jti"] = json!("abc");
    c["team"] = json!({"name": "payments"});
    let s = validate(&f, &token(&f, header("ES256"), c)).unwrap();
    assert_eq!(s.claims()["team"]["name"], "payments");
    assert_eq!(s.claims()["jti"], "abc");
}

#[test]
fn jwt_10_signature_must_verify() {
    let f = fixture(KeyKind::P256);
    let t = token(&f, header("ES256"), claims());
    let other = fixture(KeyKind::P256);
    assert_eq!(validate(&other, &t).unwrap_err(), JwtError::BadSignature);
    // Swap in a different payload under the original signature.
    let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
    let mut c = claims();
    c["sub"] = json!("spiffe://example.org/admin");
    use base64::Engine;
    parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(c.to_string());
    assert_eq!(
        validate(&f, &parts.join(".")).unwrap_err(),
        JwtError::BadSignature
    );
    let unsigned = sign_raw(&header("ES256"), &claims(), None);
    assert_eq!(validate(&f, &unsigned).unwrap_err(), JwtError::BadSignature);
    let bad_b64 = format!("{}.{}.***", parts[0], parts[1]);
    assert!(matches!(
        validate(&f, &bad_b64),
        Err(JwtError::Malformed {
            part: "signature",
            ..
        })
    ));
}

#[test]
fn jwt_11_tokens_this_crate_signs_fit_a_bearer_header_unchanged() {
    // JWT-11 carries the token as `Authorization: Bearer <token>`: what
    // `sign_jwt_svid` produces must be a valid header value with nothing to
    // escape (base64url parts joined by dots), for every key family.
    for kind in [KeyKind::P256, KeyKind::P384, KeyKind::Rsa2048] {
        let key = TestJwtKey::generate(kind);
        let pk = PrivateKey::from_pkcs8_der(key.pkcs8()).unwrap();
        let c = JwtClaims {
            subject: SUB.parse().unwrap(),
            audience: vec![AUD.into(), "spiffe://other.org/aud with space".into()],
            expiry: now() + Duration::from_secs(300),
            issued_at: now(),
            issuer: None,
            extra: Default::default(),
        };
        let t = sign_jwt_svid(&pk, "kid-1", &c).unwrap();
        assert_eq!(t.split('.').count(), 3, "{kind:?}");
        assert!(
            t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
            "{kind:?}: {t}"
        );
    }
}

#[test]
fn jwt_13_jwt_keys_need_kid() {
    let key = TestJwtKey::generate(KeyKind::P256);
    let mut jwk = key.jwk("k1");
    jwk.as_object_mut().unwrap().remove("kid");
    let jwks = json!({"keys": [jwk]});
    assert_eq!(
        JwtBundle::from_jwks(td("example.org"), jwks.to_string().as_bytes()).unwrap_err(),
        JwtError::KeyWithoutKid { index: 0 }
    );
}

#[test]
fn jwt_14_only_jwt_svid_use_is_extracted() {
    let a = TestJwtKey::generate(KeyKind::P256);
    let b = TestJwtKey::generate(KeyKind::P256);
    let mut ja = a.jwk("a");
    ja["use"] = json!("jwt-svid");
    let mut jb = b.jwk("b");
    jb["use"] = json!("x509-svid");
    let jwks = json!({"keys": [ja, jb]});
    let bundle = JwtBundle::from_jwks(td("example.org"), jwks.to_string().as_bytes()).unwrap();
    assert!(bundle.key("a").is_some());
    assert!(bundle.key("b").is_none());
}

#[test]
fn jwt_15_bundle_of_the_subjects_trust_domain_is_used() {
    let ours = fixture(KeyKind::P256);
    let theirs_key = TestJwtKey::generate(KeyKind::P256);
    let jwks = json!({"keys": [theirs_key.jwk("k1")]});
    let theirs = JwtBundle::from_jwks(td("other.org"), jwks.to_string().as_bytes()).unwrap();
    let mut set = BundleSet::new();
    set.insert_jwt(ours.bundle.clone());
    set.insert_jwt(theirs);
    // other.org's key signs a token for an example.org subject: refused.
    let forged = sign_raw(&header("ES256"), &claims(), Some(&theirs_key));
    assert_eq!(
        JwtSvid::validate(&forged, &set, AUD, now()).unwrap_err(),
        JwtError::BadSignature
    );
    // A subject in a trust domain without a bundle: untrusted.
    let mut c = claims();
    c["sub"] = json!("spiffe://stranger.org/x");
    let t = token(&ours, header("ES256"), c);
    assert_eq!(
        JwtSvid::validate(&t, &set, AUD, now()).unwrap_err(),
        JwtError::NoBundle {
            trust_domain: td("stranger.org")
        }
    );
}

#[test]
fn signed_by_this_crate_validates_and_parses_insecurely() {
    let key = TestJwtKey::generate(KeyKind::P256);
    let pk = PrivateKey::from_pkcs8_der(key.pkcs8()).unwrap();
    let jwks = json!({"keys": [key.jwk("kid-1")]});
    let bundle = JwtBundle::from_jwks(td("example.org"), jwks.to_string().as_bytes()).unwrap();
    let c = JwtClaims {
        subject: SUB.parse().unwrap(),
        audience: vec![AUD.into()],
        expiry: now() + Duration::from_secs(300),
        issued_at: now(),
        issuer: Some("https://issuer.example.org".into()),
        extra: Default::default(),
    };
    let t = sign_jwt_svid(&pk, "kid-1", &c).unwrap();
    let s = JwtSvid::validate(&t, &bundle, AUD, now()).unwrap();
    assert_eq!(s.claims()["iss"], "https://issuer.example.org");
    let insecure = JwtSvid::parse_insecure(&t).unwrap();
    assert_eq!(insecure.spiffe_id(), s.spiffe_id());
    let no_aud = JwtClaims {
        audience: vec![],
        ..c
    };
    assert_eq!(
        sign_jwt_svid(&pk, "kid-1", &no_aud).unwrap_err(),
        JwtError::MissingAudience
    );
}

#[test]
fn signer_publishes_the_key_that_verifies_its_tokens() {
    for kind in [KeyKind::P256, KeyKind::P384, KeyKind::Rsa2048] {
        let key = TestJwtKey::generate(kind);
        let pk = PrivateKey::from_pkcs8_der(key.pkcs8()).unwrap();
        let signer = spiffe_core::jwt::JwtSigner::new(&pk).unwrap();
        assert_eq!(signer.public_key(), &pk.jwt_key().unwrap());
        let mut bundle = JwtBundle::new(td("example.org"));
        bundle.insert("k", signer.public_key().clone());
        // The published key equals the one read from the JWK of the same key.
        let jwks = json!({"keys": [key.jwk("k")]});
        let from_jwk =
            JwtBundle::from_jwks(td("example.org"), jwks.to_string().as_bytes()).unwrap();
        assert_eq!(bundle, from_jwk, "{kind:?}");
        let c = JwtClaims {
            subject: SUB.parse().unwrap(),
            audience: vec![AUD.into()],
            expiry: now() + Duration::from_secs(60),
            issued_at: now(),
            issuer: None,
            extra: Default::default(),
        };
        for _ in 0..3 {
            let t = signer.sign("k", &c).unwrap();
            assert!(
                JwtSvid::validate(&t, &bundle, AUD, now()).is_ok(),
                "{kind:?}"
            );
        }
        assert!(format!("{signer:?}").starts_with("JwtSigner"));
    }
}

#[test]
fn public_keys_read_from_spki() {
    use spiffe_core::jwt::JwtKey;
    let ca = test_support::TestCa::new("example.org");
    for kind in [KeyKind::P256, KeyKind::P384, KeyKind::Rsa2048] {
        let leaf = ca.leaf_with(test_support::LeafSpec::new(SUB).key(kind));
        let pk = PrivateKey::from_pkcs8_der(&leaf.key_der).unwrap();
        // The SPKI inside the certificate: tbs -> subjectPublicKeyInfo.
        let (_, cert) = x509_parser::parse_x509_certificate(&leaf.chain[0]).unwrap();
        let spki = cert.tbs_certificate.subject_pki.raw;
        assert_eq!(
            JwtKey::from_spki_der(spki).unwrap(),
            pk.jwt_key().unwrap(),
            "{kind:?}"
        );
    }
    assert!(matches!(
        JwtKey::from_spki_der(b"\x30\x00"),
        Err(JwtError::InvalidKey { .. })
    ));
}

#[test]
fn jwks_round_trips_and_rejects_garbage() {
    let f = fixture(KeyKind::Rsa2048);
    let again = JwtBundle::from_jwks(td("example.org"), &f.bundle.to_jwks()).unwrap();
    assert_eq!(again, f.bundle);
    for bad in [&b"not json"[..], b"{}", b"{\"keys\": 3}", b"[]"] {
        assert!(matches!(
            JwtBundle::from_jwks(td("example.org"), bad),
            Err(JwtError::InvalidJwks { .. })
        ));
    }
    let short =
        json!({"keys": [{"kty": "EC", "kid": "k", "crv": "P-256", "x": "AAAA", "y": "AAAA"}]});
    assert!(matches!(
        JwtBundle::from_jwks(td("example.org"), short.to_string().as_bytes()),
        Err(JwtError::InvalidKey { .. })
    ));
}

#[test]
fn oversized_and_hostile_tokens_fail_cleanly() {
    let f = fixture(KeyKind::P256);
    let huge = "a".repeat(1 << 20);
    let err = validate(&f, &format!("{huge}.{huge}.{huge}")).unwrap_err();
    assert!(
        matches!(&err, JwtError::Malformed { part, .. } if *part == "header"),
        "{err:?}"
    );
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let t = format!("{}.{}.AAAA", b64(&header("ES256").to_string()), b64(&deep));
    assert!(matches!(
        validate(&f, &t),
        Err(JwtError::Malformed {
            part: "payload",
            ..
        })
    ));
}
