//! SqliteStore safety: private files, one opener at a time.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use svid_ca::{CertificateAuthority, ManualClock, SlotKind, SqliteStore, StoreError};

const DIR_VAR: &str = "SVID_CA_LOCK_DIR";

/// Held while a child is spawned, and while a test drops and reopens a
/// store: between fork and exec a child holds copies of every descriptor
/// of this process, the store's lock file included, so a reopen in that
/// window would see the lock still held (seen once as a flaky failure).
static SPAWNING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn key_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir.join("keys"))
        .unwrap()
        .flatten()
        .map(|f| {
            (
                f.file_name().to_string_lossy().into_owned(),
                std::fs::read(f.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn store_directory_and_every_file_are_private_to_the_owner() {
    let tmp = tempfile::tempdir().unwrap();
    // A directory and database left with wide modes (an older version, or
    // a hand-made directory) are narrowed on open.
    let dir = tmp.path().join("ca");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.join("svid-ca.db"), b"").unwrap();
    std::fs::set_permissions(
        dir.join("svid-ca.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let store = Arc::new(SqliteStore::open(&dir).unwrap());
    let ca = CertificateAuthority::builder(config())
        .clock(Arc::new(ManualClock::new(start())))
        .store(store)
        .build()
        .unwrap();
    ca.prepare(SlotKind::X509).unwrap();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("keys")), 0o700);
    for f in [
        "svid-ca.db",
        "svid-ca.db-wal",
        "svid-ca.db-shm",
        "svid-ca.lock",
    ] {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
    let keys: Vec<_> = std::fs::read_dir(dir.join("keys"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(keys.len(), 3, "two X.509 keys and one JWT key");
    for k in keys {
        assert_eq!(mode(&k.path()), 0o600, "{}", k.path().display());
    }
    // A fresh directory (with missing parents) is created private.
    let fresh = tmp.path().join("a/b");
    drop(SqliteStore::open(&fresh).unwrap());
    assert_eq!(mode(&fresh), 0o700);
    assert_eq!(mode(&fresh.join("svid-ca.db")), 0o600);
}

#[test]
fn second_open_in_the_same_process_is_refused_until_the_first_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let ca = CertificateAuthority::builder(config())
        .clock(Arc::new(ManualClock::new(start())))
        .store(store)
        .build()
        .unwrap();
    let keys = key_files(dir.path());
    assert_eq!(keys.len(), 2);
    let err = SqliteStore::open(dir.path()).unwrap_err();
    match &err {
        StoreError::Locked { dir: d, holder } => {
            assert_eq!(d, dir.path());
            assert_eq!(*holder, Some(std::process::id()));
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("in use by process"), "{text}");
    assert!(text.contains("only one authority"), "{text}");
    // The refused opener touched nothing: the first store's keys are intact
    // and it keeps working.
    assert_eq!(key_files(dir.path()), keys);
    ca.prepare(SlotKind::Jwt).unwrap();
    let _no_fork = SPAWNING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    drop(ca);
    let reopened = SqliteStore::open(dir.path()).unwrap();
    drop(reopened);
}

/// The child: tries to open the store and reports the outcome.
#[test]
#[ignore = "helper process spawned by second_process_opening_the_store_is_refused"]
fn lock_child_opener() {
    let dir = std::env::var(DIR_VAR).expect("spawned with the store directory");
    match SqliteStore::open(dir.as_ref()) {
        Ok(_) => println!("RESULT opened"),
        Err(StoreError::Locked { holder, .. }) => {
            println!("RESULT locked {}", holder.map_or(0, |p| p))
        }
        Err(e) => println!("RESULT error {e}"),
    }
}

fn run_child(dir: &Path) -> String {
    let spawning = SPAWNING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "lock_child_opener",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_VAR, dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // `spawn` returns after the child's exec: its copies are closed.
    drop(spawning);
    // Fail, not hang, if the child never finishes.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the child did not finish within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.split_once("RESULT ").map(|(_, r)| r.to_owned()))
        .expect("the child reports a result")
}

#[test]
fn second_process_opening_the_store_is_refused() {
    let _limit = test_support::time_limit(30);
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let ca = CertificateAuthority::builder(config())
        .clock(Arc::new(ManualClock::new(start())))
        .store(store)
        .build()
        .unwrap();
    let keys = key_files(dir.path());
    assert_eq!(
        run_child(dir.path()),
        format!("locked {}", std::process::id())
    );
    assert_eq!(
        key_files(dir.path()),
        keys,
        "the refused process deleted nothing"
    );
    let before = ca.authorities();
    ca.prepare(SlotKind::X509).unwrap();
    assert_eq!(ca.authorities().len(), before.len() + 1);
    drop(ca);
    assert_eq!(run_child(dir.path()), "opened");
}
