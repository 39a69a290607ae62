//! The HTTP Tower layer and the connection-level check.

mod common;

use std::convert::Infallible;
use std::sync::Arc;

use authz::{Authorized, AuthzLayer, Engine, Response};
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
        "headers": req
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), json!(v.to_str().unwrap_or("<binary>"))))
            .collect::<serde_json::Map<String, serde_json::Value>>(),
        "uri": req.uri().to_string(),
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

/// A GET on port 8080 with its connection facts, from `peer` over mTLS
/// (a real verified `PeerIdentity`) or plaintext.
fn request(path: &str, peer: Option<&str>) -> http::Request<()> {
    let mut req = http::Request::get(path).body(()).expect("request builds");
    let facts = match peer {
        Some(p) => facts(8080).with_peer(verified_peer(p)),
        None => facts(8080),
    };
    req.extensions_mut().insert(facts);
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
async fn authorize_decides_with_the_callers_facts_as_the_layer_does() {
    let policy = "rules:\n- from: [{source: {principals: [cluster.local/ns/a/sa/b]}}]";
    let layer = AuthzLayer::new(Arc::new(engine(&ap("foo", "a", policy))));
    let allowed = facts(8080).with_peer(verified_peer("spiffe://cluster.local/ns/a/sa/b"));
    // Allowed: the proof comes back, the path is the normalised one the
    // decision saw (M-9), and nothing was added to the extensions.
    let mut req = http::Request::get("/a/../x")
        .body(())
        .expect("request builds");
    let proof = layer.authorize(&mut req, &allowed).expect("allowed");
    assert_eq!(proof.policy.as_deref(), Some("ns[foo]-policy[a]-rule[0]"));
    assert_eq!(req.uri().path(), "/x");
    assert!(req.extensions().is_empty());
    // Denied: the layer's own answer, with its decision attached.
    let intruder = facts(8080).with_peer(verified_peer("spiffe://cluster.local/ns/a/sa/intruder"));
    let mut req = http::Request::get("/x").body(()).expect("request builds");
    let denied = layer.authorize(&mut req, &intruder).expect_err("denied");
    assert_eq!(denied.status(), 403);
    let decision = denied
        .extensions()
        .get::<authz::Decision>()
        .expect("decision");
    assert!(!decision.allowed);
    let body = (*denied)
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(&body[..], b"RBAC: access denied");
    // The facts given win over none in the request: a request with no
    // extensions is decided, not refused with 500.
    let mut req = http::Request::get("/x").body(()).expect("request builds");
    assert!(layer.authorize(&mut req, &allowed).is_ok());
}

#[tokio::test(flavor = "current_thread")]
async fn i_1_the_verified_peer_identity_is_the_principal() {
    let policy = "rules:\n- from: [{source: {principals: [cluster.local/ns/a/sa/b]}}]";
    // A PeerIdentity produced by spiffe-core's verifier is the principal.
    let req = request("/x", Some("spiffe://cluster.local/ns/a/sa/b"));
    assert_eq!(call(engine(&ap("foo", "a", policy)), req).await.0, 200);
    let req = request("/x", Some("spiffe://cluster.local/ns/a/sa/intruder"));
    assert_eq!(call(engine(&ap("foo", "a", policy)), req).await.0, 403);
    // Nothing else names the peer: a header claiming an identity is just a header.
    let mut req = request("/x", None);
    req.headers_mut().insert(
        "x-forwarded-client-cert",
        http::HeaderValue::from_static("URI=spiffe://cluster.local/ns/a/sa/b"),
    );
    assert_eq!(call(engine(&ap("foo", "a", policy)), req).await.0, 403);
    // One route: a PeerIdentity beside the facts, not inside them, is not
    // the connection's peer.
    let mut req = request("/x", None);
    req.extensions_mut()
        .insert(verified_peer("spiffe://cluster.local/ns/a/sa/b"));
    assert_eq!(call(engine(&ap("foo", "a", policy)), req).await.0, 403);
}

#[tokio::test(flavor = "current_thread")]
async fn requests_without_connection_facts_are_refused_with_500() {
    // Even with no policy at all (which allows everything), a request that
    // lost its connection facts is not decided as if from nowhere.
    let mut req = http::Request::get("/x").body(()).expect("request builds");
    req.extensions_mut()
        .insert(verified_peer("spiffe://cluster.local/ns/a/sa/b"));
    let (status, body) = call(engine(""), req).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("no connection facts"), "{body}");
    assert!(
        !body.contains("authorized"),
        "the inner service ran: {body}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn connection_facts_supply_port_addresses_and_sni() {
    use spiffe_core::ConnectionFacts;
    use std::net::SocketAddr;
    let deny = |rule: &str| engine(&ap("foo", "d", &format!("action: DENY\nrules:\n- {rule}")));
    let with = |facts: ConnectionFacts| {
        let mut req = http::Request::get("/x").body(()).expect("request builds");
        req.extensions_mut().insert(facts);
        req
    };
    let local = SocketAddr::from(([127, 0, 0, 1], 8080));
    let remote = SocketAddr::from(([127, 0, 0, 2], 40000));
    let plain = || ConnectionFacts::new(local, remote);
    // ports / destination.port = local port.
    assert_eq!(
        call(
            deny("to: [{operation: {ports: [\"8080\"]}}]"),
            with(plain())
        )
        .await
        .0,
        403
    );
    assert_eq!(
        call(
            deny("to: [{operation: {ports: [\"8081\"]}}]"),
            with(plain())
        )
        .await
        .0,
        200
    );
    assert_eq!(
        call(
            deny("when: [{key: destination.port, values: [\"8080\"]}]"),
            with(plain())
        )
        .await
        .0,
        403
    );
    // ipBlocks / source.ip = remote address; remoteIpBlocks falls back to it.
    for rule in [
        "from: [{source: {ipBlocks: [0.0.0.0/0]}}]",
        "from: [{source: {ipBlocks: [127.0.0.2]}}]",
        "from: [{source: {remoteIpBlocks: [127.0.0.2]}}]",
        "when: [{key: destination.ip, values: [127.0.0.1]}]",
    ] {
        assert_eq!(call(deny(rule), with(plain())).await.0, 403, "{rule}");
    }
    assert_eq!(
        call(
            deny("from: [{source: {ipBlocks: [127.0.0.3]}}]"),
            with(plain())
        )
        .await
        .0,
        200
    );
    // A trusted proxy's original client address replaces it for remote.ip only.
    let mut req = with(plain());
    req.extensions_mut()
        .insert(authz::OriginalClientAddr::new([192, 0, 2, 7].into()));
    assert_eq!(
        call(deny("from: [{source: {remoteIpBlocks: [127.0.0.2]}}]"), req)
            .await
            .0,
        200
    );
    // connection.sni.
    let tls = || plain().with_tls().with_sni("api.example.org");
    let sni = "when: [{key: connection.sni, values: [api.example.org]}]";
    assert_eq!(call(deny(sni), with(tls())).await.0, 403);
    assert_eq!(call(deny(sni), with(plain())).await.0, 200);
    // STRICT mTLS: TLS facts without a verified PeerIdentity are plaintext
    // to authorization; with one, the request passes.
    let strict = || {
        engine(&doc(
            "PeerAuthentication",
            "foo",
            "s",
            "mtls: {mode: STRICT}",
        ))
    };
    assert_eq!(call(strict(), with(tls())).await.0, 403);
    let req = with(tls().with_peer(verified_peer("spiffe://cluster.local/ns/a/sa/b")));
    assert_eq!(call(strict(), req).await.0, 200);
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

/// A token of the configured issuer and `kid`, signed by a key the
/// RequestAuthentication does not hold.
fn signed_by_another_key() -> String {
    sign_raw(
        &json!({"alg": "ES256", "kid": "k1"}),
        &json!({"iss": ISS}),
        Some(&TestJwtKey::generate(KeyKind::P256)),
    )
}

#[tokio::test(flavor = "current_thread")]
async fn r_2_bad_tokens_get_401_with_envoy_text() {
    let key = TestJwtKey::generate(KeyKind::P256);
    let token = signed_by_another_key();
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
        e.check_connection(&facts(5432)).response,
        Response::Connected
    );
    assert_eq!(
        e.check_connection(&facts(5433)).response,
        Response::ConnectionClosed
    );
    let e = engine(&doc(
        "PeerAuthentication",
        "foo",
        "s",
        "mtls: {mode: STRICT}",
    ));
    assert_eq!(
        e.check_connection(&facts(80)).response,
        Response::ConnectionReset
    );
    let peer = verified_peer("spiffe://cluster.local/ns/a/sa/b");
    assert_eq!(
        e.check_connection(&facts(80).with_peer(peer.clone()))
            .response,
        Response::Connected
    );
}

/// Two providers at the default location: issuer A fills `x-user-a`,
/// issuer B fills `x-user-b` and the payload header `x-payload-b`.
fn two_issuers(a: &TestJwtKey, b: &TestJwtKey) -> Engine {
    let jwks = |k: &TestJwtKey, kid: &str| json!({"keys": [k.jwk(kid)]}).to_string();
    engine(&doc(
        "RequestAuthentication",
        "foo",
        "jwt",
        &format!(
            "jwtRules:\n- issuer: https://a.example\n  jwks: '{}'\n  outputClaimToHeaders: [{{header: x-user-a, claim: sub}}]\n- issuer: https://b.example\n  jwks: '{}'\n  outputPayloadToHeader: x-payload-b\n  outputClaimToHeaders: [{{header: X-User-B, claim: sub}}]",
            jwks(a, "ka"),
            jwks(b, "kb"),
        ),
    ))
}

fn header_of(body: &str, name: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(body).expect("echo answers JSON");
    v["headers"][name].clone()
}

#[tokio::test(flavor = "current_thread")]
async fn ra_2_unsigned_token_on_cors_preflight_fills_no_claim_header() {
    let a = TestJwtKey::generate(KeyKind::P256);
    let b = TestJwtKey::generate(KeyKind::P256);
    let unsigned = sign_raw(
        &json!({"alg": "none"}),
        &json!({"iss": "https://a.example", "sub": "root"}),
        None,
    );
    let mut req = http::Request::options("/x")
        .header("origin", "https://web.example")
        .header("access-control-request-method", "GET")
        .header("authorization", format!("Bearer {unsigned}"))
        .body(())
        .expect("request builds");
    req.extensions_mut().insert(facts(8080));
    // Preflight skips verification (RA-3), so it passes, but nothing from
    // the unverified token reaches the backend.
    let (status, body) = call(two_issuers(&a, &b), req).await;
    assert_eq!(status, 200, "{body}");
    assert!(header_of(&body, "x-user-a").is_null(), "{body}");
    assert!(header_of(&body, "x-user-b").is_null(), "{body}");
    assert!(header_of(&body, "x-payload-b").is_null(), "{body}");
}

#[tokio::test(flavor = "current_thread")]
async fn ra_2_client_sent_output_headers_are_stripped_without_a_token() {
    let a = TestJwtKey::generate(KeyKind::P256);
    let b = TestJwtKey::generate(KeyKind::P256);
    let mut req = request("/x", None);
    for (n, v) in [
        ("x-user-a", "root"),
        ("x-user-b", "root"),
        ("x-payload-b", "eyJzdWIiOiJyb290In0"),
        ("x-other", "kept"),
    ] {
        req.headers_mut()
            .append(n, http::HeaderValue::from_static(v));
    }
    let (status, body) = call(two_issuers(&a, &b), req).await;
    assert_eq!(status, 200, "{body}");
    for name in ["x-user-a", "x-user-b", "x-payload-b"] {
        assert!(header_of(&body, name).is_null(), "{name}: {body}");
    }
    assert_eq!(header_of(&body, "x-other"), "kept");
}

#[tokio::test(flavor = "current_thread")]
async fn ra_2_a_token_fills_only_the_headers_of_the_provider_that_verified_it() {
    let a = TestJwtKey::generate(KeyKind::P256);
    let b = TestJwtKey::generate(KeyKind::P256);
    let token = sign_raw(
        &json!({"alg": "ES256", "kid": "kb"}),
        &json!({"iss": "https://b.example", "sub": "bob"}),
        Some(&b),
    );
    let mut req = with_bearer(&token);
    req.headers_mut()
        .insert("x-user-a", http::HeaderValue::from_static("root"));
    let (status, body) = call(two_issuers(&a, &b), req).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header_of(&body, "x-user-b"), "bob");
    assert_eq!(
        header_of(&body, "x-payload-b").as_str(),
        token.split('.').nth(1)
    );
    assert!(header_of(&body, "x-user-a").is_null(), "{body}");
    // Issuer A's token (verified by A) fills A's header and none of B's.
    let token = sign_raw(
        &json!({"alg": "ES256", "kid": "ka"}),
        &json!({"iss": "https://a.example", "sub": "alice"}),
        Some(&a),
    );
    let (status, body) = call(two_issuers(&a, &b), with_bearer(&token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header_of(&body, "x-user-a"), "alice");
    assert!(header_of(&body, "x-user-b").is_null(), "{body}");
    assert!(header_of(&body, "x-payload-b").is_null(), "{body}");
}

#[tokio::test(flavor = "current_thread")]
async fn ra_2_the_layer_finds_tokens_in_configured_locations() {
    let key = TestJwtKey::generate(KeyKind::P256);
    let other = TestJwtKey::generate(KeyKind::P256);
    let jwks = json!({"keys": [key.jwk("k1")]}).to_string();
    let yaml = doc(
        "RequestAuthentication",
        "foo",
        "jwt",
        &format!(
            "jwtRules:\n- issuer: {ISS}\n  jwks: '{jwks}'\n  fromHeaders: [{{name: X-Jwt, prefix: \"Token \"}}]\n  fromParams: [tok]\n  fromCookies: [session]\n  outputClaimToHeaders: [{{header: x-sub, claim: sub}}]"
        ),
    ) + &ap(
        "foo",
        "need-jwt",
        "rules:\n- from: [{source: {requestPrincipals: [\"*\"]}}]",
    );
    let sign = |k: &TestJwtKey| {
        sign_raw(
            &json!({"alg": "ES256", "kid": "k1"}),
            &json!({"iss": ISS, "sub": "s"}),
            Some(k),
        )
    };
    let (good, bad) = (sign(&key), sign(&other));
    let send = |path: &str, headers: &[(&str, String)]| {
        let mut req = request(path, None);
        for (n, v) in headers {
            req.headers_mut().append(
                http::HeaderName::from_bytes(n.as_bytes()).expect("header name"),
                http::HeaderValue::from_str(v).expect("header value"),
            );
        }
        call(engine(&yaml), req)
    };
    // Custom header with its prefix; the prefix is required.
    let (status, body) = send("/x", &[("x-jwt", format!("Token {good}"))]).await;
    assert_eq!(
        (status, header_of(&body, "x-sub")),
        (200, json!("s")),
        "{body}"
    );
    assert!(
        header_of(&body, "x-jwt").is_null(),
        "token header removed: {body}"
    );
    assert_eq!(send("/x", &[("x-jwt", good.clone())]).await.0, 403);
    assert_eq!(
        send("/x", &[("x-jwt", format!("Token {bad}"))]).await.0,
        401
    );
    // Cookies, among others and across several Cookie headers (HTTP/2).
    let (status, body) = send("/x", &[("cookie", format!("a=b; session={good}; c=d"))]).await;
    assert_eq!(
        (status, header_of(&body, "x-sub")),
        (200, json!("s")),
        "{body}"
    );
    let split = [
        ("cookie", "a=b".to_owned()),
        ("cookie", format!("session={good}")),
    ];
    assert_eq!(send("/x", &split).await.0, 200);
    assert_eq!(
        send("/x", &[("cookie", format!("session={bad}"))]).await.0,
        401
    );
    assert_eq!(
        send("/x", &[("cookie", format!("sessionx={good}"))])
            .await
            .0,
        403
    );
    // Query parameter.
    assert_eq!(send(&format!("/x?a=1&tok={good}"), &[]).await.0, 200);
    assert_eq!(send(&format!("/x?tok={bad}"), &[]).await.0, 401);
    // Explicit locations replace the defaults.
    assert_eq!(
        send("/x", &[("authorization", format!("Bearer {good}"))])
            .await
            .0,
        403
    );
    assert_eq!(send(&format!("/x?access_token={good}"), &[]).await.0, 403);
}

#[tokio::test(flavor = "current_thread")]
async fn e_2_with_ext_authz_asks_the_provider_for_custom_rules() {
    use authz::{ExtAuthzVerdict, ExtensionProvider, MeshConfig, ProviderKind, Request};
    use std::sync::Mutex;
    let mesh = MeshConfig::default()
        .with_extension_provider(ExtensionProvider::new("opa", ProviderKind::Http));
    let e = Arc::new(engine_with(
        mesh,
        &ap(
            "foo",
            "c",
            "action: CUSTOM\nprovider: {name: opa}\nrules:\n- to: [{operation: {paths: [\"/ext*\"]}}]",
        ),
    ));
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = Arc::clone(&seen);
    let ext = move |provider: &str, req: &Request| {
        if let Ok(mut l) = log.lock() {
            l.push(format!("{provider} {req:?}"));
        }
        if format!("{req:?}").contains("\"x-let-me-in\"") {
            ExtAuthzVerdict::Allow
        } else {
            ExtAuthzVerdict::Deny { status: 418 }
        }
    };
    let svc = AuthzLayer::new(Arc::clone(&e))
        .with_ext_authz(Arc::new(ext))
        .layer(service_fn(echo));
    let send = |path: &str, header: bool| {
        let mut req = request(path, None);
        if header {
            req.headers_mut()
                .insert("x-let-me-in", http::HeaderValue::from_static("1"));
        }
        svc.clone().oneshot(req)
    };
    let denied = send("/ext", false).await.expect("infallible");
    assert_eq!(denied.status().as_u16(), 418);
    let allowed = send("/ext", true).await.expect("infallible");
    assert_eq!(allowed.status().as_u16(), 200);
    // Not a CUSTOM path: the provider is not asked.
    assert_eq!(
        send("/other", false).await.expect("infallible").status(),
        200
    );
    let seen = seen.lock().map(|l| l.clone()).unwrap_or_default();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.iter().all(|s| s.starts_with("opa ")), "{seen:?}");
    // Without with_ext_authz the CUSTOM rule fails closed.
    let svc = AuthzLayer::new(e).layer(service_fn(echo));
    assert_eq!(
        svc.oneshot(request("/ext", None))
            .await
            .expect("infallible")
            .status(),
        403
    );
}

