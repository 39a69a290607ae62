//! FED-7: a new key is in the published bundle before anything is signed
//! with it, on schedule and after a missed schedule.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use spiffe_core::{BundleSource, JwtSvid};
use svid_ca::{SlotKind, SlotState};

const HOUR: Duration = Duration::from_secs(3600);

fn jwt_kids(ca: &svid_ca::CertificateAuthority) -> HashSet<String> {
    ca.bundle()
        .jwt()
        .keys()
        .map(|(kid, _)| kid.to_owned())
        .collect()
}

fn active(ca: &svid_ca::CertificateAuthority, kind: SlotKind) -> String {
    ca.authorities()
        .into_iter()
        .find(|a| a.kind == kind && a.state == SlotState::Active)
        .map(|a| a.id)
        .expect("an active key")
}

#[test]
fn fed_7_each_jwt_key_is_published_in_an_earlier_bundle_than_its_first_jwt_svid() {
    let (ca, clock) = ca();
    let aud = ["a".to_owned()];
    // kid -> the bundle sequence at which it was first published.
    let mut first_published = std::collections::HashMap::new();
    let mut first_signed = std::collections::HashMap::new();
    let mut signers = HashSet::new();
    // Four CA lifetimes (24 h each) in 20-minute steps.
    for _ in 0..(4 * 24 * 3) {
        clock.advance(Duration::from_secs(20 * 60));
        ca.rotate().unwrap();
        let sequence = ca.generation();
        for kid in jwt_kids(&ca) {
            first_published.entry(kid).or_insert(sequence);
        }
        let svid = ca.issue_jwt_svid(&ent("/w"), &aud).unwrap();
        let kid = svid.kid().to_owned();
        first_signed.entry(kid.clone()).or_insert(sequence);
        signers.insert(kid.clone());
        JwtSvid::validate(svid.token(), ca.bundle().jwt(), "a", ca.now()).unwrap();
    }
    assert!(signers.len() >= 4, "the JWT key rotated: {signers:?}");
    let initial = first_signed
        .iter()
        .min_by_key(|(_, s)| **s)
        .map(|(k, _)| k.clone());
    for (kid, signed_at) in &first_signed {
        if Some(kid) == initial.as_ref() {
            continue; // the key of the very first start has no earlier bundle
        }
        let published_at = first_published[kid];
        assert!(
            published_at < *signed_at,
            "JWT key {kid} signed at sequence {signed_at} but was published only at {published_at}"
        );
    }
}

#[test]
fn fed_7_missed_schedule_prepares_first_and_activates_on_the_next_rotation() {
    let (ca, clock) = ca();
    let old_x509 = active(&ca, SlotKind::X509);
    let old_jwt = active(&ca, SlotKind::Jwt);
    // The process was down past both thresholds (12 h and 20 h of 24 h).
    clock.advance(21 * HOUR);
    assert!(ca.rotate().unwrap());
    // The new keys are published, the old ones still sign.
    let prepared: Vec<_> = ca
        .authorities()
        .into_iter()
        .filter(|a| a.state == SlotState::Prepared)
        .collect();
    assert_eq!(prepared.len(), 2, "one X.509 and one JWT key prepared");
    let new_jwt = prepared
        .iter()
        .find(|a| a.kind == SlotKind::Jwt)
        .unwrap()
        .id
        .clone();
    let new_x509 = prepared.iter().find(|a| a.kind == SlotKind::X509).unwrap();
    assert!(jwt_kids(&ca).contains(&new_jwt));
    assert!(
        ca.bundle()
            .x509()
            .authorities()
            .contains(new_x509.certificate.as_ref().unwrap())
    );
    let jwt = ca.issue_jwt_svid(&ent("/w"), &["a".into()]).unwrap();
    assert_eq!(jwt.kid(), old_jwt, "a just-published key must not sign yet");
    let x509 = ca.sign_public_key(&spki(), &ent("/w")).unwrap();
    assert_eq!(x509.authority_id, old_x509);
    let published = ca.bundle();
    // The next rotation activates them; their keys were in the bundle before.
    clock.advance(Duration::from_secs(10));
    assert!(ca.rotate().unwrap());
    let jwt = ca.issue_jwt_svid(&ent("/w"), &["a".into()]).unwrap();
    assert_eq!(jwt.kid(), new_jwt);
    JwtSvid::validate(jwt.token(), published.jwt(), "a", ca.now()).unwrap();
    let x509 = ca.sign_public_key(&spki(), &ent("/w")).unwrap();
    assert_eq!(x509.authority_id, new_x509.id);
    spiffe_core::verify_x509_svid(&[x509.chain[0].clone()], published.x509(), ca.now()).unwrap();
}

fn spki() -> Vec<u8> {
    use rcgen::PublicKeyData;
    rcgen::KeyPair::generate()
        .unwrap()
        .subject_public_key_info()
}
