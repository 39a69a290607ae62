//! Accepted connections and the facts taken about them at accept time.
//!
//! Each connection is attested once, as soon as it is accepted: the
//! selectors (from `SO_PEERCRED` and `/proc` as they were then) travel with
//! the connection into every request. A process that inherits the socket,
//! or the connecting process after an `exec`, gets the identity of the
//! process that connected, not its own.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, watch};
use tonic::transport::server::Connected;

use crate::Selectors;
use crate::attest::{AttestError, Attestor, Caller};

/// The attestation outcome shared by every request on a connection.
pub(crate) type Attested = Result<Selectors, Arc<AttestError>>;

/// How many RPCs a connection has running, and how many it ever started:
/// the idle timer closes a connection that started none and ran none for
/// a whole period.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    active: AtomicUsize,
    started: AtomicU64,
}

impl Activity {
    /// Marks an RPC as running until the guard is dropped.
    pub(crate) fn begin(self: &Arc<Self>) -> ActiveRpc {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.started.fetch_add(1, Ordering::Relaxed);
        ActiveRpc(Arc::clone(self))
    }
}

/// One running RPC (see [`Activity::begin`]).
#[derive(Debug)]
pub(crate) struct ActiveRpc(Arc<Activity>);

impl Drop for ActiveRpc {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the server knows about a connection; tonic puts a clone into every
/// request's extensions.
#[derive(Clone, Debug)]
pub(crate) struct Connection {
    pub(crate) caller: Caller,
    attested: watch::Receiver<Option<Attested>>,
    pub(crate) activity: Arc<Activity>,
}

impl Connection {
    /// Starts attesting `caller` on a blocking thread now, at accept time.
    pub(crate) fn attest(caller: Caller, attestor: &Arc<dyn Attestor>) -> Self {
        let (tx, attested) = watch::channel(None);
        let attestor = Arc::clone(attestor);
        tokio::task::spawn_blocking(move || {
            let result = attestor.attest(&caller).map_err(Arc::new);
            if let Err(e) = &result {
                tracing::info!(error = %e, ?caller, "workload attestation failed");
            }
            tx.send_replace(Some(result));
        });
        Connection {
            caller,
            attested,
            activity: Arc::default(),
        }
    }

    /// The selectors found at accept time (waiting for the attestation to
    /// finish if it has not yet). `None` if the attestation task died.
    pub(crate) async fn selectors(&self) -> Option<Attested> {
        let mut rx = self.attested.clone();
        let done = rx.wait_for(Option::is_some).await.ok()?;
        done.clone()
    }
}

/// An accepted stream with its [`Connection`] facts, the connection-cap
/// permit it holds, and its idle timer.
pub(crate) struct PeerStream<S> {
    io: S,
    conn: Connection,
    _permit: OwnedSemaphorePermit,
    idle: Idle,
}

impl<S> PeerStream<S> {
    pub(crate) fn new(
        io: S,
        conn: Connection,
        permit: OwnedSemaphorePermit,
        idle_timeout: Duration,
    ) -> Self {
        PeerStream {
            io,
            conn,
            _permit: permit,
            idle: Idle::new(idle_timeout),
        }
    }
}

/// Closes a connection on which no RPC ran or started during a whole
/// period (so between one and two periods after the last activity).
struct Idle {
    period: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
    seen_started: u64,
}

impl Idle {
    fn new(period: Duration) -> Self {
        Idle {
            period,
            sleep: Box::pin(tokio::time::sleep(period)),
            seen_started: 0,
        }
    }

    /// `true` once the connection has been idle for a whole period.
    fn expired(&mut self, cx: &mut Context<'_>, activity: &Activity) -> bool {
        while self.sleep.as_mut().poll(cx).is_ready() {
            let started = activity.started.load(Ordering::Relaxed);
            let active = activity.active.load(Ordering::Relaxed);
            if active == 0 && started == self.seen_started {
                return true;
            }
            self.seen_started = started;
            let next = tokio::time::Instant::now() + self.period;
            self.sleep.as_mut().reset(next);
        }
        false
    }
}

impl<S> Connected for PeerStream<S> {
    type ConnectInfo = Connection;
    fn connect_info(&self) -> Connection {
        self.conn.clone()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for PeerStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Pending => {
                if this.idle.expired(cx, &this.conn.activity) {
                    tracing::debug!(caller = ?this.conn.caller, "closing an idle connection");
                    // End of stream: the HTTP/2 connection closes.
                    return Poll::Ready(Ok(()));
                }
                Poll::Pending
            }
            ready => ready,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for PeerStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
