//! Kept-alive HTTP/1.1 connections to the local application.
//!
//! The inbound side sends every request it admits to an application on
//! loopback, almost always to one address. A general client (hyper-util's
//! pooled client) keys its pool by scheme and authority, hashes that key
//! twice per request and wraps each connection in bookkeeping meant for
//! many hosts; here a request takes the most recently returned idle
//! connection to its address from a short list, exchanges request and
//! response on it in its own task ([`crate::h1`]), and the connection goes
//! back when the response body has been read to its end.
//!
//! A connection is reused only once its response ended and when
//! [`crate::h1`] says it may carry another; one whose response was dropped
//! half-read is closed. An idle connection the application closed is
//! noticed when taken and skipped; a request that such a connection could
//! not carry (closed before any answer, idempotent, no body byte taken)
//! goes to the next connection. Idle connections older than the idle
//! timeout are closed when the pool is next used or pruned.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::body::ProxyBody;
use crate::h1::{self, Conn, H1Error, ResponseBody};

/// Why a request did not reach the application.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// No TCP connection within the connect timeout, or it was refused.
    #[error("connecting to {addr}: {source}")]
    Connect {
        /// The application's address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The HTTP/1.1 exchange failed.
    #[error("{0}")]
    Http(#[from] H1Error),
}

struct Idle {
    addr: SocketAddr,
    conn: Conn,
    since: Instant,
}

/// HTTP/1.1 connections to the application, reused one request at a time.
pub struct AppPool {
    idle: Mutex<Vec<Idle>>,
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_idle: usize,
}

impl std::fmt::Debug for AppPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppPool")
            .field("idle", &self.lock().len())
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

impl AppPool {
    /// A pool keeping at most `max_idle` idle connections, each for at
    /// most `idle_timeout`.
    pub fn new(connect_timeout: Duration, idle_timeout: Duration, max_idle: usize) -> Self {
        AppPool {
            idle: Mutex::new(Vec::new()),
            connect_timeout,
            idle_timeout,
            max_idle,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `req` (origin-form target, `Host` set) to `addr` over an idle
    /// connection if one is usable, else over a new one. The response body
    /// returns the connection to the pool when read to its end.
    pub async fn send(
        self: &Arc<Self>,
        addr: SocketAddr,
        mut req: http::Request<ProxyBody>,
    ) -> Result<http::Response<PoolBody>, AppError> {
        // The exchanges are pinned where they are made: a future moved
        // into the await would be copied whole.
        while let Some(conn) = self.checkout(addr) {
            match std::pin::pin!(h1::exchange(conn, req, true)).await {
                Ok(done) => return Ok(self.track(addr, done)),
                Err(h1::Failed {
                    unsent: Some(unsent),
                    error,
                }) => {
                    tracing::debug!(%addr, %error, "kept connection closed; request sent again");
                    req = unsent;
                }
                Err(failed) => return Err(failed.error.into()),
            }
        }
        let conn = self.connect(addr).await?;
        match std::pin::pin!(h1::exchange(conn, req, false)).await {
            Ok(done) => Ok(self.track(addr, done)),
            Err(failed) => Err(failed.error.into()),
        }
    }

    /// The most recently returned idle connection to `addr` that is still
    /// open and usable; closed and expired ones are dropped on the way.
    fn checkout(&self, addr: SocketAddr) -> Option<Conn> {
        let mut idle = self.lock();
        while let Some(at) = idle.iter().rposition(|i| i.addr == addr) {
            let mut entry = idle.remove(at);
            if entry.since.elapsed() <= self.idle_timeout && entry.conn.is_usable() {
                return Some(entry.conn);
            }
        }
        None
    }

    async fn connect(&self, addr: SocketAddr) -> Result<Conn, AppError> {
        let connect = TcpStream::connect(addr);
        let tcp = match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(source)) => return Err(AppError::Connect { addr, source }),
            Err(_) => {
                return Err(AppError::Connect {
                    addr,
                    source: std::io::ErrorKind::TimedOut.into(),
                });
            }
        };
        let _ = tcp.set_nodelay(true);
        Ok(Conn::new(tcp))
    }

    fn track(self: &Arc<Self>, addr: SocketAddr, done: h1::Exchanged) -> http::Response<PoolBody> {
        let mut body = PoolBody {
            inner: done.body,
            back: Some((self.clone(), addr)),
        };
        // A response without a body (204, 304, HEAD) ends here.
        if body.inner.is_end_stream() {
            body.home();
        }
        done.response.map(|()| body)
    }

    /// Keeps `conn` for the next request to `addr`.
    fn keep(&self, addr: SocketAddr, conn: Conn) {
        let mut idle = self.lock();
        // Stale entries go here only when they take room; otherwise the
        // periodic prune and checkout drop them.
        if idle.len() >= self.max_idle {
            self.drop_stale(&mut idle);
        }
        if idle.len() < self.max_idle {
            idle.push(Idle {
                addr,
                conn,
                since: Instant::now(),
            });
        }
    }

    /// Closes idle connections past the idle timeout or already closed.
    pub fn prune(&self) {
        self.drop_stale(&mut self.lock());
    }

    fn drop_stale(&self, idle: &mut Vec<Idle>) {
        let timeout = self.idle_timeout;
        idle.retain_mut(|i| i.since.elapsed() <= timeout && i.conn.is_usable());
    }

    /// Idle connections held now.
    pub fn idle(&self) -> usize {
        self.lock().len()
    }
}

/// A response body from the application; returns its connection to the
/// pool once read to its end (dropped earlier, the connection closes).
pub struct PoolBody {
    inner: ResponseBody,
    back: Option<(Arc<AppPool>, SocketAddr)>,
}

impl PoolBody {
    /// Hands the connection back to its pool, if it may carry another
    /// request.
    fn home(&mut self) {
        if let Some((pool, addr)) = self.back.take()
            && let Some(conn) = self.inner.take_conn()
        {
            pool.keep(addr, conn);
        }
    }
}

impl std::fmt::Debug for PoolBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolBody")
            .field("returns_connection", &self.back.is_some())
            .finish_non_exhaustive()
    }
}

impl Body for PoolBody {
    type Data = Bytes;
    type Error = H1Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, H1Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) | Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => {
                this.home();
            }
            // An error: the connection is not reused.
            Poll::Ready(Some(Err(_))) => this.back = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
#[path = "app_pool_tests.rs"]
mod tests;
