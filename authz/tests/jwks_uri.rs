//! RA-2 `jwksUri`: fetched over HTTPS from a server bound to 127.0.0.1,
//! cached, refreshed, last good kept on failure.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use authz::{
    JwksCache, JwksFetchError, JwksFetcher, JwtFailure, PresentedToken, Reason, TokenLocation,
};
use common::*;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;
use test_support::{KeyKind, LeafSpec, TestCa, TestJwtKey, sign_raw};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const ISS: &str = "https://issuer.example";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A TLS listener on 127.0.0.1 with a `localhost` certificate from `ca`,
/// answering each request with the JSON body `answer` returns for its path,
/// or with the error status it returns.
async fn serve_with(
    ca: &TestCa,
    answer: impl Fn(&str) -> Result<String, u16> + Send + 'static,
) -> u16 {
    let leaf = ca.leaf_with(LeafSpec::new("spiffe://example.org/jwks").dns(&["localhost"]));
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key_der.clone()));
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(leaf.chain.clone(), key)
        .expect("server cert");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                continue;
            };
            let mut buf = vec![0u8; 4096];
            let mut seen = Vec::new();
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match tls.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&seen).into_owned();
            let path = head.split_whitespace().nth(1).unwrap_or("");
            let reply = match answer(path) {
                Ok(b) => format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{b}",
                    b.len()
                ),
                Err(status) => format!(
                    "HTTP/1.1 {status} Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                ),
            };
            let _ = tls.write_all(reply.as_bytes()).await;
            let _ = tls.shutdown().await;
        }
    });
    port
}

/// Serves `body` (or a 500 when it is `None`) to every request over TLS.
async fn serve(ca: &TestCa, body: Arc<Mutex<Option<String>>>) -> u16 {
    serve_with(ca, move |_| {
        body.lock().ok().and_then(|b| b.clone()).ok_or(500)
    })
    .await
}

/// Serves `routes` (path → JSON body); other paths get a 404.
async fn serve_routes(ca: &TestCa, routes: Arc<Mutex<Vec<(String, String)>>>) -> u16 {
    serve_with(ca, move |path| {
        let routes = routes.lock().map_err(|_| 500u16)?;
        routes
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, b)| b.clone())
            .ok_or(404)
    })
    .await
}

fn client(ca: &TestCa) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.root_cert().to_vec()))
        .expect("root");
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

#[tokio::test(flavor = "current_thread")]
async fn ra_2_jwks_uri_fetched_cached_and_last_good_kept() {
    test_support::within(30, async move {
        let ca = TestCa::new("example.org");
        let key = TestJwtKey::generate(KeyKind::P256);
        let body = Arc::new(Mutex::new(Some(
            json!({"keys": [key.jwk("k1")]}).to_string(),
        )));
        let port = serve(&ca, Arc::clone(&body)).await;
        let uri = format!("https://localhost:{port}/jwks");
        let cache = Arc::new(JwksCache::new());
        let e = engine(&doc(
            "RequestAuthentication",
            "foo",
            "jwt",
            &format!("jwtRules:\n- issuer: {ISS}\n  jwksUri: {uri}"),
        ))
        .with_jwks_cache(Arc::clone(&cache));
        assert_eq!(e.jwks_uris(), vec![uri.clone()]);
        let token = sign_raw(
            &json!({"alg": "ES256", "kid": "k1"}),
            &json!({"iss": ISS, "sub": "a"}),
            Some(&key),
        );
        let req = get("/").token(PresentedToken::raw(TokenLocation::bearer(), token));

        // Not fetched yet: the token fails, token-less requests pass.
        assert_eq!(
            e.check(&req).reason,
            Reason::Jwt(JwtFailure::JwksUnavailable)
        );
        assert!(e.check(&get("/")).allowed);

        let fetcher =
            JwksFetcher::new(Arc::clone(&cache), client(&ca)).timeout(Duration::from_secs(5));
        assert!(fetcher.refresh(&e.jwks_uris()).await.is_empty());
        assert!(e.check(&req).allowed);

        // The server fails: the refresh reports it and the last good set stays.
        if let Ok(mut b) = body.lock() {
            *b = None;
        }
        let errors = fetcher.refresh(&e.jwks_uris()).await;
        assert!(
            matches!(
                errors.as_slice(),
                [JwksFetchError::Status { status: 500, .. }]
            ),
            "{errors:?}"
        );
        assert!(e.check(&req).allowed);
    })
    .await
}

#[tokio::test(flavor = "current_thread")]
async fn ra_2_jwks_uri_requires_a_trusted_server() {
    test_support::within(30, async move {
        let server_ca = TestCa::new("example.org");
        let other_ca = TestCa::new("other.org");
        let port = serve(
            &server_ca,
            Arc::new(Mutex::new(Some("{\"keys\": []}".to_owned()))),
        )
        .await;
        let cache = Arc::new(JwksCache::new());
        let fetcher = JwksFetcher::new(Arc::clone(&cache), client(&other_ca));
        let uri = format!("https://localhost:{port}/jwks");
        let err = fetcher
            .fetch(&uri)
            .await
            .map(|_| ())
            .expect_err("untrusted server");
        assert!(matches!(err, JwksFetchError::Connect { .. }), "{err}");
        let ok = JwksFetcher::new(Arc::clone(&cache), client(&server_ca));
        assert!(ok.fetch(&uri).await.is_ok());
        let err = ok
            .fetch("ftp://localhost/jwks")
            .await
            .map(|_| ())
            .expect_err("bad scheme");
        assert!(matches!(err, JwksFetchError::BadUri { .. }), "{err}");
    })
    .await
}

