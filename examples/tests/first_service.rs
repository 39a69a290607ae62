//! `examples/first_service.rs` and `first_service_grpc.rs` against a real
//! agent: `mesh-node up` (server and agent, in this process) for
//! example.org, registration entries by uid, and the example binaries run
//! as separate processes under different uids, each taking its identity
//! from the Workload API socket.
//!
//! - uid 0 serves as `spiffe://example.org/ns/default/sa/greeter`;
//! - uid 1000 (`…/sa/frontend`) is allowed by the policy;
//! - uid 1001 (`…/sa/intruder`) is refused by the policy (403, or gRPC
//!   PERMISSION_DENIED);
//! - uid 1002 has no entry: the client says so and names `unix:uid:1002`.
//!
//! Needs root (to run the clients under other uids).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use mesh_node::admin_api::EntrySpec;
use mesh_node::config::ServerConfig;
use mesh_node::up::{UpConfig, UpHandle};

const FRONTEND: &str = "spiffe://example.org/ns/default/sa/frontend";

fn uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .expect("/proc/self is readable")
}

fn open_dir(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The example binary `name`, copied where every uid can run it.
fn example_binary(name: &str, into: &Path) -> PathBuf {
    let deps = std::env::current_exe().unwrap();
    let built = deps
        .parent()
        .and_then(Path::parent)
        .map(|debug| debug.join("examples").join(name))
        .unwrap();
    // `cargo test` builds the examples; `cargo test --test first_service`
    // alone does not, so refuse a missing or stale binary.
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(format!("{name}.rs"));
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    assert!(
        modified(&built) >= modified(&source),
        "{} is missing or older than its source: run `cargo build -p examples --examples` first",
        built.display()
    );
    // A hard link writes nothing, so no write descriptor can be inherited
    // by a process another test forks at that moment (which would make
    // executing the file fail with ETXTBSY); copy across file systems.
    let copy = into.join(name);
    if std::fs::hard_link(&built, &copy).is_err() {
        std::fs::copy(&built, &copy).unwrap();
    }
    copy
}

/// Spawns `cmd`, retrying while the binary is still "text file busy": a
/// process forked by another test may briefly hold the descriptor that
/// wrote it, until that process executes its own program.
fn spawn_when_not_busy(cmd: &mut Command) -> Child {
    for _ in 0..200 {
        match cmd.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other.expect("the example binary runs"),
        }
    }
    panic!("the example binary stayed busy for 2 s")
}

/// Kills the server process when the test ends.
struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Mesh {
    _tmp: tempfile::TempDir,
    bin: PathBuf,
    socket: String,
    up: UpHandle,
}

async fn start_mesh() -> Mesh {
    let tmp = tempfile::Builder::new()
        .prefix("first-service-")
        .tempdir_in("/tmp")
        .unwrap();
    open_dir(tmp.path());
    let sockets = tmp.path().join("sockets");
    let bin = tmp.path().join("bin");
    open_dir(&sockets);
    open_dir(&bin);
    let workload_socket = sockets.join("workload.sock");
    let mut server = ServerConfig::default();
    server.node_api_listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let config = UpConfig {
        trust_domain: "example.org".into(),
        data_dir: tmp.path().join("state"),
        workload_socket: Some(workload_socket.clone()),
        server,
        sidecars: Vec::new(),
    };
    let (up, run) = mesh_node::up::build(config)
        .await
        .expect("mesh-node up starts");
    tokio::spawn(run);
    for (id, uid) in [
        ("spiffe://example.org/ns/default/sa/greeter", uid()),
        (FRONTEND, 1000),
        ("spiffe://example.org/ns/default/sa/intruder", 1001),
    ] {
        let spec = EntrySpec {
            spiffe_id: Some(id.into()),
            parent_id: Some(up.agent.node_id.to_string()),
            selectors: Some(vec![format!("unix:uid:{uid}")]),
            ..EntrySpec::default()
        };
        mesh_node::cli::admin_call(
            &up.server.admin_socket,
            http::Method::POST,
            "/v1/entries",
            Some(serde_json::to_vec(&spec).unwrap()),
        )
        .await
        .unwrap_or_else(|e| panic!("entry {id}: {e}"));
    }
    Mesh {
        socket: format!("unix://{}", workload_socket.display()),
        _tmp: tmp,
        bin,
        up,
    }
}

