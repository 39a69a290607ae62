use std::time::SystemTime;

use rustls::client::danger::ServerCertVerifier;
use rustls::server::danger::ClientCertVerifier;
use spiffe_core::{BundleSet, MemoryBundleSource, MemorySvidSource, SpiffeId, X509Bundle};
use test_support::{KeyUsagePurpose, LeafSpec, TestCa};

use super::*;
use crate::authorizer;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn now() -> UnixTime {
    unix(SystemTime::now())
}

fn unix(t: SystemTime) -> UnixTime {
    UnixTime::since_unix_epoch(t.duration_since(UNIX_EPOCH).unwrap_or_default())
}

fn svid(leaf: &test_support::Leaf) -> X509Svid {
    X509Svid::from_der(&leaf.chain_der(), &leaf.key_der).unwrap()
}

fn bundle(ca: &TestCa, td: &str) -> X509Bundle {
    X509Bundle::new(td.parse().unwrap(), vec![ca.root_cert()]).unwrap()
}

fn set_of(bundles: impl IntoIterator<Item = X509Bundle>) -> BundleSet {
    let mut set = BundleSet::new();
    for b in bundles {
        set.insert_x509(b);
    }
    set
}

struct Fixture {
    ca: TestCa,
    svids: Arc<MemorySvidSource>,
    bundles: Arc<MemoryBundleSource>,
}

fn fixture() -> Fixture {
    let ca = TestCa::new("example.org");
    let svids = Arc::new(MemorySvidSource::new(svid(
        &ca.leaf("spiffe://example.org/server"),
    )));
    let mut set = BundleSet::new();
    set.insert_x509(bundle(&ca, "example.org"));
    Fixture {
        ca,
        svids,
        bundles: Arc::new(MemoryBundleSource::new(set)),
    }
}

fn client_verifier(
    f: &Fixture,
    policy: TrustPolicy,
    a: impl crate::Authorizer,
) -> SpiffeClientVerifier {
    client_verifier_caching(f, policy, a, crate::chain_cache::DEFAULT_CAPACITY)
}

/// [`client_verifier`] with a verified-chain cache of `chain_cache` entries.
fn client_verifier_caching(
    f: &Fixture,
    policy: TrustPolicy,
    a: impl crate::Authorizer,
    chain_cache: usize,
) -> SpiffeClientVerifier {
    SpiffeClientVerifier {
        core: PeerVerifier::new(
            f.svids.clone(),
            f.bundles.clone(),
            policy,
            &provider(),
            Arc::new(VerifiedPeers::new()),
            chain_cache,
        ),
        authorizer: DynAuthorizer(Arc::new(a)),
        optional: false,
    }
}

fn verify_client(v: &SpiffeClientVerifier, leaf: &test_support::Leaf) -> Result<(), rustls::Error> {
    v.verify_client_cert(&leaf.chain[0], &leaf.chain[1..], now())
        .map(|_| ())
}

fn cause(e: &rustls::Error) -> &PeerRejected {
    match e {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(c))) => c
            .downcast_ref::<PeerRejected>()
            .expect("our cause is attached"),
        other => panic!("expected CertificateError::Other, got {other:?}"),
    }
}

#[test]
fn x509_6_valid_client_of_local_trust_domain_is_accepted() {
    let f = fixture();
    let v = client_verifier(&f, TrustPolicy::local_only(), authorizer::any());
    verify_client(&v, &f.ca.leaf("spiffe://example.org/client")).unwrap();
}

#[test]
fn client_through_intermediate_is_accepted() {
    let f = fixture();
    let inter = f.ca.intermediate(test_support::CaSpec::new("example.org"));
    let v = client_verifier(&f, TrustPolicy::local_only(), authorizer::any());
    let leaf = inter.leaf("spiffe://example.org/client");
    assert_eq!(leaf.chain.len(), 2);
    verify_client(&v, &leaf).unwrap();
}

