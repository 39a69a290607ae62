//! Fetching `jwksUri` documents (RA-2) and the cache the engine reads.
//!
//! A jwtRule with neither `jwks` nor `jwksUri` finds its keys by OIDC
//! discovery (RA-2): its key source is the issuer's
//! `/.well-known/openid-configuration`, whose `jwks_uri` names the key set.
//! The fetcher follows that link; the cache keeps the set under the
//! discovery URI, so the rest of the engine treats both alike.
//!
//! Nothing runs in the background on its own: [`JwksFetcher::refresh`]
//! fetches once, and [`JwksFetcher::run`] is a future the caller spawns (and
//! can observe). A failed refresh keeps the last good key set; a URI that
//! never loaded has no keys, so tokens for it fail with 401 while token-less
//! requests pass, as RA-2 describes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::JwkSet;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// The path of an OIDC discovery document under its issuer.
const OIDC_DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

/// The OIDC discovery URI of `issuer` (RA-2: a rule with neither `jwks` nor
/// `jwksUri`).
pub(crate) fn discovery_uri(issuer: &str) -> String {
    format!("{}{OIDC_DISCOVERY_PATH}", issuer.trim_end_matches('/'))
}

/// The `jwks_uri` of an OIDC discovery document.
fn discovered_jwks_uri(body: &[u8]) -> Option<String> {
    let doc: serde_json::Value = serde_json::from_slice(body).ok()?;
    doc.get("jwks_uri")?.as_str().map(str::to_owned)
}

/// Key sets by `jwksUri`, swapped atomically; readers take no lock.
#[derive(Debug, Default)]
pub struct JwksCache {
    sets: ArcSwap<HashMap<String, Arc<JwkSet>>>,
}

impl JwksCache {
    /// An empty cache.
    pub fn new() -> Self {
        JwksCache::default()
    }

    pub(crate) fn get(&self, uri: &str) -> Option<Arc<JwkSet>> {
        self.sets.load().get(uri).cloned()
    }

    /// Whether a key set for `uri` has been loaded.
    pub fn contains(&self, uri: &str) -> bool {
        self.sets.load().contains_key(uri)
    }

    fn store(&self, uri: &str, set: JwkSet) {
        self.sets.rcu(|old| {
            let mut next = HashMap::clone(old);
            next.insert(uri.to_owned(), Arc::new(set.clone()));
            next
        });
    }
}

/// Why fetching a JWKS failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwksFetchError {
    /// The URI is not an absolute `http`/`https` URI with a host.
    #[error("`{uri}` is not an http(s) URI with a host")]
    BadUri {
        /// The URI.
        uri: String,
    },
    /// TCP connect or TLS handshake failed.
    #[error("cannot connect to `{uri}`: {source}")]
    Connect {
        /// The URI.
        uri: String,
        /// The I/O or TLS error.
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("HTTP error fetching `{uri}`: {source}")]
    Http {
        /// The URI.
        uri: String,
        /// The hyper error.
        source: hyper::Error,
    },
    /// The server answered with a non-200 status.
    #[error("`{uri}` answered {status}")]
    Status {
        /// The URI.
        uri: String,
        /// The HTTP status.
        status: u16,
    },
    /// The body was larger than 1 MiB or could not be read.
    #[error("`{uri}`: response body too large or unreadable")]
    Body {
        /// The URI.
        uri: String,
    },
    /// An OIDC discovery document has no `jwks_uri`.
    #[error("`{uri}` did not return an OIDC discovery document with a jwks_uri")]
    NotDiscovery {
        /// The discovery URI.
        uri: String,
    },
    /// An OIDC discovery document names a `jwks_uri` that is not `https`.
    #[error("`{uri}` names jwks_uri `{jwks_uri}`, which is not https; refused")]
    InsecureJwksUri {
        /// The discovery URI.
        uri: String,
        /// The `jwks_uri` it named.
        jwks_uri: String,
    },
    /// The body is not a JWKS document.
    #[error("`{uri}` did not return a JWKS document")]
    NotJwks {
        /// The URI.
        uri: String,
    },
    /// No answer within the timeout.
    #[error("fetching `{uri}` timed out after {timeout:?}")]
    Timeout {
        /// The URI.
        uri: String,
        /// The timeout that expired.
        timeout: Duration,
    },
}

/// Fetches JWKS documents over HTTPS (or plain HTTP when the URI says so)
/// into a [`JwksCache`].
#[derive(Clone)]
pub struct JwksFetcher {
    cache: Arc<JwksCache>,
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
    refresh_every: Duration,
}

impl std::fmt::Debug for JwksFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksFetcher")
            .field("timeout", &self.timeout)
            .field("refresh_every", &self.refresh_every)
            .finish_non_exhaustive()
    }
}

impl JwksFetcher {
    /// A fetcher using `tls` (the caller chooses roots and the crypto
    /// provider); 5 s timeout and 5 min refresh, as Istio's defaults.
    pub fn new(cache: Arc<JwksCache>, tls: Arc<rustls::ClientConfig>) -> Self {
        JwksFetcher {
            cache,
            tls,
            timeout: Duration::from_secs(5),
            refresh_every: Duration::from_secs(300),
        }
    }

