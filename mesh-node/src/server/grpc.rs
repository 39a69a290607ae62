//! The node API on the wire: a TLS listener whose client certificate is
//! optional (attestation comes before an identity), and the gRPC service
//! that hands each call to [`NodeService`] with the caller the handshake
//! verified.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use mtls_tower::MtlsServerConfig;
use spiffe_core::{ConnectionFacts, EntryId, SpiffeId};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tonic::{Request, Response, Status};

use super::metrics::ServerMetrics;
use super::service::{NodeError, NodeService, NodeView};
use crate::node_api::{entry_to_proto, policy_to_proto};
use crate::proto::{self, node_server};

/// How long a client may take to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once, at most.
const MAX_HANDSHAKES: usize = 256;
/// Coalesces bursts of changes into one sync message.
const SYNC_DEBOUNCE: Duration = Duration::from_millis(20);

/// A node API connection: TLS, and what the handshake established.
pub(crate) struct NodeConn {
    stream: TlsStream<TcpStream>,
    facts: ConnectionFacts,
}

impl tonic::transport::server::Connected for NodeConn {
    type ConnectInfo = ConnectionFacts;

    fn connect_info(&self) -> ConnectionFacts {
        self.facts.clone()
    }
}

impl AsyncRead for NodeConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for NodeConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Accepts TCP connections on `listener` and completes their handshakes
/// concurrently (bounded in number and time); yields the connections whose
/// handshake succeeded.
pub(crate) fn incoming(
    listener: TcpListener,
    tls: MtlsServerConfig,
    metrics: Arc<ServerMetrics>,
) -> impl Stream<Item = Result<NodeConn, io::Error>> {
    let (tx, rx) = mpsc::channel::<NodeConn>(64);
    tokio::spawn(async move {
        let acceptor = TlsAcceptor::from(tls.rustls().clone());
        let permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        let mut pause = Duration::from_millis(5);
        loop {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let (tcp, remote) = match listener.accept().await {
                Ok(c) => {
                    pause = Duration::from_millis(5);
                    c
                }
                Err(error) => {
                    // EMFILE and friends: pause rather than spin.
                    tracing::warn!(%error, "node API accept failed; pausing");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                    continue;
                }
            };
            if tx.is_closed() {
                return;
            }
            let (acceptor, tls, tx, metrics) =
                (acceptor.clone(), tls.clone(), tx.clone(), metrics.clone());
            tokio::spawn(async move {
                let _permit = permit;
                match handshake(acceptor, &tls, tcp, remote).await {
                    Ok(conn) => {
                        let _ = tx.send(conn).await;
                    }
                    Err(error) => {
                        metrics.error("node_api_handshake");
                        tracing::debug!(%remote, %error, "node API handshake failed");
                    }
                }
            });
        }
    });
    futures_util::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|c| (Ok(c), rx)) },
    )
}

async fn handshake(
    acceptor: TlsAcceptor,
    tls: &MtlsServerConfig,
    tcp: TcpStream,
    remote: SocketAddr,
) -> io::Result<NodeConn> {
    let local = tcp.local_addr()?;
    let _ = tcp.set_nodelay(true);
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
    let conn = stream.get_ref().1;
    let mut facts = ConnectionFacts::new(local, remote).with_tls();
    if let Some(peer) = tls.peer_identity(conn) {
        facts = facts.with_peer(peer);
    }
    if let Some(alpn) = conn.alpn_protocol() {
        facts = facts.with_alpn(alpn);
    }
    Ok(NodeConn { stream, facts })
}

/// The gRPC face of [`NodeService`].
#[derive(Debug, Clone)]
pub(crate) struct NodeGrpc {
    pub(crate) service: Arc<NodeService>,
    pub(crate) metrics: Arc<ServerMetrics>,
    pub(crate) shutdown: watch::Receiver<bool>,
}

fn status(e: NodeError) -> Status {
    Status::new(e.code(), e.to_string())
}

