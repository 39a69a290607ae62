//! HTTP/1.1 to the local application, in the task that asks for it.
//!
//! The inbound side hands every request it admits to an application on
//! loopback over a kept-alive HTTP/1.1 connection ([`crate::app_pool`]).
//! A general client runs each connection in a task of its own and passes
//! requests, responses and body chunks to it through channels; here the
//! request's own task writes the request and reads the response, and the
//! response body reads its bytes straight from the socket, so one request
//! costs one write and one read on the connection and no hand-over.
//!
//! What it speaks (RFC 9112, client side):
//!
//! - Requests in origin form with `HTTP/1.1`. A body is framed by its
//!   `Content-Length` when the request carries one or the body knows its
//!   length, else chunked (trailers then travel in the last chunk); an
//!   empty body sends nothing, with `Content-Length: 0` for methods whose
//!   requests normally carry one. A body that delivers more or fewer
//!   bytes than its `Content-Length` fails the exchange.
//! - Responses: interim `1xx` responses are read and skipped (`101` is an
//!   error: upgrades are never asked for); the body is empty for `HEAD`,
//!   `204` and `304`, chunked (trailers kept) when the last transfer
//!   coding is `chunked`, else as long as a valid `Content-Length` says,
//!   else up to the close of the connection. Conflicting or malformed
//!   lengths, oversized heads and chunk lines are errors, never guesses.
//! - The connection is kept for another request only when the response
//!   is `HTTP/1.1` without `Connection: close`, its body was framed and
//!   read to the end, the request was written whole and nothing further
//!   arrived. A response that starts before the request body was written
//!   whole does not stop it: the rest is sent while the response body is
//!   read (an application may stream both ways at once); if the response
//!   ends first, the connection is closed.
//!
//! The parsing is in pure functions over a byte buffer ([`parse_head`],
//! [`Decoder`]), which the fuzz target `sidecar_h1_response` drives.

use std::io::{self, Write as _};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version, header};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::body::ProxyBody;

/// Largest response head (status line and header fields), and largest
/// trailer section, in bytes.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most header fields in a response head or a trailer section.
pub const MAX_HEADERS: usize = 100;
/// Longest chunk-size line (size and extensions).
const MAX_CHUNK_LINE: usize = 4096;
/// Free room kept in the read buffer before each read.
pub(crate) const READ_ROOM: usize = 8 * 1024;

