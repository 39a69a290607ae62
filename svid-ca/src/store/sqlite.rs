//! [`SqliteStore`]: the embedded default [`super::Store`] (SQLite in WAL
//! mode, private keys in 0600 files next to the database).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, ErrorCode, OptionalExtension, TransactionBehavior, params};
use rustls_pki_types::CertificateDer;
use spiffe_core::{SpiffeBundle, SpiffeId, TrustDomain};
use zeroize::Zeroizing;

use super::files::{StoreLock, io, key_file, private_dir, private_file, prune_keys, write_key};
use super::{
    BackendError, BundleStore, CaJournal, CaJournalStore, EntryStore, JournalSlot, NodeStore,
    StoreError, TokenUse,
};
use crate::{AttestedNode, AuthorityInfo, EntryId, RegistrationEntry, SlotKind, SlotState};

/// Schema migrations, in order; the schema version is their count.
const MIGRATIONS: &[&str] = &[
    // 1: initial schema.
    "CREATE TABLE ca_journal (
         id INTEGER PRIMARY KEY CHECK (id = 1),
         trust_domain TEXT NOT NULL,
         sequence INTEGER NOT NULL
     );
     CREATE TABLE ca_slots (
         id TEXT PRIMARY KEY,
         kind TEXT NOT NULL,
         state TEXT NOT NULL,
         tainted INTEGER NOT NULL,
         not_before INTEGER NOT NULL,
         not_after INTEGER NOT NULL,
         certificate BLOB
     );
     CREATE TABLE bundles (
         sequence INTEGER PRIMARY KEY,
         trust_domain TEXT NOT NULL,
         document BLOB NOT NULL
     );
     CREATE TABLE entries (id TEXT PRIMARY KEY, document TEXT NOT NULL);
     CREATE TABLE join_tokens (hash TEXT PRIMARY KEY, expires_at INTEGER NOT NULL);
     CREATE TABLE attested_nodes (spiffe_id TEXT PRIMARY KEY, document TEXT NOT NULL);
     CREATE TABLE federated_bundles (trust_domain TEXT PRIMARY KEY, document BLOB NOT NULL);",
];

/// The newest schema version this build reads and writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// An SQLite store in a directory: `svid-ca.db` (WAL mode, full sync),
/// `keys/<authority id>.key` (PKCS#8) and `svid-ca.lock`; directories are
/// 0700 and files 0600. One `SqliteStore` at a time holds a directory.
///
/// It implements every store trait ([`CaJournalStore`], [`EntryStore`],
/// [`NodeStore`], [`BundleStore`]); every method runs in one transaction. Opening a database with
/// a newer schema than [`SCHEMA_VERSION`] fails with
/// [`StoreError::SchemaTooNew`].
#[derive(Debug)]
pub struct SqliteStore {
    // Field order is drop order: the database closes before the lock goes.
    conn: Mutex<Connection>,
    keys: PathBuf,
    _lock: StoreLock,
}

/// The database file's name inside the store directory.
const DB_FILE: &str = "svid-ca.db";

fn secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn time(s: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(s).unwrap_or(0))
}

fn kind_str(k: SlotKind) -> &'static str {
    match k {
        SlotKind::X509 => "x509",
        SlotKind::Jwt => "jwt",
    }
}

fn state_str(s: SlotState) -> &'static str {
    match s {
        SlotState::Prepared => "prepared",
        SlotState::Active => "active",
        SlotState::Old => "old",
    }
}

fn corrupt(what: &'static str) -> StoreError {
    StoreError::Corrupt { what }
}

/// Maps a failed read of `what`.
fn read(what: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |e| StoreError::Read {
        what,
        source: BackendError::new(e),
    }
}

