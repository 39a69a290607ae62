//! SVID rotation and CA rotation under continuous load: zero failed
//! handshakes, zero failed requests, existing connections unaffected.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioExecutor;
use mtls_tower::{MtlsConnector, authorizer};
use spiffe_core::SpiffeId;
use test_support::TestCa;

const TD: &str = "example.org";
const SERVER: &str = "spiffe://example.org/ns/default/sa/server";
const CLIENT: &str = "spiffe://example.org/ns/default/sa/frontend";

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
}

/// Waits until every worker has completed two more requests, so every
/// handshake that started before the call has finished.
async fn barrier(workers: &[Arc<Counts>]) {
    let start: Vec<u64> = workers
        .iter()
        .map(|c| c.ok.load(Ordering::SeqCst) + c.failed.load(Ordering::SeqCst))
        .collect();
    let wait = async {
        loop {
            let done = workers.iter().zip(&start).all(|(c, s)| {
                c.ok.load(Ordering::SeqCst) + c.failed.load(Ordering::SeqCst) >= s + 2
            });
            if done {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .expect("workers make progress");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn svid_and_ca_rotation_under_load_fail_nothing() {
    test_support::within(120, async move {
        let old_ca = TestCa::new(TD);
        let new_ca = TestCa::new(TD);
        let server = Workload::new(&old_ca, SERVER, TD);
        let client = Workload::new(&old_ca, CLIENT, TD);
        let server_id: SpiffeId = SERVER.parse().unwrap();
        let client_id: SpiffeId = CLIENT.parse().unwrap();
        let mut srv = start_server(server.server_config(authorizer::exact(client_id))).await;
        let client_config = client.client_config(authorizer::exact(server_id));

        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        let mut tasks = Vec::new();

        // Workers opening a new connection (a full handshake) per request.
        for _ in 0..3 {
            let counts = Arc::new(Counts::default());
            workers.push(counts.clone());
            let http = fresh_connection_client(client_config.clone());
            let url = srv.url();
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    match get_body(&http, &url).await {
                        Ok(body) if body == CLIENT => counts.ok.fetch_add(1, Ordering::SeqCst),
                        Ok(body) => panic!("unexpected body {body}"),
                        Err(e) => {
                            eprintln!("request failed: {e}");
                            counts.failed.fetch_add(1, Ordering::SeqCst)
                        }
                    };
                }
            }));
        }

        // One long-lived HTTP/2 connection, opened before any rotation.
        let stream = MtlsConnector::new(client_config.clone())
            .connect(srv.url().parse().unwrap())
            .await
            .unwrap();
        let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), stream)
            .await
            .unwrap();
        tokio::spawn(conn);
        let long_lived = Arc::new(Counts::default());
        workers.push(long_lived.clone());
        {
            let stop = stop.clone();
            let counts = long_lived.clone();
            let url = srv.url();
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let req = http::Request::get(&url)
                        .body(Empty::<Bytes>::new())
                        .unwrap();
                    let result = match send.send_request(req).await {
                        Ok(resp) => resp.into_body().collect().await.map(|b| b.to_bytes()).ok(),
                        Err(_) => None,
                    };
                    match result {
                        Some(body) if body == CLIENT.as_bytes() => {
                            counts.ok.fetch_add(1, Ordering::SeqCst)
                        }
                        _ => counts.failed.fetch_add(1, Ordering::SeqCst),
                    };
                }
            }));
        }

        barrier(&workers).await;

        // SVID rotation, same CA, several times.
        for _ in 0..3 {
            server.svids.set(svid(&old_ca.leaf(SERVER)));
            client.svids.set(svid(&old_ca.leaf(CLIENT)));
            barrier(&workers).await;
        }

        // CA rotation: publish the new root, switch SVIDs, retire the old root.
        let both = bundle_set(&[(&old_ca, TD), (&new_ca, TD)]);
        server.bundles.set(both.clone());
        client.bundles.set(both);
        barrier(&workers).await;
        server.svids.set(svid(&new_ca.leaf(SERVER)));
        client.svids.set(svid(&new_ca.leaf(CLIENT)));
        barrier(&workers).await;
        server.bundles.set(bundle_set(&[(&new_ca, TD)]));
        client.bundles.set(bundle_set(&[(&new_ca, TD)]));
        barrier(&workers).await;
        barrier(&workers).await;

        stop.store(true, Ordering::SeqCst);
        for t in tasks {
            t.await.unwrap();
        }

        let ok: u64 = workers.iter().map(|c| c.ok.load(Ordering::SeqCst)).sum();
        let failed: u64 = workers
            .iter()
            .map(|c| c.failed.load(Ordering::SeqCst))
            .sum();
        eprintln!("requests: {ok} ok, {failed} failed");
        assert_eq!(failed, 0, "no request failed");
        assert!(
            long_lived.ok.load(Ordering::SeqCst) >= 16,
            "the existing connection kept serving"
        );
        assert!(ok >= 60);
        // Empty, not disconnected: the server is running and reported nothing.
        assert_eq!(
            srv.errors.try_recv().map(|e| e.to_string()),
            Err(tokio::sync::mpsc::error::TryRecvError::Empty),
            "no failed handshake on the server"
        );

        // Only the new material is trusted now: an old-CA client is refused.
        let stale = Workload::new(&old_ca, CLIENT, TD);
        stale.bundles.set(bundle_set(&[(&new_ca, TD)]));
        assert_eq!(
            refused_handshake(&stale.client_config(authorizer::any()), srv.addr).await,
            alert(rustls::AlertDescription::UnknownCA),
            "the client is told its CA is unknown"
        );
        let err = tokio::time::timeout(Duration::from_secs(10), srv.errors.recv())
            .await
            .expect("the server reports the refused handshake")
            .expect("the server is running");
        let mtls_tower::AcceptError::Handshake { source, .. } = &err else {
            panic!("expected a handshake error, got {err:?}")
        };
        assert_eq!(
            rustls_error(source),
            Some(&rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer
            )),
            "the server refused the old CA's SVID as UnknownIssuer"
        );
    })
    .await
}
