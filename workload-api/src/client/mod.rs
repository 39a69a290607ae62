//! [`WorkloadApiClient`]: one-shot fetches and watch streams for every RPC.

pub(crate) mod convert;
mod error;
mod options;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use hyper_util::rt::TokioIo;
use spiffe_core::{BundleSet, SpiffeId};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Request, Status};

pub use convert::{FetchedJwtSvid, ValidatedJwtSvid, WorkloadSvid, X509Context};
pub use error::{ClientError, MalformedResponse, StatusCode};
pub use options::ClientOptions;

use crate::EndpointAddress;
use crate::proto;
use crate::proto::spiffe_workload_api_client::SpiffeWorkloadApiClient;

type Interceptor = fn(Request<()>) -> Result<Request<()>, Status>;

fn security_header(mut req: Request<()>) -> Result<Request<()>, Status> {
    req.metadata_mut().insert(
        "workload.spiffe.io",
        tonic::metadata::MetadataValue::from_static("true"),
    );
    Ok(req)
}

/// A stream of updates from a watch RPC. Each item is the full new state
/// (WL-4); a malformed message yields `Err(ClientError::Malformed)` and the
/// stream goes on; any other error ends it.
pub struct WatchStream<T> {
    inner: Pin<Box<dyn Stream<Item = Result<T, ClientError>> + Send>>,
}

impl<T> std::fmt::Debug for WatchStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchStream").finish_non_exhaustive()
    }
}

impl<T> WatchStream<T> {
    /// The next update; `None` after the server closed the stream cleanly.
    pub async fn next(&mut self) -> Option<Result<T, ClientError>> {
        self.inner.next().await
    }

    /// The next update within `limit`, else
    /// [`ClientError::DeadlineExceeded`].
    pub async fn next_within(&mut self, limit: Duration) -> Option<Result<T, ClientError>> {
        match tokio::time::timeout(limit, self.inner.next()).await {
            Ok(item) => item,
            Err(_) => Some(Err(ClientError::DeadlineExceeded { after: limit })),
        }
    }
}

impl<T> Stream for WatchStream<T> {
    type Item = Result<T, ClientError>;
    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

fn watch<M, T>(
    streaming: tonic::Streaming<M>,
    convert: fn(M) -> Result<T, MalformedResponse>,
) -> WatchStream<T>
where
    M: Send + 'static,
    T: Send + 'static,
{
    let inner = streaming.map(move |item| match item {
        Ok(msg) => convert(msg).map_err(ClientError::from),
        Err(status) => Err(ClientError::from_status(status)),
    });
    WatchStream {
        inner: Box::pin(inner),
    }
}

/// A client of the SPIFFE Workload API (ours or any other, such as
/// SPIRE's agent). Every request carries `workload.spiffe.io: true`.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use workload_api::{EndpointAddress, WorkloadApiClient};
/// let mut client = WorkloadApiClient::connect(&EndpointAddress::from_env()?).await?;
/// let ctx = client.fetch_x509_context().await?;
/// println!("I am {}", ctx.svids[0].svid.spiffe_id());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct WorkloadApiClient {
    inner: SpiffeWorkloadApiClient<InterceptedService<Channel, Interceptor>>,
    rpc_timeout: Duration,
}

/// `fut` within `limit`, else [`ClientError::DeadlineExceeded`].
async fn deadline<T>(
    limit: Duration,
    fut: impl Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or(Err(ClientError::DeadlineExceeded { after: limit }))
}

impl std::fmt::Debug for WorkloadApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadApiClient").finish_non_exhaustive()
    }
}

impl WorkloadApiClient {
    /// Connects to `address` with the default [`ClientOptions`].
    pub async fn connect(address: &EndpointAddress) -> Result<Self, ClientError> {
        Self::connect_with(address, ClientOptions::default()).await
    }

