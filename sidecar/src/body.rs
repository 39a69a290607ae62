//! Bodies as the proxy passes them on: boxed, and counted for metrics.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;

/// Errors inside proxied bodies: whatever the source body failed with.
///
/// A concrete type rather than a boxed trait object in the body type, so
/// that futures holding bodies stay `Send` for every lifetime the
/// compiler asks about.
#[derive(Debug)]
pub struct BodyError(Box<dyn std::error::Error + Send + Sync>);

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for BodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// The body type every proxied request and response uses.
pub type ProxyBody = UnsyncBoxBody<Bytes, BodyError>;

/// Boxes any body into a [`ProxyBody`].
pub fn boxed<B>(body: B) -> ProxyBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    body.map_err(|e| BodyError(e.into())).boxed_unsync()
}

/// A body with a fixed text.
pub fn text(s: impl Into<Bytes>) -> ProxyBody {
    boxed(http_body_util::Full::new(s.into()).map_err(|never| match never {}))
}

/// What a counted body saw, handed to its completion callback.
#[derive(Debug, Clone, Copy, Default)]
pub struct BodyStats {
    /// Data bytes that passed.
    pub bytes: u64,
    /// `grpc-status` from the trailers, if any passed.
    pub grpc_status: Option<u32>,
}

pin_project_lite::pin_project! {
    /// A body that counts the bytes passing through it (into a shared
    /// counter, for a request body whose count another part reads) and,
    /// when it ends or is dropped, calls a completion callback once.
    pub struct Counted<B, F = fn(BodyStats)>
    where
        F: FnOnce(BodyStats),
    {
        #[pin]
        inner: B,
        counter: Option<Arc<AtomicU64>>,
        bytes: u64,
        grpc_status: Option<u32>,
        done: Option<F>,
    }

    impl<B, F> PinnedDrop for Counted<B, F>
    where
        F: FnOnce(BodyStats),
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(done) = this.done.take() {
                done(BodyStats { bytes: *this.bytes, grpc_status: *this.grpc_status });
            }
        }
    }
}

impl<B, F: FnOnce(BodyStats)> std::fmt::Debug for Counted<B, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counted")
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl<B> Counted<B> {
    /// Counts into `counter`; no callback.
    pub fn new(inner: B, counter: Arc<AtomicU64>) -> Self {
        Counted {
            inner,
            counter: Some(counter),
            bytes: 0,
            grpc_status: None,
            done: None,
        }
    }
}

impl<B, F: FnOnce(BodyStats)> Counted<B, F> {
    /// Counts, and calls `done` once when the body ends or is dropped.
    pub fn on_done(inner: B, done: F) -> Self {
        Counted {
            inner,
            counter: None,
            bytes: 0,
            grpc_status: None,
            done: Some(done),
        }
    }
}

impl<B: Body<Data = Bytes>, F: FnOnce(BodyStats)> Body for Counted<B, F> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    *this.bytes += n;
                    if let Some(counter) = this.counter {
                        counter.fetch_add(n, Ordering::Relaxed);
                    }
                } else if let Some(trailers) = frame.trailers_ref() {
                    *this.grpc_status = grpc_status(trailers);
                }
            }
            Poll::Ready(None) => {
                if let Some(done) = this.done.take() {
                    done(BodyStats {
                        bytes: *this.bytes,
                        grpc_status: *this.grpc_status,
                    });
                }
            }
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

/// The `grpc-status` header or trailer, if present and numeric.
pub fn grpc_status(headers: &http::HeaderMap) -> Option<u32> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_bytes_and_reports_once_at_the_end() {
        let (tx, rx) = std::sync::mpsc::channel();
        let body = Counted::on_done(
            http_body_util::Full::new(Bytes::from_static(b"hello")),
            move |s| {
                tx.send(s.bytes).unwrap();
            },
        );
        let collected = body.collect().await.unwrap().to_bytes();
        assert_eq!(&collected[..], b"hello");
        assert_eq!(rx.try_recv().unwrap(), 5);
        assert!(rx.try_recv().is_err(), "callback ran twice");
    }

    #[tokio::test]
    async fn a_shared_counter_sees_every_data_frame_and_no_trailer() {
        let counter = Arc::new(AtomicU64::new(0));
        let frames = futures_util::stream::iter([
            Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(b"abc"))),
            Ok(Frame::data(Bytes::from_static(b"de"))),
            Ok(Frame::trailers(http::HeaderMap::new())),
        ]);
        let body = Counted::new(http_body_util::StreamBody::new(frames), counter.clone());
        let collected = body.collect().await.unwrap().to_bytes();
        assert_eq!(&collected[..], b"abcde");
        assert_eq!(counter.load(Ordering::Relaxed), 5);
    }

    #[tokio::test]
    async fn a_dropped_body_still_reports() {
        let (tx, rx) = std::sync::mpsc::channel();
        let body = Counted::on_done(
            http_body_util::Full::new(Bytes::from_static(b"x")),
            move |s| {
                tx.send(s.bytes).unwrap();
            },
        );
        drop(body);
        assert_eq!(rx.try_recv().unwrap(), 0);
    }
}