#[test]
fn expired_svid_maps_to_expired() {
    let f = fixture();
    let v = client_verifier(&f, TrustPolicy::local_only(), authorizer::any());
    let leaf = f.ca.leaf_with(
        LeafSpec::new("spiffe://example.org/client")
            .valid(time::Duration::hours(-2), time::Duration::hours(-1)),
    );
    let err = verify_client(&v, &leaf).unwrap_err();
    assert_eq!(
        err,
        rustls::Error::InvalidCertificate(CertificateError::Expired)
    );
}

#[test]
fn x509_6_foreign_trust_domain_without_bundle_is_unknown_issuer() {
    let f = fixture();
    let foreign = TestCa::new("foreign.org");
    // Even the permissive policy cannot trust a trust domain without a bundle.
    let v = client_verifier(&f, TrustPolicy::any_in_bundle_set(), authorizer::any());
    let err = verify_client(&v, &foreign.leaf("spiffe://foreign.org/w")).unwrap_err();
    assert_eq!(
        err,
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
    );
}

#[test]
fn fed_12_federated_trust_domain_needs_policy_and_own_bundle() {
    let f = fixture();
    let partner = TestCa::new("partner.org");
    f.bundles.set(set_of([
        bundle(&f.ca, "example.org"),
        bundle(&partner, "partner.org"),
    ]));
    let leaf = partner.leaf("spiffe://partner.org/w");
    // Default policy: local only, though the bundle is present.
    let local = client_verifier(&f, TrustPolicy::local_only(), authorizer::any());
    assert_eq!(
        verify_client(&local, &leaf).unwrap_err(),
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
    );
    let federated = client_verifier(
        &f,
        TrustPolicy::local_only().with_federated(["partner.org".parse().unwrap()]),
        authorizer::any(),
    );
    verify_client(&federated, &leaf).unwrap();
    // A partner.org leaf signed by example.org's CA: the bundle of the
    // leaf's own trust domain is used, never a pooled set.
    let forged = f.ca.leaf("spiffe://partner.org/w");
    assert_eq!(
        verify_client(&federated, &forged).unwrap_err(),
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
    );
}

#[test]
fn self_signed_cert_with_valid_looking_id_is_unknown_issuer() {
    let f = fixture();
    let rogue = TestCa::root(test_support::CaSpec::new("example.org"));
    let v = client_verifier(&f, TrustPolicy::local_only(), authorizer::any());
    let err = verify_client(&v, &rogue.leaf("spiffe://example.org/client")).unwrap_err();
    assert_eq!(
        err,
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
    );
}

#[test]
fn authorizer_rejection_is_application_verification_failure() {
    let f = fixture();
    let v = client_verifier(
        &f,
        TrustPolicy::local_only(),
        authorizer::exact("spiffe://example.org/frontend".parse().unwrap()),
    );
    verify_client(&v, &f.ca.leaf("spiffe://example.org/frontend")).unwrap();
    let err = verify_client(&v, &f.ca.leaf("spiffe://example.org/backend")).unwrap_err();
    assert_eq!(
        err,
        rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
    );
}

#[test]
fn x509_7_leaf_with_key_cert_sign_is_rejected_with_cause() {
    let f = fixture();
    let v = client_verifier(&f, TrustPolicy::local_only(), authorizer::any());
    let leaf = f.ca.leaf_with(
        LeafSpec::new("spiffe://example.org/w").key_usages(Some(vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
        ])),
    );
    let err = verify_client(&v, &leaf).unwrap_err();
    assert_eq!(
        cause(&err),
        &PeerRejected::Verify(VerifyError::Svid(X509Error::LeafKeyCertSign))
    );
}

