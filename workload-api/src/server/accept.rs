//! The accept loop: a connection cap, backoff after accept errors, and
//! attestation of each connection as it is accepted.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::Semaphore;

use super::authority::AuthorityRewrite;
use super::conn::{Connection, PeerStream};
use crate::attest::{Attestor, Caller, UnixPeer};

/// The first pause after a resource error from `accept`, doubled on each
/// consecutive one up to [`MAX_ACCEPT_BACKOFF`].
const MIN_ACCEPT_BACKOFF: Duration = Duration::from_millis(5);
/// The longest pause between `accept` attempts while resources are short.
pub(crate) const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Something that yields connections with the caller facts read from them.
pub(crate) trait Listener: Send + 'static {
    /// The accepted stream.
    type Io: Send + 'static;
    /// The next connection; `Ok(None)` for one that was dropped at once
    /// (its peer facts could not be read).
    fn accept(&mut self) -> impl Future<Output = io::Result<Option<(Self::Io, Caller)>>> + Send;
}

impl Listener for UnixListener {
    type Io = AuthorityRewrite<UnixStream>;
    async fn accept(&mut self) -> io::Result<Option<(Self::Io, Caller)>> {
        let (io, _) = UnixListener::accept(self).await?;
        match io.peer_cred() {
            Ok(cred) => {
                let caller = Caller::Unix(UnixPeer {
                    uid: cred.uid(),
                    gid: cred.gid(),
                    pid: cred.pid(),
                });
                // Reads pass through the `:authority` rewrite (see
                // `authority`), so every gRPC client library works.
                Ok(Some((AuthorityRewrite::new(io), caller)))
            }
            Err(e) => {
                tracing::warn!(error = %e, "dropping a connection without peer credentials");
                Ok(None)
            }
        }
    }
}

impl Listener for TcpListener {
    type Io = TcpStream;
    async fn accept(&mut self) -> io::Result<Option<(Self::Io, Caller)>> {
        let (io, peer) = TcpListener::accept(self).await?;
        let _ = io.set_nodelay(true);
        Ok(Some((io, Caller::Tcp { peer })))
    }
}

/// Errors that concern one connection only (it was reset or aborted
/// before we took it): accept the next at once.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// How the accept loop treats its connections.
pub(crate) struct AcceptConfig {
    pub(crate) attestor: Arc<dyn Attestor>,
    /// One permit per open connection.
    pub(crate) connections: Arc<Semaphore>,
    pub(crate) idle_timeout: Duration,
}

struct Loop<L> {
    listener: L,
    config: AcceptConfig,
    backoff: Duration,
}

/// Accepts connections while a connection permit is free (so at the cap
/// the kernel's backlog holds newcomers), attests each at once, and after
/// an error such as `EMFILE` waits (5 ms doubling to 1 s) instead of
/// retrying in a tight loop. The stream never yields an error.
pub(crate) fn incoming<L: Listener>(
    listener: L,
    config: AcceptConfig,
) -> impl Stream<Item = io::Result<PeerStream<L::Io>>> {
    let state = Loop {
        listener,
        config,
        backoff: MIN_ACCEPT_BACKOFF,
    };
    futures_util::stream::unfold(state, |mut st| async move {
        let permit = Arc::clone(&st.config.connections)
            .acquire_owned()
            .await
            .ok()?;
        loop {
            match st.listener.accept().await {
                Ok(Some((io, caller))) => {
                    st.backoff = MIN_ACCEPT_BACKOFF;
                    let conn = Connection::attest(caller, &st.config.attestor);
                    let stream = PeerStream::new(io, conn, permit, st.config.idle_timeout);
                    return Some((Ok(stream), st));
                }
                Ok(None) => {}
                Err(e) if is_per_connection(&e) => {}
                Err(e) => {
                    tracing::warn!(error = %e, pause = ?st.backoff, "accept failed; pausing");
                    tokio::time::sleep(st.backoff).await;
                    st.backoff = (st.backoff * 2).min(MAX_ACCEPT_BACKOFF);
                }
            }
        }
    })
}

