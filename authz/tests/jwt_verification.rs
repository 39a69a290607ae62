//! RA-2/RA-3 with real signatures: inline `jwks`, raw tokens verified by the engine.

mod common;

use authz::{JwtFailure, PresentedToken, Reason, Response, TokenLocation};
use common::*;
use serde_json::json;
use test_support::{KeyKind, TestJwtKey, sign_raw};

const ISS: &str = "https://issuer.example";

fn setup(key: &TestJwtKey) -> authz::Engine {
    let jwks = json!({"keys": [key.jwk("k1")]}).to_string();
    let ra = doc(
        "RequestAuthentication",
        "foo",
        "jwt",
        &format!("jwtRules:\n- issuer: {ISS}\n  audiences: [shop]\n  jwks: '{jwks}'"),
    );
    let require = ap(
        "foo",
        "need-jwt",
        &format!("rules:\n- from: [{{source: {{requestPrincipals: [\"{ISS}/alice\"]}}}}]"),
    );
    engine(&(ra + &require))
}

fn token(key: Option<&TestJwtKey>, payload: serde_json::Value) -> String {
    sign_raw(
        &json!({"alg": "ES256", "kid": "k1", "typ": "JWT"}),
        &payload,
        key,
    )
}

fn bearer(raw: String) -> authz::Request {
    get("/").token(PresentedToken::raw(TokenLocation::bearer(), raw))
}

#[test]
fn ra_2_inline_jwks_verifies_signatures() {
    let key = TestJwtKey::generate(KeyKind::P256);
    let e = setup(&key);
    let good = token(
        Some(&key),
        json!({"iss": ISS, "sub": "alice", "aud": "shop", "exp": 4_000_000_000u64}),
    );
    let d = e.check(&bearer(good));
    assert!(d.allowed, "{d:?}");
    assert_eq!(
        d.policy.as_deref(),
        Some("ns[foo]-policy[need-jwt]-rule[0]")
    );
    // Same claims, other key: 401.
    let other = TestJwtKey::generate(KeyKind::P256);
    let forged = token(
        Some(&other),
        json!({"iss": ISS, "sub": "alice", "aud": "shop"}),
    );
    let d = e.check(&bearer(forged));
    assert_eq!(
        (d.response, d.reason),
        (
            Response::Http(401),
            Reason::Jwt(JwtFailure::VerificationFailed)
        )
    );
    // Bogus signature bytes: 401.
    assert_eq!(
        e.check(&bearer(token(None, json!({"iss": ISS})))).response,
        Response::Http(401)
    );
}

#[test]
fn ra_3_raw_token_outcomes() {
    let key = TestJwtKey::generate(KeyKind::P256);
    let e = setup(&key);
    let d = e.check(&bearer("not-a-jwt".to_owned()));
    assert_eq!(d.reason, Reason::Jwt(JwtFailure::Malformed));
    let expired = token(
        Some(&key),
        json!({"iss": ISS, "sub": "alice", "aud": "shop", "exp": 10}),
    );
    assert_eq!(
        e.check(&bearer(expired)).reason,
        Reason::Jwt(JwtFailure::Expired)
    );
    let wrong_aud = token(
        Some(&key),
        json!({"iss": ISS, "sub": "alice", "aud": "web"}),
    );
    assert_eq!(e.check(&bearer(wrong_aud)).response, Response::Http(403));
    let unknown = token(
        Some(&key),
        json!({"iss": "https://elsewhere", "sub": "alice"}),
    );
    assert_eq!(
        e.check(&bearer(unknown)).reason,
        Reason::Jwt(JwtFailure::UnknownIssuer)
    );
    // Authorization still decides for valid tokens: bob is not alice.
    let bob = token(Some(&key), json!({"iss": ISS, "sub": "bob", "aud": "shop"}));
    assert_eq!(e.check(&bearer(bob)).response, Response::Http(403));
}

#[test]
fn ra_2_jwks_uri_is_not_fetched_so_tokens_fail_and_tokenless_pass() {
    let key = TestJwtKey::generate(KeyKind::P256);
    let e = engine(&doc(
        "RequestAuthentication",
        "foo",
        "jwt",
        &format!("jwtRules:\n- issuer: {ISS}\n  jwksUri: https://keys.example/jwks"),
    ));
    let d = e.check(&bearer(token(Some(&key), json!({"iss": ISS, "sub": "a"}))));
    assert_eq!(d.reason, Reason::Jwt(JwtFailure::JwksUnavailable));
    assert!(e.check(&get("/")).allowed);
    let err = load_err(&doc(
        "RequestAuthentication",
        "foo",
        "jwt",
        "jwtRules:\n- issuer: x\n  jwks: 'not json'",
    ));
    assert!(err.contains("spec.jwtRules[0].jwks"), "{err}");
}