#[tokio::test(flavor = "current_thread")]
async fn ra_2_neither_jwks_nor_jwks_uri_uses_oidc_discovery() {
    test_support::within(30, async move {
    let ca = TestCa::new("example.org");
    let key = TestJwtKey::generate(KeyKind::P256);
    let routes = Arc::new(Mutex::new(Vec::new()));
    let port = serve_routes(&ca, Arc::clone(&routes)).await;
    let issuer = format!("https://localhost:{port}/tenant");
    let discovery = format!("{issuer}/.well-known/openid-configuration");
    if let Ok(mut r) = routes.lock() {
        r.push((
            "/tenant/.well-known/openid-configuration".to_owned(),
            json!({"issuer": issuer, "jwks_uri": format!("https://localhost:{port}/tenant/keys")})
                .to_string(),
        ));
        r.push((
            "/tenant/keys".to_owned(),
            json!({"keys": [key.jwk("k1")]}).to_string(),
        ));
    }
    let cache = Arc::new(JwksCache::new());
    let e = engine(&doc(
        "RequestAuthentication",
        "foo",
        "jwt",
        &format!("jwtRules:\n- issuer: {issuer}/"),
    ))
    .with_jwks_cache(Arc::clone(&cache));
    assert_eq!(e.jwks_uris(), vec![discovery.clone()]);
    let token = sign_raw(
        &json!({"alg": "ES256", "kid": "k1"}),
        &json!({"iss": format!("{issuer}/"), "sub": "a"}),
        Some(&key),
    );
    let req = get("/").token(PresentedToken::raw(TokenLocation::bearer(), token));
    assert_eq!(
        e.check(&req).reason,
        Reason::Jwt(JwtFailure::JwksUnavailable)
    );

    let fetcher = JwksFetcher::new(Arc::clone(&cache), client(&ca)).timeout(Duration::from_secs(5));
    assert!(fetcher.refresh(&e.jwks_uris()).await.is_empty());
    assert!(cache.contains(&discovery));
    assert!(e.check(&req).allowed);

    // A discovery document without jwks_uri: reported, last good set kept.
    if let Ok(mut r) = routes.lock() {
        r[0].1 = json!({"issuer": issuer}).to_string();
    }
    let errors = fetcher.refresh(&e.jwks_uris()).await;
    assert!(
        matches!(errors.as_slice(), [JwksFetchError::NotDiscovery { uri }] if *uri == discovery),
        "{errors:?}"
    );
    assert!(e.check(&req).allowed);

    // A jwks_uri that does not serve a key set.
    let fresh = Arc::new(JwksCache::new());
    if let Ok(mut r) = routes.lock() {
        r[0].1 =
            json!({"jwks_uri": format!("https://localhost:{port}/tenant/missing")}).to_string();
    }
    let errors = JwksFetcher::new(Arc::clone(&fresh), client(&ca))
        .refresh(&e.jwks_uris())
        .await;
    assert!(
        matches!(
            errors.as_slice(),
            [JwksFetchError::Status { status: 404, .. }]
        ),
        "{errors:?}"
    );
    assert!(!fresh.contains(&discovery));
    })
    .await
}

#[test]
fn ra_2_explicit_key_sources_win_over_discovery() {
    let inline = engine(&doc(
        "RequestAuthentication",
        "foo",
        "jwt",
        &format!("jwtRules:\n- issuer: {ISS}\n  jwks: '{{\"keys\": []}}'"),
    ));
    assert!(inline.jwks_uris().is_empty());
    let uri = engine(&doc(
        "RequestAuthentication",
        "foo",
        "jwt",
        &format!("jwtRules:\n- issuer: {ISS}\n  jwksUri: https://keys.example/jwks"),
    ));
    assert_eq!(
        uri.jwks_uris(),
        vec!["https://keys.example/jwks".to_owned()]
    );
}

