//! A client sidecar and a server sidecar on loopback, end to end: the ways
//! into the outbound side, the protocols, authorization and mTLS modes.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Frame;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DENY_ADMIN: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin, namespace: default}
spec:
  action: DENY
  rules:
  - to:
    - operation: {paths: ["/admin*"]}
"#;

const STRICT: &str = r#"
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: strict, namespace: default}
spec:
  mtls: {mode: STRICT}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_named_request_crosses_the_pair_with_the_verified_peer_in_xfcc() {
    let _limit = test_support::time_limit(30);
    let pair = pair(|_| {}, "").await;
    let (status, _, body) =
        get_via(pair.client.addrs.outbound, "server.default:9080", "/hello").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("path=/hello"), "{body}");
    assert!(body.contains("host=server.default:9080"), "{body}");
    assert!(
        body.contains(&format!("xfcc=By={SERVER_ID};URI={CLIENT_ID}")),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xfcc_sent_by_the_application_is_replaced() {
    let _limit = test_support::time_limit(30);
    let pair = pair(|_| {}, "").await;
    let req = http::Request::get(format!("http://{}/x", pair.client.addrs.outbound))
        .header("host", "server.default")
        .header(
            "x-forwarded-client-cert",
            "URI=spiffe://example.org/ns/default/sa/admin",
        )
        .body(empty())
        .unwrap();
    let resp = h1_client().request(req).await.unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8_lossy(&body);
    assert!(
        !body.contains("sa/admin"),
        "forged XFCC reached the app: {body}"
    );
    assert!(body.contains(&format!("URI={CLIENT_ID}")), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_proxy_requests_are_routed() {
    let _limit = test_support::time_limit(30);
    let pair = pair(|_| {}, "").await;
    // What an application with HTTP_PROXY set sends.
    let mut tcp = TcpStream::connect(pair.client.addrs.outbound)
        .await
        .unwrap();
    tcp.write_all(
        b"GET http://server.default.svc.cluster.local:9080/p?q=1 HTTP/1.1\r\nHost: server.default.svc.cluster.local:9080\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("path=/p"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_services_get_503_with_a_reason_at_once() {
    let _limit = test_support::time_limit(30);
    let pair = pair(|_| {}, "").await;
    let (status, headers, _) = get_via(pair.client.addrs.outbound, "nosuch.default", "/").await;
    assert_eq!(status, 503);
    let why = headers.get("x-mesh-error").unwrap().to_str().unwrap();
    assert!(why.contains("unknown service nosuch.default"), "{why}");
    let (status, headers, _) = get_via(pair.client.addrs.outbound, "127.0.0.1:9", "/").await;
    assert_eq!(status, 503);
    assert!(headers.contains_key("x-mesh-error"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_policy_answers_403_rbac_and_allows_the_rest() {
    let _limit = test_support::time_limit(30);
    let pair = pair(|_| {}, DENY_ADMIN).await;
    let (status, _, body) = get_via(pair.client.addrs.outbound, "server.default", "/admin/x").await;
    assert_eq!(status, 403);
    assert_eq!(body, "RBAC: access denied");
    // M-9 through the sidecar: the normalised path is what is decided.
    let (status, _, _) = get_via(
        pair.client.addrs.outbound,
        "server.default",
        "/public/../admin/x",
    )
    .await;
    assert_eq!(status, 403);
    let (status, _, _) = get_via(pair.client.addrs.outbound, "server.default", "/public").await;
    assert_eq!(status, 200);
    let metrics = admin_text(pair.server.addrs.admin, "/stats/prometheus").await;
    assert!(
        metrics.contains("mesh_authz_denials_total"),
        "denials not counted:\n{metrics}"
    );
}

/// HTTP/2 with prior knowledge, in plaintext (PERMISSIVE), straight to the
/// inbound: the preface is detected and the stream served; the denial
/// the sidecar writes itself carries a `date`, as the application's
/// answers do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_http2_to_the_inbound_is_served_and_its_own_denials_are_dated() {
    let _limit = test_support::time_limit(30);
    let pair = pair(|_| {}, DENY_ADMIN).await;
    let inbound = pair.server.addrs.inbound;
    let get = |path: &'static str| async move {
        let req = http::Request::get(format!("http://{inbound}{path}"))
            .body(empty())
            .unwrap();
        let resp = h2_client().request(req).await.unwrap();
        assert_eq!(resp.version(), http::Version::HTTP_2);
        let (head, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (head, String::from_utf8_lossy(&body).into_owned())
    };
    let (head, body) = get("/admin/x").await;
    assert_eq!(head.status, 403);
    assert_eq!(body, "RBAC: access denied");
    let date = head.headers.get("date").expect("a denial without a date");
    assert!(
        httpdate::parse_http_date(date.to_str().unwrap()).is_ok(),
        "not an HTTP date: {date:?}"
    );
    let (head, body) = get("/public").await;
    assert_eq!(head.status, 200);
    assert!(body.starts_with("path=/public"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_update_applies_to_the_next_request() {
    let _limit = test_support::time_limit(30);
    let pair = pair(|_| {}, "").await;
    let (status, _, _) = get_via(pair.client.addrs.outbound, "server.default", "/admin").await;
    assert_eq!(status, 200);
    let set = authz::PolicySet::from_yaml_str("deny.yaml", DENY_ADMIN).unwrap();
    pair.server.policies.update(&set, "v2");
    let (status, _, _) = get_via(pair.client.addrs.outbound, "server.default", "/admin").await;
    assert_eq!(status, 403);
}

/// A bidirectional gRPC stream through the pair: each message comes back
/// before the next is sent, so neither sidecar may buffer a direction
/// until its end; the trailers arrive after the client half-closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_bidirectional_streaming_flows_message_by_message() {
    let _limit = test_support::time_limit(30);
    let pair = pair(
        |c| c.inbound.protocol = mesh_sidecar::config::AppProtocol::Grpc,
        "",
    )
    .await;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let req = http::Request::post(format!("http://{}/echo-stream", pair.client.addrs.outbound))
        .header("host", "server.default")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(channel_body(rx))
        .unwrap();
    let resp = h2_client().request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    for msg in [&b"\0\0\0\0\x05hello"[..], &b"\0\0\0\0\x05world"[..]] {
        tx.send(Frame::data(Bytes::from_static(msg))).await.unwrap();
        let mut got = Vec::new();
        while got.len() < msg.len() {
            let frame = body.frame().await.expect("the stream stays open").unwrap();
            got.extend_from_slice(&frame.into_data().expect("a message, not trailers"));
        }
        assert_eq!(got, msg, "each message comes back before the next is sent");
    }
    drop(tx);
    let rest = body.collect().await.unwrap();
    let trailers = rest
        .trailers()
        .cloned()
        .expect("trailers after the half-close");
    assert_eq!(trailers.get("grpc-status").unwrap(), "0");
    assert!(rest.to_bytes().is_empty());
}

/// Uploads larger than the HTTP/2 stream window (2 MiB) and, together,
/// than the connection window (5 MiB), echoed back while they are still
/// being sent: every byte arrives once, in order, on every stream, with
/// no stream waiting forever for window another holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_larger_than_the_flow_control_windows_cross_whole_both_ways() {
    let _limit = test_support::time_limit(60);
    let pair = pair(|_| {}, "").await;
    let outbound = pair.client.addrs.outbound;
    let uploads = (0..4u8).map(|n| async move {
        // 3 MiB in 64 KiB frames, each byte naming its stream and offset.
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let sent: Vec<u8> = (0..3usize << 20)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(n))
            .collect();
        let frames = sent.clone();
        tokio::spawn(async move {
            for chunk in frames.chunks(64 << 10) {
                if tx
                    .send(Frame::data(Bytes::copy_from_slice(chunk)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        let req = http::Request::post(format!("http://{outbound}/echo-stream"))
            .header("host", "server.default")
            .body(channel_body(rx))
            .unwrap();
        let resp = h1_client().request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let got = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(got.len(), sent.len(), "stream {n}: bytes lost or added");
        assert!(got == sent, "stream {n}: bytes out of order");
    });
    futures_util::future::join_all(uploads).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_over_h2_keeps_trailers_end_to_end() {
    let _limit = test_support::time_limit(30);
    let pair = pair(
        |c| c.inbound.protocol = mesh_sidecar::config::AppProtocol::Grpc,
        "",
    )
    .await;
    let req = http::Request::post(format!("http://{}/grpc", pair.client.addrs.outbound))
        .header("host", "server.default")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(empty())
        .unwrap();
    let resp = h2_client().request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("trailers lost");
    assert_eq!(trailers.get("grpc-status").unwrap(), "0");
    assert_eq!(trailers.get("grpc-message").unwrap(), "fine");
    assert_eq!(&collected.to_bytes()[..], b"\0\0\0\0\x02hi");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_tunnels_tcp_over_its_own_mtls_connection() {
    let _limit = test_support::time_limit(30);
    let echo = echo().await;
    let pair = pair(
        |c| {
            c.inbound.app = echo;
            c.inbound.protocol = mesh_sidecar::config::AppProtocol::Tcp;
        },
        "",
    )
    .await;
    let mut tcp = tunnel(pair.client.addrs.outbound, "server.default:7000").await;
    tcp.write_all(b"opaque bytes").await.unwrap();
    let mut back = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(5), tcp.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&back, b"opaque bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_refuses_plaintext_permissive_accepts_it() {
    let _limit = test_support::time_limit(30);
    let pair = pair(|_| {}, STRICT).await;
    let mut tcp = TcpStream::connect(pair.server.addrs.inbound).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(
        n,
        0,
        "STRICT answered plaintext: {:?}",
        String::from_utf8_lossy(&buf)
    );
    // Through the client sidecar (mTLS) it still works.
    let (status, _, _) = get_via(pair.client.addrs.outbound, "server.default", "/").await;
    assert_eq!(status, 200);

    let permissive = support::pair(|_| {}, "").await;
    let mut tcp = TcpStream::connect(permissive.server.addrs.inbound)
        .await
        .unwrap();
    tcp.write_all(b"GET /plain HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(
        out.contains("xfcc=-"),
        "plaintext must carry no identity: {out}"
    );

    // HTTP/1.0 without a Host reaches the application as HTTP/1.1 with the
    // application's address as its Host.
    let mut tcp = TcpStream::connect(permissive.server.addrs.inbound)
        .await
        .unwrap();
    tcp.write_all(b"GET /old HTTP/1.0\r\n\r\n").await.unwrap();
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.0 200"), "{out}");
    let app = permissive.app;
    assert!(out.contains(&format!("path=/old host={app} ")), "{out}");
    assert!(out.contains("version=HTTP/1.1"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_with_another_identity_is_refused() {
    let _limit = test_support::time_limit(30);
    let pair = pair(|_| {}, "").await;
    pair.client.endpoints.set_service(
        mesh_sidecar::endpoint::ServiceKey::new("server", "default"),
        vec![mesh_sidecar::endpoint::Target {
            addr: pair.server.addrs.inbound,
            identity: "spiffe://example.org/ns/default/sa/someone-else"
                .parse()
                .unwrap(),
        }],
    );
    let (status, headers, _) = get_via(pair.client.addrs.outbound, "server.default", "/").await;
    assert_eq!(status, 503);
    let why = headers.get("x-mesh-error").unwrap().to_str().unwrap();
    assert!(
        why.contains("expected spiffe://example.org/ns/default/sa/someone-else"),
        "{why}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_reports_readiness_certs_and_clusters() {
    let _limit = test_support::time_limit(30);
    let pair = pair(|_| {}, "").await;
    let ready = admin_text(pair.client.addrs.admin, "/healthz/ready").await;
    assert_eq!(ready.trim(), "LIVE");
    let certs = admin_text(pair.client.addrs.admin, "/certs").await;
    assert!(certs.contains(CLIENT_ID), "{certs}");
    let clusters = admin_text(pair.client.addrs.admin, "/clusters").await;
    assert!(clusters.contains("server.default"), "{clusters}");
    assert!(
        clusters.contains(&pair.server.addrs.inbound.to_string()),
        "{clusters}"
    );
    let dump = admin_text(pair.client.addrs.admin, "/config_dump").await;
    assert!(!dump.contains("PRIVATE KEY"), "{dump}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_inbound_and_exits() {
    let _limit = test_support::time_limit(30);
    let pair = pair(|_| {}, "").await;
    let (status, _, _) = get_via(pair.client.addrs.outbound, "server.default", "/").await;
    assert_eq!(status, 200);
    pair.server.shutdown.shutdown();
    tokio::time::timeout(Duration::from_secs(5), pair.server.task)
        .await
        .expect("sidecar did not exit after the drain time")
        .unwrap();
    assert!(
        TcpStream::connect(pair.server.addrs.inbound).await.is_err(),
        "inbound still accepting after shutdown"
    );
}

/// A request in flight over the pair's HTTP/2 connection when the server
/// sidecar starts to drain is answered; the drain (GOAWAY) refuses only
/// what comes after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_when_the_server_drains_is_answered() {
    let _limit = test_support::time_limit(30);
    let pair = pair(|_| {}, "").await;
    let (status, _, _) = get_via(pair.client.addrs.outbound, "server.default", "/").await;
    assert_eq!(status, 200, "the pool's connection is up");
    let outbound = pair.client.addrs.outbound;
    let slow = tokio::spawn(async move { get_via(outbound, "server.default", "/slow/300").await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    pair.server.shutdown.shutdown();
    let (status, _, body) = slow.await.unwrap();
    assert_eq!((status.as_u16(), body.as_str()), (200, "slow"));
    tokio::time::timeout(Duration::from_secs(5), pair.server.task)
        .await
        .expect("sidecar did not exit after the drain time")
        .unwrap();
}

/// An mTLS connection straight to the server sidecar's inbound, as a
/// client without a sidecar (or openssl's `s_time -www`) makes one.
async fn mtls_to_inbound(pair: &Pair) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let (svid, bundles) = sources(&pair.ca, CLIENT_ID);
    let config = mtls_tower::ClientConfigBuilder::new(
        std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        svid,
        bundles,
        mtls_tower::authorizer::exact(SERVER_ID.parse().unwrap()),
    )
    .alpn_protocols(vec![b"http/1.1".to_vec()])
    .build()
    .unwrap();
    let tcp = TcpStream::connect(pair.server.addrs.inbound).await.unwrap();
    tokio_rustls::TlsConnector::from(config.rustls().clone())
        .connect("server.default".try_into().unwrap(), tcp)
        .await
        .unwrap()
}

/// Reads `tls` to its end: a peer that closes without `close_notify`
/// makes this fail.
async fn read_to_clean_close(
    tls: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut out))
        .await
        .expect("the connection was not closed")
        .expect("the connection did not end with close_notify");
    String::from_utf8(out).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_response_of_a_closing_mtls_connection_arrives_whole_before_close_notify() {
    let _limit = test_support::time_limit(60);
    let pair = pair(|_| {}, "").await;

    // HTTP/1.0, as openssl s_time -www sends it.
    let mut tls = mtls_to_inbound(&pair).await;
    tls.write_all(b"GET /old HTTP/1.0\r\n\r\n").await.unwrap();
    let out = read_to_clean_close(&mut tls).await;
    assert!(out.starts_with("HTTP/1.0 200"), "{out}");
    assert!(out.ends_with("version=HTTP/1.1 body=0"), "{out}");
    let xfcc = format!("xfcc=By={SERVER_ID};URI={CLIENT_ID}");
    assert!(out.contains(&xfcc), "{out}");

    // A kept-alive request first, then one that closes: the first answer
    // is not held back, the second ends the connection.
    let mut tls = mtls_to_inbound(&pair).await;
    tls.write_all(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf))
        .await
        .expect("a kept-alive answer was held back")
        .unwrap();
    let first = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(first.contains("path=/first"), "{first}");
    tls.write_all(
        b"POST /second HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    )
    .await
    .unwrap();
    let out = read_to_clean_close(&mut tls).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("connection: close"), "{out}");
    let tail = format!("path=/second host=x {xfcc} version=HTTP/1.1 body=5");
    assert!(out.ends_with(&tail), "{out}");

    // An answer without a body ends the connection as cleanly.
    let mut tls = mtls_to_inbound(&pair).await;
    tls.write_all(b"HEAD /status/204 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let out = read_to_clean_close(&mut tls).await;
    assert!(out.starts_with("HTTP/1.1 204"), "{out}");
}

/// Runs curl with `args`, whatever its exit status.
async fn curl_output(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(["-sS", "--max-time", "20"])
            .args(&args)
            .output()
            .expect("curl is installed by .ci/run")
    })
    .await
    .unwrap()
}

/// Runs curl with `args`; its stdout and stderr.
async fn curl(args: Vec<String>) -> (String, String) {
    let out = curl_output(args).await;
    assert!(
        out.status.success(),
        "curl {:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// curl, an HTTP/1.x client we did not write, against the outbound's own
/// HTTP/1.x server: as a proxy, with `Expect: 100-continue` and chunked
/// uploads, HTTP/1.0, and two requests on one kept-alive connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_speaks_http1_to_the_outbound_in_every_framing() {
    let _limit = test_support::time_limit(60);
    let pair = pair(|_| {}, "").await;
    let outbound = pair.client.addrs.outbound;
    let dir = tempfile::tempdir().unwrap();
    let upload = dir.path().join("upload");
    std::fs::write(&upload, vec![b'x'; 3 << 20]).unwrap();
    let upload = format!("@{}", upload.display());

    let (out, _) = curl(vec![
        "-x".into(),
        format!("http://{outbound}"),
        "http://server.default:9080/proxied".into(),
    ])
    .await;
    assert!(out.starts_with("path=/proxied "), "{out}");

    let url = format!("http://{outbound}/up");
    let host = "Host: server.default".to_owned();
    let (out, err) = curl(vec![
        "-v".into(),
        "-H".into(),
        host.clone(),
        "-H".into(),
        "Expect: 100-continue".into(),
        "--data-binary".into(),
        upload.clone(),
        url.clone(),
    ])
    .await;
    assert!(err.contains("HTTP/1.1 100 Continue"), "{err}");
    assert!(out.ends_with(" body=3145728"), "{out}");

    let (out, _) = curl(vec![
        "-H".into(),
        host.clone(),
        "-H".into(),
        "Transfer-Encoding: chunked".into(),
        "--data-binary".into(),
        upload,
        url.clone(),
    ])
    .await;
    assert!(out.ends_with(" body=3145728"), "{out}");

    let (out, err) = curl(vec![
        "-v".into(),
        "--http1.0".into(),
        "-H".into(),
        host.clone(),
        url.clone(),
    ])
    .await;
    assert!(err.contains("< HTTP/1.0 200"), "{err}");
    assert!(out.contains("path=/up "), "{out}");

    let (out, err) = curl(vec![
        "-v".into(),
        "-H".into(),
        host,
        format!("http://{outbound}/first"),
        format!("http://{outbound}/second"),
    ])
    .await;
    assert!(
        out.contains("path=/first ") && out.contains("path=/second "),
        "{out}"
    );
    assert!(err.contains("Re-using existing connection"), "{err}");
}

/// The value of `mesh_tls_handshake_failures_total` for inbound handshakes
/// that failed for `reason` (0 when there is no such series yet).
fn inbound_handshake_failures(metrics: &str, reason: &str) -> f64 {
    let labels = format!("direction=\"inbound\",reason=\"{reason}\"");
    metrics
        .lines()
        .filter(|l| l.starts_with("mesh_tls_handshake_failures_total{") && l.contains(&labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// curl, a TLS client we did not write, at a STRICT inbound: with an SVID
/// of the mesh's CA it is served and named in XFCC; without a client
/// certificate, with one from another CA of the same trust domain, and
/// with a self-signed one made by openssl, it is refused at the handshake
/// and never reaches the application, each refusal counted by reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_with_a_wrong_or_missing_client_certificate_is_refused_under_strict() {
    let _limit = test_support::time_limit(60);
    let pair = pair(|_| {}, STRICT).await;
    let url = format!("https://{}/who", pair.server.addrs.inbound);
    let dir = tempfile::tempdir().unwrap();
    let write_leaf = |name: &str, leaf: &test_support::Leaf| {
        let cert = dir.path().join(format!("{name}.pem"));
        let key = dir.path().join(format!("{name}.key"));
        std::fs::write(&cert, leaf.chain_pem()).unwrap();
        std::fs::write(&key, leaf.key_pem()).unwrap();
        (cert, key)
    };
    let good = write_leaf("good", &pair.ca.leaf(CLIENT_ID));
    let other = write_leaf("other", &test_support::TestCa::new(TD).leaf(CLIENT_ID));
    let own = (dir.path().join("own.pem"), dir.path().join("own.key"));
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=client", "-addext"])
        .arg(format!("subjectAltName=URI:{CLIENT_ID}"))
        .arg("-keyout")
        .arg(&own.1)
        .arg("-out")
        .arg(&own.0)
        .output()
        .expect("openssl is installed by .ci/run");
    assert!(made.status.success(), "{made:?}");
    // `-k`: curl cannot check a SPIFFE ID; the client side is under test.
    let with = |certs: Option<&(std::path::PathBuf, std::path::PathBuf)>| {
        let mut args = vec!["-k".to_owned(), url.clone()];
        if let Some((cert, key)) = certs {
            args.extend(["--cert".to_owned(), cert.display().to_string()]);
            args.extend(["--key".to_owned(), key.display().to_string()]);
        }
        curl_output(args)
    };

    let out = with(Some(&good)).await;
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        body.starts_with("path=/who ") && body.contains(&format!("URI={CLIENT_ID}")),
        "{body}"
    );
    for (what, certs) in [
        ("no client certificate", None),
        ("another CA's certificate", Some(&other)),
        ("a self-signed certificate", Some(&own)),
    ] {
        let out = with(certs).await;
        assert!(!out.status.success(), "{what} was served: {out:?}");
        assert!(
            out.stdout.is_empty(),
            "{what} reached the application: {out:?}"
        );
    }
    // Each refusal is counted under its reason (the server may count just
    // after curl has seen the alert).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = admin_text(pair.server.addrs.admin, "/stats/prometheus").await;
        let missing = inbound_handshake_failures(&metrics, "no_client_certificate");
        let invalid = inbound_handshake_failures(&metrics, "invalid_certificate");
        if missing == 1.0 && invalid == 2.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "missing {missing}, invalid {invalid}:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
