//! The server's own X509-SVID for the node API, renewed at half-life and
//! whenever the authority's keys change.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use spiffe_core::{BundleSource, MemorySvidSource, SpiffeId, SvidSource};
use svid_ca::{CertificateAuthority, Entitlement, IssueError};

use super::metrics::ServerMetrics;

pub(crate) struct ServerSvid {
    ca: Arc<CertificateAuthority>,
    id: SpiffeId,
    source: Arc<MemorySvidSource>,
}

impl ServerSvid {
    pub(crate) fn issue(ca: Arc<CertificateAuthority>, id: SpiffeId) -> Result<Self, IssueError> {
        let svid = ca.issue_x509_svid(&Entitlement::new(id.clone()))?;
        Ok(ServerSvid {
            ca,
            id,
            source: Arc::new(MemorySvidSource::new(svid)),
        })
    }

    pub(crate) fn source(&self) -> Arc<MemorySvidSource> {
        self.source.clone()
    }

    /// Renews forever: at half of the remaining lifetime, and after every
    /// change of the authority's keys (so the SVID is signed by the active
    /// key). A failed renewal is retried after a few seconds.
    pub(crate) async fn renew_task(&self) {
        let mut keys = self.ca.subscribe();
        loop {
            let wait = self
                .source
                .x509_svid()
                .map(|s| half_life(s.not_after(), self.ca.now()))
                .unwrap_or(Duration::ZERO);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                r = keys.changed() => if r.is_err() { return },
            }
            match self.ca.issue_x509_svid(&Entitlement::new(self.id.clone())) {
                Ok(svid) => self.source.set(svid),
                Err(error) => {
                    tracing::warn!(%error, "renewing the server SVID failed; retrying");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
    }
}

/// Half of what remains until `not_after`, at least a second.
pub(crate) fn half_life(not_after: SystemTime, now: SystemTime) -> Duration {
    (not_after.duration_since(now).unwrap_or_default() / 2).max(Duration::from_secs(1))
}

/// Keeps the `ca_slots` gauge current.
pub(crate) async fn slot_metrics(ca: Arc<CertificateAuthority>, metrics: Arc<ServerMetrics>) {
    let mut keys = ca.subscribe();
    loop {
        metrics.ca_slots.clear();
        for a in ca.authorities() {
            metrics
                .ca_slots
                .get_or_create(&vec![
                    ("kind", format!("{:?}", a.kind).to_lowercase()),
                    ("state", format!("{:?}", a.state).to_lowercase()),
                ])
                .inc();
        }
        if keys.changed().await.is_err() {
            return;
        }
    }
}