/// Why an exchange with the application failed.
#[derive(Debug, thiserror::Error)]
pub enum H1Error {
    /// Reading or writing the connection failed.
    #[error("application connection: {0}")]
    Io(#[from] io::Error),
    /// The application closed the connection too early.
    #[error("the application closed the connection {0}")]
    Closed(&'static str),
    /// The application sent something that is not valid HTTP/1.x: a
    /// response head, a body's framing.
    #[error("invalid HTTP/1.x from the application: {0}")]
    Malformed(&'static str),
    /// The body being sent (a request's to the application, or a
    /// response's to a client) failed, or did not match its
    /// `Content-Length`.
    #[error("body being sent: {0}")]
    Outgoing(String),
}

/// A response head parsed by [`parse_head`].
#[derive(Debug)]
pub struct Head {
    /// Status, version and header fields (a lone `Connection: keep-alive`
    /// is noted, not kept); the body is decided by [`Head::framing`].
    pub response: http::Response<()>,
    /// Whether the connection may carry another request after this
    /// response (`HTTP/1.1` and no `Connection: close`).
    pub keep_alive: bool,
    /// Which framing fields the head has, so that a head without them
    /// costs no lookups.
    pub(crate) present: Present,
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Everything up to the close of the connection.
    Close,
}

/// Parses the response head at the start of `buf` and removes it from
/// `buf`; `Ok(None)` while it is incomplete (nothing is consumed).
pub fn parse_head(buf: &mut BytesMut) -> Result<Option<Head>, H1Error> {
    if buf.is_empty() {
        return Ok(None);
    }
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut few = [Span::default(); 16];
    let mut many = Vec::new();
    let (len, code, version, at) = {
        let mut parsed = httparse::Response::new(&mut []);
        let status = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut parsed,
            buf,
            &mut slots,
        );
        let len = match status {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
                return Err(H1Error::Malformed("response head too large"));
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(H1Error::Malformed("too many response header fields"));
            }
            Err(_) => return Err(H1Error::Malformed("unparsable response head")),
        };
        let at = field_spans(buf, parsed.headers, &mut few, &mut many);
        let code = parsed.code.unwrap_or(0);
        (len, code, parsed.version.unwrap_or(1), at)
    };
    if len > MAX_HEAD_BYTES {
        return Err(H1Error::Malformed("response head too large"));
    }
    let head = buf.split_to(len).freeze();
    let status =
        StatusCode::from_u16(code).map_err(|_| H1Error::Malformed("status code out of range"))?;
    let (headers, present) = header_map(&head, at).map_err(H1Error::Malformed)?;
    let version = if version == 1 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    let keep_alive =
        version == Version::HTTP_11 && !(present.connection && connection_close(&headers));
    let mut response = http::Response::new(());
    *response.status_mut() = status;
    *response.version_mut() = version;
    *response.headers_mut() = headers;
    Ok(Some(Head {
        response,
        keep_alive,
        present,
    }))
}

/// Where something a parser found lies in the buffer it parsed: start and
/// end offsets.
pub(crate) fn offsets(buf: &[u8], part: &[u8]) -> (usize, usize) {
    let start = part.as_ptr() as usize - buf.as_ptr() as usize;
    (start, start + part.len())
}

/// Where a field's name and value lie in a head's bytes.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Span {
    name: (usize, usize),
    value: (usize, usize),
}

/// Where each of `fields` (parsed out of `buf`) lies in `buf`, to cut them
/// out of it once the parser no longer borrows it: in `few` for the usual
/// handful of fields, else in `many`.
pub(crate) fn field_spans<'s>(
    buf: &[u8],
    fields: &[httparse::Header<'_>],
    few: &'s mut [Span; 16],
    many: &'s mut Vec<Span>,
) -> &'s [Span] {
    let at = if fields.len() <= few.len() {
        &mut few[..fields.len()]
    } else {
        many.resize(fields.len(), Span::default());
        &mut many[..]
    };
    for (slot, f) in at.iter_mut().zip(fields) {
        *slot = Span {
            name: offsets(buf, f.name.as_bytes()),
            value: offsets(buf, f.value),
        };
    }
    at
}

/// The header map of a head whose fields lie at `spans` in `head` (values
/// are zero-copy slices of it), and the framing fields noted on the way;
/// why not when a name or value is invalid. A lone `Connection:
/// keep-alive` is noted, not kept ([`Present::note`]).
pub(crate) fn header_map(
    head: &Bytes,
    spans: &[Span],
) -> Result<(HeaderMap, Present), &'static str> {
    let mut headers = HeaderMap::with_capacity(spans.len());
    let mut present = Present::default();
    for span in spans {
        let name = HeaderName::from_bytes(&head[span.name.0..span.name.1])
            .map_err(|_| "invalid header name")?;
        if !present.note(&name, &head[span.value.0..span.value.1]) {
            continue;
        }
        let value = HeaderValue::from_maybe_shared(head.slice(span.value.0..span.value.1))
            .map_err(|_| "invalid header value")?;
        headers.append(name, value);
    }
    Ok((headers, present))
}

/// The fields that shape an exchange, noted as a head is read, so that a
/// head without them, or with only the usual values, costs no lookups.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Present {
    /// The `Content-Length` so far: `Some(None)` when there is none,
    /// `None` when a value is invalid or the values disagree.
    pub(crate) length: Option<Option<u64>>,
    pub(crate) transfer_encoding: bool,
    /// A `Connection` field other than a lone `keep-alive`.
    pub(crate) connection: bool,
    /// A `Connection: keep-alive` field.
    pub(crate) keep_alive: bool,
    pub(crate) expect: bool,
    pub(crate) te: bool,
}

