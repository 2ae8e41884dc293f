//! The embedded [`Backend`]: one redb file in a data directory, `DIR/store.redb`, and the
//! directory's lock.
//!
//! Tables (names are part of the format): `meta`, `secrets`, `services`, `grants`,
//! `catalog` (from store format 3; created by the first declaration) and `bundles` (from
//! format 4; created by the first bundle), `audit` and `opened` (from format 6; created by
//! the first audit record and the first open), `&str -> &[u8]`, a row per key; and
//! `revision`, `&str -> u64`, the backend's own: the
//! revision of the last commit under the key `revision` (absent from stores written before
//! there were revisions: 0). A store of format 1 has `grants` as `(&str, &str) -> ()`,
//! keyed by (service, secret): it is read as rows with empty values, and rewritten by
//! [`Backend::replace_all`] when the vault migrates it.
//!
//! Every commit is [`redb::Durability::Immediate`] with two-phase commit: `commit` returns
//! after fsync, and a torn write can never be mistaken for a committed one. Its revision
//! is the last one plus 1, written in the same transaction. One process serves a data
//! directory (it holds `DIR/lock`, see [`lock_dir`]), so the change feed is this process's
//! own commits, kept from `commit` until the vault reads them.
//!
//! redb latches an I/O error (a full disk, say): every later transaction fails with
//! "Previous I/O error occurred. Please close and re-open the database". So any failed
//! write closes the database here, [`Backend::needs_reopen`] says so, and the vault calls
//! [`Backend::reopen`] under its writer lock, now and again at each write until it works.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use tracing::{info, warn};

use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, TableHandle,
    WriteTransaction,
};

use crate::backend::{Backend, Batch, Committed, Feed, Op, Revision, Row, Snapshot, Table};
use crate::error::{Error, Result};
use crate::fsutil::{self, FILE_MODE};

/// The store's file name in a data directory.
pub const STORE_FILE: &str = "store.redb";
/// The lock file's name in a data directory.
pub const LOCK_FILE: &str = "lock";

type Rows = TableDefinition<'static, &'static str, &'static [u8]>;
const META: Rows = TableDefinition::new("meta");
const SECRETS: Rows = TableDefinition::new("secrets");
const SERVICES: Rows = TableDefinition::new("services");
const GRANTS: Rows = TableDefinition::new("grants");
/// Absent from stores of formats 1 and 2 (and from any store no catalog was declared in).
const CATALOG: Rows = TableDefinition::new("catalog");
/// Absent from stores before format 4 (and from any store no bundle was issued from).
const BUNDLES: Rows = TableDefinition::new("bundles");
/// Absent from stores before format 6: the audit trail, read by range, never loaded.
const AUDIT: Rows = TableDefinition::new("audit");
/// Absent from stores before format 6 (and from any store no secret was opened from).
const OPENED: Rows = TableDefinition::new("opened");
/// Absent from stores before format 7 (and from any store no token was made in).
const TOKENS: Rows = TableDefinition::new("tokens");
/// `grants` in a store of format 1.
const GRANTS_V1: TableDefinition<(&str, &str), ()> = TableDefinition::new("grants");
const REVISION: TableDefinition<&str, u64> = TableDefinition::new("revision");
const REVISION_KEY: &str = "revision";

/// redb's page cache. The vault keeps every record in memory and reads the store only at
/// open, so the cache serves commits (B-tree paths), not reads: a small one is enough.
const CACHE_BYTES: usize = 32 << 20;

/// The store of a data directory, holding the directory's lock for as long as it lives.
pub struct RedbBackend {
    dir: PathBuf,
    path: PathBuf,
    /// `None` from a failed write until a reopen succeeds. Every use is a writer's (or
    /// `load`'s), so a mutex costs readers nothing: they are served from memory.
    db: Mutex<Option<Database>>,
    /// Commits not yet read from the change feed.
    feed: Mutex<VecDeque<Committed>>,
    // Declared last so it is dropped last: the store is closed before another process
    // can take the directory. `None` for a store opened only to copy it.
    _lock: Option<File>,
}

impl std::fmt::Debug for RedbBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbBackend")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// The store is closed after a failed write and not yet reopened.
#[derive(Debug, thiserror::Error)]
#[error("the database was closed after a failed write and is reopened at the next write")]
struct Closed;

