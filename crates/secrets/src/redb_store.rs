//! The embedded [`Backend`]: one redb file, `DIR/store.redb`.
//!
//! Tables (names are part of the format):
//!
//! - `meta`: `&str -> &[u8]`; `format_version`, `admin_uid`, `active_key`,
//!   `rotation_target` as 4-byte big-endian u32s, `key_check.<id>` as
//!   [`KeyCheck::encode`], `last_change` as an 8-byte big-endian u64 (absent from stores
//!   written before it was: read as 0). Unknown fields are ignored.
//! - `secrets`: `&str -> &[u8]`, [`SecretRecord::encode`].
//! - `services`: `&str -> &[u8]`, [`ServiceRecord::encode`].
//! - `grants`: `(&str, &str) -> ()`, keyed by (service, secret).
//!
//! Every commit is [`redb::Durability::Immediate`] with two-phase commit: `commit` returns
//! after fsync, and a torn write can never be mistaken for a committed one.
//!
//! redb latches an I/O error (a full disk, say): every later transaction fails with
//! "Previous I/O error occurred. Please close and re-open the database". So any failed
//! write closes the database here, [`Backend::needs_reopen`] says so, and the vault calls
//! [`Backend::reopen`] under its writer lock, now and again at each write until it works.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use tracing::warn;

use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition};

use crate::backend::{Backend, FORMAT_VERSION, Meta, Mutation, Stored};
use crate::crypto::KeyCheck;
use crate::error::{Error, Result};
use crate::fsutil::FILE_MODE;
use crate::record::{SecretRecord, ServiceRecord};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const SECRETS: TableDefinition<&str, &[u8]> = TableDefinition::new("secrets");
const SERVICES: TableDefinition<&str, &[u8]> = TableDefinition::new("services");
const GRANTS: TableDefinition<(&str, &str), ()> = TableDefinition::new("grants");

const FORMAT_VERSION_FIELD: &str = "format_version";
const ADMIN_UID_FIELD: &str = "admin_uid";
const ACTIVE_KEY_FIELD: &str = "active_key";
const ROTATION_TARGET_FIELD: &str = "rotation_target";
const KEY_CHECK_PREFIX: &str = "key_check.";
const LAST_CHANGE_FIELD: &str = "last_change";

/// redb's page cache. The vault keeps every record in memory and reads the store only at
/// open, so the cache serves commits (B-tree paths), not reads: a small one is enough.
const CACHE_BYTES: usize = 32 << 20;

/// A redb store.
pub(crate) struct RedbBackend {
    path: PathBuf,
    /// `None` from a failed write until a reopen succeeds. Every use is a writer's (or
    /// `open`'s), so a mutex costs readers nothing: they are served from memory.
    db: Mutex<Option<Database>>,
}

/// The store is closed after a failed write and not yet reopened.
#[derive(Debug, thiserror::Error)]
#[error("the database was closed after a failed write and is reopened at the next write")]
struct Closed;

impl RedbBackend {
    /// Creates a new store at `path` (which must not exist), holding `meta` and empty
    /// tables.
    pub(crate) fn create(path: &Path, meta: &Meta) -> Result<RedbBackend> {
        // Created owner-only by us, so redb never creates it with the umask's mode.
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(path)
            .map_err(Error::io("creating store", path))?;
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(Error::store("creating database"))?;
        let backend = RedbBackend {
            path: path.to_path_buf(),
            db: Mutex::new(Some(db)),
        };
        let mut batch = vec![
            Mutation::SetActiveKey(meta.active_key),
            Mutation::SetRotationTarget(meta.rotation_target),
            Mutation::SetLastChange(meta.last_change),
        ];
        for (id, check) in &meta.key_checks {
            batch.push(Mutation::PutKeyCheck(*id, check.clone()));
        }
        backend.write(&batch, Some(meta))?;
        Ok(backend)
    }

    /// Opens an existing store.
    pub(crate) fn open(path: &Path) -> Result<RedbBackend> {
        Ok(RedbBackend {
            path: path.to_path_buf(),
            db: Mutex::new(Some(open_database(path, "opening database")?)),
        })
    }

