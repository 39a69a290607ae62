//! `mesh-node agent`: the node agent.
//!
//! [`build`] attests the node (or reloads the node SVID a previous run
//! persisted), then runs three loops: entry sync with the server (a push
//! stream), workload SVID signing in batches (new entries at once, renewal
//! at half-life with jitter), and node SVID renewal. It serves the
//! Workload API on a Unix socket from its cache, which keeps serving
//! through server outages.

mod cache;
mod feed;
mod persist;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry as MetricsRegistry;
use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256, SanType};
use spiffe_core::{
    MemoryBundleSource, MemorySvidSource, PrivateKey, SpiffeBundle, SpiffeId, X509Svid,
};
use tokio::sync::watch;
use workload_api::{UnixAttestor, WorkloadApiServer};

pub use cache::AgentCache;
pub use persist::PersistError;

use crate::config::{AgentConfig, ConfigError};
use crate::node_api::{GrpcNodeApi, NodeApi, NodeApiError, NodeTls};

/// CSRs sent in one signing call, at most.
const SIGN_BATCH: usize = 500;

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The configuration cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The data directory or workload socket cannot be used.
    #[error(transparent)]
    Fs(#[from] crate::fsutil::FsError),
    /// Persisted state cannot be read or written.
    #[error(transparent)]
    Persist(#[from] PersistError),
    /// No node SVID on disk and no way to attest.
    #[error("the agent has no node SVID in {0} and no join token to attest with")]
    NoCredentials(PathBuf),
    /// No bundle to authenticate the server with.
    #[error(
        "the agent needs trust_bundle_path to authenticate the server on first contact \
         (or insecure_bootstrap = true)"
    )]
    NoTrustBundle,
    /// The x509pop credentials are unusable.
    #[error("x509pop credentials {path}: {message}")]
    X509Pop {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The trust bundle file is unusable.
    #[error("trust bundle {path}: {message}")]
    TrustBundle {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// Attestation failed.
    #[error("node attestation failed: {0}")]
    Attestation(NodeApiError),
    /// A key or CSR could not be made.
    #[error("generating a key: {0}")]
    Key(String),
    /// A listener could not be bound.
    #[error("listening on {what}: {source}")]
    Bind {
        /// Which listener.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// How the agent is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AgentHealth {
    /// Starting: no full sync yet.
    Starting,
    /// In sync with the server.
    Synced,
    /// Serving from its cache while the server cannot be reached.
    Degraded {
        /// Why.
        reason: String,
    },
    /// The server refused the node (evicted); waiting for a new join token.
    Refused {
        /// The server's words.
        reason: String,
    },
}

/// A running agent.
#[derive(Debug, Clone)]
pub struct AgentHandle {
    /// The node's SPIFFE ID.
    pub node_id: SpiffeId,
    /// The Workload API socket.
    pub workload_socket: PathBuf,
    /// The feed socket (policies and discovery for sidecars).
    pub feed_socket: PathBuf,
    /// The health endpoint's address, if any.
    pub health_addr: Option<SocketAddr>,
    /// The cache the Workload API serves from.
    pub cache: Arc<AgentCache>,
    health: watch::Receiver<AgentHealth>,
    shutdown: watch::Sender<bool>,
}

impl AgentHandle {
    /// Stops the agent.
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// The agent's health, and its changes.
    pub fn health(&self) -> watch::Receiver<AgentHealth> {
        self.health.clone()
    }
}

#[derive(Debug)]
struct AgentMetrics {
    entries: Gauge,
    svids: Gauge,
    signed: Counter,
    errors: Family<Vec<(&'static str, String)>, Counter>,
    synced: Gauge,
    /// From the server sending a sync message to the agent applying it.
    sync_lag: prometheus_client::metrics::histogram::Histogram,
    /// When the last sync message was applied (Unix seconds).
    last_sync: Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        AgentMetrics {
            entries: Gauge::default(),
            svids: Gauge::default(),
            signed: Counter::default(),
            errors: Family::default(),
            synced: Gauge::default(),
            // 1 ms to about 16 s.
            sync_lag: prometheus_client::metrics::histogram::Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 15),
            ),
            last_sync: Gauge::default(),
        }
    }
}

