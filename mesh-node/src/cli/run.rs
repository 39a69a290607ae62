//! `mesh-node server` and `mesh-node agent`: configuration from a file and
//! flags, logging, and a runtime that stops cleanly on SIGTERM or Ctrl-C.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use crate::config::{AgentConfig, ServerConfig};

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Arguments of `mesh-node server`.
#[derive(Debug, Args)]
pub(crate) struct ServerArgs {
    /// Configuration file (TOML); every field has a default.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Overrides `data_dir`.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Overrides `trust_domain`.
    #[arg(long, value_name = "TD")]
    trust_domain: Option<String>,
    /// Overrides `node_api_listen`.
    #[arg(long, value_name = "ADDR")]
    node_api_listen: Option<SocketAddr>,
    /// Overrides `health_listen`.
    #[arg(long, value_name = "ADDR")]
    health_listen: Option<SocketAddr>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// Arguments of `mesh-node agent` (when it runs the agent).
#[derive(Debug, Args)]
pub(crate) struct AgentArgs {
    /// Configuration file (TOML); every field has a default.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Overrides `data_dir`.
    #[arg(long = "agent-data-dir", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Overrides `server_address`.
    #[arg(long, value_name = "HOST:PORT")]
    server_address: Option<String>,
    /// Overrides `trust_domain`.
    #[arg(long, value_name = "TD")]
    trust_domain: Option<String>,
    /// Overrides `trust_bundle_path`.
    #[arg(long, value_name = "FILE")]
    trust_bundle: Option<PathBuf>,
    /// Overrides `join_token` (prefer the file `<data_dir>/join-token`:
    /// flags are visible to other users).
    #[arg(long, value_name = "TOKEN")]
    join_token: Option<String>,
    /// Overrides `workload_socket`.
    #[arg(long, value_name = "PATH")]
    workload_socket: Option<PathBuf>,
    /// Overrides `feed_socket`.
    #[arg(long, value_name = "PATH")]
    feed_socket: Option<PathBuf>,
    /// Overrides `health_listen`.
    #[arg(long, value_name = "ADDR")]
    health_listen: Option<SocketAddr>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// Arguments of `mesh-node sidecar`.
#[derive(Debug, Args)]
pub(crate) struct SidecarArgs {
    /// Configuration file (TOML); every field has a default.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Overrides `sources.workload_socket`.
    #[arg(long, value_name = "PATH")]
    workload_socket: Option<PathBuf>,
    /// Overrides `sources.feed_socket`.
    #[arg(long, value_name = "PATH")]
    feed_socket: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Worker threads (Envoy's `--concurrency`). With 1, every connection is
    /// served on one thread and no task ever moves between threads, which
    /// is the cheapest way to run a sidecar that has one core's budget.
    /// Default: `TOKIO_WORKER_THREADS`, else the number of CPUs.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: Option<u16>,
}

/// Logging whose filter the sidecar's `/logging` endpoint can change.
fn init_reloadable_logging(format: LogFormat) -> Option<mesh_sidecar::runtime::LogLevelSetter> {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_env("MESH_NODE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match format {
        LogFormat::Text => registry.with(layer).try_init().is_ok(),
        LogFormat::Json => registry.with(layer.json()).try_init().is_ok(),
    };
    installed.then(|| {
        std::sync::Arc::new(move |level: &str| {
            let filter =
                tracing_subscriber::EnvFilter::try_new(level).map_err(|e| e.to_string())?;
            handle.reload(filter).map_err(|e| e.to_string())
        }) as mesh_sidecar::runtime::LogLevelSetter
    })
}

pub(crate) fn sidecar(args: SidecarArgs) -> ExitCode {
    let set_level = init_reloadable_logging(args.log_format);
    let workers = args
        .concurrency
        .map(usize::from)
        .or_else(env_worker_threads);
    block_on_with("sidecar", workers, async move {
        let mut config = crate::sidecar::SidecarRoleConfig::load(args.config.as_deref())
            .map_err(|e| e.to_string())?;
        if let Some(s) = args.workload_socket {
            config.sources.workload_socket = Some(s);
        }
        if let Some(s) = args.feed_socket {
            config.sources.feed_socket = Some(s);
        }
        let (handle, task) = crate::sidecar::build(config, set_level, None)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(
            inbound = %handle.addresses.inbound,
            outbound = %handle.addresses.outbound,
            admin = %handle.addresses.admin,
            "sidecar running"
        );
        let task = tokio::spawn(task);
        terminated().await;
        tracing::info!("SIGTERM: draining");
        handle.shutdown.shutdown();
        task.await.map_err(|e| e.to_string())
    })
}

/// Arguments of `mesh-node up`.
#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// Configuration file (TOML); every field has a default.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Overrides `data_dir` (the server's; admin commands take the same).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Overrides `trust_domain`.
    #[arg(long, value_name = "TD")]
    trust_domain: Option<String>,
    /// Overrides `workload_socket`.
    #[arg(long, value_name = "PATH")]
    workload_socket: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

pub(crate) fn up(args: UpArgs) -> ExitCode {
    init_logging(args.log_format);
    block_on("up", async move {
        let mut config =
            crate::up::UpConfig::load(args.config.as_deref()).map_err(|e| e.to_string())?;
        if let Some(d) = args.data_dir {
            config.data_dir = d;
        }
        if let Some(td) = args.trust_domain {
            config.trust_domain = td;
        }
        if let Some(s) = args.workload_socket {
            config.workload_socket = Some(s);
        }
        let (handle, task) = crate::up::build(config).await.map_err(|e| e.to_string())?;
        print!("{}", handle.summary());
        let task = tokio::spawn(task);
        terminated().await;
        tracing::info!("stopping: sidecars drain, then agent and server stop");
        handle.shutdown();
        task.await.map_err(|e| e.to_string())
    })
}

pub(crate) fn demo(options: crate::demo::DemoOptions) -> ExitCode {
    // The steps speak for themselves; logs only for trouble.
    let filter = tracing_subscriber::EnvFilter::try_from_env("MESH_NODE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    block_on("demo", crate::demo::run(options))
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MESH_NODE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Runs `f` on a multi-threaded runtime; the exit code is 0 when it ends
/// well, 1 with one line on stderr otherwise.
fn block_on<F, E>(what: &str, f: F) -> ExitCode
where
    F: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    block_on_with(what, None, f)
}

/// `TOKIO_WORKER_THREADS` when it holds a positive number (tokio reads the
/// same variable for its multi-threaded runtime).
fn env_worker_threads() -> Option<usize> {
    std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
}

/// [`block_on`] with a chosen number of worker threads: one runs `f` and
/// every task it spawns on the calling thread (tokio's current-thread
/// runtime); more, or `None` for tokio's default, a multi-threaded one.
fn block_on_with<F, E>(what: &str, workers: Option<usize>, f: F) -> ExitCode
where
    F: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut builder = match workers {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    if let Some(n) = workers.filter(|n| *n > 1) {
        builder.worker_threads(n);
    }
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mesh-node {what}: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(f) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mesh-node {what}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Completes on SIGTERM or SIGINT.
pub(crate) async fn terminated() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

pub(crate) fn server(args: ServerArgs) -> ExitCode {
    init_logging(args.log_format);
    block_on("server", async move {
        let mut config = ServerConfig::load(args.config.as_deref()).map_err(|e| e.to_string())?;
        if let Some(d) = args.data_dir {
            config.data_dir = d;
        }
        if let Some(td) = args.trust_domain {
            config.trust_domain = td;
        }
        if let Some(a) = args.node_api_listen {
            config.node_api_listen = a;
        }
        if let Some(a) = args.health_listen {
            config.health_listen = Some(a);
        }
        let (handle, task) = crate::server::build(config)
            .await
            .map_err(|e| e.to_string())?;
        let task = tokio::spawn(task);
        terminated().await;
        tracing::info!("stopping");
        handle.shutdown();
        match task.await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    })
}

pub(crate) fn agent(args: AgentArgs) -> ExitCode {
    init_logging(args.log_format);
    block_on("agent", async move {
        let mut config = AgentConfig::load(args.config.as_deref()).map_err(|e| e.to_string())?;
        if let Some(d) = args.data_dir {
            config.data_dir = d;
        }
        if let Some(a) = args.server_address {
            config.server_address = a;
        }
        if let Some(td) = args.trust_domain {
            config.trust_domain = td;
        }
        if let Some(b) = args.trust_bundle {
            config.trust_bundle_path = Some(b);
        }
        if let Some(t) = args.join_token {
            config.join_token = Some(t);
        }
        if let Some(s) = args.workload_socket {
            config.workload_socket = s;
        }
        if let Some(s) = args.feed_socket {
            config.feed_socket = Some(s);
        }
        if let Some(a) = args.health_listen {
            config.health_listen = Some(a);
        }
        let (handle, task) = crate::agent::build(config)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(
            node = %handle.node_id,
            socket = %handle.workload_socket.display(),
            "agent running; workloads use SPIFFE_ENDPOINT_SOCKET=unix://{}",
            handle.workload_socket.display()
        );
        let task = tokio::spawn(task);
        terminated().await;
        tracing::info!("stopping");
        handle.shutdown();
        task.await.map_err(|e| e.to_string())
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use clap::Parser;
    use tokio::runtime::{Handle, RuntimeFlavor};

    use super::*;
    use crate::cli::{Cli, Command};

    fn concurrency(args: &[&str]) -> Result<Option<u16>, clap::Error> {
        let cli = Cli::try_parse_from(["mesh-node", "sidecar"].iter().chain(args))?;
        match cli.command {
            Command::Sidecar(a) => Ok(a.concurrency),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn concurrency_flag_takes_a_positive_thread_count() {
        assert_eq!(concurrency(&[]).unwrap(), None);
        assert_eq!(concurrency(&["--concurrency", "1"]).unwrap(), Some(1));
        assert_eq!(concurrency(&["--concurrency", "4"]).unwrap(), Some(4));
        for bad in ["0", "-1", "two", "70000", ""] {
            let arg = format!("--concurrency={bad}");
            let err = concurrency(&[&arg]).unwrap_err();
            assert!(err.to_string().contains("--concurrency"), "{bad}: {err}");
        }
    }

    /// The runtime `f` ran on: its flavour, its worker count, and whether it
    /// ran on the calling thread.
    fn runtime_of(workers: Option<usize>) -> (RuntimeFlavor, usize, bool) {
        let seen = Mutex::new(None);
        let caller = std::thread::current().id();
        let code = block_on_with("test", workers, async {
            let handle = Handle::current();
            // A spawned task sees the same runtime.
            let on_caller = tokio::spawn(async move { std::thread::current().id() })
                .await
                .map_err(|e| e.to_string())?
                == caller;
            *seen.lock().unwrap() = Some((
                handle.runtime_flavor(),
                handle.metrics().num_workers(),
                on_caller,
            ));
            Ok::<(), String>(())
        });
        assert_eq!(code, ExitCode::SUCCESS);
        seen.into_inner().unwrap().expect("the future ran")
    }

    #[test]
    fn one_worker_runs_everything_on_the_calling_thread() {
        let (flavor, workers, on_caller) = runtime_of(Some(1));
        assert_eq!(flavor, RuntimeFlavor::CurrentThread);
        assert_eq!(workers, 1);
        assert!(on_caller, "a spawned task left the calling thread");
    }

    #[test]
    fn several_workers_get_a_multi_threaded_runtime_of_that_size() {
        let (flavor, workers, on_caller) = runtime_of(Some(3));
        assert_eq!(flavor, RuntimeFlavor::MultiThread);
        assert_eq!(workers, 3);
        assert!(!on_caller, "a spawned task ran on the blocked caller");
    }

    #[test]
    fn a_failing_future_exits_1() {
        let code = block_on_with("test", Some(1), async { Err::<(), _>("refused") });
        assert_eq!(code, ExitCode::FAILURE);
    }
}
