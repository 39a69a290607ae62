//! Building the sidecar and running its listeners.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use mtls_tower::{
    ClientConfigBuilder, MtlsConnector, MtlsServerConfig, ServerConfigBuilder, TrustPolicy,
    authorizer,
};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::app_pool::AppPool;
use crate::body::ProxyBody;
use crate::config::SidecarConfig;
use crate::endpoint::{Endpoints, ServiceKey, Target};
use crate::identity::Identity;
use crate::policy::Policies;
use crate::pool::Pool;
use crate::telemetry::{AccessLog, Metrics};

/// Why the sidecar could not start.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A listener could not bind.
    #[error("binding {what} on {addr}: {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// Its address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS configuration could not be built.
    #[error("TLS configuration: {0}")]
    Tls(#[from] mtls_tower::ConfigError),
    /// A static endpoint is invalid.
    #[error("static endpoint of {service}: {why}")]
    StaticEndpoint {
        /// The service.
        service: String,
        /// Why.
        why: String,
    },
}

/// Everything the connection handlers share.
pub(crate) struct Shared {
    pub(crate) config: SidecarConfig,
    pub(crate) identity: Identity,
    pub(crate) policies: Arc<Policies>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) access_log: Arc<AccessLog>,
    pub(crate) endpoints: Arc<Endpoints>,
    pub(crate) server_tls: MtlsServerConfig,
    pub(crate) tcp_connector: MtlsConnector,
    pub(crate) pool: Pool,
    /// HTTP/1.1 to the application.
    pub(crate) app: Arc<AppPool>,
    /// HTTP/2 (gRPC) to the application.
    pub(crate) app_h2: Client<HttpConnector, ProxyBody>,
    /// Flips when inbound should drain (graceful HTTP shutdown).
    pub(crate) drain: watch::Sender<bool>,
    /// Flips when the drain time is over: TCP splices close.
    pub(crate) drain_hard: watch::Sender<bool>,
}

impl Shared {
    /// The sidecar's own SPIFFE ID, when it holds an SVID.
    pub(crate) fn local_id(&self) -> Option<String> {
        self.identity
            .svid
            .x509_svid()
            .map(|s| s.spiffe_id().to_string())
    }

    /// The sidecar's own SPIFFE ID, typed.
    pub(crate) fn local_spiffe_id(&self) -> Option<spiffe_core::SpiffeId> {
        self.identity
            .svid
            .x509_svid()
            .map(|s| s.spiffe_id().clone())
    }
}

/// Changes the process's log filter (`/logging?level=...`).
pub type LogLevelSetter = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// What a running sidecar needs from its owner.
pub struct SidecarParts {
    /// The configuration.
    pub config: SidecarConfig,
    /// Where the SVID and bundles come from.
    pub identity: Identity,
    /// The policies (their owner updates them).
    pub policies: Arc<Policies>,
    /// The endpoints of called services (their owner updates them); static
    /// endpoints from the config are added at build.
    pub endpoints: Arc<Endpoints>,
    /// Whether policies have been received (readiness).
    pub policies_ready: watch::Receiver<bool>,
    /// Changes the log level for `/logging`, if the binary supports it.
    pub set_log_level: Option<LogLevelSetter>,
    /// Where access-log lines go; `None`: standard output when
    /// `admin.access_log` is set, else nowhere.
    pub access_log: Option<AccessLog>,
}

impl std::fmt::Debug for SidecarParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SidecarParts")
            .field("config", &self.config)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// A built sidecar: listeners bound, ready to [`Sidecar::run`].
pub struct Sidecar {
    shared: Arc<Shared>,
    inbound: TcpListener,
    outbound: TcpListener,
    admin: TcpListener,
    policies_ready: watch::Receiver<bool>,
    set_log_level: Option<LogLevelSetter>,
}

impl std::fmt::Debug for Sidecar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sidecar")
            .field("inbound", &self.inbound.local_addr().ok())
            .field("outbound", &self.outbound.local_addr().ok())
            .field("admin", &self.admin.local_addr().ok())
            .finish_non_exhaustive()
    }
}

/// The addresses a sidecar listens on (port 0 in the config is resolved).
#[derive(Debug, Clone, Copy)]
pub struct Addresses {
    /// Inbound mTLS listener.
    pub inbound: SocketAddr,
    /// Outbound listener for the application.
    pub outbound: SocketAddr,
    /// Admin listener.
    pub admin: SocketAddr,
}

/// Stops a running sidecar: SIGTERM's semantics.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    tx: watch::Sender<bool>,
}

