//! Builders for rustls `ServerConfig` / `ClientConfig` over SPIFFE sources.

use std::sync::Arc;

use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::crypto::hash::HashAlgorithm;
use rustls::server::NoServerSessionStorage;
use rustls::{ClientConfig, ServerConfig, SupportedCipherSuite, SupportedProtocolVersion};
use spiffe_core::{BundleSource, PeerIdentity, SvidSource, X509AuthoritySource};

use crate::authorizer::{Authorizer, DynAuthorizer, TargetAuthorizers};
use crate::error::ConfigError;
use crate::rustls_impls::{
    PeerVerifier, ServerAuthorization, SpiffeClientVerifier, SpiffeServerVerifier, SvidResolver,
};
use crate::trust::{TrustPolicy, UnknownAuthorityHook};
use crate::verified::VerifiedPeers;

/// The ALPN protocols offered by default: HTTP/2, then HTTP/1.1.
pub const DEFAULT_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

static TLS13_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
static TLS13_AND_12: &[&SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The process's default rustls provider, or aws-lc-rs when none was
/// installed.
fn default_provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}

/// Settings both sides share.
struct Common {
    provider: Arc<CryptoProvider>,
    svid: Arc<dyn SvidSource>,
    bundles: Arc<dyn BundleSource>,
    policy: TrustPolicy,
    alpn: Vec<Vec<u8>>,
    tls12: bool,
    peers: Arc<VerifiedPeers>,
    on_unknown_authority: Option<UnknownAuthorityHook>,
    chain_cache: usize,
}

impl Common {
    fn new(
        provider: Arc<CryptoProvider>,
        svid: Arc<dyn SvidSource>,
        bundles: Arc<dyn BundleSource>,
    ) -> Self {
        Common {
            provider,
            svid,
            bundles,
            policy: TrustPolicy::local_only(),
            alpn: DEFAULT_ALPN.iter().map(|p| p.to_vec()).collect(),
            tls12: false,
            peers: Arc::new(VerifiedPeers::new()),
            on_unknown_authority: None,
            chain_cache: crate::chain_cache::DEFAULT_CAPACITY,
        }
    }

    fn versions(&self) -> &'static [&'static SupportedProtocolVersion] {
        if self.tls12 { TLS13_AND_12 } else { TLS13_ONLY }
    }

    fn verifier(&self) -> PeerVerifier {
        PeerVerifier::new(
            self.svid.clone(),
            self.bundles.clone(),
            self.policy.clone(),
            &self.provider,
            self.peers.clone(),
            self.chain_cache,
        )
        .with_unknown_authority_hook(self.on_unknown_authority.clone())
    }

    fn resolver(&self) -> Arc<SvidResolver> {
        Arc::new(SvidResolver::new(self.svid.clone(), self.provider.clone()))
    }
}

impl std::fmt::Debug for Common {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Common")
            .field("policy", &self.policy)
            .field("alpn", &self.alpn)
            .field("tls12", &self.tls12)
            .field("chain_cache", &self.chain_cache)
            .finish_non_exhaustive()
    }
}

/// A rustls [`ServerConfig`] built by [`ServerConfigBuilder`], together
/// with the record of what its verifier accepted.
///
/// [`crate::MtlsAcceptor`] takes it whole. Code that drives rustls itself
/// (tokio-rustls, a custom accept loop) uses [`MtlsServerConfig::rustls`]
/// and, after each handshake, [`MtlsServerConfig::peer_identity`]: the
/// identity the verifier produced for that connection's certificate.
#[derive(Debug, Clone)]
pub struct MtlsServerConfig {
    rustls: Arc<ServerConfig>,
    peers: Arc<VerifiedPeers>,
}

impl MtlsServerConfig {
    /// The rustls config.
    pub fn rustls(&self) -> &Arc<ServerConfig> {
        &self.rustls
    }

    pub(crate) fn peers(&self) -> Arc<VerifiedPeers> {
        self.peers.clone()
    }

    /// The verified identity of the client of a connection whose handshake
    /// completed with this config; `None` if the client was not verified
    /// by it (another config's connection, or no client certificate).
    pub fn peer_identity(&self, conn: &rustls::CommonState) -> Option<PeerIdentity> {
        self.peers.of_connection(conn)
    }
}

