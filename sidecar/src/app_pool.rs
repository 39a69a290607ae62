//! Kept-alive HTTP/1.1 connections to the local application.
//!
//! The inbound side sends every request it admits to an application on
//! loopback, almost always to one address. A general client (hyper-util's
//! pooled client) keys its pool by scheme and authority, hashes that key
//! twice per request and wraps each connection in bookkeeping meant for
//! many hosts; here a request takes the most recently returned idle
//! connection to its address from a short list, and the connection goes
//! back when the response body has been read to its end.
//!
//! A connection is reused only once its response ended; one whose
//! response was dropped half-read is closed. An idle connection the
//! application closed is noticed when taken (`ready` fails) and skipped;
//! a request that a closed connection could not send comes back unsent
//! and goes to the next connection. Idle connections older than the idle
//! timeout are closed when the pool is next used or pruned.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{Builder, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::body::ProxyBody;

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
    Http(#[from] hyper::Error),
}

struct Idle {
    addr: SocketAddr,
    sender: SendRequest<ProxyBody>,
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
    /// connection if one is ready, else over a new one. The response body
    /// returns the connection to the pool when read to its end.
    pub async fn send(
        self: &Arc<Self>,
        addr: SocketAddr,
        mut req: http::Request<ProxyBody>,
    ) -> Result<http::Response<PoolBody>, AppError> {
        while let Some(mut sender) = self.checkout(addr) {
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok(self.track(addr, sender, resp)),
                Err(mut e) => match e.take_message() {
                    // Never sent (the connection closed meanwhile): next.
                    Some(unsent) => req = unsent,
                    None => return Err(e.into_error().into()),
                },
            }
        }
        let mut sender = self.connect(addr).await?;
        let resp = sender.send_request(req).await?;
        Ok(self.track(addr, sender, resp))
    }

    /// The most recently returned idle connection to `addr` that is still
    /// open and ready; closed and expired ones are dropped on the way.
    fn checkout(&self, addr: SocketAddr) -> Option<SendRequest<ProxyBody>> {
        let mut idle = self.lock();
        while let Some(at) = idle.iter().rposition(|i| i.addr == addr) {
            let entry = idle.remove(at);
            if entry.since.elapsed() <= self.idle_timeout && entry.sender.is_ready() {
                return Some(entry.sender);
            }
        }
        None
    }

    async fn connect(&self, addr: SocketAddr) -> Result<SendRequest<ProxyBody>, AppError> {
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
        let (sender, conn) = Builder::new().handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%addr, error = %e, "application connection ended");
            }
        });
        Ok(sender)
    }

    fn track(
        self: &Arc<Self>,
        addr: SocketAddr,
        sender: SendRequest<ProxyBody>,
        resp: http::Response<Incoming>,
    ) -> http::Response<PoolBody> {
        let (parts, inner) = resp.into_parts();
        let mut body = PoolBody {
            inner,
            back: Some(Return {
                pool: self.clone(),
                addr,
                sender,
            }),
        };
        // A response without a body (204, 304, HEAD) ends here.
        if body.inner.is_end_stream()
            && let Some(r) = body.back.take()
        {
            r.home();
        }
        http::Response::from_parts(parts, body)
    }

    /// Keeps `sender` for the next request to `addr` once its connection
    /// is ready for one (at once, normally; else when the connection has
    /// finished the exchange, e.g. a request body still being sent).
    fn put_back(self: &Arc<Self>, addr: SocketAddr, mut sender: SendRequest<ProxyBody>) {
        if sender.is_ready() {
            self.keep(addr, sender);
        } else if !sender.is_closed() {
            let pool = self.clone();
            tokio::spawn(async move {
                if sender.ready().await.is_ok() {
                    pool.keep(addr, sender);
                }
            });
        }
    }

    fn keep(&self, addr: SocketAddr, sender: SendRequest<ProxyBody>) {
        let mut idle = self.lock();
        // Stale entries go here only when they take room; otherwise the
        // periodic prune and checkout drop them.
        if idle.len() >= self.max_idle {
            self.drop_stale(&mut idle);
        }
        if idle.len() < self.max_idle {
            idle.push(Idle {
                addr,
                sender,
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
        idle.retain(|i| i.since.elapsed() <= timeout && !i.sender.is_closed());
    }

    /// Idle connections held now.
    pub fn idle(&self) -> usize {
        self.lock().len()
    }
}

/// Where a connection goes back when its response ends.
struct Return {
    pool: Arc<AppPool>,
    addr: SocketAddr,
    sender: SendRequest<ProxyBody>,
}

impl Return {
    /// Hands the connection back to its pool.
    fn home(self) {
        self.pool.put_back(self.addr, self.sender);
    }
}

pin_project_lite::pin_project! {
    /// A response body from the application; returns its connection to the
    /// pool once read to its end (dropped earlier, the connection closes).
    pub struct PoolBody {
        #[pin]
        inner: Incoming,
        back: Option<Return>,
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
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        let ended = match &polled {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => this.inner.is_end_stream(),
            // An error: the connection is not reused.
            Poll::Ready(Some(Err(_))) => {
                this.back.take();
                false
            }
            Poll::Pending => false,
        };
        if ended && let Some(r) = this.back.take() {
            r.home();
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
