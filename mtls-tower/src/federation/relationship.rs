//! How one federation relationship is configured (FED-4): the bundle
//! endpoint's URL, its profile, and the trust domain the fetched bundle is
//! bound to, all explicit.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use rustls::RootCertStore;
use spiffe_core::{SpiffeBundle, SpiffeId, X509AuthoritySource};

use super::error::UrlError;

/// A bundle endpoint URL that satisfies WEB-1 / SPF-1: scheme `https`, a
/// host, no userinfo. Checked when parsed, so a relationship can only be
/// configured with one.
///
/// ```
/// use mtls_tower::federation::BundleUrl;
/// assert!("https://bundles.partner.org/bundle".parse::<BundleUrl>().is_ok());
/// assert!("http://bundles.partner.org/bundle".parse::<BundleUrl>().is_err());
/// assert!("https://user:pw@bundles.partner.org/".parse::<BundleUrl>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct BundleUrl {
    uri: Uri,
}

impl BundleUrl {
    /// The host, without IPv6 brackets.
    pub fn host(&self) -> &str {
        let h = self.uri.host().unwrap_or_default();
        h.strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(h)
    }

    /// The port (443 unless the URL names one).
    pub fn port(&self) -> u16 {
        self.uri.port_u16().unwrap_or(443)
    }

    /// The authority as written (host and optional port), for `Host`.
    pub(crate) fn authority(&self) -> &str {
        self.uri.authority().map(|a| a.as_str()).unwrap_or_default()
    }

    /// The path and query (`/` when empty).
    pub(crate) fn path_and_query(&self) -> &str {
        self.uri
            .path_and_query()
            .map(|p| p.as_str())
            .filter(|p| !p.is_empty())
            .unwrap_or("/")
    }

    /// Resolves a `Location` header against this URL; the result must be a
    /// valid bundle endpoint URL itself (WEB-6, SPF-5).
    pub(crate) fn redirect(&self, location: &str) -> Result<BundleUrl, UrlError> {
        if location.starts_with('/') && !location.starts_with("//") {
            return format!("https://{}{}", self.authority(), location).parse();
        }
        location.parse()
    }
}

impl FromStr for BundleUrl {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<Self, UrlError> {
        let uri: Uri = s.parse().map_err(|_| UrlError::Invalid)?;
        if uri.scheme_str() != Some("https") {
            return Err(UrlError::NotHttps);
        }
        let authority = uri.authority().ok_or(UrlError::NoHost)?;
        if authority.as_str().contains('@') {
            return Err(UrlError::UserInfo);
        }
        if authority.host().is_empty() {
            return Err(UrlError::NoHost);
        }
        Ok(BundleUrl { uri })
    }
}

impl fmt::Display for BundleUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.uri.fmt(f)
    }
}

impl fmt::Debug for BundleUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BundleUrl({})", self.uri)
    }
}

/// A bundle endpoint and how to authenticate it: the profile is chosen
/// explicitly, never inferred or tried with fallback (FED-4).
#[derive(Clone)]
pub struct Endpoint {
    pub(crate) url: BundleUrl,
    pub(crate) profile: Profile,
    pub(crate) options: FetchOptions,
}

#[derive(Clone)]
pub(crate) enum Profile {
    Web {
        roots: Arc<RootCertStore>,
    },
    Spiffe {
        endpoint_id: SpiffeId,
        trust: EndpointTrust,
    },
}

impl Endpoint {
    /// Profile `https_web`: the server certificate is validated with webpki
    /// against `roots` and the URL's host (WEB-7).
    ///
    /// There are no built-in system roots: this crate does not depend on
    /// `webpki-roots` or `rustls-native-certs`. Load the roots you trust
    /// (for instance with `rustls-native-certs`) into the store.
    pub fn https_web(url: BundleUrl, roots: Arc<RootCertStore>) -> Self {
        Endpoint {
            url,
            profile: Profile::Web { roots },
            options: FetchOptions::default(),
        }
    }

    /// Profile `https_spiffe`: the server must present an X509-SVID valid
    /// for the bundle of its trust domain whose ID is `endpoint_id`
    /// (SPF-3); `trust` says where that bundle comes from (SPF-2).
    pub fn https_spiffe(url: BundleUrl, endpoint_id: SpiffeId, trust: EndpointTrust) -> Self {
        Endpoint {
            url,
            profile: Profile::Spiffe { endpoint_id, trust },
            options: FetchOptions::default(),
        }
    }

    /// Replaces the fetch options.
    pub fn options(mut self, options: FetchOptions) -> Self {
        self.options = options;
        self
    }

    /// The configured URL.
    pub fn url(&self) -> &BundleUrl {
        &self.url
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Endpoint");
        d.field("url", &self.url);
        match &self.profile {
            Profile::Web { roots } => d
                .field("profile", &"https_web")
                .field("roots", &roots.len()),
            Profile::Spiffe { endpoint_id, trust } => d
                .field("profile", &"https_spiffe")
                .field("endpoint_id", endpoint_id)
                .field("trust", trust),
        };
        d.field("options", &self.options).finish()
    }
}

