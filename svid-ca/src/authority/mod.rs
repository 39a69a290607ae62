//! [`CertificateAuthority`]: the trust domain's rotating X.509 and JWT keys
//! and the bundle that publishes them.

mod ops;
mod runner;
mod slot;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use spiffe_core::jwt::JwtBundle;
use spiffe_core::{BundleSet, BundleSource, SpiffeBundle, X509Bundle};
use tokio::sync::watch;

pub use runner::{RotationHealth, TokioClock};
pub use slot::{AuthorityInfo, SlotKind, SlotState};
pub(crate) use slot::{Signer, Slot, random_serial, whole_secs};

use crate::keys::{KeyError, SigningKey};
use crate::store::{CaJournal, CaJournalStore, JournalSlot, StoreError};
use crate::{CaConfig, Clock, ConfigError, SystemClock};

/// Why an authority operation failed. Nothing is changed or written when
/// an operation fails.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// The configuration is invalid.
    #[error("invalid CA configuration: {0}")]
    Config(#[from] ConfigError),
    /// A key could not be generated or loaded.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The system random generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// A certificate could not be built or parsed.
    #[error("CA certificate generation or parsing failed")]
    Certificate,
    /// A journaled key does not match its journaled certificate.
    #[error("journaled key of authority {id} does not match its certificate")]
    JournalKeyMismatch {
        /// The slot id.
        id: String,
    },
    /// The journal belongs to another trust domain.
    #[error("the stored CA journal is for trust domain {found}, not {expected}")]
    JournalTrustDomain {
        /// The configured trust domain.
        expected: String,
        /// The journal's trust domain.
        found: String,
    },
    /// `prepare` was asked while a key is already prepared.
    #[error("a {kind:?} key is already prepared ({id})")]
    AlreadyPrepared {
        /// Key kind.
        kind: SlotKind,
        /// The prepared key's id.
        id: String,
    },
    /// `activate` was asked with no prepared key.
    #[error("no {kind:?} key is prepared")]
    NothingPrepared {
        /// Key kind.
        kind: SlotKind,
    },
    /// No authority has the given id.
    #[error("no {kind:?} authority with id {id}")]
    UnknownAuthority {
        /// Key kind.
        kind: SlotKind,
        /// The id asked for.
        id: String,
    },
    /// Only OLD keys can be tainted or revoked.
    #[error("authority {id} is {state:?}; only an OLD authority can be tainted or revoked")]
    NotOld {
        /// The id.
        id: String,
        /// Its current state.
        state: SlotState,
    },
    /// A key was tainted twice.
    #[error("authority {id} is already tainted")]
    AlreadyTainted {
        /// The id.
        id: String,
    },
    /// Only tainted keys can be revoked.
    #[error("authority {id} must be tainted before it can be revoked")]
    NotTainted {
        /// The id.
        id: String,
    },
    /// No key is active (all expired and none could be made).
    #[error("no active {kind:?} authority")]
    NoActiveAuthority {
        /// Key kind.
        kind: SlotKind,
    },
    /// The store failed; the change was not applied.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// What issuance reads, swapped atomically on every change.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) x509: Option<Slot>,
    pub(crate) jwt: Option<Slot>,
    pub(crate) bundle: Arc<SpiffeBundle>,
    pub(crate) bundle_set: Arc<BundleSet>,
}

#[derive(Debug)]
struct State {
    slots: Vec<Slot>,
    sequence: u64,
}

/// A certificate authority for one trust domain.
///
/// It holds separate X.509 and JWT key slots that move PREPARED → ACTIVE →
/// OLD on the [`crate::RotationPolicy`] schedule whenever
/// [`CertificateAuthority::rotate`] runs, publishes every unexpired key in
/// its [`SpiffeBundle`] (a prepared key before it signs anything), and
/// issues SVIDs (see the `issue_*` and `sign_*` methods).
///
/// ```
/// use svid_ca::{CaConfig, CertificateAuthority};
/// let ca = CertificateAuthority::builder(CaConfig::new("example.org".parse()?)).build()?;
/// assert_eq!(ca.bundle().x509().authorities().len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct CertificateAuthority {
    pub(crate) config: CaConfig,
    pub(crate) clock: Arc<dyn Clock>,
    store: Option<Arc<dyn CaJournalStore>>,
    state: Mutex<State>,
    pub(crate) snapshot: ArcSwap<Snapshot>,
    changes: watch::Sender<u64>,
    rotation: watch::Sender<RotationHealth>,
}

/// Builds a [`CertificateAuthority`].
#[derive(Debug)]
pub struct CaBuilder {
    config: CaConfig,
    clock: Arc<dyn Clock>,
    store: Option<Arc<dyn CaJournalStore>>,
}

