//! `mesh-node sidecar`: the data plane of `mesh-sidecar`, fed by the node
//! agent (identity over the Workload API; policies, endpoints and
//! registration over the feed socket) or by local files.
//!
//! The configuration file is the sidecar crate's [`SidecarConfig`] plus
//! one `[sources]` table that says where identity, policies and endpoints
//! come from:
//!
//! ```toml
//! [sources]
//! workload_socket = "/tmp/mesh-node/agent/workload.sock"  # or identity_files
//! feed_socket = "/tmp/mesh-node/agent/feed.sock"          # or policy_dir
//! calls = ["reviews.bookinfo", "details.bookinfo"]
//! register = { address = "127.0.0.1", port = 15006, protocol = "http" }
//!
//! [workload]
//! namespace = "bookinfo"
//! service = "productpage"
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use mesh_sidecar::config::{IdentityFiles, SidecarConfig};
use mesh_sidecar::endpoint::{Endpoints, ServiceKey as MeshKey, Target};
use mesh_sidecar::identity::{FileIdentity, Identity};
use mesh_sidecar::policy::{Policies, PolicyDir};
use mesh_sidecar::runtime::{Addresses, LogLevelSetter, ShutdownHandle, Sidecar, SidecarParts};
use serde::Deserialize;
use tokio::sync::watch;

use crate::config::ConfigError;
use crate::discovery::{Discovery, Endpoint, ServiceKey};
use crate::feed_client::FeedClient;

/// Where the sidecar's inputs come from.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Sources {
    /// The agent's Workload API socket: identity rotates with the agent.
    pub workload_socket: Option<PathBuf>,
    /// Which of several SVIDs the Workload API offers this workload to
    /// use (the entry's `--hint`); the first when unset.
    pub svid_hint: Option<String>,
    /// PEM files instead of an agent (reloaded when they change).
    pub identity_files: Option<IdentityFiles>,
    /// The agent's feed socket: policies, endpoints, registration.
    pub feed_socket: Option<PathBuf>,
    /// A directory of policy YAML instead of the feed (reloaded on change).
    pub policy_dir: Option<PathBuf>,
    /// Services this workload calls (`name.namespace`), watched through
    /// the feed.
    pub calls: Vec<String>,
    /// Register this workload's endpoint in discovery under a lease.
    pub register: Option<Registration>,
}

/// The endpoint this sidecar registers for its workload.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// Address peers dial (the inbound listener's, or the workload's when
    /// traffic to it is intercepted).
    pub address: String,
    /// Port peers dial.
    pub port: u16,
    /// `http`, `http2`, `grpc` or `tcp`.
    #[serde(default = "default_protocol")]
    pub protocol: String,
}

fn default_protocol() -> String {
    "http".to_owned()
}

/// The whole `mesh-node sidecar` configuration.
#[derive(Debug, Clone, Default)]
pub struct SidecarRoleConfig {
    /// Inputs.
    pub sources: Sources,
    /// The proxy itself.
    pub proxy: SidecarConfig,
}

impl SidecarRoleConfig {
    /// Reads the file (or defaults when there is none). Unknown fields are
    /// refused, with the line.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        Self::parse(path, &crate::config::read_text(path)?)
    }

    /// Parses TOML text; `path` names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.message().trim().to_owned(),
        })?;
        Self::from_table(path, table)
    }

    /// Reads one parsed table (a file, or a `[[sidecar]]` of `up`).
    pub fn from_table(path: &Path, mut table: toml::Table) -> Result<Self, ConfigError> {
        let parse_err = |e: toml::de::Error| ConfigError::Parse {
            path: path.to_owned(),
            message: e.message().trim().to_owned(),
        };
        let sources = match table.remove("sources") {
            Some(v) => v.try_into().map_err(parse_err)?,
            None => Sources::default(),
        };
        let proxy = toml::Value::Table(table).try_into().map_err(parse_err)?;
        Ok(SidecarRoleConfig { sources, proxy })
    }
}

