//! [`SqliteStore`]: the embedded default [`Store`] (SQLite in WAL mode,
//! private keys in 0600 files next to the database).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use rustls_pki_types::CertificateDer;
use spiffe_core::{SpiffeBundle, SpiffeId, TrustDomain};
use zeroize::Zeroizing;

use super::files::{StoreLock, io, key_file, private_dir, private_file, prune_keys, write_key};
use super::{CaJournal, JournalSlot, Store, StoreError, TokenUse};
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
/// Every [`Store`] method runs in one transaction. Opening a database with
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
        let mut conn = Connection::open(&db)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(Duration::from_secs(5))?;
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
        Ok(self
            .conn()
            .pragma_query_value(None, "user_version", |r| r.get(0))?)
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
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
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

impl Store for SqliteStore {
    fn load_ca_journal(&self) -> Result<Option<CaJournal>, StoreError> {
        let conn = self.conn();
        let head: Option<(String, i64)> = conn
            .query_row(
                "SELECT trust_domain, sequence FROM ca_journal WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((trust_domain, sequence)) = head else {
            return Ok(None);
        };
        let mut stmt = conn.prepare(
            "SELECT id, kind, state, tainted, not_before, not_after, certificate
             FROM ca_slots ORDER BY rowid",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, bool>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, Option<Vec<u8>>>(6)?,
            ))
        })?;
        let mut slots = Vec::new();
        for row in rows {
            let (id, kind, state, tainted, nb, na, cert) = row?;
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
        for s in &journal.slots {
            write_key(&self.keys, &s.info.id, &s.key_pkcs8)?;
        }
        let sequence = i64::try_from(journal.sequence).map_err(|_| corrupt("sequence"))?;
        {
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO ca_journal (id, trust_domain, sequence) VALUES (1, ?1, ?2)
                 ON CONFLICT(id) DO UPDATE SET trust_domain = ?1, sequence = ?2",
                params![journal.trust_domain, sequence],
            )?;
            tx.execute("DELETE FROM ca_slots", [])?;
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
                )?;
            }
            tx.execute(
                "INSERT OR REPLACE INTO bundles (sequence, trust_domain, document) VALUES (?1, ?2, ?3)",
                params![sequence, journal.trust_domain, bundle.to_json()],
            )?;
            tx.commit()?;
        }
        let keep: Vec<&str> = journal.slots.iter().map(|s| s.info.id.as_str()).collect();
        prune_keys(&self.keys, &keep);
        Ok(())
    }

    fn create_entry(&self, entry: &RegistrationEntry) -> Result<(), StoreError> {
        let doc = serde_json::to_string(entry).map_err(|_| corrupt("entry"))?;
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO entries (id, document) VALUES (?1, ?2)",
            params![entry.id.as_str(), doc],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn delete_entry(&self, id: &EntryId) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM entries WHERE id = ?1", params![id.as_str()])?;
        Ok(())
    }

    fn list_entries(&self) -> Result<Vec<RegistrationEntry>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT document FROM entries ORDER BY rowid")?;
        let docs = stmt.query_map([], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for doc in docs {
            out.push(serde_json::from_str(&doc?).map_err(|_| corrupt("entry"))?);
        }
        Ok(out)
    }

    fn create_join_token(&self, hash: &str, expires_at: SystemTime) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO join_tokens (hash, expires_at) VALUES (?1, ?2)",
            params![hash, secs(expires_at)],
        )?;
        Ok(())
    }

    fn consume_join_token(
        &self,
        hash: &str,
        now: SystemTime,
        node: &AttestedNode,
    ) -> Result<TokenUse, StoreError> {
        let doc = serde_json::to_string(node).map_err(|_| corrupt("attested node"))?;
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let at: Option<i64> = tx
            .query_row(
                "SELECT expires_at FROM join_tokens WHERE hash = ?1",
                params![hash],
                |r| r.get(0),
            )
            .optional()?;
        let outcome = match at {
            None => TokenUse::Unknown,
            Some(at) if time(at) <= now => TokenUse::Expired(time(at)),
            Some(_) => {
                tx.execute("DELETE FROM join_tokens WHERE hash = ?1", params![hash])?;
                tx.execute(
                    "INSERT OR REPLACE INTO attested_nodes (spiffe_id, document) VALUES (?1, ?2)",
                    params![node.spiffe_id.as_str(), doc],
                )?;
                TokenUse::Consumed
            }
        };
        tx.commit()?;
        Ok(outcome)
    }

    fn put_attested_node(&self, node: &AttestedNode) -> Result<(), StoreError> {
        let doc = serde_json::to_string(node).map_err(|_| corrupt("attested node"))?;
        self.conn().execute(
            "INSERT OR REPLACE INTO attested_nodes (spiffe_id, document) VALUES (?1, ?2)",
            params![node.spiffe_id.as_str(), doc],
        )?;
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
            .optional()?;
        doc.map(|d| serde_json::from_str(&d).map_err(|_| corrupt("attested node")))
            .transpose()
    }

    fn put_federated_bundle(&self, bundle: &SpiffeBundle) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT OR REPLACE INTO federated_bundles (trust_domain, document) VALUES (?1, ?2)",
            params![bundle.trust_domain().as_str(), bundle.to_json()],
        )?;
        Ok(())
    }

    fn federated_bundles(&self) -> Result<Vec<SpiffeBundle>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT trust_domain, document FROM federated_bundles ORDER BY trust_domain",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (td, doc) = row?;
            let td: TrustDomain = td.parse().map_err(|_| corrupt("federated trust domain"))?;
            out.push(SpiffeBundle::parse(td, &doc).map_err(|_| corrupt("federated bundle"))?);
        }
        Ok(out)
    }
}
