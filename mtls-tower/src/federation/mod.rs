//! SPIFFE federation (feature `federation`): publish a trust domain's
//! bundle, and trust other trust domains through their bundle endpoints.
//!
//! - [`BundleEndpoint`]: a Tower service answering `GET` with the current
//!   bundle (FED-1, WEB-5, SPF-4), served over HTTPS by [`serve`] with
//!   [`EndpointTls::https_web`] (a PEM certificate, reloaded on change) or
//!   [`EndpointTls::https_spiffe`] (the server's own SVID).
//! - [`Federation`]: the relationships of one workload. [`Federation::trust`]
//!   configures one explicitly (FED-4: trust domain, [`BundleUrl`], profile
//!   in [`Endpoint`]) and returns its [`Fetcher`], whose
//!   [`Fetcher::run`] future polls the endpoint. Accepted bundles land in
//!   [`FederatedBundles`], the source to give to
//!   [`crate::ServerConfigBuilder`] / [`crate::ClientConfigBuilder`]
//!   together with a [`crate::TrustPolicy`] naming the federated trust
//!   domains.
//!
//! A fetched bundle is refused, logged with its reason, counted in
//! [`FetchStatus::refused`], and the last good bundle kept, when: the
//! server's certificate is not valid for the profile (`https_web`: webpki
//! against the configured roots and the URL's host; `https_spiffe`: an
//! X509-SVID of the endpoint trust domain's latest bundle with exactly the
//! configured ID); the status is not 2xx; the body is larger than allowed,
//! not a bundle, repeats a key, or has an authority naming another trust
//! domain; or `spiffe_sequence` goes back. Redirects are followed a few
//! times, each target checked like the configured URL, and never
//! remembered.
//!
//! Beyond SPIRE: when a peer of a federated trust domain presents a chain
//! the stored bundle does not anchor (the other side may have rotated its
//! roots since the last poll), [`Federation::unknown_authority_hook`]
//! given to the config builders makes that relationship refetch at once,
//! rate-limited ([`Fetcher::refresh_now`]).
//!
//! ```no_run
//! # async fn demo(
//! #     svids: std::sync::Arc<spiffe_core::MemorySvidSource>,
//! #     local: std::sync::Arc<spiffe_core::MemoryBundleSource>,
//! #     partner_bundle_json: Vec<u8>,
//! # ) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use mtls_tower::federation::{Endpoint, EndpointTrust, Federation};
//! use mtls_tower::{ServerConfigBuilder, TrustPolicy, authorizer};
//!
//! let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
//! let partner_org: spiffe_core::TrustDomain = "partner.org".parse()?;
//! let federation = Federation::new(provider.clone(), local);
//! let partner = federation.trust(
//!     partner_org.clone(),
//!     Endpoint::https_spiffe(
//!         "https://bundles.partner.org:8443/".parse()?,
//!         "spiffe://partner.org/spire/server".parse()?,
//!         EndpointTrust::initial_json(partner_bundle_json),
//!     ),
//! )?;
//! tokio::spawn(partner.clone().run());
//!
//! let config = ServerConfigBuilder::new(
//!     provider,
//!     svids,
//!     federation.bundles(),
//!     authorizer::member_of([partner_org.clone()]),
//! )
//! .trust_policy(TrustPolicy::local_only().with_federated([partner_org]))
//! .on_unknown_authority(federation.unknown_authority_hook())
//! .build()?;
//! # let _ = config;
//! # Ok(()) }
//! ```

mod bundles;
mod endpoint;
mod error;
mod fetch;
mod fetcher;
mod relationship;
mod serve;
mod serving_cert;
mod validate;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use rustls::ClientConfig;
use rustls::crypto::CryptoProvider;
use spiffe_core::{
    MemorySvidSource, SpiffeBundle, SpiffeId, TrustDomain, X509AuthoritySource, X509Bundle,
};

