//! A server that hangs: the source reports itself unhealthy instead of
//! staying Ready on stale material. Real sockets, real time, time limits.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{World, serve, unix_address};
use spiffe_core::SvidSource;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use workload_api::{Backoff, ClientOptions, SourceHealth, SourceOptions, X509Source};

const LIMIT: Duration = Duration::from_secs(10);

fn quick() -> SourceOptions {
    SourceOptions::default()
        .with_backoff(Backoff {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(200),
        })
        .with_client(
            ClientOptions::default()
                .with_rpc_timeout(Duration::from_millis(300))
                .with_keepalive(Duration::from_millis(200), Duration::from_millis(300)),
        )
}

#[tokio::test]
async fn a_server_that_accepts_but_never_answers_is_not_ready() {
    let world = World::new("mute");
    let listener = UnixListener::bind(&world.socket).unwrap();
    // Accept and hold every connection, never reading or writing.
    let _mute = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((io, _)) = listener.accept().await {
            held.push(io);
        }
    });
    let (source, task) = X509Source::with_options(unix_address(&world.socket), quick());
    let _task = tokio::spawn(task);
    let mut health = source.watch_health();
    let failed = tokio::time::timeout(
        LIMIT,
        health.wait_for(|h| matches!(h, SourceHealth::Reconnecting { failures } if *failures >= 2)),
    )
    .await;
    assert!(
        failed.is_ok(),
        "deadlines end each attempt: {:?}",
        source.health()
    );
    assert!(source.x509_svid().is_none());
}

/// Forwards between clients and `upstream` until frozen; then holds every
/// connection (old and new) open without forwarding a byte.
fn relay(listener: UnixListener, upstream: std::path::PathBuf, frozen: Arc<AtomicBool>) {
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = UnixStream::connect(&upstream).await else {
                continue;
            };
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::spawn(pump(cr, sw, Arc::clone(&frozen)));
            tokio::spawn(pump(sr, cw, Arc::clone(&frozen)));
        }
    });
}

async fn pump(
    mut from: impl AsyncReadExt + Unpin,
    mut to: impl AsyncWriteExt + Unpin,
    frozen: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let Ok(n) = from.read(&mut buf).await else {
            return;
        };
        if frozen.load(Ordering::SeqCst) {
            // Keep both sockets open, forward nothing.
            let _hold = (from, to);
            std::future::pending::<()>().await;
            return;
        }
        if n == 0 || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn a_server_that_freezes_after_ready_makes_the_source_unhealthy() {
    let world = World::new("freeze");
    let _server = serve(world.provider.clone(), &world.socket);
    let relay_socket = world.dir.0.join("relay.sock");
    let frozen = Arc::new(AtomicBool::new(false));
    relay(
        UnixListener::bind(&relay_socket).unwrap(),
        world.socket.clone(),
        Arc::clone(&frozen),
    );
    let (source, task) = X509Source::with_options(unix_address(&relay_socket), quick());
    let _task = tokio::spawn(task);
    let mut health = source.watch_health();
    tokio::time::timeout(LIMIT, health.wait_for(|h| *h == SourceHealth::Ready))
        .await
        .expect("ready through the relay")
        .unwrap();
    let svid = source.x509_svid().unwrap();
    // Stays ready while the server answers keepalive pings.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(source.health(), SourceHealth::Ready);

    frozen.store(true, Ordering::SeqCst);
    let left = tokio::time::timeout(
        LIMIT,
        health.wait_for(|h| matches!(h, SourceHealth::Reconnecting { .. })),
    )
    .await
    .is_ok();
    assert!(
        left,
        "keepalive noticed the frozen server: {:?}",
        source.health()
    );
    // The last good (still valid) SVID is kept while the source retries.
    assert_eq!(source.x509_svid().unwrap(), svid);
    let more = tokio::time::timeout(
        LIMIT,
        health.wait_for(|h| matches!(h, SourceHealth::Reconnecting { failures } if *failures >= 3)),
    )
    .await
    .is_ok();
    assert!(more, "reconnects to the frozen server fail too");
}