impl Mesh {
    /// Starts `example serve 127.0.0.1:0 POLICY` as this process's user;
    /// the last word of the line it prints (the address or URL it serves).
    async fn serve(&self, example: &str, policy: &str) -> (Served, String) {
        let binary = example_binary(example, &self.bin);
        let policy = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("policies")
            .join(policy);
        let mut child = spawn_when_not_busy(
            Command::new(binary)
                .args(["serve", "127.0.0.1:0"])
                .arg(policy)
                .env("SPIFFE_ENDPOINT_SOCKET", &self.socket)
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        );
        let stdout = child.stdout.take().unwrap();
        let served = Served(child);
        let line = tokio::task::spawn_blocking(move || {
            use std::io::BufRead;
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            line
        })
        .await
        .unwrap();
        let addr = line
            .split_whitespace()
            .last()
            .unwrap_or_else(|| panic!("{example} printed no address: {line:?}"))
            .to_owned();
        (served, addr)
    }

    /// Runs `example call TARGET WAIT` as `uid` (after `serve` ran the same
    /// binary, so it is no longer busy).
    async fn call(&self, example: &str, uid: u32, target: &str, wait: u64) -> Output {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(self.bin.join(example));
        cmd.args(["call", target, &wait.to_string()])
            .env("SPIFFE_ENDPOINT_SOCKET", &self.socket)
            .current_dir("/")
            .uid(uid)
            .gid(uid);
        let example = example.to_owned();
        tokio::task::spawn_blocking(move || {
            test_support::run_bounded(&mut cmd, Duration::from_secs(60))
                .unwrap_or_else(|e| panic!("{example} call as uid {uid}: {e}"))
        })
        .await
        .unwrap()
    }
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn can_switch_uid() -> bool {
    if uid() == 0 {
        return true;
    }
    test_support::skip("first_service", "root, to run clients under other uids");
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_service_with_identity_from_the_agent_mtls_and_an_istio_policy() {
    let _limit = test_support::time_limit(120);
    if !can_switch_uid() {
        return;
    }
    let mesh = start_mesh().await;
    // It prints `serving https://127.0.0.1:PORT/hello`.
    let (_server, url) = mesh.serve("first_service", "first_service.yaml").await;

    let ok = mesh.call("first_service", 1000, &url, 10).await;
    let (stdout, stderr) = text(&ok);
    assert!(ok.status.success(), "frontend: {stdout}{stderr}");
    assert_eq!(stdout, format!("200 OK hello, {FRONTEND}\n"));

    let denied = mesh.call("first_service", 1001, &url, 10).await;
    let (stdout, stderr) = text(&denied);
    assert_eq!(denied.status.code(), Some(1), "intruder: {stdout}{stderr}");
    assert_eq!(stdout, "403 Forbidden RBAC: access denied");
    assert!(stderr.contains("the service answered 403"), "{stderr}");

    let nobody = mesh.call("first_service", 1002, &url, 2).await;
    let (stdout, stderr) = text(&nobody);
    assert_eq!(nobody.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("no identity for this process after 2s")
            && stderr.contains("PermissionDenied")
            && stderr.contains("registration entry for unix:uid:1002"),
        "{stderr}"
    );
    mesh.up.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_service_in_tonic() {
    let _limit = test_support::time_limit(120);
    if !can_switch_uid() {
        return;
    }
    let mesh = start_mesh().await;
    let (_server, addr) = mesh
        .serve("first_service_grpc", "first_service_grpc.yaml")
        .await;

    let ok = mesh.call("first_service_grpc", 1000, &addr, 10).await;
    let (stdout, stderr) = text(&ok);
    assert!(ok.status.success(), "frontend: {stdout}{stderr}");
    assert_eq!(stdout, format!("hello, {FRONTEND}\n"));

    let denied = mesh.call("first_service_grpc", 1001, &addr, 10).await;
    let (stdout, stderr) = text(&denied);
    assert_eq!(denied.status.code(), Some(1), "intruder: {stdout}{stderr}");
    assert_eq!(
        stderr,
        "first_service_grpc: PermissionDenied: RBAC: access denied\n"
    );

    let nobody = mesh.call("first_service_grpc", 1002, &addr, 2).await;
    let (stdout, stderr) = text(&nobody);
    assert_eq!(nobody.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("registration entry for unix:uid:1002"),
        "{stderr}"
    );
    mesh.up.shutdown();
}