/// Why the sidecar could not start.
#[derive(Debug, thiserror::Error)]
pub enum SidecarError {
    /// No identity source, or both.
    #[error("sources: set exactly one of workload_socket and identity_files")]
    IdentitySource,
    /// The Workload API address is invalid.
    #[error("sources.workload_socket: {0}")]
    Address(String),
    /// Identity files do not load.
    #[error(transparent)]
    Identity(#[from] mesh_sidecar::identity::IdentityError),
    /// Both policy sources.
    #[error("sources: set at most one of feed_socket and policy_dir")]
    PolicySource,
    /// Policy files do not load.
    #[error("sources.policy_dir: {0}")]
    Policies(String),
    /// `calls` or `register` without a feed, or a bad service name.
    #[error("sources: {0}")]
    Discovery(String),
    /// The proxy could not start.
    #[error(transparent)]
    Build(#[from] mesh_sidecar::runtime::BuildError),
}

/// A running sidecar's handle.
#[derive(Debug)]
pub struct SidecarHandle {
    /// The bound addresses.
    pub addresses: Addresses,
    /// SIGTERM semantics.
    pub shutdown: ShutdownHandle,
    /// Policies in force (for in-process embedding such as `up`).
    pub policies: Arc<Policies>,
    /// Endpoints (for in-process embedding).
    pub endpoints: Arc<Endpoints>,
}

/// Builds the sidecar and its feeders; the future runs until shutdown.
///
/// `access_log` overrides where access-log lines go (standard output when
/// the config enables it).
pub async fn build(
    config: SidecarRoleConfig,
    set_log_level: Option<LogLevelSetter>,
    access_log: Option<mesh_sidecar::telemetry::AccessLog>,
) -> Result<(SidecarHandle, impl std::future::Future<Output = ()>), SidecarError> {
    let SidecarRoleConfig { sources, proxy } = config;
    let (stop_tx, stop) = watch::channel(false);
    let mut tasks: Vec<tokio::task::JoinHandle<()>> = Vec::new();

    let identity = match (&sources.workload_socket, &sources.identity_files) {
        (Some(socket), None) => {
            let address = format!("unix://{}", socket.display())
                .parse()
                .map_err(|e: workload_api::AddressError| SidecarError::Address(e.to_string()))?;
            let mut options = workload_api::SourceOptions::default();
            if let Some(hint) = &sources.svid_hint {
                options = options.with_hint(hint.clone());
            }
            let (source, task) = workload_api::X509Source::with_options(address, options);
            tasks.push(tokio::spawn(async move {
                if let Err(e) = task.await {
                    tracing::error!(error = %e, "Workload API source stopped");
                }
            }));
            Identity::from_source(Arc::new(source))
        }
        (None, Some(files)) => {
            let files = FileIdentity::load(files.clone())?;
            let identity = files.identity();
            tasks.push(tokio::spawn(
                files.watch(Duration::from_secs(1), stop.clone()),
            ));
            identity
        }
        _ => return Err(SidecarError::IdentitySource),
    };

    let policies = Arc::new(Policies::new(&proxy.workload, &authz::PolicySet::default()));
    let (ready_tx, policies_ready) = watch::channel(false);
    let feed = sources.feed_socket.as_ref().map(FeedClient::new);
    match (&feed, &sources.policy_dir) {
        (Some(_), Some(_)) => return Err(SidecarError::PolicySource),
        (Some(feed), None) => {
            tasks.push(tokio::spawn(follow_policies(
                feed.clone(),
                policies.clone(),
                ready_tx,
            )));
        }
        (None, Some(dir)) => {
            let dir = PolicyDir::new(dir.clone());
            let set = dir
                .load_if_changed()
                .map_err(SidecarError::Policies)?
                .unwrap_or_default();
            policies.update(&set, "files-0");
            ready_tx.send_replace(true);
            tasks.push(tokio::spawn(dir.watch(
                policies.clone(),
                Duration::from_millis(250),
                stop.clone(),
            )));
        }
        (None, None) => {
            ready_tx.send_replace(true);
        }
    }

    let endpoints = Arc::new(Endpoints::new(proxy.outbound.balance.clone()));
    let calls = sources
        .calls
        .iter()
        .map(|c| {
            mesh_sidecar::endpoint::route(c, &proxy.workload.namespace)
                .map(|(k, _)| ServiceKey {
                    service: k.name,
                    namespace: k.namespace,
                })
                .ok_or_else(|| {
                    SidecarError::Discovery(format!("calls: `{c}` is not name.namespace"))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    match &feed {
        Some(feed) if !calls.is_empty() => {
            tasks.push(tokio::spawn(follow_endpoints(
                feed.clone(),
                calls,
                endpoints.clone(),
            )));
        }
        Some(_) => {}
        None if !calls.is_empty() || sources.register.is_some() => {
            return Err(SidecarError::Discovery(
                "calls and register need feed_socket".to_owned(),
            ));
        }
        None => {}
    }

    let sidecar = Sidecar::build(SidecarParts {
        config: proxy.clone(),
        identity: identity.clone(),
        policies: policies.clone(),
        endpoints: endpoints.clone(),
        policies_ready,
        set_log_level,
        access_log,
    })
    .await?;
    let addresses = sidecar.addresses();
    if let (Some(feed), Some(reg)) = (&feed, &sources.register) {
        tasks.push(tokio::spawn(keep_registered(
            feed.clone(),
            reg.clone(),
            proxy.workload.clone(),
            identity,
            stop.clone(),
        )));
    }
    let shutdown = ShutdownHandle::new();
    let handle = SidecarHandle {
        addresses,
        shutdown: shutdown.clone(),
        policies,
        endpoints,
    };
    let run = async move {
        sidecar.run(shutdown).await;
        stop_tx.send_replace(true);
        // Give the registration task a moment to withdraw the endpoint.
        tokio::time::sleep(Duration::from_millis(100)).await;
        for t in tasks {
            t.abort();
        }
    };
    Ok((handle, run))
}

/// Applies every policy set the agent relays; reconnects with backoff.
async fn follow_policies(feed: FeedClient, policies: Arc<Policies>, ready: watch::Sender<bool>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match feed.watch_policies().await {
            Ok(mut stream) => {
                backoff = Duration::from_millis(100);
                while let Some(item) = stream.next().await {
                    match item.map(|b| (b.version, b.parse())) {
                        Ok((version, Ok(set))) => {
                            policies.update(&set, format!("server-{version}"));
                            ready.send_replace(true);
                            tracing::info!(version, "policies applied");
                        }
                        Ok((version, Err(e))) => {
                            tracing::warn!(version, error = %e, "policy set from the agent does not load; keeping the previous one");
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "policy feed ended");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "policy feed unavailable"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Mirrors the endpoints of `calls` into `endpoints`; reconnects with
/// backoff, keeping the last known endpoints meanwhile.
async fn follow_endpoints(feed: FeedClient, calls: Vec<ServiceKey>, endpoints: Arc<Endpoints>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut stream = feed.watch(calls.clone());
        while let Some(item) = stream.next().await {
            match item {
                Ok(set) => {
                    backoff = Duration::from_millis(100);
                    endpoints.replace_all(targets(&calls, &set.endpoints));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "discovery feed ended");
                    break;
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Endpoints grouped by service; addresses that are not IP literals are
/// resolved at registration time by the registering side, so they are
/// skipped here with a log line.
fn targets(calls: &[ServiceKey], list: &[Endpoint]) -> HashMap<MeshKey, Vec<Target>> {
    let mut out: HashMap<MeshKey, Vec<Target>> = calls
        .iter()
        .map(|k| (MeshKey::new(&k.service, &k.namespace), Vec::new()))
        .collect();
    for e in list {
        let Ok(ip) = e.address.parse::<std::net::IpAddr>() else {
            tracing::warn!(address = %e.address, "endpoint address is not an IP address; skipped");
            continue;
        };
        out.entry(MeshKey::new(&e.service, &e.namespace))
            .or_default()
            .push(Target {
                addr: std::net::SocketAddr::new(ip, e.port),
                identity: e.spiffe_id.clone(),
            });
    }
    out
}

/// Registers this workload's endpoint once it holds an SVID, renews the
/// lease, registers again when it is lost, withdraws it on stop.
async fn keep_registered(
    feed: FeedClient,
    reg: Registration,
    workload: mesh_sidecar::config::WorkloadConfig,
    identity: Identity,
    mut stop: watch::Receiver<bool>,
) {
    const TTL: Duration = Duration::from_secs(30);
    let mut lease: Option<String> = None;
    loop {
        if lease.is_none()
            && let Some(svid) = identity.svid.x509_svid()
        {
            let endpoint = Endpoint {
                service: workload.service.clone(),
                namespace: workload.namespace.clone(),
                address: reg.address.clone(),
                port: reg.port,
                protocol: reg.protocol.clone(),
                spiffe_id: svid.spiffe_id().clone(),
                labels: workload.labels.clone(),
            };
            match feed.register(&endpoint, TTL).await {
                Ok((id, _)) => {
                    tracing::info!(service = %endpoint.service, "endpoint registered");
                    lease = Some(id);
                }
                Err(e) => tracing::warn!(error = %e, "endpoint registration failed"),
            }
        } else if let Some(id) = &lease
            && feed.renew(id).await.is_err()
        {
            lease = None;
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(if lease.is_some() { TTL / 3 } else { Duration::from_millis(200) }) => {}
            _ = stop.changed() => {
                if let Some(id) = lease {
                    let _ = feed.deregister(&id).await;
                }
                return;
            }
        }
    }
}