pub use bundles::FederatedBundles;
pub use endpoint::{BundleEndpoint, CurrentBundle, DEFAULT_REFRESH_HINT};
pub use error::{
    DuplicateKey, FederationError, FetchError, FetchErrorKind, ServingFileProblem, UrlError,
};
pub use fetcher::{FetchStatus, Fetcher};
pub use relationship::{BundleUrl, Endpoint, EndpointTrust, FetchOptions};
pub use serve::{EndpointTls, serve};

use fetch::EndpointClient;
use relationship::{InitialBundle, Profile, TrustKind};

use crate::trust::UnknownAuthorityHook;
use crate::{ClientConfigBuilder, TrustPolicy};

/// The federation relationships of one workload and the bundles they
/// maintain. Cheap to clone: clones share the relationships.
#[derive(Clone)]
pub struct Federation {
    provider: Arc<CryptoProvider>,
    bundles: FederatedBundles,
    relationships: Arc<Mutex<HashMap<TrustDomain, Fetcher>>>,
}

impl Federation {
    /// A federation over the workload's local bundles (its own trust
    /// domain's, from the Workload API or a file), with no relationship.
    pub fn new(provider: Arc<CryptoProvider>, local: impl X509AuthoritySource) -> Self {
        Federation {
            provider,
            bundles: FederatedBundles::new(local),
            relationships: Arc::default(),
        }
    }

    /// The local bundles plus every relationship's latest bundle, each
    /// under its own trust domain: the source for the TLS configs.
    pub fn bundles(&self) -> FederatedBundles {
        self.bundles.clone()
    }

    /// Trusts `trust_domain` through `endpoint`: returns the relationship's
    /// [`Fetcher`]; spawn [`Fetcher::run`] to keep the bundle current.
    ///
    /// For a self-serving `https_spiffe` endpoint the initial bundle is
    /// stored at once (it authenticates the first fetch, and the trust
    /// domain's peers until then); later fetches are authenticated with
    /// the latest fetched bundle (SPF-2).
    pub fn trust(
        &self,
        trust_domain: TrustDomain,
        endpoint: Endpoint,
    ) -> Result<Fetcher, FederationError> {
        let mut relationships = self.lock();
        if relationships.contains_key(&trust_domain) {
            return Err(FederationError::DuplicateRelationship { trust_domain });
        }
        let (client, initial) = match &endpoint.profile {
            Profile::Web { roots } => (self.web_client(roots.clone())?, None),
            Profile::Spiffe { endpoint_id, trust } => {
                self.spiffe_client(&trust_domain, endpoint_id, trust)?
            }
        };
        if let Some(bundle) = initial {
            self.bundles.store(bundle);
        }
        let fetcher = Fetcher::new(
            trust_domain.clone(),
            endpoint.url,
            endpoint.options,
            client,
            self.bundles.clone(),
        );
        tracing::info!(trust_domain = %trust_domain, url = %fetcher.status().url, "federation relationship added");
        relationships.insert(trust_domain, fetcher.clone());
        Ok(fetcher)
    }

    /// Ends the relationship with `trust_domain` (FED-10): its fetcher
    /// stops, and its bundle leaves [`Federation::bundles`], so the next
    /// handshake from that trust domain fails. Returns whether there was one.
    pub fn remove(&self, trust_domain: &TrustDomain) -> bool {
        let Some(fetcher) = self.lock().remove(trust_domain) else {
            return false;
        };
        fetcher.remove();
        tracing::info!(trust_domain = %trust_domain, "federation relationship removed");
        true
    }

    /// The fetcher of the relationship with `trust_domain`.
    pub fn fetcher(&self, trust_domain: &TrustDomain) -> Option<Fetcher> {
        self.lock().get(trust_domain).cloned()
    }

