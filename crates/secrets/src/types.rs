//! The public value types the vault hands out. None of them holds plaintext except
//! [`SecretBytes`](crate::SecretBytes).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::manifest::Manifest;
use crate::record::{Held, VersionState};

/// What `init` created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitReport {
    /// The data directory (mode 0700).
    pub data_dir: PathBuf,
    /// The key file (mode 0600).
    pub key_path: PathBuf,
    /// The store file.
    pub store_path: PathBuf,
    /// The id of the first key.
    pub key_id: u32,
    /// The admin principal's uid.
    pub admin_uid: u32,
}

/// A secret's public facts: everything but the value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretInfo {
    /// The name.
    pub name: String,
    /// 1 on the first `set`, +1 on each later one.
    pub version: u64,
    /// Unix seconds of the last `set`.
    pub mtime: u64,
    /// Length of the value in bytes.
    pub length: u64,
}

/// A service: its uid and manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceInfo {
    /// The name.
    pub name: String,
    /// The unix uid that authenticates as this service, if mapped.
    pub uid: Option<u32>,
    /// The manifest (empty if none was set), with its text.
    pub manifest: Arc<Manifest>,
    /// When its uid or manifest last changed (unix seconds). Kept in memory: after a
    /// restart, the store's last change, the latest it can have been.
    pub changed: u64,
    /// When its grants last changed (unix seconds), likewise.
    pub grants_changed: u64,
    /// Whether it is suspended (every read of its view refused, its grants kept): since
    /// when, by whom, why.
    pub suspended: Option<Mark>,
}

/// Who froze deploys or suspended a service, when and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Mark {
    /// Since when (unix seconds).
    pub since: u64,
    /// The principal, as an actor shows it without the uid: `admin`, `local`.
    pub by: String,
    /// The uid of the connection it came over.
    pub uid: Option<u32>,
    /// Why, as they said.
    pub reason: Option<String>,
}

impl Mark {
    /// Who, as an actor shows it: `admin (uid 0)`.
    pub fn who(&self) -> String {
        match self.uid {
            Some(uid) => format!("{} (uid {uid})", self.by),
            None => self.by.clone(),
        }
    }
}

/// Seed 004's ownership matrix: every secret (stored, or declared in the catalog) as a
/// row, every service as a column, a mark where a grant holds. What `deploy secret
/// matrix` shows; never a value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Matrix {
    /// The services, sorted: the columns.
    pub services: Vec<String>,
    /// The services suspended, sorted (their grants stay, and show).
    pub suspended: Vec<String>,
    /// The secrets, sorted by name: the rows.
    pub secrets: Vec<MatrixRow>,
}

/// One secret of the [`Matrix`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MatrixRow {
    /// Its name.
    pub name: String,
    /// Its class, from the catalog.
    pub class: Option<String>,
    /// Its owner, from the catalog.
    pub owner: Option<String>,
    /// Its current version; `None`: declared in the catalog, no value stored.
    pub version: Option<u64>,
    /// When the current version was made (unix seconds).
    pub updated: Option<u64>,
    /// How long ago that was, in seconds.
    pub age: Option<u64>,
    /// Its rotation period, in seconds: the catalog's `rotate_every`, 90 days if it
    /// declares none.
    pub rotate_every: u64,
    /// Its current version is older than its rotation period.
    pub stale: bool,
    /// The services granted it now, by name, each with when its grant ends (`None`:
    /// until revoked).
    pub grants: std::collections::BTreeMap<String, MatrixGrant>,
}

/// A grant in the [`Matrix`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct MatrixGrant {
    /// When it ends by itself (unix seconds); `None`: until revoked.
    pub expires: Option<u64>,
}

/// Progress of a key rotation: `done` of `total` secrets re-encrypted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RotationProgress {
    /// Secrets re-encrypted so far.
    pub done: u64,
    /// Secrets to re-encrypt in all (counted when the rotation started).
    pub total: u64,
}

/// What a finished rotation did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RotationReport {
    /// The key secrets were encrypted under before.
    pub old_key: u32,
    /// The key every secret is encrypted under now.
    pub new_key: u32,
    /// Secrets re-encrypted by this call (fewer than all if it resumed a rotation).
    pub reencrypted: u64,
    /// Wall time of the whole rotation.
    pub elapsed: Duration,
}

