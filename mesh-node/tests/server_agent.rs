//! `mesh-node server` and `mesh-node agent` as real processes on loopback:
//! entries made with the CLI reach workloads through the agent's Workload
//! API (read with the `spiffe` crate's client), changes are pushed, the
//! agent keeps serving while the server is down, restarts with its
//! persisted node SVID, and an evicted agent is refused until it attests
//! again with a fresh token.

mod common;

use std::time::Duration;

use common::*;
use spiffe::WorkloadApiClient;

async fn client(socket: &std::path::Path) -> WorkloadApiClient {
    WorkloadApiClient::connect_to(format!("unix://{}", socket.display()))
        .await
        .unwrap()
}

async fn svid_ids(socket: &std::path::Path) -> Result<Vec<String>, String> {
    let c = client(socket).await;
    match tokio::time::timeout(Duration::from_secs(5), c.fetch_x509_context()).await {
        Ok(Ok(ctx)) => Ok(ctx
            .svids()
            .iter()
            .map(|s| s.spiffe_id().to_string())
            .collect()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

async fn wait_for_ids(socket: &std::path::Path, want: &[&str], secs: u64) -> Vec<String> {
    let end = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let got = svid_ids(socket).await;
        if let Ok(ids) = &got {
            let mut ids = ids.clone();
            ids.sort();
            let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
            want.sort();
            if ids == want {
                return ids;
            }
        }
        assert!(
            std::time::Instant::now() < end,
            "workload never saw {want:?}; last answer {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_reach_workloads_and_survive_outages_restarts_and_eviction() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = start_server(&tmp.path().join("server"), port);
    let bundle = tmp.path().join("bundle.pem");
    std::fs::write(
        &bundle,
        cli_ok(&server.dir, &["bundle", "show", "--format", "pem"]),
    )
    .unwrap();
    assert!(
        std::fs::read_to_string(&bundle)
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );

    let token1 = token(&server);
    let agent_dir = tmp.path().join("agent");
    let mut agent = start_agent(&agent_dir, port, &bundle, Some(&token1));
    let nodes = agents(&server);
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    let node = nodes[0].clone();
    assert!(
        node.starts_with("spiffe://example.org/node/join_token/"),
        "{node}"
    );

    // No entry yet: the workload has no identity.
    let err = svid_ids(&agent.socket).await.unwrap_err();
    assert!(
        err.to_lowercase().contains("permission")
            || err.contains("denied")
            || err.contains("no identity"),
        "{err}"
    );

    // An entry made with the CLI reaches the workload within a second or two.
    let uid = format!("unix:uid:{}", my_uid());
    let created = cli_ok(
        &server.dir,
        &[
            "entry",
            "create",
            "--spiffe-id",
            "spiffe://example.org/web",
            "--parent-id",
            &node,
            "--selector",
            &uid,
            "--output",
            "json",
        ],
    );
    let created: Vec<serde_json::Value> = serde_json::from_str(&created).unwrap();
    let web_id = created[0]["id"].as_str().unwrap().to_owned();
    let start = std::time::Instant::now();
    wait_for_ids(&agent.socket, &["spiffe://example.org/web"], 10).await;
    eprintln!("entry to SVID at the workload: {:?}", start.elapsed());

    // A second entry for another uid is not this workload's.
    cli_ok(
        &server.dir,
        &[
            "entry",
            "create",
            "--spiffe-id",
            "spiffe://example.org/other",
            "--parent-id",
            &node,
            "--selector",
            "unix:uid:4242",
        ],
    );
    // And an open stream sees an entry change pushed.
    let c = client(&agent.socket).await;
    let mut stream = c.stream_x509_contexts().await.unwrap();
    use futures_util::StreamExt;
    let first = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.svids().len(), 1);
    cli_ok(
        &server.dir,
        &[
            "entry",
            "create",
            "--spiffe-id",
            "spiffe://example.org/api",
            "--parent-id",
            &node,
            "--selector",
            &uid,
        ],
    );
    let pushed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let ctx = stream.next().await.unwrap().unwrap();
            if ctx.svids().len() == 2 {
                return ctx;
            }
        }
    })
    .await
    .expect("the new entry reaches the open stream");
    let mut ids: Vec<String> = pushed
        .svids()
        .iter()
        .map(|s| s.spiffe_id().to_string())
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        ["spiffe://example.org/api", "spiffe://example.org/web"]
    );
    drop(stream);

    // Deleting an entry withdraws its SVID.
    cli_ok(&server.dir, &["entry", "delete", "--id", &web_id]);
    wait_for_ids(&agent.socket, &["spiffe://example.org/api"], 10).await;

    // Server down: the agent keeps serving its cache.
    server.proc.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    wait_for_ids(&agent.socket, &["spiffe://example.org/api"], 5).await;

    // Agent restarted while the server is down: it comes back from its
    // persisted node SVID (the token is used up) once the server returns.
    agent.proc.kill();
    std::fs::remove_file(agent_dir.join("join-token")).unwrap();
    let mut server = start_server(&tmp.path().join("server"), port);
    let agent2 = start_agent(&agent_dir, port, &bundle, None);
    wait_for_ids(&agent2.socket, &["spiffe://example.org/api"], 15).await;
    assert_eq!(agents(&server), vec![node.clone()], "no second attestation");

    // Eviction: the agent is refused; a fresh token in its data directory
    // lets it attest again without a restart.
    cli_ok(&server.dir, &["agent", "evict", "--id", &node]);
    assert!(agents(&server).is_empty());
    let token2 = token(&server);
    std::fs::write(agent_dir.join("join-token"), &token2).unwrap();
    wait_until("re-attestation", 30, || agents(&server).len() == 1);
    let node2 = agents(&server)[0].clone();
    assert_ne!(node2, node);
    // The entries were parented by the old node: the workload loses them.
    wait_until("the old node's entries to be withdrawn", 15, || {
        let rt = tokio::runtime::Handle::current();
        let s = agent2.socket.clone();
        std::thread::spawn(move || rt.block_on(svid_ids(&s)))
            .join()
            .unwrap()
            .is_err()
    });
    server.proc.kill();
}

