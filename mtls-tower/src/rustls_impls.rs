//! Every rustls trait implementation of the crate, in one module.
//!
//! - [`SvidResolver`]: server and client certificate resolver; reads the
//!   current SVID from an [`SvidSource`] per handshake and rebuilds the
//!   `CertifiedKey` only when the source's generation changes.
//! - [`SpiffeClientVerifier`] / [`SpiffeServerVerifier`]: verify the peer in
//!   the fixed order (bundle of the peer's own trust domain, webpki chain
//!   validation without any DNS-name check, X509-SVID leaf rules, then the
//!   authorizer) and map failures to the rustls `CertificateError` that
//!   gives the peer the right alert.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use rustls::client::ResolvesClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use spiffe_core::x509::verify_x509_svid_full;
use spiffe_core::{BundleSource, PeerIdentity, SvidSource, VerifyError, X509Error, X509Svid};

use crate::authorizer::{Authorizer, DynAuthorizer, TargetAuthorizers};
use crate::chain_cache::{ChainKey, VerifiedChains};
use crate::error::PeerRejected;
use crate::trust::{AdmittedBundles, TrustPolicy, UnknownAuthorityHook};
use crate::verified::VerifiedPeers;

/// The `CertifiedKey` built for one generation of the SVID source.
struct Cached {
    generation: u64,
    key: Option<Arc<CertifiedKey>>,
}

/// Presents the current SVID of a source, as server or as client.
pub(crate) struct SvidResolver {
    source: Arc<dyn SvidSource>,
    provider: Arc<CryptoProvider>,
    cache: ArcSwapOption<Cached>,
}

impl SvidResolver {
    pub(crate) fn new(source: Arc<dyn SvidSource>, provider: Arc<CryptoProvider>) -> Self {
        SvidResolver {
            source,
            provider,
            cache: ArcSwapOption::empty(),
        }
    }

    /// The key for the source's current generation; built at most once per
    /// generation (concurrent handshakes at a change may both build it).
    fn current(&self) -> Option<Arc<CertifiedKey>> {
        let generation = self.source.generation();
        let cached = self.cache.load();
        if let Some(c) = cached.as_ref()
            && c.generation == generation
        {
            return c.key.clone();
        }
        let key = match self.source.x509_svid() {
            None => None,
            Some(svid) => match certified_key(&svid, &self.provider) {
                Ok(key) => Some(Arc::new(key)),
                Err(error) => {
                    // Keep the last good key rather than presenting nothing.
                    tracing::warn!(%error, spiffe_id = %svid.spiffe_id(), "cannot load SVID key; keeping the previous one");
                    cached.as_ref().and_then(|c| c.key.clone())
                }
            },
        };
        self.cache.store(Some(Arc::new(Cached {
            generation,
            key: key.clone(),
        })));
        key
    }
}

fn certified_key(
    svid: &X509Svid,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, rustls::Error> {
    let key = PrivateKeyDer::Pkcs8(svid.private_key().to_pkcs8_der());
    let signer = provider.key_provider.load_private_key(key)?;
    Ok(CertifiedKey::new(svid.chain().to_vec(), signer))
}

impl fmt::Debug for SvidResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SvidResolver")
            .field("generation", &self.source.generation())
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for SvidResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}

impl ResolvesClientCert for SvidResolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.current()
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// What both verifiers share: trust material, policy, signature algorithms
/// and where accepted identities are recorded for the connection.
pub(crate) struct PeerVerifier {
    svid: Arc<dyn SvidSource>,
    bundles: Arc<dyn BundleSource>,
    policy: TrustPolicy,
    algorithms: WebPkiSupportedAlgorithms,
    pub(crate) peers: Arc<VerifiedPeers>,
    /// Told the trust domain of a peer whose chain its bundle did not anchor.
    on_unknown_authority: Option<UnknownAuthorityHook>,
    /// Chains already verified against the current bundles.
    chains: VerifiedChains,
}

