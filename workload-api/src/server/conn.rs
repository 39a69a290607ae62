//! Accepted connections that carry their [`Caller`] into each request.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tonic::transport::server::Connected;

use super::authority::AuthorityRewrite;
use crate::attest::{Caller, UnixPeer};

/// An accepted stream and the caller facts read at accept time; tonic puts
/// the [`Caller`] into every request's extensions.
pub(crate) struct PeerStream<S> {
    io: S,
    caller: Caller,
}

impl<S> Connected for PeerStream<S> {
    type ConnectInfo = Caller;
    fn connect_info(&self) -> Caller {
        self.caller
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for PeerStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
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

/// Accepts Unix connections, reading `SO_PEERCRED` for each. A connection
/// whose credentials cannot be read is closed at once. Each connection's
/// reads go through [`AuthorityRewrite`], so any `:authority` is accepted.
pub(crate) fn unix_incoming(
    listener: UnixListener,
) -> impl Stream<Item = io::Result<PeerStream<AuthorityRewrite<UnixStream>>>> {
    futures_util::stream::unfold(listener, |listener| async move {
        loop {
            let accepted = match listener.accept().await {
                Ok((io, _)) => io,
                Err(e) => return Some((Err(e), listener)),
            };
            match accepted.peer_cred() {
                Ok(cred) => {
                    let caller = Caller::Unix(UnixPeer {
                        uid: cred.uid(),
                        gid: cred.gid(),
                        pid: cred.pid(),
                    });
                    return Some((
                        Ok(PeerStream {
                            io: AuthorityRewrite::new(accepted),
                            caller,
                        }),
                        listener,
                    ));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "dropping a connection without peer credentials");
                }
            }
        }
    })
}

/// Accepts TCP connections on a loopback listener.
pub(crate) fn tcp_incoming(
    listener: TcpListener,
) -> impl Stream<Item = io::Result<PeerStream<TcpStream>>> {
    futures_util::stream::unfold(listener, |listener| async move {
        let next = listener.accept().await.map(|(io, peer)| {
            let _ = io.set_nodelay(true);
            PeerStream {
                io,
                caller: Caller::Tcp { peer },
            }
        });
        Some((next, listener))
    })
}
