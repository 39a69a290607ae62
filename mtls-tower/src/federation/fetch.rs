//! One fetch of a bundle endpoint: GET over TLS, redirects re-checked and
//! never remembered, bounded in size and time.

use std::io;
use std::pin::pin;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use spiffe_core::SpiffeId;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::error::FetchError;
use super::relationship::{BundleUrl, FetchOptions};

/// How the TLS client authenticates the endpoint, built once per
/// relationship. The same config serves the configured URL and every
/// redirect target (WEB-6: same TLS rules; SPF-5: same SPIFFE ID).
pub(crate) struct EndpointClient {
    pub(crate) tls: Arc<ClientConfig>,
    /// For `https_spiffe`: the configured ID, and the last other ID the
    /// authorizer refused (written during the handshake).
    pub(crate) endpoint_id: Option<(SpiffeId, Arc<Mutex<Option<SpiffeId>>>)>,
}

impl EndpointClient {
    /// GETs the configured URL, following up to `max_redirects` redirects,
    /// within `timeout`. Returns the body of the 2xx answer.
    pub(crate) async fn fetch(
        &self,
        url: &BundleUrl,
        options: &FetchOptions,
    ) -> Result<Bytes, FetchError> {
        tokio::time::timeout(options.timeout, self.follow(url, options))
            .await
            .map_err(|_| FetchError::Timeout(options.timeout))?
    }

    async fn follow(&self, url: &BundleUrl, options: &FetchOptions) -> Result<Bytes, FetchError> {
        let mut current = url.clone();
        let mut redirects = 0;
        loop {
            match self.get(&current, options).await? {
                Answer::Body(body) => return Ok(body),
                Answer::Redirect(location) => {
                    if redirects == options.max_redirects {
                        return Err(FetchError::TooManyRedirects(options.max_redirects));
                    }
                    redirects += 1;
                    let next = current.redirect(&location).map_err(FetchError::Redirect)?;
                    tracing::debug!(from = %current, to = %next, "following bundle endpoint redirect");
                    current = next;
                }
            }
        }
    }

    async fn get(&self, url: &BundleUrl, options: &FetchOptions) -> Result<Answer, FetchError> {
        let tcp = TcpStream::connect((url.host(), url.port()))
            .await
            .map_err(FetchError::Connect)?;
        let name = ServerName::try_from(url.host().to_owned())
            .map_err(|e| FetchError::Connect(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
        if let Some((_, refused)) = &self.endpoint_id {
            *refused.lock().unwrap_or_else(PoisonError::into_inner) = None;
        }
        let tls = match TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
        {
            Ok(tls) => tls,
            Err(e) => return Err(self.tls_error(e)),
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        let request = Request::get(url.path_and_query())
            .header(header::HOST, url.authority())
            .header(header::ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .expect("path and authority come from a parsed URI, so the request is valid");
        let exchange = async {
            let response = sender.send_request(request).await?;
            let status = response.status();
            if status.is_redirection() {
                let location = response
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .map(str::to_owned);
                return match location {
                    Some(l) => Ok(Answer::Redirect(l)),
                    None => Err(FetchError::Status(status)),
                };
            }
            if !status.is_success() {
                return Err(FetchError::Status(status));
            }
            let body = Limited::new(response.into_body(), options.max_body)
                .collect()
                .await
                .map_err(|e| match e.downcast::<hyper::Error>() {
                    Ok(e) => FetchError::Http(*e),
                    Err(_) => FetchError::TooLarge(options.max_body),
                })?;
            Ok(Answer::Body(body.to_bytes()))
        };
        let mut exchange = pin!(exchange);
        let mut conn = pin!(conn);
        tokio::select! {
            biased;
            answer = &mut exchange => answer,
            done = &mut conn => {
                done?;
                exchange.await
            }
        }
    }

    /// Tells a refused endpoint ID apart from other TLS failures.
    fn tls_error(&self, e: io::Error) -> FetchError {
        if let Some((expected, refused)) = &self.endpoint_id
            && let Some(presented) = refused
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
        {
            return FetchError::WrongEndpointId {
                expected: expected.clone(),
                presented,
            };
        }
        FetchError::Tls(e)
    }
}

enum Answer {
    Body(Bytes),
    Redirect(String),
}
