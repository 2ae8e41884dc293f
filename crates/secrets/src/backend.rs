//! The seam between the vault and its durable store: what a second store (etcd, for
//! several nodes) implements beside the embedded one ([`RedbBackend`](crate::RedbBackend)).
//!
//! A backend is a dumb, transactional store of rows: a [`Row`] is a [`Table`] and a key,
//! its value opaque bytes. It knows nothing of encryption, names or invariants; the vault
//! encodes every record (and, from format 2, authenticates it) before handing it over, and
//! decides every change, cascades included. What a backend provides:
//!
//! - [`Backend::load`]: every row but the audit trail's, and the [`Revision`] they are as
//!   of. The vault keeps everything in memory and never reads the backend on the hot path.
//! - [`Backend::range`]: rows of a table in key order, a page at a time: how the audit
//!   trail ([`Table::Audit`], which grows without bound and is never held in memory) is
//!   read.
//! - [`Backend::commit`]: one [`Batch`], fully or not at all, durably, and only if the
//!   store is still at the batch's `base` revision (the one the vault's memory is at):
//!   otherwise [`Error::Conflict`], and nothing is written. A crash at any moment leaves
//!   the old state or the new one. Each commit makes a new revision, greater than every
//!   earlier one (consecutive for redb; etcd's revisions are not).
//! - [`Backend::changes`]: the change feed. Every commit, the vault's own and any other
//!   writer's, in revision order, each with the revision it was made against, so that the
//!   vault applies them to memory in order and notices one it missed. The vault's memory
//!   changes only through the feed: redb's feed is the vault's own commits, handed back;
//!   a shared store's also carries the other nodes'.
//! - [`Backend::backup`], [`Backend::needs_reopen`], [`Backend::reopen`]: a copy as of one
//!   commit, and recovery from a store that latched a failed write (redb after a full
//!   disk).
//!
//! # Bounds
//!
//! A batch holds at most [`MAX_BATCH_MUTATIONS`] rows put or deleted besides the store
//! record every commit rewrites, and at most [`MAX_BATCH_BYTES`] of keys and values: ctl's
//! bounds on a transaction (10,000 commands, 4 MiB) and on a catalog apply (10,000 secrets
//! and their values), so that whatever a client may send as one transaction is one
//! commit, and no more, since etcd takes far less in one
//! transaction than redb (128 operations and 1.5 MiB by default; its operator raises
//! `--max-txn-ops` and `--max-request-bytes` to these). The vault refuses a batch past
//! either with [`Error::TooLarge`] before it reaches the backend, and makes its own
//! batches (a rotation's) within them.
//!
//! All calls block; a backend is shared between threads.

use std::fmt;
use std::fs::File;
use std::path::Path;

use crate::actor::Actor;
use crate::error::{Error, Result};

/// The most rows one batch puts or deletes, besides the store record every commit
/// rewrites: a ctl transaction's 10,000 commands (a `delete` takes its grants along), or a
/// `catalog apply` of 10,000 secrets with their values (a row for each declaration and
/// each value) and its tiers and services, each with its audit records (one a change, and
/// one for each value a catalog apply stores). What it is for: an etcd transaction takes
/// one operation a row (`--max-txn-ops` must be above it).
pub const MAX_BATCH_MUTATIONS: usize = 40_000;

/// The most bytes one batch carries, its rows' keys and values as stored. 4 MiB of values
/// is what one ctl transaction may hold; a secret's record carries its previous and
/// pending versions beside the current one, so staging 4 MiB of new values rewrites up to
/// three times that; sealing adds a tag to each chunk of a value and an envelope to each
/// record, which this leaves room for. What it is for: an etcd transaction is one request
/// (`--max-request-bytes` must be above it).
pub const MAX_BATCH_BYTES: usize = 16 << 20;