/// Maps a failed write of `what`; a uniqueness violation is a conflict.
fn write(what: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |e| match e.sqlite_error_code() {
        Some(ErrorCode::ConstraintViolation) => StoreError::Conflict { what },
        _ => StoreError::Write {
            what,
            source: BackendError::new(e),
        },
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `dir` and migrates its
    /// schema to [`SCHEMA_VERSION`].
    ///
    /// `dir` and `dir/keys` are made 0700 and every file in them 0600
    /// (also when they existed with wider modes). The store takes an
    /// exclusive lock on `dir/svid-ca.lock` for as long as it lives: while
    /// it is held, another process or another `open` in this process fails
    /// at once with [`StoreError::Locked`], so two authorities never
    /// journal into (or prune the key files of) one store.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        private_dir(dir)?;
        let lock = StoreLock::acquire(dir)?;
        let keys = dir.join("keys");
        private_dir(&keys)?;
        let db = dir.join(DB_FILE);
        private_file(&db, true)?;
        for suffix in ["-wal", "-shm", "-journal"] {
            private_file(&dir.join(format!("{DB_FILE}{suffix}")), false)?;
        }
        let open_err = |e| StoreError::Open {
            path: db.clone(),
            source: BackendError::new(e),
        };
        let mut conn = Connection::open(&db).map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(open_err)?;
        migrate(&mut conn)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            keys,
            _lock: lock,
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        user_version(&self.conn())
    }
}

fn user_version(conn: &Connection) -> Result<i64, StoreError> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(read("schema version"))
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version = user_version(conn)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(version).unwrap_or(0))
    {
        let version = i as i64 + 1;
        let failed = |e| StoreError::Migrate {
            version,
            source: BackendError::new(e),
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        tx.execute_batch(sql).map_err(failed)?;
        tx.pragma_update(None, "user_version", version)
            .map_err(failed)?;
        tx.commit().map_err(failed)?;
    }
    Ok(())
}

type SlotRow = (String, String, String, bool, i64, i64, Option<Vec<u8>>);

impl CaJournalStore for SqliteStore {
    fn load_ca_journal(&self) -> Result<Option<CaJournal>, StoreError> {
        const WHAT: &str = "ca journal";
        let conn = self.conn();
        let head: Option<(String, i64)> = conn
            .query_row(
                "SELECT trust_domain, sequence FROM ca_journal WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(read(WHAT))?;
        let Some((trust_domain, sequence)) = head else {
            return Ok(None);
        };
        let mut stmt = conn
            .prepare(
                "SELECT id, kind, state, tainted, not_before, not_after, certificate
                 FROM ca_slots ORDER BY rowid",
            )
            .map_err(read(WHAT))?;
        let rows: Vec<SlotRow> = stmt
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            })
            .and_then(Iterator::collect)
            .map_err(read(WHAT))?;
        let mut slots = Vec::new();
        for (id, kind, state, tainted, nb, na, cert) in rows {
            let kind = match kind.as_str() {
                "x509" => SlotKind::X509,
                "jwt" => SlotKind::Jwt,
                _ => return Err(corrupt("slot kind")),
            };
            let state = match state.as_str() {
                "prepared" => SlotState::Prepared,
                "active" => SlotState::Active,
                "old" => SlotState::Old,
                _ => return Err(corrupt("slot state")),
            };
            let path = key_file(&self.keys, &id)?;
            let key = Zeroizing::new(fs::read(&path).map_err(io("read", &path))?);
            slots.push(JournalSlot {
                info: AuthorityInfo {
                    id,
                    kind,
                    state,
                    tainted,
                    not_before: time(nb),
                    not_after: time(na),
                    certificate: cert.map(CertificateDer::from),
                },
                key_pkcs8: key,
            });
        }
        Ok(Some(CaJournal {
            trust_domain,
            sequence: u64::try_from(sequence).map_err(|_| corrupt("sequence"))?,
            slots,
        }))
    }

    fn save_ca_journal(
        &self,
        journal: &CaJournal,
        bundle: &SpiffeBundle,
    ) -> Result<(), StoreError> {
        const WHAT: &str = "ca journal";
        for s in &journal.slots {
            write_key(&self.keys, &s.info.id, &s.key_pkcs8)?;
        }
        let sequence = i64::try_from(journal.sequence).map_err(|_| corrupt("sequence"))?;
        {
            let mut conn = self.conn();
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(write(WHAT))?;
            tx.execute(
                "INSERT INTO ca_journal (id, trust_domain, sequence) VALUES (1, ?1, ?2)
                 ON CONFLICT(id) DO UPDATE SET trust_domain = ?1, sequence = ?2",
                params![journal.trust_domain, sequence],
            )
            .map_err(write(WHAT))?;
            tx.execute("DELETE FROM ca_slots", [])
                .map_err(write(WHAT))?;
            for s in &journal.slots {
                let i = &s.info;
                tx.execute(
                    "INSERT INTO ca_slots (id, kind, state, tainted, not_before, not_after, certificate)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        i.id,
                        kind_str(i.kind),
                        state_str(i.state),
                        i.tainted,
                        secs(i.not_before),
                        secs(i.not_after),
                        i.certificate.as_ref().map(|c| c.to_vec()),
                    ],
                )
                .map_err(write(WHAT))?;
            }
            tx.execute(
                "INSERT OR REPLACE INTO bundles (sequence, trust_domain, document) VALUES (?1, ?2, ?3)",
                params![sequence, journal.trust_domain, bundle.to_json()],
            )
            .map_err(write("bundle history"))?;
            tx.commit().map_err(write(WHAT))?;
        }
        let keep: Vec<&str> = journal.slots.iter().map(|s| s.info.id.as_str()).collect();
        prune_keys(&self.keys, &keep);
        Ok(())
    }
}