impl RedbBackend {
    /// Opens the store of data directory `dir`: checks that the directory, its lock file
    /// and the store are private to this process's uid (owned by it or root, nothing for
    /// group or others), and takes the directory's lock for the backend's lifetime.
    ///
    /// # Errors
    /// [`Error::ForeignOwner`], [`Error::OpenToOthers`], [`Error::Locked`],
    /// [`Error::Corrupt`] for a store that is not a regular file, I/O and store errors.
    pub fn open(dir: &Path) -> Result<RedbBackend> {
        check_data_dir(dir)?;
        let lock = lock_dir(dir)?;
        let path = dir.join(STORE_FILE);
        let meta = std::fs::metadata(&path).map_err(Error::io("checking store", &path))?;
        if !meta.is_file() {
            return Err(Error::Corrupt {
                what: "the store is not a regular file",
            });
        }
        fsutil::check_private("store", &path, &meta, FILE_MODE)?;
        let db = open_database(&path, "opening database")?;
        Ok(RedbBackend::new(dir, db, Some(lock)))
    }

    /// Creates an empty store (no rows, revision 0) in data directory `dir`, whose lock
    /// the caller holds and hands over.
    pub(crate) fn create(dir: &Path, lock: File) -> Result<RedbBackend> {
        let path = dir.join(STORE_FILE);
        // Created owner-only by us, so redb never creates it with the umask's mode.
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&path)
            .map_err(Error::io("creating store", &path))?;
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(Error::store("creating database"))?;
        let backend = RedbBackend::new(dir, db, Some(lock));
        // The tables exist from the start, so that a load never finds one missing.
        backend.write(|txn| {
            for def in [META, SECRETS, SERVICES, GRANTS] {
                txn.open_table(def).map_err(Error::store("create table"))?;
            }
            txn.open_table(REVISION)
                .map_err(Error::store("create table"))?;
            Ok(())
        })?;
        Ok(backend)
    }

    /// Opens the store of a data directory that no server holds, only to copy it: takes
    /// no lock (the caller holds it, if there is one). redb refuses a store another
    /// process has open; that is [`Error::Locked`] here.
    pub(crate) fn open_for_backup(dir: &Path) -> Result<RedbBackend> {
        let path = dir.join(STORE_FILE);
        match redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .set_check_integrity_on_open(true)
            .open(&path)
        {
            Ok(db) => Ok(RedbBackend::new(dir, db, None)),
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => Err(Error::Locked {
                dir: dir.to_path_buf(),
            }),
            Err(e) => Err(Error::store("opening database")(e)),
        }
    }

    fn new(dir: &Path, db: Database, lock: Option<File>) -> RedbBackend {
        RedbBackend {
            dir: dir.to_path_buf(),
            path: dir.join(STORE_FILE),
            db: Mutex::new(Some(db)),
            feed: Mutex::new(VecDeque::new()),
            _lock: lock,
        }
    }

    fn db(&self) -> MutexGuard<'_, Option<Database>> {
        // The guarded value is only ever replaced whole: a panic cannot leave it torn.
        self.db.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One write transaction running `body`, committed durably. Any failure closes the
    /// database (see the module documentation); a [`Error::Conflict`] writes nothing and
    /// leaves it open.
    fn write<T>(&self, body: impl FnOnce(&WriteTransaction) -> Result<T>) -> Result<T> {
        let mut slot = self.db();
        let db = slot
            .as_ref()
            .ok_or_else(|| Error::store("begin write")(Closed))?;
        let result = (|| {
            let mut txn = db.begin_write().map_err(Error::store("begin write"))?;
            txn.set_two_phase_commit(true);
            let out = body(&txn)?;
            txn.commit().map_err(Error::store("commit"))?;
            Ok(out)
        })();
        if let Err(e) = &result
            && !matches!(e, Error::Conflict { .. })
            && let Some(db) = slot.take()
        {
            close(db);
        }
        result
    }

    /// Writes a copy of the whole store into `out` (see [`Backend::backup`]).
    pub(crate) fn backup_into(&self, out: File) -> Result<()> {
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

/// The redb table of a row table.
fn rows_table(table: Table) -> Rows {
    TableDefinition::new(table.name())
}

/// The revision a transaction sees.
fn revision_in(txn: &WriteTransaction) -> Result<Revision> {
    let table = txn
        .open_table(REVISION)
        .map_err(Error::store("open revision"))?;
    let rev = table
        .get(REVISION_KEY)
        .map_err(Error::store("read revision"))?
        .map_or(0, |v| v.value());
    Ok(Revision(rev))
}

/// Applies `ops` in `txn`, opening each table once for a run of writes to it (a batch of
/// audit records is thousands of rows of one table).
fn write_ops(txn: &WriteTransaction, ops: &[Op]) -> Result<()> {
    let mut open: Option<(Table, redb::Table<'_, &'static str, &'static [u8]>)> = None;
    for op in ops {
        let row = op.row();
        let t = match &mut open {
            Some((table, t)) if *table == row.table => t,
            _ => {
                // The table open before is closed first: redb allows one open at a time.
                open = None;
                let t = txn
                    .open_table(rows_table(row.table))
                    .map_err(Error::store("open table"))?;
                &mut open.insert((row.table, t)).1
            }
        };
        // On error the transaction is dropped uncommitted: redb aborts it.
        match op {
            Op::Put(_, value) => t.insert(row.key.as_str(), value.as_slice()).map(drop),
            Op::Delete(_) => t.remove(row.key.as_str()).map(drop),
        }
        .map_err(Error::store("write"))?;
    }
    Ok(())
}

/// Writes `next` as the revision in `txn`.
fn set_revision(txn: &WriteTransaction, next: Revision) -> Result<()> {
    txn.open_table(REVISION)
        .map_err(Error::store("open revision"))?
        .insert(REVISION_KEY, next.0)
        .map_err(Error::store("write revision"))?;
    Ok(())
}

/// Reads every row of `grants`, in either format's table.
fn read_grants(txn: &ReadTransaction, rows: &mut Vec<(Row, Vec<u8>)>) -> Result<()> {
    match txn.open_table(GRANTS) {
        Ok(t) => {
            for entry in t.iter().map_err(Error::store("read grants"))? {
                let (k, v) = entry.map_err(Error::store("read grants"))?;
                rows.push((Row::new(Table::Grants, k.value()), v.value().to_vec()));
            }
        }
        Err(redb::TableError::TableTypeMismatch { .. }) => {
            let t = txn
                .open_table(GRANTS_V1)
                .map_err(Error::store("open grants"))?;
            for entry in t.iter().map_err(Error::store("read grants"))? {
                let (k, _) = entry.map_err(Error::store("read grants"))?;
                let (svc, sec) = k.value();
                rows.push((Row::grant(svc, sec), Vec::new()));
            }
        }
        Err(e) => return Err(Error::store("open grants")(e)),
    }
    Ok(())
}

impl Backend for RedbBackend {
    fn load(&self) -> Result<Snapshot> {
        let slot = self.db();
        let db = slot
            .as_ref()
            .ok_or_else(|| Error::store("begin read")(Closed))?;
        let txn = db.begin_read().map_err(Error::store("begin read"))?;
        let mut rows = Vec::new();
        for table in [Table::Meta, Table::Secrets, Table::Services] {
            let t = txn
                .open_table(rows_table(table))
                .map_err(Error::store("open table"))?;
            for entry in t.iter().map_err(Error::store("read table"))? {
                let (k, v) = entry.map_err(Error::store("read table"))?;
                rows.push((Row::new(table, k.value()), v.value().to_vec()));
            }
        }
        read_grants(&txn, &mut rows)?;
        // Created by the first commit that declares something, issues a bundle, records
        // an open or makes a token. (The audit trail is not loaded: it is read by range.)
        for (table, def) in [
            (Table::Catalog, CATALOG),
            (Table::Bundles, BUNDLES),
            (Table::Opened, OPENED),
            (Table::Tokens, TOKENS),
        ] {
            match txn.open_table(def) {
                Ok(t) => {
                    for entry in t.iter().map_err(Error::store("read table"))? {
                        let (k, v) = entry.map_err(Error::store("read table"))?;
                        rows.push((Row::new(table, k.value()), v.value().to_vec()));
                    }
                }
                Err(redb::TableError::TableDoesNotExist(_)) => {}
                Err(e) => return Err(Error::store("open table")(e)),
            }
        }
        let revision = match txn.open_table(REVISION) {
            Ok(t) => t
                .get(REVISION_KEY)
                .map_err(Error::store("read revision"))?
                .map_or(0, |v| v.value()),
            // A store from before revisions: none was counted yet.
            Err(redb::TableError::TableDoesNotExist(_)) => 0,
            Err(e) => return Err(Error::store("open revision")(e)),
        };
        Ok(Snapshot {
            revision: Revision(revision),
            rows,
        })
    }

    fn commit(&self, batch: Batch) -> Result<Revision> {
        let Batch { base, ops, .. } = batch;
        let revision = self.write(|txn| {
            let found = revision_in(txn)?;
            if found != base {
                return Err(Error::Conflict {
                    expected: base.0,
                    found: found.0,
                });
            }
            write_ops(txn, &ops)?;
            let next = Revision(found.0 + 1);
            set_revision(txn, next)?;
            Ok(next)
        })?;
        self.feed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(Committed {
                base,
                revision,
                ops,
            });
        Ok(revision)
    }

    fn replace_all(&self, base: Revision, rows: Vec<(Row, Vec<u8>)>) -> Result<Revision> {
        self.write(|txn| {
            let found = revision_in(txn)?;
            if found != base {
                return Err(Error::Conflict {
                    expected: base.0,
                    found: found.0,
                });
            }
            // By name, whatever a table's key and value types were.
            for table in Table::ALL {
                txn.delete_table(rows_table(table))
                    .map_err(Error::store("delete table"))?;
                txn.open_table(rows_table(table))
                    .map_err(Error::store("create table"))?;
            }
            let ops: Vec<Op> = rows
                .into_iter()
                .map(|(row, value)| Op::Put(row, value))
                .collect();
            write_ops(txn, &ops)?;
            let next = Revision(found.0 + 1);
            set_revision(txn, next)?;
            Ok(next)
        })
    }

    fn changes(&self, after: Revision) -> Result<Feed> {
        let queued = std::mem::take(&mut *self.feed.lock().unwrap_or_else(PoisonError::into_inner));
        let fresh: Vec<Committed> = queued.into_iter().filter(|c| c.revision > after).collect();
        match fresh.first() {
            // The first one not yet applied was made after one this feed no longer has.
            Some(first) if first.base > after => Ok(Feed::Lost),
            _ => Ok(Feed::Commits(fresh)),
        }
    }

    fn backup(&self) -> Result<File> {
        let dir = &self.dir;
        let file =
            tempfile::tempfile_in(dir).map_err(Error::io("creating a backup file in", dir))?;
        let copy = file
            .try_clone()
            .map_err(Error::io("creating a backup file in", dir))?;
        self.backup_into(copy)?;
        Ok(file)
    }

    fn range(
        &self,
        table: Table,
        from: &str,
        to: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        // The read transaction is begun under the lock and read after it: writers are
        // held up only for the moment it takes to begin it.
        let txn = {
            let slot = self.db();
            let db = slot
                .as_ref()
                .ok_or_else(|| Error::store("begin read")(Closed))?;
            db.begin_read().map_err(Error::store("begin read"))?
        };
        let t = match txn.open_table(rows_table(table)) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(Error::store("open table")(e)),
        };
        let mut out = Vec::new();
        if from >= to {
            return Ok(out);
        }
        for entry in t.range(from..to).map_err(Error::store("read table"))? {
            if out.len() >= limit {
                break;
            }
            let (k, v) = entry.map_err(Error::store("read table"))?;
            out.push((k.value().to_owned(), v.value().to_vec()));
        }
        Ok(out)
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
        // What was committed before is in the store the vault reloads next.
        self.feed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        info!(path = %self.path.display(), "reopened the store");
        Ok(())
    }

    fn data_dir(&self) -> Option<&Path> {
        Some(&self.dir)
    }
}

/// Writes everything `txn` sees into a new store in `out`, table by table and byte for
/// byte, in one write transaction: a store file like the original, as of `txn`'s commit.
fn copy_store(txn: &ReadTransaction, out: File) -> Result<()> {
    const READ: &str = "reading the store for a backup";
    const WRITE: &str = "writing the backup";
    let backend =
        redb::backends::FileBackend::new(out).map_err(Error::store("creating the backup"))?;
    let copy = redb::Builder::new()
        .set_cache_size(CACHE_BYTES)
        .create_with_backend(backend)
        .map_err(Error::store("creating the backup"))?;
    let w = copy.begin_write().map_err(Error::store(WRITE))?;
    {
        for def in [
            META, SECRETS, SERVICES, GRANTS, CATALOG, BUNDLES, AUDIT, OPENED, TOKENS,
        ] {
            let from = match txn.open_table(def) {
                Ok(from) => from,
                // A store in which nothing was ever declared, no bundle issued, nothing
                // audited or opened.
                Err(redb::TableError::TableDoesNotExist(_))
                    if matches!(
                        def.name(),
                        "catalog" | "bundles" | "audit" | "opened" | "tokens"
                    ) =>
                {
                    continue;
                }
                // A store of format 1 (a backup before its migration): its grants as they are.
                Err(redb::TableError::TableTypeMismatch { .. }) if def.name() == "grants" => {
                    let from = txn.open_table(GRANTS_V1).map_err(Error::store(READ))?;
                    let mut to = w.open_table(GRANTS_V1).map_err(Error::store(WRITE))?;
                    for entry in from.iter().map_err(Error::store(READ))? {
                        let (k, _) = entry.map_err(Error::store(READ))?;
                        to.insert(k.value(), ()).map_err(Error::store(WRITE))?;
                    }
                    continue;
                }
                Err(e) => return Err(Error::store(READ)(e)),
            };
            let mut to = w.open_table(def).map_err(Error::store(WRITE))?;
            for entry in from.iter().map_err(Error::store(READ))? {
                let (k, v) = entry.map_err(Error::store(READ))?;
                to.insert(k.value(), v.value())
                    .map_err(Error::store(WRITE))?;
            }
        }
        let mut to = w.open_table(REVISION).map_err(Error::store(WRITE))?;
        match txn.open_table(REVISION) {
            Ok(from) => {
                for entry in from.iter().map_err(Error::store(READ))? {
                    let (k, v) = entry.map_err(Error::store(READ))?;
                    to.insert(k.value(), v.value())
                        .map_err(Error::store(WRITE))?;
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(Error::store(READ)(e)),
        }
    }
    w.commit().map_err(Error::store("committing the backup"))?;
    copy.close().map_err(Error::store("closing the backup"))
}

/// Refuses a data directory that is not a directory private to this process's uid.
pub(crate) fn check_data_dir(dir: &Path) -> Result<()> {
    let meta = std::fs::metadata(dir).map_err(Error::io("checking data directory", dir))?;
    if !meta.is_dir() {
        return Err(Error::Io {
            op: "checking data directory",
            path: dir.to_path_buf(),
            source: std::io::ErrorKind::NotADirectory.into(),
        });
    }
    fsutil::check_private("data directory", dir, &meta, fsutil::DIR_MODE)
}

/// Takes the data directory's lock: an exclusive `flock` on `DIR/lock`, held as long as
/// the returned file is open. The kernel drops it when the process dies, however it dies.
pub(crate) fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(&path)
        .map_err(Error::io("opening lock file", &path))?;
    // Anyone who can open the lock file can hold its lock, and keep the server from starting.
    let meta = file
        .metadata()
        .map_err(Error::io("checking lock file", &path))?;
    fsutil::check_private("lock file", &path, &meta, FILE_MODE)?;
    hold_lock(&file, dir, &path)?;
    Ok(file)
}

/// How long a server waits for backups of its directory to end before it gives up: a
/// backup holds the lock only for as long as it copies the store (seconds), and a server
/// that a scheduled backup kept from starting would otherwise stay down (the systemd unit
/// does not restart a server that exits 1).
const BACKUP_PATIENCE: std::time::Duration = std::time::Duration::from_secs(120);

/// Takes the lock of `file`, the lock file at `path` of data directory `dir`: exclusive
/// for a server, waiting out backups (which hold it shared) for up to
/// [`BACKUP_PATIENCE`].
///
/// # Errors
/// [`Error::Locked`] if another server holds it (or backups outlast the patience).
pub(crate) fn hold_lock(file: &File, dir: &Path, path: &Path) -> Result<()> {
    // A lock can be held for an instant by a process that is not a server at all: a
    // child forked by whoever last had this directory open holds the inherited lock
    // descriptor until it execs. So a held lock is asked again for a moment before it is
    // taken to mean that another srv-secrets serves the directory.
    const PATIENCE: std::time::Duration = std::time::Duration::from_millis(250);
    let started = std::time::Instant::now();
    let mut said = false;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(TryLockError::Error(e)) => return Err(Error::io("locking", path)(e)),
            Err(TryLockError::WouldBlock) => {}
        }
        let waited = started.elapsed();
        if waited >= PATIENCE {
            // Held shared: by backups only (a server holds it exclusively).
            let backups = match file.try_lock_shared() {
                Ok(()) => {
                    let _ = file.unlock();
                    true
                }
                Err(TryLockError::WouldBlock) => false,
                Err(TryLockError::Error(e)) => return Err(Error::io("locking", path)(e)),
            };
            if !backups || waited >= BACKUP_PATIENCE {
                return Err(Error::Locked {
                    dir: dir.to_path_buf(),
                });
            }
            if !said {
                tracing::info!(dir = %dir.display(), "waiting for a backup of the data directory to end");
                said = true;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Takes `file`'s lock shared, as a backup does: servers wait for it, other backups share
/// it, and it is refused while a server holds it.
///
/// # Errors
/// [`Error::Locked`] if a server holds it.
pub(crate) fn share_lock(file: &File, dir: &Path, path: &Path) -> Result<()> {
    match file.try_lock_shared() {
        Ok(()) => Ok(()),
        Err(TryLockError::WouldBlock) => Err(Error::Locked {
            dir: dir.to_path_buf(),
        }),
        Err(TryLockError::Error(e)) => Err(Error::io("locking", path)(e)),
    }
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

    /// Reads a meta field.
    pub(crate) fn meta(path: &Path, field: &str) -> Option<Vec<u8>> {
        let db = Database::open(path).unwrap();
        let txn = db.begin_read().unwrap();
        let table = txn.open_table(META).unwrap();
        table.get(field).unwrap().map(|v| v.value().to_vec())
    }

    /// Every row of the grants table, in this format's layout (panics on format 1's).
    pub(crate) fn grants(path: &Path) -> Vec<(String, Vec<u8>)> {
        let db = Database::open(path).unwrap();
        let txn = db.begin_read().unwrap();
        let table = txn.open_table(GRANTS).unwrap();
        table
            .iter()
            .unwrap()
            .map(|e| {
                let (k, v) = e.unwrap();
                (k.value().to_owned(), v.value().to_vec())
            })
            .collect()
    }

    /// Reads a row.
    pub(crate) fn get(path: &Path, table: Table, key: &str) -> Option<Vec<u8>> {
        let db = Database::open(path).unwrap();
        let txn = db.begin_read().unwrap();
        let table = txn.open_table(rows_table(table)).unwrap();
        table.get(key).unwrap().map(|v| v.value().to_vec())
    }

    /// Writes a row.
    pub(crate) fn put(path: &Path, table: Table, key: &str, bytes: &[u8]) {
        let db = Database::open(path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(rows_table(table))
            .unwrap()
            .insert(key, bytes)
            .unwrap();
        txn.commit().unwrap();
    }

    /// Removes a row.
    pub(crate) fn delete(path: &Path, table: Table, key: &str) {
        let db = Database::open(path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(rows_table(table))
            .unwrap()
            .remove(key)
            .unwrap();
        txn.commit().unwrap();
    }

    /// Overwrites a meta field.
    pub(crate) fn put_meta(path: &Path, field: &str, bytes: &[u8]) {
        put(path, Table::Meta, field, bytes);
    }

    /// Removes a meta field.
    pub(crate) fn remove_meta(path: &Path, field: &str) {
        let db = Database::open(path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META).unwrap().remove(field).unwrap();
        txn.commit().unwrap();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails by panicking")]
mod tests {
    use super::*;
    use crate::actor::Actor;

    fn backend(dir: &Path) -> RedbBackend {
        fsutil::create_private_dir(dir).unwrap();
        RedbBackend::create(dir, lock_dir(dir).unwrap()).unwrap()
    }

    fn batch(base: u64, ops: Vec<Op>) -> Batch {
        Batch {
            base: Revision(base),
            actor: Actor::local(),
            ops,
        }
    }

    fn put(table: Table, key: &str, value: &[u8]) -> Op {
        Op::Put(Row::new(table, key), value.to_vec())
    }

    fn sorted(mut rows: Vec<(Row, Vec<u8>)>) -> Vec<(Row, Vec<u8>)> {
        rows.sort();
        rows
    }

    #[test]
    fn commits_are_conditional_counted_and_fed_back_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let b = backend(&dir);
        assert_eq!(b.load().unwrap().revision, Revision(0));
        let first = vec![
            put(Table::Meta, "m", b"1"),
            put(Table::Secrets, "a", b"sa"),
            put(Table::Services, "web", b"sw"),
            Op::Put(Row::grant("web", "a"), b"g".to_vec()),
        ];
        assert_eq!(b.commit(batch(0, first)).unwrap(), Revision(1));
        let second = vec![
            Op::Delete(Row::new(Table::Secrets, "a")),
            Op::Delete(Row::grant("web", "a")),
            put(Table::Secrets, "b", b"sb"),
        ];
        assert_eq!(b.commit(batch(1, second)).unwrap(), Revision(2));
        // Planned against revision 1, after 2 was made: refused, nothing written, and the
        // store stays open.
        let err = b
            .commit(batch(1, vec![put(Table::Secrets, "c", b"sc")]))
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Conflict {
                    expected: 1,
                    found: 2
                }
            ),
            "{err:?}"
        );
        assert!(!b.needs_reopen());
        // The feed: both commits, in order, each once.
        let Feed::Commits(fed) = b.changes(Revision(0)).unwrap() else {
            panic!("lost")
        };
        let revs: Vec<_> = fed.iter().map(|c| (c.base.0, c.revision.0)).collect();
        assert_eq!(revs, [(0, 1), (1, 2)]);
        assert_eq!(fed[1].ops.len(), 3);
        assert!(matches!(b.changes(Revision(2)).unwrap(), Feed::Commits(c) if c.is_empty()));
        b.commit(batch(2, vec![put(Table::Secrets, "d", b"sd")]))
            .unwrap();
        // A reader that missed commits the feed no longer holds is told to reload.
        b.commit(batch(3, vec![put(Table::Secrets, "e", b"se")]))
            .unwrap();
        assert!(matches!(b.changes(Revision(3)).unwrap(), Feed::Commits(c) if c.len() == 1));
        b.commit(batch(4, vec![put(Table::Secrets, "f", b"sf")]))
            .unwrap();
        assert!(matches!(b.changes(Revision(2)).unwrap(), Feed::Lost));
        drop(b);

        let b = RedbBackend::open(&dir).unwrap();
        let loaded = b.load().unwrap();
        assert_eq!(loaded.revision, Revision(5));
        assert_eq!(
            sorted(loaded.rows),
            sorted(vec![
                (Row::new(Table::Meta, "m"), b"1".to_vec()),
                (Row::new(Table::Secrets, "b"), b"sb".to_vec()),
                (Row::new(Table::Secrets, "d"), b"sd".to_vec()),
                (Row::new(Table::Secrets, "e"), b"se".to_vec()),
                (Row::new(Table::Secrets, "f"), b"sf".to_vec()),
                (Row::new(Table::Services, "web"), b"sw".to_vec()),
            ])
        );
    }

    #[test]
    fn the_lock_is_the_backends() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let b = backend(&dir);
        let err = RedbBackend::open(&dir).unwrap_err();
        assert!(matches!(err, Error::Locked { .. }), "{err:?}");
        drop(b);
        RedbBackend::open(&dir).unwrap();
    }

    #[test]
    fn a_server_waits_for_a_backup_and_a_backup_is_refused_by_a_server() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        drop(backend(&dir));
        let path = dir.join(LOCK_FILE);
        // A backup holds the lock shared; a second backup may too.
        let backup = File::open(&path).unwrap();
        share_lock(&backup, &dir, &path).unwrap();
        let second = File::open(&path).unwrap();
        share_lock(&second, &dir, &path).unwrap();
        drop(second);
        // A server starting meanwhile waits for the backup to end, instead of failing.
        let release = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(600));
            drop(backup);
        });
        let started = std::time::Instant::now();
        let server = RedbBackend::open(&dir).unwrap();
        assert!(started.elapsed() >= std::time::Duration::from_millis(500));
        release.join().unwrap();
        // While a server holds it, a backup is refused at once.
        let late = File::open(&path).unwrap();
        assert!(matches!(
            share_lock(&late, &dir, &path),
            Err(Error::Locked { .. })
        ));
        drop(server);
    }

    #[test]
    fn create_refuses_an_existing_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        fsutil::create_private_dir(&dir).unwrap();
        std::fs::write(dir.join(STORE_FILE), b"").unwrap();
        assert!(matches!(
            RedbBackend::create(&dir, lock_dir(&dir).unwrap()),
            Err(Error::Io { .. })
        ));
    }
}