/// Accepts with no attestation and no limits, for scripted test servers.
#[cfg(test)]
pub(crate) fn unattested(
    listener: UnixListener,
) -> impl Stream<Item = io::Result<PeerStream<AuthorityRewrite<UnixStream>>>> {
    let none = |_: &Caller| Ok(crate::Selectors::new());
    incoming(
        listener,
        AcceptConfig {
            attestor: Arc::new(none),
            connections: Arc::new(Semaphore::new(Semaphore::MAX_PERMITS)),
            idle_timeout: Duration::from_secs(3600),
        },
    )
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures_util::StreamExt;

    use super::*;
    use crate::Selectors;

    /// A listener that fails with `EMFILE` `failures` times, counting calls,
    /// then hands out one connection.
    struct Failing {
        calls: Arc<AtomicUsize>,
        failures: usize,
    }

    impl Listener for Failing {
        type Io = tokio::io::DuplexStream;
        async fn accept(&mut self) -> io::Result<Option<(Self::Io, Caller)>> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if n < self.failures {
                return Err(io::Error::from_raw_os_error(24)); // EMFILE
            }
            if n == self.failures {
                let (io, _peer) = tokio::io::duplex(64);
                return Ok(Some((
                    io,
                    Caller::Tcp {
                        peer: "127.0.0.1:1".parse().unwrap(),
                    },
                )));
            }
            std::future::pending().await
        }
    }

    fn config(connections: usize) -> AcceptConfig {
        let none = |_: &Caller| Ok(Selectors::new());
        AcceptConfig {
            attestor: Arc::new(none),
            connections: Arc::new(Semaphore::new(connections)),
            idle_timeout: Duration::from_secs(60),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn emfile_makes_the_accept_loop_pause_not_spin() {
        let calls = Arc::new(AtomicUsize::new(0));
        let listener = Failing {
            calls: Arc::clone(&calls),
            failures: 1_000_000,
        };
        let mut incoming = Box::pin(incoming(listener, config(10)));
        // One virtual second of EMFILE: 5 + 10 + ... ms pauses allow about
        // eight attempts. Without the pause the loop would spin through
        // all the failures at once.
        let waited = tokio::time::timeout(Duration::from_secs(1), incoming.next()).await;
        assert!(waited.is_err(), "no connection is yielded");
        let n = calls.load(Ordering::SeqCst);
        assert!((2..=10).contains(&n), "{n} accept calls in one second");
        // The pause is capped: a further minute allows about 60 more.
        let _ = tokio::time::timeout(Duration::from_secs(60), incoming.next()).await;
        let m = calls.load(Ordering::SeqCst) - n;
        assert!((50..=70).contains(&m), "{m} accept calls in a minute");
    }

    #[tokio::test(start_paused = true)]
    async fn the_loop_recovers_after_errors() {
        let calls = Arc::new(AtomicUsize::new(0));
        let listener = Failing {
            calls: Arc::clone(&calls),
            failures: 3,
        };
        let mut incoming = Box::pin(incoming(listener, config(10)));
        let conn = tokio::time::timeout(Duration::from_secs(5), incoming.next())
            .await
            .expect("a connection after the errors")
            .expect("the stream goes on");
        assert!(conn.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn no_accept_past_the_connection_cap() {
        let calls = Arc::new(AtomicUsize::new(0));
        let listener = Failing {
            calls: Arc::clone(&calls),
            failures: 0,
        };
        let mut incoming = Box::pin(incoming(listener, config(0)));
        let waited = tokio::time::timeout(Duration::from_secs(5), incoming.next()).await;
        assert!(waited.is_err());
        assert_eq!(
            calls.load(Ordering::SeqCst),
            0,
            "accept is not called at the cap"
        );
    }
}
