//! Real `mesh-node` processes for the tests: a server, agents, and the CLI.

#![allow(dead_code)]

pub(crate) mod netns;

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

/// `mesh-node`, run directly or, with `netns`, through `ip netns exec`
/// (which execs it, so the child is `mesh-node` itself).
pub(crate) fn command(netns: Option<&str>) -> Command {
    match netns {
        Some(ns) => {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", ns, BIN]);
            cmd
        }
        None => Command::new(BIN),
    }
}

/// Waits until `socket` accepts connections, failing the test at once if
/// `proc` exits first.
pub(crate) fn wait_for_socket(proc: &mut Proc, socket: &Path) {
    let what = format!("the {}'s socket {}", proc.name, socket.display());
    wait_until(&what, 30, || {
        if let Ok(Some(status)) = proc.child.try_wait() {
            panic!("the {} exited ({status}) before serving", proc.name);
        }
        std::os::unix::net::UnixStream::connect(socket).is_ok()
    });
}

/// A free loopback TCP port, below the kernel's ephemeral range
/// (`net.ipv4.ip_local_port_range`, 32768 and up by default). A port the
/// kernel hands out for `127.0.0.1:0` comes from that range, and once
/// released it can become the local port of an outgoing connection (an
/// agent dialling its server) before the process under test binds it:
/// `up` once failed with "Address already in use" that way.
pub(crate) fn free_port() -> u16 {
    use std::hash::BuildHasher;
    let random = std::hash::RandomState::new();
    let mut attempt = 0u64;
    loop {
        let port = 20_000 + (random.hash_one(attempt) % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
        attempt += 1;
    }
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
    /// The node API address agents dial, `host:port`.
    pub(crate) address: String,
}

/// Starts `mesh-node server` on a free port with state in `dir`.
pub(crate) fn start_server(dir: &Path, port: u16) -> Server {
    start_server_in(dir, &format!("127.0.0.1:{port}"), None, "")
}

/// Starts `mesh-node server` with `extra` top-level TOML in its config.
pub(crate) fn start_server_with(dir: &Path, port: u16, extra: &str) -> Server {
    start_server_in(dir, &format!("127.0.0.1:{port}"), None, extra)
}

/// Starts `mesh-node server` with its node API on `listen`, inside the
/// network namespace `netns` if given, with state in `dir` and `extra`
/// top-level TOML in its config.
pub(crate) fn start_server_in(
    dir: &Path,
    listen: &str,
    netns: Option<&str>,
    extra: &str,
) -> Server {
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("server.toml");
    std::fs::write(
        &config,
        format!(
            "trust_domain = \"example.org\"\nnode_api_listen = \"{listen}\"\n{extra}\n[ca]\nx509_svid_ttl = \"1h\"\n"
        ),
    )
    .unwrap();
    let child = command(netns)
        .args(["server", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env("MESH_NODE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let port = listen
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .expect("listen is host:port");
    let mut server = Server {
        proc: Proc {
            child,
            name: "server",
        },
        dir: dir.join("data"),
        port,
        address: listen.to_owned(),
    };
    let sock = server.dir.join("admin.sock");
    wait_for_socket(&mut server.proc, &sock);
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
    start_agent_with(&AgentSpec {
        dir,
        server_address: &format!("127.0.0.1:{server_port}"),
        bundle,
        token,
        socket: &dir.join("workload.sock"),
        netns: None,
    })
}

/// Where and how an agent runs.
pub(crate) struct AgentSpec<'a> {
    /// Its data directory.
    pub(crate) dir: &'a Path,
    /// The server's node API, `host:port`.
    pub(crate) server_address: &'a str,
    /// The bundle that authenticates the server.
    pub(crate) bundle: &'a Path,
    /// Written to `<dir>/join-token` when given.
    pub(crate) token: Option<&'a str>,
    /// The Workload API socket.
    pub(crate) socket: &'a Path,
    /// The network namespace to run in.
    pub(crate) netns: Option<&'a str>,
}

/// Starts `mesh-node agent` as `spec` says and waits for its workload
/// socket.
pub(crate) fn start_agent_with(spec: &AgentSpec<'_>) -> Agent {
    std::fs::create_dir_all(spec.dir).unwrap();
    let _ = std::fs::remove_file(spec.socket);
    let mut cmd = command(spec.netns);
    cmd.args(["agent", "--agent-data-dir"])
        .arg(spec.dir)
        .arg("--server-address")
        .arg(spec.server_address)
        .arg("--trust-bundle")
        .arg(spec.bundle)
        .arg("--workload-socket")
        .arg(spec.socket)
        .env("MESH_NODE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if let Some(t) = spec.token {
        std::fs::write(spec.dir.join("join-token"), t).unwrap();
    }
    let child = cmd.spawn().unwrap();
    let mut agent = Agent {
        proc: Proc {
            child,
            name: "agent",
        },
        dir: spec.dir.to_owned(),
        socket: spec.socket.to_owned(),
    };
    wait_for_socket(&mut agent.proc, spec.socket);
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

/// What py-spiffe (PyPI `spiffe`, on grpcio) gets from the Workload API at
/// `socket` (`unix:///...`), as the JSON that `tests/netns_py_spiffe.py`
/// prints (`spiffe_ids`, `trust_domains`), run in the virtualenv the netns
/// test also uses; `Err` when python3 or the virtualenv is missing.
pub(crate) fn py_spiffe_fetch(socket: &str) -> Result<serde_json::Value, String> {
    let base = Some(PathBuf::from("/usr/bin/python3"))
        .filter(|p| p.exists())
        .or_else(|| test_support::find_binary("python3"))
        .ok_or("python3")?;
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("py-spiffe-venv-any-uid");
    let python = test_support::py_spiffe_venv(&dir, &base, Duration::from_secs(600))?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/netns_py_spiffe.py");
    let path = socket.strip_prefix("unix://").unwrap_or(socket);
    let out = test_support::run_bounded(
        Command::new(python)
            .arg(script)
            .arg(path)
            .arg("example.org"),
        Duration::from_secs(60),
    )?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "py-spiffe failed: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let v: serde_json::Value =
        serde_json::from_str(stdout.trim()).map_err(|e| format!("{stdout}: {e}"))?;
    assert!(v.get("error").is_none(), "py-spiffe was refused: {v}");
    Ok(v)
}

/// The strings of the array `field` of a py-spiffe answer.
pub(crate) fn py_spiffe_list(v: &serde_json::Value, field: &str) -> Result<Vec<String>, String> {
    Ok(v[field]
        .as_array()
        .ok_or_else(|| format!("no {field} in {v}"))?
        .iter()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect())
}

/// Starts `mesh-node up` with state in `dir` and the config file `config`;
/// returns the process and the summary lines it printed (up to the
/// `entry create` hint).
pub(crate) fn start_up(dir: &Path, config: &Path) -> (Proc, Vec<String>) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(BIN)
        .args(["up", "--data-dir"])
        .arg(dir)
        .arg("--config")
        .arg(config)
        .env("MESH_NODE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                return;
            }
        }
    });
    let mut lines = Vec::new();
    loop {
        let l = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("up printed no summary in 30 s");
        let done = l.contains("mesh-node entry create");
        lines.push(l);
        if done {
            break;
        }
    }
    (Proc { child, name: "up" }, lines)
}

/// The value after `key` in `up`'s summary lines.
pub(crate) fn summary_field<'a>(lines: &'a [String], key: &str) -> &'a str {
    lines
        .iter()
        .find_map(|l| l.trim().strip_prefix(key))
        .unwrap_or_else(|| panic!("no `{key}` in {lines:?}"))
        .trim()
}

/// Sends SIGTERM to `proc` and waits (up to 30 s) for it to exit.
pub(crate) fn sigterm(proc: &mut Proc) -> std::process::ExitStatus {
    let pid = proc.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut status = None;
    wait_until("the process to exit after SIGTERM", 30, || {
        status = proc.child.try_wait().unwrap();
        status.is_some()
    });
    status.unwrap()
}
