//! x509pop node attestation: proof of possession of a key whose
//! certificate chains to a configured CA, bound to the node's CSR.

use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use svid_ca::{
    AttestError, NodeAttestor, NodeStore, SqliteStore, SystemClock, X509PopAttestor,
    X509PopEvidence,
};
use test_support::{LeafSpec, TestCa};

fn sign(key_der: &[u8], msg: &[u8]) -> Vec<u8> {
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, key_der).unwrap();
    pair.sign(&SystemRandom::new(), msg)
        .unwrap()
        .as_ref()
        .to_vec()
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
    ca: TestCa,
    attestor: X509PopAttestor,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let ca = TestCa::new("nodes.example");
    let attestor = X509PopAttestor::new(
        "example.org".parse().unwrap(),
        &[ca.root_cert()],
        store.clone(),
        Arc::new(SystemClock),
    )
    .unwrap();
    Fixture {
        _dir: dir,
        store,
        ca,
        attestor,
    }
}

fn leaf(ca: &TestCa) -> test_support::Leaf {
    ca.leaf_with(LeafSpec::new("spiffe://nodes.example/host-1"))
}

#[test]
fn a_node_with_a_certificate_from_the_configured_ca_and_its_key_attests() {
    let f = fixture();
    let leaf = leaf(&f.ca);
    let csr = b"the node's CSR";
    let sig = sign(&leaf.key_der, &X509PopEvidence::signed_message(csr));
    let payload = X509PopEvidence::new(&leaf.chain, &sig).to_payload();
    let node = f.attestor.attest_bound(&payload, csr).unwrap();
    let fp =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &leaf.chain[0]);
    let hex: String = fp.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        node.spiffe_id.to_string(),
        format!("spiffe://example.org/node/x509pop/{hex}")
    );
    assert_eq!(node.attestor, "x509pop");
    assert!(
        node.selectors
            .iter()
            .any(|s| s.to_string() == format!("x509pop:fingerprint:{hex}"))
    );
    assert_eq!(
        f.store.attested_node(&node.spiffe_id).unwrap().as_ref(),
        Some(&node),
        "the node is on record"
    );
}

#[test]
fn a_signature_by_another_key_is_refused() {
    let f = fixture();
    let leaf = leaf(&f.ca);
    let other = leaf_with_other_key(&f.ca);
    let csr = b"csr";
    let sig = sign(&other.key_der, &X509PopEvidence::signed_message(csr));
    let payload = X509PopEvidence::new(&leaf.chain, &sig).to_payload();
    let err = f.attestor.attest_bound(&payload, csr).unwrap_err();
    assert!(
        matches!(&err, AttestError::Untrusted { reason, .. } if reason.contains("signature")),
        "{err}"
    );
}

fn leaf_with_other_key(ca: &TestCa) -> test_support::Leaf {
    ca.leaf_with(LeafSpec::new("spiffe://nodes.example/host-2"))
}

#[test]
fn a_certificate_from_an_untrusted_ca_is_refused() {
    let f = fixture();
    let rogue = TestCa::new("nodes.example");
    let leaf = leaf(&rogue);
    let csr = b"csr";
    let sig = sign(&leaf.key_der, &X509PopEvidence::signed_message(csr));
    let payload = X509PopEvidence::new(&leaf.chain, &sig).to_payload();
    let err = f.attestor.attest_bound(&payload, csr).unwrap_err();
    assert!(
        matches!(&err, AttestError::Untrusted { reason, .. } if reason.contains("UnknownIssuer")),
        "{err}"
    );
    assert!(f.store.list_attested_nodes().unwrap().is_empty());
}

#[test]
fn a_proof_for_another_csr_cannot_be_replayed() {
    let f = fixture();
    let leaf = leaf(&f.ca);
    let sig = sign(
        &leaf.key_der,
        &X509PopEvidence::signed_message(b"the real CSR"),
    );
    let payload = X509PopEvidence::new(&leaf.chain, &sig).to_payload();
    let err = f
        .attestor
        .attest_bound(&payload, b"an attacker's CSR")
        .unwrap_err();
    assert!(matches!(err, AttestError::Untrusted { .. }), "{err}");
    let err = f.attestor.attest(&payload).unwrap_err();
    assert!(matches!(err, AttestError::Unbound { .. }), "{err}");
}

#[test]
fn malformed_evidence_is_refused() {
    let f = fixture();
    for payload in [
        b"".to_vec(),
        b"{".to_vec(),
        br#"{"chain":[],"signature":""}"#.to_vec(),
        br#"{"chain":["not base64!"],"signature":""}"#.to_vec(),
        br#"{"chain":["AAAA"],"signature":"AAAA"}"#.to_vec(),
        vec![b'x'; 100_000],
    ] {
        let err = f.attestor.attest_bound(&payload, b"csr").unwrap_err();
        assert!(
            matches!(
                err,
                AttestError::Malformed {
                    attestor: "x509pop"
                }
            ),
            "{err}"
        );
    }
}
