//! A minimal node agent: it feeds a workload-api `MemoryIdentityProvider`
//! from an svid-ca `CertificateAuthority`.
//!
//! For each registered workload the agent generates a key, has the
//! authority sign an X509-SVID for it, and publishes it under the
//! workload's hint. It renews an SVID at half its lifetime, and as soon as
//! the authority's active X.509 key changes. Whenever the authority's
//! bundle changes it publishes the new bundle, always before any SVID that
//! the new bundle is needed for.
//!
//! Everything it did is kept in an [`AgentLog`] that tests read.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use spiffe_core::{BundleSource, PrivateKey, X509Svid};
use svid_ca::{CertificateAuthority, Entitlement, SlotKind, SlotState};
use tokio::time::Instant;
use workload_api::{EntryId, MemoryIdentityProvider, RegistrationEntry, Selector};

/// Why an SVID was issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The first SVID of a workload.
    Initial,
    /// Half of the previous SVID's lifetime had passed.
    HalfLife,
    /// The authority's active X.509 key changed.
    CaRotation,
}

/// One SVID the agent issued and published.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The workload's hint.
    pub hint: String,
    /// The leaf's serial number.
    pub serial: Vec<u8>,
    /// The id of the CA key that signed it.
    pub authority_id: String,
    /// The leaf's notAfter (whole seconds): unique per workload, see
    /// [`Agent::run`].
    pub not_after: SystemTime,
    /// Why it was issued.
    pub reason: Reason,
}

/// One bundle the agent published.
#[derive(Debug, Clone)]
pub struct Published {
    /// The bundle's sequence number.
    pub sequence: Option<u64>,
    /// The ids (subject CN) of the X.509 authorities in it.
    pub authority_ids: Vec<String>,
}

/// What the agent did, in order.
#[derive(Debug, Clone, Default)]
pub struct AgentLog {
    /// SVIDs issued and published.
    pub issued: Vec<Issued>,
    /// Bundles published.
    pub bundles: Vec<Published>,
    /// Issuance or publication failures (the last good SVID is kept).
    pub failures: Vec<String>,
}

impl AgentLog {
    /// The issued SVID of `hint` whose notAfter is `not_after`.
    pub fn find(&self, hint: &str, not_after: SystemTime) -> Option<&Issued> {
        self.issued
            .iter()
            .find(|i| i.hint == hint && i.not_after == not_after)
    }
}

/// A workload the agent gives an identity to.
#[derive(Debug, Clone)]
pub struct Workload {
    /// The hint its SVID is published under (its `X509Source` asks for it).
    pub hint: String,
    /// The selectors a caller must have.
    pub selectors: Vec<Selector>,
    /// What its SVIDs carry.
    pub entitlement: Entitlement,
}

struct Held {
    workload: Workload,
    entry: EntryId,
    authority_id: String,
    renew_at: Instant,
    not_after: SystemTime,
}

/// The agent. Build it with [`Agent::start`], then run [`Agent::run`]
/// (the agent spawns nothing itself).
pub struct Agent {
    ca: Arc<CertificateAuthority>,
    provider: Arc<MemoryIdentityProvider>,
    held: Vec<Held>,
    log: Arc<Mutex<AgentLog>>,
}

/// A handle to read the agent's log while it runs.
#[derive(Clone)]
pub struct LogHandle(Arc<Mutex<AgentLog>>);

impl LogHandle {
    /// A copy of the log so far.
    pub fn snapshot(&self) -> AgentLog {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Agent {
    /// Publishes the authority's bundle, then issues and registers a first
    /// SVID for each workload.
    pub fn start(
        ca: Arc<CertificateAuthority>,
        provider: Arc<MemoryIdentityProvider>,
        workloads: Vec<Workload>,
    ) -> Result<(Agent, LogHandle), String> {
        let log = Arc::new(Mutex::new(AgentLog::default()));
        let mut agent = Agent {
            ca,
            provider,
            held: Vec::new(),
            log: log.clone(),
        };
        agent.publish_bundle();
        for workload in workloads {
            let (svid, issued) = agent.issue(&workload, Reason::Initial)?;
            let entry = agent
                .provider
                .add_entry(
                    RegistrationEntry::new(
                        svid.spiffe_id().clone(),
                        svid.spiffe_id().clone(),
                        workload.selectors.to_vec(),
                    )
                    .map_err(|e| e.to_string())?
                    .with_hint(workload.hint.clone()),
                    svid,
                )
                .map_err(|e| e.to_string())?;
            agent.held.push(Held {
                entry,
                authority_id: issued.authority_id.clone(),
                renew_at: renew_at(issued.not_after),
                not_after: issued.not_after,
                workload,
            });
            agent.record(issued);
        }
        Ok((agent, LogHandle(log)))
    }

    /// Follows the authority until it is dropped: publishes every bundle
    /// change, then renews the SVIDs the change made stale (signed by a key
    /// that is no longer active); renews every SVID at half-life.
    ///
    /// Consecutive SVIDs of one workload never share a notAfter second, so
    /// a peer's notAfter (all a verified `PeerIdentity` carries) names the
    /// SVID it presented.
    pub async fn run(mut self) {
        let mut changes = BundleSource::subscribe(&*self.ca);
        loop {
            let next = self
                .held
                .iter()
                .map(|h| h.renew_at)
                .min()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                // A bundle change first: it decides what a renewal must use.
                biased;
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    self.publish_bundle();
                    let active = self.active_authority();
                    for i in 0..self.held.len() {
                        if Some(&self.held[i].authority_id) != active.as_ref() {
                            self.renew(i, Reason::CaRotation).await;
                        }
                    }
                }
                () = tokio::time::sleep_until(next) => {
                    let now = Instant::now();
                    for i in 0..self.held.len() {
                        if self.held[i].renew_at <= now {
                            self.renew(i, Reason::HalfLife).await;
                        }
                    }
                }
            }
        }
    }