impl Default for Present {
    fn default() -> Self {
        Present {
            length: Some(None),
            transfer_encoding: false,
            connection: false,
            keep_alive: false,
            expect: false,
            te: false,
        }
    }
}

impl Present {
    /// Notes a field if it is one of them (a comparison of well-known
    /// names is one of tags). False for a lone `Connection: keep-alive`,
    /// what most HTTP/1.1 peers send: noted here, it need not be kept in
    /// the header map, as it means nothing past this hop and a proxy
    /// would only remove it again.
    pub(crate) fn note(&mut self, name: &HeaderName, value: &[u8]) -> bool {
        if name == header::CONTENT_LENGTH {
            self.length = self.length.and_then(|l| add_length(l, value));
        } else if name == header::TRANSFER_ENCODING {
            self.transfer_encoding = true;
        } else if name == header::CONNECTION {
            if value.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
                return false;
            }
            self.connection = true;
        } else if name == header::EXPECT {
            self.expect = true;
        } else if name == header::TE {
            self.te = true;
        }
        true
    }

    /// Whether any `Content-Length` came.
    pub(crate) fn has_length(&self) -> bool {
        self.length != Some(None)
    }
}

/// The length so far with one more `Content-Length` value (a list of
/// equal lengths counts as one); `None` when it is invalid or differs.
pub(crate) fn add_length(mut length: Option<u64>, value: &[u8]) -> Option<Option<u64>> {
    for part in value.split(|b| *b == b',') {
        let n = parse_decimal(part.trim_ascii())?;
        if length.is_some_and(|l| l != n) {
            return None;
        }
        length = Some(n);
    }
    Some(length)
}

fn connection_close(headers: &HeaderMap) -> bool {
    lists_token(headers, &http::header::CONNECTION, b"close")
}

/// Whether a comma-separated list field (`Connection`, `TE`) names
/// `token`, ignoring case and parameters.
pub(crate) fn lists_token(headers: &HeaderMap, name: &HeaderName, token: &[u8]) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.as_bytes().split(|b| *b == b',').any(|t| {
            let t = t.split(|b| *b == b';').next().unwrap_or_default();
            t.trim_ascii().eq_ignore_ascii_case(token)
        })
    })
}

impl Head {
    /// How the body of this response to a request with `method` is
    /// delimited (RFC 9112, section 6.3). A `Content-Length` beside a
    /// `Transfer-Encoding` is removed (the latter wins). Errors on an
    /// invalid or conflicting `Content-Length`. It reads the framing
    /// fields the head was parsed with: fields added to `response`
    /// afterwards do not count.
    pub fn framing(&mut self, method: &Method) -> Result<Framing, H1Error> {
        let status = self.response.status();
        if method == Method::HEAD
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            return Ok(Framing::Empty);
        }
        let headers = self.response.headers_mut();
        if self.present.transfer_encoding {
            headers.remove(http::header::CONTENT_LENGTH);
            let last = headers
                .get_all(http::header::TRANSFER_ENCODING)
                .iter()
                .next_back()
                .and_then(|v| v.as_bytes().rsplit(|b| *b == b',').next())
                .map(<[u8]>::trim_ascii);
            return Ok(match last {
                Some(c) if c.eq_ignore_ascii_case(b"chunked") => Framing::Chunked,
                _ => {
                    self.keep_alive = false;
                    Framing::Close
                }
            });
        }
        let length = self
            .present
            .length
            .ok_or(H1Error::Malformed("invalid or conflicting Content-Length"))?;
        Ok(match length {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => {
                self.keep_alive = false;
                Framing::Close
            }
        })
    }
}

/// A non-empty run of ASCII digits as a `u64`, without overflow.
pub(crate) fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, d| {
        d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
    })
}