#[test]
fn a_used_or_unknown_join_token_is_refused_and_leaves_no_node() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = start_server(&tmp.path().join("server"), port);
    let bundle = tmp.path().join("bundle.pem");
    std::fs::write(&bundle, cli_ok(&server.dir, &["bundle", "show"])).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["agent", "--agent-data-dir"])
        .arg(tmp.path().join("a"))
        .args([
            "--server-address",
            &format!("127.0.0.1:{port}"),
            "--trust-bundle",
        ])
        .arg(&bundle)
        .args(["--join-token", "not-a-token", "--workload-socket"])
        .arg(tmp.path().join("a.sock"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown or already used join token"), "{err}");
    assert!(agents(&server).is_empty());
    assert!(
        !tmp.path().join("a/node-svid.pem").exists(),
        "no partial state"
    );
}

#[test]
fn the_cli_refuses_bad_input_with_one_line_and_a_non_zero_exit() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start_server(&tmp.path().join("server"), free_port());
    for (args, expect) in [
        (
            vec![
                "entry",
                "create",
                "--spiffe-id",
                "spiffe://example.org/w",
                "--parent-id",
                "spiffe://example.org/n",
                "--selector",
                "no-colon",
            ],
            "selector",
        ),
        (
            vec![
                "entry",
                "create",
                "--spiffe-id",
                "http://example.org/w",
                "--parent-id",
                "spiffe://example.org/n",
                "--selector",
                "unix:uid:1",
            ],
            "spiffe_id",
        ),
        (
            vec![
                "entry",
                "create",
                "--spiffe-id",
                "spiffe://other.org/w",
                "--parent-id",
                "spiffe://example.org/n",
                "--selector",
                "unix:uid:1",
            ],
            "trust domain",
        ),
        (vec!["entry", "show", "--id", "nope"], "no entry"),
        (
            vec!["agent", "evict", "--id", "spiffe://example.org/node/x"],
            "no attested node",
        ),
    ] {
        let out = cli(&server.dir, &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: {err}");
    }
    let out = cli(&tmp.path().join("nowhere"), &["entry", "list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot reach the server's admin socket")
    );
}

#[test]
fn a_corrupt_config_names_the_file_line_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("server.toml");
    std::fs::write(
        &config,
        "trust_domain = \"example.org\"\n[ca]\nca_ttl = \"forever\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["server", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(tmp.path().join("d"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server.toml: line 3"), "{err}");
    assert!(err.contains("forever"), "{err}");
}

