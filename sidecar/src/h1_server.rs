//! HTTP/1.x from the application, served in the connection's own task.
//!
//! The outbound listener takes the application's requests. Here each
//! request head is parsed out of the connection's read buffer, the
//! handler's future runs in the same task, and the response's head and a
//! body that is already whole leave in one write. Bodies of requests read
//! straight from the socket as the handler pulls them.
//!
//! What it speaks (RFC 9112, server side):
//!
//! - Request lines in origin, absolute or asterisk form, `HTTP/1.1` and
//!   `HTTP/1.0`; empty lines before a request line are skipped. A head
//!   larger than the limit, or with more than [`MAX_HEADERS`] fields, is
//!   answered `431`; a malformed one `400`; the connection then closes.
//! - The head must arrive whole within the header deadline, counted from
//!   when the server starts waiting for it (an idle kept-alive connection
//!   included); else the connection closes without an answer.
//! - Request bodies: chunked (the last transfer coding), with trailers,
//!   or as long as `Content-Length` says. `Transfer-Encoding` in an
//!   `HTTP/1.0` request, a coding list not ending in `chunked`, both
//!   `Transfer-Encoding` and `Content-Length`, or an invalid or
//!   conflicting `Content-Length` are answered `400` (no guessing where a
//!   request ends: that is how requests are smuggled).
//! - `Expect: 100-continue` is answered `100 Continue` at once, and the
//!   field is not passed on.
//! - Responses: the status line says `HTTP/1.1` (`HTTP/1.0` to an
//!   `HTTP/1.0` request). No body for `HEAD`, `1xx`, `204` and `304`;
//!   otherwise `Content-Length` when the response declares it or its body
//!   knows its length, else chunked (trailers sent only when the
//!   request's `TE` lists `trailers`), else, to an `HTTP/1.0` client, up
//!   to the close. `Date` is added when missing.
//! - Kept alive: `HTTP/1.1` unless `Connection: close`, `HTTP/1.0` only
//!   with `Connection: keep-alive`, and only when the request body was
//!   read to its end by the time the response was written. Pipelined
//!   requests wait in the buffer and are answered in order.
//! - A client that closes its side while its request (one without a
//!   body) waits for an answer cancels it: the handler's future is
//!   dropped.
//! - `CONNECT` and the HTTP/2 connection preface are not served here: the
//!   connection goes back to the caller with the bytes read
//!   ([`Served::Handoff`]), for a server that tunnels or speaks HTTP/2.
//!
//! [`parse_request`] is a pure function over a byte buffer, which the
//! fuzz target `sidecar_h1_request` drives together with the body
//! [`Decoder`].

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, Method, StatusCode, Version, header};
use http_body::{Body, Frame, SizeHint};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::time::Instant;

use crate::body::ProxyBody;
use crate::deadline::LaterDeadlines;
use crate::h1::{
    Decoder, Framing, H1Error, MAX_HEADERS, Present, Sending, Span, Upload, add_length,
    field_spans, header_map, lists_token, offsets, poll_decoded, poll_fill, write_fields,
};

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Why a request head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// Longer than the limit, or too many fields.
    #[error("request head too large")]
    TooLarge,
    /// Not a valid HTTP/1.x request head, or a body framing refused.
    #[error("invalid request head: {0}")]
    Malformed(&'static str),
}