#[test]
fn x509_1_leaf_with_two_uris_is_rejected_with_cause() {
    let f = fixture();
    let v = client_verifier(&f, TrustPolicy::local_only(), authorizer::any());
    let leaf = f.ca.leaf_with(
        LeafSpec::new("spiffe://example.org/a")
            .uris(&["spiffe://example.org/a", "spiffe://example.org/b"]),
    );
    let err = verify_client(&v, &leaf).unwrap_err();
    assert_eq!(
        cause(&err),
        &PeerRejected::Verify(VerifyError::Svid(X509Error::MultipleUriSans { count: 2 }))
    );
}

#[test]
fn leaf_with_a_broken_signature_is_bad_signature() {
    let f = fixture();
    let v = client_verifier(&f, TrustPolicy::local_only(), authorizer::any());
    let leaf = f.ca.leaf("spiffe://example.org/client");
    // The last byte belongs to the signature's `s`: the certificate still
    // parses, its signature no longer verifies under the CA's key.
    let mut der = leaf.chain[0].to_vec();
    let last = der.len() - 1;
    der[last] ^= 0x01;
    let err = v
        .verify_client_cert(&CertificateDer::from(der), &leaf.chain[1..], now())
        .unwrap_err();
    assert_eq!(
        err,
        rustls::Error::InvalidCertificate(CertificateError::BadSignature)
    );
}

#[test]
fn garbage_certificate_is_bad_encoding() {
    let f = fixture();
    let v = client_verifier(&f, TrustPolicy::local_only(), authorizer::any());
    let err = v
        .verify_client_cert(
            &CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01]),
            &[],
            now(),
        )
        .unwrap_err();
    assert_eq!(
        err,
        rustls::Error::InvalidCertificate(CertificateError::BadEncoding)
    );
}

#[test]
fn server_verifier_ignores_dns_names_and_uses_per_target_authorizers() {
    let f = fixture();
    let targets = TargetAuthorizers::new().target(
        "localhost",
        authorizer::exact("spiffe://example.org/server".parse().unwrap()),
    );
    let v = SpiffeServerVerifier {
        core: PeerVerifier::new(
            f.svids.clone(),
            f.bundles.clone(),
            TrustPolicy::local_only(),
            &provider(),
            Arc::new(VerifiedPeers::new()),
            crate::chain_cache::DEFAULT_CAPACITY,
        ),
        authorization: ServerAuthorization::PerTarget(targets),
    };
    // URI-only SVID (no DNS SAN), dialed as localhost: accepted.
    let leaf = f.ca.leaf("spiffe://example.org/server");
    let localhost = ServerName::try_from("localhost").unwrap();
    v.verify_server_cert(&leaf.chain[0], &[], &localhost, &[], now())
        .unwrap();
    // Another ID at that target: refused.
    let other = f.ca.leaf("spiffe://example.org/other");
    assert_eq!(
        v.verify_server_cert(&other.chain[0], &[], &localhost, &[], now())
            .unwrap_err(),
        rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
    );
    // A target without an authorizer: refused.
    let unknown = ServerName::try_from("db.local").unwrap();
    assert_eq!(
        v.verify_server_cert(&leaf.chain[0], &[], &unknown, &[], now())
            .unwrap_err(),
        rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
    );
}

#[test]
fn resolver_builds_key_once_per_generation() {
    let f = fixture();
    let r = SvidResolver::new(f.svids.clone(), provider());
    let a = r.current().unwrap();
    let b = r.current().unwrap();
    assert!(Arc::ptr_eq(&a, &b), "same generation: cached key");
    f.svids
        .set(svid(&f.ca.leaf("spiffe://example.org/rotated")));
    let c = r.current().unwrap();
    assert!(!Arc::ptr_eq(&a, &c), "new generation: new key");
    let id = spiffe_core::verify_x509_svid(
        &c.cert,
        &*f.bundles.bundle_set(),
        std::time::SystemTime::now(),
    )
    .unwrap();
    assert_eq!(
        id,
        "spiffe://example.org/rotated".parse::<SpiffeId>().unwrap()
    );
    f.svids.withdraw();
    assert!(r.current().is_none(), "withdrawn SVID: nothing presented");
}