/// What [`Decoder::decode`] took from the buffer.
#[derive(Debug)]
pub enum Decoded {
    /// Body bytes.
    Data(Bytes),
    /// The trailer section of a chunked body (it ends the body).
    Trailers(HeaderMap),
    /// The body ended (without trailers).
    End,
}

/// Reads a response body out of a byte buffer, as its framing says.
#[derive(Debug)]
pub struct Decoder {
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// This many bytes of a `Content-Length` body are left.
    Length(u64),
    /// A chunk-size line comes next.
    ChunkSize,
    /// This many bytes of the current chunk are left.
    ChunkData(u64),
    /// The CRLF after a chunk's data comes next.
    ChunkEnd,
    /// The trailer section (possibly empty) after the last chunk.
    Trailers,
    /// Until the connection closes.
    Close,
    /// The body ended.
    Done,
}

impl Decoder {
    /// A decoder for a body delimited by `framing`.
    pub fn new(framing: Framing) -> Self {
        let state = match framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::ChunkSize,
            Framing::Close => State::Close,
        };
        Decoder { state }
    }

    /// Whether the body has ended.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    pub(crate) fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Done => SizeHint::with_exact(0),
            State::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }

    /// Takes the next piece of the body from `buf`: `Ok(None)` when `buf`
    /// holds too little to go on (read more, or, at the close of the
    /// connection, call [`Decoder::at_eof`]). After the end of the body
    /// it keeps answering [`Decoded::End`] and takes nothing.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, H1Error> {
        loop {
            match self.state {
                State::Done => return Ok(Some(Decoded::End)),
                State::Length(left) | State::ChunkData(left) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let take = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
                    let data = buf.split_to(take).freeze();
                    let left = left - take as u64;
                    self.state = match (self.state, left) {
                        (State::Length(_), 0) => State::Done,
                        (State::Length(_), n) => State::Length(n),
                        (_, 0) => State::ChunkEnd,
                        (_, n) => State::ChunkData(n),
                    };
                    return Ok(Some(Decoded::Data(data)));
                }
                State::ChunkSize => {
                    let status = match httparse::parse_chunk_size(buf) {
                        Ok(s) => s,
                        Err(_) => return Err(H1Error::Malformed("invalid chunk size line")),
                    };
                    match status {
                        httparse::Status::Partial if buf.len() > MAX_CHUNK_LINE => {
                            return Err(H1Error::Malformed("chunk size line too long"));
                        }
                        httparse::Status::Partial => return Ok(None),
                        httparse::Status::Complete((len, size)) => {
                            if len > MAX_CHUNK_LINE || !buf[0].is_ascii_hexdigit() {
                                return Err(H1Error::Malformed("invalid chunk size line"));
                            }
                            buf.advance(len);
                            self.state = if size == 0 {
                                State::Trailers
                            } else {
                                State::ChunkData(size)
                            };
                        }
                    }
                }
                State::ChunkEnd => {
                    if buf.len() < 2 {
                        return Ok(None);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(H1Error::Malformed("chunk data not followed by CRLF"));
                    }
                    buf.advance(2);
                    self.state = State::ChunkSize;
                }
                State::Trailers => return self.trailers(buf),
                State::Close => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    return Ok(Some(Decoded::Data(buf.split().freeze())));
                }
            }
        }
    }

    fn trailers(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, H1Error> {
        if buf.starts_with(b"\r\n") {
            buf.advance(2);
            self.state = State::Done;
            return Ok(Some(Decoded::End));
        }
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let (len, fields) = match httparse::parse_headers(buf, &mut slots) {
            Ok(httparse::Status::Complete(done)) => done,
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
                return Err(H1Error::Malformed("trailer section too large"));
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(H1Error::Malformed("invalid trailer section")),
        };
        if len > MAX_HEAD_BYTES {
            return Err(H1Error::Malformed("trailer section too large"));
        }
        let mut trailers = HeaderMap::with_capacity(fields.len());
        for f in fields {
            let name = HeaderName::from_bytes(f.name.as_bytes())
                .map_err(|_| H1Error::Malformed("invalid trailer name"))?;
            let value = HeaderValue::from_bytes(f.value)
                .map_err(|_| H1Error::Malformed("invalid trailer value"))?;
            trailers.append(name, value);
        }
        buf.advance(len);
        self.state = State::Done;
        Ok(Some(Decoded::Trailers(trailers)))
    }

    /// The connection closed with `buf` empty: the end of a body read to
    /// the close, an error for any other body not yet ended.
    pub fn at_eof(&mut self) -> Result<Decoded, H1Error> {
        match self.state {
            State::Close | State::Done => {
                self.state = State::Done;
                Ok(Decoded::End)
            }
            _ => Err(H1Error::Closed("in the middle of a body")),
        }
    }
}