impl AgentMetrics {
    fn register(self: &Arc<Self>, r: &mut MetricsRegistry) {
        let r = r.sub_registry_with_prefix("mesh_node_agent");
        r.register(
            "entries",
            "Registration entries synced",
            self.entries.clone(),
        );
        r.register(
            "svid_cache_size",
            "Workload SVIDs cached",
            self.svids.clone(),
        );
        r.register("svids_signed", "Workload SVIDs signed", self.signed.clone());
        r.register("errors", "Errors by kind", self.errors.clone());
        r.register(
            "synced",
            "1 while in sync with the server, 0 while serving from cache",
            self.synced.clone(),
        );
        r.register(
            "sync_lag_seconds",
            "From the server sending a sync message (an entry, bundle or policy change) to the agent applying it",
            self.sync_lag.clone(),
        );
        r.register(
            "last_sync_timestamp_seconds",
            "When the last sync message was applied, in Unix seconds",
            self.last_sync.clone(),
        );
    }

    /// Records one applied sync message the server sent at `sent_at`.
    fn synced_at(&self, sent_at: Option<std::time::SystemTime>) {
        let now = std::time::SystemTime::now();
        if let Some(sent) = sent_at {
            // Clocks of two hosts: a message from the future counts as 0.
            let lag = now.duration_since(sent).unwrap_or_default();
            self.sync_lag.observe(lag.as_secs_f64());
        }
        if let Ok(t) = now.duration_since(std::time::UNIX_EPOCH) {
            self.last_sync.set(t.as_secs_f64());
        }
    }
    fn error(&self, kind: &'static str) {
        self.errors
            .get_or_create(&vec![("kind", kind.into())])
            .inc();
    }
}

/// A fresh P-256 key and a CSR for it naming `id` (and `dns`).
fn key_and_csr(id: Option<&SpiffeId>, dns: &[String]) -> Result<(KeyPair, Vec<u8>), AgentError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| AgentError::Key(e.to_string()))?;
    let mut params = CertificateParams::default();
    if let Some(id) = id {
        let uri = id
            .as_str()
            .try_into()
            .map_err(|e: rcgen::Error| AgentError::Key(e.to_string()))?;
        params.subject_alt_names.push(SanType::URI(uri));
    }
    for d in dns {
        let name = d
            .clone()
            .try_into()
            .map_err(|e: rcgen::Error| AgentError::Key(e.to_string()))?;
        params.subject_alt_names.push(SanType::DnsName(name));
    }
    let csr = params
        .serialize_request(&key)
        .map_err(|e| AgentError::Key(e.to_string()))?;
    Ok((key, csr.der().to_vec()))
}

fn svid_from(
    chain: Vec<rustls_pki_types::CertificateDer<'static>>,
    key: &KeyPair,
) -> Result<X509Svid, String> {
    let key = PrivateKey::from_pkcs8_der(&key.serialize_der()).map_err(|e| e.to_string())?;
    X509Svid::new(chain, key).map_err(|e| e.to_string())
}