impl HeadError {
    /// The status the client is answered with.
    pub fn status(self) -> StatusCode {
        match self {
            HeadError::TooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            HeadError::Malformed(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// A request head parsed by [`parse_request`].
#[derive(Debug)]
pub struct RequestHead {
    /// Method, target, version and header fields (`Expect:
    /// 100-continue` removed).
    pub request: http::Request<()>,
    /// How the body is delimited: [`Framing::Empty`], a length, or
    /// chunked.
    pub framing: Framing,
    /// Whether the client lets the connection carry another request.
    pub keep_alive: bool,
    /// Whether the client waits for `100 Continue` before its body.
    pub expect_continue: bool,
    /// Whether the client takes trailers (`TE: trailers`).
    pub trailers: bool,
}

/// What [`parse_request`] found at the start of the buffer.
#[derive(Debug)]
// One per request, moved once: a box would cost an allocation each.
#[allow(clippy::large_enum_variant)]
pub enum Parsed {
    /// A request head (removed from the buffer).
    Request(RequestHead),
    /// A `CONNECT` request, left in the buffer for another server.
    Connect,
}

/// Parses the request head at the start of `buf` and removes it from
/// `buf`; `Ok(None)` while it is incomplete (nothing is consumed). A head
/// may be at most `max_head` bytes long.
pub fn parse_request(buf: &mut BytesMut, max_head: usize) -> Result<Option<Parsed>, HeadError> {
    if buf.is_empty() {
        return Ok(None);
    }
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut few = [Span::default(); 16];
    let mut many = Vec::new();
    let (len, method, target, version, at) = {
        // No further than one byte past the limit: the answer must not
        // depend on how much of a too long head has arrived.
        let window = &buf[..buf.len().min(max_head.saturating_add(1))];
        let mut parsed = httparse::Request::new(&mut []);
        let status = httparse::ParserConfig::default().parse_request_with_uninit_headers(
            &mut parsed,
            window,
            &mut slots,
        );
        let len = match status {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if window.len() > max_head => {
                return Err(HeadError::TooLarge);
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
            Err(_) => return Err(HeadError::Malformed("unparsable request head")),
        };
        let (Some(method), Some(target)) = (parsed.method, parsed.path) else {
            return Err(HeadError::Malformed("no request line"));
        };
        if method == "CONNECT" {
            return Ok(Some(Parsed::Connect));
        }
        let at = field_spans(buf, parsed.headers, &mut few, &mut many);
        let version = if parsed.version == Some(1) {
            Version::HTTP_11
        } else {
            Version::HTTP_10
        };
        (
            len,
            offsets(buf, method.as_bytes()),
            offsets(buf, target.as_bytes()),
            version,
            at,
        )
    };
    if len > max_head {
        return Err(HeadError::TooLarge);
    }
    let head = buf.split_to(len).freeze();
    let method = Method::from_bytes(&head[method.0..method.1])
        .map_err(|_| HeadError::Malformed("invalid method"))?;
    let uri = http::Uri::from_maybe_shared(head.slice(target.0..target.1))
        .map_err(|_| HeadError::Malformed("invalid request target"))?;
    let (mut headers, present) = header_map(&head, at).map_err(HeadError::Malformed)?;
    let framing = request_framing(&headers, &present, version)?;
    // `close` wins wherever it is listed.
    let close = present.connection && lists_token(&headers, &header::CONNECTION, b"close");
    let keep_alive = !close
        && (version == Version::HTTP_11
            || present.keep_alive
            || (present.connection && lists_token(&headers, &header::CONNECTION, b"keep-alive")));
    let expect_continue = present.expect
        && version == Version::HTTP_11
        && headers
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expect_continue {
        headers.remove(header::EXPECT);
    }
    let trailers = present.te && lists_token(&headers, &header::TE, b"trailers");
    let mut request = http::Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = headers;
    Ok(Some(Parsed::Request(RequestHead {
        request,
        framing,
        keep_alive,
        expect_continue,
        trailers,
    })))
}

/// How a request's body is delimited (RFC 9112, section 6.3), refusing
/// every framing a peer on the way could read differently.
fn request_framing(
    headers: &HeaderMap,
    present: &Present,
    version: Version,
) -> Result<Framing, HeadError> {
    if present.transfer_encoding {
        if version == Version::HTTP_10 {
            return Err(HeadError::Malformed(
                "Transfer-Encoding in an HTTP/1.0 request",
            ));
        }
        if present.has_length() {
            return Err(HeadError::Malformed(
                "both Transfer-Encoding and Content-Length",
            ));
        }
        let chunked_last = headers
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .next_back()
            .and_then(|v| v.as_bytes().rsplit(|b| *b == b',').next())
            .is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        if !chunked_last {
            return Err(HeadError::Malformed(
                "Transfer-Encoding does not end in chunked",
            ));
        }
        return Ok(Framing::Chunked);
    }
    let declared = present.length.ok_or(HeadError::Malformed(
        "invalid or conflicting Content-Length",
    ))?;
    Ok(match declared {
        None | Some(0) => Framing::Empty,
        Some(n) => Framing::Length(n),
    })
}

/// Limits on what a client may send.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Largest request head (request line and fields), in bytes.
    pub max_head_bytes: usize,
    /// How long a client has to send a whole request head, counted from
    /// when the server starts waiting for it.
    pub header_read_timeout: Duration,
}

/// How [`serve`] ended.
#[derive(Debug)]
pub enum Served {
    /// The connection closed: the client left, an error, a deadline, or
    /// a response after which it could not be kept.
    Closed,
    /// A `CONNECT` request or the HTTP/2 preface came next, which this
    /// server does not speak: the connection, and the bytes read from it
    /// and not used (that request or preface first), for another.
    Handoff(TcpStream, Bytes),
}

/// The reading half of a connection and the bytes read and not yet used.
#[derive(Debug)]
struct ReadSide {
    io: OwnedReadHalf,
    buf: BytesMut,
}

impl ReadSide {
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        poll_fill(&mut self.io, &mut self.buf, cx)
    }
}

/// Where a request body gives the reading half back once it has read
/// its end, for the connection's next request.
type Returned = Arc<Mutex<Option<ReadSide>>>;

/// The body of a request, read from the client's connection as it is
/// polled.
#[derive(Debug)]
pub struct RequestBody {
    side: Option<ReadSide>,
    decoder: Decoder,
    back: Option<Returned>,
}

impl RequestBody {
    fn empty() -> Self {
        RequestBody {
            side: None,
            decoder: Decoder::new(Framing::Empty),
            back: None,
        }
    }

    /// The end was read: the connection may read its next request.
    fn give_back(&mut self) {
        if let (Some(side), Some(back)) = (self.side.take(), self.back.take()) {
            *back
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(side);
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = H1Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, H1Error>>> {
        let this = &mut *self;
        if this.decoder.is_done() {
            this.give_back();
            return Poll::Ready(None);
        }
        let Some(side) = this.side.as_mut() else {
            return Poll::Ready(None);
        };
        match ready!(poll_decoded(
            &mut this.decoder,
            &mut side.io,
            &mut side.buf,
            cx
        )) {
            Ok(decoded) => {
                if this.decoder.is_done() {
                    this.give_back();
                }
                Poll::Ready(decoded.into_frame().map(Ok))
            }
            Err(e) => {
                this.side = None;
                Poll::Ready(Some(Err(e)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.decoder.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        self.decoder.size_hint()
    }
}

/// The header deadline, with one timer per connection
/// ([`LaterDeadlines`]): starting a head only notes the time.
struct HeadDeadline {
    timeout: Duration,
    limit: Instant,
    timer: LaterDeadlines,
}

impl HeadDeadline {
    fn start(&mut self) {
        self.limit = Instant::now() + self.timeout;
    }

    /// Whether the deadline passed; else arranges a wake-up for it.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.timer.poll_passed(self.limit, cx)
    }
}

/// Whether `buf` starts like the HTTP/2 connection preface.
fn preface_start(buf: &[u8]) -> bool {
    let n = buf.len().min(H2_PREFACE.len());
    n > 0 && buf[..n] == H2_PREFACE[..n]
}

/// What reading a request head gave.
#[allow(clippy::large_enum_variant)]
enum Next {
    Request(RequestHead),
    Handoff,
    Refuse(HeadError),
    Close,
}

/// Reads the next request head, within the header deadline.
async fn read_head(
    side: &mut ReadSide,
    deadline: &mut HeadDeadline,
    max_head: usize,
    first: bool,
) -> Next {
    deadline.start();
    std::future::poll_fn(|cx| {
        loop {
            if first && preface_start(&side.buf) {
                if side.buf.len() >= H2_PREFACE.len() {
                    return Poll::Ready(Next::Handoff);
                }
            } else {
                match parse_request(&mut side.buf, max_head) {
                    Ok(Some(Parsed::Request(h))) => return Poll::Ready(Next::Request(h)),
                    Ok(Some(Parsed::Connect)) => return Poll::Ready(Next::Handoff),
                    Ok(None) => {}
                    Err(e) => return Poll::Ready(Next::Refuse(e)),
                }
            }
            match side.poll_fill(cx) {
                Poll::Ready(Ok(0) | Err(_)) => return Poll::Ready(Next::Close),
                Poll::Ready(Ok(_)) => {}
                Poll::Pending => {
                    return if deadline.poll_expired(cx) {
                        tracing::debug!("request head not received within the deadline");
                        Poll::Ready(Next::Close)
                    } else {
                        Poll::Pending
                    };
                }
            }
        }
    })
    .await
}

/// Serves HTTP/1.x requests on `io`, `read` being bytes already read from
/// it, answering each with `handler` until the connection closes or
/// something this server does not speak comes ([`Served::Handoff`]).
pub async fn serve<H, F>(io: TcpStream, read: &[u8], limits: ServerLimits, mut handler: H) -> Served
where
    H: FnMut(http::Request<RequestBody>) -> F,
    F: Future<Output = http::Response<ProxyBody>>,
{
    let (rd, mut wr) = io.into_split();
    let mut side = Some(ReadSide {
        io: rd,
        buf: BytesMut::from(read),
    });
    let mut deadline = HeadDeadline {
        timeout: limits.header_read_timeout,
        limit: Instant::now(),
        timer: LaterDeadlines::new(),
    };
    let mut first = true;
    while let Some(reading) = side.as_mut() {
        let head = match read_head(reading, &mut deadline, limits.max_head_bytes, first).await {
            Next::Request(head) => head,
            Next::Handoff => {
                let Some(reading) = side.take() else { break };
                return match reading.io.reunite(wr) {
                    Ok(io) => Served::Handoff(io, reading.buf.freeze()),
                    Err(_) => Served::Closed,
                };
            }
            Next::Refuse(e) => {
                tracing::debug!(error = %e, "request refused");
                let status = e.status();
                let answer = format!(
                    "HTTP/1.1 {} {}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    status.as_str(),
                    status.canonical_reason().unwrap_or("")
                );
                let _ = wr.write_all(answer.as_bytes()).await;
                break;
            }
            Next::Close => break,
        };
        first = false;
        let RequestHead {
            request,
            framing,
            keep_alive,
            expect_continue,
            trailers,
        } = head;
        if expect_continue
            && framing != Framing::Empty
            && wr
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .is_err()
        {
            return Served::Closed;
        }
        let head_request = request.method() == Method::HEAD;
        let version = request.version();
        let (body, back) = if framing == Framing::Empty {
            (RequestBody::empty(), None)
        } else {
            let back: Returned = Arc::default();
            let body = RequestBody {
                side: side.take(),
                decoder: Decoder::new(framing),
                back: Some(back.clone()),
            };
            (body, Some(back))
        };
        // Pinned where it is made: the handler's future is large, and
        // moving it would copy all of it.
        let answer = std::pin::pin!(handler(request.map(|()| body)));
        let Some(response) = answer_or_leave(answer, side.as_mut()).await else {
            return Served::Closed;
        };
        let mut keep = keep_alive;
        let (parts, body) = response.into_parts();
        let mut upload = encode_response(&parts, body, head_request, version, &mut keep, trailers);
        drop(parts);
        if let Err(e) = std::future::poll_fn(|cx| upload.poll_send(&mut wr, cx)).await {
            tracing::debug!(error = %e, "response to the application cut short");
            return Served::Closed;
        }
        if let Some(back) = back {
            side = back
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
        }
        if !keep {
            break;
        }
    }
    let _ = wr.shutdown().await;
    Served::Closed
}

/// Waits for the handler's answer; `None` when the client closed its
/// connection first (`watch`: the reading half, when the request had no
/// body). It only peeks: the buffer, whose bytes the request's fields
/// still share, is left alone, and bytes of a pipelined request that come
/// meanwhile end the watch (they wait in the socket).
async fn answer_or_leave<F>(
    mut answer: Pin<&mut F>,
    watch: Option<&mut ReadSide>,
) -> Option<http::Response<ProxyBody>>
where
    F: Future<Output = http::Response<ProxyBody>>,
{
    let mut watch = watch.map(|side| &mut side.io);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(r) = answer.as_mut().poll(cx) {
            return Poll::Ready(Some(r));
        }
        if let Some(io) = watch.as_mut() {
            let mut one = [MaybeUninit::uninit()];
            let mut probe = tokio::io::ReadBuf::uninit(&mut one);
            match io.poll_peek(cx, &mut probe) {
                Poll::Ready(Ok(0) | Err(_)) => return Poll::Ready(None),
                Poll::Ready(Ok(_)) => watch = None,
                Poll::Pending => {}
            }
        }
        Poll::Pending
    })
    .await
}

/// Header fields a response from elsewhere carries that the head written
/// here decides instead.
fn decided_here(name: &HeaderName) -> bool {
    name == header::CONTENT_LENGTH
        || name == header::TRANSFER_ENCODING
        || name == header::CONNECTION
        || name.as_str() == "keep-alive"
}

/// Writes the response head for a request with `version` (a `HEAD`
/// request when `head_request`), choosing how the body is delimited;
/// `keep_alive` turns false when the body must end with the connection.
fn encode_response(
    parts: &http::response::Parts,
    body: ProxyBody,
    head_request: bool,
    version: Version,
    keep_alive: &mut bool,
    trailers: bool,
) -> Upload {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(if version == Version::HTTP_10 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    let status = parts.status;
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    // One pass writes the fields and notes the declared length and
    // whether `Date` is there.
    let mut declared = Some(None);
    let mut dated = false;
    for (name, value) in &parts.headers {
        if name == header::CONTENT_LENGTH {
            declared = declared.and_then(|d| add_length(d, value.as_bytes()));
        } else if !decided_here(name) {
            dated |= name == header::DATE;
            write_fields(&mut out, [(name, value)]);
        }
    }
    if !dated {
        date_field(&mut out);
    }
    // Invalid or conflicting: framed below as if none had come.
    let declared = declared.flatten();
    let length = |out: &mut Vec<u8>, n: u64| {
        out.extend_from_slice(b"content-length: ");
        push_decimal(out, n);
        out.extend_from_slice(b"\r\n");
    };
    let sending = if head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        // The length a GET would have had is still worth telling.
        if let (Some(n), false) = (declared, status == StatusCode::NO_CONTENT) {
            length(&mut out, n);
        }
        Sending::Nothing
    } else if let Some(n) = declared {
        length(&mut out, n);
        Sending::Length(n)
    } else if body.is_end_stream() {
        length(&mut out, 0);
        Sending::Nothing
    } else if let Some(n) = body.size_hint().exact() {
        length(&mut out, n);
        Sending::Length(n)
    } else if version == Version::HTTP_11 {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        Sending::Chunked
    } else {
        *keep_alive = false;
        Sending::Raw
    };
    if !*keep_alive && version == Version::HTTP_11 {
        out.extend_from_slice(b"connection: close\r\n");
    } else if *keep_alive && version == Version::HTTP_10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Upload {
        queue: std::collections::VecDeque::from([Bytes::from(out)]),
        body: (sending != Sending::Nothing).then_some(body),
        sending,
        started: false,
        trailers,
        failed: None,
    }
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Writes a `Date` field for now, formatted once a second per thread.
fn date_field(out: &mut Vec<u8>) {
    thread_local! {
        static DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let second = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|(at, text)| {
        if *at != second {
            *at = second;
            *text = httpdate::fmt_http_date(now);
        }
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(b"\r\n");
    });
}

#[cfg(test)]
#[path = "h1_server_tests.rs"]
mod tests;