    fn active_authority(&self) -> Option<String> {
        self.ca
            .authorities()
            .into_iter()
            .find(|a| a.kind == SlotKind::X509 && a.state == SlotState::Active)
            .map(|a| a.id)
    }

    fn publish_bundle(&self) {
        let set = BundleSource::bundle_set(&*self.ca);
        let published = Published {
            sequence: set.iter().next().and_then(|b| b.sequence()),
            authority_ids: set
                .iter()
                .flat_map(|b| b.x509().authorities().iter())
                .map(|c| subject_cn(c).unwrap_or_default())
                .collect(),
        };
        self.provider.set_bundles((*set).clone());
        self.lock().bundles.push(published);
    }

    async fn renew(&mut self, i: usize, reason: Reason) {
        // Keep notAfter distinct from the SVID being replaced (the
        // authority works in whole seconds).
        let wait = self.held[i]
            .not_after
            .checked_sub(self.ca.config().x509_svid_ttl)
            .and_then(|issued_second| {
                (issued_second + Duration::from_secs(1))
                    .duration_since(SystemTime::now())
                    .ok()
            });
        if let Some(wait) = wait {
            tokio::time::sleep(wait).await;
        }
        let workload = self.held[i].workload.clone();
        let result = self.issue(&workload, reason).and_then(|(svid, issued)| {
            self.provider
                .rotate(&self.held[i].entry, svid)
                .map_err(|e| e.to_string())?;
            Ok(issued)
        });
        match result {
            Ok(issued) => {
                let held = &mut self.held[i];
                held.authority_id = issued.authority_id.clone();
                held.renew_at = renew_at(issued.not_after);
                held.not_after = issued.not_after;
                self.record(issued);
            }
            Err(e) => {
                // Keep the current SVID; try again shortly.
                self.held[i].renew_at = Instant::now() + Duration::from_millis(200);
                self.lock().failures.push(format!("{}: {e}", workload.hint));
            }
        }
    }

    /// Generates a key and has the authority sign an SVID for it.
    fn issue(&self, workload: &Workload, reason: Reason) -> Result<(X509Svid, Issued), String> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| e.to_string())?;
        let signed = self
            .ca
            .sign_public_key(
                &rcgen::PublicKeyData::subject_public_key_info(&key),
                &workload.entitlement,
            )
            .map_err(|e| e.to_string())?;
        let leaf = signed.chain.first().ok_or("empty chain")?;
        let serial = serial(leaf).ok_or("unparsable leaf")?;
        let private =
            PrivateKey::from_pkcs8_der(&key.serialize_der()).map_err(|e| e.to_string())?;
        let svid = X509Svid::new(signed.chain.clone(), private).map_err(|e| e.to_string())?;
        let issued = Issued {
            hint: workload.hint.clone(),
            serial,
            authority_id: signed.authority_id,
            not_after: signed.not_after,
            reason,
        };
        Ok((svid, issued))
    }

    fn record(&self, issued: Issued) {
        self.lock().issued.push(issued);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AgentLog> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Half-way between now and `not_after`.
fn renew_at(not_after: SystemTime) -> Instant {
    let left = not_after
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    Instant::now() + left / 2
}

/// The serial number of a certificate.
pub fn serial(der: &[u8]) -> Option<Vec<u8>> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    Some(cert.raw_serial().to_vec())
}

/// The subject CN of a certificate: for an svid-ca CA certificate, the
/// id of its key slot.
pub fn subject_cn(der: &[u8]) -> Option<String> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

/// The issuer CN of a certificate: for an svid-ca X509-SVID, the id of
/// the CA key that signed it.
pub fn issuer_cn(der: &[u8]) -> Option<String> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let cn = cert.issuer().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

/// Seconds since the epoch, for messages.
pub fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