/// One kept-alive connection to the application, with the bytes read
/// from it and not yet used (none between exchanges).
#[derive(Debug)]
pub struct Conn {
    io: TcpStream,
    buf: BytesMut,
}

impl Conn {
    /// Wraps a connected socket.
    pub fn new(io: TcpStream) -> Self {
        Conn {
            io,
            buf: BytesMut::new(),
        }
    }

    /// Whether an idle connection can carry a request: it did not close
    /// and sent nothing unasked. Costs a system call only when the socket
    /// was reported readable.
    pub fn is_usable(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut probe = [0u8; 1];
        matches!(self.io.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        poll_fill(&mut self.io, &mut self.buf, cx)
    }
}

/// Reads more of `io` into `buf`; `Ok(0)` at the close of the connection.
/// (A read that leaves room in the buffer tells the reactor that the
/// socket is drained, so the next read waits without a system call.)
pub(crate) fn poll_fill<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    if buf.capacity() - buf.len() < READ_ROOM {
        buf.reserve(READ_ROOM);
    }
    tokio_util::io::poll_read_buf(Pin::new(io), cx, buf)
}

/// The next piece of a body that `decoder` reads out of `buf`, reading
/// more of `io` as needed.
pub(crate) fn poll_decoded<R: AsyncRead + Unpin>(
    decoder: &mut Decoder,
    io: &mut R,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<Result<Decoded, H1Error>> {
    loop {
        if let Some(decoded) = decoder.decode(buf)? {
            return Poll::Ready(Ok(decoded));
        }
        if ready!(poll_fill(io, buf, cx))? == 0 {
            return Poll::Ready(decoder.at_eof());
        }
    }
}

impl Decoded {
    /// As a body frame; `None` at the end.
    pub(crate) fn into_frame(self) -> Option<Frame<Bytes>> {
        match self {
            Decoded::Data(data) => Some(Frame::data(data)),
            Decoded::Trailers(t) => Some(Frame::trailers(t)),
            Decoded::End => None,
        }
    }
}

/// How a body being sent is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sending {
    /// Nothing (more) to send.
    Nothing,
    /// This many bytes are left of a `Content-Length` body.
    Length(u64),
    /// Chunked.
    Chunked,
    /// As it comes, delimited by the close of the connection (a response
    /// of unknown length to an HTTP/1.0 client).
    Raw,
}

/// Methods whose requests normally carry a body: an empty one is sent
/// with `Content-Length: 0`.
fn expects_body(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET
            | Method::HEAD
            | Method::DELETE
            | Method::OPTIONS
            | Method::TRACE
            | Method::CONNECT
    )
}