impl PeerVerifier {
    pub(crate) fn new(
        svid: Arc<dyn SvidSource>,
        bundles: Arc<dyn BundleSource>,
        policy: TrustPolicy,
        provider: &CryptoProvider,
        peers: Arc<VerifiedPeers>,
        chain_cache: usize,
    ) -> Self {
        PeerVerifier {
            svid,
            bundles,
            policy,
            algorithms: provider.signature_verification_algorithms,
            peers,
            on_unknown_authority: None,
            chains: VerifiedChains::new(chain_cache),
        }
    }

    /// Sets the hook told about peers of an admitted trust domain that its
    /// bundle (if any) does not anchor.
    pub(crate) fn with_unknown_authority_hook(
        mut self,
        hook: Option<UnknownAuthorityHook>,
    ) -> Self {
        self.on_unknown_authority = hook;
        self
    }

    /// Records an identity that passed verification and authorization.
    fn accept(&self, end_entity: &CertificateDer<'_>, peer: PeerIdentity) {
        self.peers.record(end_entity, peer);
    }

    /// Bundle by the peer's trust domain (if the policy admits it), chain
    /// validation, leaf rules: all inside `verify_x509_svid_full`, unless
    /// the same chain already passed them against the same bundles and its
    /// path is still valid (see `chain_cache`).
    fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<PeerIdentity, PeerRejected> {
        let set = self.bundles.bundle_set();
        let local = self.svid.x509_svid();
        let local_td = local.as_ref().map(|s| s.spiffe_id().trust_domain());
        let now = UNIX_EPOCH + Duration::from_secs(now.as_secs());
        let key = self
            .chains
            .enabled()
            .then(|| ChainKey::of(end_entity, intermediates));
        if let Some(peer) = key.and_then(|k| self.chains.get(&k, &set, local_td, now)) {
            return Ok(peer);
        }
        let lookup = AdmittedBundles {
            set: &set,
            policy: &self.policy,
            local: local_td,
        };
        let mut chain = Vec::with_capacity(intermediates.len() + 1);
        chain.push(end_entity.clone());
        chain.extend(intermediates.iter().cloned());
        let result = match verify_x509_svid_full(&chain, &lookup, now) {
            Ok(v) => Ok(v),
            Err(VerifyError::NoBundle { trust_domain })
                if !self.policy.admits(local_td, &trust_domain) =>
            {
                Err(match local_td {
                    None => PeerRejected::NoOwnSvid { trust_domain },
                    Some(_) => PeerRejected::TrustDomainNotAdmitted { trust_domain },
                })
            }
            Err(e) => Err(e.into()),
        };
        if let (
            Err(
                PeerRejected::Verify(VerifyError::NoBundle { trust_domain })
                | PeerRejected::Verify(VerifyError::Chain {
                    trust_domain,
                    source: webpki::Error::UnknownIssuer,
                }),
            ),
            Some(hook),
        ) = (&result, &self.on_unknown_authority)
        {
            hook(trust_domain);
        }
        if let (Ok(peer), Some(key)) = (&result, key) {
            self.chains.insert(key, &set, local_td, now, peer.clone());
        }
        result
    }
}

