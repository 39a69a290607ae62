//! Scale benchmark (issue 10): a real `mesh-node server` process, simulated
//! agents speaking the real node API (TLS + gRPC over loopback), entries
//! created through the admin socket.
//!
//! ```text
//! cargo bench -p mesh-node --bench scale
//! SCALE_AGENTS=10 SCALE_ENTRIES=200 SCALE_CHANGES=20 SCALE_SIGN_SECS=1 \
//!     cargo bench -p mesh-node --bench scale      # smoke size
//! ```
//!
//! Measures: entries synced per second when the sync streams open; the
//! latency from `POST /v1/entries` to the agent holding a signed SVID for
//! the new entry (p50/p99); workload SVIDs signed per second through
//! `sign_workloads` against the raw aws-lc-rs P-256 signing rate measured
//! in the same run; the server's RSS.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use mesh_node::admin_api::{EntrySpec, EntryView, TokenSpec, TokenView};
use mesh_node::node_api::{GrpcNodeApi, NodeApi, NodeTls, SyncUpdate};
use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256, SanType};
use spiffe_core::{
    BundleSet, EntryId, MemoryBundleSource, MemorySvidSource, PrivateKey, SpiffeBundle, SpiffeId,
    TrustDomain, X509Svid,
};
use tokio::sync::mpsc;

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const TRUST_DOMAIN: &str = "bench.test";