impl EntryStore for SqliteStore {
    fn create_entry(&self, entry: &RegistrationEntry) -> Result<(), StoreError> {
        let doc = serde_json::to_string(entry).map_err(|_| corrupt("entry"))?;
        self.conn()
            .execute(
                "INSERT INTO entries (id, document) VALUES (?1, ?2)",
                params![entry.id.as_str(), doc],
            )
            .map_err(write("entry"))?;
        Ok(())
    }

    fn delete_entry(&self, id: &EntryId) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM entries WHERE id = ?1", params![id.as_str()])
            .map_err(write("entry"))?;
        Ok(())
    }

    fn update_entry(&self, entry: &RegistrationEntry) -> Result<(), StoreError> {
        let doc = serde_json::to_string(entry).map_err(|_| corrupt("entry"))?;
        let changed = self
            .conn()
            .execute(
                "UPDATE entries SET document = ?2 WHERE id = ?1",
                params![entry.id.as_str(), doc],
            )
            .map_err(write("entry"))?;
        if changed == 0 {
            return Err(StoreError::NotFound { what: "entry" });
        }
        Ok(())
    }

    fn list_entries(&self) -> Result<Vec<RegistrationEntry>, StoreError> {
        const WHAT: &str = "entries";
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT document FROM entries ORDER BY rowid")
            .map_err(read(WHAT))?;
        let docs: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .and_then(Iterator::collect)
            .map_err(read(WHAT))?;
        docs.iter()
            .map(|d| serde_json::from_str(d).map_err(|_| corrupt("entry")))
            .collect()
    }
}

