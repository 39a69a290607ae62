//! Endpoints that take the connection but not the request: a peer that
//! answers every stream with `RST_STREAM(REFUSED_STREAM)`, and one that
//! answers the first request with a `GOAWAY` whose last stream ID excludes
//! it (RFC 9113 §8.7: neither request was processed, so the outbound may
//! send it again elsewhere). The peer speaks HTTP/2 frame by frame over
//! mTLS with the server's SVID, so the outbound pool accepts it as the
//! registered endpoint.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use mesh_sidecar::body::boxed;
use mtls_tower::{MtlsAcceptor, ServerConfigBuilder, authorizer};
use support::*;
use test_support::TestCa;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

const SETTINGS: u8 = 0x4;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const ACK: u8 = 0x1;
const REFUSED_STREAM: u32 = 0x7;

#[derive(Clone, Copy)]
enum Refusal {
    /// `RST_STREAM(REFUSED_STREAM)` on every request stream.
    Reset,
    /// `GOAWAY(last stream 0, NO_ERROR)` on the first request stream,
    /// then the connection is closed.
    GoAway,
    /// No answer at all; the error codes of `RST_STREAM` frames received
    /// are recorded.
    Silent,
}

async fn frame<W: AsyncWrite + Unpin>(w: &mut W, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut buf = Vec::with_capacity(9 + payload.len());
    buf.extend_from_slice(&len[1..]);
    buf.extend_from_slice(&[kind, flags]);
    buf.extend_from_slice(&stream.to_be_bytes());
    buf.extend_from_slice(payload);
    w.write_all(&buf).await.unwrap();
    w.flush().await.unwrap();
}

/// What the peer saw: request streams, and the codes of resets received.
#[derive(Default)]
struct Seen {
    requests: AtomicUsize,
    resets: std::sync::Mutex<Vec<u32>>,
}

impl Seen {
    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// One connection of the refusing peer.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(mut tls: S, how: Refusal, seen: &Seen) {
    let mut preface = [0u8; 24];
    if tls.read_exact(&mut preface).await.is_err() {
        return;
    }
    assert_eq!(&preface, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    frame(&mut tls, SETTINGS, 0, 0, &[]).await;
    loop {
        let mut head = [0u8; 9];
        if tls.read_exact(&mut head).await.is_err() {
            return;
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        if tls.read_exact(&mut payload).await.is_err() {
            return;
        }
        match kind {
            SETTINGS if flags & ACK == 0 => frame(&mut tls, SETTINGS, ACK, 0, &[]).await,
            PING if flags & ACK == 0 => frame(&mut tls, PING, ACK, 0, &payload).await,
            RST_STREAM if payload.len() == 4 => {
                let code = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
                seen.resets.lock().unwrap().push(code);
            }
            HEADERS => {
                seen.requests.fetch_add(1, Ordering::SeqCst);
                match how {
                    Refusal::Reset => {
                        frame(
                            &mut tls,
                            RST_STREAM,
                            0,
                            stream,
                            &REFUSED_STREAM.to_be_bytes(),
                        )
                        .await;
                    }
                    Refusal::Silent => {}
                    Refusal::GoAway => {
                        let mut goaway = [0u8; 8];
                        goaway[..4].copy_from_slice(&0u32.to_be_bytes());
                        frame(&mut tls, GOAWAY, 0, 0, &goaway).await;
                        let _ = tls.shutdown().await;
                        return;
                    }
                }
            }
            _ => {}
        }
    }
}

/// A peer proving the server's identity that refuses requests `how`;
/// returns its address and what reached it.
async fn refusing_peer(ca: &TestCa, how: Refusal) -> (SocketAddr, Arc<Seen>) {
    let id = identity(ca, SERVER_ID);
    let config = ServerConfigBuilder::new(
        Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        id.svid,
        id.bundles,
        authorizer::any(),
    )
    .alpn_protocols(vec![b"h2".to_vec()])
    .build()
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut acceptor = MtlsAcceptor::new(listener, config);
    let addr = acceptor.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Ok(conn) = acceptor.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move { refuse(conn, how, &counter).await });
        }
    });
    (addr, seen)
}

/// A real server sidecar in front of the test application.
async fn server(ca: &TestCa) -> Running {
    let mut config = loopback_config();
    config.inbound.app = app().await;
    start(config, identity(ca, SERVER_ID), "").await
}

/// Sends `method /` with `body` through the outbound listener; the status
/// and the body, or for the sidecar's own answers the reason it gives.
async fn send(
    outbound: SocketAddr,
    method: http::Method,
    body: &'static str,
) -> (http::StatusCode, String) {
    let req = http::Request::builder()
        .method(method)
        .uri(format!("http://{outbound}/"))
        .header("host", "server.default")
        .body(boxed(Full::new(Bytes::from_static(body.as_bytes()))))
        .unwrap();
    let resp = h1_client().request(req).await.unwrap();
    let status = resp.status();
    let reason = resp
        .headers()
        .get("x-mesh-error")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        reason.unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned()),
    )
}

