//! The rotation task under paused Tokio time.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use spiffe_core::{BundleSource, verify_x509_svid};
use svid_ca::{CertificateAuthority, SlotKind, SlotState, TokioClock};

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
    assert!(verify_x509_svid(first.chain(), ca.bundle().x509(), now).is_err());
    let fresh = ca.issue_x509_svid(&ent("/w")).unwrap();
    verify_x509_svid(fresh.chain(), ca.bundle().x509(), now).unwrap();
    assert_eq!(ca.rotation_failures(), 0);
    task.abort();
}