    fn db(&self) -> MutexGuard<'_, Option<Database>> {
        // The guarded value is only ever replaced whole: a panic cannot leave it torn.
        self.db.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One write transaction: the batch, plus the fixed meta fields at creation. Any
    /// failure closes the database (see the module documentation).
    fn write(&self, batch: &[Mutation], create: Option<&Meta>) -> Result<()> {
        let mut slot = self.db();
        let db = slot
            .as_ref()
            .ok_or_else(|| Error::store("begin write")(Closed))?;
        let result = write_txn(db, batch, create);
        if result.is_err()
            && let Some(db) = slot.take()
        {
            close(db);
        }
        result
    }
}

fn open_database(path: &Path, op: &'static str) -> Result<Database> {
    redb::Builder::new()
        .set_cache_size(CACHE_BYTES)
        .set_check_integrity_on_open(true)
        .open(path)
        .map_err(Error::store(op))
}

/// Closes a database whose write failed. An error here changes nothing (the reopen will
/// tell whether the file is usable), so it is only logged.
fn close(db: Database) {
    if let Err(e) = db.close() {
        warn!(error = %e, "closing the store after a failed write");
    }
}

/// The body of [`RedbBackend::write`], on an open database.
fn write_txn(db: &Database, batch: &[Mutation], create: Option<&Meta>) -> Result<()> {
    let mut txn = db.begin_write().map_err(Error::store("begin write"))?;
    txn.set_two_phase_commit(true);
    {
        let mut meta = txn.open_table(META).map_err(Error::store("open meta"))?;
        let mut secrets = txn
            .open_table(SECRETS)
            .map_err(Error::store("open secrets"))?;
        let mut services = txn
            .open_table(SERVICES)
            .map_err(Error::store("open services"))?;
        let mut grants = txn
            .open_table(GRANTS)
            .map_err(Error::store("open grants"))?;
        let put_u32 = |t: &mut redb::Table<&str, &[u8]>, field: &str, v: u32| {
            t.insert(field, v.to_be_bytes().as_slice()).map(drop)
        };
        if let Some(m) = create {
            put_u32(&mut meta, FORMAT_VERSION_FIELD, m.format_version)
                .map_err(Error::store("write"))?;
            put_u32(&mut meta, ADMIN_UID_FIELD, m.admin_uid).map_err(Error::store("write"))?;
        }
        for m in batch {
            let done = match m {
                Mutation::PutSecret(name, rec) => secrets
                    .insert(name.as_str(), rec.encode().as_slice())
                    .map(drop),
                Mutation::DeleteSecret(name) => secrets.remove(name.as_str()).map(drop),
                Mutation::PutService(name, rec) => services
                    .insert(name.as_str(), rec.encode().as_slice())
                    .map(drop),
                Mutation::DeleteService(name) => services.remove(name.as_str()).map(drop),
                Mutation::PutGrant(svc, sec) => {
                    grants.insert((svc.as_str(), sec.as_str()), ()).map(drop)
                }
                Mutation::DeleteGrant(svc, sec) => {
                    grants.remove((svc.as_str(), sec.as_str())).map(drop)
                }
                Mutation::SetActiveKey(id) => put_u32(&mut meta, ACTIVE_KEY_FIELD, *id),
                Mutation::SetRotationTarget(Some(id)) => {
                    put_u32(&mut meta, ROTATION_TARGET_FIELD, *id)
                }
                Mutation::SetRotationTarget(None) => meta.remove(ROTATION_TARGET_FIELD).map(drop),
                Mutation::PutKeyCheck(id, check) => meta
                    .insert(
                        format!("{KEY_CHECK_PREFIX}{id}").as_str(),
                        check.encode().as_slice(),
                    )
                    .map(drop),
                Mutation::DeleteKeyCheck(id) => meta
                    .remove(format!("{KEY_CHECK_PREFIX}{id}").as_str())
                    .map(drop),
                Mutation::SetLastChange(t) => meta
                    .insert(LAST_CHANGE_FIELD, t.to_be_bytes().as_slice())
                    .map(drop),
            };
            // On error the transaction is dropped uncommitted: redb aborts it.
            done.map_err(Error::store("write"))?;
        }
    }
    txn.commit().map_err(Error::store("commit"))
}

