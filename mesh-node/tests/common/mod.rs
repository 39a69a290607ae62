//! Real `mesh-node` processes for the tests: a server, agents, and the CLI.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_mesh-node");

/// A child process killed when dropped.
pub(crate) struct Proc {
    pub(crate) child: Child,
    pub(crate) name: &'static str,
}

impl Proc {
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A free loopback TCP port.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until `cond` holds, failing the test after `secs`.
pub(crate) fn wait_until(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(
            Instant::now() < end,
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs the CLI against the server in `data_dir`.
pub(crate) fn cli(data_dir: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).arg("--data-dir").arg(data_dir);
    cmd.output().expect("run mesh-node")
}

/// Runs the CLI and returns its stdout, failing the test on a non-zero exit.
pub(crate) fn cli_ok(data_dir: &Path, args: &[&str]) -> String {
    let out = cli(data_dir, args);
    assert!(
        out.status.success(),
        "mesh-node {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub(crate) struct Server {
    pub(crate) proc: Proc,
    pub(crate) dir: PathBuf,
    pub(crate) port: u16,
}

/// Starts `mesh-node server` on a free port with state in `dir`.
pub(crate) fn start_server(dir: &Path, port: u16) -> Server {
    start_server_with(dir, port, "")
}

/// Starts `mesh-node server` with `extra` top-level TOML in its config.
pub(crate) fn start_server_with(dir: &Path, port: u16, extra: &str) -> Server {
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("server.toml");
    std::fs::write(
        &config,
        format!(
            "trust_domain = \"example.org\"\nnode_api_listen = \"127.0.0.1:{port}\"\n{extra}\n[ca]\nx509_svid_ttl = \"1h\"\n"
        ),
    )
    .unwrap();
    let child = Command::new(BIN)
        .args(["server", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env("MESH_NODE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let server = Server {
        proc: Proc {
            child,
            name: "server",
        },
        dir: dir.join("data"),
        port,
    };
    let sock = server.dir.join("admin.sock");
    wait_until("the server's admin socket", 30, || {
        std::os::unix::net::UnixStream::connect(&sock).is_ok()
    });
    server
}

pub(crate) struct Agent {
    pub(crate) proc: Proc,
    pub(crate) dir: PathBuf,
    pub(crate) socket: PathBuf,
}

/// Starts `mesh-node agent` with state in `dir`, attesting with `token`
/// when given.
pub(crate) fn start_agent(
    dir: &Path,
    server_port: u16,
    bundle: &Path,
    token: Option<&str>,
) -> Agent {
    std::fs::create_dir_all(dir).unwrap();
    let socket = dir.join("workload.sock");
    let _ = std::fs::remove_file(&socket);
    let mut cmd = Command::new(BIN);
    cmd.args(["agent", "--agent-data-dir"])
        .arg(dir)
        .arg("--server-address")
        .arg(format!("127.0.0.1:{server_port}"))
        .arg("--trust-bundle")
        .arg(bundle)
        .arg("--workload-socket")
        .arg(&socket)
        .env("MESH_NODE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if let Some(t) = token {
        std::fs::write(dir.join("join-token"), t).unwrap();
    }
    let child = cmd.spawn().unwrap();
    let agent = Agent {
        proc: Proc {
            child,
            name: "agent",
        },
        dir: dir.to_owned(),
        socket,
    };
    let sock = agent.socket.clone();
    wait_until("the agent's workload socket", 30, || {
        std::os::unix::net::UnixStream::connect(&sock).is_ok()
    });
    agent
}

/// A fresh join token.
pub(crate) fn token(server: &Server) -> String {
    let out = cli_ok(&server.dir, &["token", "generate", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["token"].as_str().unwrap().to_owned()
}

/// The SPIFFE IDs of the attested agents.
pub(crate) fn agents(server: &Server) -> Vec<String> {
    let out = cli_ok(&server.dir, &["agent", "list", "--output", "json"]);
    let v: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    v.iter()
        .map(|a| a["spiffe_id"].as_str().unwrap().to_owned())
        .collect()
}

/// The uid of this process.
pub(crate) fn my_uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap()
}