/// The run's size, from the environment.
#[derive(Debug, Clone, Copy)]
struct Scale {
    agents: usize,
    entries: usize,
    changes: usize,
    sign_secs: u64,
    sign_agents: usize,
    batch: usize,
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

impl Scale {
    fn from_env() -> Self {
        let agents = env_or("SCALE_AGENTS", 100).max(1) as usize;
        Scale {
            agents,
            entries: env_or("SCALE_ENTRIES", 10_000).max(agents as u64) as usize,
            changes: env_or("SCALE_CHANGES", 200).max(1) as usize,
            sign_secs: env_or("SCALE_SIGN_SECS", 5).max(1),
            sign_agents: (env_or("SCALE_SIGN_AGENTS", 10) as usize).clamp(1, agents),
            batch: env_or("SCALE_BATCH", 100).max(1) as usize,
        }
    }
}

/// The server child process, killed on drop.
struct ServerProc {
    child: Child,
    data_dir: PathBuf,
    port: u16,
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServerProc {
    fn start(dir: &Path) -> BenchResult<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let config = dir.join("server.toml");
        std::fs::write(
            &config,
            format!(
                "trust_domain = \"{TRUST_DOMAIN}\"\nnode_api_listen = \"127.0.0.1:{port}\"\n\n[ca]\nx509_svid_ttl = \"1h\"\n"
            ),
        )?;
        let data_dir = dir.join("data");
        let child = Command::new(env!("CARGO_BIN_EXE_mesh-node"))
            .args(["server", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(&data_dir)
            .env("MESH_NODE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        let server = ServerProc {
            child,
            data_dir,
            port,
        };
        let sock = server.admin_socket();
        let end = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(&sock).is_err() {
            if Instant::now() > end {
                return Err("the server's admin socket did not appear in 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    fn admin_socket(&self) -> PathBuf {
        self.data_dir.join("admin.sock")
    }

    /// `(VmRSS, VmHWM)` in KiB.
    fn rss_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

/// One keep-alive HTTP/1 connection to the admin socket.
struct Admin {
    sender: SendRequest<Full<Bytes>>,
}

impl Admin {
    async fn connect(socket: &Path) -> BenchResult<Self> {
        let stream = tokio::net::UnixStream::connect(socket).await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Admin { sender })
    }

    async fn call(
        &mut self,
        method: http::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> BenchResult<Bytes> {
        self.sender.ready().await?;
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            return Err(format!("{path}: {status}: {}", String::from_utf8_lossy(&bytes)).into());
        }
        Ok(bytes)
    }

    async fn token(&mut self) -> BenchResult<String> {
        let body = serde_json::to_vec(&TokenSpec {
            ttl: 3600,
            spiffe_id: None,
        })?;
        let b = self
            .call(http::Method::POST, "/v1/tokens", Some(body))
            .await?;
        Ok(serde_json::from_slice::<TokenView>(&b)?.token)
    }

    async fn create_entry(&mut self, spiffe_id: &str, parent: &SpiffeId) -> BenchResult<EntryId> {
        let spec = EntrySpec {
            spiffe_id: Some(spiffe_id.to_owned()),
            parent_id: Some(parent.to_string()),
            selectors: Some(vec![format!("unix:uid:{}", spiffe_id.len())]),
            ..EntrySpec::default()
        };
        let b = self
            .call(
                http::Method::POST,
                "/v1/entries",
                Some(serde_json::to_vec(&spec)?),
            )
            .await?;
        Ok(serde_json::from_slice::<EntryView>(&b)?.id.parse()?)
    }
}

/// A key and a CSR for `id`, as the agent makes them.
fn key_and_csr(id: &SpiffeId) -> BenchResult<(KeyPair, Vec<u8>)> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params
        .subject_alt_names
        .push(SanType::URI(id.as_str().try_into()?));
    let csr = params.serialize_request(&key)?;
    Ok((key, csr.der().to_vec()))
}

/// A simulated agent: its node API client and node ID.
struct SimAgent {
    api: GrpcNodeApi,
    node_id: SpiffeId,
}

async fn attest(port: u16, bundle: &SpiffeBundle, token: String) -> BenchResult<SimAgent> {
    let td: TrustDomain = TRUST_DOMAIN.parse()?;
    let node_svid = Arc::new(MemorySvidSource::empty());
    let trust = Arc::new(MemoryBundleSource::new(BundleSet::new()));
    trust.insert(bundle.clone());
    let api = GrpcNodeApi::new(NodeTls {
        address: format!("127.0.0.1:{port}"),
        server_id: SpiffeId::from_path(&td, "/server")?,
        node_svid: node_svid.clone(),
        bundles: trust,
        provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        insecure_bootstrap: false,
        keepalive_interval: std::time::Duration::from_secs(15),
        keepalive_timeout: std::time::Duration::from_secs(10),
    })?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let csr = CertificateParams::default().serialize_request(&key)?;
    let attested = api
        .attest("join_token", token.into_bytes(), csr.der().to_vec())
        .await?;
    let pkey = PrivateKey::from_pkcs8_der(&key.serialize_der())?;
    node_svid.set(X509Svid::new(attested.chain, pkey)?);
    Ok(SimAgent {
        api,
        node_id: attested.spiffe_id,
    })
}

/// Follows one agent's sync stream, forwarding each update with its
/// arrival time.
fn follow(
    api: GrpcNodeApi,
) -> (
    tokio::task::JoinHandle<BenchResult<()>>,
    mpsc::UnboundedReceiver<(Instant, SyncUpdate)>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut stream = api.sync().await?;
        while let Some(update) = stream.next().await {
            if tx.send((Instant::now(), update?)).is_err() {
                break;
            }
        }
        Ok(())
    });
    (task, rx)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Raw P-256 ECDSA signatures per second over a 300-byte message, on
/// `threads` threads, for `secs` seconds.
fn raw_sign_rate(threads: usize, secs: u64) -> BenchResult<f64> {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
        .map_err(|e| format!("P-256 key generation: {e}"))?;
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    std::thread::scope(|s| {
        for _ in 0..threads {
            let count = count.clone();
            let der = pkcs8.as_ref();
            s.spawn(move || {
                let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, der)
                    .expect("a key generated just above parses");
                let rng = SystemRandom::new();
                let msg = [0x5au8; 300];
                let mut n = 0u64;
                while Instant::now() < end {
                    for _ in 0..64 {
                        let sig = key.sign(&rng, &msg).expect("signing with a valid key");
                        std::hint::black_box(sig);
                    }
                    n += 64;
                }
                count.fetch_add(n, Ordering::Relaxed);
            });
        }
    });
    Ok(count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

/// Raw P-256 ECDSA verifications per second (one thread, `secs` seconds):
/// the server also verifies each CSR's signature (proof of possession).
fn raw_verify_rate(secs: u64) -> BenchResult<f64> {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
        .map_err(|e| format!("P-256 key generation: {e}"))?;
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref())
        .map_err(|e| format!("P-256 key: {e}"))?;
    let msg = [0x5au8; 300];
    let sig = key
        .sign(&rng, &msg)
        .map_err(|e| format!("P-256 signing: {e}"))?;
    let public = aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1,
        aws_lc_rs::signature::KeyPair::public_key(&key)
            .as_ref()
            .to_vec(),
    );
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut n = 0u64;
    while Instant::now() < end {
        for _ in 0..64 {
            public
                .verify(&msg, sig.as_ref())
                .map_err(|e| format!("P-256 verify: {e}"))?;
        }
        n += 64;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> BenchResult<()> {
    let scale = Scale::from_env();
    let per_agent = scale.entries / scale.agents;
    let total_entries = per_agent * scale.agents;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let load_before = load_average();
    let run_start = Instant::now();
    eprintln!("scale: {scale:?}; {cores} cores; load average {load_before}");

    let dir = tempfile::tempdir()?;
    let server = ServerProc::start(dir.path())?;
    let (rss_idle, _) = server.rss_kib();
    let socket = server.admin_socket();
    let mut admin = Admin::connect(&socket).await?;
    let td: TrustDomain = TRUST_DOMAIN.parse()?;
    let bundle_json = admin
        .call(http::Method::GET, "/v1/bundle?format=spiffe", None)
        .await?;
    let bundle = SpiffeBundle::parse(td.clone(), &bundle_json)?;

    // Tokens and attestation.
    let t = Instant::now();
    let mut tokens = Vec::with_capacity(scale.agents);
    for _ in 0..scale.agents {
        tokens.push(admin.token().await?);
    }
    let attests = tokens
        .into_iter()
        .map(|tok| attest(server.port, &bundle, tok));
    let agents: Vec<SimAgent> = futures_util::future::try_join_all(attests).await?;
    let attest_time = t.elapsed();
    eprintln!("{} agents attested in {attest_time:?}", agents.len());

    // Entries, through the admin API, 4 connections at once.
    let t = Instant::now();
    let conns = 4;
    let mut creators = Vec::new();
    for c in 0..conns {
        let parents: Vec<(usize, SpiffeId)> = agents
            .iter()
            .enumerate()
            .filter(|(i, _)| i % conns == c)
            .map(|(i, a)| (i, a.node_id.clone()))
            .collect();
        let socket = socket.clone();
        creators.push(tokio::spawn(async move {
            let mut admin = Admin::connect(&socket).await?;
            for (i, parent) in parents {
                for j in 0..per_agent {
                    let id = format!("spiffe://{TRUST_DOMAIN}/w/{i}/{j}");
                    admin.create_entry(&id, &parent).await?;
                }
            }
            BenchResult::Ok(())
        }));
    }
    for c in creators {
        c.await??;
    }
    let create_time = t.elapsed();
    let create_rate = total_entries as f64 / create_time.as_secs_f64();
    eprintln!("{total_entries} entries created in {create_time:?}");

    // (1) Initial sync: all streams open, until every entry has arrived.
    let t = Instant::now();
    let mut followers = Vec::new();
    let mut receivers = Vec::new();
    for a in &agents {
        let (task, rx) = follow(a.api.clone());
        followers.push(task);
        receivers.push(rx);
    }
    let waits = receivers.into_iter().map(|mut rx| async move {
        let mut seen = std::collections::HashSet::new();
        while seen.len() < per_agent {
            let (_, u) = rx.recv().await.ok_or("sync stream ended early")?;
            seen.extend(u.entries.into_iter().map(|e| e.id));
        }
        BenchResult::Ok(rx)
    });
    let mut receivers = futures_util::future::try_join_all(waits).await?;
    let sync_time = t.elapsed();
    let sync_rate = total_entries as f64 / sync_time.as_secs_f64();
    eprintln!("initial sync of {total_entries} entries in {sync_time:?}");

    // (2) Change → SVID at the agent, one change at a time.
    let mut latencies = Vec::with_capacity(scale.changes);
    for c in 0..scale.changes {
        let k = c % agents.len();
        for rx in &mut receivers {
            while rx.try_recv().is_ok() {}
        }
        let spiffe_id = format!("spiffe://{TRUST_DOMAIN}/change/{c}");
        let t0 = Instant::now();
        let id = admin.create_entry(&spiffe_id, &agents[k].node_id).await?;
        let entry = loop {
            let (_, u) = tokio::time::timeout(Duration::from_secs(10), receivers[k].recv())
                .await?
                .ok_or("sync stream ended")?;
            if let Some(e) = u.entries.into_iter().find(|e| e.id == id) {
                break e;
            }
        };
        let (_key, csr) = key_and_csr(&entry.spiffe_id)?;
        let signed = agents[k]
            .api
            .sign_workloads(vec![(entry.id.clone(), csr)])
            .await?;
        match signed.first() {
            Some((_, Ok(chain))) if !chain.is_empty() => {}
            other => return Err(format!("change {c}: not signed: {other:?}").into()),
        }
        latencies.push(t0.elapsed());
    }
    latencies.sort();
    let p50 = percentile(&latencies, 50.0);
    let p99 = percentile(&latencies, 99.0);
    eprintln!("change→SVID p50 {p50:?} p99 {p99:?}");

    // (3) Signing throughput: pre-generated CSRs, batches from several
    // agents at once.
    let mut batches = Vec::new();
    for (i, a) in agents.iter().enumerate().take(scale.sign_agents) {
        let mut batch = Vec::with_capacity(scale.batch);
        let ids: Vec<EntryView> = serde_json::from_slice(
            &admin
                .call(
                    http::Method::GET,
                    &format!("/v1/entries?parent_id={}", a.node_id),
                    None,
                )
                .await?,
        )?;
        for e in ids.iter().cycle().take(scale.batch) {
            let sid: SpiffeId = e.spiffe_id.parse()?;
            batch.push((e.id.parse::<EntryId>()?, key_and_csr(&sid)?.1));
        }
        batches.push((i, batch));
    }
    let signed = Arc::new(AtomicU64::new(0));
    let t = Instant::now();
    let end = t + Duration::from_secs(scale.sign_secs);
    let workers = batches.into_iter().map(|(i, batch)| {
        let api = agents[i].api.clone();
        let signed = signed.clone();
        async move {
            while Instant::now() < end {
                let out = api.sign_workloads(batch.clone()).await?;
                let ok = out.iter().filter(|(_, r)| r.is_ok()).count();
                if ok != out.len() {
                    return Err(format!("{} of {} CSRs refused", out.len() - ok, out.len()).into());
                }
                signed.fetch_add(ok as u64, Ordering::Relaxed);
            }
            BenchResult::Ok(())
        }
    });
    futures_util::future::try_join_all(workers).await?;
    let sign_rate = signed.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64();
    let (rss, hwm) = server.rss_kib();

    // Raw signing, with the server idle.
    let raw_1 = tokio::task::spawn_blocking(|| raw_sign_rate(1, 2)).await??;
    let raw_all = tokio::task::spawn_blocking(move || raw_sign_rate(cores, 2)).await??;
    let raw_verify = tokio::task::spawn_blocking(|| raw_verify_rate(2)).await??;
    // Per SVID the server signs once and verifies the CSR once.
    let floor = cores as f64 / (1.0 / raw_1 + 1.0 / raw_verify);
    let ratio = 100.0 * sign_rate / raw_all;
    let ratio_1 = 100.0 * sign_rate / raw_1;
    let load_after = load_average();

    for f in &followers {
        f.abort();
    }
    drop(server);

    let met = |ok: bool| if ok { "met" } else { "NOT met" };
    println!();
    println!(
        "Scale: {} agents, {total_entries} entries ({per_agent} per agent), {} changes, \
         {} s of signing from {} agents in batches of {}; {cores} cores; \
         load average {load_before} before, {load_after} after; run {:.0} s",
        agents.len(),
        scale.changes,
        scale.sign_secs,
        scale.sign_agents,
        scale.batch,
        run_start.elapsed().as_secs_f64()
    );
    println!();
    println!("| Measure | Value | Target |");
    println!("|---|---|---|");
    println!(
        "| Agents attested (join token, TLS + gRPC) | {} in {:.2} s | |",
        agents.len(),
        attest_time.as_secs_f64()
    );
    println!(
        "| Entries created via admin API (4 connections) | {create_rate:.0} /s ({:.1} s) | |",
        create_time.as_secs_f64()
    );
    println!(
        "| Entries synced per second at start | {sync_rate:.0} /s ({total_entries} in {:.3} s) | |",
        sync_time.as_secs_f64()
    );
    println!(
        "| Change → SVID at the agent, p50 | {:.1} ms | |",
        p50.as_secs_f64() * 1e3
    );
    println!(
        "| Change → SVID at the agent, p99 | {:.1} ms | < 1 s: {} |",
        p99.as_secs_f64() * 1e3,
        met(p99 < Duration::from_secs(1))
    );
    println!("| Workload SVIDs signed via node API | {sign_rate:.0} /s | |");
    println!("| Raw P-256 ECDSA signatures (aws-lc-rs, 1 thread) | {raw_1:.0} /s | |");
    println!("| Raw P-256 ECDSA signatures (aws-lc-rs, {cores} threads) | {raw_all:.0} /s | |");
    println!(
        "| Node API signing / raw ({cores} threads) | {ratio:.0} % | ≥ 50 %: {} |",
        met(ratio >= 50.0)
    );
    println!("| Node API signing / raw (1 thread) | {ratio_1:.0} % | |");
    println!("| Raw P-256 ECDSA verifications (aws-lc-rs, 1 thread) | {raw_verify:.0} /s | |");
    println!("| Crypto ceiling, 1 sign + 1 verify per SVID, {cores} threads | {floor:.0} /s | |");
    println!(
        "| Node API signing / crypto ceiling | {:.0} % | |",
        100.0 * sign_rate / floor
    );
    println!(
        "| Server RSS idle at start | {:.1} MiB | |",
        rss_idle as f64 / 1024.0
    );
    println!(
        "| Server RSS after load (VmRSS / VmHWM) | {:.1} / {:.1} MiB | |",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    Ok(())
}
