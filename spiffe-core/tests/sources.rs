//! Source traits: in-memory and file-backed implementations, generations
//! and change notification.

use std::sync::Arc;
use std::time::Duration;

use spiffe_core::source::{FileError, bundle_from_file, svid_from_pem_files};
use spiffe_core::{
    BundleSet, BundleSource, MemoryBundleSource, MemorySvidSource, SpiffeBundle, SvidSource,
    TrustDomain, X509Svid,
};
use test_support::TestCa;

fn td(s: &str) -> TrustDomain {
    s.parse().unwrap()
}

fn svid(ca: &TestCa, id: &str) -> X509Svid {
    let leaf = ca.leaf(id);
    X509Svid::from_der(&leaf.chain_der(), &leaf.key_der).unwrap()
}

#[tokio::test(start_paused = true)]
async fn svid_source_publishes_each_change() {
    let ca = TestCa::new("example.org");
    let source = Arc::new(MemorySvidSource::empty());
    assert!(source.x509_svid().is_none());
    let mut rx = source.subscribe();
    let writer = {
        let source = source.clone();
        let a = svid(&ca, "spiffe://example.org/a");
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            source.set(a);
        })
    };
    rx.changed().await.unwrap();
    assert_eq!(*rx.borrow_and_update(), 1);
    assert_eq!(
        source.x509_svid().unwrap().spiffe_id().as_str(),
        "spiffe://example.org/a"
    );
    writer.await.unwrap();
    source.set(svid(&ca, "spiffe://example.org/b"));
    assert_eq!(source.generation(), 2);
    source.withdraw();
    assert_eq!(source.generation(), 3);
    assert!(
        source.x509_svid().is_none(),
        "withdrawn SVIDs are not served"
    );
    assert!(format!("{source:?}").contains("generation: 3"));
}

#[test]
fn readers_keep_the_snapshot_they_loaded() {
    let ca = TestCa::new("example.org");
    let source = MemorySvidSource::new(svid(&ca, "spiffe://example.org/old"));
    let held = source.x509_svid().unwrap();
    source.set(svid(&ca, "spiffe://example.org/new"));
    assert_eq!(held.spiffe_id().as_str(), "spiffe://example.org/old");
    assert_eq!(
        source.x509_svid().unwrap().spiffe_id().as_str(),
        "spiffe://example.org/new"
    );
}

#[test]
fn bundle_source_updates_one_trust_domain_at_a_time() {
    let source = MemoryBundleSource::new(BundleSet::new());
    assert_eq!(source.generation(), 1);
    source.insert(SpiffeBundle::empty(td("a.org")));
    source.insert(SpiffeBundle::empty(td("b.org")));
    let snap = source.bundle_set();
    source.remove(&td("a.org"));
    assert_eq!(snap.len(), 2, "an old snapshot is unaffected");
    assert_eq!(source.bundle_set().len(), 1);
    assert_eq!(source.generation(), 4);
    assert!(format!("{source:?}").contains("b.org"));
}

#[test]
fn file_loaders_read_pem_and_json_and_report_the_path() {
    let dir = std::env::temp_dir().join(format!("spiffe-core-src-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = TestCa::new("example.org");
    let leaf = ca.leaf("spiffe://example.org/w");
    let (cert, key) = (dir.join("svid.pem"), dir.join("key.pem"));
    std::fs::write(&cert, leaf.chain_pem()).unwrap();
    std::fs::write(&key, leaf.key_pem()).unwrap();
    let s = svid_from_pem_files(&cert, &key).unwrap();
    assert_eq!(s.spiffe_id().as_str(), "spiffe://example.org/w");

    let pem = dir.join("bundle.pem");
    std::fs::write(&pem, test_support::pem("CERTIFICATE", ca.cert())).unwrap();
    let b = bundle_from_file(td("example.org"), &pem).unwrap();
    assert_eq!(b.x509().authorities().len(), 1);
    let json = dir.join("bundle.json");
    std::fs::write(&json, b.to_json()).unwrap();
    assert_eq!(bundle_from_file(td("example.org"), &json).unwrap(), b);

    let missing = dir.join("missing.pem");
    let err = svid_from_pem_files(&missing, &key).unwrap_err();
    assert!(matches!(err, FileError::Io { .. }));
    assert!(err.to_string().contains("missing.pem"));
    std::fs::write(&json, b"{\"keys\": 1}").unwrap();
    assert!(matches!(
        bundle_from_file(td("example.org"), &json),
        Err(FileError::Bundle { .. })
    ));
    std::fs::write(&key, b"not a key").unwrap();
    assert!(matches!(
        svid_from_pem_files(&cert, &key),
        Err(FileError::X509 { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}
