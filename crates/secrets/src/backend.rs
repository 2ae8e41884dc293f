//! The narrow interface between the vault and its durable store.
//!
//! A backend is a dumb, transactional key-value store with four logical tables:
//!
//! | table    | key                | value                                   |
//! |----------|--------------------|-----------------------------------------|
//! | meta     | field name         | see [`Meta`]                            |
//! | secrets  | secret name        | [`SecretRecord::encode`]                |
//! | services | service name       | [`ServiceRecord::encode`]               |
//! | grants   | (service, secret)  | nothing: presence is the grant          |
//!
//! It knows nothing of encryption, names or invariants: the vault decides every change
//! (including cascades such as dropping a deleted secret's grants) and hands the backend a
//! batch of [`Mutation`]s to apply atomically. That is the whole contract, so that a
//! distributed backend (etcd, for several nodes) is a second implementation of two methods:
//!
//! - [`Backend::load`] returns everything; the vault keeps it in memory and never reads
//!   the backend on the hot path.
//! - [`Backend::commit`] applies a batch fully or not at all, and returns only once it is
//!   durable. A crash at any moment leaves either the old or the new state.
//! - [`Backend::backup`] writes a copy of the whole store as of one commit, while reads and
//!   writes carry on: what an online backup is made of.
//! - [`Backend::needs_reopen`] and [`Backend::reopen`]: a failed write may leave a store
//!   refusing every later one until it is closed and opened again (redb latches an I/O
//!   error, such as a full disk, that way). The vault then reopens it under its writer lock
//!   and reloads, so that writing resumes once the cause is gone, without a restart.
//!
//! All are blocking calls.

use std::collections::BTreeMap;
use std::fs::File;

use crate::crypto::KeyCheck;
use crate::error::Result;
use crate::record::{SecretRecord, ServiceRecord};

/// The store format this build reads and writes.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// The meta table: store-wide facts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Meta {
    /// Layout version of the store (`format_version`, u32); refused at load unless
    /// [`FORMAT_VERSION`].
    pub(crate) format_version: u32,
    /// The unix uid of the admin principal (`admin_uid`, u32).
    pub(crate) admin_uid: u32,
    /// The key new records are sealed under outside a rotation (`active_key`, u32).
    pub(crate) active_key: u32,
    /// The key a rotation in flight moves records to (`rotation_target`, u32; absent when
    /// none). While set, new records are sealed under it.
    pub(crate) rotation_target: Option<u32>,
    /// A check value per key id the store references (`key_check.<id>`).
    pub(crate) key_checks: BTreeMap<u32, KeyCheck>,
    /// Unix seconds of the last commit (`last_change`, u64; written by every commit, 0 in
    /// a store written before it was): the newest mtime known at open.
    pub(crate) last_change: u64,
}

impl Meta {
    /// The key new records are sealed under.
    pub(crate) fn sealing_key(&self) -> u32 {
        self.rotation_target.unwrap_or(self.active_key)
    }
}

/// Everything a backend holds.
#[derive(Debug)]
pub(crate) struct Stored {
    /// The meta table.
    pub(crate) meta: Meta,
    /// All secrets.
    pub(crate) secrets: Vec<(String, SecretRecord)>,
    /// All services.
    pub(crate) services: Vec<(String, ServiceRecord)>,
    /// All grants, as (service, secret).
    pub(crate) grants: Vec<(String, String)>,
}

/// One change in a batch.
#[derive(Clone, Debug)]
pub(crate) enum Mutation {
    /// Insert or replace a secret.
    PutSecret(String, SecretRecord),
    /// Remove a secret (its grants are removed by separate mutations).
    DeleteSecret(String),
    /// Insert or replace a service.
    PutService(String, ServiceRecord),
    /// Remove a service (its grants are removed by separate mutations).
    DeleteService(String),
    /// Add a grant (service, secret).
    PutGrant(String, String),
    /// Remove a grant (service, secret).
    DeleteGrant(String, String),
    /// Set `active_key`.
    SetActiveKey(u32),
    /// Set or clear `rotation_target`.
    SetRotationTarget(Option<u32>),
    /// Store a key check value.
    PutKeyCheck(u32, KeyCheck),
    /// Remove a key check value.
    DeleteKeyCheck(u32),
    /// Set `last_change`: the vault puts one first in every batch, with the batch's time.
    SetLastChange(u64),
}

/// A durable, transactional store. See the module documentation for the contract.
pub(crate) trait Backend: Send + Sync {
    /// Everything in the store. Refuses a store whose format version is not
    /// [`FORMAT_VERSION`] with [`Error::FormatVersion`](crate::Error::FormatVersion).
    fn load(&self) -> Result<Stored>;

    /// Applies `batch` atomically and durably: when this returns `Ok`, every mutation is
    /// on stable storage; when it returns `Err`, none is.
    fn commit(&self, batch: &[Mutation]) -> Result<()>;

    /// Writes a consistent copy of the whole store, as it was at one commit, into `out`
    /// (an empty file, open for reading and writing), in a form the backend opens as a store of its own. Commits made
    /// meanwhile are not in it and are not held up by it, except for an instant at the
    /// start.
    fn backup(&self, _out: File) -> Result<()> {
        Err(crate::error::Error::Corrupt {
            what: "this store backend cannot make backups",
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
    fn reopen(&self) -> Result<()> {
        Ok(())
    }

    /// The most mutations a rotation should put in one batch.
    fn max_batch(&self) -> usize {
        1000
    }
}