/// The node the connection's client certificate proves, or
/// `Unauthenticated` for an anonymous connection.
fn caller<T>(req: &Request<T>) -> Result<SpiffeId, Status> {
    req.extensions()
        .get::<ConnectionFacts>()
        .and_then(ConnectionFacts::peer)
        .map(|p| p.spiffe_id().clone())
        .ok_or_else(|| {
            Status::unauthenticated("this call needs the node SVID as client certificate")
        })
}

fn ders(chain: Vec<rustls_pki_types::CertificateDer<'static>>) -> Vec<Vec<u8>> {
    chain.into_iter().map(|c| c.to_vec()).collect()
}

fn parse_entry_id(s: &str) -> Result<EntryId, Status> {
    s.parse()
        .map_err(|e| Status::invalid_argument(format!("entry id {s:?}: {e}")))
}

type SyncResponseStream =
    Pin<Box<dyn Stream<Item = Result<proto::SyncUpdate, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl node_server::Node for NodeGrpc {
    async fn attest(
        &self,
        req: Request<proto::AttestRequest>,
    ) -> Result<Response<proto::AttestResponse>, Status> {
        let r = req.into_inner();
        let service = self.service.clone();
        let (node, chain) =
            tokio::task::spawn_blocking(move || service.attest(&r.attestor, &r.payload, &r.csr))
                .await
                .map_err(|_| Status::internal("attestation task failed"))?
                .map_err(status)?;
        self.service.changed();
        Ok(Response::new(proto::AttestResponse {
            spiffe_id: node.spiffe_id.to_string(),
            cert_chain: ders(chain),
            bundle: self.service.ca().bundle().to_json(),
        }))
    }

    async fn renew_node(
        &self,
        req: Request<proto::RenewNodeRequest>,
    ) -> Result<Response<proto::RenewNodeResponse>, Status> {
        let node = caller(&req)?;
        let chain = self
            .service
            .renew_node(&node, &req.into_inner().csr)
            .map_err(status)?;
        Ok(Response::new(proto::RenewNodeResponse {
            cert_chain: ders(chain),
        }))
    }

    type SyncStream = SyncResponseStream;

    async fn sync(
        &self,
        req: Request<proto::SyncRequest>,
    ) -> Result<Response<Self::SyncStream>, Status> {
        let node_id = caller(&req)?;
        let node = self.service.node(&node_id).map_err(status)?;
        let (tx, rx) = mpsc::channel(4);
        let service = self.service.clone();
        let metrics = self.metrics.clone();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            metrics.sync_streams.inc();
            run_sync(service, node, tx, shutdown).await;
            metrics.sync_streams.dec();
        });
        let stream =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|m| (m, rx)) },
            );
        Ok(Response::new(Box::pin(stream)))
    }

    async fn sign_workloads(
        &self,
        req: Request<proto::SignWorkloadsRequest>,
    ) -> Result<Response<proto::SignWorkloadsResponse>, Status> {
        let node = caller(&req)?;
        let csrs = req
            .into_inner()
            .csrs
            .into_iter()
            .map(|c| Ok((parse_entry_id(&c.entry_id)?, c.csr)))
            .collect::<Result<Vec<_>, Status>>()?;
        let service = self.service.clone();
        let signed = tokio::task::spawn_blocking(move || service.sign_workloads(&node, &csrs))
            .await
            .map_err(|_| Status::internal("signing task failed"))?
            .map_err(status)?;
        let svids = signed
            .into_iter()
            .map(|(id, r)| match r {
                Ok(chain) => proto::SignedSvid {
                    entry_id: id.to_string(),
                    cert_chain: ders(chain),
                    error: String::new(),
                },
                Err(e) => proto::SignedSvid {
                    entry_id: id.to_string(),
                    cert_chain: Vec::new(),
                    error: e.to_string(),
                },
            })
            .collect();
        Ok(Response::new(proto::SignWorkloadsResponse { svids }))
    }

    async fn mint_jwt_svid(
        &self,
        req: Request<proto::MintJwtSvidRequest>,
    ) -> Result<Response<proto::MintJwtSvidResponse>, Status> {
        let node = caller(&req)?;
        let r = req.into_inner();
        let id = parse_entry_id(&r.entry_id)?;
        if r.audience.is_empty() {
            return Err(Status::invalid_argument("a JWT-SVID needs an audience"));
        }
        let token = self
            .service
            .mint_jwt_svid(&node, &id, &r.audience)
            .map_err(status)?;
        Ok(Response::new(proto::MintJwtSvidResponse { token }))
    }
}