impl NodeStore for SqliteStore {
    fn create_join_token(&self, hash: &str, expires_at: SystemTime) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT INTO join_tokens (hash, expires_at) VALUES (?1, ?2)",
                params![hash, secs(expires_at)],
            )
            .map_err(write("join token"))?;
        Ok(())
    }

    fn consume_join_token(
        &self,
        hash: &str,
        now: SystemTime,
        node: &AttestedNode,
    ) -> Result<TokenUse, StoreError> {
        const WHAT: &str = "join token";
        let doc = serde_json::to_string(node).map_err(|_| corrupt("attested node"))?;
        let mut conn = self.conn();
        // IMMEDIATE takes the write lock first, and the conditional DELETE
        // is the single point of decision: of two consumers only the one
        // whose DELETE removed the row goes on to record its node.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(write(WHAT))?;
        let deleted = tx
            .execute(
                "DELETE FROM join_tokens WHERE hash = ?1 AND expires_at > ?2",
                params![hash, secs(now)],
            )
            .map_err(write(WHAT))?;
        let outcome = if deleted == 1 {
            tx.execute(
                "INSERT OR REPLACE INTO attested_nodes (spiffe_id, document) VALUES (?1, ?2)",
                params![node.spiffe_id.as_str(), doc],
            )
            .map_err(write("attested node"))?;
            TokenUse::Consumed
        } else {
            let at: Option<i64> = tx
                .query_row(
                    "SELECT expires_at FROM join_tokens WHERE hash = ?1",
                    params![hash],
                    |r| r.get(0),
                )
                .optional()
                .map_err(read(WHAT))?;
            at.map_or(TokenUse::Unknown, |at| TokenUse::Expired(time(at)))
        };
        tx.commit().map_err(write(WHAT))?;
        Ok(outcome)
    }

    fn put_attested_node(&self, node: &AttestedNode) -> Result<(), StoreError> {
        let doc = serde_json::to_string(node).map_err(|_| corrupt("attested node"))?;
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO attested_nodes (spiffe_id, document) VALUES (?1, ?2)",
                params![node.spiffe_id.as_str(), doc],
            )
            .map_err(write("attested node"))?;
        Ok(())
    }

    fn attested_node(&self, id: &SpiffeId) -> Result<Option<AttestedNode>, StoreError> {
        let doc: Option<String> = self
            .conn()
            .query_row(
                "SELECT document FROM attested_nodes WHERE spiffe_id = ?1",
                params![id.as_str()],
                |r| r.get(0),
            )
            .optional()
            .map_err(read("attested node"))?;
        doc.map(|d| serde_json::from_str(&d).map_err(|_| corrupt("attested node")))
            .transpose()
    }

    fn list_attested_nodes(&self) -> Result<Vec<AttestedNode>, StoreError> {
        const WHAT: &str = "attested nodes";
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT document FROM attested_nodes ORDER BY spiffe_id")
            .map_err(read(WHAT))?;
        let docs: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .and_then(Iterator::collect)
            .map_err(read(WHAT))?;
        docs.iter()
            .map(|d| serde_json::from_str(d).map_err(|_| corrupt("attested node")))
            .collect()
    }

    fn delete_attested_node(&self, id: &SpiffeId) -> Result<bool, StoreError> {
        let deleted = self
            .conn()
            .execute(
                "DELETE FROM attested_nodes WHERE spiffe_id = ?1",
                params![id.as_str()],
            )
            .map_err(write("attested node"))?;
        Ok(deleted > 0)
    }
}

impl BundleStore for SqliteStore {
    fn put_federated_bundle(&self, bundle: &SpiffeBundle) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO federated_bundles (trust_domain, document) VALUES (?1, ?2)",
                params![bundle.trust_domain().as_str(), bundle.to_json()],
            )
            .map_err(write("federated bundle"))?;
        Ok(())
    }

    fn federated_bundles(&self) -> Result<Vec<SpiffeBundle>, StoreError> {
        const WHAT: &str = "federated bundles";
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT trust_domain, document FROM federated_bundles ORDER BY trust_domain")
            .map_err(read(WHAT))?;
        let rows: Vec<(String, Vec<u8>)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(Iterator::collect)
            .map_err(read(WHAT))?;
        rows.into_iter()
            .map(|(td, doc)| {
                let td: TrustDomain = td.parse().map_err(|_| corrupt("federated trust domain"))?;
                SpiffeBundle::parse(td, &doc).map_err(|_| corrupt("federated bundle"))
            })
            .collect()
    }
}
