//! Shared by the handshake benchmarks: the two config pairs under test and
//! an in-memory handshake driver.
#![allow(dead_code, unreachable_pub)]

use std::hint::black_box;
use std::sync::Arc;

use mtls_tower::{ClientConfigBuilder, ServerConfigBuilder, authorizer};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    ClientConfig, ClientConnection, Connection, RootCertStore, ServerConfig, ServerConnection,
};
use spiffe_core::{BundleSet, MemoryBundleSource, MemorySvidSource, X509Bundle, X509Svid};
use test_support::{Leaf, LeafSpec, TestCa};

/// A client config and the server config it talks to.
pub type Pair = (Arc<ClientConfig>, Arc<ServerConfig>);

pub const SERVER: &str = "spiffe://example.org/ns/default/sa/server";
pub const CLIENT: &str = "spiffe://example.org/ns/default/sa/client";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn transfer(from: &mut Connection, to: &mut Connection) {
    let mut buf = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut buf).unwrap();
    }
    let mut rd = &buf[..];
    while !rd.is_empty() {
        to.read_tls(&mut rd).unwrap();
        to.process_new_packets().unwrap();
    }
}

pub fn handshake(client: &Arc<ClientConfig>, server: &Arc<ServerConfig>) {
    let name = ServerName::try_from("localhost").unwrap();
    let mut c = Connection::Client(ClientConnection::new(client.clone(), name).unwrap());
    let mut s = Connection::Server(ServerConnection::new(server.clone()).unwrap());
    while c.is_handshaking() || s.is_handshaking() {
        transfer(&mut c, &mut s);
        transfer(&mut s, &mut c);
    }
    assert!(s.peer_certificates().is_some());
    black_box((c, s));
}

pub fn leaf(ca: &TestCa, id: &str) -> Leaf {
    ca.leaf_with(LeafSpec::new(id).dns(&["localhost"]))
}

fn key(l: &Leaf) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(l.key_der.clone()))
}

/// Our configs; `chain_cache` is each side's verified-chain cache capacity
/// (0: every handshake verifies the peer's chain in full).
pub fn ours(ca: &TestCa, server_leaf: &Leaf, client_leaf: &Leaf, chain_cache: usize) -> Pair {
    let mut set = BundleSet::new();
    set.insert_x509(X509Bundle::new("example.org".parse().unwrap(), vec![ca.root_cert()]).unwrap());
    let bundles = Arc::new(MemoryBundleSource::new(set));
    let svid = |l: &Leaf| X509Svid::from_der(&l.chain_der(), &l.key_der).unwrap();
    let server = ServerConfigBuilder::new(
        provider(),
        Arc::new(MemorySvidSource::new(svid(server_leaf))),
        bundles.clone(),
        authorizer::exact(CLIENT.parse().unwrap()),
    )
    .verified_chain_cache(chain_cache)
    .build()
    .unwrap();
    let client = ClientConfigBuilder::new(
        provider(),
        Arc::new(MemorySvidSource::new(svid(client_leaf))),
        bundles,
        authorizer::exact(SERVER.parse().unwrap()),
    )
    .verified_chain_cache(chain_cache)
    .build()
    .unwrap();
    (client.rustls().clone(), server.rustls().clone())
}

pub fn plain(ca: &TestCa, server_leaf: &Leaf, client_leaf: &Leaf) -> Pair {
    let mut roots = RootCertStore::empty();
    roots.add(ca.root_cert()).unwrap();
    let roots = Arc::new(roots);
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
        .build()
        .unwrap();
    let mut server = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(server_leaf.chain.clone(), key(server_leaf))
        .unwrap();
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    server.send_tls13_tickets = 0;
    let mut client = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(client_leaf.chain.clone(), key(client_leaf))
        .unwrap();
    client.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    client.resumption = rustls::client::Resumption::disabled();
    (Arc::new(client), Arc::new(server))
}

/// The config pairs under test, over the same certificates.
pub struct Configs {
    /// Ours with the default verified-chain cache.
    pub ours: Pair,
    /// Ours with the cache off.
    pub uncached: Pair,
    /// Plain rustls.
    pub plain: Pair,
}

/// All three config pairs over the same certificates.
pub fn configs() -> Configs {
    let ca = TestCa::new("example.org");
    let server_leaf = leaf(&ca, SERVER);
    let client_leaf = leaf(&ca, CLIENT);
    Configs {
        ours: ours(&ca, &server_leaf, &client_leaf, 1024),
        uncached: ours(&ca, &server_leaf, &client_leaf, 0),
        plain: plain(&ca, &server_leaf, &client_leaf),
    }
}