impl Backend for RedbBackend {
    fn load(&self) -> Result<Stored> {
        let slot = self.db();
        let db = slot
            .as_ref()
            .ok_or_else(|| Error::store("begin read")(Closed))?;
        let txn = db.begin_read().map_err(Error::store("begin read"))?;
        let meta_table = txn.open_table(META).map_err(Error::store("open meta"))?;
        let mut fields = BTreeMap::new();
        for entry in meta_table.iter().map_err(Error::store("read meta"))? {
            let (k, v) = entry.map_err(Error::store("read meta"))?;
            fields.insert(k.value().to_owned(), v.value().to_vec());
        }
        let meta = decode_meta(&fields)?;

        let mut secrets = Vec::new();
        let table = txn
            .open_table(SECRETS)
            .map_err(Error::store("open secrets"))?;
        for entry in table.iter().map_err(Error::store("read secrets"))? {
            let (k, v) = entry.map_err(Error::store("read secrets"))?;
            secrets.push((k.value().to_owned(), SecretRecord::decode(v.value())?));
        }
        let mut services = Vec::new();
        let table = txn
            .open_table(SERVICES)
            .map_err(Error::store("open services"))?;
        for entry in table.iter().map_err(Error::store("read services"))? {
            let (k, v) = entry.map_err(Error::store("read services"))?;
            services.push((k.value().to_owned(), ServiceRecord::decode(v.value())?));
        }
        let mut grants = Vec::new();
        let table = txn
            .open_table(GRANTS)
            .map_err(Error::store("open grants"))?;
        for entry in table.iter().map_err(Error::store("read grants"))? {
            let (k, _) = entry.map_err(Error::store("read grants"))?;
            let (svc, sec) = k.value();
            grants.push((svc.to_owned(), sec.to_owned()));
        }
        Ok(Stored {
            meta,
            secrets,
            services,
            grants,
        })
    }

    fn commit(&self, batch: &[Mutation]) -> Result<()> {
        self.write(batch, None)
    }

    fn backup(&self, out: File) -> Result<()> {
        // The read transaction is the snapshot; the lock is held only to begin it, so that
        // writers wait for nothing but that.
        let txn = {
            let slot = self.db();
            let db = slot
                .as_ref()
                .ok_or_else(|| Error::store("begin read")(Closed))?;
            db.begin_read().map_err(Error::store("begin read"))?
        };
        copy_store(&txn, out)
    }

    fn needs_reopen(&self) -> bool {
        self.db().is_none()
    }

    fn reopen(&self) -> Result<()> {
        let mut slot = self.db();
        if let Some(db) = slot.take() {
            close(db);
        }
        *slot = Some(open_database(
            &self.path,
            "reopening the database after a failed write (retried at the next write)",
        )?);
        Ok(())
    }
}

/// Writes everything `txn` sees into a new store in `out`, table by table and byte for
/// byte (unknown meta fields included), in one write transaction: a store file like the
/// original, as of `txn`'s commit.
fn copy_store(txn: &ReadTransaction, out: File) -> Result<()> {
    let backend =
        redb::backends::FileBackend::new(out).map_err(Error::store("creating the backup"))?;
    let copy = redb::Builder::new()
        .set_cache_size(CACHE_BYTES)
        .create_with_backend(backend)
        .map_err(Error::store("creating the backup"))?;
    let w = copy
        .begin_write()
        .map_err(Error::store("writing the backup"))?;
    {
        const READ: &str = "reading the store for a backup";
        const WRITE: &str = "writing the backup";
        for def in [META, SECRETS, SERVICES] {
            let from = txn.open_table(def).map_err(Error::store(READ))?;
            let mut to = w.open_table(def).map_err(Error::store(WRITE))?;
            for entry in from.iter().map_err(Error::store(READ))? {
                let (k, v) = entry.map_err(Error::store(READ))?;
                to.insert(k.value(), v.value())
                    .map_err(Error::store(WRITE))?;
            }
        }
        let from = txn.open_table(GRANTS).map_err(Error::store(READ))?;
        let mut to = w.open_table(GRANTS).map_err(Error::store(WRITE))?;
        for entry in from.iter().map_err(Error::store(READ))? {
            let (k, _) = entry.map_err(Error::store(READ))?;
            to.insert(k.value(), ()).map_err(Error::store(WRITE))?;
        }
    }
    w.commit().map_err(Error::store("committing the backup"))?;
    copy.close().map_err(Error::store("closing the backup"))
}