/// A rustls [`ClientConfig`] built by [`ClientConfigBuilder`], together
/// with the record of what its verifier accepted (see [`MtlsServerConfig`]).
#[derive(Debug, Clone)]
pub struct MtlsClientConfig {
    rustls: Arc<ClientConfig>,
    peers: Arc<VerifiedPeers>,
    svid: SvidOf,
}

/// The client's own SVID source, to name this client in errors.
#[derive(Clone)]
pub(crate) struct SvidOf(pub(crate) Arc<dyn SvidSource>);

impl std::fmt::Debug for SvidOf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SvidSource")
    }
}

impl MtlsClientConfig {
    /// The rustls config.
    pub fn rustls(&self) -> &Arc<ClientConfig> {
        &self.rustls
    }

    pub(crate) fn peers(&self) -> Arc<VerifiedPeers> {
        self.peers.clone()
    }

    /// The SPIFFE ID of the SVID this client presents now.
    pub(crate) fn own_id(&self) -> Option<spiffe_core::SpiffeId> {
        self.svid.0.x509_svid().map(|s| s.spiffe_id().clone())
    }

    /// The verified identity of the server of a connection whose handshake
    /// completed with this config.
    pub fn peer_identity(&self, conn: &rustls::CommonState) -> Option<PeerIdentity> {
        self.peers.of_connection(conn)
    }
}

/// Builds a rustls [`ServerConfig`] that presents the current SVID and
/// requires an authorized client SVID.
///
/// Built once: SVID and bundle rotation take effect at the next handshake,
/// without rebuilding. TLS 1.3 only unless [`ServerConfigBuilder::enable_tls12`];
/// ALPN `h2`, `http/1.1`; trust policy [`TrustPolicy::local_only`]; session
/// resumption off, so every connection is verified against current trust.
///
/// ```
/// use std::sync::Arc;
/// use mtls_tower::{ServerConfigBuilder, authorizer};
/// use spiffe_core::{BundleSet, MemoryBundleSource, MemorySvidSource};
/// let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
/// let svids = Arc::new(MemorySvidSource::empty());
/// let bundles = Arc::new(MemoryBundleSource::new(BundleSet::new()));
/// let config = ServerConfigBuilder::new(provider, svids, bundles, authorizer::any()).build()?;
/// assert_eq!(config.rustls().alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
/// # Ok::<(), mtls_tower::ConfigError>(())
/// ```
#[derive(Debug)]
pub struct ServerConfigBuilder {
    common: Common,
    authorizer: DynAuthorizer,
    client_auth_optional: bool,
    prefer_sha256: bool,
}

impl ServerConfigBuilder {
    /// A server that admits clients `authorizer` accepts.
    ///
    /// `bundles` must be an [`X509AuthoritySource`]: a source of JWT keys only
    /// cannot verify a certificate, and passing one does not compile.
    ///
    /// ```compile_fail
    /// # use std::sync::Arc;
    /// # use spiffe_core::{BundleSet, BundleSource, MemorySvidSource};
    /// /// Holds JWT bundles only; implements `BundleSource` but not
    /// /// `X509AuthoritySource`.
    /// struct JwtKeysOnly(Arc<BundleSet>, tokio::sync::watch::Sender<u64>);
    /// impl BundleSource for JwtKeysOnly {
    ///     fn bundle_set(&self) -> Arc<BundleSet> { self.0.clone() }
    ///     fn generation(&self) -> u64 { 0 }
    ///     fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> { self.1.subscribe() }
    /// }
    /// let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    /// let jwt = JwtKeysOnly(Arc::new(BundleSet::new()), tokio::sync::watch::channel(0).0);
    /// let svids = MemorySvidSource::empty();
    /// mtls_tower::ServerConfigBuilder::new(provider, svids, jwt, mtls_tower::authorizer::any());
    /// ```
    pub fn new(
        provider: Arc<CryptoProvider>,
        svid: impl SvidSource,
        bundles: impl X509AuthoritySource,
        authorizer: impl Authorizer,
    ) -> Self {
        ServerConfigBuilder {
            common: Common::new(provider, Arc::new(svid), Arc::new(bundles)),
            authorizer: DynAuthorizer(Arc::new(authorizer)),
            client_auth_optional: false,
            prefer_sha256: false,
        }
    }

