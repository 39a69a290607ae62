//! Long-lived, multiplexed mTLS HTTP/2 connections to peer sidecars.
//!
//! One connection per endpoint carries every request to it (HTTP/2
//! streams), so a request never waits for a handshake once the first one
//! is done. A connection that closes is replaced on the next request; two
//! requests that find no connection wait for one handshake, not two.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::TokioTimer;
use mtls_tower::MtlsConnector;

use crate::body::ProxyBody;
use crate::endpoint::Target;

/// Why no connection to an endpoint could be had.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// TCP, TLS or the HTTP/2 handshake failed.
    #[error("connecting to {addr}: {source}")]
    Connect {
        /// The endpoint.
        addr: std::net::SocketAddr,
        /// Why.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The endpoint proved an identity other than the one it registered.
    #[error("{addr} answered as {actual}, expected {expected}")]
    WrongIdentity {
        /// The endpoint.
        addr: std::net::SocketAddr,
        /// The registered identity.
        expected: String,
        /// The identity the handshake proved.
        actual: String,
    },
}

type Slot = Arc<tokio::sync::Mutex<Option<SendRequest<ProxyBody>>>>;

/// The pool of HTTP/2 connections, keyed by endpoint (address and
/// expected identity).
#[derive(Clone)]
pub struct Pool {
    connector: MtlsConnector,
    /// Looked up on every request: foldhash, not SipHash.
    slots: Arc<Mutex<HashMap<Target, Slot, foldhash::fast::RandomState>>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field(
                "endpoints",
                &self.slots.lock().map(|s| s.len()).unwrap_or(0),
            )
            .finish()
    }
}

impl Pool {
    /// A pool over `connector`, which must offer ALPN `h2`.
    pub fn new(connector: MtlsConnector) -> Self {
        Pool {
            connector,
            slots: Arc::new(Mutex::new(HashMap::default())),
        }
    }

    /// A ready sender to `target`, reusing the open connection.
    pub async fn get(&self, target: &Target) -> Result<SendRequest<ProxyBody>, PoolError> {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            // The endpoint is known after its first request: no key clone.
            match slots.get(target) {
                Some(slot) => slot.clone(),
                None => slots.entry(target.clone()).or_default().clone(),
            }
        };
        let mut held = slot.lock().await;
        if let Some(sender) = held.as_ref()
            && !sender.is_closed()
        {
            return Ok(sender.clone());
        }
        // Boxed: the handshake's future is large and rarely needed, and
        // inline it would make every request's future carry its size.
        let sender = Box::pin(connect_h2(&self.connector, target)).await?;
        *held = Some(sender.clone());
        Ok(sender)
    }

    /// Forgets connections to endpoints not in `live`.
    pub fn retain(&self, live: impl Fn(&Target) -> bool) {
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|t, _| live(t));
    }

    /// Open connections, for `/clusters`.
    pub fn open_connections(&self) -> usize {
        let slots: Vec<Slot> = self
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        slots
            .iter()
            .filter(|s| {
                s.try_lock()
                    .map(|g| g.as_ref().is_some_and(|c| !c.is_closed()))
                    .unwrap_or(true)
            })
            .count()
    }
}

/// Connects with mTLS, requires the registered identity, then speaks
/// HTTP/2 on it.
async fn connect_h2(
    connector: &MtlsConnector,
    target: &Target,
) -> Result<SendRequest<ProxyBody>, PoolError> {
    let stream = connect_tls(connector, target).await?;
    let mut builder = hyper::client::conn::http2::Builder::new(crate::runtime::BoxingExecutor);
    builder
        .timer(TokioTimer::new())
        .keep_alive_interval(std::time::Duration::from_secs(30))
        .keep_alive_timeout(std::time::Duration::from_secs(10))
        .keep_alive_while_idle(true);
    // The stream goes in boxed: hyper moves a future the size of the
    // connection (the stream inline) into a new task for every request,
    // and a boxed TLS stream keeps that future small.
    let (sender, conn) =
        builder
            .handshake(Box::new(stream))
            .await
            .map_err(|e| PoolError::Connect {
                addr: target.addr,
                source: Box::new(e),
            })?;
    let addr = target.addr;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(%addr, error = %e, "pooled connection ended");
        }
    });
    Ok(sender)
}

/// One mTLS connection to `target`, its identity checked before any
/// application byte is sent.
pub(crate) async fn connect_tls(
    connector: &MtlsConnector,
    target: &Target,
) -> Result<mtls_tower::MtlsStream, PoolError> {
    let uri: http::Uri =
        format!("http://{}", target.addr)
            .parse()
            .map_err(|e: http::uri::InvalidUri| PoolError::Connect {
                addr: target.addr,
                source: Box::new(e),
            })?;
    let stream = connector
        .connect(uri)
        .await
        .map_err(|e| PoolError::Connect {
            addr: target.addr,
            source: Box::new(e),
        })?;
    if stream.peer().spiffe_id() != &target.identity {
        return Err(PoolError::WrongIdentity {
            addr: target.addr,
            expected: target.identity.to_string(),
            actual: stream.peer().spiffe_id().to_string(),
        });
    }
    Ok(stream)
}