#[tokio::test(flavor = "current_thread")]
async fn ra_2_oidc_discovery_refuses_a_jwks_uri_that_is_not_https() {
    test_support::within(30, async move {
    let ca = TestCa::new("example.org");
    let key = TestJwtKey::generate(KeyKind::P256);
    let routes = Arc::new(Mutex::new(Vec::new()));
    let port = serve_routes(&ca, Arc::clone(&routes)).await;
    let issuer = format!("https://localhost:{port}/tenant");
    let discovery = format!("{issuer}/.well-known/openid-configuration");
    let plain = format!("http://localhost:{port}/tenant/keys");
    if let Ok(mut r) = routes.lock() {
        r.push((
            "/tenant/.well-known/openid-configuration".to_owned(),
            json!({"issuer": issuer, "jwks_uri": plain}).to_string(),
        ));
        r.push((
            "/tenant/keys".to_owned(),
            json!({"keys": [key.jwk("k1")]}).to_string(),
        ));
    }
    let cache = Arc::new(JwksCache::new());
    let fetcher = JwksFetcher::new(Arc::clone(&cache), client(&ca));
    let errors = tokio::time::timeout(
        Duration::from_secs(10),
        fetcher.refresh(std::slice::from_ref(&discovery)),
    )
    .await
    .expect("refresh finishes");
    assert!(
        matches!(
            errors.as_slice(),
            [JwksFetchError::InsecureJwksUri { uri, jwks_uri }] if *uri == discovery && *jwks_uri == plain
        ),
        "{errors:?}"
    );
    assert!(errors[0].to_string().contains("not https"), "{}", errors[0]);
    assert!(!cache.contains(&discovery));
    })
    .await
}

#[tokio::test(flavor = "current_thread")]
async fn ra_2_jwks_fetch_gives_up_after_its_timeout() {
    test_support::within(30, async move {
    // Accepts TCP and never answers, so the TLS handshake stalls.
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1");
    let port = listener.local_addr().expect("addr").port();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            conns.push(tcp);
        }
    });
    let ca = TestCa::new("example.org");
    let fetcher = JwksFetcher::new(Arc::new(JwksCache::new()), client(&ca))
        .timeout(Duration::from_millis(300));
    let uri = format!("https://localhost:{port}/jwks");
    let err = tokio::time::timeout(Duration::from_secs(10), fetcher.fetch(&uri))
        .await
        .expect("the fetcher's own timeout fires first")
        .map(|_| ())
        .expect_err("a silent server");
    assert!(
        matches!(&err, JwksFetchError::Timeout { uri: u, timeout } if *u == uri && *timeout == Duration::from_millis(300)),
        "{err}"
    );
    held.abort();
    })
    .await
}

#[tokio::test(flavor = "current_thread")]
async fn ra_2_jwks_documents_over_1_mib_are_refused() {
    test_support::within(30, async move {
        let ca = TestCa::new("example.org");
        let key = TestJwtKey::generate(KeyKind::P256);
        let big = json!({"keys": [key.jwk("k1")], "pad": "x".repeat(1 << 20)}).to_string();
        let small =
            json!({"keys": [key.jwk("k1")], "pad": "x".repeat((1 << 20) - 200)}).to_string();
        assert!(small.len() <= 1 << 20);
        let body = Arc::new(Mutex::new(Some(big)));
        let port = serve(&ca, Arc::clone(&body)).await;
        let uri = format!("https://localhost:{port}/jwks");
        let fetcher = JwksFetcher::new(Arc::new(JwksCache::new()), client(&ca));
        let err = tokio::time::timeout(Duration::from_secs(10), fetcher.fetch(&uri))
            .await
            .expect("fetch finishes")
            .map(|_| ())
            .expect_err("oversized body");
        assert!(
            matches!(&err, JwksFetchError::Body { uri: u } if *u == uri),
            "{err}"
        );
        // Just under the limit is accepted.
        if let Ok(mut b) = body.lock() {
            *b = Some(small);
        }
        let set = tokio::time::timeout(Duration::from_secs(10), fetcher.fetch(&uri))
            .await
            .expect("fetch finishes")
            .expect("a document under 1 MiB loads");
        assert_eq!(set.keys.len(), 1);
    })
    .await
}

#[tokio::test(flavor = "current_thread")]
async fn ra_2_jwks_refresh_loop_retries_until_the_server_recovers() {
    test_support::within(30, async move {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let ca = TestCa::new("example.org");
        let key = TestJwtKey::generate(KeyKind::P256);
        let body = Arc::new(Mutex::new(None));
        let port = serve(&ca, Arc::clone(&body)).await;
        let uri = format!("https://localhost:{port}/jwks");
        let cache = Arc::new(JwksCache::new());
        let failures = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&failures);
        let fetcher = JwksFetcher::new(Arc::clone(&cache), client(&ca))
            .refresh_every(Duration::from_secs(3600));
        let task = tokio::spawn(fetcher.run(vec![uri.clone()], move |e| {
            assert!(
                matches!(e, JwksFetchError::Status { status: 500, .. }),
                "{e}"
            );
            counted.fetch_add(1, Ordering::SeqCst);
        }));
        // The first round fails (500) and is reported.
        tokio::time::timeout(Duration::from_secs(10), async {
            while failures.load(Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the failed round is reported");
        assert!(!cache.contains(&uri));
        // The server recovers: the retry (1 s backoff, not the hour-long
        // refresh interval) loads the set.
        if let Ok(mut b) = body.lock() {
            *b = Some(json!({"keys": [key.jwk("k1")]}).to_string());
        }
        tokio::time::timeout(Duration::from_secs(10), async {
            while !cache.contains(&uri) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the retry loads the key set");
        assert!(!task.is_finished(), "run keeps refreshing");
        task.abort();
    })
    .await
}