#[test]
fn verifier_reads_bundle_rotation_per_handshake() {
    let f = fixture();
    let v = client_verifier(&f, TrustPolicy::local_only(), authorizer::any());
    let new_ca = TestCa::new("example.org");
    let leaf = new_ca.leaf("spiffe://example.org/client");
    assert_eq!(
        verify_client(&v, &leaf),
        Err(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer
        ))
    );
    f.bundles.set(set_of([X509Bundle::new(
        "example.org".parse().unwrap(),
        vec![f.ca.root_cert(), new_ca.root_cert()],
    )
    .unwrap()]));
    verify_client(&v, &leaf).unwrap();
}

#[test]
fn only_verified_and_authorized_peers_are_recorded_for_the_connection() {
    let f = fixture();
    let v = client_verifier(
        &f,
        TrustPolicy::local_only(),
        authorizer::exact("spiffe://example.org/client".parse().unwrap()),
    );
    let good = f.ca.leaf("spiffe://example.org/client");
    let unauthorized = f.ca.leaf("spiffe://example.org/intruder");
    let foreign = TestCa::new("example.org").leaf("spiffe://example.org/client");
    verify_client(&v, &good).unwrap();
    assert_eq!(
        verify_client(&v, &unauthorized),
        Err(rustls::Error::InvalidCertificate(
            CertificateError::ApplicationVerificationFailure
        ))
    );
    assert_eq!(
        verify_client(&v, &foreign),
        Err(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer
        ))
    );
    let recorded = v.core.peers.get(&good.chain[0]).expect("the verified leaf");
    assert_eq!(recorded.spiffe_id().as_str(), "spiffe://example.org/client");
    assert_eq!(v.core.peers.get(&unauthorized.chain[0]), None);
    assert_eq!(v.core.peers.get(&foreign.chain[0]), None);
}

#[test]
fn client_certificates_are_mandatory_unless_made_optional() {
    let f = fixture();
    let mut v = client_verifier(&f, TrustPolicy::local_only(), authorizer::any());
    assert!(v.client_auth_mandatory());
    v.optional = true;
    assert!(!v.client_auth_mandatory());
    // A certificate that is presented is still verified and authorized.
    let foreign = TestCa::new("foreign.org");
    let err = verify_client(&v, &foreign.leaf("spiffe://foreign.org/w")).unwrap_err();
    assert_eq!(
        err,
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
    );
    let v = SpiffeClientVerifier {
        optional: true,
        ..client_verifier(
            &f,
            TrustPolicy::local_only(),
            authorizer::exact("spiffe://example.org/a".parse().unwrap()),
        )
    };
    let err = verify_client(&v, &f.ca.leaf("spiffe://example.org/b")).unwrap_err();
    assert_eq!(
        err,
        rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
    );
}

#[test]
fn a_chain_verified_once_is_kept_and_each_new_chain_adds_one() {
    let f = fixture();
    let v = client_verifier(&f, TrustPolicy::local_only(), authorizer::any());
    let leaf = f.ca.leaf("spiffe://example.org/client");
    verify_client(&v, &leaf).unwrap();
    verify_client(&v, &leaf).unwrap();
    assert_eq!(v.core.chains.len(), 1);
    verify_client(&v, &f.ca.leaf("spiffe://example.org/other")).unwrap();
    assert_eq!(v.core.chains.len(), 2);
    // Refusals are not kept.
    let foreign = TestCa::new("example.org").leaf("spiffe://example.org/client");
    assert!(verify_client(&v, &foreign).is_err());
    assert!(verify_client(&v, &foreign).is_err());
    assert_eq!(v.core.chains.len(), 2);
}