impl CaBuilder {
    /// Reads time from `clock` instead of the system clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Journals keys and bundles to `store`, and resumes from its journal.
    pub fn store(mut self, store: Arc<dyn CaJournalStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Validates the configuration, resumes from the store's journal (same
    /// keys) if there is one, and brings the key slots up to date.
    pub fn build(self) -> Result<CertificateAuthority, CaError> {
        let now = self.clock.now();
        self.config.validate(now)?;
        let mut slots = Vec::new();
        let mut sequence = 0;
        if let Some(store) = &self.store
            && let Some(journal) = store.load_ca_journal()?
        {
            if journal.trust_domain != self.config.trust_domain.as_str() {
                return Err(CaError::JournalTrustDomain {
                    expected: self.config.trust_domain.to_string(),
                    found: journal.trust_domain,
                });
            }
            sequence = journal.sequence;
            for js in journal.slots {
                let key = SigningKey::from_pkcs8(&js.key_pkcs8)?;
                slots.push(Slot::restore(js.info, key, &self.config)?);
            }
        }
        let bundle = build_bundle(&self.config, &slots, sequence)?;
        let snapshot = snapshot_of(&slots, bundle);
        let ca = CertificateAuthority {
            config: self.config,
            clock: self.clock,
            store: self.store,
            state: Mutex::new(State { slots, sequence }),
            snapshot: ArcSwap::from_pointee(snapshot),
            changes: watch::Sender::new(sequence),
            rotation: watch::Sender::new(RotationHealth::default()),
        };
        ca.rotate()?;
        Ok(ca)
    }
}

impl CertificateAuthority {
    /// Starts building an authority for `config` (system clock, no store).
    pub fn builder(config: CaConfig) -> CaBuilder {
        CaBuilder {
            config,
            clock: Arc::new(SystemClock),
            store: None,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &CaConfig {
        &self.config
    }

    /// The current time according to the authority's clock.
    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }

    /// The trust domain's current bundle.
    pub fn bundle(&self) -> Arc<SpiffeBundle> {
        self.snapshot.load().bundle.clone()
    }

    /// Every key slot, X.509 then JWT, oldest first.
    pub fn authorities(&self) -> Vec<AuthorityInfo> {
        self.lock().slots.iter().map(|s| s.info.clone()).collect()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `change` on a copy of the slots; if it reports a change, the new
    /// slots and bundle (sequence + 1) are journaled and only then made
    /// current. On any error nothing changes.
    pub(crate) fn apply<T>(
        &self,
        change: impl FnOnce(&mut Vec<Slot>, SystemTime) -> Result<(bool, T), CaError>,
    ) -> Result<T, CaError> {
        let mut state = self.lock();
        let now = self.clock.now();
        let mut slots = state.slots.clone();
        let (changed, out) = change(&mut slots, now)?;
        if !changed {
            return Ok(out);
        }
        let sequence = state.sequence + 1;
        let bundle = build_bundle(&self.config, &slots, sequence)?;
        if let Some(store) = &self.store {
            let journal = CaJournal {
                trust_domain: self.config.trust_domain.to_string(),
                sequence,
                slots: slots
                    .iter()
                    .map(|s| JournalSlot {
                        info: s.info.clone(),
                        key_pkcs8: zeroize::Zeroizing::new(s.material.private.pkcs8_der().to_vec()),
                    })
                    .collect(),
            };
            store.save_ca_journal(&journal, &bundle)?;
        }
        let removed: Vec<String> = state
            .slots
            .iter()
            .filter(|old| !slots.iter().any(|s| s.info.id == old.info.id))
            .map(|s| s.info.id.clone())
            .collect();
        for id in &removed {
            tracing::info!(authority = %id, "authority left the bundle");
        }
        self.snapshot.store(Arc::new(snapshot_of(&slots, bundle)));
        state.slots = slots;
        state.sequence = sequence;
        self.changes.send_replace(sequence);
        Ok(out)
    }
}

fn build_bundle(config: &CaConfig, slots: &[Slot], sequence: u64) -> Result<SpiffeBundle, CaError> {
    let td = config.trust_domain.clone();
    let x509_certs = match &config.upstream {
        Some(up) => up.roots().to_vec(),
        None => slots
            .iter()
            .filter(|s| s.info.kind == SlotKind::X509)
            .filter_map(|s| s.info.certificate.clone())
            .collect(),
    };
    let x509 = X509Bundle::new(td.clone(), x509_certs).map_err(|_| CaError::Certificate)?;
    let mut jwt = JwtBundle::new(td);
    for s in slots {
        if let Signer::Jwt { signer } = &s.material.signer {
            jwt.insert(s.info.id.clone(), signer.public_key().clone());
        }
    }
    Ok(SpiffeBundle::new(x509, jwt)
        .map_err(|_| CaError::Certificate)?
        .with_sequence(sequence)
        .with_refresh_hint(config.refresh_hint))
}

fn snapshot_of(slots: &[Slot], bundle: SpiffeBundle) -> Snapshot {
    let active = |kind| {
        slots
            .iter()
            .find(|s| s.info.kind == kind && s.info.state == SlotState::Active)
            .cloned()
    };
    let bundle = Arc::new(bundle);
    let bundle_set = Arc::new(std::iter::once((*bundle).clone()).collect());
    Snapshot {
        x509: active(SlotKind::X509),
        jwt: active(SlotKind::Jwt),
        bundle,
        bundle_set,
    }
}

/// The authority's bundle holds its X.509 roots: usable where TLS
/// verifies peers.
impl spiffe_core::X509AuthoritySource for CertificateAuthority {}

impl BundleSource for CertificateAuthority {
    fn bundle_set(&self) -> Arc<BundleSet> {
        self.snapshot.load().bundle_set.clone()
    }

    fn generation(&self) -> u64 {
        *self.changes.borrow()
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}