/// A logical table. Backends name theirs by [`Table::name`], which is part of the format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Table {
    /// Store-wide facts: the format version, key checks, the store record.
    Meta,
    /// Secrets, by name.
    Secrets,
    /// Services, by name.
    Services,
    /// Grants, by `SERVICE/SECRET` (names never contain `/`).
    Grants,
    /// The deployment catalog's declarations, by `tier/TIER`, `service/SERVICE` and
    /// `secret/SECRET`: metadata, never a value (store format 3).
    Catalog,
    /// The bundles issued, by `bundle/SERVICE/TIER/DEPLOYMENT/N`, and each value generated
    /// for one, by `value/SERVICE/TIER/DEPLOYMENT/N/SECRET`: a fingerprint, never the value
    /// (store format 4).
    Bundles,
    /// The audit trail, by `CHAIN/SEQ` (SEQ zero-padded to 20 digits, so that key order
    /// is chain order): each record signed or linked to one that is (store format 6).
    /// Never loaded whole: read by [`Backend::range`].
    Audit,
    /// The highest version of each secret each service has opened, by `SECRET/SERVICE`
    /// (store format 6), written with the opens' audit records.
    Opened,
    /// API tokens, by ID: whose each is and its keyed hash, never the token (store
    /// format 7).
    Tokens,
}

impl Table {
    /// Every table, in the order a backup or a migration copies them.
    pub const ALL: [Table; 9] = [
        Table::Meta,
        Table::Secrets,
        Table::Services,
        Table::Grants,
        Table::Catalog,
        Table::Bundles,
        Table::Audit,
        Table::Opened,
        Table::Tokens,
    ];

    /// The table's stable name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Meta => "meta",
            Table::Secrets => "secrets",
            Table::Services => "services",
            Table::Grants => "grants",
            Table::Catalog => "catalog",
            Table::Bundles => "bundles",
            Table::Audit => "audit",
            Table::Opened => "opened",
            Table::Tokens => "tokens",
        }
    }
}

/// Where a value lives: a table and a key in it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Row {
    /// The table.
    pub table: Table,
    /// The key: a name, or `SERVICE/SECRET` for a grant.
    pub key: String,
}

impl Row {
    /// The row `key` of `table`.
    pub fn new(table: Table, key: impl Into<String>) -> Row {
        Row {
            table,
            key: key.into(),
        }
    }

    /// The row of the grant of `secret` to `service`.
    pub fn grant(service: &str, secret: &str) -> Row {
        Row::new(Table::Grants, format!("{service}/{secret}"))
    }

    /// The (service, secret) of a grant's row.
    pub fn grant_names(&self) -> Option<(&str, &str)> {
        match self.table {
            Table::Grants => self.key.split_once('/'),
            _ => None,
        }
    }
}

impl fmt::Display for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.table.name(), self.key)
    }
}

/// One write of a batch.
#[derive(Clone, PartialEq, Eq)]
pub enum Op {
    /// Insert or replace the row's value.
    Put(Row, Vec<u8>),
    /// Remove the row (removing a row that is not there is not an error).
    Delete(Row),
}

impl Op {
    /// The row written.
    pub fn row(&self) -> &Row {
        match self {
            Op::Put(row, _) | Op::Delete(row) => row,
        }
    }

    /// Its size against [`MAX_BATCH_BYTES`]: the key, and the value of a put.
    pub fn size(&self) -> usize {
        let table = self.row().table.name().len();
        match self {
            Op::Put(row, value) => table + row.key.len() + value.len(),
            Op::Delete(row) => table + row.key.len(),
        }
    }
}

/// Values may be ciphertext; even so, they are shown by length only.
impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Put(row, value) => write!(f, "Put({row}, {} bytes)", value.len()),
            Op::Delete(row) => write!(f, "Delete({row})"),
        }
    }
}

/// A store revision: which commits a state includes. 0 is a store no commit made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision(pub u64);

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What the vault commits: rows to write, the revision they were planned against, and who
/// asked for them.
#[derive(Debug)]
pub struct Batch {
    /// Commit only if the store is still at this revision.
    pub base: Revision,
    /// Who made the change (a backend may record it; the vault logs it).
    pub actor: Actor,
    /// The writes, applied in order.
    pub ops: Vec<Op>,
}

/// Everything a store holds, as of one revision.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The revision of the last commit it includes.
    pub revision: Revision,
    /// Every row and its value, in no particular order.
    pub rows: Vec<(Row, Vec<u8>)>,
}

