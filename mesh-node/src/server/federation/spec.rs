//! A relationship's [`RelationshipSpec`]: into the library's [`Endpoint`],
//! from the configuration file, and into the admin API's view; and the
//! fetch counters.

use std::path::PathBuf;
use std::sync::Arc;

use mtls_tower::federation::{BundleUrl, Endpoint, EndpointTrust, FetchOptions, FetchStatus};
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use spiffe_core::{SpiffeBundle, SpiffeId, TrustDomain, X509Bundle};
use tokio::sync::watch;

use super::{RelationshipError, invalid};
use crate::admin_api::{RelationshipSpec, RelationshipView, unix};
use crate::config::RelationshipSettings;
use crate::server::metrics::ServerMetrics;

/// The library endpoint for `spec`; `held`, the bundle the server holds,
/// authenticates the first fetch of a self-serving https_spiffe endpoint.
pub(super) fn endpoint(
    own: &TrustDomain,
    td: &TrustDomain,
    spec: &RelationshipSpec,
    held: Option<SpiffeBundle>,
) -> Result<Endpoint, RelationshipError> {
    if td == own {
        return Err(invalid(format!(
            "{td} is this server's own trust domain: it cannot be federated with"
        )));
    }
    let url = spec
        .url
        .as_deref()
        .ok_or_else(|| invalid("a relationship needs a url"))?;
    let url: BundleUrl = url
        .parse()
        .map_err(|e| invalid(format!("url {url:?}: {e}")))?;
    // Until a fetch succeeds, poll as the held bundle's hint says (an
    // https_web relationship restored from the data directory has no
    // stored bundle in the library to take it from).
    let held_hint = held.as_ref().and_then(SpiffeBundle::refresh_hint);
    let endpoint = match spec.profile.as_deref() {
        Some("https_spiffe") => {
            let id = spec.endpoint_spiffe_id.as_deref().ok_or_else(|| {
                invalid(
                    "profile https_spiffe needs the endpoint's SPIFFE ID (--endpoint-spiffe-id)",
                )
            })?;
            let id: SpiffeId = id
                .parse()
                .map_err(|e| invalid(format!("endpoint SPIFFE ID {id:?}: {e}")))?;
            let trust = if id.trust_domain() != td {
                EndpointTrust::through_federation()
            } else if let Some(b) = held {
                EndpointTrust::initial_bundle(b)
            } else {
                let doc = spec.bundle.as_deref().ok_or_else(|| {
                    invalid(format!(
                        "endpoint {id} is in {td}: give its initial bundle (--bundle-file)"
                    ))
                })?;
                initial_trust(td, doc)?
            };
            Endpoint::https_spiffe(url, id, trust)
        }
        Some("https_web") => {
            let pem = spec.web_roots.as_deref().ok_or_else(|| {
                invalid("profile https_web needs the PEM roots to trust (--web-roots)")
            })?;
            Endpoint::https_web(url, Arc::new(roots(pem)?))
        }
        Some(p) => {
            return Err(invalid(format!(
                "profile {p:?}: expected https_spiffe or https_web"
            )));
        }
        None => return Err(invalid("a relationship needs a profile")),
    };
    let mut options = FetchOptions::default();
    if let Some(hint) = held_hint {
        options = options.default_interval(hint / 4);
    }
    if let Some(floor) = spec.poll_floor {
        options = options.floor(std::time::Duration::from_secs(floor.max(1)));
    }
    Ok(endpoint.options(options))
}

/// Counts every fetch outcome of one relationship on the server's metrics.
pub(super) async fn count_fetches(
    mut rx: watch::Receiver<FetchStatus>,
    metrics: Arc<ServerMetrics>,
) {
    let mut last = rx.borrow_and_update().clone();
    while rx.changed().await.is_ok() {
        let now = rx.borrow_and_update().clone();
        let td = now.trust_domain.to_string();
        if now.accepted > last.accepted {
            metrics.federation_fetch(&td, "accepted", now.accepted - last.accepted);
        }
        for (kind, n) in &now.refused {
            let before = last.refused.get(kind).copied().unwrap_or(0);
            if *n > before {
                metrics.federation_fetch(&td, &reason(kind), n - before);
            }
        }
        last = now;
    }
}