    /// A hook for [`crate::ServerConfigBuilder::on_unknown_authority`] /
    /// [`crate::ClientConfigBuilder::on_unknown_authority`]: a peer of a
    /// federated trust domain whose chain the stored bundle does not anchor
    /// makes that relationship refetch early ([`Fetcher::refresh_now`],
    /// rate-limited). Trust domains without a relationship are ignored.
    pub fn unknown_authority_hook(&self) -> UnknownAuthorityHook {
        let relationships = Arc::downgrade(&self.relationships);
        Arc::new(move |td: &TrustDomain| {
            let Some(relationships) = relationships.upgrade() else {
                return;
            };
            let fetcher = relationships
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(td)
                .cloned();
            if let Some(f) = fetcher
                && f.refresh_now()
            {
                tracing::info!(trust_domain = %td, "peer chain not anchored by the federated bundle; refetching");
            }
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TrustDomain, Fetcher>> {
        self.relationships
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn web_client(
        &self,
        roots: Arc<rustls::RootCertStore>,
    ) -> Result<EndpointClient, FederationError> {
        let mut config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(EndpointClient {
            tls: Arc::new(config),
            endpoint_id: None,
        })
    }

    /// The client that authenticates an `https_spiffe` endpoint with the
    /// crate's own SPIFFE server verifier, and the initial bundle to store.
    fn spiffe_client(
        &self,
        trust_domain: &TrustDomain,
        endpoint_id: &SpiffeId,
        trust: &EndpointTrust,
    ) -> Result<(EndpointClient, Option<SpiffeBundle>), FederationError> {
        let endpoint_td = endpoint_id.trust_domain().clone();
        let self_serving = &endpoint_td == trust_domain;
        let (source, initial): (Arc<dyn X509AuthoritySource>, _) = match (&trust.0, self_serving) {
            (TrustKind::Initial(initial), true) => (
                Arc::new(self.bundles.clone()),
                Some(initial_bundle(trust_domain, initial)?),
            ),
            (TrustKind::Initial(_), false) => {
                return Err(FederationError::NotSelfServing {
                    endpoint_id: endpoint_id.clone(),
                    trust_domain: trust_domain.clone(),
                });
            }
            (_, true) => {
                return Err(FederationError::InitialBundleRequired {
                    endpoint_id: endpoint_id.clone(),
                });
            }
            (TrustKind::Source(source), false) => (source.clone(), None),
            (TrustKind::Federation, false) => (Arc::new(self.bundles.clone()), None),
        };
        // Record an ID the authorizer refuses, to report it (SPF-3).
        let refused = Arc::new(Mutex::new(None));
        let expected = endpoint_id.clone();
        let seen = refused.clone();
        let authorizer = move |peer: &SpiffeId| {
            if peer == &expected {
                return true;
            }
            *seen.lock().unwrap_or_else(PoisonError::into_inner) = Some(peer.clone());
            false
        };
        let config = ClientConfigBuilder::new(
            self.provider.clone(),
            MemorySvidSource::empty(),
            source,
            authorizer,
        )
        .trust_policy(TrustPolicy::local_only().with_federated([endpoint_td]))
        .alpn_protocols(vec![b"http/1.1".to_vec()])
        .enable_tls12()
        .build()?;
        Ok((
            EndpointClient {
                tls: config.rustls().clone(),
                endpoint_id: Some((endpoint_id.clone(), refused)),
            },
            initial,
        ))
    }
}

fn initial_bundle(
    td: &TrustDomain,
    initial: &InitialBundle,
) -> Result<SpiffeBundle, FederationError> {
    let bundle = match initial {
        InitialBundle::Bundle(b) => {
            if b.trust_domain() != td {
                return Err(FederationError::InitialBundleTrustDomain {
                    expected: td.clone(),
                    found: b.trust_domain().clone(),
                });
            }
            b.clone()
        }
        InitialBundle::Json(doc) => SpiffeBundle::parse(td.clone(), doc)?,
        InitialBundle::Pem(pem) => SpiffeBundle::from_x509(X509Bundle::from_pem(td.clone(), pem)?),
    };
    Ok(bundle)
}

impl fmt::Debug for Federation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut tds: Vec<_> = self.lock().keys().cloned().collect();
        tds.sort();
        f.debug_struct("Federation")
            .field("relationships", &tds)
            .finish_non_exhaustive()
    }
}