    /// A server whose SVID and trust bundles come from one source (an
    /// `X509Source` from the Workload API is both), with the process's
    /// default rustls crypto provider (aws-lc-rs unless one was
    /// installed).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use mtls_tower::{ServerConfigBuilder, authorizer};
    /// # use spiffe_core::{BundleSet, BundleSource, SvidSource, X509Svid};
    /// # #[derive(Clone)]
    /// # struct Both;
    /// # impl SvidSource for Both {
    /// #     fn x509_svid(&self) -> Option<Arc<X509Svid>> { None }
    /// #     fn generation(&self) -> u64 { 0 }
    /// #     fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> { tokio::sync::watch::channel(0).1 }
    /// # }
    /// # impl BundleSource for Both {
    /// #     fn bundle_set(&self) -> Arc<BundleSet> { Arc::new(BundleSet::new()) }
    /// #     fn generation(&self) -> u64 { 0 }
    /// #     fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> { tokio::sync::watch::channel(0).1 }
    /// # }
    /// # impl spiffe_core::X509AuthoritySource for Both {}
    /// # let source = Both;
    /// // `source`: anything that is both an SvidSource and an X509AuthoritySource.
    /// let config = ServerConfigBuilder::from_source(source, authorizer::any()).build()?;
    /// # Ok::<(), mtls_tower::ConfigError>(())
    /// ```
    pub fn from_source<S>(source: S, authorizer: impl Authorizer) -> Self
    where
        S: SvidSource + X509AuthoritySource + Clone,
    {
        Self::new(default_provider(), source.clone(), source, authorizer)
    }

    /// Lets a client that presents no certificate complete the handshake;
    /// a client that presents one is still verified and authorized.
    ///
    /// For servers that serve a bootstrap call to clients without an
    /// identity yet (a node attesting to get its first SVID). Such
    /// connections have no peer: [`MtlsServerConfig::peer_identity`] is
    /// `None`, and [`crate::MtlsAcceptor`] refuses them, so drive rustls
    /// yourself and decide per request what an anonymous client may do.
    pub fn client_auth_optional(mut self) -> Self {
        self.client_auth_optional = true;
        self
    }

    /// Sets which trust domains' clients are validated at all.
    pub fn trust_policy(mut self, policy: TrustPolicy) -> Self {
        self.common.policy = policy;
        self
    }

    /// Replaces the ALPN protocols (default `h2`, `http/1.1`).
    pub fn alpn_protocols(mut self, protocols: Vec<Vec<u8>>) -> Self {
        self.common.alpn = protocols;
        self
    }

    /// Also accepts TLS 1.2.
    pub fn enable_tls12(mut self) -> Self {
        self.common.tls12 = true;
        self
    }

    /// Picks the cipher suite by this server's preference instead of the
    /// client's, and prefers the provider's suites whose hash is SHA-256
    /// (TLS_AES_128_GCM_SHA256 first with aws-lc-rs), keeping the
    /// provider's order otherwise.
    ///
    /// Many clients (OpenSSL, curl) list TLS_AES_256_GCM_SHA384 first. Its
    /// key schedule runs on SHA-384, which x86-64 and ARMv8 CPUs compute in
    /// software, while SHA-256 has instructions of its own; with P-256
    /// identities (128-bit security) AES-128 loses nothing. Measured on the
    /// mesh sidecar: about 8 % less CPU per inbound full handshake.
    pub fn prefer_sha256_suites(mut self) -> Self {
        self.prefer_sha256 = true;
        self
    }

    /// Keeps up to `capacity` verified peer chains (default 1024; 0 turns
    /// the cache off). A peer that presents a chain already verified against
    /// the current bundles, with every certificate of its path still inside
    /// its validity period, skips the chain's CA signature checks and
    /// certificate parsing: about a tenth of the CPU of a full handshake.
    /// Any change of the bundles empties the cache; the handshake signature
    /// and the authorizer are still checked on every connection.
    pub fn verified_chain_cache(mut self, capacity: usize) -> Self {
        self.common.chain_cache = capacity;
        self
    }

    /// Calls `hook` with the trust domain of a peer whose chain the bundle
    /// of its (admitted) trust domain does not anchor, or whose admitted
    /// trust domain has no bundle yet: the sign of a rotation not fetched
    /// yet. The `federation` feature uses it to refetch that bundle early.
    /// The hook runs inside the handshake: it must be quick.
    pub fn on_unknown_authority(mut self, hook: UnknownAuthorityHook) -> Self {
        self.common.on_unknown_authority = Some(hook);
        self
    }

