//! SIGKILL during a burst of writes: every committed change survives and
//! the CA resumes with the same keys.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;

use svid_ca::{
    CaConfig, CertificateAuthority, EntryId, RegistrationEntry, Registry, SlotKind, SqliteStore,
    Store,
};

const DIR_VAR: &str = "SVID_CA_CRASH_DIR";

fn config() -> CaConfig {
    CaConfig::new("example.org".parse().unwrap())
}

/// The child: writes entries and CA key changes as fast as it can, printing
/// each one after it is committed, until it is killed.
#[test]
#[ignore = "helper process spawned by crash_sigkill_during_writes_loses_no_committed_change"]
fn crash_child_writer() {
    let dir = std::env::var(DIR_VAR).expect("spawned with the store directory");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.as_ref()).unwrap());
    let ca = CertificateAuthority::builder(config())
        .store(store.clone())
        .build()
        .unwrap();
    let reg = Registry::with_store(config().trust_domain, config().max_svid_ttl(), store).unwrap();
    let out = std::io::stdout();
    let report = |line: String| {
        let mut o = out.lock();
        writeln!(o, "{line}").unwrap();
        o.flush().unwrap();
    };
    let ids = |ca: &CertificateAuthority| {
        ca.authorities()
            .iter()
            .map(|a| a.id.clone())
            .collect::<Vec<_>>()
            .join(",")
    };
    report(format!(
        "journal {} {}",
        ca.bundle().sequence().unwrap(),
        ids(&ca)
    ));
    for i in 0..1_000_000u64 {
        let e = RegistrationEntry::new(
            format!("spiffe://example.org/w/{i}").parse().unwrap(),
            "spiffe://example.org/node/n".parse().unwrap(),
            vec![format!("unix:uid:{i}").parse().unwrap()],
        )
        .unwrap();
        let id = reg.create(e).unwrap().id.clone();
        report(format!("entry {id}"));
        if i % 10 == 0 {
            if ca.prepare(SlotKind::X509).is_err() {
                ca.activate(SlotKind::X509).unwrap();
            }
            report(format!(
                "journal {} {}",
                ca.bundle().sequence().unwrap(),
                ids(&ca)
            ));
        }
    }
}

#[test]
fn crash_sigkill_during_writes_loses_no_committed_change() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "crash_child_writer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_VAR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut entries = Vec::new();
    let mut journal = None;
    let mut journals = 0;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(id) = line.strip_prefix("entry ") {
            entries.push(id.to_owned());
        } else if let Some(j) = line.strip_prefix("journal ") {
            journal = Some(j.to_owned());
            journals += 1;
        }
        if entries.len() >= 300 && journals >= 10 {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL
    // Lines already written before the kill are committed changes too.
    for line in lines {
        let Ok(line) = line else { break };
        if let Some(id) = line.strip_prefix("entry ") {
            entries.push(id.to_owned());
        } else if let Some(j) = line.strip_prefix("journal ") {
            journal = Some(j.to_owned());
        }
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child was killed");

    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let conn = rusqlite::Connection::open(dir.path().join("svid-ca.db")).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let reg = Registry::with_store(
        config().trust_domain,
        config().max_svid_ttl(),
        store.clone(),
    )
    .unwrap();
    for id in &entries {
        assert!(
            reg.get(&EntryId::new(id).unwrap()).is_some(),
            "entry {id} lost"
        );
    }
    assert!(reg.len() >= entries.len() && reg.len() <= entries.len() + 1);

    let (seq, ids) = journal
        .unwrap()
        .split_once(' ')
        .map(|(s, i)| (s.parse::<u64>().unwrap(), i.to_owned()))
        .unwrap();
    let stored = store.load_ca_journal().unwrap().unwrap();
    assert!(
        stored.sequence == seq || stored.sequence == seq + 1,
        "{} vs {seq}",
        stored.sequence
    );
    let stored_ids: Vec<String> = stored.slots.iter().map(|s| s.info.id.clone()).collect();
    if stored.sequence == seq {
        assert_eq!(stored_ids.join(","), ids);
    }
    // The CA resumes with exactly the journaled keys (restore checks every
    // key against its certificate).
    let ca = CertificateAuthority::builder(config())
        .store(store)
        .build()
        .unwrap();
    let resumed: Vec<String> = ca.authorities().iter().map(|a| a.id.clone()).collect();
    assert_eq!(resumed, stored_ids);
    assert_eq!(ca.bundle().sequence(), Some(stored.sequence));
    let svid = ca
        .issue_x509_svid(&svid_ca::Entitlement::new(
            "spiffe://example.org/w/0".parse().unwrap(),
        ))
        .unwrap();
    spiffe_core::verify_x509_svid(svid.chain(), ca.bundle().x509(), ca.now()).unwrap();
}