/// Writes `name: value` lines, one per field: a request head's or a
/// trailer section's.
pub(crate) fn write_fields<'a>(
    out: &mut Vec<u8>,
    fields: impl IntoIterator<Item = (&'a HeaderName, &'a HeaderValue)>,
) {
    for (name, value) in fields {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// Writes the request line and header fields of `parts` into `out`,
/// adding the framing header the body needs; returns the framing.
fn encode_head(parts: &http::request::Parts, body: &ProxyBody, out: &mut Vec<u8>) -> Sending {
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut declared = None;
    for (name, value) in &parts.headers {
        if name == http::header::CONTENT_LENGTH {
            match parse_decimal(value.as_bytes()) {
                Some(n) if declared.is_none_or(|d| d == n) => declared = Some(n),
                // Invalid or conflicting: left out, the body is framed
                // below as if none had come.
                _ => {
                    declared = None;
                    break;
                }
            }
        }
    }
    let framing = |name: &HeaderName| {
        name == http::header::CONTENT_LENGTH || name == http::header::TRANSFER_ENCODING
    };
    write_fields(out, parts.headers.iter().filter(|(name, _)| !framing(name)));
    let exact = body.size_hint().exact();
    let sending = match declared {
        Some(n) => Sending::Length(n),
        None if body.is_end_stream() => Sending::Length(0),
        None => exact.map_or(Sending::Chunked, Sending::Length),
    };
    match sending {
        Sending::Length(0) if declared.is_none() && !expects_body(&parts.method) => {}
        Sending::Length(n) => {
            let _ = write!(out, "content-length: {n}\r\n");
        }
        Sending::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Sending::Nothing | Sending::Raw => {}
    }
    out.extend_from_slice(b"\r\n");
    match sending {
        Sending::Length(0) => Sending::Nothing,
        s => s,
    }
}

/// A message as it is written (a request to the application, or a
/// response to a client): encoded bytes waiting for the socket, then the
/// body's frames as they come.
#[derive(Debug)]
pub(crate) struct Upload {
    /// Bytes to write, in order; the head first.
    pub(crate) queue: std::collections::VecDeque<Bytes>,
    pub(crate) body: Option<ProxyBody>,
    pub(crate) sending: Sending,
    /// Whether any body frame was taken (the request can no longer be
    /// sent again).
    pub(crate) started: bool,
    /// Whether trailers are sent (in the last chunk of a chunked body);
    /// else they are dropped.
    pub(crate) trailers: bool,
    /// Why the body failed, told once what was queued is written.
    pub(crate) failed: Option<H1Error>,
}

impl Upload {
    /// Whether everything is written and the body ended.
    pub(crate) fn done(&self) -> bool {
        self.queue.is_empty() && self.body.is_none()
    }

    /// Writes what is queued and takes body frames until the socket or
    /// the body would wait (`Pending`) or all is written (`Ready(Ok)`).
    pub(crate) fn poll_send<W: AsyncWrite + Unpin>(
        &mut self,
        io: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), H1Error>> {
        loop {
            // Take the body's frames that are ready before writing, so
            // that a head and a short body leave in one write.
            while let Some(body) = self.body.as_mut() {
                let taken = match Pin::new(body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        self.started = true;
                        self.queue_frame(frame)
                    }
                    Poll::Ready(Some(Err(e))) => Err(H1Error::Outgoing(e.to_string())),
                    Poll::Ready(None) => self.finish_body(),
                    Poll::Pending => break,
                };
                // What was taken before still goes out: the peer sees a
                // message cut short, not none.
                if let Err(e) = taken {
                    self.body = None;
                    self.failed = Some(e);
                }
                if self.queue.len() >= 8 {
                    break;
                }
            }
            if self.queue.is_empty() {
                return match (self.failed.take(), &self.body) {
                    (Some(e), _) => Poll::Ready(Err(e)),
                    (None, None) => Poll::Ready(Ok(())),
                    (None, Some(_)) => Poll::Pending,
                };
            }
            let mut slices = [io::IoSlice::new(&[]); 8];
            let n = self
                .queue
                .iter()
                .zip(slices.iter_mut())
                .map(|(b, s)| *s = io::IoSlice::new(b))
                .count();
            let written = ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices[..n]))?;
            if written == 0 {
                return Poll::Ready(Err(H1Error::Io(io::ErrorKind::WriteZero.into())));
            }
            let mut left = written;
            while left > 0 {
                let Some(front) = self.queue.front_mut() else {
                    break;
                };
                if front.len() <= left {
                    left -= front.len();
                    self.queue.pop_front();
                } else {
                    front.advance(left);
                    left = 0;
                }
            }
        }
    }

    fn queue_frame(&mut self, frame: Frame<Bytes>) -> Result<(), H1Error> {
        match frame.into_data() {
            Ok(data) if data.is_empty() => Ok(()),
            Ok(data) => match &mut self.sending {
                Sending::Length(left) => {
                    let n = data.len() as u64;
                    if n > *left {
                        return Err(H1Error::Outgoing("longer than its Content-Length".into()));
                    }
                    *left -= n;
                    self.queue.push_back(data);
                    Ok(())
                }
                Sending::Chunked => {
                    let mut size = Vec::with_capacity(18);
                    let _ = write!(size, "{:x}\r\n", data.len());
                    self.queue.push_back(size.into());
                    self.queue.push_back(data);
                    self.queue.push_back(Bytes::from_static(b"\r\n"));
                    Ok(())
                }
                Sending::Raw => {
                    self.queue.push_back(data);
                    Ok(())
                }
                Sending::Nothing => Err(H1Error::Outgoing("data after an empty body's end".into())),
            },
            Err(frame) => {
                if let (Ok(trailers), Sending::Chunked) = (frame.into_trailers(), self.sending) {
                    let mut last = b"0\r\n".to_vec();
                    if self.trailers {
                        write_fields(&mut last, &trailers);
                    }
                    last.extend_from_slice(b"\r\n");
                    self.queue.push_back(last.into());
                    self.sending = Sending::Nothing;
                }
                // Trailers of a body framed by length cannot travel.
                Ok(())
            }
        }
    }

    fn finish_body(&mut self) -> Result<(), H1Error> {
        self.body = None;
        match self.sending {
            Sending::Length(0) | Sending::Nothing | Sending::Raw => Ok(()),
            Sending::Length(_) => Err(H1Error::Outgoing("shorter than its Content-Length".into())),
            Sending::Chunked => {
                self.queue.push_back(Bytes::from_static(b"0\r\n\r\n"));
                self.sending = Sending::Nothing;
                Ok(())
            }
        }
    }
}