    /// Builds the config.
    pub fn build(self) -> Result<MtlsServerConfig, ConfigError> {
        let verifier = Arc::new(SpiffeClientVerifier {
            core: self.common.verifier(),
            authorizer: self.authorizer,
            optional: self.client_auth_optional,
        });
        let provider = if self.prefer_sha256 {
            let mut p = (*self.common.provider).clone();
            // Stable: the provider's order stands within each group.
            p.cipher_suites.sort_by_key(|suite| {
                let common = match suite {
                    SupportedCipherSuite::Tls13(s) => &s.common,
                    SupportedCipherSuite::Tls12(s) => &s.common,
                };
                common.hash_provider.algorithm() != HashAlgorithm::SHA256
            });
            Arc::new(p)
        } else {
            self.common.provider.clone()
        };
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(self.common.versions())
            .map_err(ConfigError::Versions)?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(self.common.resolver());
        config.alpn_protocols = self.common.alpn;
        config.session_storage = Arc::new(NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        config.ignore_client_order = self.prefer_sha256;
        Ok(MtlsServerConfig {
            rustls: Arc::new(config),
            peers: self.common.peers,
        })
    }
}

/// Builds a rustls [`ClientConfig`] that presents the current SVID and
/// requires the server's SPIFFE ID to satisfy an authorizer.
///
/// The server is authenticated by its SPIFFE ID only: the name dialed is
/// never checked against the certificate's DNS names. Same defaults as
/// [`ServerConfigBuilder`].
#[derive(Debug)]
pub struct ClientConfigBuilder {
    common: Common,
    authorization: ServerAuthorization,
}

impl ClientConfigBuilder {
    /// A client that accepts servers `authorizer` accepts, whatever it dials.
    pub fn new(
        provider: Arc<CryptoProvider>,
        svid: impl SvidSource,
        bundles: impl X509AuthoritySource,
        authorizer: impl Authorizer,
    ) -> Self {
        ClientConfigBuilder {
            common: Common::new(provider, Arc::new(svid), Arc::new(bundles)),
            authorization: ServerAuthorization::All(DynAuthorizer(Arc::new(authorizer))),
        }
    }

    /// A client whose SVID and trust bundles come from one source, with
    /// the default crypto provider (see [`ServerConfigBuilder::from_source`]).
    pub fn from_source<S>(source: S, authorizer: impl Authorizer) -> Self
    where
        S: SvidSource + X509AuthoritySource + Clone,
    {
        Self::new(default_provider(), source.clone(), source, authorizer)
    }

    /// A client whose authorizer depends on the host it dials; hosts
    /// without an entry are refused.
    pub fn per_target(
        provider: Arc<CryptoProvider>,
        svid: impl SvidSource,
        bundles: impl X509AuthoritySource,
        targets: TargetAuthorizers,
    ) -> Self {
        ClientConfigBuilder {
            common: Common::new(provider, Arc::new(svid), Arc::new(bundles)),
            authorization: ServerAuthorization::PerTarget(targets),
        }
    }

    /// Sets which trust domains' servers are validated at all.
    pub fn trust_policy(mut self, policy: TrustPolicy) -> Self {
        self.common.policy = policy;
        self
    }

    /// Replaces the ALPN protocols (default `h2`, `http/1.1`).
    pub fn alpn_protocols(mut self, protocols: Vec<Vec<u8>>) -> Self {
        self.common.alpn = protocols;
        self
    }

    /// Also offers TLS 1.2.
    pub fn enable_tls12(mut self) -> Self {
        self.common.tls12 = true;
        self
    }

    /// Keeps up to `capacity` verified peer chains (default 1024; 0 turns
    /// the cache off). A peer that presents a chain already verified against
    /// the current bundles, with every certificate of its path still inside
    /// its validity period, skips the chain's CA signature checks and
    /// certificate parsing: about a tenth of the CPU of a full handshake.
    /// Any change of the bundles empties the cache; the handshake signature
    /// and the authorizer are still checked on every connection.
    pub fn verified_chain_cache(mut self, capacity: usize) -> Self {
        self.common.chain_cache = capacity;
        self
    }