    /// Connects to `address`: within [`ClientOptions::connect_timeout`],
    /// with the options' RPC deadline and keepalive for later calls.
    pub async fn connect_with(
        address: &EndpointAddress,
        options: ClientOptions,
    ) -> Result<Self, ClientError> {
        let connecting = Self::open(address, options);
        match tokio::time::timeout(options.connect_timeout, connecting).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Connect {
                address: address.clone(),
                source: std::io::Error::from(std::io::ErrorKind::TimedOut),
            }),
        }
    }

    async fn open(address: &EndpointAddress, options: ClientOptions) -> Result<Self, ClientError> {
        let failed = |e: tonic::transport::Error| ClientError::Connect {
            address: address.clone(),
            source: std::io::Error::other(e),
        };
        let tune = |e: Endpoint| {
            e.connect_timeout(options.connect_timeout)
                .http2_keep_alive_interval(options.keepalive_interval)
                .keep_alive_timeout(options.keepalive_timeout)
                .keep_alive_while_idle(true)
        };
        let channel = match address {
            EndpointAddress::Unix(path) => {
                let path = path.clone();
                // The URI is required by the transport and ignored by the connector.
                tune(Endpoint::from_static("http://localhost"))
                    .connect_with_connector(tower::service_fn(move |_: Uri| {
                        let path = path.clone();
                        async move {
                            let io = tokio::net::UnixStream::connect(path).await?;
                            Ok::<_, std::io::Error>(TokioIo::new(io))
                        }
                    }))
                    .await
                    .map_err(failed)?
            }
            EndpointAddress::Tcp(addr) => {
                tune(Endpoint::from_shared(format!("http://{addr}")).map_err(failed)?)
                    .connect()
                    .await
                    .map_err(failed)?
            }
        };
        Ok(WorkloadApiClient {
            inner: SpiffeWorkloadApiClient::with_interceptor(
                channel,
                security_header as Interceptor,
            ),
            rpc_timeout: options.rpc_timeout,
        })
    }

    /// Connects to the address in `SPIFFE_ENDPOINT_SOCKET` (EP-6).
    pub async fn from_env() -> Result<Self, ClientError> {
        Self::connect(&EndpointAddress::from_env()?).await
    }

    /// The deadline for unary RPCs and first messages
    /// ([`ClientOptions::rpc_timeout`]).
    pub fn rpc_timeout(&self) -> Duration {
        self.rpc_timeout
    }

    /// Watches the caller's X509-SVIDs and bundles (`FetchX509SVID`).
    pub async fn watch_x509_context(&mut self) -> Result<WatchStream<X509Context>, ClientError> {
        let call = self.inner.fetch_x509svid(proto::X509svidRequest {});
        let s = deadline(self.rpc_timeout, async {
            call.await.map_err(ClientError::from_status)
        })
        .await?;
        Ok(watch(s.into_inner(), convert::x509_context))
    }

    /// The caller's current X509-SVIDs and bundles.
    pub async fn fetch_x509_context(&mut self) -> Result<X509Context, ClientError> {
        let limit = self.rpc_timeout;
        deadline(limit, async {
            first(self.watch_x509_context().await?).await
        })
        .await
    }

    /// Watches the X.509 bundles (`FetchX509Bundles`).
    pub async fn watch_x509_bundles(&mut self) -> Result<WatchStream<BundleSet>, ClientError> {
        let call = self.inner.fetch_x509_bundles(proto::X509BundlesRequest {});
        let s = deadline(self.rpc_timeout, async {
            call.await.map_err(ClientError::from_status)
        })
        .await?;
        Ok(watch(s.into_inner(), convert::x509_bundles))
    }

    /// The current X.509 bundles.
    pub async fn fetch_x509_bundles(&mut self) -> Result<BundleSet, ClientError> {
        let limit = self.rpc_timeout;
        deadline(limit, async {
            first(self.watch_x509_bundles().await?).await
        })
        .await
    }

    /// Watches the JWT bundles (`FetchJWTBundles`).
    pub async fn watch_jwt_bundles(&mut self) -> Result<WatchStream<BundleSet>, ClientError> {
        let call = self.inner.fetch_jwt_bundles(proto::JwtBundlesRequest {});
        let s = deadline(self.rpc_timeout, async {
            call.await.map_err(ClientError::from_status)
        })
        .await?;
        Ok(watch(s.into_inner(), convert::jwt_bundles))
    }

    /// The current JWT bundles.
    pub async fn fetch_jwt_bundles(&mut self) -> Result<BundleSet, ClientError> {
        let limit = self.rpc_timeout;
        deadline(limit, async {
            first(self.watch_jwt_bundles().await?).await
        })
        .await
    }

    /// JWT-SVIDs for `audience`: for `spiffe_id` only, or for every
    /// identity of the caller when `None` (WL-14).
    pub async fn fetch_jwt_svids(
        &mut self,
        audience: &[&str],
        spiffe_id: Option<&SpiffeId>,
    ) -> Result<Vec<FetchedJwtSvid>, ClientError> {
        let req = proto::JwtsvidRequest {
            audience: audience.iter().map(|a| (*a).to_owned()).collect(),
            spiffe_id: spiffe_id.map(ToString::to_string).unwrap_or_default(),
        };
        let call = self.inner.fetch_jwtsvid(req);
        let resp = deadline(self.rpc_timeout, async {
            call.await.map_err(ClientError::from_status)
        })
        .await?;
        Ok(convert::jwt_svids(resp.into_inner())?)
    }

    /// Asks the server to validate `token` for `audience` (WL-16).
    pub async fn validate_jwt_svid(
        &mut self,
        token: &str,
        audience: &str,
    ) -> Result<ValidatedJwtSvid, ClientError> {
        let req = proto::ValidateJwtsvidRequest {
            audience: audience.to_owned(),
            svid: token.to_owned(),
        };
        let call = self.inner.validate_jwtsvid(req);
        let resp = deadline(self.rpc_timeout, async {
            call.await.map_err(ClientError::from_status)
        })
        .await?;
        Ok(convert::validated(resp.into_inner())?)
    }
}

async fn first<T>(mut stream: WatchStream<T>) -> Result<T, ClientError> {
    stream
        .next()
        .await
        .unwrap_or(Err(ClientError::StreamClosed))
}