/// The bundle in `path`: SPIFFE bundle JSON, or PEM certificates.
fn read_trust_bundle(
    td: &spiffe_core::TrustDomain,
    path: &std::path::Path,
) -> Result<SpiffeBundle, AgentError> {
    let fail = |message: String| AgentError::TrustBundle {
        path: path.to_owned(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    if bytes.trim_ascii_start().starts_with(b"{") {
        SpiffeBundle::parse(td.clone(), &bytes).map_err(|e| fail(e.to_string()))
    } else {
        spiffe_core::X509Bundle::from_pem(td.clone(), &bytes)
            .map(SpiffeBundle::from_x509)
            .map_err(|e| fail(e.to_string()))
    }
}

/// The x509pop evidence for `csr`, when the agent has x509pop credentials.
fn x509pop_evidence(config: &AgentConfig, csr: &[u8]) -> Result<Option<Vec<u8>>, AgentError> {
    use rustls_pki_types::pem::PemObject;
    let (Some(cert), Some(key)) = (&config.x509pop_cert_path, &config.x509pop_key_path) else {
        return Ok(None);
    };
    let fail = |what: &std::path::Path, e: String| AgentError::X509Pop {
        path: what.to_owned(),
        message: e,
    };
    let chain = rustls_pki_types::CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| fail(cert, e.to_string()))?;
    let key_der = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_file(key)
        .map_err(|e| fail(key, e.to_string()))?;
    let pair = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        key_der.secret_pkcs8_der(),
    )
    .map_err(|e| fail(key, format!("not a P-256 PKCS#8 key: {e}")))?;
    let message = svid_ca::X509PopEvidence::signed_message(csr);
    let signature = pair
        .sign(&aws_lc_rs::rand::SystemRandom::new(), &message)
        .map_err(|_| fail(key, "signing failed".into()))?;
    Ok(Some(
        svid_ca::X509PopEvidence::new(&chain, signature.as_ref()).to_payload(),
    ))
}

/// The join token: the configured one, or the first line of
/// `<data_dir>/join-token` (which an operator may replace to re-attest an
/// evicted agent without a restart).
fn join_token(config: &AgentConfig) -> Option<String> {
    let file = config.data_dir.join("join-token");
    std::fs::read_to_string(file)
        .ok()
        .and_then(|s| s.lines().next().map(|l| l.trim().to_owned()))
        .filter(|t| !t.is_empty())
        .or_else(|| config.join_token.clone())
}

struct Agent {
    config: AgentConfig,
    node: Arc<GrpcNodeApi>,
    node_svid: Arc<MemorySvidSource>,
    server_trust: Arc<MemoryBundleSource>,
    cache: Arc<AgentCache>,
    metrics: Arc<AgentMetrics>,
    health: watch::Sender<AgentHealth>,
    used_token: std::sync::Mutex<Option<String>>,
    node_renew_at: std::sync::Mutex<SystemTime>,
}

impl Agent {
    /// Attests (x509pop when configured, else the join token) and persists
    /// the node SVID.
    async fn attest(&self) -> Result<SpiffeId, AgentError> {
        let (key, csr) = key_and_csr(None, &[])?;
        let (attestor, payload, token) = match x509pop_evidence(&self.config, &csr)? {
            Some(evidence) => (svid_ca::X509POP, evidence, None),
            None => {
                let token = join_token(&self.config)
                    .ok_or_else(|| AgentError::NoCredentials(self.config.data_dir.clone()))?;
                ("join_token", token.clone().into_bytes(), Some(token))
            }
        };
        let attested = self
            .node
            .attest(attestor, payload, csr)
            .await
            .map_err(AgentError::Attestation)?;
        let svid = svid_from(attested.chain, &key).map_err(AgentError::Key)?;
        persist::save_bundle(&self.config.data_dir, &attested.bundle)?;
        persist::save_svid(&self.config.data_dir, &svid)?;
        self.server_trust.insert(attested.bundle.clone());
        self.cache.set_bundle(attested.bundle);
        self.set_node_svid(svid);
        *self
            .used_token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = token;
        tracing::info!(node = %attested.spiffe_id, attestor, "attested");
        Ok(attested.spiffe_id)
    }

    fn set_node_svid(&self, svid: X509Svid) {
        *self
            .node_renew_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            renew_at(svid.not_after(), SystemTime::now(), "node");
        self.node_svid.set(svid);
    }

    fn set_health(&self, h: AgentHealth) {
        self.metrics
            .synced
            .set(i64::from(matches!(h, AgentHealth::Synced)));
        self.health.send_if_modified(|cur| {
            if *cur == h {
                false
            } else {
                *cur = h;
                true
            }
        });
    }