/// Where the bundle that authenticates an `https_spiffe` endpoint comes
/// from (SPF-2).
#[derive(Clone)]
pub struct EndpointTrust(pub(crate) TrustKind);

#[derive(Clone)]
pub(crate) enum TrustKind {
    /// Self-serving: the endpoint's trust domain is the one fetched. Used
    /// for the first connection and as the first stored bundle; later
    /// connections use the most recently fetched bundle.
    Initial(InitialBundle),
    /// Not self-serving: the endpoint trust domain's bundle from this
    /// source (read per connection).
    Source(Arc<dyn X509AuthoritySource>),
    /// Not self-serving: the endpoint trust domain's bundle from the same
    /// [`crate::federation::Federation`] (another relationship).
    Federation,
}

#[derive(Clone)]
pub(crate) enum InitialBundle {
    Bundle(SpiffeBundle),
    Json(Vec<u8>),
    Pem(Vec<u8>),
}

impl EndpointTrust {
    /// Self-serving, with the initial bundle already parsed; its trust
    /// domain must be the relationship's.
    pub fn initial_bundle(bundle: SpiffeBundle) -> Self {
        EndpointTrust(TrustKind::Initial(InitialBundle::Bundle(bundle)))
    }

    /// Self-serving, with the initial bundle as a SPIFFE bundle document;
    /// parsed when the relationship is added.
    pub fn initial_json(document: impl Into<Vec<u8>>) -> Self {
        EndpointTrust(TrustKind::Initial(InitialBundle::Json(document.into())))
    }

    /// Self-serving, with the initial X.509 authorities as PEM
    /// certificates; parsed when the relationship is added.
    pub fn initial_pem(pem: impl Into<Vec<u8>>) -> Self {
        EndpointTrust(TrustKind::Initial(InitialBundle::Pem(pem.into())))
    }

    /// Not self-serving: the endpoint's trust domain bundle is taken, per
    /// connection, from `source` (its latest bundle).
    pub fn through_source(source: impl X509AuthoritySource) -> Self {
        EndpointTrust(TrustKind::Source(Arc::new(source)))
    }

    /// Not self-serving: the endpoint's trust domain bundle is the one the
    /// same federation holds (another relationship, or the local bundles).
    pub fn through_federation() -> Self {
        EndpointTrust(TrustKind::Federation)
    }
}

impl fmt::Debug for EndpointTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match &self.0 {
            TrustKind::Initial(_) => "EndpointTrust::Initial",
            TrustKind::Source(_) => "EndpointTrust::Source",
            TrustKind::Federation => "EndpointTrust::Federation",
        })
    }
}

/// Bounds and timing of fetches.
///
/// The poll interval is a quarter of the stored bundle's
/// `spiffe_refresh_hint` (as SPIRE does: FED-8 asks for the hint, polling
/// faster makes new keys arrive well inside their 3–5 hint lead, FED-7),
/// or [`FetchOptions::default_interval`] (5 minutes) when the bundle has no
/// hint; never below [`FetchOptions::floor`] (1 minute). After a failure
/// the next attempt waits the same interval (FED-8: no aggressive retry).
#[derive(Debug, Clone)]
pub struct FetchOptions {
    pub(crate) floor: Duration,
    pub(crate) default_interval: Duration,
    pub(crate) timeout: Duration,
    pub(crate) max_body: usize,
    pub(crate) max_redirects: usize,
    pub(crate) nudge_min_interval: Duration,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            floor: Duration::from_secs(60),
            default_interval: Duration::from_secs(300),
            timeout: Duration::from_secs(10),
            max_body: 1 << 20,
            max_redirects: 3,
            nudge_min_interval: Duration::from_secs(10),
        }
    }
}

impl FetchOptions {
    /// The shortest poll interval (default 1 minute).
    pub fn floor(mut self, floor: Duration) -> Self {
        self.floor = floor;
        self
    }

    /// The poll interval when the bundle has no refresh hint (default 5
    /// minutes).
    pub fn default_interval(mut self, interval: Duration) -> Self {
        self.default_interval = interval;
        self
    }

    /// The bound on one fetch, redirects included (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The largest accepted body (default 1 MiB).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// How many redirects one fetch follows (default 3).
    pub fn max_redirects(mut self, n: usize) -> Self {
        self.max_redirects = n;
        self
    }

    /// The shortest time between two early refetches asked for by
    /// [`crate::federation::Fetcher::refresh_now`] (default 10 s).
    pub fn refresh_now_min_interval(mut self, interval: Duration) -> Self {
        self.nudge_min_interval = interval;
        self
    }

    /// The poll interval for a stored bundle with `refresh_hint`.
    pub(crate) fn interval(&self, refresh_hint: Option<Duration>) -> Duration {
        match refresh_hint {
            Some(hint) => hint / 4,
            None => self.default_interval,
        }
        .max(self.floor)
    }
}