impl fmt::Debug for PeerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerVerifier")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// Maps a rejection to the rustls error that sends the peer the right alert.
pub(crate) fn to_rustls_error(rejected: PeerRejected) -> rustls::Error {
    use webpki::Error as W;
    tracing::debug!(error = %rejected, "peer certificate rejected");
    let e = match &rejected {
        PeerRejected::TrustDomainNotAdmitted { .. }
        | PeerRejected::NoOwnSvid { .. }
        | PeerRejected::Verify(VerifyError::NoBundle { .. }) => CertificateError::UnknownIssuer,
        PeerRejected::Unauthorized { .. } | PeerRejected::NoAuthorizerForTarget { .. } => {
            CertificateError::ApplicationVerificationFailure
        }
        PeerRejected::Verify(VerifyError::Svid(X509Error::Malformed { .. })) => {
            CertificateError::BadEncoding
        }
        PeerRejected::Verify(VerifyError::Chain { source, .. }) => match source {
            W::CertExpired { .. } => CertificateError::Expired,
            W::CertNotValidYet { .. } => CertificateError::NotValidYet,
            W::UnknownIssuer => CertificateError::UnknownIssuer,
            W::InvalidSignatureForPublicKey => CertificateError::BadSignature,
            W::BadDer | W::BadDerTime => CertificateError::BadEncoding,
            W::RequiredEkuNotFoundContext(_) => CertificateError::InvalidPurpose,
            _ => other(rejected),
        },
        _ => other(rejected),
    };
    rustls::Error::InvalidCertificate(e)
}

fn other(rejected: PeerRejected) -> CertificateError {
    CertificateError::Other(OtherError(Arc::new(rejected)))
}

/// Verifies client certificates on the server side.
#[derive(Debug)]
pub(crate) struct SpiffeClientVerifier {
    pub(crate) core: PeerVerifier,
    pub(crate) authorizer: DynAuthorizer,
    /// Whether a client may complete the handshake without a certificate.
    pub(crate) optional: bool,
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn client_auth_mandatory(&self) -> bool {
        !self.optional
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let v = self
            .core
            .verify(end_entity, intermediates, now)
            .map_err(to_rustls_error)?;
        if !self.authorizer.0.authorize(v.spiffe_id()) {
            return Err(to_rustls_error(PeerRejected::Unauthorized {
                peer: v.spiffe_id().clone(),
                authorizer: self.authorizer.0.describe(),
            }));
        }
        self.core.accept(end_entity, v);
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.core.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.core.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.core.algorithms.supported_schemes()
    }
}

/// How the client decides whether the server it reached may serve it.
#[derive(Debug)]
pub(crate) enum ServerAuthorization {
    /// One authorizer for every target.
    All(DynAuthorizer),
    /// An authorizer per server name; unknown names are refused.
    PerTarget(TargetAuthorizers),
}

/// Verifies server certificates on the client side; never checks DNS names.
#[derive(Debug)]
pub(crate) struct SpiffeServerVerifier {
    pub(crate) core: PeerVerifier,
    pub(crate) authorization: ServerAuthorization,
}

impl SpiffeServerVerifier {
    /// Applies the authorizer for `server_name` to a verified server. The
    /// name is rendered only to pick a per-target authorizer (an IP
    /// address renders into a new string).
    fn authorize(
        &self,
        server_name: &ServerName<'_>,
        v: PeerIdentity,
    ) -> Result<PeerIdentity, PeerRejected> {
        let authorizer: &dyn Authorizer = match &self.authorization {
            ServerAuthorization::All(a) => a.0.as_ref(),
            ServerAuthorization::PerTarget(targets) => {
                let name = server_name.to_str();
                targets
                    .get(&name)
                    .ok_or_else(|| PeerRejected::NoAuthorizerForTarget {
                        server_name: name.into_owned(),
                    })?
            }
        };
        if authorizer.authorize(v.spiffe_id()) {
            Ok(v)
        } else {
            Err(PeerRejected::Unauthorized {
                peer: v.spiffe_id().clone(),
                authorizer: authorizer.describe(),
            })
        }
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let checked = self
            .core
            .verify(end_entity, intermediates, now)
            .and_then(|v| self.authorize(server_name, v));
        let v = match checked {
            Ok(v) => v,
            Err(rejected) => {
                // Kept for the connector's error: the alert carries no detail.
                self.core
                    .peers
                    .reject(&server_name.to_str(), rejected.clone());
                return Err(to_rustls_error(rejected));
            }
        };
        self.core.accept(end_entity, v);
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.core.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.core.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.core.algorithms.supported_schemes()
    }
}

#[cfg(test)]
#[path = "rustls_impls_tests.rs"]
mod tests;