/// Sends `method` until the refusing peer has refused `want` requests;
/// every response must be the application's `200`.
async fn until_refused(outbound: SocketAddr, method: http::Method, seen: &Seen, want: usize) {
    for i in 0..400 {
        let (status, body) = send(outbound, method.clone(), "").await;
        assert_eq!(status, 200, "request {i} failed: {body}");
        if seen.requests() >= want {
            return;
        }
    }
    panic!("the refusing endpoint was never picked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_stream_is_sent_again_to_another_endpoint() {
    let _limit = test_support::time_limit(60);
    let ca = TestCa::new(TD);
    let (refusing, seen) = refusing_peer(&ca, Refusal::Reset).await;
    let good = server(&ca).await;
    let client = client_to(&ca, &[refusing, good.addrs.inbound], |_| {}).await;
    // REFUSED_STREAM says the stream was not processed, whatever the
    // method: a bodiless POST goes again too.
    until_refused(client.addrs.outbound, http::Method::GET, &seen, 1).await;
    let before = seen.requests();
    until_refused(client.addrs.outbound, http::Method::POST, &seen, before + 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_excluded_by_goaway_is_sent_again_when_idempotent() {
    let _limit = test_support::time_limit(60);
    let ca = TestCa::new(TD);
    let (refusing, seen) = refusing_peer(&ca, Refusal::GoAway).await;
    let good = server(&ca).await;
    let client = client_to(&ca, &[refusing, good.addrs.inbound], |_| {}).await;
    until_refused(client.addrs.outbound, http::Method::GET, &seen, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_with_no_other_endpoint_is_a_clear_503() {
    let _limit = test_support::time_limit(60);
    let ca = TestCa::new(TD);
    let (refusing, seen) = refusing_peer(&ca, Refusal::Reset).await;
    let client = client_to(&ca, &[refusing], |_| {}).await;
    let (status, body) = send(client.addrs.outbound, http::Method::GET, "").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("refused"), "the reason is not named: {body}");
    assert_eq!(seen.requests(), 1, "sent to the same endpoint again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_a_body_is_not_sent_twice() {
    let _limit = test_support::time_limit(60);
    let ca = TestCa::new(TD);
    // The body has gone to the refusing peer (or part of it has): it is
    // not kept, so the request is answered 502, not replayed empty.
    let (refusing, seen) = refusing_peer(&ca, Refusal::Reset).await;
    let client = client_to(&ca, &[refusing], |_| {}).await;
    let (status, body) = send(client.addrs.outbound, http::Method::POST, "payload").await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("refused"), "the reason is not named: {body}");
    assert_eq!(seen.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_excluded_by_goaway_is_not_sent_again() {
    let _limit = test_support::time_limit(60);
    let ca = TestCa::new(TD);
    // GOAWAY excludes the stream, but a connection that then dies may
    // have processed streams in flight: only idempotent methods go again.
    let (refusing, seen) = refusing_peer(&ca, Refusal::GoAway).await;
    let client = client_to(&ca, &[refusing], |_| {}).await;
    let (status, body) = send(client.addrs.outbound, http::Method::POST, "").await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(seen.requests(), 1);
}

/// Waits up to five seconds for the peer to receive a reset.
async fn resets_seen(seen: &Seen) -> Vec<u32> {
    for _ in 0..500 {
        if !seen.resets.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    seen.resets.lock().unwrap().clone()
}

const CANCEL: u32 = 0x8;
const PARTIAL_POST: &[u8] =
    b"POST / HTTP/1.1\r\nhost: server.default\r\ncontent-length: 1000\r\n\r\n0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_abandoned_mid_body_resets_its_stream() {
    let _limit = test_support::time_limit(60);
    let ca = TestCa::new(TD);
    let (silent, seen) = refusing_peer(&ca, Refusal::Silent).await;
    let client = client_to(&ca, &[silent], |_| {}).await;
    // Part of a declared body, then the client goes away while the
    // request waits for a response that never comes.
    let mut tcp = tokio::net::TcpStream::connect(client.addrs.outbound)
        .await
        .unwrap();
    tcp.write_all(PARTIAL_POST).await.unwrap();
    while seen.requests() == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    drop(tcp);
    assert_eq!(
        resets_seen(&seen).await,
        [CANCEL],
        "the abandoned stream was not reset with CANCEL"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_times_out_mid_body_resets_its_stream() {
    let _limit = test_support::time_limit(60);
    let ca = TestCa::new(TD);
    let (silent, seen) = refusing_peer(&ca, Refusal::Silent).await;
    let client = client_to(&ca, &[silent], |c| {
        c.outbound.request_timeout = std::time::Duration::from_millis(300);
    })
    .await;
    // The client stays, its body unfinished: the 504 must also stop the
    // stream that would carry the rest of it.
    let mut tcp = tokio::net::TcpStream::connect(client.addrs.outbound)
        .await
        .unwrap();
    tcp.write_all(PARTIAL_POST).await.unwrap();
    let mut head = [0u8; 12];
    tcp.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 504");
    assert_eq!(
        resets_seen(&seen).await,
        [CANCEL],
        "the timed-out stream was not reset with CANCEL"
    );
    drop(tcp);
}
