//! `mesh-node server`: the control plane.
//!
//! [`build`] turns a [`ServerConfig`] into a running [`ServerHandle`] and
//! the future that drives it: the certificate authority with its SQLite
//! store and rotation schedule, the registry, join-token attestation, the
//! node API (gRPC over TLS) and the admin API (a 0600 Unix socket).

mod admin;
mod discovery_grpc;
mod federation;
mod grpc;
mod identity;
mod metrics;
mod policy;
mod service;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use futures_util::FutureExt;
use mtls_tower::{ServerConfigBuilder, authorizer};
use prometheus_client::registry::Registry as MetricsRegistry;
use spiffe_core::SpiffeBundle;
use svid_ca::{
    CaConfig, CertificateAuthority, JoinTokenAttestor, NodeStore, Registry, SqliteStore,
    SystemClock,
};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use federation::{FederationRegistry, RelationshipError};
pub use metrics::ServerMetrics;
pub use policy::{PolicyStatus, PolicyStore};
pub use service::{NodeError, NodeService, NodeView, Signed};

use crate::config::{ConfigError, ServerConfig};

/// HTTP/2 PING interval the node API sends to agents.
const NODE_API_KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(30);
/// How long an agent may leave a PING unanswered.
const NODE_API_KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The configuration cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The data directory or admin socket cannot be used.
    #[error(transparent)]
    Fs(#[from] crate::fsutil::FsError),
    /// The store failed to open.
    #[error("store: {0}")]
    Store(#[from] svid_ca::StoreError),
    /// The authority failed to start.
    #[error("certificate authority: {0}")]
    Ca(#[from] svid_ca::CaError),
    /// The registry failed to load.
    #[error("registry: {0}")]
    Registry(#[from] svid_ca::EntryError),
    /// Issuing the server's own SVID failed.
    #[error("server SVID: {0}")]
    Issue(#[from] svid_ca::IssueError),
    /// TLS could not be configured.
    #[error("TLS: {0}")]
    Tls(#[from] mtls_tower::ConfigError),
    /// A federation relationship (from the file or the data directory)
    /// cannot work.
    #[error("federation: {0}")]
    Federation(#[from] RelationshipError),
    /// The bundle endpoint cannot be served.
    #[error("bundle endpoint: {0}")]
    BundleEndpoint(#[from] mtls_tower::federation::FederationError),
    /// A listener could not be bound.
    #[error("listening on {what}: {source}")]
    Bind {
        /// Which listener and address.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A listener failed while serving.
    #[error("{what} failed: {message}")]
    Serve {
        /// Which listener.
        what: &'static str,
        /// Why.
        message: String,
    },
}

/// A running server.
#[derive(Debug, Clone)]
pub struct ServerHandle {
    /// The node API's bound address.
    pub node_api_addr: SocketAddr,
    /// The admin socket's path.
    pub admin_socket: PathBuf,
    /// The admin API's mTLS address, if it is served.
    pub admin_addr: Option<SocketAddr>,
    /// The health endpoint's bound address, if any.
    pub health_addr: Option<SocketAddr>,
    /// The bundle endpoint's bound address, if it is served.
    pub bundle_endpoint_addr: Option<SocketAddr>,
    /// The node API's logic (for in-process use and tests).
    pub service: Arc<NodeService>,
    shutdown: watch::Sender<bool>,
}

impl ServerHandle {
    /// Asks the server to stop: listeners close, open sync streams end
    /// with `Unavailable`, and the server's future returns.
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// The trust domain's current bundle.
    pub fn bundle(&self) -> Arc<spiffe_core::SpiffeBundle> {
        self.service.ca().bundle()
    }
}

/// Keeps the `policy_version` gauge current.
async fn watch_policy_version(policies: Arc<PolicyStore>, metrics: Arc<ServerMetrics>) {
    let mut rx = policies.subscribe();
    while rx.changed().await.is_ok() {
        let v = rx.borrow_and_update().version;
        metrics.policy_version.set(v as i64);
    }
}

/// The x509pop attestor over the CA certificates in `path`.
fn x509pop_attestor(
    td: &spiffe_core::TrustDomain,
    path: &std::path::Path,
    store: Arc<SqliteStore>,
) -> Result<svid_ca::X509PopAttestor, ServerError> {
    use rustls_pki_types::pem::PemObject;
    let invalid = |message: String| {
        ServerError::Config(ConfigError::Invalid {
            field: "x509pop_ca_bundle_path",
            message,
        })
    };
    let cas = rustls_pki_types::CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
    if cas.is_empty() {
        return Err(invalid(format!("{}: no certificates", path.display())));
    }
    svid_ca::X509PopAttestor::new(td.clone(), &cas, store, Arc::new(SystemClock))
        .map_err(|e| invalid(e.to_string()))
}

/// Binds the bundle endpoint, if configured: its address and the future
/// serving it. It publishes the CA's current bundle (X.509 and JWT
/// authorities; its `spiffe_sequence` grows with every change).
async fn bundle_endpoint(
    config: &ServerConfig,
    ca: &Arc<CertificateAuthority>,
    svid: Arc<spiffe_core::MemorySvidSource>,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Option<(SocketAddr, impl Future<Output = ()> + use<>)>, ServerError> {
    use mtls_tower::federation::{BundleEndpoint, EndpointTls};
    let Some(settings) = &config.federation.bundle_endpoint else {
        return Ok(None);
    };
    let invalid = |message: &str| {
        ServerError::Config(ConfigError::Invalid {
            field: "federation.bundle_endpoint",
            message: message.into(),
        })
    };
    let tls = match settings.profile.as_str() {
        "https_spiffe" => EndpointTls::https_spiffe(provider, svid)?,
        "https_web" => {
            let (Some(cert), Some(key)) = (&settings.cert_file, &settings.key_file) else {
                return Err(invalid("profile https_web needs cert_file and key_file"));
            };
            EndpointTls::https_web(provider, cert, key)?
        }
        _ => return Err(invalid("profile must be https_spiffe or https_web")),
    };
    let ca = ca.clone();
    let endpoint = BundleEndpoint::new(move || Some(SpiffeBundle::clone(&ca.bundle())))
        .refresh_hint(settings.refresh_hint);
    let listener =
        TcpListener::bind(settings.listen)
            .await
            .map_err(|source| ServerError::Bind {
                what: format!("bundle endpoint {}", settings.listen),
                source,
            })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind {
        what: "bundle endpoint".into(),
        source,
    })?;
    tracing::info!(%addr, profile = %settings.profile, "serving the trust bundle");
    Ok(Some((
        addr,
        mtls_tower::federation::serve(listener, tls, endpoint),
    )))
}

/// Starts a server: opens the store, starts the authority, binds every
/// listener. Returns the handle and the future that serves until
/// [`ServerHandle::shutdown`]; spawn or await it.
pub async fn build(
    config: ServerConfig,
) -> Result<
    (
        ServerHandle,
        impl Future<Output = Result<(), ServerError>> + use<>,
    ),
    ServerError,
> {
    let td = config.trust_domain()?;
    crate::fsutil::prepare_data_dir(&config.data_dir)?;
    let store = Arc::new(SqliteStore::open(&config.data_dir.join("store"))?);

    let mut ca_config = CaConfig::new(td.clone());
    ca_config.ca_ttl = config.ca.ca_ttl;
    ca_config.x509_svid_ttl = config.ca.x509_svid_ttl;
    ca_config.jwt_svid_ttl = config.ca.jwt_svid_ttl;
    let max_ttl = ca_config.max_svid_ttl();
    let ca = Arc::new(
        CertificateAuthority::builder(ca_config)
            .store(store.clone())
            .build()?,
    );
    let registry = Arc::new(Registry::with_store(td.clone(), max_ttl, store.clone())?);
    let clock = Arc::new(SystemClock);
    let tokens = Arc::new(JoinTokenAttestor::new(td.clone(), store.clone(), clock));

    let mut metrics_registry = MetricsRegistry::default();
    let metrics = Arc::new(ServerMetrics::default());
    metrics.register(&mut metrics_registry);
    metrics.entries.set(registry.len() as i64);
    metrics
        .agents
        .set(store.list_attested_nodes().map_or(0, |n| n.len() as i64));

    let mut attestors: Vec<Arc<dyn svid_ca::NodeAttestor>> = vec![tokens.clone()];
    if let Some(path) = &config.x509pop_ca_bundle_path {
        attestors.push(Arc::new(x509pop_attestor(&td, path, store.clone())?));
    }
    let policies = Arc::new(
        PolicyStore::open(config.policy_dir.clone()).map_err(|message| {
            ServerError::Config(ConfigError::Invalid {
                field: "policy_dir",
                message,
            })
        })?,
    );
    metrics
        .policy_version
        .set(policies.current().version as i64);
    let services = Arc::new(crate::discovery::ServiceRegistry::new());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let federation = FederationRegistry::open(
        td.clone(),
        &config.data_dir,
        provider.clone(),
        metrics.clone(),
        &config.federation.relationships,
    )?;
    let service = Arc::new(NodeService::new(
        ca.clone(),
        registry.clone(),
        store.clone(),
        attestors,
        metrics.clone(),
        policies.clone(),
        services.clone(),
        federation.clone(),
    ));

    // The node API's own identity, renewed by a task below.
    let server_svid = identity::ServerSvid::issue(ca.clone(), registry.server_id())?;
    let bundle_endpoint =
        bundle_endpoint(&config, &ca, server_svid.source(), provider.clone()).await?;
    let bundle_endpoint_addr = bundle_endpoint.as_ref().map(|(addr, _)| *addr);
    let admin_tls = ServerConfigBuilder::new(
        provider.clone(),
        server_svid.source(),
        ca.clone(),
        admin::AdminEntries(registry.clone()),
    )
    .alpn_protocols(vec![b"http/1.1".to_vec()])
    .build()?;
    let tls = ServerConfigBuilder::new(
        provider,
        server_svid.source(),
        ca.clone(),
        authorizer::member_of([td.clone()]),
    )
    .client_auth_optional()
    .alpn_protocols(vec![b"h2".to_vec()])
    .build()?;

    let node_listener = TcpListener::bind(config.node_api_listen)
        .await
        .map_err(|source| ServerError::Bind {
            what: format!("node API {}", config.node_api_listen),
            source,
        })?;
    let node_api_addr = node_listener
        .local_addr()
        .map_err(|source| ServerError::Bind {
            what: "node API".into(),
            source,
        })?;
    let admin_socket = config.admin_socket();
    let admin_listener = crate::fsutil::bind_private_socket(&admin_socket)?;
    let admin_tcp = match config.admin_listen {
        None => None,
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Bind {
                    what: format!("admin API {addr}"),
                    source,
                })?,
        ),
    };
    let admin_addr = admin_tcp.as_ref().and_then(|l| l.local_addr().ok());
    let health_listener = crate::health::bind(config.health_listen)
        .await
        .map_err(|source| ServerError::Bind {
            what: "health".into(),
            source,
        })?;
    let health_addr = health_listener.as_ref().and_then(|l| l.local_addr().ok());

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (ready_tx, ready_rx) = watch::channel(false);
    let handle = ServerHandle {
        node_api_addr,
        admin_socket: admin_socket.clone(),
        admin_addr,
        health_addr,
        bundle_endpoint_addr,
        service: service.clone(),
        shutdown: shutdown_tx,
    };

    let stopped = {
        let rx = shutdown_rx.clone();
        move || {
            let mut rx = rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        }
    };
    let grpc = grpc::NodeGrpc {
        service: service.clone(),
        metrics: metrics.clone(),
        shutdown: shutdown_rx.clone(),
    };
    let registry_for_health = Arc::new(metrics_registry);
    let rotation_period = config.ca.rotation_check;
    let policy_metrics = metrics.clone();
    let task = async move {
        // PINGs to agents as well: the sync stream of an agent that went
        // away without a reset is dropped instead of held.
        let node_api = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(NODE_API_KEEPALIVE))
            .http2_keepalive_timeout(Some(NODE_API_KEEPALIVE_TIMEOUT))
            .add_service(crate::proto::node_server::NodeServer::new(grpc.clone()))
            .add_service(crate::proto::discovery_server::DiscoveryServer::new(
                discovery_grpc::DiscoveryGrpc {
                    service: grpc.service.clone(),
                },
            ))
            .serve_with_incoming_shutdown(
                grpc::incoming(node_listener, tls, grpc.metrics.clone()),
                stopped(),
            )
            .map(|r| {
                r.map_err(|e| ServerError::Serve {
                    what: "node API",
                    message: e.to_string(),
                })
            });
        let admin_app = admin::router(admin::AdminState {
            service: grpc.service.clone(),
            tokens,
        });
        let admin_mtls = {
            let app = admin_app.clone();
            let stop = stopped();
            async move {
                let Some(listener) = admin_tcp else {
                    return Ok(());
                };
                // A refused handshake (not an admin entry) is the client's
                // error to read; the acceptor logs it and goes on.
                axum::serve(
                    mtls_tower::MtlsAcceptor::new(listener, admin_tls),
                    mtls_tower::into_make_service(app),
                )
                .with_graceful_shutdown(stop)
                .await
                .map_err(|e| ServerError::Serve {
                    what: "admin API over mTLS",
                    message: e.to_string(),
                })
            }
        };
        let admin = axum::serve(admin_listener, admin_app)
            .with_graceful_shutdown(stopped())
            .into_future()
            .map(|r| {
                r.map_err(|e| ServerError::Serve {
                    what: "admin API",
                    message: e.to_string(),
                })
            });
        let stop_health = stopped.clone();
        let health = async move {
            match health_listener {
                Some(l) => crate::health::serve(l, ready_rx, registry_for_health, stop_health())
                    .await
                    .map_err(|e| ServerError::Serve {
                        what: "health",
                        message: e.to_string(),
                    }),
                None => Ok(()),
            }
        };
        let publish = async move {
            match bundle_endpoint {
                Some((_, serving)) => serving.await,
                None => std::future::pending().await,
            }
        };
        let background = async {
            tokio::select! {
                () = federation.run() => {}
                () = publish => {}
                () = ca.clone().rotation_task(rotation_period) => {}
                () = server_svid.renew_task() => {}
                () = identity::slot_metrics(ca.clone(), grpc.metrics.clone()) => {}
                () = services.expiry_task() => {}
                () = policies.watch_dir(|| policy_metrics.error("policy_reload")) => {}
                () = watch_policy_version(policies.clone(), policy_metrics.clone()) => {}
                () = stopped() => {}
            }
            federation.stop();
            Ok::<(), ServerError>(())
        };
        ready_tx.send_replace(true);
        tracing::info!(%node_api_addr, admin = %admin_socket.display(), "server ready");
        let result = tokio::try_join!(node_api, admin, admin_mtls, health, background).map(|_| ());
        let _ = std::fs::remove_file(&admin_socket);
        result
    };
    Ok((handle, task))
}
