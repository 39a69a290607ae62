//! Accepting any `:authority` on Unix-socket connections.
//!
//! gRPC C-core (Python, Ruby, C++, PHP) sends the socket path,
//! percent-encoded (`tmp%2Fagent.sock`), as the HTTP/2 `:authority` on a
//! Unix socket, and grpc-java sends the path itself. Neither is a valid
//! URI authority, and h2 resets every such stream with `PROTOCOL_ERROR`
//! before the request reaches tonic (hyperium/h2#487). On a Unix socket
//! the authority carries no information: the socket identifies the
//! server.
//!
//! [`AuthorityRewrite`] sits between the socket and h2 on the read side.
//! It passes every frame through unchanged except header blocks (`HEADERS`
//! plus `CONTINUATION`), which it decodes with the client's HPACK state,
//! re-encodes with every `:authority` value replaced by `localhost`, as
//! literals that do not touch the server decoder's dynamic table, and
//! emits again within the default frame size. Every other field, its
//! order, its count and every pseudo-header stay as the client sent them,
//! so h2 still validates the request (missing `:method`, a bad `:path`, a
//! pseudo-header after a regular one, duplicates: all still refused).
//! A header block the adapter cannot decode ends the connection, as it
//! would in h2 (`COMPRESSION_ERROR` is a connection error).

mod hpack;
mod huffman;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use hpack::{Decoder, HpackError};

/// What a rewritten `:authority` says.
const LOCAL_AUTHORITY: &[u8] = b"localhost";
/// The client connection preface (RFC 9113 §3.4).
const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
/// The server's `SETTINGS_MAX_FRAME_SIZE` (hyper's and the protocol's
/// default): larger header frames are refused, as h2 would refuse them.
const MAX_FRAME: usize = 16_384;
/// The largest header block (all its frames together), encoded or decoded.
/// Above the server's own header list limit, which still applies.
pub(crate) const MAX_HEADER_BLOCK: usize = 64 * 1024;

const TYPE_HEADERS: u8 = 0x1;
const TYPE_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;

/// Why the adapter closed a connection.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RewriteError {
    /// A header block could not be decoded.
    #[error("undecodable header block: {0}")]
    Hpack(#[from] HpackError),
    /// A header frame was larger than the frame size limit.
    #[error("header frame of {0} bytes exceeds the frame size limit")]
    FrameTooLarge(usize),
    /// A header block exceeded [`MAX_HEADER_BLOCK`].
    #[error("header block exceeds {MAX_HEADER_BLOCK} bytes")]
    BlockTooLarge,
    /// Padding or priority fields did not fit the frame.
    #[error("malformed HEADERS frame")]
    MalformedHeaders,
    /// A frame other than the stream's `CONTINUATION` arrived while a
    /// header block was open.
    #[error("header block interrupted by another frame")]
    Interrupted,
}

enum State {
    /// Passing the connection preface through.
    Preface(usize),
    /// Expecting a frame header.
    Frame,
    /// Passing the payload of a frame that is not rewritten.
    Passthrough(usize),
}

/// An open header block waiting for its `CONTINUATION` frames.
struct Pending {
    stream: [u8; 4],
    flags: u8,
    priority: Option<[u8; 5]>,
    block: Vec<u8>,
}

/// The read-side adapter; writes pass straight through.
pub(crate) struct AuthorityRewrite<S> {
    io: S,
    state: State,
    decoder: Decoder,
    pending: Option<Pending>,
    input: Vec<u8>,
    output: Vec<u8>,
    output_pos: usize,
    eof: bool,
    failed: bool,
}

impl<S> AuthorityRewrite<S> {
    pub(crate) fn new(io: S) -> Self {
        AuthorityRewrite {
            io,
            state: State::Preface(PREFACE_LEN),
            decoder: Decoder::new(),
            pending: None,
            input: Vec::new(),
            output: Vec::new(),
            output_pos: 0,
            eof: false,
            failed: false,
        }
    }

    /// Moves as much of `input` to `output` as is complete.
    fn process(&mut self) -> Result<(), RewriteError> {
        let mut pos = 0;
        loop {
            let available = self.input.len() - pos;
            match self.state {
                State::Preface(n) | State::Passthrough(n) => {
                    if available == 0 {
                        break;
                    }
                    let take = n.min(available);
                    self.output.extend_from_slice(&self.input[pos..pos + take]);
                    pos += take;
                    self.state = if take == n {
                        State::Frame
                    } else if matches!(self.state, State::Preface(_)) {
                        State::Preface(n - take)
                    } else {
                        State::Passthrough(n - take)
                    };
                }
                State::Frame => {
                    let Some(header) = self.input.get(pos..pos + FRAME_HEADER_LEN) else {
                        break;
                    };
                    let len = usize::from(header[0]) << 16
                        | usize::from(header[1]) << 8
                        | usize::from(header[2]);
                    let kind = header[3];
                    let flags = header[4];
                    let stream = [header[5], header[6], header[7], header[8]];
                    let is_header_frame = kind == TYPE_HEADERS
                        || (kind == TYPE_CONTINUATION && self.pending.is_some());
                    if self
                        .pending
                        .as_ref()
                        .is_some_and(|p| kind != TYPE_CONTINUATION || p.stream != stream)
                    {
                        return Err(RewriteError::Interrupted);
                    }
                    if !is_header_frame {
                        self.output.extend_from_slice(header);
                        pos += FRAME_HEADER_LEN;
                        self.state = State::Passthrough(len);
                        continue;
                    }
                    if len > MAX_FRAME {
                        return Err(RewriteError::FrameTooLarge(len));
                    }
                    let Some(payload) = self
                        .input
                        .get(pos + FRAME_HEADER_LEN..pos + FRAME_HEADER_LEN + len)
                    else {
                        break;
                    };
                    let payload = payload.to_vec();
                    pos += FRAME_HEADER_LEN + len;
                    self.header_frame(kind, flags, stream, &payload)?;
                }
            }
        }
        self.input.drain(..pos);
        Ok(())
    }