    /// Follows the server's sync stream, forever, reconnecting with capped
    /// backoff; while away, the cache keeps serving.
    async fn sync_loop(self: Arc<Self>) {
        let mut pause = self.config.retry_initial;
        loop {
            match self.node.sync().await {
                Ok(mut stream) => {
                    while let Some(item) = stream.next().await {
                        match item {
                            Ok(update) => {
                                pause = self.config.retry_initial;
                                if let Some(b) = &update.bundle {
                                    self.server_trust.insert(b.clone());
                                    if let Err(error) =
                                        persist::save_bundle(&self.config.data_dir, b)
                                    {
                                        tracing::warn!(%error, "persisting the bundle failed");
                                    }
                                }
                                let sent_at = update.sent_at;
                                self.cache.apply(update);
                                self.metrics.synced_at(sent_at);
                                self.metrics.entries.set(self.cache.entry_count() as i64);
                                self.set_health(AgentHealth::Synced);
                                self.sign_due().await;
                            }
                            Err(e) => {
                                self.on_error(e).await;
                                break;
                            }
                        }
                    }
                }
                Err(e) => self.on_error(e).await,
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(30));
        }
    }

    async fn on_error(&self, e: NodeApiError) {
        match e {
            NodeApiError::PermissionDenied(reason) => {
                self.metrics.error("refused");
                tracing::error!(%reason, "the server refused this node");
                self.set_health(AgentHealth::Refused { reason });
                // A node the server no longer trusts vouches for nobody.
                self.cache.withdraw_all();
                self.try_reattest().await;
            }
            other => {
                self.metrics.error("sync");
                tracing::warn!(error = %other, "lost the server; serving from cache");
                self.set_health(AgentHealth::Degraded {
                    reason: other.to_string(),
                });
            }
        }
    }

    /// After eviction: attest again with x509pop, or with a join token
    /// other than the one already used.
    async fn try_reattest(&self) {
        let x509pop = self.config.x509pop_cert_path.is_some();
        let fresh = join_token(&self.config);
        let used = self
            .used_token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if !x509pop && (fresh.is_none() || fresh == used) {
            return;
        }
        persist::forget_svid(&self.config.data_dir);
        self.node_svid.withdraw();
        match self.attest().await {
            Ok(id) => tracing::info!(node = %id, "re-attested after eviction"),
            Err(error) => tracing::error!(%error, "re-attestation failed"),
        }
    }

    /// Signs every entry that has no SVID or whose SVID is past half-life
    /// (with jitter), in batches.
    async fn sign_due(&self) {
        let now = SystemTime::now();
        let max = self.config.max_cached_svids;
        let mut have = self.cache.svid_count();
        let mut due = Vec::new();
        for (entry, svid) in self.cache.entries() {
            let renew = match &svid {
                None => {
                    if have >= max {
                        self.metrics.error("cache_full");
                        continue;
                    }
                    have += 1;
                    true
                }
                Some((_, due)) => *due <= now,
            };
            if renew {
                due.push(entry);
            }
        }
        for batch in due.chunks(SIGN_BATCH) {
            let mut keys = Vec::with_capacity(batch.len());
            let mut csrs = Vec::with_capacity(batch.len());
            for e in batch {
                match key_and_csr(Some(&e.spiffe_id), &e.dns_names) {
                    Ok((k, c)) => {
                        keys.push((e.id.clone(), k));
                        csrs.push((e.id.clone(), c));
                    }
                    Err(error) => tracing::error!(%error, "CSR"),
                }
            }
            match self.node.sign_workloads(csrs).await {
                Ok(signed) => {
                    let mut svids = Vec::new();
                    for (id, outcome) in signed {
                        let Some((_, key)) = keys.iter().find(|(k, _)| *k == id) else {
                            continue;
                        };
                        match outcome.and_then(|chain| svid_from(chain, key)) {
                            Ok(svid) => svids.push((id, svid)),
                            Err(error) => {
                                self.metrics.error("sign");
                                tracing::warn!(entry = %id, %error, "workload SVID not signed");
                            }
                        }
                    }
                    self.metrics.signed.inc_by(svids.len() as u64);
                    self.cache.put_svids(svids);
                    self.metrics.svids.set(self.cache.svid_count() as i64);
                }
                Err(error) => {
                    self.metrics.error("sign");
                    tracing::warn!(%error, "signing workload SVIDs failed; keeping the cached ones");
                    return;
                }
            }
        }
    }

