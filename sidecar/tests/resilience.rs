//! What a sidecar pair does when things go wrong: endpoints that die,
//! identities that rotate under load, slow, oversized and half-open
//! clients, policies that revoke an open TCP connection.

mod support;

use std::time::Duration;

use mesh_sidecar::endpoint::{ServiceKey, Target};
use mesh_sidecar::identity::Identity;
use support::*;
use test_support::TestCa;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the peer closes; `true` if it closed within `limit`.
async fn closes_within(tcp: &mut TcpStream, limit: Duration) -> (bool, Vec<u8>) {
    let mut seen = Vec::new();
    let closed = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    (closed, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_endpoint_is_ejected_and_no_request_fails() {
    let _limit = test_support::time_limit(60);
    let ca = TestCa::new(TD);
    let app = app().await;
    let mut servers = Vec::new();
    for _ in 0..2 {
        let mut config = loopback_config();
        config.inbound.app = app;
        servers.push(start(config, identity(&ca, SERVER_ID), "").await);
    }
    let client = start(loopback_config(), identity(&ca, CLIENT_ID), "").await;
    let key = ServiceKey::new("server", "default");
    client.endpoints.set_service(
        key.clone(),
        servers
            .iter()
            .map(|s| Target {
                addr: s.addrs.inbound,
                identity: SERVER_ID.parse().unwrap(),
            })
            .collect(),
    );
    let victim = servers[1].addrs.inbound;
    let mut failures = 0;
    for i in 0..300 {
        if i == 50 {
            servers[1].shutdown.shutdown();
        }
        let (status, headers, body) = get_via(client.addrs.outbound, "server.default", "/").await;
        if status != 200 {
            failures += 1;
            eprintln!("request {i}: {status} {headers:?} {body}");
        }
    }
    assert_eq!(failures, 0, "requests failed while an endpoint died");
    let status = client.endpoints.service(&key).unwrap().status();
    let dead = status.iter().find(|s| s.addr == victim).unwrap();
    assert!(
        dead.times_ejected >= 1,
        "the dead endpoint was never ejected: {dead:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn svid_and_ca_rotation_under_load_fail_no_request() {
    let _limit = test_support::time_limit(60);
    let old_ca = TestCa::new(TD);
    let new_ca = TestCa::new(TD);
    let app = app().await;
    let (server_svid, server_bundles) = sources(&old_ca, SERVER_ID);
    let (client_svid, client_bundles) = sources(&old_ca, CLIENT_ID);
    let mut sc = loopback_config();
    sc.inbound.app = app;
    let server = start(
        sc,
        Identity {
            svid: server_svid.clone(),
            bundles: server_bundles.clone(),
        },
        "",
    )
    .await;
    let client = start(
        loopback_config(),
        Identity {
            svid: client_svid.clone(),
            bundles: client_bundles.clone(),
        },
        "",
    )
    .await;
    client.endpoints.set_service(
        ServiceKey::new("server", "default"),
        vec![Target {
            addr: server.addrs.inbound,
            identity: SERVER_ID.parse().unwrap(),
        }],
    );
    let outbound = client.addrs.outbound;
    let load = tokio::spawn(async move {
        let (mut ok, mut failed) = (0u32, 0u32);
        for _ in 0..400 {
            let (status, _, _) = get_via(outbound, "server.default", "/").await;
            if status == 200 { ok += 1 } else { failed += 1 }
        }
        (ok, failed)
    });
    let step = Duration::from_millis(40);
    // SVID rotation from the same CA.
    tokio::time::sleep(step).await;
    server_svid.set(svid(&old_ca, SERVER_ID));
    client_svid.set(svid(&old_ca, CLIENT_ID));
    // CA rotation: trust both, move to the new CA, retire the old one.
    tokio::time::sleep(step).await;
    server_bundles.set(bundles(&[&old_ca, &new_ca]));
    client_bundles.set(bundles(&[&old_ca, &new_ca]));
    tokio::time::sleep(step).await;
    server_svid.set(svid(&new_ca, SERVER_ID));
    client_svid.set(svid(&new_ca, CLIENT_ID));
    tokio::time::sleep(step).await;
    server_bundles.set(bundles(&[&new_ca]));
    client_bundles.set(bundles(&[&new_ca]));
    let (ok, failed) = load.await.unwrap();
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed during rotation",
        ok + failed
    );
    // New handshakes now need the new CA: a fresh client from it gets
    // through, one still holding an old-CA SVID is refused.
    for (ca, expect_ok) in [(&new_ca, true), (&old_ca, false)] {
        let fresh = start(loopback_config(), identity(ca, CLIENT_ID), "").await;
        fresh.endpoints.set_service(
            ServiceKey::new("server", "default"),
            vec![Target {
                addr: server.addrs.inbound,
                identity: SERVER_ID.parse().unwrap(),
            }],
        );
        let (status, _, _) = get_via(fresh.addrs.outbound, "server.default", "/").await;
        assert_eq!(status == 200, expect_ok, "status {status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_client_is_cut_off_at_the_header_deadline() {
    let _limit = test_support::time_limit(30);
    let pair = pair(
        |c| c.limits.header_read_timeout = Duration::from_millis(300),
        "",
    )
    .await;
    let mut tcp = TcpStream::connect(pair.server.addrs.inbound).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Trickle one header byte at a time, never finishing the head.
    let trickle = async {
        for _ in 0..100 {
            if tcp.write_all(b"a").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), trickle)
        .await
        .unwrap();
    let (closed, seen) = closes_within(&mut tcp, Duration::from_secs(5)).await;
    assert!(closed, "slow client still connected");
    let seen = String::from_utf8_lossy(&seen);
    assert!(
        seen.is_empty() || seen.starts_with("HTTP/1.1 408"),
        "{seen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_head_is_refused_with_431() {
    let _limit = test_support::time_limit(30);
    let pair = pair(|c| c.limits.max_header_bytes = 16 * 1024, "").await;
    let mut tcp = TcpStream::connect(pair.client.addrs.outbound)
        .await
        .unwrap();
    let big = "a".repeat(64 * 1024);
    let req = format!("GET / HTTP/1.1\r\nHost: server.default\r\nx-big: {big}\r\n\r\n");
    let _ = tcp.write_all(req.as_bytes()).await;
    let (closed, seen) = closes_within(&mut tcp, Duration::from_secs(5)).await;
    assert!(closed);
    let seen = String::from_utf8_lossy(&seen);
    assert!(seen.starts_with("HTTP/1.1 431"), "{seen}");
    // The sidecar keeps serving others.
    let (status, _, _) = get_via(pair.client.addrs.outbound, "server.default", "/").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_handshake_is_dropped_at_the_deadline() {
    let _limit = test_support::time_limit(30);
    let pair = pair(
        |c| c.limits.handshake_timeout = Duration::from_millis(300),
        "",
    )
    .await;
    let mut tcp = TcpStream::connect(pair.server.addrs.inbound).await.unwrap();
    // The start of a TLS ClientHello record, then silence.
    tcp.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    let (closed, _) = closes_within(&mut tcp, Duration::from_secs(5)).await;
    assert!(closed, "half-open handshake held open");
    let metrics = admin_text(pair.server.addrs.admin, "/stats/prometheus").await;
    assert!(
        metrics.contains("reason=\"handshake_timeout\""),
        "handshake timeout not counted:\n{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_that_denies_closes_an_open_tcp_connection() {
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
    tcp.write_all(b"ping").await.unwrap();
    let mut back = [0u8; 4];
    tcp.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"ping");
    let deny = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-client, namespace: default}
spec:
  action: DENY
  rules:
  - from:
    - source: {principals: ["example.org/ns/default/sa/client"]}
"#;
    let set = authz::PolicySet::from_yaml_str("deny.yaml", deny).unwrap();
    pair.server.policies.update(&set, "deny-client");
    let (closed, _) = closes_within(&mut tcp, Duration::from_secs(5)).await;
    assert!(
        closed,
        "open TCP connection survived a policy that denies it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_to_endpoints_that_left_discovery_are_closed() {
    let _limit = test_support::time_limit(30);
    let pair = pair(|_| {}, "").await;
    let (status, _, _) = get_via(pair.client.addrs.outbound, "server.default", "/").await;
    assert_eq!(status, 200);
    let open = || async {
        let v: serde_json::Value =
            serde_json::from_str(&admin_text(pair.client.addrs.admin, "/clusters").await).unwrap();
        v["open_connections"].as_u64().unwrap()
    };
    assert_eq!(open().await, 1);
    pair.client
        .endpoints
        .set_service(ServiceKey::new("server", "default"), Vec::new());
    let mut left = 1;
    for _ in 0..100 {
        left = open().await;
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(left, 0, "the pool kept a connection to a removed endpoint");
}
