//! Several hosts, for real: `mesh-node server` in one network namespace
//! and two `mesh-node agent`s in two others, each with its own address
//! (see `common/netns.rs` for the topology). Entries are made with the CLI
//! and read through each agent's Workload API socket by the `spiffe`
//! crate's client (as root) and by py-spiffe (as uid 1000), so each caller
//! sees its own identity; changes reach open streams; cutting the server's
//! link leaves both agents serving, and they resync when it returns, an
//! agent restarted meanwhile included; an evicted agent is refused, then
//! attests again from a fresh token.
//!
//! Needs root and iproute2. Where network namespaces cannot be made the
//! test prints `SKIPPED:` (and fails under `CI=true`).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::netns::{SERVER_IP, Topology};
use common::*;
use futures_util::StreamExt;
use spiffe::WorkloadApiClient;

/// The uid of the second workload on each host.
const OTHER_UID: u32 = 1000;
const TD: &str = "example.org";

async fn client(socket: &Path) -> WorkloadApiClient {
    WorkloadApiClient::connect_to(format!("unix://{}", socket.display()))
        .await
        .unwrap()
}

/// The sorted SPIFFE IDs this process (uid 0) gets from `socket`, or the
/// error.
async fn svid_ids(socket: &Path) -> Result<Vec<String>, String> {
    let c = client(socket).await;
    match tokio::time::timeout(Duration::from_secs(5), c.fetch_x509_context()).await {
        Ok(Ok(ctx)) => {
            let mut ids: Vec<String> = ctx
                .svids()
                .iter()
                .map(|s| s.spiffe_id().to_string())
                .collect();
            ids.sort();
            Ok(ids)
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

/// Waits until `socket` serves exactly `want` to this process; returns how
/// long that took.
async fn wait_for_ids(socket: &Path, want: &[&str], secs: u64) -> Duration {
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    loop {
        let got = svid_ids(socket).await;
        if got.as_deref().is_ok_and(|ids| ids == want) {
            return start.elapsed();
        }
        assert!(
            Instant::now() < end,
            "{} never served {want:?} within {secs} s; last answer {got:?}",
            socket.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `socket` refuses this process; returns how long that took.
async fn wait_for_refusal(socket: &Path, secs: u64) -> (Duration, String) {
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    loop {
        let got = svid_ids(socket).await;
        if let Err(e) = &got
            && e != "timed out"
        {
            return (start.elapsed(), e.clone());
        }
        assert!(
            Instant::now() < end,
            "{} still served within {secs} s: {got:?}",
            socket.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Creates an entry and returns its id.
fn create_entry(server: &Server, spiffe_id: &str, parent: &str, uid: u32) -> String {
    let out = cli_ok(
        &server.dir,
        &[
            "entry",
            "create",
            "--spiffe-id",
            spiffe_id,
            "--parent-id",
            parent,
            "--selector",
            &format!("unix:uid:{uid}"),
            "--output",
            "json",
        ],
    );
    let v: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    v[0]["id"].as_str().unwrap().to_owned()
}

/// py-spiffe in a virtualenv any uid can run (made from the system's
/// python, whose files are not under root's home).
struct PySpiffe {
    python: PathBuf,
    script: PathBuf,
}

impl PySpiffe {
    fn prepare() -> Result<PySpiffe, String> {
        let base = Some(PathBuf::from("/usr/bin/python3"))
            .filter(|p| p.exists())
            .or_else(|| test_support::find_binary("python3"))
            .ok_or("python3")?;
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("py-spiffe-venv-any-uid");
        let python = test_support::py_spiffe_venv(&dir, &base, Duration::from_secs(600))?;
        let py = PySpiffe {
            python,
            script: Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/netns_py_spiffe.py"),
        };
        // The venv must work for the other uid too.
        let out = test_support::run_bounded(
            py.command(OTHER_UID).args(["-c", "import spiffe"]),
            Duration::from_secs(60),
        )?;
        if !out.status.success() {
            return Err(format!(
                "{} importing spiffe as uid {OTHER_UID}: {}",
                py.python.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(py)
    }

    fn command(&self, uid: u32) -> std::process::Command {
        use std::os::unix::process::CommandExt;
        let mut cmd = std::process::Command::new(&self.python);
        // Rust's `uid` also clears the supplementary groups when root
        // drops privileges.
        cmd.uid(uid).gid(uid).current_dir("/").env("HOME", "/tmp");
        cmd
    }

    /// What py-spiffe, run as `uid`, gets from `socket`.
    fn fetch(&self, socket: &Path, uid: u32) -> serde_json::Value {
        let out = test_support::run_bounded(
            self.command(uid).arg(&self.script).arg(socket).arg(TD),
            Duration::from_secs(30),
        )
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "py-spiffe as uid {uid}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value =
            serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{stdout}: {e}"));
        assert_eq!(v["uid"], uid, "{v}");
        v
    }
}

fn ids(v: &serde_json::Value) -> Vec<&str> {
    v["spiffe_ids"]
        .as_array()
        .unwrap_or_else(|| panic!("no SVIDs in {v}"))
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect()
}

/// A directory others can traverse, for the workload sockets.
fn open_dir(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_and_two_agents_on_three_hosts() {
    let test_start = Instant::now();
    // Declared first, dropped last: the processes below die before their
    // namespaces are deleted.
    let topo = match Topology::create() {
        Ok(t) => t,
        Err(reason) => {
            return test_support::skip(
                "netns",
                &format!("network namespaces (root and iproute2): {reason}"),
            );
        }
    };
    let py = match tokio::task::spawn_blocking(PySpiffe::prepare)
        .await
        .unwrap()
    {
        Ok(py) => Some(py),
        Err(reason) => {
            test_support::skip("netns py-spiffe", &reason);
            None
        }
    };
    let setup_done = Instant::now();

    let tmp = tempfile::tempdir().unwrap();
    open_dir(tmp.path());
    let sockets = tmp.path().join("sockets");
    open_dir(&sockets);
    let address = format!("{SERVER_IP}:8081");
    let server = start_server_in(&tmp.path().join("server"), &address, Some(&topo.server), "");
    let bundle = tmp.path().join("bundle.pem");
    std::fs::write(
        &bundle,
        cli_ok(&server.dir, &["bundle", "show", "--format", "pem"]),
    )
    .unwrap();

    // Two hosts attest, each from its own address.
    let mut hosts = Vec::new();
    let mut nodes: Vec<String> = Vec::new();
    for (ns, addr) in &topo.agents {
        let dir = tmp.path().join(ns);
        let socket = sockets.join(format!("{ns}.sock"));
        let t = token(&server);
        let agent = start_agent_with(&AgentSpec {
            dir: &dir,
            server_address: &address,
            bundle: &bundle,
            token: Some(&t),
            socket: &socket,
            netns: Some(ns),
        });
        let node = agents(&server)
            .into_iter()
            .find(|n| !nodes.contains(n))
            .expect("the agent attested");
        eprintln!("agent in {ns} ({addr}) attested as {node}");
        nodes.push(node);
        hosts.push(agent);
    }
    let [node_a, node_b] = [nodes[0].clone(), nodes[1].clone()];

    // One identity per host and uid.
    let mut entries = Vec::new();
    for (node, host) in [(&node_a, "a"), (&node_b, "b")] {
        for (uid, who) in [(0, "root"), (OTHER_UID, "user")] {
            let id = format!("spiffe://{TD}/{host}-{who}");
            entries.push((create_entry(&server, &id, node, uid), id));
        }
    }
    let a_root_entry = entries[0].0.clone();
    let took = tokio::join!(
        wait_for_ids(&hosts[0].socket, &["spiffe://example.org/a-root"], 10),
        wait_for_ids(&hosts[1].socket, &["spiffe://example.org/b-root"], 10),
    );
    eprintln!("entries to SVIDs at the workloads of both hosts: {took:?}");
    if let Some(py) = &py {
        // The same client as root gets root's identity: the uid decides.
        for (host, name) in [(&hosts[0], "a"), (&hosts[1], "b")] {
            for (uid, who) in [(OTHER_UID, "user"), (0, "root")] {
                let v = py.fetch(&host.socket, uid);
                assert_eq!(ids(&v), [format!("spiffe://{TD}/{name}-{who}")], "{v}");
                assert_eq!(v["trust_domains"], serde_json::json!([TD]), "{v}");
                assert_eq!(v["authorities"], 1, "{v}");
            }
        }
    }

    // Changes reach open streams: a changed entry is signed again, and a
    // new CA key reaches both hosts' bundles.
    let td = spiffe::TrustDomain::new(TD).unwrap();
    let mut streams = Vec::new();
    for host in &hosts {
        let mut s = client(&host.socket)
            .await
            .stream_x509_contexts()
            .await
            .unwrap();
        let first = tokio::time::timeout(Duration::from_secs(5), s.next())
            .await
            .expect("a first context")
            .unwrap()
            .unwrap();
        streams.push((s, first));
    }
    let old_leaf = streams[0].1.svids()[0].cert_chain()[0].as_bytes().to_vec();
    let start = Instant::now();
    cli_ok(
        &server.dir,
        &[
            "entry",
            "update",
            "--id",
            &a_root_entry,
            "--hint",
            "rotated",
        ],
    );
    let rotated = tokio::time::timeout(Duration::from_secs(10), async {
        // Every message has the SVID: the old one until the new one.
        let mut seen = 0;
        loop {
            let ctx = streams[0]
                .0
                .next()
                .await
                .expect("the stream stays open")
                .unwrap_or_else(|e| panic!("the stream failed during rotation: {e}"));
            seen += 1;
            let svid = &ctx.svids()[0];
            assert_eq!(svid.spiffe_id().to_string(), "spiffe://example.org/a-root");
            if svid.hint() == Some("rotated") && svid.cert_chain()[0].as_bytes() != old_leaf {
                return (ctx, seen);
            }
        }
    })
    .await
    .expect("the re-signed SVID reaches the open stream");
    assert_eq!(rotated.0.svids().len(), 1);
    eprintln!(
        "entry update to the new SVID on an open stream: {:?} ({} message(s))",
        start.elapsed(),
        rotated.1
    );
    let start = Instant::now();
    cli_ok(&server.dir, &["ca", "prepare", "--kind", "x509"]);
    for (i, (s, _)) in streams.iter_mut().enumerate() {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let ctx = s.next().await.expect("the stream stays open").unwrap();
                let authorities = ctx
                    .bundle_set()
                    .get(&td)
                    .map_or(0, |b| b.authorities().len());
                if authorities == 2 {
                    return;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the prepared CA key reaches host {i}'s open stream"));
    }
    eprintln!(
        "ca prepare to the new bundle on both hosts' open streams: {:?}",
        start.elapsed()
    );
    drop(streams);

    // The server is cut off: both hosts keep serving what they have.
    topo.server_link(false);
    let cut = Instant::now();
    wait_for_ids(&hosts[0].socket, &["spiffe://example.org/a-root"], 5).await;
    wait_for_ids(&hosts[1].socket, &["spiffe://example.org/b-root"], 5).await;
    if let Some(py) = &py {
        let v = py.fetch(&hosts[1].socket, OTHER_UID);
        assert_eq!(ids(&v), ["spiffe://example.org/b-user"], "{v}");
    }
    // Entries made meanwhile cannot arrive...
    create_entry(&server, "spiffe://example.org/a-new", &node_a, 0);
    create_entry(&server, "spiffe://example.org/b-new", &node_b, 0);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        svid_ids(&hosts[0].socket).await.unwrap(),
        ["spiffe://example.org/a-root"],
        "the link is cut"
    );
    // ...and host b restarts without a join token, from its persisted
    // node SVID.
    let b = hosts.pop().unwrap();
    let (b_dir, b_socket) = (b.dir.clone(), b.socket.clone());
    drop(b);
    std::fs::remove_file(b_dir.join("join-token")).unwrap();
    hosts.push(start_agent_with(&AgentSpec {
        dir: &b_dir,
        server_address: &address,
        bundle: &bundle,
        token: None,
        socket: &b_socket,
        netns: Some(&topo.agents[1].0),
    }));
    eprintln!(
        "restarted host b's agent while cut off; its workload gets {:?}",
        svid_ids(&b_socket).await
    );
    topo.server_link(true);
    eprintln!("link down for {:?}", cut.elapsed());
    let took = tokio::join!(
        wait_for_ids(
            &hosts[0].socket,
            &["spiffe://example.org/a-new", "spiffe://example.org/a-root"],
            30,
        ),
        wait_for_ids(
            &hosts[1].socket,
            &["spiffe://example.org/b-new", "spiffe://example.org/b-root"],
            30,
        ),
    );
    eprintln!(
        "link up to the outage's entries served: host a (stream kept) {:?}, host b (restarted) {:?}",
        took.0, took.1
    );
    let mut now = agents(&server);
    now.sort();
    let mut before = vec![node_a.clone(), node_b.clone()];
    before.sort();
    assert_eq!(now, before, "no new node: host b came back as itself");

    // Eviction: host a's workloads are refused; host b is untouched.
    let start = Instant::now();
    cli_ok(&server.dir, &["agent", "evict", "--id", &node_a]);
    let (took, err) = wait_for_refusal(&hosts[0].socket, 15).await;
    eprintln!("eviction to refusal at host a's workload: {took:?} ({err})");
    assert!(
        err.to_lowercase().contains("permission") || err.contains("no identity"),
        "{err}"
    );
    if let Some(py) = &py {
        let v = py.fetch(&hosts[0].socket, OTHER_UID);
        assert!(v["error"].is_string(), "uid {OTHER_UID} refused too: {v}");
    }
    wait_for_ids(
        &hosts[1].socket,
        &["spiffe://example.org/b-new", "spiffe://example.org/b-root"],
        5,
    )
    .await;

    // A fresh token in its data directory: it attests again, no restart.
    std::fs::write(hosts[0].dir.join("join-token"), token(&server)).unwrap();
    let mut node_a2 = None;
    wait_until("host a's re-attestation", 30, || {
        node_a2 = agents(&server)
            .into_iter()
            .find(|n| *n != node_b && *n != node_a);
        node_a2.is_some()
    });
    let node_a2 = node_a2.unwrap();
    eprintln!(
        "eviction to re-attestation as {node_a2}: {:?}",
        start.elapsed()
    );
    create_entry(&server, "spiffe://example.org/a-again", &node_a2, 0);
    let took = wait_for_ids(&hosts[0].socket, &["spiffe://example.org/a-again"], 10).await;
    eprintln!("entry under the new node to its workload: {took:?}");

    for host in &mut hosts {
        host.proc.kill();
    }
    eprintln!(
        "netns test: {:?} in all, {:?} after setup",
        test_start.elapsed(),
        setup_done.elapsed()
    );
    drop(server);
}
