//! SqliteStore: resume after restart, schema versions, key files, faults.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use common::*;
use spiffe_core::{SpiffeBundle, SpiffeId, verify_x509_svid};
use svid_ca::AttestedNode;
use svid_ca::{
    BundleStore, CaError, CaJournal, CaJournalStore, CertificateAuthority, EntryId, EntryStore,
    ManualClock, NodeStore, RegistrationEntry, Registry, SCHEMA_VERSION, SlotKind, SqliteStore,
    Store, StoreError, TokenUse,
};

fn build(dir: &Path, clock: &ManualClock) -> Result<CertificateAuthority, CaError> {
    let store = Arc::new(SqliteStore::open(dir)?);
    CertificateAuthority::builder(config())
        .clock(Arc::new(clock.clone()))
        .store(store)
        .build()
}

#[test]
fn ca_resumes_with_the_same_keys_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(start());
    let ca = build(dir.path(), &clock).unwrap();
    ca.prepare(SlotKind::X509).unwrap();
    let svid = ca.issue_x509_svid(&ent("/w")).unwrap();
    let jwt = ca.issue_jwt_svid(&ent("/w"), &["a".into()]).unwrap();
    let before = ca.authorities();
    let bundle = ca.bundle();
    drop(ca);
    let ca = build(dir.path(), &clock).unwrap();
    assert_eq!(ca.authorities(), before);
    assert_eq!(*ca.bundle(), *bundle);
    verify_x509_svid(svid.chain(), ca.bundle().x509(), ca.now()).unwrap();
    spiffe_core::JwtSvid::validate(jwt.token(), ca.bundle().jwt(), "a", ca.now()).unwrap();
    // New SVIDs come from the same active key.
    let again = ca.sign_public_key(&spki(), &ent("/w")).unwrap();
    let active = before
        .iter()
        .find(|a| a.kind == SlotKind::X509 && a.state == svid_ca::SlotState::Active)
        .unwrap();
    assert_eq!(again.authority_id, active.id);
}

fn spki() -> Vec<u8> {
    use rcgen::PublicKeyData;
    rcgen::KeyPair::generate()
        .unwrap()
        .subject_public_key_info()
}

#[test]
fn key_files_are_private_and_keys_are_not_in_the_database_or_debug_output() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(start());
    let ca = build(dir.path(), &clock).unwrap();
    let keys = dir.path().join("keys");
    assert_eq!(
        std::fs::metadata(&keys).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let files: Vec<_> = std::fs::read_dir(&keys).unwrap().flatten().collect();
    assert_eq!(files.len(), 2, "one X.509 and one JWT key");
    let db = std::fs::read(dir.path().join("svid-ca.db")).unwrap_or_default();
    let wal = std::fs::read(dir.path().join("svid-ca.db-wal")).unwrap_or_default();
    for f in &files {
        assert_eq!(f.metadata().unwrap().permissions().mode() & 0o777, 0o600);
        let key = std::fs::read(f.path()).unwrap();
        for hay in [&db, &wal] {
            assert!(!hay.windows(key.len()).any(|w| w == key.as_slice()));
        }
    }
    let printed_ca = format!("{ca:?}");
    drop(ca); // one store at a time holds the directory
    let store = SqliteStore::open(dir.path()).unwrap();
    let journal: CaJournal = store.load_ca_journal().unwrap().unwrap();
    let printed = format!("{journal:?} {printed_ca}");
    assert!(printed.contains("<redacted>"));
    for s in &journal.slots {
        let hex: String = s.key_pkcs8.iter().map(|b| format!("{b:02x}")).collect();
        assert!(!printed.contains(&hex[..40]));
        assert!(!printed.contains(&format!("{:?}", &s.key_pkcs8[..16])));
    }
}

#[test]
fn store_with_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    drop(store);
    let conn = rusqlite::Connection::open(dir.path().join("svid-ca.db")).unwrap();
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    drop(conn);
    let err = SqliteStore::open(dir.path()).unwrap_err();
    assert!(
        matches!(err, StoreError::SchemaTooNew { found, supported } if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION)
    );
    assert!(err.to_string().contains("newer"));
}