#[tokio::test]
async fn i_5_layer_for_source_uses_the_sources_trust_domain_and_needs_an_svid() {
    let yaml = ap(
        "foo",
        "only-web",
        "rules:\n- from: [{source: {principals: [cluster.local/ns/foo/sa/web]}}]",
    );
    let empty = spiffe_core::MemorySvidSource::empty();
    let err = AuthzLayer::for_source(&empty, &set(&yaml)).unwrap_err();
    assert!(err.to_string().contains("no SVID yet"), "{err}");

    let ca = test_support::TestCa::new("example.org");
    let leaf = ca.leaf("spiffe://example.org/ns/foo/sa/api");
    let svid =
        spiffe_core::X509Svid::from_der(&leaf.chain_der(), &leaf.key_der).expect("test SVID");
    let source = spiffe_core::MemorySvidSource::new(svid);
    let layer = AuthzLayer::for_source(&source, &set(&yaml)).expect("the source has an SVID");
    let call = |peer: &'static str| {
        let svc = layer.clone().layer(service_fn(echo));
        async move {
            let resp = svc
                .oneshot(request("/", Some(peer)))
                .await
                .expect("infallible");
            resp.status().as_u16()
        }
    };
    assert_eq!(call("spiffe://example.org/ns/foo/sa/web").await, 200);
    assert_eq!(call("spiffe://example.org/ns/foo/sa/db").await, 403);
}