/// Opens the store of a data directory that no server holds, for a backup. redb refuses a
/// store another process has open; that is [`Error::Locked`] here.
pub(crate) fn open_for_backup(path: &Path, dir: &Path) -> Result<RedbBackend> {
    match redb::Builder::new()
        .set_cache_size(CACHE_BYTES)
        .set_check_integrity_on_open(true)
        .open(path)
    {
        Ok(db) => Ok(RedbBackend {
            path: path.to_path_buf(),
            db: Mutex::new(Some(db)),
        }),
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => Err(Error::Locked {
            dir: dir.to_path_buf(),
        }),
        Err(e) => Err(Error::store("opening database")(e)),
    }
}

fn decode_meta(fields: &BTreeMap<String, Vec<u8>>) -> Result<Meta> {
    let u32_field = |name: &str| -> Result<Option<u32>> {
        fields
            .get(name)
            .map(|v| {
                <[u8; 4]>::try_from(v.as_slice())
                    .map(u32::from_be_bytes)
                    .map_err(|_| Error::Corrupt {
                        what: "malformed meta field",
                    })
            })
            .transpose()
    };
    let required = |name: &str| {
        u32_field(name)?.ok_or(Error::Corrupt {
            what: "meta field missing",
        })
    };
    let format_version = required(FORMAT_VERSION_FIELD)?;
    if format_version != FORMAT_VERSION {
        return Err(Error::FormatVersion {
            found: format_version,
            supported: FORMAT_VERSION,
        });
    }
    let last_change = fields
        .get(LAST_CHANGE_FIELD)
        .map(|v| {
            <[u8; 8]>::try_from(v.as_slice())
                .map(u64::from_be_bytes)
                .map_err(|_| Error::Corrupt {
                    what: "malformed meta field",
                })
        })
        .transpose()?
        .unwrap_or(0);
    let mut key_checks = BTreeMap::new();
    for (name, value) in fields {
        if let Some(id) = name.strip_prefix(KEY_CHECK_PREFIX) {
            let id = id.parse().map_err(|_| Error::Corrupt {
                what: "malformed key check id",
            })?;
            key_checks.insert(id, KeyCheck::decode(value)?);
        }
    }
    Ok(Meta {
        format_version,
        admin_uid: required(ADMIN_UID_FIELD)?,
        active_key: required(ACTIVE_KEY_FIELD)?,
        rotation_target: u32_field(ROTATION_TARGET_FIELD)?,
        key_checks,
        last_change,
    })
}

/// Test access to the raw tables, for tampering with a store the way an attacker with
/// write access to the data directory could.
#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails by panicking")]
pub(crate) mod raw {
    use super::*;

    /// Reads a secret's stored bytes.
    pub(crate) fn secret(path: &Path, name: &str) -> Vec<u8> {
        let db = Database::open(path).unwrap();
        let txn = db.begin_read().unwrap();
        let table = txn.open_table(SECRETS).unwrap();
        table.get(name).unwrap().unwrap().value().to_vec()
    }

