//! `mesh-node demo`: the whole mesh on loopback, scripted.
//!
//! One process runs the server, one agent, five sidecars (an ingress
//! client and bookinfo's productpage, details, reviews and ratings) and
//! the four bookinfo services, all meeting through the same seams as
//! separate processes: the node API over mTLS, the Workload API and the
//! agent's feed on Unix sockets, the admin API on its socket. The
//! security policies are the YAML files in `mesh-node/demo/policies`,
//! copied into the demo's data directory (edit them and rerun).
//!
//! Each step prints one line and is checked; the demo exits 0 when every
//! step behaved, and otherwise names the step that did not.

mod apps;
mod report;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use mesh_sidecar::config::{AppProtocol, SidecarConfig};
use mesh_sidecar::endpoint::ServiceKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::admin_api::{EntrySpec, EntryView, TokenSpec, TokenView};
use crate::config::{AgentConfig, ServerConfig};
use crate::sidecar::{Registration, SidecarHandle, SidecarRoleConfig, Sources};

/// The trust domain of the demo mesh.
pub const TRUST_DOMAIN: &str = "cluster.local";
/// The namespace of the bookinfo services.
pub const NAMESPACE: &str = "bookinfo";
const SERVICES: [&str; 4] = ["productpage", "details", "reviews", "ratings"];
const INGRESS_ID: &str =
    "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account";

/// The policies shipped with the repository, used when the source tree is
/// not at hand (an installed binary).
const BUILTIN_POLICIES: [(&str, &str); 6] = [
    (
        "00-peer-authentication.yaml",
        include_str!("../../demo/policies/00-peer-authentication.yaml"),
    ),
    (
        "01-allow-nothing.yaml",
        include_str!("../../demo/policies/01-allow-nothing.yaml"),
    ),
    (
        "productpage-policy.yaml",
        include_str!("../../demo/policies/productpage-policy.yaml"),
    ),
    (
        "reviews-policy.yaml",
        include_str!("../../demo/policies/reviews-policy.yaml"),
    ),
    (
        "details-policy.yaml",
        include_str!("../../demo/policies/details-policy.yaml"),
    ),
    (
        "ratings-policy.yaml",
        include_str!("../../demo/policies/ratings-policy.yaml"),
    ),
];

/// What `mesh-node demo` was asked.
#[derive(Debug, Clone, Default)]
pub struct DemoOptions {
    /// Leave the mesh running after the steps, until SIGTERM or Ctrl-C.
    pub keep: bool,
    /// State directory (default: a fresh one under the system temp dir,
    /// removed at the end unless `keep`).
    pub data_dir: Option<PathBuf>,
    /// Policy directory to copy (default: `mesh-node/demo/policies` of the
    /// source tree, or the copies built into the binary).
    pub policies: Option<PathBuf>,
}

/// The step that did not behave, and how.
#[derive(Debug, thiserror::Error)]
#[error("step {step} failed: {why}")]
pub struct DemoFailure {
    /// The step's name.
    pub step: &'static str,
    /// What happened instead.
    pub why: String,
}

fn fail(step: &'static str) -> impl Fn(String) -> DemoFailure {
    move |why| DemoFailure { step, why }
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// The running mesh.
struct Mesh {
    dir: PathBuf,
    admin_socket: PathBuf,
    server: crate::server::ServerHandle,
    agent: crate::agent::AgentHandle,
    sidecars: BTreeMap<&'static str, SidecarHandle>,
    entries: BTreeMap<&'static str, String>,
    client: HttpClient,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Every sidecar's access-log lines.
    logs: Arc<std::sync::Mutex<Vec<u8>>>,
}

/// Collects access-log lines in memory, for the steps to quote.
struct LogSink(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn line(n: usize, text: impl std::fmt::Display) {
    println!("[{n:>2}] {text}");
}

/// Runs the demo; `Ok` when every step behaved.
pub async fn run(options: DemoOptions) -> Result<(), DemoFailure> {
    let started = Instant::now();
    let temp = options.data_dir.is_none();
    let dir = options.data_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("mesh-node-demo-{}", std::process::id()))
    });
    let mesh = up(&dir, options.policies.as_deref()).await?;
    let result = steps(&mesh).await;
    if result.is_ok() {
        println!(
            "\nall steps behaved as expected ({:.1} s)",
            started.elapsed().as_secs_f64()
        );
    }
    if options.keep && result.is_ok() {
        keep(&mesh).await;
    }
    down(mesh).await;
    if temp && !options.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