    /// Sets the per-fetch timeout.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the refresh interval used by [`JwksFetcher::run`].
    #[must_use]
    pub fn refresh_every(mut self, every: Duration) -> Self {
        self.refresh_every = every;
        self
    }

    /// Fetches every URI once; successes replace the cached set, failures
    /// keep the last good one and are returned.
    pub async fn refresh(&self, uris: &[String]) -> Vec<JwksFetchError> {
        let mut errors = Vec::new();
        for uri in uris {
            match self.fetch(uri).await {
                Ok(set) => self.cache.store(uri, set),
                Err(e) => errors.push(e),
            }
        }
        errors
    }

    /// Refreshes forever; after a failed round it retries sooner (1 s,
    /// doubling, capped at the refresh interval). `on_error` sees each failure.
    pub async fn run(self, uris: Vec<String>, on_error: impl Fn(&JwksFetchError)) {
        let mut retry = Duration::from_secs(1);
        loop {
            let errors = self.refresh(&uris).await;
            errors.iter().for_each(&on_error);
            let wait = if errors.is_empty() {
                retry = Duration::from_secs(1);
                self.refresh_every
            } else {
                let wait = retry.min(self.refresh_every);
                retry = (retry * 2).min(self.refresh_every);
                wait
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Fetches and parses one JWKS document.
    pub async fn fetch(&self, uri: &str) -> Result<JwkSet, JwksFetchError> {
        match tokio::time::timeout(self.timeout, self.fetch_inner(uri)).await {
            Ok(result) => result,
            Err(_) => Err(JwksFetchError::Timeout {
                uri: uri.to_owned(),
                timeout: self.timeout,
            }),
        }
    }

    /// Fetches a JWKS; for a discovery URI, first the discovery document,
    /// then the key set it names.
    async fn fetch_inner(&self, uri: &str) -> Result<JwkSet, JwksFetchError> {
        let mut body = self.get(uri).await?;
        let mut jwks_uri = uri.to_owned();
        if uri.ends_with(OIDC_DISCOVERY_PATH) {
            jwks_uri = discovered_jwks_uri(&body).ok_or_else(|| JwksFetchError::NotDiscovery {
                uri: uri.to_owned(),
            })?;
            // The discovery document names where the keys are; a plain
            // `http` link there would let anyone on the path swap them.
            if !jwks_uri
                .get(..8)
                .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
            {
                return Err(JwksFetchError::InsecureJwksUri {
                    uri: uri.to_owned(),
                    jwks_uri,
                });
            }
            body = self.get(&jwks_uri).await?;
        }
        serde_json::from_slice(&body).map_err(|_| JwksFetchError::NotJwks { uri: jwks_uri })
    }

    /// One GET, returning the body of a 200 answer.
    async fn get(&self, uri: &str) -> Result<Bytes, JwksFetchError> {
        let bad = || JwksFetchError::BadUri {
            uri: uri.to_owned(),
        };
        let parsed: http::Uri = uri.parse().map_err(|_| bad())?;
        let https = match parsed.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad()),
        };
        let authority = parsed.authority().ok_or_else(bad)?.clone();
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let connect_err = |source| JwksFetchError::Connect {
            uri: uri.to_owned(),
            source,
        };
        let tcp = TcpStream::connect((host, port))
            .await
            .map_err(connect_err)?;
        let path = parsed
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str);
        let request = http::Request::get(path)
            .header(http::header::HOST, authority.as_str())
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .map_err(|_| bad())?;
        let body = if https {
            let name = ServerName::try_from(host.to_owned()).map_err(|_| bad())?;
            let tls = tokio_rustls::TlsConnector::from(Arc::clone(&self.tls))
                .connect(name, tcp)
                .await
                .map_err(connect_err)?;
            exchange(uri, tls, request).await?
        } else {
            exchange(uri, tcp, request).await?
        };
        Ok(body)
    }
}

/// One HTTP/1.1 request on `io`, driving the connection in this future.
async fn exchange<IO>(
    uri: &str,
    io: IO,
    request: http::Request<Empty<Bytes>>,
) -> Result<Bytes, JwksFetchError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let http_err = |source| JwksFetchError::Http {
        uri: uri.to_owned(),
        source,
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(http_err)?;
    let response = async {
        let resp = sender.send_request(request).await.map_err(http_err)?;
        if resp.status() != http::StatusCode::OK {
            return Err(JwksFetchError::Status {
                uri: uri.to_owned(),
                status: resp.status().as_u16(),
            });
        }
        Limited::new(resp.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map(http_body_util::Collected::to_bytes)
            .map_err(|_| JwksFetchError::Body {
                uri: uri.to_owned(),
            })
    };
    tokio::pin!(response);
    tokio::pin!(conn);
    let mut conn_done = false;
    loop {
        tokio::select! {
            result = &mut response => return result,
            done = &mut conn, if !conn_done => {
                conn_done = true;
                done.map_err(http_err)?;
            }
        }
    }
}
