//! DISABLE mode, server-first TCP, request authentication through the
//! pair, the per-request timeout (alone and on a kept connection),
//! `/logging`, and outbound during a drain.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use support::*;
use test_support::{KeyKind, TestJwtKey, sign_raw};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_passes_plaintext_without_identity() {
    let _limit = test_support::time_limit(30);
    let disable = r#"
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: off, namespace: default}
spec:
  mtls: {mode: DISABLE}
"#;
    let pair = pair(|_| {}, disable).await;
    let mut tcp = TcpStream::connect(pair.server.addrs.inbound).await.unwrap();
    tcp.write_all(b"GET /plain HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("xfcc=-"), "{out}");
}

/// A server that speaks first, as MySQL or SMTP do.
async fn banner_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = tcp.write_all(b"220 ready\r\n").await;
                let mut buf = [0u8; 64];
                let _ = tcp.read(&mut buf).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_tcp_port_lets_the_server_speak_first() {
    let _limit = test_support::time_limit(30);
    let banner = banner_server().await;
    // A detection timeout far longer than the test allows for the banner:
    // the declared protocol must skip detection.
    let pair = pair(
        |c| {
            c.inbound.app = banner;
            c.inbound.protocol = mesh_sidecar::config::AppProtocol::Tcp;
            c.limits.detect_timeout = Duration::from_secs(60);
        },
        "",
    )
    .await;
    let mut tcp = tunnel(pair.client.addrs.outbound, "server.default:3306").await;
    let mut seen = Vec::new();
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 256];
        while !String::from_utf8_lossy(&seen).contains("220 ready") {
            let n = tcp.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(got.is_ok(), "no banner: {}", String::from_utf8_lossy(&seen));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_gets_401_and_a_good_one_200() {
    let _limit = test_support::time_limit(30);
    let key = TestJwtKey::generate(KeyKind::P256);
    let iss = "https://issuer.example";
    let jwks = json!({"keys": [key.jwk("k1")]}).to_string();
    let yaml = format!(
        r#"
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: default}}
spec:
  jwtRules:
  - issuer: {iss}
    jwks: '{jwks}'
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: need-jwt, namespace: default}}
spec:
  rules:
  - from:
    - source: {{requestPrincipals: ["{iss}/alice"]}}
"#
    );
    let pair = pair(|_| {}, &yaml).await;
    let sign = |k: &TestJwtKey| {
        sign_raw(
            &json!({"alg": "ES256", "kid": "k1", "typ": "JWT"}),
            &json!({"iss": iss, "sub": "alice", "exp": 4_000_000_000u64}),
            Some(k),
        )
    };
    let send = |token: String| {
        let outbound = pair.client.addrs.outbound;
        async move {
            let req = http::Request::get(format!("http://{outbound}/"))
                .header("host", "server.default")
                .header("authorization", format!("Bearer {token}"))
                .body(empty())
                .unwrap();
            h1_client().request(req).await.unwrap().status()
        }
    };
    assert_eq!(send(sign(&key)).await, 200);
    let other = TestJwtKey::generate(KeyKind::P256);
    assert_eq!(send(sign(&other)).await, 401, "a forged token was accepted");
    assert_eq!(send("not.a.jwt".to_owned()).await, 401);
}

/// The client sidecar gives up at its timeout with a 504; the reset
/// crosses the HTTP/2 hop and the server sidecar drops the application's
/// call, closing that connection, instead of waiting on it forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_slower_than_the_timeout_gets_504() {
    let _limit = test_support::time_limit(30);
    let (silent, mut closed) = silent_app().await;
    let ca = test_support::TestCa::new(TD);
    let mut sc = loopback_config();
    sc.inbound.app = silent;
    let server = start(sc, identity(&ca, SERVER_ID), "").await;
    let client = client_to(&ca, &[server.addrs.inbound], |c| {
        c.outbound.request_timeout = Duration::from_millis(300);
    })
    .await;
    let (status, headers, _) = get_via(client.addrs.outbound, "server.default", "/").await;
    assert_eq!(status, 504);
    let why = headers.get("x-mesh-error").unwrap().to_str().unwrap();
    assert!(why.contains("timed out"), "{why}");
    tokio::time::timeout(Duration::from_secs(5), closed.recv())
        .await
        .expect("the application's call was not dropped")
        .unwrap();
}