#[test]
fn journal_of_another_trust_domain_or_with_a_swapped_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(start());
    drop(build(dir.path(), &clock).unwrap());
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let mut other = config();
    other.trust_domain = "other.org".parse().unwrap();
    assert!(matches!(
        CertificateAuthority::builder(other).store(store).build(),
        Err(CaError::JournalTrustDomain { .. })
    ));
    // Replace the X.509 key file with a different key.
    let store = SqliteStore::open(dir.path()).unwrap();
    let journal = store.load_ca_journal().unwrap().unwrap();
    let x509 = journal
        .slots
        .iter()
        .find(|s| s.info.kind == SlotKind::X509)
        .unwrap();
    let path = dir
        .path()
        .join("keys")
        .join(format!("{}.key", x509.info.id));
    std::fs::write(&path, rcgen::KeyPair::generate().unwrap().serialize_der()).unwrap();
    drop(store);
    assert!(matches!(
        build(dir.path(), &clock),
        Err(CaError::JournalKeyMismatch { .. })
    ));
}

#[test]
fn entries_nodes_tokens_and_federated_bundles_persist() {
    let dir = tempfile::tempdir().unwrap();
    let td = TD.parse().unwrap();
    let max = config().max_svid_ttl();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let reg = Registry::with_store(td, max, store.clone()).unwrap();
    let mut e = RegistrationEntry::new(
        "spiffe://example.org/w".parse().unwrap(),
        "spiffe://example.org/node/n".parse().unwrap(),
        vec!["unix:uid:1".parse().unwrap()],
    )
    .unwrap();
    e.dns_names = vec!["w.example.org".into()];
    e.federates_with = vec!["other.org".parse().unwrap()];
    e.hint = Some("internal".into());
    e.admin = true;
    e.expires_at = Some(start());
    let created = reg.create(e.clone()).unwrap();
    let gone = reg
        .create(
            RegistrationEntry::new(
                "spiffe://example.org/x".parse().unwrap(),
                "spiffe://example.org/node/n".parse().unwrap(),
                vec!["unix:uid:2".parse().unwrap()],
            )
            .unwrap(),
        )
        .unwrap();
    reg.delete(&gone.id).unwrap();
    let node = AttestedNode {
        spiffe_id: "spiffe://example.org/node/n".parse().unwrap(),
        attestor: "join_token".into(),
        selectors: ["join_token:abc".parse().unwrap()].into_iter().collect(),
        attested_at: start(),
    };
    store.put_attested_node(&node).unwrap();
    let fed = SpiffeBundle::parse(
        "other.org".parse().unwrap(),
        br#"{"keys":[],"spiffe_sequence":3}"#,
    )
    .unwrap();
    store.put_federated_bundle(&fed).unwrap();
    store
        .create_join_token("ab", SystemTime::UNIX_EPOCH)
        .unwrap();
    drop((reg, store));
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let reg = Registry::with_store(TD.parse().unwrap(), max, store.clone()).unwrap();
    assert_eq!(reg.len(), 1);
    assert_eq!(*reg.get(&created.id).unwrap(), e);
    assert!(reg.get(&gone.id).is_none());
    let id: SpiffeId = "spiffe://example.org/node/n".parse().unwrap();
    assert_eq!(store.attested_node(&id).unwrap(), Some(node.clone()));
    assert_eq!(store.federated_bundles().unwrap(), vec![fed]);
    // Expired: reported, and left in place (nothing written, node included).
    let t0 = SystemTime::UNIX_EPOCH;
    let node_ab = AttestedNode {
        spiffe_id: "spiffe://example.org/node/ab".parse().unwrap(),
        ..node.clone()
    };
    assert_eq!(
        store.consume_join_token("ab", t0, &node_ab).unwrap(),
        TokenUse::Expired(t0)
    );
    assert_eq!(
        store.consume_join_token("ab", t0, &node_ab).unwrap(),
        TokenUse::Expired(t0)
    );
    assert_eq!(store.attested_node(&node_ab.spiffe_id).unwrap(), None);
    // Consumed: the token goes and its node is recorded, together.
    store.create_join_token("cd", start()).unwrap();
    let before = start() - std::time::Duration::from_secs(1);
    let node_cd = AttestedNode {
        spiffe_id: "spiffe://example.org/node/cd".parse().unwrap(),
        ..node.clone()
    };
    assert_eq!(
        store.consume_join_token("cd", before, &node_cd).unwrap(),
        TokenUse::Consumed
    );
    assert_eq!(
        store.attested_node(&node_cd.spiffe_id).unwrap(),
        Some(node_cd.clone())
    );
    assert_eq!(
        store.consume_join_token("cd", before, &node_cd).unwrap(),
        TokenUse::Unknown
    );
    assert!(matches!(
        reg.delete(&EntryId::new("missing").unwrap()),
        Err(svid_ca::EntryError::NotFound { .. })
    ));
}