/// The vault at a glance. Nothing in it is secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// The key id new secrets are encrypted under outside a rotation.
    pub active_key: u32,
    /// Number of secrets.
    pub secrets: usize,
    /// Number of services.
    pub services: usize,
    /// Progress of the rotation in flight, if any.
    pub rotation: Option<RotationProgress>,
    /// When any of the above last changed (unix seconds): the last commit, or the last
    /// step of a rotation. After a restart, the store's last change.
    pub changed: u64,
}

/// A secret's version as it was when a service opened it: "a fid reads the version it
/// opened". Holds ciphertext only (shared, not copied);
/// [`Vault::read_opened`](crate::Vault::read_opened) decrypts it after checking the grant
/// again.
#[derive(Clone)]
pub struct OpenedSecret {
    pub(crate) name: String,
    pub(crate) incarnation: u64,
    pub(crate) key_id: u32,
    pub(crate) held: Held,
}

impl OpenedSecret {
    /// The secret's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The version opened.
    pub fn version(&self) -> u64 {
        self.held.made.version
    }

    /// When that version was made (unix seconds).
    pub fn mtime(&self) -> u64 {
        self.held.made.at
    }

    /// The length of that version's value in bytes.
    pub fn length(&self) -> u64 {
        self.held.sealed.length
    }

    /// How many bytes of plaintext a read of `[offset, offset + count)` decrypts: the
    /// chunks the range lies in (none for a range past the end). What a caller weighs to
    /// decide where to run the read.
    pub fn decrypted_len(&self, offset: u64, count: u64) -> u64 {
        let length = self.length();
        let end = offset.saturating_add(count).min(length);
        if offset >= end {
            return 0;
        }
        let chunk = u64::from(self.held.sealed.chunk_len.max(1));
        let (first, last) = (offset / chunk, (end - 1) / chunk);
        ((last + 1) * chunk).min(length) - first * chunk
    }
}

impl fmt::Debug for OpenedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenedSecret")
            .field("name", &self.name)
            .field("version", &self.version())
            .field("length", &self.length())
            .finish_non_exhaustive()
    }
}

/// One version of a secret as `history` shows it: never its value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VersionInfo {
    /// Its number.
    pub version: u64,
    /// Current, previous, pending or destroyed.
    pub state: VersionState,
    /// When it was made (unix seconds).
    pub created: u64,
    /// Who made it: `admin`, `service NAME` or `local`; `None` for a version made before
    /// versions were recorded (store format 4).
    pub by: Option<String>,
    /// The uid of the connection it was made over.
    pub uid: Option<u32>,
    /// Why, as its maker said.
    pub reason: Option<String>,
    /// Its value's length in bytes, while it has one.
    pub length: Option<u64>,
    /// A previous version: services read it as `NAME@previous` until then (unix seconds);
    /// `None`: not at all.
    pub overlap_until: Option<u64>,
    /// A pending version: it is discarded then unless promoted (unix seconds).
    pub expires: Option<u64>,
    /// A destroyed version: when its value was destroyed.
    pub destroyed: Option<u64>,
    /// Fids that opened it fail on their next read (a rotation with revoke-previous cut
    /// it off).
    pub revoked: bool,
}

/// A secret older than its rotation period: what `deploy secret list --stale` and
/// `secrets/stale` show.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StaleSecret {
    /// Its name.
    pub name: String,
    /// Its current version.
    pub version: u64,
    /// When the current version was made (unix seconds).
    pub since: u64,
    /// How long ago that was, in seconds.
    pub age: u64,
    /// Its rotation period, in seconds: the catalog's `rotate_every`, 90 days if it
    /// declares none.
    pub rotate_every: u64,
    /// Its owner, from the catalog.
    pub owner: Option<String>,
    /// Its class, from the catalog.
    pub class: Option<String>,
}

/// What a housekeeping pass ([`Vault::expire`](crate::Vault::expire)) removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expired {
    /// Pending versions discarded, as (secret, version).
    pub pending: Vec<(String, u64)>,
    /// Grants that ended, as (service, secret).
    pub grants: Vec<(String, String)>,
    /// Overlaps that ended, as (secret, its previous version).
    pub overlaps: Vec<(String, u64)>,
    /// Previous versions retired by `retire-when-read`, as (secret, version).
    pub retired: Vec<(String, u64)>,
}

impl Expired {
    /// Whether it removed nothing.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
            && self.grants.is_empty()
            && self.overlaps.is_empty()
            && self.retired.is_empty()
    }
}