    /// Re-checks due SVIDs every second and renews the node SVID at
    /// half-life.
    async fn renew_loop(self: Arc<Self>) {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if matches!(*self.health.borrow(), AgentHealth::Synced) {
                self.sign_due().await;
            }
            let due = *self
                .node_renew_at
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if due > SystemTime::now() {
                continue;
            }
            let Ok((key, csr)) = key_and_csr(None, &[]) else {
                continue;
            };
            match self.node.renew_node(csr).await {
                Ok(chain) => match svid_from(chain, &key) {
                    Ok(svid) => {
                        if let Err(error) = persist::save_svid(&self.config.data_dir, &svid) {
                            tracing::error!(%error, "persisting the node SVID failed");
                        }
                        self.set_node_svid(svid);
                        tracing::info!("node SVID renewed");
                    }
                    Err(error) => tracing::warn!(%error, "renewed node SVID unusable"),
                },
                Err(error) => tracing::warn!(%error, "renewing the node SVID failed; retrying"),
            }
        }
    }
}

/// When an SVID received at `now` is due for renewal: at half of what
/// remains of it, moved earlier by up to a tenth (a jitter that is stable
/// per `seed`), so SVIDs issued together do not all renew together.
pub(crate) fn renew_at(not_after: SystemTime, now: SystemTime, seed: &str) -> SystemTime {
    let left = not_after.duration_since(now).unwrap_or_default();
    let spread = seed
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
        % 100;
    now + left.mul_f64(0.5 - f64::from(spread) / 1000.0)
}