/// Feeds one agent's sync stream: the full view first, then only what
/// changed, until the agent goes away, is evicted, or the server stops.
async fn run_sync(
    service: Arc<NodeService>,
    node: svid_ca::AttestedNode,
    tx: mpsc::Sender<Result<proto::SyncUpdate, Status>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut changes = service.subscribe();
    let mut bundles = spiffe_core::BundleSource::subscribe(&**service.ca());
    let mut policies = service.policies().subscribe();
    let mut federated = service.federation().subscribe();
    let mut sent = NodeView::default();
    let mut first = true;
    loop {
        changes.borrow_and_update();
        bundles.borrow_and_update();
        policies.borrow_and_update();
        federated.borrow_and_update();
        // An evicted node's stream ends with PermissionDenied.
        match service.node(&node.spiffe_id) {
            Ok(_) => {}
            Err(e) => {
                let _ = tx.send(Err(status(e))).await;
                return;
            }
        }
        let view = service.view(&node);
        let revision = *changes.borrow();
        if let Some(update) = diff(&sent, &view, first, revision) {
            if tx.send(Ok(update)).await.is_err() {
                return;
            }
            sent = view;
            first = false;
        }
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            r = bundles.changed() => if r.is_err() { return },
            r = policies.changed() => if r.is_err() { return },
            r = federated.changed() => if r.is_err() { return },
            _ = tx.closed() => return,
            () = stopping(&mut shutdown) => {
                let _ = tx.send(Err(Status::unavailable("server shutting down"))).await;
                return;
            }
        }
        tokio::time::sleep(SYNC_DEBOUNCE).await;
    }
}