/// Sends `GET path` on `tcp` (HTTP/1.1, kept alive) and reads the
/// response: its status, and its `x-mesh-error` when there is one.
async fn get_on(tcp: &mut TcpStream, path: &str) -> (u16, String) {
    let req = format!("GET {path} HTTP/1.1\r\nhost: server.default\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(tcp.read(&mut byte).await.unwrap(), 1, "connection closed");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let field = |name: &str| {
        head.lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
            .unwrap_or_default()
    };
    let mut body = vec![0u8; field("content-length").parse().unwrap()];
    tcp.read_exact(&mut body).await.unwrap();
    let status = head[9..12].parse().unwrap();
    (status, field("x-mesh-error"))
}

/// The requests of one keep-alive connection share one timer for their
/// timeouts: a request still running when the timer set for an earlier
/// one fires is not cut off, and a request slower than its own timeout
/// gets its 504 no earlier than that timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_on_a_kept_connection_has_its_own_timeout() {
    let _limit = test_support::time_limit(30);
    let ca = test_support::TestCa::new(TD);
    let mut sc = loopback_config();
    sc.inbound.app = app().await;
    let server = start(sc, identity(&ca, SERVER_ID), "").await;
    let timeout = Duration::from_millis(1000);
    let client = client_to(&ca, &[server.addrs.inbound], |c| {
        c.outbound.request_timeout = timeout;
    })
    .await;
    let mut tcp = TcpStream::connect(client.addrs.outbound).await.unwrap();
    let first = std::time::Instant::now();
    assert_eq!(get_on(&mut tcp, "/slow/50").await, (200, String::new()));
    tokio::time::sleep(Duration::from_millis(700)).await;
    // Runs past `first + timeout`, when the first request's timer fires,
    // and ends well within its own.
    assert_eq!(get_on(&mut tcp, "/slow/600").await, (200, String::new()));
    assert!(first.elapsed() > timeout);
    let third = std::time::Instant::now();
    let (status, why) = get_on(&mut tcp, "/slow/5000").await;
    assert_eq!(status, 504);
    assert!(why.contains("timed out"), "{why}");
    assert!(
        third.elapsed() >= timeout,
        "504 after {:?}",
        third.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_changes_the_level_through_the_setter() {
    let _limit = test_support::time_limit(30);
    let ca = test_support::TestCa::new(TD);
    let config = loopback_config();
    let policies = policies(&config, "");
    let endpoints = Arc::new(mesh_sidecar::endpoint::Endpoints::new(
        config.outbound.balance.clone(),
    ));
    let (_tx, ready) = tokio::sync::watch::channel(true);
    let levels = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = levels.clone();
    let sidecar = mesh_sidecar::runtime::Sidecar::build(mesh_sidecar::runtime::SidecarParts {
        config,
        identity: identity(&ca, CLIENT_ID),
        policies,
        endpoints,
        policies_ready: ready,
        set_log_level: Some(Arc::new(move |l: &str| {
            if l == "nonsense[" {
                return Err("invalid filter".to_owned());
            }
            seen.lock().unwrap().push(l.to_owned());
            Ok(())
        })),
        access_log: None,
    })
    .await
    .unwrap();
    let admin = sidecar.addresses().admin;
    let _run = tokio::spawn(sidecar.run(mesh_sidecar::runtime::ShutdownHandle::new()));
    let post = |q: &'static str| async move {
        let req = http::Request::post(format!("http://{admin}/logging{q}"))
            .body(empty())
            .unwrap();
        h1_client().request(req).await.unwrap().status()
    };
    assert_eq!(post("?level=debug").await, 200);
    assert_eq!(post("?level=nonsense[").await, 400);
    assert_eq!(post("").await, 400);
    assert_eq!(*levels.lock().unwrap(), ["debug"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_keeps_working_while_inbound_drains() {
    let _limit = test_support::time_limit(30);
    let pair = pair(|_| {}, "").await;
    // The client sidecar is told to stop: its outbound must still carry
    // the application's calls during the drain.
    pair.client.shutdown.shutdown();
    let (status, _, _) = get_via(pair.client.addrs.outbound, "server.default", "/").await;
    assert_eq!(status, 200, "outbound refused during the drain");
    assert!(
        TcpStream::connect(pair.client.addrs.inbound).await.is_err(),
        "inbound still accepts during the drain"
    );
    tokio::time::timeout(Duration::from_secs(5), pair.client.task)
        .await
        .expect("sidecar did not exit after the drain")
        .unwrap();
}
