//! CertificateAuthority: rotation schedule, forced operations, bundle and config.

mod common;

use std::time::Duration;

use common::*;
use spiffe_core::{JwtSvid, verify_x509_svid};
use svid_ca::{CaError, ConfigError, KeyType, SlotKind, SlotState};

const HOUR: Duration = Duration::from_secs(3600);

#[test]
fn bun_10_rotation_across_several_ca_lifetimes_keeps_every_valid_svid_verifiable() {
    let (ca, clock) = ca();
    let mut issued = Vec::new();
    let mut jwts = Vec::new();
    let mut last_bundle = ca.bundle();
    let mut last_seq = last_bundle.sequence().unwrap();
    let mut used_keys = std::collections::HashSet::new();
    let mut activations = 0;
    // Five CA lifetimes (24 h each) in 10-minute steps.
    for _ in 0..(5 * 24 * 6) {
        clock.advance(Duration::from_secs(600));
        ca.rotate().unwrap();
        let now = ca.now();
        let bundle = ca.bundle();
        let seq = bundle.sequence().unwrap();
        if *bundle != *last_bundle {
            assert!(seq > last_seq, "BUN-4: sequence must increase on change");
        }
        let svid = ca.sign_public_key(&fresh_spki(), &ent("/w")).unwrap();
        if used_keys.insert(svid.authority_id.clone()) {
            activations += 1;
            // The key that signed this was published before it was used.
            let cert = ca
                .authorities()
                .into_iter()
                .find(|a| a.id == svid.authority_id)
                .unwrap()
                .certificate
                .unwrap();
            if activations > 1 {
                assert!(
                    last_bundle.x509().authorities().contains(&cert),
                    "a key signed before it was in the bundle"
                );
            }
        }
        issued.push(svid);
        jwts.push(ca.issue_jwt_svid(&ent("/w"), &["aud".into()]).unwrap());
        for s in issued.iter().filter(|s| s.not_after > now) {
            verify_x509_svid(&s.chain, bundle.x509(), now).unwrap();
        }
        for j in jwts.iter().filter(|j| j.expiry() > now) {
            JwtSvid::validate(j.token(), bundle.jwt(), "aud", now).unwrap();
        }
        // Expired keys leave the bundle.
        for a in ca.authorities() {
            assert!(a.not_after > now);
        }
        assert!(bundle.x509().authorities().len() <= 3);
        last_bundle = bundle;
        last_seq = seq;
    }
    assert!(activations >= 5, "only {activations} activations");
}

fn fresh_spki() -> Vec<u8> {
    use rcgen::PublicKeyData;
    rcgen::KeyPair::generate()
        .unwrap()
        .subject_public_key_info()
}

#[test]
fn bun_10_prepared_key_is_published_before_activation_on_schedule() {
    let (ca, clock) = ca();
    let count = |kind| ca.authorities().iter().filter(|a| a.kind == kind).count();
    assert_eq!(count(SlotKind::X509), 1);
    // Half of 24 h remains after 12 h: the next key is prepared.
    clock.advance(11 * HOUR);
    ca.rotate().unwrap();
    assert_eq!(count(SlotKind::X509), 1);
    clock.advance(HOUR);
    ca.rotate().unwrap();
    let auths = ca.authorities();
    let prepared = auths
        .iter()
        .find(|a| a.kind == SlotKind::X509 && a.state == SlotState::Prepared)
        .unwrap();
    assert!(
        ca.bundle()
            .x509()
            .authorities()
            .contains(prepared.certificate.as_ref().unwrap())
    );
    assert!(
        auths
            .iter()
            .any(|a| a.kind == SlotKind::Jwt && a.state == SlotState::Prepared)
    );
    assert!(ca.bundle().jwt().keys().count() == 2);
    // A sixth of 24 h (4 h) remains at 20 h: activation.
    clock.advance(8 * HOUR);
    ca.rotate().unwrap();
    let states: Vec<_> = ca
        .authorities()
        .into_iter()
        .filter(|a| a.kind == SlotKind::X509)
        .map(|a| (a.id, a.state))
        .collect();
    assert_eq!(states.len(), 2);
    assert_eq!(states[0].1, SlotState::Old);
    assert_eq!(states[1].1, SlotState::Active);
    assert_eq!(states[1].0, prepared.id);
}

#[test]
fn bun_4_sequence_bumps_on_every_change_and_refresh_hint_is_configurable() {
    let mut cfg = config();
    cfg.refresh_hint = Duration::from_secs(42);
    let (ca, _clock) = ca_with(cfg);
    let b1 = ca.bundle();
    assert_eq!(b1.refresh_hint(), Some(Duration::from_secs(42)));
    let s1 = b1.sequence().unwrap();
    assert!(!ca.rotate().unwrap(), "nothing due yet");
    assert_eq!(ca.bundle().sequence(), Some(s1));
    ca.prepare(SlotKind::Jwt).unwrap();
    assert_eq!(ca.bundle().sequence(), Some(s1 + 1));
    ca.activate(SlotKind::Jwt).unwrap();
    assert_eq!(ca.bundle().sequence(), Some(s1 + 2));
    let json = String::from_utf8(ca.bundle().to_json()).unwrap();
    assert!(json.contains("\"spiffe_refresh_hint\":42"), "{json}");
}

