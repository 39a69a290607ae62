//! Bodies on HTTP/2 streams driven with the `h2` crate: [`RecvBody`]
//! hands on what arrives and reopens the flow-control window as it goes;
//! the crate's own `SendBody` sends a [`ProxyBody`] within the window the
//! peer grants.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::body::ProxyBody;

/// Sends a body on its HTTP/2 stream (a request's on the outbound, a
/// response's on the inbound): each data frame once the stream has send
/// capacity, then trailers or the end of the stream. Stops when the peer
/// resets the stream; resets it with `CANCEL` when the body fails or, if
/// it was given an `abandoned` signal, when that fires.
pub(crate) struct SendBody {
    body: ProxyBody,
    stream: h2::SendStream<Bytes>,
    /// A data frame waiting for capacity, and whether it ends the body.
    held: Option<(Bytes, bool)>,
    abandoned: Option<tokio::sync::oneshot::Receiver<()>>,
}

/// The largest last data frame [`SendBody`] sends without first waiting
/// for capacity: HTTP/2's smallest maximum frame size.
const DIRECT_LAST_FRAME: usize = 16 * 1024;

impl SendBody {
    /// Sends `body` on `stream`; `abandoned` receiving `()` stops it.
    pub(crate) fn new(
        body: ProxyBody,
        stream: h2::SendStream<Bytes>,
        abandoned: Option<tokio::sync::oneshot::Receiver<()>>,
    ) -> Self {
        SendBody {
            body,
            stream,
            held: None,
            abandoned,
        }
    }
}

impl Future for SendBody {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let me = self.get_mut();
        if let Some(rx) = me.abandoned.as_mut()
            && let Poll::Ready(sent) = Pin::new(rx).poll(cx)
        {
            me.abandoned = None;
            if sent.is_ok() {
                me.stream.send_reset(h2::Reason::CANCEL);
                return Poll::Ready(());
            }
        }
        loop {
            // The peer reset the stream (it answered without reading the
            // rest, or refused it): nothing more is sent.
            if me.stream.poll_reset(cx).is_ready() {
                return Poll::Ready(());
            }
            if let Some((data, end)) = me.held.take() {
                // Claim capacity only with data in hand, one byte at a
                // time: h2 raises the claim to what is buffered when the
                // data is sent, and a claim made before the body has data
                // would hold connection window another stream may need.
                while me.stream.capacity() == 0 {
                    match me.stream.poll_capacity(cx) {
                        Poll::Pending => {
                            me.held = Some((data, end));
                            return Poll::Pending;
                        }
                        Poll::Ready(Some(Ok(_))) => {}
                        Poll::Ready(Some(Err(_)) | None) => return Poll::Ready(()),
                    }
                }
                if me.stream.send_data(data, end).is_err() || end {
                    return Poll::Ready(());
                }
                continue;
            }
            match ready!(Pin::new(&mut me.body).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let end = me.body.is_end_stream();
                        // An empty frame needs no capacity. Nor is any
                        // claimed first for a small last one (most
                        // bodies): h2 claims what it buffers as it is
                        // sent, and what may wait past the window is this
                        // one frame, not a body's worth.
                        if data.is_empty() || (end && data.len() <= DIRECT_LAST_FRAME) {
                            if me.stream.send_data(data, end).is_err() || end {
                                return Poll::Ready(());
                            }
                        } else {
                            me.stream.reserve_capacity(1);
                            me.held = Some((data, end));
                        }
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            me.stream.reserve_capacity(0);
                            let _ = me.stream.send_trailers(trailers);
                            return Poll::Ready(());
                        }
                    }
                },
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "body failed; resetting its stream");
                    me.stream.send_reset(h2::Reason::CANCEL);
                    return Poll::Ready(());
                }
                None => {
                    let _ = me.stream.send_data(Bytes::new(), true);
                    return Poll::Ready(());
                }
            }
        }
    }
}

/// A body as it arrives on its HTTP/2 stream (a response's on the
/// outbound, a request's on the inbound): data frames, the stream's
/// window reopened as each is handed on, then trailers.
#[derive(Debug)]
pub struct RecvBody {
    recv: h2::RecvStream,
    data_done: bool,
    /// `content-length`, when the message declared one.
    length: Option<u64>,
}

impl RecvBody {
    /// The body of a message with `headers`, whose `content-length` (h2
    /// has checked it against the data) becomes the size hint.
    pub(crate) fn new(recv: h2::RecvStream, headers: &http::HeaderMap) -> Self {
        let length = if recv.is_end_stream() {
            Some(0)
        } else {
            headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse().ok())
        };
        RecvBody {
            recv,
            data_done: false,
            length,
        }
    }
}

impl Body for RecvBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        if !self.data_done {
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                // A peer that has sent its whole message may reset the
                // stream to stop the other direction: the body is whole.
                Some(Err(e)) if e.reason() == Some(h2::Reason::NO_ERROR) => {
                    return Poll::Ready(None);
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => self.data_done = true,
            }
        }
        match ready!(self.recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(e) if e.reason() == Some(h2::Reason::NO_ERROR) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match self.length {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::text;

    /// Many streams' small last frames, together more than the peer's
    /// connection window, are sent without waiting for capacity: each
    /// arrives whole as the reader's window updates let h2 write what it
    /// buffered, and the last stream's as surely as the first.
    #[tokio::test(flavor = "current_thread")]
    async fn small_last_frames_past_the_window_all_arrive_whole() {
        const STREAMS: usize = 100;
        const SIZE: usize = 1000; // 100 kB in all, past the 64 kB window
        let (c, s) = tokio::io::duplex(1 << 14);
        let server = tokio::spawn(async move {
            let mut conn = h2::server::handshake(s).await.expect("server handshake");
            while let Some(Ok((_req, mut respond))) = conn.accept().await {
                let stream = respond
                    .send_response(http::Response::new(()), false)
                    .expect("response head sent");
                let body = text(vec![b'x'; SIZE]);
                tokio::spawn(SendBody::new(body, stream, None));
            }
        });
        let (client, conn) = h2::client::handshake(c).await.expect("client handshake");
        tokio::spawn(conn);
        let mut responses = Vec::new();
        for _ in 0..STREAMS {
            let mut client = client.clone().ready().await.expect("client ready");
            let (resp, _) = client
                .send_request(
                    http::Request::get("http://x/").body(()).expect("request"),
                    true,
                )
                .expect("request sent");
            responses.push(resp);
        }
        for resp in responses {
            let mut body = resp.await.expect("response head").into_body();
            let mut got = 0;
            while let Some(chunk) = body.data().await {
                let chunk = chunk.expect("data");
                got += chunk.len();
                let _ = body.flow_control().release_capacity(chunk.len());
            }
            assert_eq!(got, SIZE);
            assert!(body.is_end_stream());
        }
        drop(client);
        server.abort();
    }
}
