//! SIGKILL during a burst of writes, at several points in one run: every
//! committed change survives each kill, the database stays intact, and the
//! CA resumes with the journaled keys.
//!
//! This shows the store survives a *process* crash. SIGKILL leaves the
//! kernel's page cache intact, so it never exercises `fsync`; it says
//! nothing about power loss or a kernel crash.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use svid_ca::{
    CaConfig, CertificateAuthority, EntryId, RegistrationEntry, Registry, SlotKind, SlotState,
    SqliteStore, Store,
};

const DIR_VAR: &str = "SVID_CA_CRASH_DIR";

/// Lines of committed work to wait for before each kill; 0 kills at once,
/// while the child opens, migrates or resumes the store.
const KILL_AFTER: [usize; 7] = [1, 2, 9, 31, 0, 120, 333];

fn config() -> CaConfig {
    CaConfig::new("example.org".parse().unwrap())
}

/// The child: writes entries and CA key changes as fast as it can, printing
/// each one after it is committed, until it is killed.
#[test]
#[ignore = "helper process spawned by crash_sigkill_at_several_points_loses_no_committed_change"]
fn crash_child_writer() {
    let dir = std::env::var(DIR_VAR).expect("spawned with the store directory");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.as_ref()).unwrap());
    let ca = CertificateAuthority::builder(config())
        .store(store.clone())
        .build()
        .unwrap();
    let reg = Registry::with_store(config().trust_domain, config().max_svid_ttl(), store).unwrap();
    let out = std::io::stdout();
    let report_journal = |ca: &CertificateAuthority| {
        let ids = ca
            .authorities()
            .iter()
            .map(|a| a.id.clone())
            .collect::<Vec<_>>()
            .join(",");
        let mut o = out.lock();
        writeln!(o, "journal {} {ids}", ca.bundle().sequence().unwrap()).unwrap();
        o.flush().unwrap();
    };
    report_journal(&ca);
    for i in 0..1_000_000u64 {
        let e = RegistrationEntry::new(
            format!("spiffe://example.org/w/{i}").parse().unwrap(),
            "spiffe://example.org/node/n".parse().unwrap(),
            vec![format!("unix:uid:{i}").parse().unwrap()],
        )
        .unwrap();
        let id = reg.create(e).unwrap().id.clone();
        {
            let mut o = out.lock();
            writeln!(o, "entry {id}").unwrap();
            o.flush().unwrap();
        }
        if i % 10 == 0 {
            // Every journal operation, each reported once committed:
            // prepare, or activate and then taint and revoke the old keys.
            if ca.prepare(SlotKind::X509).is_ok() {
                report_journal(&ca);
                continue;
            }
            ca.activate(SlotKind::X509).unwrap();
            report_journal(&ca);
            let old: Vec<String> = ca
                .authorities()
                .into_iter()
                .filter(|a| a.kind == SlotKind::X509 && a.state == SlotState::Old)
                .map(|a| a.id)
                .collect();
            for id in old {
                ca.taint(SlotKind::X509, &id).unwrap();
                report_journal(&ca);
                ca.revoke(SlotKind::X509, &id).unwrap();
                report_journal(&ca);
            }
        }
    }
}

/// What the child reported before it died.
#[derive(Default)]
struct Reported {
    entries: Vec<String>,
    journal: Option<(u64, String)>,
}

impl Reported {
    /// Records one line of the child's output; true if it was a record.
    /// The first record shares its line with libtest's `test name ... `.
    fn take(&mut self, line: &str) -> bool {
        let line = match line.split_once(" ... ") {
            Some((head, rest)) if head.starts_with("test ") => rest,
            _ => line,
        };
        if let Some(id) = line.strip_prefix("entry ") {
            self.entries.push(id.to_owned());
            true
        } else if let Some(j) = line.strip_prefix("journal ") {
            let (seq, ids) = j.split_once(' ').expect("journal <sequence> <ids>");
            self.journal = Some((seq.parse().unwrap(), ids.to_owned()));
            true
        } else {
            false
        }
    }
}

/// Runs the child on `dir`, kills it with SIGKILL once it reported `after`
/// committed lines (at once for 0), and returns what it reported.
fn run_and_kill(dir: &Path, after: usize) -> Reported {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "crash_child_writer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_VAR, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut reported = Reported::default();
    let mut seen = 0;
    while seen < after {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => seen += usize::from(reported.take(&line)),
            Err(e) => {
                let _ = child.kill();
                panic!("the child stopped reporting after {seen} lines: {e}");
            }
        }
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "the child died of SIGKILL");
    // Lines written before the kill are committed changes too.
    reader.join().unwrap();
    for line in rx.try_iter() {
        reported.take(&line);
    }
    reported
}

#[test]
fn crash_sigkill_at_several_points_loses_no_committed_change() {
    let _limit = test_support::time_limit(180);
    let dir = tempfile::tempdir().unwrap();
    let mut entries: Vec<String> = Vec::new();
    let mut unreported = 0;
    for (round, after) in KILL_AFTER.into_iter().enumerate() {
        let reported = run_and_kill(dir.path(), after);
        entries.extend(reported.entries);

        // The kernel released the dead child's lock: the store opens.
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
        let conn = rusqlite::Connection::open(dir.path().join("svid-ca.db")).unwrap();
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok", "round {round}");
        drop(conn);
        let reg = Registry::with_store(
            config().trust_domain,
            config().max_svid_ttl(),
            store.clone(),
        )
        .unwrap();
        for id in &entries {
            assert!(
                reg.get(&EntryId::new(id).unwrap()).is_some(),
                "round {round} (killed after {after} lines): entry {id} lost"
            );
        }
        // At most one committed, unreported entry per kill.
        unreported += 1;
        let distinct: HashSet<&String> = entries.iter().collect();
        assert_eq!(distinct.len(), entries.len());
        assert!(
            reg.len() >= entries.len() && reg.len() <= entries.len() + unreported,
            "round {round}: {} stored, {} reported",
            reg.len(),
            entries.len()
        );

        let stored = store.load_ca_journal().unwrap();
        if let Some((seq, ids)) = &reported.journal {
            let stored = stored.as_ref().expect("a reported journal is stored");
            // The last reported change, or one more committed before the kill.
            assert!(
                stored.sequence == *seq || stored.sequence == seq + 1,
                "round {round}: stored {} vs reported {seq}",
                stored.sequence
            );
            if stored.sequence == *seq {
                let stored_ids: Vec<&str> =
                    stored.slots.iter().map(|s| s.info.id.as_str()).collect();
                assert_eq!(stored_ids.join(","), *ids, "round {round}");
            }
        }
        // The CA resumes with exactly the journaled keys (restore checks
        // every key against its certificate) and issues verifiable SVIDs.
        let stored_ids: Option<Vec<String>> =
            stored.map(|j| j.slots.iter().map(|s| s.info.id.clone()).collect());
        let ca = CertificateAuthority::builder(config())
            .store(store)
            .build()
            .unwrap();
        if let Some(ids) = stored_ids {
            let resumed: Vec<String> = ca.authorities().iter().map(|a| a.id.clone()).collect();
            assert_eq!(resumed, ids, "round {round}");
        }
        let svid = ca
            .issue_x509_svid(&svid_ca::Entitlement::new(
                "spiffe://example.org/w/0".parse().unwrap(),
            ))
            .unwrap();
        spiffe_core::verify_x509_svid(svid.chain(), ca.bundle().x509(), ca.now()).unwrap();
        // Let go of the store before the next child opens it.
        drop((ca, reg));
    }
    assert!(
        entries.len() >= 300,
        "the rounds did real work: {}",
        entries.len()
    );
}