/// A free loopback port (bound and released: sidecars register the port
/// their inbound listener will take).
fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

fn copy_policies(from: Option<&Path>, to: &Path) -> Result<String, String> {
    std::fs::create_dir_all(to).map_err(|e| format!("{}: {e}", to.display()))?;
    let source = from.map(Path::to_owned).or_else(|| {
        let tree = Path::new(env!("CARGO_MANIFEST_DIR")).join("demo/policies");
        tree.is_dir().then_some(tree)
    });
    match source {
        Some(src) => {
            let entries = std::fs::read_dir(&src).map_err(|e| format!("{}: {e}", src.display()))?;
            for entry in entries {
                let path = entry.map_err(|e| e.to_string())?.path();
                if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                    let name = path.file_name().unwrap_or_default();
                    std::fs::copy(&path, to.join(name))
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                }
            }
            Ok(src.display().to_string())
        }
        None => {
            for (name, text) in BUILTIN_POLICIES {
                std::fs::write(to.join(name), text).map_err(|e| e.to_string())?;
            }
            Ok("built into the binary".to_owned())
        }
    }
}

async fn admin<T: serde::de::DeserializeOwned>(
    socket: &Path,
    method: http::Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<T, String> {
    let bytes = crate::cli::admin_call(socket, method, path, body)
        .await
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

async fn up(dir: &Path, policies: Option<&Path>) -> Result<Mesh, DemoFailure> {
    let step = fail("start");
    println!("mesh-node demo: bookinfo on loopback, trust domain {TRUST_DOMAIN}\n");
    let _ = std::fs::remove_dir_all(dir);
    let policy_dir = dir.join("policies");
    let from = copy_policies(policies, &policy_dir).map_err(&step)?;

    let mut config = ServerConfig {
        trust_domain: TRUST_DOMAIN.to_owned(),
        data_dir: dir.join("server"),
        node_api_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        policy_dir: Some(policy_dir.clone()),
        ..ServerConfig::default()
    };
    config.ca.rotation_check = Duration::from_secs(1);
    let (server, server_task) = crate::server::build(config)
        .await
        .map_err(|e| step(format!("server: {e}")))?;
    let mut tasks = vec![tokio::spawn(async move {
        if let Err(e) = server_task.await {
            eprintln!("server stopped: {e}");
        }
    })];
    let admin_socket = server.admin_socket.clone();
    line(
        1,
        format!(
            "server: CA and registry in {}, node API on {}, policies from {from}",
            dir.join("server").display(),
            server.node_api_addr
        ),
    );

    let token: TokenView = admin(
        &admin_socket,
        http::Method::POST,
        "/v1/tokens",
        Some(
            serde_json::to_vec(&TokenSpec {
                ttl: 600,
                spiffe_id: None,
            })
            .map_err(|e| step(e.to_string()))?,
        ),
    )
    .await
    .map_err(|e| step(format!("join token: {e}")))?;
    let bundle_path = dir.join("bundle.json");
    std::fs::write(&bundle_path, server.bundle().to_json()).map_err(|e| step(e.to_string()))?;
    let agent_dir = dir.join("agent");
    let agent_config = AgentConfig {
        trust_domain: TRUST_DOMAIN.to_owned(),
        server_address: server.node_api_addr.to_string(),
        trust_bundle_path: Some(bundle_path),
        join_token: Some(token.token),
        workload_socket: agent_dir.join("workload.sock"),
        feed_socket: Some(agent_dir.join("feed.sock")),
        data_dir: agent_dir,
        ..AgentConfig::default()
    };
    let (agent, agent_task) = crate::agent::build(agent_config)
        .await
        .map_err(|e| step(format!("agent: {e}")))?;
    tasks.push(tokio::spawn(agent_task));
    line(
        2,
        format!(
            "agent attested with a join token as {}; Workload API on {}",
            agent.node_id,
            agent.workload_socket.display()
        ),
    );

    // One entry per workload; all run as this process's user, so the
    // entries differ by hint and each sidecar asks for its own.
    let uid = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .map_err(|e| step(e.to_string()))?;
    let mut entries = BTreeMap::new();
    for name in SERVICES.iter().copied().chain(["ingress"]) {
        let id = if name == "ingress" {
            INGRESS_ID.to_owned()
        } else {
            format!("spiffe://{TRUST_DOMAIN}/ns/{NAMESPACE}/sa/{name}")
        };
        let spec = EntrySpec {
            spiffe_id: Some(id),
            parent_id: Some(agent.node_id.to_string()),
            selectors: Some(vec![format!("unix:uid:{uid}")]),
            hint: Some(name.to_owned()),
            ..EntrySpec::default()
        };
        let view: EntryView = admin(
            &admin_socket,
            http::Method::POST,
            "/v1/entries",
            Some(serde_json::to_vec(&spec).map_err(|e| step(e.to_string()))?),
        )
        .await
        .map_err(|e| step(format!("entry for {name}: {e}")))?;
        entries.insert(name, view.id);
    }
    line(
        3,
        format!(
            "5 registration entries: {INGRESS_ID} and spiffe://{TRUST_DOMAIN}/ns/{NAMESPACE}/sa/{{productpage,details,reviews,ratings}}"
        ),
    );

    let mut apps = Vec::new();
    for name in SERVICES {
        apps.push(apps::start(name).await.map_err(|e| step(e.to_string()))?);
    }
    let mut sidecars = BTreeMap::new();
    let logs = Arc::new(std::sync::Mutex::new(Vec::new()));
    for name in SERVICES.iter().copied().chain(["ingress"]) {
        let calls: &[&str] = match name {
            "ingress" => &["productpage"],
            "productpage" => &["details", "reviews"],
            "reviews" => &["ratings"],
            // Knows where ratings is; policy is what stops it.
            "details" => &["ratings"],
            _ => &[],
        };
        let app = apps.iter().find(|a| a.name == name);
        let inbound_port = free_port().map_err(&step)?;
        let mut proxy = SidecarConfig::default();
        proxy.workload.namespace = NAMESPACE.to_owned();
        proxy.workload.name = name.to_owned();
        proxy.workload.service = name.to_owned();
        proxy
            .workload
            .labels
            .insert("app".to_owned(), name.to_owned());
        proxy.workload.trust_domain = Some(TRUST_DOMAIN.to_owned());
        proxy.inbound.listen = SocketAddr::from(([127, 0, 0, 1], inbound_port));
        proxy.inbound.app = app.map_or(SocketAddr::from(([127, 0, 0, 1], 9)), |a| a.addr);
        proxy.inbound.protocol = AppProtocol::Http;
        proxy.outbound.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        proxy.admin.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        proxy.admin.access_log = false;
        proxy.drain = Duration::from_millis(200);
        let sources = Sources {
            workload_socket: Some(agent.workload_socket.clone()),
            svid_hint: Some(name.to_owned()),
            feed_socket: Some(agent.feed_socket.clone()),
            calls: calls.iter().map(|c| format!("{c}.{NAMESPACE}")).collect(),
            register: app.map(|_| Registration {
                address: "127.0.0.1".to_owned(),
                port: inbound_port,
                protocol: "http".to_owned(),
            }),
            ..Sources::default()
        };
        let log = mesh_sidecar::telemetry::AccessLog::to_writer(Box::new(LogSink(logs.clone())));
        let (handle, task) =
            crate::sidecar::build(SidecarRoleConfig { sources, proxy }, None, Some(log))
                .await
                .map_err(|e| step(format!("sidecar {name}: {e}")))?;
        if let Some(app) = app {
            let _ = app.outbound.set(handle.addresses.outbound);
        }
        tasks.push(tokio::spawn(task));
        sidecars.insert(name, handle);
    }
    let mesh = Mesh {
        dir: dir.to_owned(),
        admin_socket,
        server,
        agent,
        sidecars,
        entries,
        client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
        tasks,
        logs,
    };
    mesh.wait_ready().await?;
    let ports: Vec<String> = mesh
        .sidecars
        .iter()
        .map(|(n, h)| {
            format!(
                "{n} in {} out {}",
                h.addresses.inbound.port(),
                h.addresses.outbound.port()
            )
        })
        .collect();
    line(
        4,
        format!(
            "5 sidecars hold their SVIDs and policies, endpoints registered in discovery ({})",
            ports.join(", ")
        ),
    );
    Ok(mesh)
}

impl Mesh {
    fn sidecar(&self, name: &str) -> &SidecarHandle {
        &self.sidecars[name]
    }

    async fn get(&self, addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
        let req = http::Request::get(format!("http://{addr}{path}"))
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        tokio::time::timeout(Duration::from_secs(10), apps::send(&self.client, req))
            .await
            .map_err(|_| "no answer in 10 s".to_owned())?
    }

    /// A request that `from`'s workload sends through its sidecar.
    async fn call(
        &self,
        from: &str,
        method: http::Method,
        service: &str,
        path: &str,
    ) -> Result<(u16, String), String> {
        let via = self.sidecar(from).addresses.outbound;
        tokio::time::timeout(
            Duration::from_secs(10),
            apps::call(&self.client, via, method, service, path),
        )
        .await
        .map_err(|_| "no answer in 10 s".to_owned())?
    }

    async fn wait_ready(&self) -> Result<(), DemoFailure> {
        let step = fail("start");
        let deadline = Instant::now() + Duration::from_secs(30);
        let needs: [(&str, &str); 5] = [
            ("ingress", "productpage"),
            ("productpage", "details"),
            ("productpage", "reviews"),
            ("reviews", "ratings"),
            ("details", "ratings"),
        ];
        loop {
            let mut missing = Vec::new();
            for (name, h) in &self.sidecars {
                match self.get(h.addresses.admin, "/healthz/ready").await {
                    Ok((200, _)) => {}
                    other => missing.push(format!("{name} not ready ({other:?})")),
                }
            }
            for (from, to) in needs {
                let key = ServiceKey::new(to, NAMESPACE);
                if self.sidecar(from).endpoints.service(&key).is_none() {
                    missing.push(format!("{from} has no endpoint of {to}"));
                }
            }
            if missing.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(step(format!(
                    "not ready after 30 s: {}",
                    missing.join("; ")
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The sum of `mesh_authz_denials_total` of one sidecar, by reason.
    async fn denials(&self, name: &str) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        if let Ok((_, text)) = self
            .get(self.sidecar(name).addresses.admin, "/stats/prometheus")
            .await
        {
            for s in report::parse(&text) {
                if s.name == "mesh_authz_denials_total" {
                    let key = format!(
                        "policy={} reason={}",
                        s.labels.get("policy").map_or("?", String::as_str),
                        s.labels.get("reason").map_or("?", String::as_str)
                    );
                    *out.entry(key).or_default() += s.value;
                }
            }
        }
        out
    }

    /// What changed in a sidecar's denial counters around `f`.
    async fn denial_during<F, T>(&self, name: &str, f: F) -> (T, String)
    where
        F: std::future::Future<Output = T>,
    {
        let before = self.denials(name).await;
        let out = f.await;
        let after = self.denials(name).await;
        let new: Vec<String> = after
            .iter()
            .filter(|(k, v)| before.get(*k).copied().unwrap_or(0.0) < **v)
            .map(|(k, _)| k.clone())
            .collect();
        (out, new.join(", "))
    }

    /// The newest access-log entry that `name`'s sidecar wrote as the
    /// destination of a request with `status`.
    fn received(&self, name: &str, status: u16) -> Option<serde_json::Value> {
        let principal = format!("spiffe://{TRUST_DOMAIN}/ns/{NAMESPACE}/sa/{name}");
        let bytes = self
            .logs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|e| {
                e["reporter"] == "destination"
                    && e["destination_principal"] == principal.as_str()
                    && e["status"] == status
            })
    }

    /// "policy P" or "default deny: why" for the newest such entry.
    fn verdict(&self, name: &str, status: u16) -> String {
        match self.received(name, status) {
            None => "no access-log entry".to_owned(),
            Some(e) => match (e["policy"].as_str(), e["reason"].as_str()) {
                (Some(p), _) => format!("matched {p}"),
                (None, Some(r)) => format!("no policy matched: {r}"),
                (None, None) => "no policy".to_owned(),
            },
        }
    }

    async fn leaf(&self, name: &str) -> Option<(String, usize)> {
        let (_, text) = self
            .get(self.sidecar(name).addresses.admin, "/certs")
            .await
            .ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        let leaf = v["svid"]["leaf_sha256"].as_str()?.to_owned();
        let authorities = v["bundles"][0]["x509_authorities_sha256"]
            .as_array()
            .map_or(0, Vec::len);
        Some((leaf, authorities))
    }
}

async fn steps(mesh: &Mesh) -> Result<(), DemoFailure> {
    // 5. The page, assembled from three services.
    let step = fail("productpage");
    let ingress = mesh.sidecar("ingress").addresses.outbound;
    let (status, page) = mesh
        .call("ingress", http::Method::GET, "productpage", "/productpage")
        .await
        .map_err(&step)?;
    if status != 200 {
        return Err(step(format!("{status}: {page}")));
    }
    for want in [
        format!("productpage (caller {INGRESS_ID})"),
        format!("details (caller spiffe://{TRUST_DOMAIN}/ns/{NAMESPACE}/sa/productpage)"),
        format!("reviews (caller spiffe://{TRUST_DOMAIN}/ns/{NAMESPACE}/sa/productpage)"),
        format!("ratings (caller spiffe://{TRUST_DOMAIN}/ns/{NAMESPACE}/sa/reviews)"),
    ] {
        if !page.contains(&want) {
            return Err(step(format!("page lacks `{want}`:\n{page}")));
        }
    }
    line(
        5,
        "ingress -> productpage -> {details, reviews -> ratings}: 200, each hop saw its verified caller:",
    );
    for l in page.lines() {
        let l = l.trim();
        let hop = l.split_whitespace().next().unwrap_or_default();
        println!("       {l}  [{}]", mesh.verdict(hop, 200));
    }

    // 6. details calling ratings directly.
    let step = fail("details-to-ratings");
    let (answer, denial) = mesh
        .denial_during(
            "ratings",
            mesh.call("details", http::Method::GET, "ratings", "/ratings/0"),
        )
        .await;
    let (status, _) = answer.map_err(&step)?;
    if status != 403 {
        return Err(step(format!("expected 403, got {status}")));
    }
    line(
        6,
        format!(
            "details -> ratings GET /ratings/0: 403 RBAC: access denied; ratings-policy allows only reviews, so {} [{denial}]",
            mesh.verdict("ratings", 403)
        ),
    );

    // 7. reviews POSTing to ratings.
    let step = fail("reviews-post-to-ratings");
    let ((status, _), denial) = mesh
        .denial_during("ratings", async {
            mesh.call("reviews", http::Method::POST, "ratings", "/ratings/0")
                .await
                .unwrap_or((0, String::new()))
        })
        .await;
    if status != 403 {
        return Err(step(format!("expected 403, got {status}")));
    }
    line(
        7,
        format!(
            "reviews -> ratings POST /ratings/0: 403; ratings-policy allows GET only, so {} [{denial}]",
            mesh.verdict("ratings", 403)
        ),
    );

    // 8. Plaintext under STRICT.
    let step = fail("plaintext-refused");
    let target = mesh.sidecar("productpage").addresses.inbound;
    let mut tcp = tokio::net::TcpStream::connect(target)
        .await
        .map_err(|e| step(e.to_string()))?;
    tcp.write_all(b"GET /productpage HTTP/1.1\r\nHost: productpage\r\n\r\n")
        .await
        .map_err(|e| step(e.to_string()))?;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
    match read {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(_)) => {
            return Err(step(format!(
                "STRICT answered plaintext: {}",
                String::from_utf8_lossy(&buf)
            )));
        }
        Err(_) => return Err(step("connection held open".to_owned())),
    }
    line(
        8,
        format!(
            "plaintext client -> productpage {target}: connection closed, nothing served (PeerAuthentication default: STRICT)"
        ),
    );

    // 9. A certificate from another CA.
    let step = fail("foreign-ca-refused");
    let alert = foreign_ca_attempt(mesh, target).await.map_err(&step)?;
    line(
        9,
        format!(
            "client with an SVID from another CA -> productpage: refused in the handshake ({alert})"
        ),
    );

    // 10. A policy edited on disk.
    let step = fail("policy-edit");
    let policy = mesh.dir.join("policies/ratings-policy.yaml");
    let text = std::fs::read_to_string(&policy).map_err(|e| step(e.to_string()))?;
    let edited = text.replace(r#"methods: ["GET"]"#, r#"methods: ["GET", "POST"]"#);
    if edited == text {
        return Err(step(
            "ratings-policy.yaml has no `methods: [\"GET\"]` to extend".to_owned(),
        ));
    }
    std::fs::write(&policy, edited).map_err(|e| step(e.to_string()))?;
    let edited_at = Instant::now();
    loop {
        let (status, _) = mesh
            .call("reviews", http::Method::POST, "ratings", "/ratings/0")
            .await
            .map_err(&step)?;
        if status == 200 {
            break;
        }
        if edited_at.elapsed() > Duration::from_secs(10) {
            return Err(step(format!("still {status} 10 s after the edit")));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = edited_at.elapsed();
    line(
        10,
        format!(
            "ratings-policy.yaml edited to allow POST: reviews -> ratings POST is 200 after {} ms, no restart{}",
            took.as_millis(),
            if took <= Duration::from_secs(1) {
                ""
            } else {
                " (over the 1 s target)"
            }
        ),
    );

    // 11. Rotations during continuous traffic.
    let step = fail("rotation-under-traffic");
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load = {
        let (stop, ok, failed, client) = (
            stop.clone(),
            ok.clone(),
            failed.clone(),
            mesh.client.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match apps::call(
                    &client,
                    ingress,
                    http::Method::GET,
                    "productpage",
                    "/productpage",
                )
                .await
                {
                    Ok((200, _)) => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };
    let before: BTreeMap<&str, (String, usize)> = {
        let mut m = BTreeMap::new();
        for name in mesh.sidecars.keys() {
            m.insert(
                *name,
                mesh.leaf(name)
                    .await
                    .ok_or_else(|| step(format!("{name}: no /certs")))?,
            );
        }
        m
    };
    // SVID rotation: touching the entries makes the agent re-sign at once.
    reissue(mesh, 3600).await.map_err(&step)?;
    let svids = wait_rotated(mesh, &before, 1).await.map_err(&step)?;
    // CA rotation: a new key is prepared (published in the bundle),
    // activated, and every SVID is re-issued by it.
    let _: serde_json::Value = admin(
        &mesh.admin_socket,
        http::Method::POST,
        "/v1/ca/prepare",
        None,
    )
    .await
    .map_err(|e| step(format!("ca prepare: {e}")))?;
    let _: serde_json::Value = admin(
        &mesh.admin_socket,
        http::Method::POST,
        "/v1/ca/activate",
        None,
    )
    .await
    .map_err(|e| step(format!("ca activate: {e}")))?;
    reissue(mesh, 3599).await.map_err(&step)?;
    wait_rotated(mesh, &svids, 2).await.map_err(&step)?;
    // Let traffic run on the new identities for a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let _ = load.await;
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    if failed != 0 || ok == 0 {
        return Err(step(format!("{ok} requests succeeded, {failed} failed")));
    }
    line(
        11,
        format!(
            "SVID rotation, then CA rotation (new key prepared, activated, all 5 SVIDs re-issued; bundles hold both keys) during continuous traffic: {ok} requests, 0 failed"
        ),
    );

    // 12. The table.
    let mut samples = Vec::new();
    for (name, h) in &mesh.sidecars {
        let (_, text) = mesh
            .get(h.addresses.admin, "/stats/prometheus")
            .await
            .map_err(|e| fail("metrics")(format!("{name}: {e}")))?;
        samples.extend(report::parse(&text));
    }
    let edges = report::edges(&samples);
    if edges.is_empty() {
        return Err(fail("metrics")(
            "no istio_requests_total samples".to_owned(),
        ));
    }
    line(
        12,
        "per edge, from the sidecars' istio_requests_total and istio_request_duration_milliseconds (reporter=destination):",
    );
    print!("{}", report::table(&edges));
    Ok(())
}

/// Updates every entry's X509-SVID TTL, which makes the agent re-sign it.
async fn reissue(mesh: &Mesh, ttl: u64) -> Result<(), String> {
    for (name, id) in &mesh.entries {
        let spec = EntrySpec {
            x509_svid_ttl: Some(ttl),
            ..EntrySpec::default()
        };
        let _: EntryView = admin(
            &mesh.admin_socket,
            http::Method::PUT,
            &format!("/v1/entries/{id}"),
            Some(serde_json::to_vec(&spec).map_err(|e| e.to_string())?),
        )
        .await
        .map_err(|e| format!("entry update for {name}: {e}"))?;
    }
    Ok(())
}

/// Waits until every sidecar presents a new leaf and trusts at least
/// `authorities` keys.
async fn wait_rotated(
    mesh: &Mesh,
    before: &BTreeMap<&str, (String, usize)>,
    authorities: usize,
) -> Result<BTreeMap<&'static str, (String, usize)>, String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut now = BTreeMap::new();
        let mut pending = Vec::new();
        for name in mesh.sidecars.keys() {
            match mesh.leaf(name).await {
                Some((leaf, n))
                    if Some(&leaf) != before.get(name).map(|b| &b.0) && n >= authorities =>
                {
                    now.insert(*name, (leaf, n));
                }
                _ => pending.push(*name),
            }
        }
        if pending.is_empty() {
            return Ok(now);
        }
        if Instant::now() > deadline {
            return Err(format!("no new SVID after 20 s for {}", pending.join(", ")));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An mTLS client whose SVID comes from a CA the mesh does not trust; the
/// alert or error the handshake ended with.
async fn foreign_ca_attempt(mesh: &Mesh, target: SocketAddr) -> Result<String, String> {
    let (chain, key) = foreign_svid().map_err(|e| e.to_string())?;
    let svid = spiffe_core::X509Svid::from_der(&chain, &key).map_err(|e| e.to_string())?;
    let mut bundles = spiffe_core::BundleSet::new();
    bundles.insert(spiffe_core::SpiffeBundle::clone(&mesh.server.bundle()));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = mtls_tower::ClientConfigBuilder::new(
        provider,
        spiffe_core::MemorySvidSource::new(svid),
        spiffe_core::MemoryBundleSource::new(bundles),
        mtls_tower::authorizer::any(),
    )
    .alpn_protocols(vec![b"http/1.1".to_vec()])
    .build()
    .map_err(|e| e.to_string())?;
    let connector = mtls_tower::MtlsConnector::new(config);
    let uri: http::Uri = format!("http://{target}")
        .parse()
        .map_err(|e: http::uri::InvalidUri| e.to_string())?;
    match connector.connect(uri).await {
        Err(e) => Ok(e.to_string()),
        Ok(stream) => {
            // TLS 1.3: the server judges the client's certificate after
            // the client finished; its verdict arrives as an alert.
            let mut io = hyper_util::rt::TokioIo::new(stream);
            let _ = io
                .write_all(b"GET /productpage HTTP/1.1\r\nHost: productpage\r\n\r\n")
                .await;
            let mut buf = [0u8; 256];
            match tokio::time::timeout(Duration::from_secs(5), io.read(&mut buf)).await {
                Ok(Err(e)) => Ok(e.to_string()),
                Ok(Ok(0)) => Ok("closed without a response".to_owned()),
                Ok(Ok(n)) => Err(format!("served: {}", String::from_utf8_lossy(&buf[..n]))),
                Err(_) => Err("no verdict in 5 s".to_owned()),
            }
        }
    }
}

/// A CA of the demo's own and an SVID for productpage from it: chain DER
/// and PKCS#8 key DER.
fn foreign_svid() -> Result<(Vec<u8>, Vec<u8>), rcgen::Error> {
    use rcgen::{
        BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
    };
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(Vec::<String>::new())?;
    leaf.subject_alt_names = vec![SanType::URI(
        format!("spiffe://{TRUST_DOMAIN}/ns/{NAMESPACE}/sa/productpage").try_into()?,
    )];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let cert = leaf.signed_by(&key, &issuer)?;
    Ok((cert.der().to_vec(), key.serialize_der()))
}

async fn keep(mesh: &Mesh) {
    let ingress = mesh.sidecar("ingress").addresses.outbound;
    println!("\nthe mesh keeps running (Ctrl-C or SIGTERM stops it). Try:");
    println!("  curl -H 'Host: productpage.{NAMESPACE}:9080' http://{ingress}/productpage");
    for (name, h) in &mesh.sidecars {
        println!(
            "  {name:<12} admin http://{}/  (stats/prometheus, certs, clusters, config_dump)",
            h.addresses.admin
        );
    }
    println!(
        "  mesh-node entry list --admin-socket {}",
        mesh.admin_socket.display()
    );
    println!("  policies: edit {}/policies/*.yaml", mesh.dir.display());
    crate::cli::terminated().await;
}

async fn down(mesh: Mesh) {
    for h in mesh.sidecars.values() {
        h.shutdown.shutdown();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    mesh.agent.shutdown();
    mesh.server.shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    for t in mesh.tasks {
        t.abort();
    }
}
