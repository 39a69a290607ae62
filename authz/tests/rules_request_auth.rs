//! §15 RequestAuthentication (RA-*).

mod common;

use authz::{JwtFailure, PresentedToken, Reason, Request, Response, TokenLocation};
use common::*;
use serde_json::{Map, Value, json};

const ISS: &str = "https://accounts.example.com";

fn ra(spec: &str) -> String {
    doc("RequestAuthentication", "foo", "jwt", spec)
}

fn basic_ra() -> String {
    ra(&format!("jwtRules:\n- issuer: {ISS}"))
}

fn claims(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn token(v: Value) -> PresentedToken {
    PresentedToken::verified(TokenLocation::bearer(), claims(v))
}

fn with_token(v: Value) -> Request {
    get("/").token(token(v))
}

#[test]
fn ra_1_selected_request_authentications_merge() {
    let yaml = ra(&format!("jwtRules:\n- issuer: {ISS}"))
        + &doc(
            "RequestAuthentication",
            "istio-system",
            "mesh",
            "jwtRules:\n- issuer: other",
        )
        + &doc(
            "RequestAuthentication",
            "bar",
            "elsewhere",
            "jwtRules:\n- issuer: third",
        );
    let e = engine(&yaml);
    assert!(
        e.check(&with_token(json!({"iss": ISS, "sub": "a"})))
            .allowed
    );
    assert!(
        e.check(&with_token(json!({"iss": "other", "sub": "a"})))
            .allowed
    );
    let d = e.check(&with_token(json!({"iss": "third", "sub": "a"})));
    assert_eq!(d.reason, Reason::Jwt(JwtFailure::UnknownIssuer));
}

#[test]
fn ra_2_located_tokens_go_to_the_providers_of_their_location() {
    let e = engine(&ra(&format!(
        "jwtRules:\n- issuer: {ISS}\n  fromHeaders: [{{name: x-jwt, prefix: \"Token \"}}]\n  fromParams: [tok]"
    )));
    let bad = |loc| get("/").token(PresentedToken::failed(loc, JwtFailure::VerificationFailed));
    let hdr = TokenLocation::Header {
        name: "X-JWT".into(),
        prefix: "Token ".into(),
    };
    assert_eq!(e.check(&bad(hdr)).response, Response::Http(401));
    assert_eq!(
        e.check(&bad(TokenLocation::Param("tok".into()))).response,
        Response::Http(401)
    );
    // Explicit locations replace the defaults: a bearer token is not looked at.
    assert!(e.check(&bad(TokenLocation::bearer())).allowed);
    assert!(
        e.check(&bad(TokenLocation::Param("access_token".into())))
            .allowed
    );
    // Defaults: Authorization Bearer and access_token.
    let e = engine(&basic_ra());
    assert_eq!(
        e.check(&bad(TokenLocation::Param("access_token".into())))
            .response,
        Response::Http(401)
    );
    let err = load_err(&ra("jwtRules:\n- audiences: [a]"));
    assert!(err.contains("spec.jwtRules[0].issuer"), "{err}");
    let err = load_err(&ra(
        "jwtRules:\n- issuer: a\n  jwks: \"{}\"\n  jwksUri: https://x/jwks",
    ));
    assert!(err.contains("jwksUri"), "{err}");
    // Private key material in an inline JWKS is only warned about.
    let s = set(&ra(
        "jwtRules:\n- issuer: a\n  jwks: '{\"keys\": [{\"kty\": \"oct\", \"k\": \"c2VjcmV0\"}]}'",
    ));
    assert_eq!(s.request_authentication.len(), 1);
    assert!(
        s.warnings
            .iter()
            .any(|w| w.field == "spec.jwtRules[0].jwks"),
        "{:?}",
        s.warnings
    );
}

#[test]
fn ra_3_outcomes() {
    let yaml = basic_ra() + &ap("foo", "a", "rules:\n- {}");
    let e = engine(&yaml);
    // No token: passes without identity.
    assert!(e.check(&get("/")).allowed);
    // A bad token is 401 even though authorization allows everything.
    for f in [
        JwtFailure::VerificationFailed,
        JwtFailure::Expired,
        JwtFailure::Malformed,
        JwtFailure::JwksUnavailable,
    ] {
        let d = e.check(&get("/").token(PresentedToken::failed(TokenLocation::bearer(), f)));
        assert_eq!(d.response, Response::Http(401), "{f:?}");
    }
    let d = e.check(&with_token(json!({"iss": ISS, "sub": "s", "exp": 1})));
    assert_eq!(d.reason, Reason::Jwt(JwtFailure::Expired));
    let d = e.check(&with_token(
        json!({"iss": ISS, "sub": "s", "nbf": 4_000_000_000u64}),
    ));
    assert_eq!(d.reason, Reason::Jwt(JwtFailure::NotYetValid));
    // Audience mismatch is 403.
    let e = engine(&ra(&format!(
        "jwtRules:\n- issuer: {ISS}\n  audiences: [api]"
    )));
    assert_eq!(
        e.check(&with_token(json!({"iss": ISS, "aud": ["web"]})))
            .response,
        Response::Http(403)
    );
    assert!(
        e.check(&with_token(json!({"iss": ISS, "aud": ["web", "api"]})))
            .allowed
    );
    // CORS preflight skips verification.
    let preflight = Request::http("OPTIONS", "/")
        .header("Origin", "https://app")
        .header("Access-Control-Request-Method", "GET")
        .token(PresentedToken::failed(
            TokenLocation::bearer(),
            JwtFailure::Expired,
        ));
    assert!(e.check(&preflight).allowed);
}

#[test]
fn ra_4_several_providers() {
    let e = engine(&ra(&format!(
        "jwtRules:\n- issuer: {ISS}\n- issuer: other\n  audiences: [x]"
    )));
    assert!(e.check(&with_token(json!({"iss": ISS}))).allowed);
    // One invalid token among valid ones → 401.
    let r = with_token(json!({"iss": ISS})).token(PresentedToken::failed(
        TokenLocation::Param("access_token".into()),
        JwtFailure::VerificationFailed,
    ));
    assert_eq!(e.check(&r).response, Response::Http(401));
}

#[test]
fn ra_5_without_request_authentication_tokens_are_ignored() {
    let e = engine(&ap(
        "foo",
        "a",
        "rules:\n- from: [{source: {requestPrincipals: [\"*\"]}}]",
    ));
    assert!(
        !e.check(&with_token(json!({"iss": ISS, "sub": "s"})))
            .allowed
    );
    let e = engine("");
    assert!(
        e.check(&get("/").token(PresentedToken::failed(
            TokenLocation::bearer(),
            JwtFailure::Expired
        )))
        .allowed
    );
}

#[test]
fn ra_6_requiring_a_jwt_needs_authorization() {
    let yaml = basic_ra()
        + &ap(
            "foo",
            "require",
            "rules:\n- from: [{source: {requestPrincipals: [\"*\"]}}]\n- to: [{operation: {paths: [/healthz]}}]",
        );
    let e = engine(&yaml);
    assert!(!e.check(&get("/")).allowed);
    assert!(e.check(&get("/healthz")).allowed);
    assert!(
        e.check(&with_token(json!({"iss": ISS, "sub": "s"})))
            .allowed
    );
}

#[test]
fn ra_7_request_principal_splits_issuer_and_subject() {
    let cases: &[(&str, &str, &str, bool)] = &[
        ("*", "https://a", "s", true),
        ("*", "https://a", "", false),
        ("https://a/s", "https://a", "s", true),
        ("https://a/*", "https://a", "x", true),
        ("https://a/te*", "https://a", "tenant1", true),
        (
            "https://example.com/tenant*",
            "https://example.com/tenant1",
            "x",
            false,
        ),
        ("*/s", "whatever", "s", true),
        ("*a/s", "https://a", "s", true),
        ("*@example.com", "https://any", "bob@example.com", true),
        ("*@example.com", "https://example.com", "bob", false),
        ("iss*", "issuer", "x", true),
        ("x", "x", "", true),
        ("x", "x", "y", false),
    ];
    for (value, iss, sub, expect) in cases {
        let yaml = ra("jwtRules:\n- jwksUri: https://keys.example/jwks")
            + &ap(
                "foo",
                "a",
                &format!("rules:\n- from: [{{source: {{requestPrincipals: [\"{value}\"]}}}}]"),
            );
        let e = engine(&yaml);
        let got = e
            .check(&with_token(json!({"iss": iss, "sub": sub})))
            .allowed;
        assert_eq!(got, *expect, "{value} vs {iss}/{sub}");
    }
}

#[test]
fn ra_8_claims_strings_and_lists_only() {
    let when =
        |cond: &str| engine(&(basic_ra() + &ap("foo", "a", &format!("rules:\n- when: [{cond}]"))));
    let e = when("{key: \"request.auth.claims[groups]\", values: [admin]}");
    assert!(
        e.check(&with_token(json!({"iss": ISS, "groups": ["dev", "admin"]})))
            .allowed
    );
    assert!(
        e.check(&with_token(json!({"iss": ISS, "groups": "admin"})))
            .allowed
    );
    assert!(
        !e.check(&with_token(json!({"iss": ISS, "groups": {"admin": true}})))
            .allowed
    );
    let e = when("{key: \"request.auth.claims[admin]\", values: [\"true\"]}");
    assert!(
        !e.check(&with_token(json!({"iss": ISS, "admin": true})))
            .allowed
    );
    let e = when("{key: \"request.auth.claims[n]\", values: [\"1\"]}");
    assert!(!e.check(&with_token(json!({"iss": ISS, "n": 1}))).allowed);
    let e = when("{key: \"request.auth.claims[realm][role.name]\", values: [ops]}");
    assert!(
        e.check(&with_token(
            json!({"iss": ISS, "realm": {"role.name": "ops"}})
        ))
        .allowed
    );
    let e = when("{key: \"request.auth.claims[scope]\", values: [write]}");
    assert!(
        e.check(&with_token(json!({"iss": ISS, "scope": "read write"})))
            .allowed
    );
    let e = when("{key: request.auth.audiences, values: [\"api*\"]}");
    assert!(
        e.check(&with_token(json!({"iss": ISS, "aud": ["x", "api-1"]})))
            .allowed
    );
    let e = when("{key: request.auth.presenter, values: [cli]}");
    assert!(
        e.check(&with_token(json!({"iss": ISS, "azp": "cli"})))
            .allowed
    );
    assert!(!e.check(&with_token(json!({"iss": ISS}))).allowed);
    let e = when(&format!(
        "{{key: request.auth.principal, values: [\"{ISS}/alice\"]}}"
    ));
    assert!(
        e.check(&with_token(json!({"iss": ISS, "sub": "alice"})))
            .allowed
    );
}

#[test]
fn ra_3_token_times_allow_envoys_60s_clock_skew() {
    use std::time::{Duration, UNIX_EPOCH};
    let e = engine(&basic_ra());
    let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
    let none = |_: &str, _: &Request| authz::ExtAuthzVerdict::Allow;
    let at = |claims: Value| e.check_with(&with_token(claims), &none, now);
    assert!(at(json!({"iss": ISS, "exp": 1_000_000 - 30})).allowed);
    assert_eq!(
        at(json!({"iss": ISS, "exp": 1_000_000 - 61})).reason,
        Reason::Jwt(JwtFailure::Expired)
    );
    assert!(at(json!({"iss": ISS, "nbf": 1_000_000 + 30})).allowed);
    assert_eq!(
        at(json!({"iss": ISS, "nbf": 1_000_000 + 61})).reason,
        Reason::Jwt(JwtFailure::NotYetValid)
    );
}

#[test]
fn ra_3_non_numeric_token_times_make_the_token_invalid() {
    let e = engine(&basic_ra());
    for (claim, value) in [
        ("exp", json!("never")),
        ("exp", json!(null)),
        ("nbf", json!("0")),
        ("nbf", json!([1])),
        ("iat", json!("yesterday")),
        ("iat", json!({"t": 1})),
        // A NumericDate is not negative: the same reading as JWT-SVIDs.
        ("nbf", json!(-1)),
        ("iat", json!(-0.5)),
    ] {
        let mut c = claims(json!({"iss": ISS, "sub": "a"}));
        c.insert(claim.to_owned(), value.clone());
        let d = e.check(&get("/").token(PresentedToken::verified(TokenLocation::bearer(), c)));
        assert_eq!(
            (d.response, d.reason),
            (
                Response::Http(401),
                Reason::Jwt(JwtFailure::TimeClaimNotNumeric { claim })
            ),
            "{claim}: {value}"
        );
    }
    // Numbers (integer or not) are times; an absent claim is no constraint.
    assert!(
        e.check(&with_token(json!({"iss": ISS, "iat": 1, "exp": 4e12})))
            .allowed
    );
    assert!(e.check(&with_token(json!({"iss": ISS}))).allowed);
}

/// `aud` is read as spiffe-core reads it for JWT-SVIDs: a string or a list
/// of strings. Any other shape makes the token invalid (401), even for a
/// provider with no audience list, instead of reading as "no audience" or
/// as the strings that happen to be in the list.
#[test]
fn ra_3_aud_that_is_not_strings_makes_the_token_invalid() {
    let e = engine(&basic_ra());
    for aud in [json!(5), json!(["api", 5]), json!({"a": "b"}), json!(null)] {
        let d = e.check(&with_token(json!({"iss": ISS, "sub": "a", "aud": aud})));
        assert_eq!(
            (d.response, d.reason),
            (
                Response::Http(401),
                Reason::Jwt(JwtFailure::AudienceNotString)
            ),
            "aud: {aud}"
        );
    }
    for aud in [json!("api"), json!(["api", "web"]), json!([])] {
        assert!(
            e.check(&with_token(json!({"iss": ISS, "sub": "a", "aud": aud})))
                .allowed,
            "aud: {aud}"
        );
    }
}