    /// Calls `hook` with the trust domain of a peer whose chain the bundle
    /// of its (admitted) trust domain does not anchor, or whose admitted
    /// trust domain has no bundle yet: the sign of a rotation not fetched
    /// yet. The `federation` feature uses it to refetch that bundle early.
    /// The hook runs inside the handshake: it must be quick.
    pub fn on_unknown_authority(mut self, hook: UnknownAuthorityHook) -> Self {
        self.common.on_unknown_authority = Some(hook);
        self
    }

    /// Builds the config.
    pub fn build(self) -> Result<MtlsClientConfig, ConfigError> {
        let verifier = Arc::new(SpiffeServerVerifier {
            core: self.common.verifier(),
            authorization: self.authorization,
        });
        let mut config = ClientConfig::builder_with_provider(self.common.provider.clone())
            .with_protocol_versions(self.common.versions())
            .map_err(ConfigError::Versions)?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_cert_resolver(self.common.resolver());
        config.alpn_protocols = self.common.alpn;
        config.resumption = Resumption::disabled();
        Ok(MtlsClientConfig {
            rustls: Arc::new(config),
            peers: self.common.peers,
            svid: SvidOf(self.common.svid),
        })
    }
}

#[cfg(test)]
mod tests {
    use spiffe_core::{BundleSet, MemoryBundleSource, MemorySvidSource};

    use super::*;
    use crate::authorizer;

    fn parts() -> (
        Arc<CryptoProvider>,
        Arc<MemorySvidSource>,
        Arc<MemoryBundleSource>,
    ) {
        (
            Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
            Arc::new(MemorySvidSource::empty()),
            Arc::new(MemoryBundleSource::new(BundleSet::new())),
        )
    }

    /// Sends the client's first flight to the server; the server's verdict.
    fn client_hello_to(
        client: MtlsClientConfig,
        server: MtlsServerConfig,
    ) -> Result<(), rustls::Error> {
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let mut c = rustls::ClientConnection::new(client.rustls().clone(), name).unwrap();
        let mut s = rustls::ServerConnection::new(server.rustls().clone()).unwrap();
        let mut buf = Vec::new();
        c.write_tls(&mut buf).unwrap();
        s.read_tls(&mut &buf[..]).unwrap();
        s.process_new_packets().map(|_| ())
    }

    #[test]
    fn server_defaults_tls13_only_alpn_h2_http11_no_resumption() {
        let (p, s, b) = parts();
        let server = ServerConfigBuilder::new(p.clone(), s.clone(), b.clone(), authorizer::any())
            .build()
            .unwrap();
        assert_eq!(
            server.rustls().alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        assert_eq!(server.rustls().send_tls13_tickets, 0);
        // A client offering only TLS 1.2 is refused at its ClientHello.
        let mut tls12_only = (*p).clone();
        tls12_only
            .cipher_suites
            .retain(|cs| cs.version() == &rustls::version::TLS12);
        let client = ClientConfigBuilder::new(Arc::new(tls12_only), s, b, authorizer::any())
            .enable_tls12()
            .build()
            .unwrap();
        let err = client_hello_to(client, server).unwrap_err();
        assert!(matches!(err, rustls::Error::PeerIncompatible(_)), "{err:?}");
    }

    #[test]
    fn client_defaults_and_overrides() {
        let (p, s, b) = parts();
        let c = ClientConfigBuilder::new(p.clone(), s.clone(), b.clone(), authorizer::any())
            .build()
            .unwrap();
        assert_eq!(
            c.rustls().alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        let c = ClientConfigBuilder::new(p, s, b, authorizer::any())
            .alpn_protocols(vec![b"h2".to_vec()])
            .build()
            .unwrap();
        assert_eq!(c.rustls().alpn_protocols, [b"h2".to_vec()]);
    }

    #[test]
    fn provider_without_tls13_is_a_config_error() {
        let (mut p, s, b) = parts();
        Arc::make_mut(&mut p)
            .cipher_suites
            .retain(|cs| cs.version() != &rustls::version::TLS13);
        let err = ServerConfigBuilder::new(p, s, b, authorizer::any())
            .build()
            .unwrap_err();
        assert!(matches!(err, ConfigError::Versions(_)), "{err:?}");
    }
}