    fn header_frame(
        &mut self,
        kind: u8,
        flags: u8,
        stream: [u8; 4],
        payload: &[u8],
    ) -> Result<(), RewriteError> {
        let mut fragment = payload;
        if kind == TYPE_HEADERS {
            let mut pad = 0usize;
            if flags & FLAG_PADDED != 0 {
                let (&p, rest) = fragment
                    .split_first()
                    .ok_or(RewriteError::MalformedHeaders)?;
                pad = usize::from(p);
                fragment = rest;
            }
            let priority = if flags & FLAG_PRIORITY != 0 {
                let (p, rest) = fragment
                    .split_first_chunk::<5>()
                    .ok_or(RewriteError::MalformedHeaders)?;
                fragment = rest;
                Some(*p)
            } else {
                None
            };
            let keep = fragment
                .len()
                .checked_sub(pad)
                .ok_or(RewriteError::MalformedHeaders)?;
            fragment = &fragment[..keep];
            self.pending = Some(Pending {
                stream,
                flags: flags & FLAG_END_STREAM,
                priority,
                block: Vec::new(),
            });
        }
        let Some(pending) = self.pending.as_mut() else {
            return Err(RewriteError::Interrupted);
        };
        if pending.block.len() + fragment.len() > MAX_HEADER_BLOCK {
            return Err(RewriteError::BlockTooLarge);
        }
        pending.block.extend_from_slice(fragment);
        if flags & FLAG_END_HEADERS == 0 {
            return Ok(());
        }
        let Some(pending) = self.pending.take() else {
            return Err(RewriteError::Interrupted);
        };
        let mut fields = self.decoder.decode(&pending.block, MAX_HEADER_BLOCK)?;
        for (name, value) in &mut fields {
            if name == b":authority" {
                *value = LOCAL_AUTHORITY.to_vec();
            }
        }
        let mut block = Vec::with_capacity(pending.block.len() + 64);
        hpack::encode(&fields, &mut block);
        self.emit(&pending, &block);
        Ok(())
    }

    /// Writes `block` as one HEADERS frame and as many CONTINUATION frames
    /// as the frame size requires.
    fn emit(&mut self, pending: &Pending, block: &[u8]) {
        let room = MAX_FRAME - if pending.priority.is_some() { 5 } else { 0 };
        let (first, mut rest) = block.split_at(room.min(block.len()));
        let mut flags = pending.flags;
        if pending.priority.is_some() {
            flags |= FLAG_PRIORITY;
        }
        if rest.is_empty() {
            flags |= FLAG_END_HEADERS;
        }
        let prio = pending.priority.as_ref().map_or(&[][..], |p| &p[..]);
        self.frame(TYPE_HEADERS, flags, pending.stream, &[prio, first]);
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(MAX_FRAME.min(rest.len()));
            rest = tail;
            let flags = if rest.is_empty() { FLAG_END_HEADERS } else { 0 };
            self.frame(TYPE_CONTINUATION, flags, pending.stream, &[chunk]);
        }
    }

    fn frame(&mut self, kind: u8, flags: u8, stream: [u8; 4], parts: &[&[u8]]) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        // len <= MAX_FRAME < 2^24: the three bytes hold it.
        self.output.extend_from_slice(&[
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            kind,
            flags,
        ]);
        self.output.extend_from_slice(&stream);
        for p in parts {
            self.output.extend_from_slice(p);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityRewrite<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.output_pos < this.output.len() {
                let n = buf.remaining().min(this.output.len() - this.output_pos);
                buf.put_slice(&this.output[this.output_pos..this.output_pos + n]);
                this.output_pos += n;
                if this.output_pos == this.output.len() {
                    this.output.clear();
                    this.output_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.failed {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "connection closed after an invalid header block",
                )));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.io).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {}
            }
            if read.filled().is_empty() {
                this.eof = true;
                continue;
            }
            this.input.extend_from_slice(read.filled());
            if let Err(e) = this.process() {
                tracing::info!(error = %e, "closing a Workload API connection");
                this.failed = true;
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityRewrite<S> {
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

#[cfg(test)]
mod tests;
