//! Bearer tokens never appear in `Debug` output (issue 9).

mod common;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use authz::{
    AuthzLayer, ExtAuthzVerdict, ExtensionProvider, MeshConfig, PresentedToken, ProviderKind,
    Request, TokenLocation,
};
use common::*;
use serde_json::json;
use test_support::{KeyKind, TestJwtKey, sign_raw};
use tower::{Layer, ServiceExt, service_fn};

const ISS: &str = "https://issuer.example";

fn signed(key: &TestJwtKey) -> String {
    sign_raw(
        &json!({"alg": "ES256", "kid": "k1"}),
        &json!({"iss": ISS, "sub": "s", "secret": "claim-value-7"}),
        Some(key),
    )
}

fn ra(key: &TestJwtKey) -> String {
    let jwks = json!({"keys": [key.jwk("k1")]}).to_string();
    doc(
        "RequestAuthentication",
        "foo",
        "jwt",
        &format!(
            "jwtRules:\n- issuer: {ISS}\n  jwks: '{jwks}'\n  outputPayloadToHeader: x-payload\n  outputClaimToHeaders: [{{header: x-secret, claim: secret}}]"
        ),
    )
}

/// Neither the token, nor its payload segment, nor its signature.
fn assert_redacted(what: &str, debug: &str, token: &str) {
    assert!(!debug.contains(token), "{what} shows the token: {debug}");
    for (i, part) in token.split('.').enumerate().skip(1) {
        assert!(!debug.contains(part), "{what} shows part {i}: {debug}");
    }
}

#[test]
fn presented_tokens_requests_and_decisions_do_not_print_tokens() {
    let key = TestJwtKey::generate(KeyKind::P256);
    let token = signed(&key);
    let raw = PresentedToken::raw(TokenLocation::bearer(), token.clone());
    assert_redacted("PresentedToken", &format!("{raw:?}"), &token);
    let claims = match json!({"iss": ISS, "secret": "claim-value-7"}) {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    let verified = format!(
        "{:?}",
        PresentedToken::verified(TokenLocation::bearer(), claims)
    );
    assert!(!verified.contains("claim-value-7"), "{verified}");
    let req = Request::http("GET", format!("/x?access_token={token}"))
        .header("authorization", format!("Bearer {token}"))
        .header("cookie", format!("session={token}"))
        .token(raw);
    let shown = format!("{req:?}");
    assert_redacted("Request", &shown, &token);
    assert!(shown.contains("authorization"), "names stay: {shown}");
    let e = engine(&ra(&key));
    let d = e.check(&req);
    assert!(d.allowed, "{d:?}");
    let shown = format!("{d:?}");
    assert_redacted("Decision", &shown, &token);
    assert!(!shown.contains("claim-value-7"), "{shown}");
    assert_redacted("Engine", &format!("{e:?}"), &token);
}

#[tokio::test(flavor = "current_thread")]
async fn the_request_the_layer_builds_does_not_print_tokens() {
    let key = TestJwtKey::generate(KeyKind::P256);
    let token = signed(&key);
    let mesh = MeshConfig::default()
        .with_extension_provider(ExtensionProvider::new("opa", ProviderKind::Http));
    let yaml = ra(&key)
        + &ap(
            "foo",
            "c",
            "action: CUSTOM\nprovider: {name: opa}\nrules:\n- {}",
        );
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = Arc::clone(&seen);
    let ext = move |_: &str, req: &Request| {
        if let Ok(mut l) = log.lock() {
            l.push(format!("{req:?}"));
        }
        ExtAuthzVerdict::Allow
    };
    let svc = AuthzLayer::new(Arc::new(engine_with(mesh, &yaml)))
        .with_ext_authz(Arc::new(ext))
        .layer(service_fn(|_: http::Request<()>| async {
            Ok::<_, Infallible>(http::Response::new(
                http_body_util::Empty::<bytes::Bytes>::new(),
            ))
        }));
    let mut req = http::Request::get(format!("/x?access_token={token}"))
        .header("authorization", format!("Bearer {token}"))
        .header("cookie", format!("session={token}"))
        .body(())
        .expect("request builds");
    req.extensions_mut().insert(facts(8080));
    let resp = svc.oneshot(req).await.expect("infallible");
    assert_eq!(resp.status(), 200);
    let seen = seen.lock().map(|l| l.clone()).unwrap_or_default();
    assert_eq!(seen.len(), 1);
    assert_redacted("layer Request", &seen[0], &token);
}
