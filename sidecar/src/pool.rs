//! Long-lived, multiplexed mTLS HTTP/2 connections to peer sidecars.
//!
//! One connection per endpoint carries every request to it (HTTP/2
//! streams), so a request never waits for a handshake once the first one
//! is done. A connection that closes is replaced on the next request; two
//! requests that find no connection wait for one handshake, not two.
//!
//! Requests go on the connection through the `h2` crate directly: the
//! request's own task opens the stream and waits for the response, with
//! no channel to a connection task and no task per request in between
//! (a request body that is not complete when the head is sent gets a task
//! of its own to send it within the peer's flow-control window). The
//! connection's task reads and writes the socket and pings an idle peer.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Context;
use std::time::Duration;

use bytes::Bytes;
use http_body::Body;
use mtls_tower::MtlsConnector;

use crate::body::ProxyBody;
use crate::endpoint::Target;
use crate::h2body::{RecvBody, SendBody};

/// Every `KEEPALIVE_INTERVAL` the connection pings its peer, busy or idle;
/// a pong that takes longer than `KEEPALIVE_TIMEOUT` closes it.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

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

/// A pooled HTTP/2 connection: a handle that opens streams on it.
#[derive(Clone)]
pub struct Connection {
    send: h2::client::SendRequest<Bytes>,
    /// Set when the connection's task has ended.
    closed: Arc<AtomicBool>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// How a request on a pooled connection failed.
#[derive(Debug)]
pub enum SendError {
    /// Nothing was sent: the connection could take no new stream (it
    /// closed, or the peer is going away). The request comes back whole.
    NotSent(Box<http::Request<ProxyBody>>, h2::Error),
    /// The request head went out; the stream or the connection failed
    /// before a response head came back.
    Failed(h2::Error),
}

impl SendError {
    /// The HTTP/2 error.
    pub fn error(&self) -> &h2::Error {
        match self {
            SendError::NotSent(_, e) | SendError::Failed(e) => e,
        }
    }
}

impl Connection {
    /// Whether the connection has ended; a closed connection is replaced
    /// on the pool's next `get`.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Sends `req` on a new stream and waits for the response head. The
    /// URI must be absolute (scheme and authority become `:scheme` and
    /// `:authority`) and the headers free of connection-specific fields.
    ///
    /// The response body streams from the connection as the caller polls
    /// it, within the stream's flow-control window.
    pub async fn send(
        self,
        req: http::Request<ProxyBody>,
    ) -> Result<http::Response<RecvBody>, SendError> {
        let mut send = match self.send.ready().await {
            Ok(send) => send,
            Err(e) => {
                self.closed.store(true, Ordering::Release);
                return Err(SendError::NotSent(Box::new(req), e));
            }
        };
        let (parts, body) = req.into_parts();
        let end_of_stream = body.is_end_stream();
        let (response, stream) = send
            .send_request(http::Request::from_parts(parts, ()), end_of_stream)
            .map_err(SendError::Failed)?;
        // The body's task is told to stop if this request is abandoned
        // before its response comes (the caller went away).
        let mut abandoned = None;
        if !end_of_stream {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let mut pipe = Box::pin(SendBody::new(body, stream, Some(rx)));
            // A body already whole (a small POST read with its head) is
            // sent here; only one still arriving gets a task.
            let mut cx = Context::from_waker(std::task::Waker::noop());
            if pipe.as_mut().poll(&mut cx).is_pending() {
                tokio::spawn(pipe);
                abandoned = Some(Abandoned(Some(tx)));
            }
        }
        let response = response.await.map_err(SendError::Failed)?;
        if let Some(mut guard) = abandoned {
            guard.0 = None;
        }
        let (head, recv) = response.into_parts();
        let body = RecvBody::new(recv, &head.headers);
        Ok(http::Response::from_parts(head, body))
    }
}

/// Tells a request body's task to reset its stream when dropped armed.
struct Abandoned(Option<tokio::sync::oneshot::Sender<()>>);

impl Drop for Abandoned {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

type Slot = Arc<tokio::sync::Mutex<Option<Connection>>>;

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

    /// The open connection to `target`, made first if there is none.
    pub async fn get(&self, target: &Target) -> Result<Connection, PoolError> {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            // The endpoint is known after its first request: no key clone.
            match slots.get(target) {
                Some(slot) => slot.clone(),
                None => slots.entry(target.clone()).or_default().clone(),
            }
        };
        let mut held = slot.lock().await;
        if let Some(conn) = held.as_ref()
            && !conn.is_closed()
        {
            return Ok(conn.clone());
        }
        // Boxed: the handshake's future is large and rarely needed, and
        // inline it would make every request's future carry its size.
        let conn = Box::pin(connect_h2(&self.connector, target)).await?;
        *held = Some(conn.clone());
        Ok(conn)
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
/// HTTP/2 on it; the connection's task runs until it closes.
async fn connect_h2(connector: &MtlsConnector, target: &Target) -> Result<Connection, PoolError> {
    let stream = connect_tls(connector, target).await?;
    // Windows sized for bulk transfers over one connection shared by many
    // streams (2 MiB a stream, 5 MiB the connection), a 16 KiB limit on
    // response heads, no server push.
    let mut builder = h2::client::Builder::new();
    builder
        .initial_window_size(2 << 20)
        .initial_connection_window_size(5 << 20)
        .max_header_list_size(16 << 10)
        .max_send_buffer_size(1 << 20)
        .enable_push(false);
    // Boxed: the connection future holds the stream, and a small future
    // is cheaper to move into its task.
    let (send, mut conn) = builder
        .handshake::<_, Bytes>(Box::new(stream))
        .await
        .map_err(|e| PoolError::Connect {
            addr: target.addr,
            source: Box::new(e),
        })?;
    let closed = Arc::new(AtomicBool::new(false));
    let addr = target.addr;
    let ended = closed.clone();
    let pings = conn.ping_pong();
    tokio::spawn(async move {
        let outcome = tokio::select! {
            biased;
            result = &mut conn => result.map_err(|e| e.to_string()),
            why = keepalive(pings) => Err(why),
        };
        ended.store(true, Ordering::Release);
        if let Err(e) = outcome {
            tracing::debug!(%addr, error = %e, "pooled connection ended");
        }
    });
    Ok(Connection { send, closed })
}

/// Pings the peer every `KEEPALIVE_INTERVAL`; returns why the connection
/// should close (no pong within `KEEPALIVE_TIMEOUT`, or the ping failed).
async fn keepalive(pings: Option<h2::PingPong>) -> String {
    let Some(mut pings) = pings else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(KEEPALIVE_INTERVAL).await;
        match tokio::time::timeout(KEEPALIVE_TIMEOUT, pings.ping(h2::Ping::opaque())).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return format!("keepalive ping failed: {e}"),
            Err(_) => return format!("no pong within {KEEPALIVE_TIMEOUT:?}"),
        }
    }
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