impl ShutdownHandle {
    /// Stops accepting inbound connections, lets in-flight inbound
    /// requests finish for the configured drain time (outbound keeps
    /// working meanwhile), then ends [`Sidecar::run`].
    pub fn shutdown(&self) {
        // Stored even before `run` first subscribes.
        self.tx.send_replace(true);
    }
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, BuildError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BuildError::Bind { what, addr, source })
}

impl Sidecar {
    /// Binds the listeners and builds the TLS configurations.
    pub async fn build(parts: SidecarParts) -> Result<Sidecar, BuildError> {
        let SidecarParts {
            config,
            identity,
            policies,
            endpoints,
            policies_ready,
            set_log_level,
            access_log,
        } = parts;
        for (service, list) in &config.static_endpoints {
            let (key, _) =
                crate::endpoint::route(service, &config.workload.namespace).ok_or_else(|| {
                    BuildError::StaticEndpoint {
                        service: service.clone(),
                        why: "not a service.namespace name".to_owned(),
                    }
                })?;
            let mut targets = Vec::new();
            for e in list {
                let identity = e
                    .spiffe_id
                    .parse()
                    .map_err(|err| BuildError::StaticEndpoint {
                        service: service.clone(),
                        why: format!("{}: {err}", e.spiffe_id),
                    })?;
                targets.push(Target {
                    addr: e.address,
                    identity,
                });
            }
            endpoints.set_service(key, targets);
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        // Peers of every trust domain whose bundle the identity source
        // holds: the Workload API hands a workload its own trust domain's
        // bundle and those of the trust domains its entry federates with,
        // each verifying only its own IDs (FED-12).
        let trust = TrustPolicy::any_in_bundle_set();
        let server_tls = ServerConfigBuilder::new(
            provider.clone(),
            identity.svid.clone(),
            identity.bundles.clone(),
            authorizer::any(),
        )
        .trust_policy(trust.clone())
        // Clients that list AES-256/SHA-384 first (OpenSSL, curl, Envoy)
        // still get a SHA-256 key schedule: 8 % of an inbound handshake.
        .prefer_sha256_suites()
        .build()?;
        let pool_tls = ClientConfigBuilder::new(
            provider.clone(),
            identity.svid.clone(),
            identity.bundles.clone(),
            authorizer::any(),
        )
        .trust_policy(trust.clone())
        .alpn_protocols(vec![b"h2".to_vec()])
        .build()?;
        let tcp_tls = ClientConfigBuilder::new(
            provider,
            identity.svid.clone(),
            identity.bundles.clone(),
            authorizer::any(),
        )
        .trust_policy(trust)
        .alpn_protocols(Vec::new())
        .build()?;
        let timeout = config.limits.handshake_timeout;
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout));
        let app = Arc::new(AppPool::new(timeout, APP_IDLE_TIMEOUT, APP_MAX_IDLE));
        let app_h2 = Client::builder(BoxingExecutor).http2_only(true).build(http);
        let inbound = bind("inbound", config.inbound.listen).await?;
        let outbound = bind("outbound", config.outbound.listen).await?;
        let admin = bind("admin", config.admin.listen).await?;
        let metrics = Arc::new(Metrics::new(config.admin.metrics.clone()));
        let access_log = Arc::new(access_log.unwrap_or_else(|| {
            if config.admin.access_log {
                AccessLog::stdout()
            } else {
                AccessLog::disabled()
            }
        }));
        let shared = Arc::new(Shared {
            identity,
            policies,
            metrics,
            access_log,
            endpoints,
            server_tls,
            tcp_connector: MtlsConnector::new(tcp_tls).connect_timeout(timeout),
            pool: Pool::new(MtlsConnector::new(pool_tls).connect_timeout(timeout)),
            app,
            app_h2,
            drain: watch::Sender::new(false),
            drain_hard: watch::Sender::new(false),
            config,
        });
        Ok(Sidecar {
            shared,
            inbound,
            outbound,
            admin,
            policies_ready,
            set_log_level,
        })
    }

    /// The bound addresses.
    pub fn addresses(&self) -> Addresses {
        let addr = |l: &TcpListener| {
            l.local_addr()
                .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
        };
        Addresses {
            inbound: addr(&self.inbound),
            outbound: addr(&self.outbound),
            admin: addr(&self.admin),
        }
    }

    /// Runs until `shutdown` is triggered and the drain is over.
    pub async fn run(self, shutdown: ShutdownHandle) {
        let Sidecar {
            shared,
            inbound,
            outbound,
            admin,
            policies_ready,
            set_log_level,
        } = self;
        let mut stop = shutdown.tx.subscribe();
        let limit = Arc::new(Semaphore::new(shared.config.limits.max_handshakes.max(1)));
        let admin_task = tokio::spawn(crate::admin::serve(
            admin,
            shared.clone(),
            policies_ready,
            set_log_level,
        ));
        let outbound_task =
            tokio::spawn(accept_loop(outbound, shared.clone(), None, |s, t, r, _| {
                spawn_boxed(crate::outbound::serve(s, t, r));
            }));
        let expiry_task = tokio::spawn(expiry_gauge(shared.clone()));
        let prune_task = tokio::spawn(prune_pool(shared.clone()));
        let prune_app_task = tokio::spawn(prune_app_pool(shared.app.clone()));
        // Inbound runs here so that it stops first.
        {
            let inbound_loop = accept_loop(inbound, shared.clone(), Some(limit), |s, t, r, p| {
                spawn_boxed(crate::inbound::serve(s, t, r, p));
            });
            tokio::pin!(inbound_loop);
            tokio::select! {
                _ = inbound_loop.as_mut() => {}
                _ = stop.wait_for(|s| *s) => {}
            }
        }
        tracing::info!(
            drain = ?shared.config.drain,
            "draining: inbound closed, in-flight requests finishing, outbound still serving"
        );
        shared.drain.send_replace(true);
        tokio::time::sleep(shared.config.drain).await;
        shared.drain_hard.send_replace(true);
        outbound_task.abort();
        admin_task.abort();
        expiry_task.abort();
        prune_task.abort();
        prune_app_task.abort();
    }
}