/// A denied request's status, `grpc-status` and `grpc-message` headers.
async fn grpc_denial(engine: Engine, mut req: http::Request<()>) -> (u16, String, String) {
    req.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/grpc+proto"),
    );
    let svc = AuthzLayer::new(Arc::new(engine)).layer(service_fn(echo));
    let resp = svc.oneshot(req).await.expect("infallible");
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    (
        resp.status().as_u16(),
        header("grpc-status"),
        header("grpc-message"),
    )
}

#[tokio::test(flavor = "current_thread")]
async fn m_10_grpc_denials_are_grpc_statuses() {
    // Denied by policy: PERMISSION_DENIED (7) in a trailers-only reply.
    let deny_all = engine(&ap("foo", "deny", "action: DENY\nrules:\n- {}"));
    assert_eq!(
        grpc_denial(deny_all, request("/demo.Greeter/Greet", None)).await,
        (200, "7".to_owned(), "RBAC: access denied".to_owned())
    );
    // A bad token: UNAUTHENTICATED (16) with Envoy's text.
    let key = TestJwtKey::generate(KeyKind::P256);
    let token = signed_by_another_key();
    assert_eq!(
        grpc_denial(jwt_engine(&key, ""), with_bearer(&token)).await,
        (200, "16".to_owned(), "Jwt verification fails".to_owned())
    );
    // Not gRPC (`application/grpc-web` is another protocol): plain 403.
    let mut req = request("/x", None);
    req.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/grpc-web"),
    );
    let deny_all = engine(&ap("foo", "deny", "action: DENY\nrules:\n- {}"));
    assert_eq!(call(deny_all, req).await.0, 403);
}

