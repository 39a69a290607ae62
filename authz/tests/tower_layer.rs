//! The HTTP Tower layer and the connection-level check.

mod common;

use std::convert::Infallible;
use std::sync::Arc;

use authz::{Authorized, AuthzLayer, ConnectionInfo, Engine, Response};
use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use serde_json::json;
use test_support::{KeyKind, TestJwtKey, sign_raw};
use tower::{Layer, ServiceExt, service_fn};

const ISS: &str = "https://issuer.example";

/// The inner service echoes what it saw: the Authorized proof and headers.
async fn echo(req: http::Request<()>) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let proof = req
        .extensions()
        .get::<Authorized>()
        .map(|a| a.policy.clone());
    let body = json!({
        "authorized": proof.is_some(),
        "policy": proof.flatten(),
        "authorization": req.headers().get("authorization").and_then(|v| v.to_str().ok()),
        "payload": req.headers().get("x-jwt-payload").and_then(|v| v.to_str().ok()),
        "tenant": req.headers().get("x-tenant").and_then(|v| v.to_str().ok()),
        "admin": req.headers().get("x-admin").and_then(|v| v.to_str().ok()),
    });
    Ok(http::Response::new(Full::new(Bytes::from(
        body.to_string(),
    ))))
}

async fn call(engine: Engine, req: http::Request<()>) -> (u16, String) {
    let svc = AuthzLayer::new(Arc::new(engine)).layer(service_fn(echo));
    let resp = svc.oneshot(req).await.expect("infallible");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn request(path: &str, peer: Option<&str>) -> http::Request<()> {
    let mut req = http::Request::get(path).body(()).expect("request builds");
    req.extensions_mut()
        .insert(ConnectionInfo::new(peer.map(id), 8080));
    req
}

#[tokio::test(flavor = "current_thread")]
async fn r_1_denied_requests_get_403_rbac_access_denied() {
    let e = engine(&ap(
        "foo",
        "a",
        "rules:\n- from: [{source: {principals: [cluster.local/ns/a/sa/b]}}]",
    ));
    let (status, body) = call(e, request("/x", None)).await;
    assert_eq!((status, body.as_str()), (403, "RBAC: access denied"));
}

#[tokio::test(flavor = "current_thread")]
async fn allowed_requests_carry_the_authorized_proof() {
    let e = engine(&ap(
        "foo",
        "a",
        "rules:\n- from: [{source: {principals: [cluster.local/ns/a/sa/b]}}]",
    ));
    let (status, body) = call(e, request("/x", Some("spiffe://cluster.local/ns/a/sa/b"))).await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["authorized"], true);
    assert_eq!(v["policy"], "ns[foo]-policy[a]-rule[0]");
}

#[tokio::test(flavor = "current_thread")]
async fn the_mtls_layers_peer_identity_is_the_principal() {
    let policy = "rules:\n- from: [{source: {principals: [cluster.local/ns/a/sa/b]}}]";
    let ca = test_support::TestCa::new("cluster.local");
    let bundle = spiffe_core::X509Bundle::new(
        id("spiffe://cluster.local/x").trust_domain().clone(),
        vec![ca.root_cert()],
    )
    .expect("bundle");
    let peer = |s: &str| {
        spiffe_core::x509::verify_x509_svid_full(
            &ca.leaf(s).chain,
            &bundle,
            std::time::SystemTime::now(),
        )
        .expect("the test CA's leaf verifies")
    };
    // PeerIdentity alone, no ConnectionInfo.
    let mut req = http::Request::get("/x").body(()).expect("request builds");
    req.extensions_mut()
        .insert(peer("spiffe://cluster.local/ns/a/sa/b"));
    assert_eq!(call(engine(&ap("foo", "a", policy)), req).await.0, 200);
    // A verified PeerIdentity wins over a peer claimed in ConnectionInfo.
    let mut req = request("/x", Some("spiffe://cluster.local/ns/a/sa/b"));
    req.extensions_mut()
        .insert(peer("spiffe://cluster.local/ns/a/sa/intruder"));
    assert_eq!(call(engine(&ap("foo", "a", policy)), req).await.0, 403);
}