/// A store whose journal writes can be made to fail, to check that a
/// failed write changes nothing.
#[derive(Debug)]
struct Faulty {
    inner: SqliteStore,
    fail: AtomicBool,
}

impl CaJournalStore for Faulty {
    fn load_ca_journal(&self) -> Result<Option<CaJournal>, StoreError> {
        self.inner.load_ca_journal()
    }
    fn save_ca_journal(&self, j: &CaJournal, b: &SpiffeBundle) -> Result<(), StoreError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(StoreError::Corrupt { what: "injected" });
        }
        self.inner.save_ca_journal(j, b)
    }
}

impl EntryStore for Faulty {
    fn create_entry(&self, e: &RegistrationEntry) -> Result<(), StoreError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(StoreError::Corrupt { what: "injected" });
        }
        self.inner.create_entry(e)
    }
    fn delete_entry(&self, id: &EntryId) -> Result<(), StoreError> {
        self.inner.delete_entry(id)
    }
    fn update_entry(&self, e: &RegistrationEntry) -> Result<(), StoreError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(StoreError::Corrupt { what: "injected" });
        }
        self.inner.update_entry(e)
    }
    fn list_entries(&self) -> Result<Vec<RegistrationEntry>, StoreError> {
        self.inner.list_entries()
    }
}

#[test]
fn failed_store_write_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Faulty {
        inner: SqliteStore::open(dir.path()).unwrap(),
        fail: AtomicBool::new(false),
    });
    let ca = CertificateAuthority::builder(config())
        .clock(Arc::new(ManualClock::new(start())))
        .store(store.clone())
        .build()
        .unwrap();
    let reg =
        Registry::with_store(TD.parse().unwrap(), config().max_svid_ttl(), store.clone()).unwrap();
    let before = ca.authorities();
    let bundle = ca.bundle();
    store.fail.store(true, Ordering::SeqCst);
    assert!(matches!(ca.prepare(SlotKind::X509), Err(CaError::Store(_))));
    assert_eq!(ca.authorities(), before);
    assert_eq!(*ca.bundle(), *bundle);
    let e = RegistrationEntry::new(
        "spiffe://example.org/w".parse().unwrap(),
        "spiffe://example.org/node/n".parse().unwrap(),
        vec!["unix:uid:1".parse().unwrap()],
    )
    .unwrap();
    let err = reg.create(e.clone()).unwrap_err();
    // The store's own failure, passed on: nothing was created.
    assert!(
        matches!(
            &err,
            svid_ca::EntryError::Store(svid_ca::StoreError::Corrupt { what }) if *what == "injected"
        ),
        "{err:?}"
    );
    assert!(reg.get(&e.id).is_none());
    store.fail.store(false, Ordering::SeqCst);
    reg.create(e).unwrap();
    ca.prepare(SlotKind::X509).unwrap();
    assert_eq!(ca.bundle().sequence(), Some(bundle.sequence().unwrap() + 1));
}

