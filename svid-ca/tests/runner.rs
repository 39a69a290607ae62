//! The rotation task under paused Tokio time: the schedule, and failures.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use spiffe_core::{BundleSource, SpiffeBundle, verify_x509_svid};
use svid_ca::{
    BackendError, CaError, CaJournal, CaJournalStore, CertificateAuthority, SlotKind, SlotState,
    StoreError, TokioClock,
};

#[tokio::test(start_paused = true)]
async fn bun_10_rotation_task_rotates_on_schedule_with_paused_time() {
    let clock = TokioClock::starting_at(start());
    let ca = Arc::new(
        CertificateAuthority::builder(config())
            .clock(Arc::new(clock))
            .build()
            .unwrap(),
    );
    let first = ca.issue_x509_svid(&ent("/w")).unwrap();
    let changes = ca.subscribe();
    let seq0 = ca.generation();
    let task = tokio::spawn(ca.clone().rotation_task(Duration::from_secs(10)));
    // Just past 12 h (the next 10 s tick): the next keys are prepared and published.
    tokio::time::sleep(Duration::from_secs(12 * 3600 + 30)).await;
    assert!(changes.has_changed().unwrap());
    let prepared = ca
        .authorities()
        .into_iter()
        .filter(|a| a.state == SlotState::Prepared)
        .count();
    assert_eq!(prepared, 2, "one X.509 and one JWT key prepared");
    // Just past 20 h: they are active; the first SVID still verifies.
    tokio::time::sleep(Duration::from_secs(8 * 3600)).await;
    let x509: Vec<_> = ca
        .authorities()
        .into_iter()
        .filter(|a| a.kind == SlotKind::X509)
        .map(|a| a.state)
        .collect();
    assert_eq!(x509, vec![SlotState::Old, SlotState::Active]);
    assert!(ca.generation() >= seq0 + 2);
    let now = ca.now();
    assert!(now >= start() + Duration::from_secs(20 * 3600));
    // The first SVID expired long ago (1 h TTL); a fresh one verifies.
    let err = verify_x509_svid(first.chain(), ca.bundle().x509(), now).unwrap_err();
    assert!(
        matches!(
            err,
            spiffe_core::VerifyError::Chain {
                source: webpki::Error::CertExpired { .. },
                ..
            }
        ),
        "{err:?}"
    );
    let fresh = ca.issue_x509_svid(&ent("/w")).unwrap();
    verify_x509_svid(fresh.chain(), ca.bundle().x509(), now).unwrap();
    assert_eq!(ca.rotation_failures(), 0);
    task.abort();
}

/// A journal store that can be made to fail like a full disk.
#[derive(Debug)]
struct FailingJournal {
    inner: svid_ca::SqliteStore,
    fail: AtomicBool,
}

impl CaJournalStore for FailingJournal {
    fn load_ca_journal(&self) -> Result<Option<CaJournal>, StoreError> {
        self.inner.load_ca_journal()
    }
    fn save_ca_journal(&self, j: &CaJournal, b: &SpiffeBundle) -> Result<(), StoreError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(StoreError::Write {
                what: "ca journal",
                source: BackendError::new(std::io::Error::other("disk full")),
            });
        }
        self.inner.save_ca_journal(j, b)
    }
}

#[tokio::test(start_paused = true)]
async fn rotation_task_reports_store_failures_and_retries_until_the_store_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FailingJournal {
        inner: svid_ca::SqliteStore::open(dir.path()).unwrap(),
        fail: AtomicBool::new(false),
    });
    let ca = Arc::new(
        CertificateAuthority::builder(config())
            .clock(Arc::new(TokioClock::starting_at(start())))
            .store(store.clone())
            .build()
            .unwrap(),
    );
    let mut health = ca.subscribe_rotation_health();
    let task = tokio::spawn(ca.clone().rotation_task(Duration::from_secs(10)));
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert!(ca.rotation_health().is_healthy());
    assert!(ca.rotation_health().last_success.is_some());
    let before = ca.authorities();
    let sequence = ca.bundle().sequence();
    // The disk fills up; then the prepare threshold (12 h) passes.
    store.fail.store(true, Ordering::SeqCst);
    health.borrow_and_update();
    tokio::time::sleep(Duration::from_secs(12 * 3600 + 60)).await;
    assert!(health.has_changed().unwrap(), "failures are published");
    let h = ca.rotation_health();
    assert!(!h.is_healthy());
    assert!(h.consecutive_failures >= 3, "{h:?}");
    assert_eq!(h.failures, h.consecutive_failures);
    assert_eq!(ca.rotation_failures(), h.failures);
    let error = h.last_error.expect("the failure is recorded");
    assert!(
        matches!(
            &*error,
            CaError::Store(StoreError::Write {
                what: "ca journal",
                ..
            })
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("disk full"), "{error}");
    // Nothing changed, and the task is still alive.
    assert_eq!(ca.authorities(), before);
    assert_eq!(ca.bundle().sequence(), sequence);
    assert!(!task.is_finished(), "the rotation task must not die");
    let svid = ca.issue_x509_svid(&ent("/w")).unwrap();
    verify_x509_svid(svid.chain(), ca.bundle().x509(), ca.now()).unwrap();
    // The store recovers: the next period rotates and health is restored.
    store.fail.store(false, Ordering::SeqCst);
    let failures = ca.rotation_failures();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let h = ca.rotation_health();
    assert!(h.is_healthy(), "{h:?}");
    assert_eq!(h.failures, failures);
    let prepared = ca
        .authorities()
        .into_iter()
        .filter(|a| a.state == SlotState::Prepared)
        .count();
    assert_eq!(prepared, 2, "the missed preparation happened on retry");
    assert!(ca.bundle().sequence() > sequence);
    task.abort();
}
