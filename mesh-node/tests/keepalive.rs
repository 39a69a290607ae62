//! The agent notices a silent partition from the server: a link that drops
//! packets without a reset (here a TCP relay that stops relaying and keeps
//! both sockets open) ends the sync stream through HTTP/2 keepalive, the
//! agent reports itself degraded while serving its cache, and it resyncs
//! once the path carries packets again.

use std::net::SocketAddr;
use std::time::Duration;

use mesh_node::admin_api::{TokenSpec, TokenView};
use mesh_node::agent::AgentHealth;
use mesh_node::config::{AgentConfig, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Copies `from` to `to` while `open` is true; while it is false, reads
/// nothing and writes nothing, holding both sockets (a black hole).
async fn relay(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut open: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if open.wait_for(|o| *o).await.is_err() {
            return;
        }
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            // Closed while waiting for bytes: stop reading at once.
            _ = open.wait_for(|o| !*o) => continue,
        };
        // Bytes read just before the path closed are held until it opens.
        if open.wait_for(|o| *o).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A TCP relay to `target`; the sender opens and closes the path.
async fn black_hole_relay(target: SocketAddr) -> (SocketAddr, watch::Sender<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (open, _) = watch::channel(true);
    let gate = open.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(target).await else {
                continue;
            };
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::spawn(relay(cr, sw, gate.subscribe()));
            tokio::spawn(relay(sr, cw, gate.subscribe()));
        }
    });
    (addr, open)
}

async fn wait_health(
    health: &mut watch::Receiver<AgentHealth>,
    what: &str,
    ok: impl Fn(&AgentHealth) -> bool,
) {
    tokio::time::timeout(Duration::from_secs(60), health.wait_for(|h| ok(h)))
        .await
        .unwrap_or_else(|_| panic!("the agent did not become {what} within 60 s"))
        .expect("the agent is running");
}

/// `GET /metrics` over HTTP/1.0.
async fn get_metrics(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// The value of the sample line starting with `name `.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_partition_ends_the_sync_stream_and_the_agent_resyncs() {
    let _limit = test_support::time_limit(120);
    let tmp = tempfile::tempdir().unwrap();
    let mut server_config = ServerConfig::default();
    server_config.trust_domain = "example.org".into();
    server_config.data_dir = tmp.path().join("server");
    server_config.node_api_listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let (server, server_task) = mesh_node::server::build(server_config).await.unwrap();
    tokio::spawn(server_task);
    let token: TokenView = serde_json::from_slice(
        &mesh_node::cli::admin_call(
            &server.admin_socket,
            http::Method::POST,
            "/v1/tokens",
            Some(
                serde_json::to_vec(&TokenSpec {
                    ttl: 600,
                    spiffe_id: None,
                })
                .unwrap(),
            ),
        )
        .await
        .unwrap(),
    )
    .unwrap();
    let bundle = tmp.path().join("bundle.json");
    std::fs::write(&bundle, server.bundle().to_json()).unwrap();

    let (relay_addr, path) = black_hole_relay(server.node_api_addr).await;
    let mut config = AgentConfig::default();
    config.trust_domain = "example.org".into();
    config.server_address = relay_addr.to_string();
    config.trust_bundle_path = Some(bundle);
    config.join_token = Some(token.token);
    config.data_dir = tmp.path().join("agent");
    config.workload_socket = tmp.path().join("agent/workload.sock");
    config.retry_initial = Duration::from_millis(200);
    config.sync_keepalive = Duration::from_secs(1);
    config.sync_keepalive_timeout = Duration::from_secs(1);
    config.health_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    let (agent, agent_task) = mesh_node::agent::build(config).await.unwrap();
    let agent_task = tokio::spawn(agent_task);
    let mut health = agent.health();
    wait_health(&mut health, "synced", |h| *h == AgentHealth::Synced).await;
    // The sync lag is measured from the server's send time.
    let metrics = get_metrics(agent.health_addr.expect("health listener")).await;
    let count = metric(&metrics, "mesh_node_agent_sync_lag_seconds_count");
    assert!(count >= 1.0, "{metrics}");
    assert!(metric(&metrics, "mesh_node_agent_last_sync_timestamp_seconds") > 1.7e9);

    // Packets stop, nothing is reset: only keepalive can tell.
    path.send_replace(false);
    wait_health(&mut health, "degraded", |h| {
        matches!(h, AgentHealth::Degraded { .. })
    })
    .await;
    let AgentHealth::Degraded { reason } = health.borrow().clone() else {
        unreachable!("waited for Degraded")
    };
    eprintln!("degraded: {reason}");

    path.send_replace(true);
    wait_health(&mut health, "synced again", |h| *h == AgentHealth::Synced).await;
    agent.shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(10), agent_task).await;
}
