//! Copying an opaque TCP connection both ways, under watch.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio::time::Instant;

/// How a spliced connection ended.
#[derive(Debug, Clone, Copy, Default)]
pub struct SpliceOutcome {
    /// Bytes from the downstream (client) side to the upstream.
    pub to_upstream: u64,
    /// Bytes from the upstream to the downstream side.
    pub to_downstream: u64,
    /// Why the proxy closed it, when it was not the peers: `idle_timeout`,
    /// `policy_denied`, `drained`, or an I/O error's kind.
    pub closed_by: Option<&'static str>,
}

/// Copies between `down` and `up` until either side ends, nothing moves
/// for `idle`, a policy update makes `still_allowed` false (re-checked on
/// every change of `policy`), or `drain` changes.
pub async fn splice<D, U>(
    down: D,
    up: U,
    idle: Duration,
    mut policy: watch::Receiver<u64>,
    still_allowed: impl Fn() -> bool,
    mut drain: watch::Receiver<bool>,
) -> SpliceOutcome
where
    D: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let activity = Arc::new(Activity::new());
    let mut down = Tracked {
        inner: down,
        read: AtomicU64::new(0),
        activity: activity.clone(),
    };
    let mut up = Tracked {
        inner: up,
        read: AtomicU64::new(0),
        activity: activity.clone(),
    };
    policy.mark_unchanged();
    let mut closed_by = None;
    {
        let copy = tokio::io::copy_bidirectional(&mut down, &mut up);
        tokio::pin!(copy);
        loop {
            let idle_at = activity.last() + idle;
            tokio::select! {
                r = copy.as_mut() => {
                    if let Err(e) = r {
                        closed_by = Some(io_kind(&e));
                    }
                    break;
                }
                _ = tokio::time::sleep_until(idle_at) => {
                    if activity.last() + idle <= Instant::now() {
                        closed_by = Some("idle_timeout");
                        break;
                    }
                }
                changed = policy.changed() => {
                    if changed.is_ok() && !still_allowed() {
                        closed_by = Some("policy_denied");
                        break;
                    }
                }
                _ = drain.changed() => {
                    closed_by = Some("drained");
                    break;
                }
            }
        }
    }
    SpliceOutcome {
        to_upstream: down.read.load(Ordering::Relaxed),
        to_downstream: up.read.load(Ordering::Relaxed),
        closed_by,
    }
}

fn io_kind(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::ConnectionReset => "connection_reset",
        io::ErrorKind::BrokenPipe => "broken_pipe",
        io::ErrorKind::UnexpectedEof => "unexpected_eof",
        _ => "io_error",
    }
}

/// The last time a byte moved either way.
#[derive(Debug)]
struct Activity {
    origin: Instant,
    offset_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            origin: Instant::now(),
            offset_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.offset_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.origin + Duration::from_millis(self.offset_ms.load(Ordering::Relaxed))
    }
}

/// A stream that counts what is read from it and notes activity.
struct Tracked<S> {
    inner: S,
    read: AtomicU64,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            this.read.fetch_add(n as u64, Ordering::Relaxed);
            this.activity.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn copies_both_ways_and_counts() {
        let (client, mut client_far) = tokio::io::duplex(1024);
        let (server, mut server_far) = tokio::io::duplex(1024);
        let (_ptx, prx) = watch::channel(0u64);
        let (_dtx, drx) = watch::channel(false);
        let task = tokio::spawn(splice(
            client,
            server,
            Duration::from_secs(60),
            prx,
            || true,
            drx,
        ));
        client_far.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        server_far.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        server_far.write_all(b"pong!").await.unwrap();
        let mut buf = [0u8; 5];
        client_far.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong!");
        drop(client_far);
        drop(server_far);
        let out = task.await.unwrap();
        assert_eq!((out.to_upstream, out.to_downstream), (4, 5));
        assert_eq!(out.closed_by, None);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connections_close_after_the_timeout() {
        let (client, _client_far) = tokio::io::duplex(1024);
        let (server, _server_far) = tokio::io::duplex(1024);
        let (_ptx, prx) = watch::channel(0u64);
        let (_dtx, drx) = watch::channel(false);
        let started = Instant::now();
        let out = splice(client, server, Duration::from_secs(30), prx, || true, drx).await;
        assert_eq!(out.closed_by, Some("idle_timeout"));
        assert!(started.elapsed() >= Duration::from_secs(30));
        assert!(started.elapsed() < Duration::from_secs(31));
    }

    #[tokio::test(start_paused = true)]
    async fn a_policy_update_that_denies_closes_the_connection() {
        let (client, _client_far) = tokio::io::duplex(1024);
        let (server, _server_far) = tokio::io::duplex(1024);
        let (ptx, prx) = watch::channel(0u64);
        let (_dtx, drx) = watch::channel(false);
        let allowed = Arc::new(AtomicBool::new(true));
        let check = allowed.clone();
        let task = tokio::spawn(splice(
            client,
            server,
            Duration::from_secs(3600),
            prx,
            move || check.load(Ordering::SeqCst),
            drx,
        ));
        // An update that still allows keeps the connection.
        ptx.send(1).unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!task.is_finished());
        allowed.store(false, Ordering::SeqCst);
        ptx.send(2).unwrap();
        let out = task.await.unwrap();
        assert_eq!(out.closed_by, Some("policy_denied"));
    }
}