#[test]
fn bun_10_forced_prepare_activate_taint_revoke() {
    let (ca, _clock) = ca();
    let first = ca.sign_public_key(&fresh_spki(), &ent("/a")).unwrap();
    assert!(matches!(
        ca.activate(SlotKind::X509),
        Err(CaError::NothingPrepared { .. })
    ));
    let id = ca.prepare(SlotKind::X509).unwrap();
    assert!(matches!(
        ca.prepare(SlotKind::X509),
        Err(CaError::AlreadyPrepared { id: ref p, .. }) if *p == id
    ));
    // Cannot taint the active key.
    assert!(matches!(
        ca.taint(SlotKind::X509, &first.authority_id),
        Err(CaError::NotOld {
            state: SlotState::Active,
            ..
        })
    ));
    ca.activate(SlotKind::X509).unwrap();
    let second = ca.sign_public_key(&fresh_spki(), &ent("/a")).unwrap();
    assert_eq!(second.authority_id, id);
    assert!(matches!(
        ca.revoke(SlotKind::X509, &first.authority_id),
        Err(CaError::NotTainted { .. })
    ));
    ca.taint(SlotKind::X509, &first.authority_id).unwrap();
    assert!(ca.is_tainted(&first.authority_id));
    assert!(matches!(
        ca.taint(SlotKind::X509, &first.authority_id),
        Err(CaError::AlreadyTainted { .. })
    ));
    let now = ca.now();
    // Tainted keys still verify until revoked.
    verify_x509_svid(&first.chain, ca.bundle().x509(), now).unwrap();
    ca.revoke(SlotKind::X509, &first.authority_id).unwrap();
    let err = verify_x509_svid(&first.chain, ca.bundle().x509(), now).unwrap_err();
    assert!(
        matches!(
            err,
            spiffe_core::VerifyError::Chain {
                source: webpki::Error::UnknownIssuer,
                ..
            }
        ),
        "the revoked key's SVID no longer chains to the bundle: {err:?}"
    );
    verify_x509_svid(&second.chain, ca.bundle().x509(), now).unwrap();
    assert!(matches!(
        ca.revoke(SlotKind::X509, "nope"),
        Err(CaError::UnknownAuthority { .. })
    ));
}

#[test]
fn bun_10_jwt_13_revoked_jwt_key_leaves_the_bundle() {
    let (ca, _clock) = ca();
    let old = ca.issue_jwt_svid(&ent("/a"), &["x".into()]).unwrap();
    ca.prepare(SlotKind::Jwt).unwrap();
    ca.activate(SlotKind::Jwt).unwrap();
    ca.taint(SlotKind::Jwt, old.kid()).unwrap();
    ca.revoke(SlotKind::Jwt, old.kid()).unwrap();
    assert!(ca.bundle().jwt().key(old.kid()).is_none());
    let err = JwtSvid::validate(old.token(), ca.bundle().jwt(), "x", ca.now()).unwrap_err();
    assert!(
        matches!(&err, spiffe_core::JwtError::UnknownKid { .. }),
        "{err:?}"
    );
}

#[test]
fn config_rejects_svid_ttl_that_would_outlive_the_ca() {
    let mut cfg = config();
    cfg.x509_svid_ttl = 5 * HOUR; // 24 h / 6 = 4 h is the maximum
    let err = svid_ca::CertificateAuthority::builder(cfg)
        .build()
        .unwrap_err();
    assert!(matches!(
        err,
        CaError::Config(ConfigError::SvidOutlivesCa { kind: "X509-SVID", max, .. }) if max == 4 * HOUR
    ));
    let mut cfg = config();
    cfg.jwt_svid_ttl = Duration::ZERO;
    assert!(matches!(
        svid_ca::CertificateAuthority::builder(cfg).build(),
        Err(CaError::Config(ConfigError::ZeroSvidTtl {
            kind: "JWT-SVID"
        }))
    ));
    let mut cfg = config();
    cfg.ca_ttl = Duration::from_secs(10);
    assert!(matches!(
        svid_ca::CertificateAuthority::builder(cfg).build(),
        Err(CaError::Config(ConfigError::CaTtlTooShort { .. }))
    ));
}

#[test]
fn svid_never_outlives_its_signing_certificate() {
    let (ca, clock) = ca();
    // Force the active key to its last hour without rotating.
    clock.advance(23 * HOUR + Duration::from_secs(1800));
    let svid = ca.sign_public_key(&fresh_spki(), &ent("/a")).unwrap();
    let signer = ca
        .authorities()
        .into_iter()
        .find(|a| a.id == svid.authority_id)
        .unwrap();
    assert_eq!(svid.not_after, signer.not_after);
}

#[test]
fn x509_4_ca_certificate_is_a_signing_svid_for_each_key_type() {
    for kt in [KeyType::EcP256, KeyType::EcP384, KeyType::Rsa2048] {
        let mut cfg = config();
        cfg.x509_key_type = kt;
        cfg.jwt_key_type = kt;
        let (ca, _clock) = ca_with(cfg);
        let svid = ca.issue_x509_svid(&ent("/k")).unwrap();
        verify_x509_svid(svid.chain(), ca.bundle().x509(), ca.now()).unwrap();
        let jwt = ca.issue_jwt_svid(&ent("/k"), &["a".into()]).unwrap();
        JwtSvid::validate(jwt.token(), ca.bundle().jwt(), "a", ca.now()).unwrap();
        let bundle = ca.bundle();
        let root = &bundle.x509().authorities()[0];
        let (_, cert) = x509_parser::parse_x509_certificate(root).unwrap();
        assert!(cert.is_ca());
        assert!(cert.key_usage().unwrap().unwrap().value.key_cert_sign());
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert_eq!(
            format!("{:?}", san.value.general_names[0]),
            "URI(\"spiffe://example.org\")"
        );
    }
}