/// The layer copies only the headers some rule reads (and `host` for an
/// origin-form target): conditions on headers in ALLOW and DENY rules,
/// `values` and `notValues`, and `hosts` still decide as the engine does.
#[tokio::test(flavor = "current_thread")]
async fn m_9_header_and_host_conditions_decide_through_the_layer() {
    let yaml = [
        ap(
            "foo",
            "allow-tenant",
            "rules:\n- to: [{operation: {hosts: [shop.example]}}]\n  when:\n  - {key: 'request.headers[x-tenant]', values: [blue, green]}\n  - {key: 'request.headers[x-env]', notValues: [prod]}",
        ),
        ap(
            "foo",
            "deny-admin",
            "action: DENY\nrules:\n- when: [{key: 'request.headers[x-admin]', values: ['yes']}]",
        ),
    ]
    .concat();
    let send = |headers: &[(&str, &str)]| {
        let mut req = http::Request::get("/x");
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        let mut req = req.body(()).expect("request builds");
        req.extensions_mut().insert(facts(8080));
        let e = engine(&yaml);
        async move { call(e, req).await.0 }
    };
    let shop = ("host", "Shop.Example");
    assert_eq!(send(&[shop, ("x-tenant", "blue")]).await, 200);
    // Two values are joined before matching: "blue,green" is neither.
    assert_eq!(
        send(&[shop, ("x-tenant", "blue"), ("x-tenant", "green")]).await,
        403
    );
    assert_eq!(send(&[shop, ("x-tenant", "red")]).await, 403);
    assert_eq!(
        send(&[shop]).await,
        403,
        "M-5: a missing header never matches"
    );
    assert_eq!(
        send(&[("host", "other.example"), ("x-tenant", "blue")]).await,
        403
    );
    // notValues: a missing x-env passes (M-5), "prod" does not.
    assert_eq!(
        send(&[shop, ("x-tenant", "blue"), ("x-env", "dev")]).await,
        200
    );
    assert_eq!(
        send(&[shop, ("x-tenant", "blue"), ("x-env", "prod")]).await,
        403
    );
    // The DENY rule reads x-admin.
    assert_eq!(
        send(&[shop, ("x-tenant", "blue"), ("x-admin", "yes")]).await,
        403
    );
    assert_eq!(
        send(&[shop, ("x-tenant", "blue"), ("x-admin", "no")]).await,
        200
    );
}
