//! `mesh-node up`: one process, the admin CLI against it, a workload
//! identity through the Workload API (read with the `spiffe` crate), a
//! sidecar fed by the embedded agent, SIGTERM, and a restart that keeps
//! the state.

mod common;

use std::time::Duration;

use common::{
    cli_ok, free_port, py_spiffe_fetch, py_spiffe_list, sigterm, start_up, summary_field,
};
use spiffe::WorkloadApiClient;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_serves_identities_and_a_sidecar_and_keeps_state_across_restarts() {
    let _limit = test_support::time_limit(120);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let config = tmp.path().join("up.toml");
    let (node_api, inbound, admin) = (free_port(), free_port(), free_port());
    std::fs::write(
        &config,
        format!(
            r#"
[server]
node_api_listen = "127.0.0.1:{node_api}"

[[sidecar]]
workload = {{ namespace = "default", service = "api" }}
inbound = {{ listen = "127.0.0.1:{inbound}", app = "127.0.0.1:9" }}
outbound = {{ listen = "127.0.0.1:0" }}
admin = {{ listen = "127.0.0.1:{admin}", access_log = false }}
"#
        ),
    )
    .unwrap();
    let (mut up, lines) = start_up(&dir, &config);
    let node_id = summary_field(&lines, "node ID").to_owned();
    let socket = summary_field(&lines, "export SPIFFE_ENDPOINT_SOCKET=").to_owned();
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("inbound 127.0.0.1:{inbound}"))),
        "{lines:?}"
    );

    // `--parent-id` may be omitted: the embedded agent is the parent.
    let uid = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap();
    let created = cli_ok(
        &dir,
        &[
            "entry",
            "create",
            "--spiffe-id",
            "spiffe://example.org/api",
            "--selector",
            &format!("unix:uid:{uid}"),
            "--output",
            "json",
        ],
    );
    assert!(
        created.contains(&node_id),
        "parent is not the embedded agent: {created}"
    );

    // A workload gets that identity from the Workload API, read by the
    // spiffe crate (code we did not write).
    let client = WorkloadApiClient::connect_to(socket.clone()).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..100 {
        if let Ok(Ok(ctx)) =
            tokio::time::timeout(Duration::from_secs(5), client.fetch_x509_context()).await
        {
            ids = ctx
                .svids()
                .iter()
                .map(|s| s.spiffe_id().to_string())
                .collect();
            if !ids.is_empty() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ids, ["spiffe://example.org/api"]);
    // And with py-spiffe (grpcio: gRPC C-core, another HTTP/2 stack).
    match py_spiffe_ids(&socket) {
        Ok(py) => assert_eq!(py, ["spiffe://example.org/api"], "py-spiffe"),
        Err(reason) => test_support::skip("up (py-spiffe part)", &reason),
    }

    // The sidecar took the same identity through the agent and is ready.
    let certs = get(admin, "/certs", "spiffe://example.org/api").await;
    let ready = get(admin, "/healthz/ready", "LIVE").await;
    assert!(certs.contains("spiffe://example.org/api"), "{certs}");
    assert_eq!(ready.trim(), "LIVE");

    let bundle = cli_ok(&dir, &["bundle", "show"]);
    assert!(sigterm(&mut up).success(), "up did not exit 0 on SIGTERM");

    // Restart: same CA, same entry, same node.
    let (mut again, lines) = start_up(&dir, &config);
    assert_eq!(
        summary_field(&lines, "node ID"),
        node_id,
        "the node changed identity"
    );
    assert_eq!(cli_ok(&dir, &["bundle", "show"]), bundle, "the CA changed");
    let entries = cli_ok(&dir, &["entry", "list", "--output", "json"]);
    assert!(entries.contains("spiffe://example.org/api"), "{entries}");
    assert!(sigterm(&mut again).success());
}

/// `GET path` over HTTP/1.0 on loopback; retried for up to 10 s until
/// the answer is a 200 whose body contains `want`; the last answer.
/// The SPIFFE IDs py-spiffe gets from `socket` (`unix:///...`), in the
/// virtualenv the netns test also uses.
fn py_spiffe_ids(socket: &str) -> Result<Vec<String>, String> {
    py_spiffe_list(&py_spiffe_fetch(socket)?, "spiffe_ids")
}

async fn get(port: u16, path: &str, want: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut last = String::new();
    for _ in 0..100 {
        if let Ok(mut tcp) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            let req = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
            let mut out = String::new();
            if tcp.write_all(req.as_bytes()).await.is_ok()
                && tcp.read_to_string(&mut out).await.is_ok()
            {
                if let Some((head, body)) = out.split_once("\r\n\r\n")
                    && (head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"))
                    && body.contains(want)
                {
                    return body.to_owned();
                }
                last = out;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}