#[test]
fn a_read_only_data_directory_is_a_clear_error() {
    if my_uid() == 0 {
        // root writes anywhere; use a path under a file instead.
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("file"), b"").unwrap();
        let out = std::process::Command::new(BIN)
            .args(["server", "--data-dir"])
            .arg(tmp.path().join("file/sub"))
            .args(["--node-api-listen", "127.0.0.1:0"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("file/sub") && err.contains("cannot create"),
            "{err}"
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("ro");
    std::fs::create_dir(&d).unwrap();
    std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o500)).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["server", "--data-dir"])
        .arg(&d)
        .args(["--node-api-listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not writable"));
}

/// SPIRE's `token generate -spiffeID`: the node that attests with the
/// token is also known by the given ID, so entries can name that stable ID
/// as their parent instead of the token-derived one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_with_a_spiffe_id_gives_its_node_that_alias() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = start_server(&tmp.path().join("server"), port);
    let bundle = tmp.path().join("bundle.pem");
    std::fs::write(&bundle, cli_ok(&server.dir, &["bundle", "show"])).unwrap();

    let out = cli_ok(
        &server.dir,
        &[
            "token",
            "generate",
            "--spiffe-id",
            "spiffe://example.org/host/rack-7",
            "--output",
            "json",
        ],
    );
    let view: serde_json::Value = serde_json::from_str(&out).unwrap();
    let token = view["token"].as_str().unwrap().to_owned();
    let alias = &view["alias"];
    assert_eq!(
        alias["spiffe_id"], "spiffe://example.org/host/rack-7",
        "{view}"
    );
    let selector = alias["selectors"][0].as_str().unwrap();
    assert!(selector.starts_with("join_token:"), "{selector}");

    // An entry under the alias, made before the node exists.
    let uid = format!("unix:uid:{}", my_uid());
    cli_ok(
        &server.dir,
        &[
            "entry",
            "create",
            "--spiffe-id",
            "spiffe://example.org/api",
            "--parent-id",
            "spiffe://example.org/host/rack-7",
            "--selector",
            &uid,
        ],
    );
    let agent_dir = tmp.path().join("agent");
    let agent = start_agent(&agent_dir, port, &bundle, Some(&token));
    // The node's own ID is token-derived; the alias makes the entry its own.
    let nodes = agents(&server);
    assert!(
        nodes[0].starts_with("spiffe://example.org/node/join_token/")
            && nodes[0].ends_with(selector.trim_start_matches("join_token:")),
        "{nodes:?}"
    );
    wait_for_ids(&agent.socket, &["spiffe://example.org/api"], 10).await;

    // A bad ID is refused with one line and exit 1.
    let out = cli(
        &server.dir,
        &["token", "generate", "--spiffe-id", "http://x"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("spiffe_id") && err.trim().lines().count() == 1,
        "{err}"
    );
}