#[test]
fn store_errors_say_what_failed_and_carry_no_backend_type() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let e = RegistrationEntry::new(
        "spiffe://example.org/w".parse().unwrap(),
        "spiffe://example.org/node/n".parse().unwrap(),
        vec!["unix:uid:1".parse().unwrap()],
    )
    .unwrap();
    store.create_entry(&e).unwrap();
    let err = store.create_entry(&e).unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { what: "entry" }),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "entry already exists in the store");
    store.create_join_token("ab", start()).unwrap();
    assert!(matches!(
        store.create_join_token("ab", start()),
        Err(StoreError::Conflict { what: "join token" })
    ));
    // A broken database: the read names the records and keeps the cause.
    let conn = rusqlite::Connection::open(dir.path().join("svid-ca.db")).unwrap();
    conn.execute_batch("DROP TABLE entries; DROP TABLE federated_bundles;")
        .unwrap();
    drop(conn);
    let err = store.list_entries().unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Read {
                what: "entries",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("no such table"), "{err}");
    assert!(matches!(
        store.federated_bundles(),
        Err(StoreError::Read {
            what: "federated bundles",
            ..
        })
    ));
    let err = store.delete_entry(&e.id).unwrap_err();
    assert!(
        matches!(err, StoreError::Write { what: "entry", .. }),
        "{err:?}"
    );
    // The join token table is untouched: consuming still works.
    let node = AttestedNode {
        spiffe_id: "spiffe://example.org/node/n".parse().unwrap(),
        attestor: "join_token".into(),
        selectors: Default::default(),
        attested_at: start(),
    };
    assert_eq!(
        store
            .consume_join_token("ab", SystemTime::UNIX_EPOCH, &node)
            .unwrap(),
        TokenUse::Consumed
    );
}

/// A backend for one concern only: an in-memory entry table. The registry
/// takes it as it takes SQLite, so a new backend needs no caller change.
#[derive(Debug, Default)]
struct MemoryEntries(std::sync::Mutex<Vec<RegistrationEntry>>);

impl EntryStore for MemoryEntries {
    fn create_entry(&self, e: &RegistrationEntry) -> Result<(), StoreError> {
        let mut all = self.0.lock().unwrap();
        if all.iter().any(|x| x.id == e.id) {
            return Err(StoreError::Conflict { what: "entry" });
        }
        all.push(e.clone());
        Ok(())
    }
    fn delete_entry(&self, id: &EntryId) -> Result<(), StoreError> {
        self.0.lock().unwrap().retain(|e| &e.id != id);
        Ok(())
    }
    fn update_entry(&self, e: &RegistrationEntry) -> Result<(), StoreError> {
        let mut all = self.0.lock().unwrap();
        let slot = all
            .iter_mut()
            .find(|x| x.id == e.id)
            .ok_or(StoreError::NotFound { what: "entry" })?;
        *slot = e.clone();
        Ok(())
    }
    fn list_entries(&self) -> Result<Vec<RegistrationEntry>, StoreError> {
        Ok(self.0.lock().unwrap().clone())
    }
}

#[test]
fn each_concern_is_its_own_trait_and_a_whole_store_serves_all() {
    let entries = Arc::new(MemoryEntries::default());
    let reg = Registry::with_store(
        TD.parse().unwrap(),
        config().max_svid_ttl(),
        entries.clone(),
    )
    .unwrap();
    let e = RegistrationEntry::new(
        "spiffe://example.org/w".parse().unwrap(),
        "spiffe://example.org/node/n".parse().unwrap(),
        vec!["unix:uid:1".parse().unwrap()],
    )
    .unwrap();
    reg.create(e.clone()).unwrap();
    assert_eq!(entries.list_entries().unwrap(), vec![e]);
    // One `Arc<dyn Store>` goes to every caller, each taking its concern.
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let ca = CertificateAuthority::builder(config())
        .clock(Arc::new(ManualClock::new(start())))
        .store(store.clone())
        .build()
        .unwrap();
    let _reg =
        Registry::with_store(TD.parse().unwrap(), config().max_svid_ttl(), store.clone()).unwrap();
    let _att = svid_ca::JoinTokenAttestor::new(
        TD.parse().unwrap(),
        store.clone(),
        Arc::new(ManualClock::new(start())),
    );
    let fed: Arc<dyn BundleStore> = store.clone();
    assert!(fed.federated_bundles().unwrap().is_empty());
    assert!(store.load_ca_journal().unwrap().is_some());
    drop(ca);
}