/// Starts an agent: reloads or obtains the node SVID, binds the Workload
/// API socket and the health port. Returns the handle and the future that
/// runs the agent until [`AgentHandle::shutdown`].
pub async fn build(
    config: AgentConfig,
) -> Result<(AgentHandle, impl Future<Output = ()> + use<>), AgentError> {
    let td = config.trust_domain()?;
    crate::fsutil::prepare_data_dir(&config.data_dir)?;
    let mut metrics_registry = MetricsRegistry::default();
    let metrics = Arc::new(AgentMetrics::default());
    metrics.register(&mut metrics_registry);

    let node_svid = Arc::new(MemorySvidSource::empty());
    let server_trust = Arc::new(MemoryBundleSource::new(spiffe_core::BundleSet::new()));
    let persisted = persist::load(&config.data_dir, &td)?;
    match (&persisted, &config.trust_bundle_path) {
        (Some((_, bundle)), _) => server_trust.insert(bundle.clone()),
        (None, Some(path)) => server_trust.insert(read_trust_bundle(&td, path)?),
        (None, None) if config.insecure_bootstrap => {}
        (None, None) => return Err(AgentError::NoTrustBundle),
    }
    let server_id = SpiffeId::from_path(&td, "/server").map_err(|e| ConfigError::Invalid {
        field: "trust_domain",
        message: e.to_string(),
    })?;
    let node = Arc::new(
        GrpcNodeApi::new(NodeTls {
            address: config.server_address.clone(),
            server_id,
            node_svid: node_svid.clone(),
            bundles: server_trust.clone(),
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
            insecure_bootstrap: config.insecure_bootstrap,
            keepalive_interval: config.sync_keepalive,
            keepalive_timeout: config.sync_keepalive_timeout,
        })
        .map_err(AgentError::Attestation)?,
    );
    let cache = Arc::new(AgentCache::new(node.clone()));
    let (health_tx, health_rx) = watch::channel(AgentHealth::Starting);
    let agent = Arc::new(Agent {
        config: config.clone(),
        node,
        node_svid: node_svid.clone(),
        server_trust,
        cache: cache.clone(),
        metrics,
        health: health_tx,
        used_token: std::sync::Mutex::new(None),
        node_renew_at: std::sync::Mutex::new(SystemTime::now()),
    });
    let node_id = match persisted {
        Some((svid, bundle)) => {
            tracing::info!(node = %svid.spiffe_id(), "reusing the persisted node SVID");
            let id = svid.spiffe_id().clone();
            cache.set_bundle(bundle);
            agent.set_node_svid(svid);
            *agent
                .used_token
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = join_token(&config);
            id
        }
        None => agent.attest().await?,
    };

    let socket = crate::fsutil::bind_private_socket(&config.workload_socket)?;
    let feed_socket = crate::fsutil::bind_private_socket(&config.feed_socket())?;
    // Workloads of any user connect: the socket is world-writable, and
    // attestation decides what each caller gets.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            &config.workload_socket,
            std::fs::Permissions::from_mode(0o777),
        )
        .map_err(|source| AgentError::Bind {
            what: "workload socket permissions".into(),
            source,
        })?;
    }
    let health_listener = crate::health::bind(config.health_listen)
        .await
        .map_err(|source| AgentError::Bind {
            what: "health".into(),
            source,
        })?;
    let health_addr = health_listener.as_ref().and_then(|l| l.local_addr().ok());
    let attestor = Arc::new(
        UnixAttestor::new()
            .with_path(config.attest_binary)
            .with_sha256(config.attest_binary),
    );
    let server = WorkloadApiServer::new(cache.clone(), attestor.clone());
    let policies_feed = feed::PoliciesFeed {
        cache: cache.clone(),
        policies: cache.policies(),
    };
    let relay = feed::DiscoveryRelay {
        cache: cache.clone(),
        node: agent.node.clone(),
        leases: Arc::default(),
    };

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let handle = AgentHandle {
        node_id,
        workload_socket: config.workload_socket.clone(),
        feed_socket: config.feed_socket(),
        health_addr,
        cache,
        health: health_rx.clone(),
        shutdown: shutdown_tx,
    };
    let stopped = move || {
        let mut rx = shutdown_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let (ready_tx, ready_rx) = watch::channel(false);
    let registry = Arc::new(metrics_registry);
    let socket_paths = [config.workload_socket.clone(), config.feed_socket()];
    let task = async move {
        let ready_health = {
            let mut h = health_rx.clone();
            async move {
                loop {
                    ready_tx.send_replace(!matches!(*h.borrow_and_update(), AgentHealth::Starting));
                    if h.changed().await.is_err() {
                        return;
                    }
                }
            }
        };
        let stop_health = stopped.clone();
        let health = async move {
            if let Some(l) = health_listener
                && let Err(error) = crate::health::serve(l, ready_rx, registry, stop_health()).await
            {
                tracing::error!(%error, "health endpoint failed");
            }
        };
        let workload_api = async {
            if let Err(error) = server.serve_unix(socket, stopped()).await {
                tracing::error!(%error, "Workload API failed");
            }
        };
        let stop_feed = stopped.clone();
        let feed = async move {
            if let Err(error) =
                feed::serve(feed_socket, attestor, policies_feed, relay, stop_feed()).await
            {
                tracing::error!(%error, "feed socket failed");
            }
        };
        tokio::select! {
            () = agent.clone().sync_loop() => {}
            () = agent.clone().renew_loop() => {}
            () = ready_health => {}
            _ = async { tokio::join!(health, workload_api, feed) } => {}
        }
        for p in &socket_paths {
            let _ = std::fs::remove_file(p);
        }
    };
    Ok((handle, task))
}