#[test]
fn a_cached_chain_is_refused_once_its_authority_leaves_the_bundle() {
    let f = fixture();
    let v = client_verifier(&f, TrustPolicy::local_only(), authorizer::any());
    let leaf = f.ca.leaf("spiffe://example.org/client");
    verify_client(&v, &leaf).unwrap();
    // The trust domain moves to a new CA and drops the old one.
    f.bundles
        .set(set_of([bundle(&TestCa::new("example.org"), "example.org")]));
    assert_eq!(
        verify_client(&v, &leaf),
        Err(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer
        ))
    );
}

#[test]
fn a_cached_chain_is_refused_once_its_leaf_expires() {
    let f = fixture();
    let v = client_verifier(&f, TrustPolicy::local_only(), authorizer::any());
    let leaf = f.ca.leaf("spiffe://example.org/client");
    verify_client(&v, &leaf).unwrap();
    let (_, until) = v.core.peers.get(&leaf.chain[0]).unwrap().path_valid();
    // The last second of the period still holds; the next does not.
    v.verify_client_cert(&leaf.chain[0], &[], unix(until))
        .unwrap();
    assert_eq!(
        v.verify_client_cert(&leaf.chain[0], &[], unix(until + Duration::from_secs(1)))
            .map(|_| ()),
        Err(rustls::Error::InvalidCertificate(CertificateError::Expired))
    );
}

#[test]
fn a_cached_chain_is_refused_once_its_intermediate_expires() {
    let f = fixture();
    let mut spec = test_support::CaSpec::new("example.org");
    spec.not_after = time::OffsetDateTime::now_utc() + time::Duration::minutes(10);
    let inter = f.ca.intermediate(spec.clone());
    let v = client_verifier(&f, TrustPolicy::local_only(), authorizer::any());
    let leaf = inter.leaf("spiffe://example.org/client");
    verify_client(&v, &leaf).unwrap();
    // The leaf is good for an hour, its issuer for ten minutes.
    let after = UnixTime::since_unix_epoch(Duration::from_secs(
        spec.not_after.unix_timestamp() as u64 + 1,
    ));
    assert_eq!(
        v.verify_client_cert(&leaf.chain[0], &leaf.chain[1..], after)
            .map(|_| ()),
        Err(rustls::Error::InvalidCertificate(CertificateError::Expired))
    );
}

#[test]
fn a_cached_chain_still_meets_the_authorizer_on_every_handshake() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let f = fixture();
    let allow = Arc::new(AtomicBool::new(true));
    let gate = allow.clone();
    let v = client_verifier(&f, TrustPolicy::local_only(), move |_: &SpiffeId| {
        gate.load(Ordering::SeqCst)
    });
    let leaf = f.ca.leaf("spiffe://example.org/client");
    verify_client(&v, &leaf).unwrap();
    allow.store(false, Ordering::SeqCst);
    assert_eq!(
        verify_client(&v, &leaf),
        Err(rustls::Error::InvalidCertificate(
            CertificateError::ApplicationVerificationFailure
        ))
    );
}

#[test]
fn a_cached_chain_is_checked_again_when_the_local_trust_domain_changes() {
    let f = fixture();
    let v = client_verifier(&f, TrustPolicy::local_only(), authorizer::any());
    let leaf = f.ca.leaf("spiffe://example.org/client");
    verify_client(&v, &leaf).unwrap();
    // This workload now belongs to another trust domain: example.org is
    // foreign and the local-only policy no longer admits it.
    let other = TestCa::new("other.org");
    f.svids.set(svid(&other.leaf("spiffe://other.org/server")));
    assert_eq!(
        verify_client(&v, &leaf),
        Err(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer
        ))
    );
}

#[test]
fn without_the_cache_every_chain_is_verified_in_full() {
    let f = fixture();
    let v = client_verifier_caching(&f, TrustPolicy::local_only(), authorizer::any(), 0);
    let leaf = f.ca.leaf("spiffe://example.org/client");
    verify_client(&v, &leaf).unwrap();
    verify_client(&v, &leaf).unwrap();
    assert_eq!(v.core.chains.len(), 0);
}
