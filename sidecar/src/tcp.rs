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
    /// Of `to_upstream`, the bytes already handed to the progress report.
    pub reported_to_upstream: u64,
    /// Of `to_downstream`, the bytes already handed to the progress report.
    pub reported_to_downstream: u64,
}

/// What [`splice`] reports while the connection is open: every `every`,
/// the bytes moved since the last report, `(to_upstream, to_downstream)`.
#[allow(missing_debug_implementations)] // holds a closure
pub struct Progress<F: Fn(u64, u64)> {
    /// How often.
    pub every: Duration,
    /// Called with the new bytes of each direction (skipped when none moved).
    pub report: F,
}

/// Copies between `down` and `up` until either side ends, nothing moves
/// for `idle`, a policy update makes `still_allowed` false (re-checked on
/// every change of `policy`), or `drain` changes; reports the bytes moved
/// so far through `progress` while it runs.
pub async fn splice<D, U, F: Fn(u64, u64)>(
    down: D,
    up: U,
    idle: Duration,
    mut policy: watch::Receiver<u64>,
    still_allowed: impl Fn() -> bool,
    mut drain: watch::Receiver<bool>,
    progress: Progress<F>,
) -> SpliceOutcome
where
    D: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let activity = Arc::new(Activity::new());
    // Bytes read from each side, shared with the loop below for reports.
    let (from_down, from_up) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut down = Tracked {
        inner: down,
        read: from_down.clone(),
        activity: activity.clone(),
    };
    let mut up = Tracked {
        inner: up,
        read: from_up.clone(),
        activity: activity.clone(),
    };
    policy.mark_unchanged();
    let mut closed_by = None;
    let (mut reported_up, mut reported_down) = (0u64, 0u64);
    let mut next_report = Instant::now() + progress.every;
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
                _ = tokio::time::sleep_until(next_report) => {
                    next_report = Instant::now() + progress.every;
                    let (now_up, now_down) =
                        (from_down.load(Ordering::Relaxed), from_up.load(Ordering::Relaxed));
                    if (now_up, now_down) != (reported_up, reported_down) {
                        (progress.report)(now_up - reported_up, now_down - reported_down);
                        (reported_up, reported_down) = (now_up, now_down);
                    }
                }
            }
        }
    }
    SpliceOutcome {
        to_upstream: from_down.load(Ordering::Relaxed),
        to_downstream: from_up.load(Ordering::Relaxed),
        closed_by,
        reported_to_upstream: reported_up,
        reported_to_downstream: reported_down,
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
    read: Arc<AtomicU64>,
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

    /// No report within any test's span.
    fn quiet() -> Progress<fn(u64, u64)> {
        Progress {
            every: Duration::from_secs(24 * 3600),
            report: |_, _| {},
        }
    }

    #[tokio::test(start_paused = true)]
    async fn open_connections_report_their_bytes_periodically_and_once() {
        let (client, mut client_far) = tokio::io::duplex(1024);
        let (server, mut server_far) = tokio::io::duplex(1024);
        let (_ptx, prx) = watch::channel(0u64);
        let (_dtx, drx) = watch::channel(false);
        let reports = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = reports.clone();
        let task = tokio::spawn(splice(
            client,
            server,
            Duration::from_secs(3600),
            prx,
            || true,
            drx,
            Progress {
                every: Duration::from_secs(15),
                report: move |up, down| seen.lock().unwrap().push((up, down)),
            },
        ));
        client_far.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        server_far.read_exact(&mut buf).await.unwrap();
        tokio::time::sleep(Duration::from_secs(16)).await;
        assert_eq!(*reports.lock().unwrap(), [(4, 0)], "reported while open");
        // Nothing moved: no empty report.
        tokio::time::sleep(Duration::from_secs(15)).await;
        assert_eq!(reports.lock().unwrap().len(), 1);
        server_far.write_all(b"pong!").await.unwrap();
        let mut buf = [0u8; 5];
        client_far.read_exact(&mut buf).await.unwrap();
        drop(client_far);
        drop(server_far);
        let out = task.await.unwrap();
        assert_eq!((out.to_upstream, out.to_downstream), (4, 5));
        // The caller adds only what was not reported: nothing counted twice.
        assert_eq!(
            (out.reported_to_upstream, out.reported_to_downstream),
            (4, 0)
        );
    }

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
            quiet(),
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
        let out = splice(
            client,
            server,
            Duration::from_secs(30),
            prx,
            || true,
            drx,
            quiet(),
        )
        .await;
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
            quiet(),
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
