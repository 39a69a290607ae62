//! x509pop attestation and the insecure bootstrap, with real processes: an
//! agent that holds a certificate from the configured CA attests without a
//! token and without a trust bundle, and after an eviction attests again by
//! itself, under the same node ID.

mod common;

use std::process::{Command, Stdio};

use common::*;
use test_support::{LeafSpec, TestCa};

#[test]
fn an_agent_attests_with_x509pop_and_again_after_eviction() {
    let tmp = tempfile::tempdir().unwrap();
    let nodes_ca = TestCa::new("nodes.example");
    let ca_pem = tmp.path().join("nodes-ca.pem");
    std::fs::write(
        &ca_pem,
        test_support::pem("CERTIFICATE", &nodes_ca.root_cert()),
    )
    .unwrap();
    let leaf = nodes_ca.leaf_with(LeafSpec::new("spiffe://nodes.example/host-1"));
    let (cert, key) = (tmp.path().join("node.pem"), tmp.path().join("node.key"));
    std::fs::write(&cert, leaf.chain_pem()).unwrap();
    std::fs::write(&key, leaf.key_pem()).unwrap();

    let port = free_port();
    let server = start_server_with(
        &tmp.path().join("server"),
        port,
        &format!(
            "x509pop_ca_bundle_path = {:?}\n",
            ca_pem.display().to_string()
        ),
    );

    let agent_dir = tmp.path().join("agent");
    std::fs::create_dir_all(&agent_dir).unwrap();
    let socket = agent_dir.join("workload.sock");
    let config = agent_dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "server_address = \"127.0.0.1:{port}\"\ndata_dir = {:?}\nworkload_socket = {:?}\n\
             x509pop_cert_path = {:?}\nx509pop_key_path = {:?}\ninsecure_bootstrap = true\n",
            agent_dir.display().to_string(),
            socket.display().to_string(),
            cert.display().to_string(),
            key.display().to_string(),
        ),
    )
    .unwrap();
    let out = tmp.path().join("agent.log");
    let log = std::fs::File::create(&out).unwrap();
    let _agent = Proc {
        child: Command::new(BIN)
            .args(["agent", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
        name: "agent",
    };
    wait_until("x509pop attestation", 30, || agents(&server).len() == 1);
    let node = agents(&server)[0].clone();
    assert!(
        node.starts_with("spiffe://example.org/node/x509pop/"),
        "{node}"
    );
    let logged = std::fs::read_to_string(&out).unwrap();
    assert!(
        logged.contains("INSECURE BOOTSTRAP"),
        "the bootstrap is logged loudly: {logged}"
    );
    // The bundle the server returned is what the agent trusts from now on.
    assert!(agent_dir.join("bundle.json").exists());

    cli_ok(&server.dir, &["agent", "evict", "--id", &node]);
    // The agent notices on its sync stream and attests again by itself.
    wait_until("re-attestation after eviction", 30, || {
        agents(&server) == vec![node.clone()]
    });
    let logged = std::fs::read_to_string(&out).unwrap();
    assert!(logged.contains("re-attested after eviction"), "{logged}");
}

#[test]
fn an_agent_without_trust_and_without_insecure_bootstrap_refuses_to_start() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["agent", "--agent-data-dir"])
        .arg(tmp.path().join("a"))
        .args([
            "--server-address",
            "127.0.0.1:1",
            "--join-token",
            "x",
            "--workload-socket",
        ])
        .arg(tmp.path().join("s.sock"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("trust_bundle_path") && err.contains("insecure_bootstrap"),
        "{err}"
    );
}