/// The admin API over mTLS (`admin_listen`): a workload whose entry is
/// marked `admin` runs admin commands with its X509-SVID from the Workload
/// API (`--admin-addr`); any other identity is refused at the handshake
/// and told why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_over_mtls_admits_only_admin_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let admin_port = free_port();
    let server = start_server_with(
        &tmp.path().join("server"),
        port,
        &format!("admin_listen = \"127.0.0.1:{admin_port}\""),
    );
    let bundle = tmp.path().join("bundle.pem");
    std::fs::write(&bundle, cli_ok(&server.dir, &["bundle", "show"])).unwrap();
    let agent = start_agent(
        &tmp.path().join("agent"),
        port,
        &bundle,
        Some(&token(&server)),
    );
    let node = agents(&server)[0].clone();
    let uid = format!("unix:uid:{}", my_uid());
    let created = cli_ok(
        &server.dir,
        &[
            "entry",
            "create",
            "--spiffe-id",
            "spiffe://example.org/ops",
            "--parent-id",
            &node,
            "--selector",
            &uid,
            "--output",
            "json",
        ],
    );
    let created: Vec<serde_json::Value> = serde_json::from_str(&created).unwrap();
    let ops_entry = created[0]["id"].as_str().unwrap().to_owned();
    wait_for_ids(&agent.socket, &["spiffe://example.org/ops"], 10).await;

    let over_mtls = |args: &[&str]| {
        std::process::Command::new(BIN)
            .args(args)
            .args(["--admin-addr", &format!("127.0.0.1:{admin_port}")])
            .env(
                "SPIFFE_ENDPOINT_SOCKET",
                format!("unix://{}", agent.socket.display()),
            )
            .output()
            .unwrap()
    };
    // curl (another TLS stack) with the same SVID, taken by the `spiffe`
    // crate: refused while the entry is not marked admin. `-k`: curl cannot
    // check a SPIFFE ID; only our server's admission of the client is
    // under test here.
    let curl = test_support::find_binary("curl");
    let curl_get = |curl: &std::path::Path, certs: &(std::path::PathBuf, std::path::PathBuf)| {
        std::process::Command::new(curl)
            .args(["-sS", "-k", "--max-time", "10", "--cert"])
            .arg(&certs.0)
            .arg("--key")
            .arg(&certs.1)
            .arg(format!("https://127.0.0.1:{admin_port}/v1/entries"))
            .output()
            .unwrap()
    };
    let svid = client(&agent.socket).await.fetch_x509_svid().await.unwrap();
    let certs = (tmp.path().join("ops.pem"), tmp.path().join("ops.key"));
    let chain: String = svid
        .cert_chain()
        .iter()
        .map(|c| test_support::pem("CERTIFICATE", c.as_bytes()))
        .collect();
    std::fs::write(&certs.0, chain).unwrap();
    std::fs::write(
        &certs.1,
        test_support::pem("PRIVATE KEY", svid.private_key().as_bytes()),
    )
    .unwrap();
    match &curl {
        Some(curl) => {
            let out = curl_get(curl, &certs);
            assert!(!out.status.success(), "curl was admitted: {out:?}");
        }
        None => test_support::skip("admin API over mTLS with curl", "the curl binary"),
    }

    // Not marked admin: refused at the handshake, and the CLI says why.
    let out = over_mtls(&["entry", "list"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("refused this client (spiffe://example.org/ops)")
            && err.contains("its authorizer does not admit"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // Marked admin: the same identity runs admin commands.
    cli_ok(
        &server.dir,
        &["entry", "update", "--id", &ops_entry, "--admin"],
    );
    let out = over_mtls(&["entry", "list", "--output", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.contains("spiffe://example.org/ops"), "{listed}");
    let out = over_mtls(&["token", "generate", "--output", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if let Some(curl) = &curl {
        let out = curl_get(curl, &certs);
        let body = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "curl: {out:?}");
        assert!(body.contains("spiffe://example.org/ops"), "{body}");
    }

    // Without a Workload API the CLI says so.
    let out = std::process::Command::new(BIN)
        .args([
            "entry",
            "list",
            "--admin-addr",
            &format!("127.0.0.1:{admin_port}"),
        ])
        .env_remove("SPIFFE_ENDPOINT_SOCKET")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("SPIFFE_ENDPOINT_SOCKET is not set"), "{err}");
}