fn jwt_engine(key: &TestJwtKey, extra: &str) -> Engine {
    let jwks = json!({"keys": [key.jwk("k1")]}).to_string();
    engine(&doc(
        "RequestAuthentication",
        "foo",
        "jwt",
        &format!(
            "jwtRules:\n- issuer: {ISS}\n  jwks: '{jwks}'\n  outputPayloadToHeader: x-jwt-payload{extra}"
        ),
    ))
}

fn with_bearer(token: &str) -> http::Request<()> {
    let mut req = request("/x", None);
    req.headers_mut().insert(
        "authorization",
        http::HeaderValue::from_str(&format!("Bearer {token}")).expect("header value"),
    );
    req
}

#[tokio::test(flavor = "current_thread")]
async fn ra_2_token_forwarding_and_payload_header() {
    let key = TestJwtKey::generate(KeyKind::P256);
    let token = sign_raw(
        &json!({"alg": "ES256", "kid": "k1"}),
        &json!({"iss": ISS, "sub": "a"}),
        Some(&key),
    );
    let (status, body) = call(jwt_engine(&key, ""), with_bearer(&token)).await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert!(v["authorization"].is_null(), "token must be removed: {v}");
    assert_eq!(v["payload"].as_str(), token.split('.').nth(1));
    let (_, body) = call(
        jwt_engine(&key, "\n  forwardOriginalToken: true"),
        with_bearer(&token),
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        v["authorization"].as_str(),
        Some(format!("Bearer {token}").as_str())
    );
}

#[tokio::test(flavor = "current_thread")]
async fn ra_2_output_claim_to_headers() {
    let key = TestJwtKey::generate(KeyKind::P256);
    let extra = "\n  outputClaimToHeaders:\n  - {header: x-tenant, claim: org.tenant}\n  - {header: x-admin, claim: admin}";
    let token = sign_raw(
        &json!({"alg": "ES256", "kid": "k1"}),
        &json!({"iss": ISS, "sub": "a", "org": {"tenant": "blue"}}),
        Some(&key),
    );
    let mut req = with_bearer(&token);
    // A forged incoming header is overwritten, or removed when the claim is absent.
    req.headers_mut()
        .insert("x-tenant", http::HeaderValue::from_static("red"));
    req.headers_mut()
        .insert("x-admin", http::HeaderValue::from_static("true"));
    let (status, body) = call(jwt_engine(&key, extra), req).await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["tenant"], "blue");
    assert!(v["admin"].is_null(), "{v}");
}

#[tokio::test(flavor = "current_thread")]
async fn r_2_bad_tokens_get_401_with_envoy_text() {
    let key = TestJwtKey::generate(KeyKind::P256);
    let other = TestJwtKey::generate(KeyKind::P256);
    let token = sign_raw(
        &json!({"alg": "ES256", "kid": "k1"}),
        &json!({"iss": ISS}),
        Some(&other),
    );
    let (status, body) = call(jwt_engine(&key, ""), with_bearer(&token)).await;
    assert_eq!((status, body.as_str()), (401, "Jwt verification fails"));
    let mut req = request("/x?access_token=abc", None);
    req.headers_mut()
        .insert("x", http::HeaderValue::from_static("y"));
    let (status, body) = call(jwt_engine(&key, ""), req).await;
    assert_eq!(
        (status, body.as_str()),
        (401, "Jwt is not in the form of Header.Payload.Signature")
    );
}

#[test]
fn t_6_connection_level_check() {
    let e = engine(&ap(
        "foo",
        "a",
        "rules:\n- to: [{operation: {ports: [\"5432\"]}}]",
    ));
    assert_eq!(
        e.check_connection(&ConnectionInfo::new(None, 5432))
            .response,
        Response::Connected
    );
    assert_eq!(
        e.check_connection(&ConnectionInfo::new(None, 5433))
            .response,
        Response::ConnectionClosed
    );
    let e = engine(&doc(
        "PeerAuthentication",
        "foo",
        "s",
        "mtls: {mode: STRICT}",
    ));
    assert_eq!(
        e.check_connection(&ConnectionInfo::new(None, 80)).response,
        Response::ConnectionReset
    );
}