/// A refusal reason as a label: `WrongEndpointId` → `wrong_endpoint_id`.
fn reason(kind: &impl std::fmt::Debug) -> String {
    let mut out = String::new();
    for (i, c) in format!("{kind:?}").chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

pub(super) fn view(
    spec: &RelationshipSpec,
    status: &FetchStatus,
    held: Option<&SpiffeBundle>,
) -> RelationshipView {
    RelationshipView {
        trust_domain: spec.trust_domain.clone(),
        url: spec.url.clone().unwrap_or_default(),
        profile: spec.profile.clone().unwrap_or_default(),
        endpoint_spiffe_id: spec.endpoint_spiffe_id.clone(),
        accepted: status.accepted,
        last_fetch: status.last_accepted.map(unix),
        sequence: held.and_then(SpiffeBundle::sequence).or(status.sequence),
        x509_authorities: held.map_or(0, |b| b.x509().authorities().len()),
        jwt_keys: held.map_or(0, |b| b.jwt().keys().count()),
        poll_interval: status.interval.as_secs(),
        refused: status
            .refused
            .iter()
            .map(|(k, n)| (reason(k), *n))
            .collect(),
        last_error: status.last_error.as_ref().map(|e| e.to_string()),
    }
}

pub(super) fn parse_td(s: &str) -> Result<TrustDomain, RelationshipError> {
    s.parse()
        .map_err(|e| invalid(format!("trust domain {s:?}: {e}")))
}

/// An initial bundle: a SPIFFE bundle document, or PEM certificates.
fn initial_trust(td: &TrustDomain, doc: &str) -> Result<EndpointTrust, RelationshipError> {
    let bundle = if doc.trim_start().starts_with('{') {
        SpiffeBundle::parse(td.clone(), doc.as_bytes())
            .map_err(|e| invalid(format!("initial bundle: {e}")))?
    } else {
        SpiffeBundle::from_x509(
            X509Bundle::from_pem(td.clone(), doc.as_bytes())
                .map_err(|e| invalid(format!("initial bundle PEM: {e}")))?,
        )
    };
    Ok(EndpointTrust::initial_bundle(bundle))
}

fn roots(pem: &str) -> Result<RootCertStore, RelationshipError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("web roots: {e}")))?;
    if certs.is_empty() {
        return Err(invalid("web roots: no PEM certificate"));
    }
    let mut store = RootCertStore::empty();
    for c in certs {
        store
            .add(c)
            .map_err(|e| invalid(format!("web roots: {e}")))?;
    }
    Ok(store)
}

/// A static relationship from the configuration file, its files read.
pub(super) fn spec_from_settings(
    s: &RelationshipSettings,
) -> Result<RelationshipSpec, RelationshipError> {
    let read = |p: &Option<PathBuf>| -> Result<Option<String>, RelationshipError> {
        p.as_ref()
            .map(|p| {
                std::fs::read_to_string(p).map_err(|e| {
                    invalid(format!(
                        "federation relationship {}: {}: {e}",
                        s.trust_domain,
                        p.display()
                    ))
                })
            })
            .transpose()
    };
    Ok(RelationshipSpec {
        trust_domain: s.trust_domain.clone(),
        url: Some(s.url.clone()),
        profile: Some(s.profile.clone()),
        endpoint_spiffe_id: s.endpoint_spiffe_id.clone(),
        bundle: read(&s.initial_bundle)?,
        web_roots: read(&s.web_roots)?,
        poll_floor: s.poll_floor.map(|d| d.as_secs()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_snake_case() {
        #[derive(Debug)]
        struct WrongEndpointId;
        assert_eq!(reason(&WrongEndpointId), "wrong_endpoint_id");
    }
}