async fn stopping(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// The message that takes an agent from `sent` to `now`, if anything
/// changed (always on the first message).
fn diff(sent: &NodeView, now: &NodeView, first: bool, revision: u64) -> Option<proto::SyncUpdate> {
    let entries: Vec<proto::Entry> = now
        .entries
        .iter()
        .filter(|(id, e)| first || sent.entries.get(*id) != Some(*e))
        .map(|(_, e)| entry_to_proto(e))
        .collect();
    let removed: Vec<String> = sent
        .entries
        .keys()
        .filter(|id| !now.entries.contains_key(*id))
        .map(ToString::to_string)
        .collect();
    let bundle_changed = first || sent.bundle != now.bundle;
    let policy_version = |v: &NodeView| v.policy.as_ref().map(|p| p.version);
    let policy_changed = first || policy_version(sent) != policy_version(now);
    let federated_changed = first || sent.federated != now.federated;
    if !first
        && entries.is_empty()
        && removed.is_empty()
        && !bundle_changed
        && !policy_changed
        && !federated_changed
    {
        return None;
    }
    Some(proto::SyncUpdate {
        revision,
        full: first,
        sent_at_unix_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        entries,
        removed,
        bundle: if bundle_changed {
            now.bundle.as_ref().map(|b| b.to_json()).unwrap_or_default()
        } else {
            Vec::new()
        },
        // The whole set when any changed, so a deleted relationship's
        // bundle leaves the agents (FED-10).
        federated_bundles: if federated_changed {
            now.federated
                .iter()
                .map(|(td, b)| (td.to_string(), b.to_json()))
                .collect()
        } else {
            HashMap::new()
        },
        federated_changed,
        policy_changed,
        policy: if policy_changed {
            now.policy.as_deref().map(policy_to_proto)
        } else {
            None
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use spiffe_core::SpiffeBundle;
    use svid_ca::RegistrationEntry;

    fn entry(path: &str) -> Arc<RegistrationEntry> {
        Arc::new(
            RegistrationEntry::new(
                format!("spiffe://example.org{path}").parse().unwrap(),
                "spiffe://example.org/node/a".parse().unwrap(),
                vec!["unix:uid:1".parse().unwrap()],
            )
            .unwrap(),
        )
    }

    fn view(entries: &[Arc<RegistrationEntry>]) -> NodeView {
        NodeView {
            entries: entries.iter().map(|e| (e.id.clone(), e.clone())).collect(),
            bundle: None,
            policy: None,
            federated: Arc::default(),
        }
    }

    #[test]
    fn sync_sends_everything_first_then_only_what_changed() {
        let (a, b, c) = (entry("/a"), entry("/b"), entry("/c"));
        let v1 = view(&[a.clone(), b.clone()]);
        let first = diff(&NodeView::default(), &v1, true, 1).unwrap();
        assert!(first.full);
        assert_eq!(first.entries.len(), 2);
        assert!(
            diff(&v1, &v1, false, 2).is_none(),
            "nothing changed, nothing sent"
        );
        let mut b2 = (*b).clone();
        b2.hint = Some("changed".into());
        let v2 = view(&[a.clone(), Arc::new(b2), c.clone()]);
        let u = diff(&v1, &v2, false, 3).unwrap();
        assert!(!u.full);
        let mut ids: Vec<_> = u.entries.iter().map(|e| e.id.clone()).collect();
        ids.sort();
        let mut want = vec![b.id.to_string(), c.id.to_string()];
        want.sort();
        assert_eq!(ids, want, "only the changed and the new entry");
        assert!(u.removed.is_empty());
        let v3 = view(std::slice::from_ref(&c));
        let u = diff(&v2, &v3, false, 4).unwrap();
        assert!(u.entries.is_empty());
        assert_eq!(u.removed.len(), 2);
        assert_eq!(u.revision, 4);
    }

    #[test]
    fn sync_sends_every_federated_bundle_when_one_changes_or_goes() {
        let td = |s: &str| s.parse::<spiffe_core::TrustDomain>().unwrap();
        let v1 = view(&[entry("/a")]);
        let first = diff(&NodeView::default(), &v1, true, 1).unwrap();
        assert!(first.federated_changed && first.federated_bundles.is_empty());
        let mut v2 = v1.clone();
        v2.federated = Arc::new(
            [
                (
                    td("b.org"),
                    SpiffeBundle::empty(td("b.org")).with_sequence(1),
                ),
                (
                    td("c.org"),
                    SpiffeBundle::empty(td("c.org")).with_sequence(1),
                ),
            ]
            .into(),
        );
        let u = diff(&v1, &v2, false, 2).unwrap();
        assert!(u.federated_changed && u.entries.is_empty());
        assert_eq!(u.federated_bundles.len(), 2);
        assert!(diff(&v2, &v2, false, 3).is_none());
        let mut v3 = v2.clone();
        let mut one = std::collections::BTreeMap::clone(&v3.federated);
        one.insert(
            td("b.org"),
            SpiffeBundle::empty(td("b.org")).with_sequence(2),
        );
        one.remove(&td("c.org"));
        v3.federated = Arc::new(one);
        let u = diff(&v2, &v3, false, 4).unwrap();
        assert!(u.federated_changed);
        let tds: Vec<_> = u.federated_bundles.keys().cloned().collect();
        assert_eq!(tds, ["b.org"], "the whole set: c.org is gone (FED-10)");
    }
}