/// One commit, as the change feed delivers it.
#[derive(Debug)]
pub struct Committed {
    /// The revision it was made against: the one before it, for whoever applies them in
    /// order.
    pub base: Revision,
    /// The revision it made.
    pub revision: Revision,
    /// Its writes.
    pub ops: Vec<Op>,
}

/// What [`Backend::changes`] has to say.
#[derive(Debug)]
pub enum Feed {
    /// The commits after the revision asked about, oldest first (none: nothing new).
    Commits(Vec<Committed>),
    /// The store no longer holds them (a compacted history, or a feed that was not read
    /// in time): the vault must [`load`](Backend::load) everything again.
    Lost,
}

/// A durable, transactional store of rows. See the module documentation for the contract.
pub trait Backend: Send + Sync {
    /// Every row (but those of [`Table::Audit`], which a backend may leave out: the vault
    /// skips them), and the revision they are as of.
    ///
    /// # Errors
    /// The store's.
    fn load(&self) -> Result<Snapshot>;

    /// Applies `batch` atomically and durably, if the store is still at `batch.base`: when
    /// this returns `Ok` with the revision the commit made, every write is on stable
    /// storage and the commit is in the change feed; when it returns `Err`, none is.
    ///
    /// # Errors
    /// [`Error::Conflict`] if another commit came first; the store's.
    fn commit(&self, batch: Batch) -> Result<Revision>;

    /// Replaces every row with `rows` in one commit, whatever its size, if the store is
    /// still at `base`: a migration of a whole store to another format. Its revision is
    /// returned but it is not in the change feed: the vault loads the store again after it.
    ///
    /// # Errors
    /// [`Error::Conflict`]; the store's; a backend that holds no store of an older format
    /// says so.
    fn replace_all(&self, _base: Revision, _rows: Vec<(Row, Vec<u8>)>) -> Result<Revision> {
        Err(Error::Corrupt {
            what: "this store backend cannot migrate a store",
        })
    }

    /// The change feed: every commit after revision `after`, oldest first, each delivered
    /// once. The vault reads it after each of its commits and whenever it is told that the
    /// store changed.
    ///
    /// # Errors
    /// The store's.
    fn changes(&self, after: Revision) -> Result<Feed>;

    /// Writes a consistent copy of the whole store, as it was at one commit, into a file
    /// without a name that it returns (rewound or not: callers read it at offsets), in the
    /// form this backend opens as a store. Commits made meanwhile are not in it and are not
    /// held up by it, except for an instant at the start.
    ///
    /// # Errors
    /// The store's and the file's; a backend that cannot make backups says so.
    fn backup(&self) -> Result<File> {
        Err(Error::Corrupt {
            what: "this store backend cannot make backups",
        })
    }

    /// Up to `limit` rows of `table` whose keys are at least `from` and below `to`, in key
    /// order: a page of the audit trail. Committed rows only; pages read one after
    /// another need not be of one revision (the audit trail only grows).
    ///
    /// # Errors
    /// The store's; a backend that keeps no audit trail says so.
    fn range(
        &self,
        _table: Table,
        _from: &str,
        _to: &str,
        _limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        Err(Error::Corrupt {
            what: "this store backend cannot read the audit trail",
        })
    }

    /// Whether a failed commit left the store unusable until [`Backend::reopen`].
    fn needs_reopen(&self) -> bool {
        false
    }

    /// Closes and reopens the store. Called with the vault's writer lock held, while
    /// [`Backend::needs_reopen`]; on `Err` the store stays closed and the call is repeated
    /// at the next write. The vault reloads everything afterwards: a commit that reported a
    /// failure may yet be in the store.
    ///
    /// # Errors
    /// The store's.
    fn reopen(&self) -> Result<()> {
        Ok(())
    }

    /// The most records a rotation should put in one batch (besides the bounds every
    /// batch keeps).
    fn max_batch(&self) -> usize {
        1000
    }

    /// The data directory, for a store that has one.
    fn data_dir(&self) -> Option<&Path> {
        None
    }
}
