//! Bounds on local abuse: connection cap, idle timeout, server keepalive
//! and each caller's share of the stream limit. Real sockets, so real time
//! with timeouts that fail the test.

mod common;

use std::time::Duration;

use common::{World, raw, serve_with, unix_address};
use tokio::io::AsyncWriteExt;
use workload_api::{ServerLimits, StatusCode, WorkloadApiClient};

const LIMIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_past_the_cap_waits_until_one_closes() {
    let world = World::new("cap");
    let _server = serve_with(
        world.provider.clone(),
        &world.socket,
        ServerLimits::default().with_max_connections(1),
    );
    let addr = unix_address(&world.socket);
    let mut first = WorkloadApiClient::connect(&addr).await.unwrap();
    tokio::time::timeout(LIMIT, first.fetch_x509_context())
        .await
        .unwrap()
        .unwrap();
    // The second connection sits in the listen backlog: no answer.
    let mut second = WorkloadApiClient::connect(&addr).await.unwrap();
    let waited =
        tokio::time::timeout(Duration::from_millis(500), second.fetch_x509_context()).await;
    assert!(waited.is_err(), "no answer past the cap: {waited:?}");
    drop(first);
    let ctx = tokio::time::timeout(LIMIT, second.fetch_x509_context())
        .await
        .expect("answered once the first connection closed")
        .unwrap();
    assert_eq!(ctx.svids[0].svid.spiffe_id().path(), "/web");
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_are_closed_and_busy_ones_kept() {
    let world = World::new("idle");
    let _server = serve_with(
        world.provider.clone(),
        &world.socket,
        ServerLimits::default().with_idle_timeout(Duration::from_millis(200)),
    );
    // A connection that never sends a request is closed.
    let mut silent = tokio::net::UnixStream::connect(&world.socket)
        .await
        .unwrap();
    silent.write_all(raw::PREFACE).await.unwrap();
    let closed = tokio::time::timeout(LIMIT, async {
        while raw::read_frame(&mut silent).await.is_some() {}
    })
    .await;
    assert!(closed.is_ok(), "the idle connection was closed");

    // A connection with an open watch stream outlives several periods and
    // still delivers the next update.
    let mut client = WorkloadApiClient::connect(&unix_address(&world.socket))
        .await
        .unwrap();
    let mut watch = client.watch_x509_context().await.unwrap();
    let first = tokio::time::timeout(LIMIT, watch.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let next = world.domain.svid("/web");
    world.provider.rotate(&world.entry, next.clone()).unwrap();
    let second = tokio::time::timeout(LIMIT, watch.next())
        .await
        .expect("the busy connection is still open")
        .unwrap()
        .unwrap();
    assert_ne!(first.svids[0].svid, second.svids[0].svid);
    assert_eq!(second.svids[0].svid, next);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_pings_and_drops_a_peer_that_stops_answering() {
    let world = World::new("keepalive");
    let _server = serve_with(
        world.provider.clone(),
        &world.socket,
        ServerLimits::default()
            .with_keepalive(Duration::from_millis(200), Duration::from_millis(200)),
    );
    let mut io = tokio::net::UnixStream::connect(&world.socket)
        .await
        .unwrap();
    io.write_all(&raw::open_with("FetchX509Bundles"))
        .await
        .unwrap();
    // Read (never answer) until the connection ends: a PING must have come.
    let mut pinged = false;
    let ended = tokio::time::timeout(LIMIT, async {
        while let Some((kind, flags, _, _)) = raw::read_frame(&mut io).await {
            if kind == 0x6 && flags & 0x1 == 0 {
                pinged = true;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the unresponsive peer was dropped");
    assert!(pinged, "the server sent a keepalive PING");
    let released = tokio::time::timeout(LIMIT, async {
        while _server.server.open_streams() != 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(released.is_ok(), "its stream was released");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_caller_cannot_take_every_stream() {
    let world = World::new("share");
    let _server = serve_with(
        world.provider.clone(),
        &world.socket,
        ServerLimits::default()
            .with_max_streams(100)
            .with_max_streams_per_caller(2),
    );
    let mut client = WorkloadApiClient::connect(&unix_address(&world.socket))
        .await
        .unwrap();
    let _a = client.watch_x509_context().await.unwrap();
    let _b = client.watch_x509_bundles().await.unwrap();
    let err = tokio::time::timeout(LIMIT, client.watch_jwt_bundles())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code(), Some(StatusCode::Unavailable), "{err}");
    assert!(err.to_string().contains("for this caller"), "{err}");
    drop(_a);
    // The share is returned when a stream ends.
    let again = tokio::time::timeout(LIMIT, async {
        loop {
            match client.watch_jwt_bundles().await {
                Ok(s) => return s,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await;
    assert!(again.is_ok(), "a stream is allowed again after one ended");
}