impl ShutdownHandle {
    /// A new handle, not yet triggered.
    pub fn new() -> Self {
        ShutdownHandle {
            tx: watch::Sender::new(false),
        }
    }
}

impl Default for ShutdownHandle {
    fn default() -> Self {
        Self::new()
    }
}

/// Spawns `fut` boxed. A task moves its future whole when it is created
/// and each time its stage changes; a connection's future is several
/// kilobytes, and boxed only a pointer moves.
fn spawn_boxed<F>(fut: F)
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(Box::pin(fut));
}

/// Hyper's executor: spawns what hyper hands it (a task per HTTP/2
/// request on both sides, a connection's task) with [`spawn_boxed`].
/// Hyper's futures are enums as large as their largest variant, a whole
/// connection.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BoxingExecutor;

impl<F> hyper::rt::Executor<F> for BoxingExecutor
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        spawn_boxed(fut);
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    limit: Option<Arc<Semaphore>>,
    spawn: impl Fn(Arc<Shared>, tokio::net::TcpStream, SocketAddr, Option<OwnedSemaphorePermit>),
) {
    loop {
        let permit = match &limit {
            Some(l) => l.clone().acquire_owned().await.ok(),
            None => None,
        };
        match listener.accept().await {
            Ok((tcp, remote)) => spawn(shared.clone(), tcp, remote, permit),
            Err(e) => {
                // Out of file descriptors and the like: back off, keep going.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Closes pooled connections to endpoints that left discovery.
async fn prune_pool(shared: Arc<Shared>) {
    let mut changes = shared.endpoints.subscribe();
    while changes.changed().await.is_ok() {
        shared.pool.retain(|t| shared.endpoints.contains(t));
    }
}

/// How long an idle HTTP/1.1 connection to the application is kept.
const APP_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How many idle HTTP/1.1 connections to the application are kept.
const APP_MAX_IDLE: usize = 256;

/// Closes idle application connections past their idle timeout, also
/// when no request comes to do it.
async fn prune_app_pool(app: Arc<AppPool>) {
    let mut tick = tokio::time::interval(APP_IDLE_TIMEOUT / 3);
    loop {
        tick.tick().await;
        app.prune();
    }
}

/// Keeps `mesh_certificate_expiry_seconds` current.
async fn expiry_gauge(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if let Some(svid) = shared.identity.svid.x509_svid() {
            let left = svid
                .not_after()
                .duration_since(std::time::SystemTime::now())
                .map_or(0.0, |d| d.as_secs_f64());
            shared.metrics.set_certificate_expiry(left);
        }
    }
}

impl Shared {
    /// For `/clusters`.
    pub(crate) fn clusters(&self) -> serde_json::Value {
        let services: Vec<serde_json::Value> = self
            .endpoints
            .all()
            .into_iter()
            .map(|(key, b): (ServiceKey, _)| {
                serde_json::json!({
                    "service": key.to_string(),
                    "endpoints": b.status(),
                })
            })
            .collect();
        serde_json::json!({
            "services": services,
            "open_connections": self.pool.open_connections(),
        })
    }
}