/// An exchange that failed; `unsent` gives the request back when it may
/// go to another connection.
#[derive(Debug)]
pub struct Failed {
    /// Why.
    pub error: H1Error,
    /// The request, when the connection closed before answering and
    /// sending it again is safe: a connection that had served requests
    /// before, an idempotent method, and no body byte taken.
    pub unsent: Option<http::Request<ProxyBody>>,
}

/// A response whose body is still to be read from its connection.
#[derive(Debug)]
pub struct Exchanged {
    /// Status, version and header fields.
    pub response: http::Response<()>,
    /// Reads the body.
    pub body: ResponseBody,
}

/// Sends `req` (origin-form target, `Host` set) on `conn` and reads the
/// response head. `reused`: the connection carried requests before (a
/// request that found it closed may then be sent again).
pub async fn exchange(
    mut conn: Conn,
    req: http::Request<ProxyBody>,
    reused: bool,
) -> Result<Exchanged, Failed> {
    let (parts, body) = req.into_parts();
    let mut head = Vec::with_capacity(512);
    let sending = encode_head(&parts, &body, &mut head);
    let mut upload = Upload {
        queue: std::collections::VecDeque::from([Bytes::from(head)]),
        body: (sending != Sending::Nothing).then_some(body),
        sending,
        started: false,
        trailers: true,
        failed: None,
    };
    let mut answered = false;
    let result = std::future::poll_fn(|cx| {
        if !upload.done() {
            match upload.poll_send(&mut conn.io, cx) {
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) | Poll::Pending => {}
            }
        }
        loop {
            match parse_head(&mut conn.buf) {
                Err(e) => return Poll::Ready(Err(e)),
                Ok(Some(h)) if h.response.status().is_informational() => {
                    if h.response.status() == StatusCode::SWITCHING_PROTOCOLS {
                        return Poll::Ready(Err(H1Error::Malformed(
                            "101 without an upgrade asked for",
                        )));
                    }
                    continue;
                }
                Ok(Some(h)) => return Poll::Ready(Ok(h)),
                Ok(None) => {}
            }
            match ready!(conn.poll_fill(cx)) {
                Ok(0) if conn.buf.is_empty() && !answered => {
                    return Poll::Ready(Err(H1Error::Closed("before a response")));
                }
                Ok(0) => {
                    return Poll::Ready(Err(H1Error::Closed("in the middle of a response head")));
                }
                Ok(_) => answered = true,
                Err(e) => return Poll::Ready(Err(H1Error::Io(e))),
            }
        }
    })
    .await;
    let mut head = match result {
        Ok(head) => head,
        Err(error) => {
            let retry = reused
                && !answered
                && !upload.started
                && parts.method.is_idempotent()
                && matches!(error, H1Error::Closed(_) | H1Error::Io(_));
            let unsent = retry.then(|| {
                let body = upload.body.take().unwrap_or_else(|| crate::body::text(""));
                http::Request::from_parts(parts, body)
            });
            return Err(Failed { error, unsent });
        }
    };
    let framing = match head.framing(&parts.method) {
        Ok(f) => f,
        Err(error) => {
            return Err(Failed {
                error,
                unsent: None,
            });
        }
    };
    // A response that came before the whole request was written: the
    // rest goes on while its body is read (an application may stream
    // both ways at once).
    Ok(Exchanged {
        response: head.response,
        body: ResponseBody {
            conn: Some(conn),
            decoder: Decoder::new(framing),
            reusable: head.keep_alive,
            upload: (!upload.done()).then_some(upload),
        },
    })
}