    /// Overwrites a secret's stored bytes.
    pub(crate) fn put_secret(path: &Path, name: &str, bytes: &[u8]) {
        let db = Database::open(path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(SECRETS)
            .unwrap()
            .insert(name, bytes)
            .unwrap();
        txn.commit().unwrap();
    }

    /// Removes a meta field.
    pub(crate) fn remove_meta(path: &Path, field: &str) {
        let db = Database::open(path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META).unwrap().remove(field).unwrap();
        txn.commit().unwrap();
    }

    /// Overwrites a meta field.
    pub(crate) fn put_meta(path: &Path, field: &str, bytes: &[u8]) {
        let db = Database::open(path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META).unwrap().insert(field, bytes).unwrap();
        txn.commit().unwrap();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails by panicking")]
mod tests {
    use super::*;
    use crate::crypto::Key;
    use crate::manifest::Manifest;
    use std::sync::Arc;

    fn meta() -> Meta {
        let key = Key::generate(1).unwrap();
        Meta {
            format_version: FORMAT_VERSION,
            admin_uid: 1000,
            active_key: 1,
            rotation_target: None,
            key_checks: [(1, key.check().unwrap())].into(),
            last_change: 1_700_000_000,
        }
    }

    fn secret(version: u64) -> SecretRecord {
        SecretRecord {
            version,
            incarnation: 9,
            mtime: 10,
            key_id: 1,
            nonce: [1; 12],
            ciphertext: vec![2; 20].into(),
        }
    }

    #[test]
    fn create_commit_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let m = meta();
        let b = RedbBackend::create(&path, &m).unwrap();
        let loaded = b.load().unwrap();
        assert_eq!(loaded.meta, m);
        assert!(loaded.secrets.is_empty() && loaded.services.is_empty());

        let svc = ServiceRecord {
            uid: Some(42),
            manifest: Arc::new(Manifest::parse(b"secret a\n").unwrap()),
        };
        b.commit(&[
            Mutation::PutSecret("a".into(), secret(1)),
            Mutation::PutSecret("b".into(), secret(2)),
            Mutation::PutService("web".into(), svc.clone()),
            Mutation::PutGrant("web".into(), "a".into()),
            Mutation::PutGrant("web".into(), "b".into()),
            Mutation::SetRotationTarget(Some(2)),
        ])
        .unwrap();
        b.commit(&[
            Mutation::DeleteSecret("b".into()),
            Mutation::DeleteGrant("web".into(), "b".into()),
        ])
        .unwrap();
        drop(b);

        let b = RedbBackend::open(&path).unwrap();
        let loaded = b.load().unwrap();
        assert_eq!(loaded.secrets, vec![("a".to_owned(), secret(1))]);
        assert_eq!(loaded.services, vec![("web".to_owned(), svc)]);
        assert_eq!(loaded.grants, vec![("web".to_owned(), "a".to_owned())]);
        assert_eq!(loaded.meta.rotation_target, Some(2));
        b.commit(&[Mutation::SetRotationTarget(None)]).unwrap();
        assert_eq!(b.load().unwrap().meta.rotation_target, None);
        b.commit(&[Mutation::SetLastChange(1_800_000_000)]).unwrap();
        assert_eq!(b.load().unwrap().meta.last_change, 1_800_000_000);
    }

    #[test]
    fn refuses_other_format_versions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        drop(RedbBackend::create(&path, &meta()).unwrap());
        raw::put_meta(&path, FORMAT_VERSION_FIELD, &2u32.to_be_bytes());
        let err = RedbBackend::open(&path).unwrap().load().unwrap_err();
        assert!(
            matches!(
                err,
                Error::FormatVersion {
                    found: 2,
                    supported: 1
                }
            ),
            "{err:?}"
        );
        raw::put_meta(&path, FORMAT_VERSION_FIELD, b"x");
        let err = RedbBackend::open(&path).unwrap().load().unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    }

    #[test]
    fn a_store_from_before_last_change_loads_as_0_and_a_bad_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        drop(RedbBackend::create(&path, &meta()).unwrap());
        raw::remove_meta(&path, LAST_CHANGE_FIELD);
        let loaded = RedbBackend::open(&path).unwrap().load().unwrap();
        assert_eq!(loaded.meta.last_change, 0);
        raw::put_meta(&path, LAST_CHANGE_FIELD, &[1, 2, 3]);
        let err = RedbBackend::open(&path).unwrap().load().unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    }

    #[test]
    fn create_refuses_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        std::fs::write(&path, b"").unwrap();
        assert!(matches!(
            RedbBackend::create(&path, &meta()),
            Err(Error::Io { .. })
        ));
    }
}