/// A response body read from the application's connection. Once it
/// ended, [`ResponseBody::take_conn`] gives the connection back if it
/// can carry another request.
#[derive(Debug)]
pub struct ResponseBody {
    conn: Option<Conn>,
    decoder: Decoder,
    reusable: bool,
    /// The rest of the request, when the response came first.
    upload: Option<Upload>,
}

impl ResponseBody {
    /// The connection, once the body ended and when it may be reused (the
    /// request was written whole, too).
    pub fn take_conn(&mut self) -> Option<Conn> {
        if !self.decoder.is_done() || !self.reusable || self.upload.is_some() {
            return None;
        }
        self.conn.take().filter(|c| c.buf.is_empty())
    }

    /// Sends more of a request that is still being written.
    fn poll_upload(&mut self, cx: &mut Context<'_>) -> Result<(), H1Error> {
        let (Some(upload), Some(conn)) = (self.upload.as_mut(), self.conn.as_mut()) else {
            return Ok(());
        };
        match upload.poll_send(&mut conn.io, cx) {
            Poll::Ready(Ok(())) => self.upload = None,
            Poll::Pending => {}
            // The request's own body failed: the application would wait
            // for the rest forever.
            Poll::Ready(Err(e @ H1Error::Outgoing(_))) => return Err(e),
            // The application stopped reading: its response goes on.
            Poll::Ready(Err(_)) => {
                self.upload = None;
                self.reusable = false;
            }
        }
        Ok(())
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = H1Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, H1Error>>> {
        let this = &mut *self;
        if let Err(e) = this.poll_upload(cx) {
            this.conn = None;
            return Poll::Ready(Some(Err(e)));
        }
        if this.decoder.is_done() {
            return Poll::Ready(None);
        }
        let Some(conn) = this.conn.as_mut() else {
            return Poll::Ready(None);
        };
        match ready!(poll_decoded(
            &mut this.decoder,
            &mut conn.io,
            &mut conn.buf,
            cx
        )) {
            Ok(decoded) => Poll::Ready(decoded.into_frame().map(Ok)),
            Err(e) => {
                this.conn = None;
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

#[cfg(test)]
#[path = "h1_tests.rs"]
mod tests;
