//! The vault: the data directory, its lock, the in-memory state and every operation.
//!
//! # Concurrency
//!
//! Reads take a [`RwLock`] read guard on the in-memory [`State`] and never touch the disk.
//! Mutations are serialized by a writer mutex; each builds a batch from the state, commits
//! it to the backend (readers keep running meanwhile), and only then takes the write guard
//! to apply the same batch in memory. Readers therefore wait at most for that in-memory
//! apply. (An `Arc` swap of a whole snapshot would make every `set` copy every record;
//! applying in place under a short write guard does not.)
//!
//! Lock order: `rotating`, then `writer`, then `state`.
//!
//! # Failed writes
//!
//! A failed commit changes nothing in memory. If the backend must be reopened after it
//! (redb after an I/O error such as a full disk), the vault does so at once, under the
//! writer, and reloads memory from the store; if the reopen fails, writes are refused
//! with that error and each later write tries again first. Reads carry on throughout.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::{debug, error, info, warn};

use crate::actor::Actor;
use crate::backend::{
    Backend, Batch, Feed, MAX_BATCH_BYTES, MAX_BATCH_MUTATIONS, Op, Revision, Table,
};
use crate::crypto::{Key, Keyring, SecretBytes};
use crate::error::{Error, Result};
use crate::events::{Audience, Subscription};
use crate::fsutil;
use crate::keyfile;
use crate::legacy::{self, Legacy};
use crate::record::{Held, SecretRecord, ServiceRecord, VersionSlot};
use crate::redb_store::{self, RedbBackend};
use crate::rows::{self, FORMAT_VERSION, Meta, Mutation};
use crate::state::State;
use crate::tokens::TokenKey;
use crate::trail::AuditKeys;
use crate::types::{InitReport, OpenedSecret, SecretInfo, ServiceInfo, Status};

mod auditing;
mod breakglass;
mod bundles;
mod change;
mod health;
mod holders;
mod plans;
mod rotation;
mod tokens;
mod versions;

pub use auditing::{
    AuditHeads, AuditReader, FLUSH_AFTER, FLUSH_BATCH, MAX_READ, OPEN_QUEUE_BOUND,
    OPENS_NOT_RECORDED, OpenFlusher,
};
pub use bundles::IssuedInfo;
pub use change::{Applied, Change, ChangeError};
pub use health::Health;
pub use holders::{DelegatedTier, Holders, RotationHolder, RotationStatus, ServiceHolder};
pub use tokens::{MAX_TOKENS, TokenHolder, TokenInfo, TokenRefused, TokenState};

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails by panicking")]
mod tests;

pub use crate::redb_store::{LOCK_FILE, STORE_FILE};

/// The default key file name in the data directory.
pub const KEY_FILE: &str = "key";

/// How many times a change is planned again when another writer committed first.
const CONFLICT_RETRIES: usize = 3;

/// A store, its keys, and every secret, service and grant in memory. Share it between
/// threads behind an `Arc`.
pub struct Vault {
    key_path: PathBuf,
    /// The key file is read, never rewritten: it is a systemd credential
    /// ([`Vault::open_with_read_only_key`]).
    key_read_only: bool,
    pub(crate) backend: Box<dyn Backend>,
    state: RwLock<State>,
    writer: Mutex<()>,
    rotating: Mutex<()>,
    /// Who is told of changes ([`Vault::subscribe`]).
    pub(crate) events: crate::events::Hub,
    /// Opens waiting to be recorded (`vault/auditing.rs`).
    opens: auditing::OpenQueue,
    /// Who waits for a token's change (`vault/tokens.rs`).
    token_signal: tokens::TokenSignal,
    #[cfg(test)]
    crash_at: Mutex<Option<rotation::CrashPoint>>,
    /// The time tests make it (unix seconds); `None`: the system clock.
    #[cfg(test)]
    clock: Mutex<Option<u64>>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("data_dir", &self.backend.data_dir())
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl Vault {
    /// Creates a data directory: `data_dir` (mode 0700, parents created; an existing empty
    /// directory is accepted and chmod-ed), a fresh key file (mode 0600 from creation) at
    /// `key_path` or `data_dir/key`, and an empty store.
    ///
    /// # Errors
    /// [`Error::AlreadyInitialized`] if `data_dir` holds a store, [`Error::DirNotEmpty`] if
    /// it holds anything else, [`Error::KeyFileExists`] rather than overwrite a key,
    /// [`Error::Locked`], I/O and store errors.
    pub fn init(data_dir: &Path, key_path: Option<&Path>, admin_uid: u32) -> Result<InitReport> {
        let store_path = data_dir.join(STORE_FILE);
        if exists(&store_path)? {
            return Err(Error::AlreadyInitialized {
                dir: data_dir.to_path_buf(),
            });
        }
        if exists(data_dir)? {
            let entries = std::fs::read_dir(data_dir)
                .map_err(Error::io("reading data directory", data_dir))?;
            for entry in entries {
                let entry = entry.map_err(Error::io("reading data directory", data_dir))?;
                // A lock file carries no state: an init that stopped right after taking it
                // may be run again.
                if entry.file_name() != LOCK_FILE {
                    return Err(Error::DirNotEmpty {
                        dir: data_dir.to_path_buf(),
                    });
                }
            }
        }
        fsutil::create_private_dir(data_dir)?;
        let lock = redb_store::lock_dir(data_dir)?;
        if exists(&store_path)? {
            return Err(Error::AlreadyInitialized {
                dir: data_dir.to_path_buf(),
            });
        }
        let key_path = key_path.map_or_else(|| data_dir.join(KEY_FILE), Path::to_path_buf);
        if std::fs::symlink_metadata(&key_path).is_ok() {
            return Err(Error::KeyFileExists { path: key_path });
        }
        let key = Key::generate(1)?;
        let audit = AuditKeys::generate()?;
        let tokens = TokenKey::generate()?;
        let seeds = keyfile::Seeds {
            audit: Some(audit.seed()),
            token: Some(tokens.seed()),
        };
        keyfile::write(&key_path, &[&key], seeds)?;
        let backend = RedbBackend::create(data_dir, lock)?;
        Vault::init_store(&backend, &key, admin_uid)?;
        drop(backend);
        fsutil::sync_dir(data_dir)?;
        fsutil::sync_dir(&fsutil::parent_dir(data_dir))?;
        info!(dir = %data_dir.display(), key = %key_path.display(), admin_uid, "initialized data directory");
        Ok(InitReport {
            data_dir: data_dir.to_path_buf(),
            key_path,
            store_path,
            key_id: key.id(),
            admin_uid,
        })
    }

    /// Writes a new store into `backend`, which must hold none (revision 0): the admin's
    /// uid, `key` as the active key, and nothing else. The key is the caller's to keep
    /// (in the key file [`Vault::with_backend`] is given).
    ///
    /// # Errors
    /// [`Error::Conflict`] if the store has had a commit; the store's.
    pub(crate) fn init_store(backend: &dyn Backend, key: &Key, admin_uid: u32) -> Result<()> {
        let meta = Meta {
            format_version: FORMAT_VERSION,
            admin_uid,
            active_key: key.id(),
            rotation_target: None,
            key_checks: [(key.id(), key.check()?)].into(),
            last_change: now(),
            fingerprint_key: None,
            frozen: None,
            audit_key: None,
            audit_heads: std::collections::BTreeMap::new(),
        };
        backend.commit(Batch {
            base: Revision(0),
            actor: Actor::local(),
            ops: rows::initial(&meta, key),
        })?;
        Ok(())
    }

    /// Opens a data directory: checks that the directory, the lock file, the key file and
    /// the store are private to this process's uid (owned by it or root, nothing for group
    /// or others), locks it for the vault's lifetime, reads the key file, checks the store's
    /// format version and that the key file is the right one, loads everything into
    /// memory, and finishes or rolls back a key rotation that a crash interrupted.
    ///
    /// # Errors
    /// [`Error::NotInitialized`], [`Error::StoreLost`] (a key file but no store),
    /// [`Error::ForeignOwner`], [`Error::OpenToOthers`], [`Error::Locked`],
    /// [`Error::KeyFileMissing`], [`Error::KeyPermissions`], [`Error::KeyFile`],
    /// [`Error::KeyMissing`], [`Error::KeyMismatch`], [`Error::FormatVersion`],
    /// [`Error::Corrupt`], I/O and store errors.
    pub fn open(data_dir: &Path, key_path: Option<&Path>) -> Result<Vault> {
        let key_path = key_path.map_or_else(|| data_dir.join(KEY_FILE), Path::to_path_buf);
        Vault::open_keyed(data_dir, key_path, false)
    }

    /// [`Vault::open`] with the key file at `key_path`, which the vault reads and never
    /// writes: a systemd credential (`LoadCredentialEncrypted=`), on a read-only file
    /// system of its own. What would rewrite it is refused with [`Error::KeyReadOnly`]:
    /// `rotate_key`, and the first start of a store from before the audit trail (whose
    /// key file has no audit key yet). A key the file holds that nothing uses (a key file
    /// taken mid-rotation) is left in it, and said in the log; a pending rotation stays
    /// pending, served with both keys.
    ///
    /// # Errors
    /// As [`Vault::open`], and [`Error::KeyReadOnly`].
    pub fn open_with_read_only_key(data_dir: &Path, key_path: &Path) -> Result<Vault> {
        Vault::open_keyed(data_dir, key_path.to_path_buf(), true)
    }

    fn open_keyed(data_dir: &Path, key_path: PathBuf, key_read_only: bool) -> Result<Vault> {
        let store_path = data_dir.join(STORE_FILE);
        if !exists(&store_path)? {
            // A key without its store is a store lost (or an init cut short): say how to
            // restore it, and never let a caller take it for a directory to initialize.
            if std::fs::symlink_metadata(&key_path).is_ok() {
                return Err(Error::StoreLost {
                    dir: data_dir.to_path_buf(),
                    key: key_path,
                    store: store_path,
                });
            }
            return Err(Error::NotInitialized {
                dir: data_dir.to_path_buf(),
            });
        }
        let backend = RedbBackend::open(data_dir)?;
        Vault::with_backend_keyed(Box::new(backend), &key_path, key_read_only)
    }

    /// Serves the store `backend` holds, with the keys of the key file at `key_path`: reads
    /// the key file, loads everything, checks the store's format version and that the key
    /// file is the right one, and finishes or rolls back a key rotation that a crash
    /// interrupted. The backend's own concerns (a data directory's lock and permissions)
    /// are settled before: [`RedbBackend::open`].
    ///
    /// # Errors
    /// [`Error::KeyFileMissing`], [`Error::KeyPermissions`], [`Error::KeyFile`],
    /// [`Error::KeyMissing`], [`Error::KeyMismatch`], [`Error::FormatVersion`],
    /// [`Error::Corrupt`], I/O and store errors.
    pub fn with_backend(backend: Box<dyn Backend>, key_path: &Path) -> Result<Vault> {
        Vault::with_backend_keyed(backend, key_path, false)
    }

    /// [`Vault::with_backend`], with a key file that is never written if `key_read_only`.
    fn with_backend_keyed(
        backend: Box<dyn Backend>,
        key_path: &Path,
        key_read_only: bool,
    ) -> Result<Vault> {
        // A read-only key file has no temporary file beside it: nothing ever writes there.
        if !key_read_only && fsutil::remove_if_exists(&fsutil::temp_path(key_path))? {
            info!(key = %key_path.display(), "removed a temporary key file left by an interrupted write");
        }
        let file = keyfile::read_file(key_path)?;
        let file_keys = file.keys;
        let file_audit = file.audit.map(AuditKeys::from_seed).transpose()?;
        let (token_key, new_token_key) = match file.token {
            Some(seed) => (TokenKey::from_seed(seed), false),
            None => {
                info!(key = %key_path.display(), "made the key API tokens are hashed under; it is kept in the key file");
                (TokenKey::generate()?, true)
            }
        };
        let snapshot = backend.load()?;
        let format = rows::format_of(&snapshot)?;
        let (stored, revision, keyring, extra) = if format == legacy::FORMAT {
            if key_read_only {
                return Err(Error::KeyReadOnly {
                    path: key_path.to_path_buf(),
                    needs: "this store's format 1 is migrated by rewriting it",
                });
            }
            migrate(&*backend, key_path, file_keys, snapshot)?
        } else {
            let revision = snapshot.revision;
            // The keys the store says it uses, checked against the key file; then every
            // record checked under them.
            let meta = rows::peek_meta(&snapshot)?;
            let (keyring, extra) = rotation::reconcile_keys(key_path, file_keys, &meta)?;
            let mut stored = rows::decode_snapshot(snapshot, &keyring, file_audit.as_ref())?;
            let revision = if format == FORMAT_VERSION {
                revision
            } else {
                let from = stored.meta.format_version;
                stored.meta.format_version = FORMAT_VERSION;
                upgrade_format(&*backend, revision, from)?
            };
            (stored, revision, keyring, extra)
        };
        let (audit, new_seed) = audit_keys(key_path, stored.meta.audit_key, file_audit)?;
        let mut state = State::from_stored(stored, keyring, Some(Arc::clone(&audit)), revision)?;
        state.token_key = Some(Arc::new(token_key));
        if key_read_only && new_seed {
            return Err(Error::KeyReadOnly {
                path: key_path.to_path_buf(),
                needs: "this store's first start with an audit trail adds the audit key to it",
            });
        } else if key_read_only && new_token_key {
            return Err(Error::KeyReadOnly {
                path: key_path.to_path_buf(),
                needs: "this store's first start with API tokens adds the token key to it",
            });
        } else if key_read_only && !extra.is_empty() {
            warn!(key = %key_path.display(), unused = ?extra,
                "the read-only key file holds keys nothing uses; they stay in it until it is made again without them");
        } else if !extra.is_empty() || new_seed || new_token_key {
            // Without the keys nothing uses, and with the audit key's seed: written before
            // the store records its public key, so that a crash in between leaves the
            // seed to the next start.
            rotation::drop_extra_keys(key_path, &state, &extra)?;
        }
        let vault = Vault {
            key_path: key_path.to_path_buf(),
            key_read_only,
            backend,
            state: RwLock::new(state),
            writer: Mutex::new(()),
            rotating: Mutex::new(()),
            events: crate::events::Hub::default(),
            opens: auditing::OpenQueue::default(),
            token_signal: tokens::TokenSignal::default(),
            #[cfg(test)]
            crash_at: Mutex::new(None),
            #[cfg(test)]
            clock: Mutex::new(None),
        };
        vault.start_audit((format != FORMAT_VERSION).then_some(format))?;
        vault.resume_rotation()?;
        vault.settle_versions_at_open();
        let status = vault.status();
        info!(store = ?vault.backend.data_dir(), revision = %revision, secrets = status.secrets,
            services = status.services, active_key = status.active_key, "opened the store");
        Ok(vault)
    }

    /// The data directory, for a store that has one (the embedded store's).
    pub fn data_dir(&self) -> Option<&Path> {
        self.backend.data_dir()
    }

    /// The revision of the store that memory is at: the last commit applied.
    pub fn revision(&self) -> Revision {
        self.state().revision
    }

    /// The key file's path (not its contents: there is no way to get those).
    pub fn key_path(&self) -> &Path {
        &self.key_path
    }

    /// Whether the key file is read and never rewritten ([`Vault::open_with_read_only_key`]).
    pub fn key_read_only(&self) -> bool {
        self.key_read_only
    }

    /// Tells the subscriber returned of every change `audience` is told of from now on,
    /// as each commit is applied to memory (this process's, and others' through the
    /// store's change feed), in commit order, into a queue of its own that never holds
    /// up a commit ([`crate::events`]).
    pub fn subscribe(&self, audience: Audience) -> Subscription {
        self.events.subscribe(audience)
    }

    // ---- Reads: memory only. ----

    /// Every secret's public facts, sorted by name.
    pub fn list_secrets(&self) -> Vec<SecretInfo> {
        self.state()
            .secrets
            .iter()
            .map(|(name, rec)| info_of(name, rec))
            .collect()
    }

    /// One secret's public facts.
    pub fn secret_info(&self, name: &str) -> Option<SecretInfo> {
        self.state().secrets.get(name).map(|rec| info_of(name, rec))
    }

    /// Every service, sorted by name.
    pub fn services(&self) -> Vec<ServiceInfo> {
        let state = self.state();
        state
            .services
            .iter()
            .map(|(name, rec)| service_of(&state, name, rec))
            .collect()
    }

    /// One service.
    pub fn service(&self, name: &str) -> Option<ServiceInfo> {
        let state = self.state();
        state
            .services
            .get(name)
            .map(|rec| service_of(&state, name, rec))
    }

    /// Whether a service exists: one lookup, no allocation (the server asks on every
    /// request made through a service's view).
    pub fn has_service(&self, name: &str) -> bool {
        self.state().services.contains_key(name)
    }

    /// Whether `uid` authenticates as `service`: one lookup, no allocation.
    pub fn uid_maps_to(&self, uid: u32, service: &str) -> bool {
        self.state().uids.get(&uid).is_some_and(|s| s == service)
    }

    /// The service a unix uid authenticates as.
    pub fn service_for_uid(&self, uid: u32) -> Option<String> {
        self.state().uids.get(&uid).cloned()
    }

    /// The admin principal's uid.
    pub fn admin_uid(&self) -> u32 {
        self.state().meta.admin_uid
    }

    /// The secrets granted to `service` and not ended, sorted (empty for an unknown
    /// service).
    pub fn grants(&self, service: &str) -> Vec<String> {
        let state = self.state();
        let Some(set) = state.grants.get(service) else {
            return Vec::new();
        };
        match state.expiring.get(service) {
            None => set.iter().cloned().collect(),
            Some(ends) => {
                let now = self.clock();
                set.iter()
                    .filter(|s| ends.get(s.as_str()).is_none_or(|&t| now < t))
                    .cloned()
                    .collect()
            }
        }
    }

    /// Whether `service` may read `secret`: two hash/tree lookups, no allocation (and a
    /// look at the clock for a grant that ends by itself).
    pub fn is_granted(&self, service: &str, secret: &str) -> bool {
        self.state().may_read(service, secret, || self.clock())
    }

    /// Opens a secret on behalf of `service`: checks the grant and snapshots the current
    /// version (ciphertext only), which [`Vault::read_opened`] decrypts.
    ///
    /// # Errors
    /// [`Error::NotFound`] alike for a secret that does not exist and one not granted.
    pub fn open_secret(&self, service: &str, name: &str) -> Result<OpenedSecret> {
        self.open_version(service, name, VersionSlot::Current)
    }

    /// Reads an opened secret on behalf of `service`: checks the grant again (a revoke
    /// stops reads on files already open) and that the secret still exists as the same
    /// incarnation (a delete stops them too, even once the name is set and granted again),
    /// then decrypts the version snapshotted at open, even if newer versions were set since.
    /// If a key rotation retired that snapshot's key, the current record is used instead,
    /// provided it is still the same version (rotation never changes versions).
    ///
    /// # Cost
    /// One AES-256-GCM decryption of the whole value, on the calling thread: linear in the
    /// value's length, about 1 ms per MiB. [`Vault::read_opened_range`] decrypts only the
    /// chunks a read needs.
    ///
    /// # Errors
    /// [`Error::NotFound`] if the grant is gone or the secret was deleted since the open;
    /// [`Error::Stale`] if the snapshot's key was retired and the secret has changed since;
    /// [`Error::Decrypt`] for a damaged record.
    pub fn read_opened(&self, service: &str, opened: &OpenedSecret) -> Result<SecretBytes> {
        let (key, held) = self.readable(service, opened)?;
        key.open_value(&held.value(&opened.name, opened.incarnation))
    }

    /// [`Vault::read_opened`] of the bytes `[offset, offset + count)` of the value (fewer
    /// at its end, none past it), with the same checks.
    ///
    /// # Cost
    /// The value is sealed in chunks of 4 KiB; this decrypts only those the range lies in
    /// ([`OpenedSecret::decrypted_len`] says how many bytes that is), on the calling
    /// thread, and holds no more plaintext than the range, plus one chunk while it is
    /// decrypted. The state's read lock is held only for the checks and to clone an `Arc`
    /// to the ciphertext, never while decrypting, so no read delays a writer.
    ///
    /// # Errors
    /// As [`Vault::read_opened`].
    pub fn read_opened_range(
        &self,
        service: &str,
        opened: &OpenedSecret,
        offset: u64,
        count: u64,
    ) -> Result<SecretBytes> {
        let (key, held) = self.readable(service, opened)?;
        key.open_value_range(&held.value(&opened.name, opened.incarnation), offset, count)
    }

    /// The checks of [`Vault::read_opened`]: the key and the version to decrypt. A fid
    /// reads the version it opened, even once another is current (or it was destroyed),
    /// until the grant goes, the secret is deleted, or a rotation revoking the previous
    /// value cut that version off.
    fn readable(&self, service: &str, opened: &OpenedSecret) -> Result<(Arc<Key>, Held)> {
        let state = self.state();
        if !state.may_read(service, &opened.name, || self.clock()) {
            return Err(Error::NotFound);
        }
        // Incarnations are random per (re)creation: a deleted and re-created secret is
        // another one, which this open never saw.
        let rec = state
            .secrets
            .get(&opened.name)
            .filter(|rec| rec.incarnation == opened.incarnation)
            .ok_or(Error::NotFound)?;
        if opened.version() < rec.revoked_below {
            return Err(Error::VersionRevoked);
        }
        if let Some(key) = state.keys.get(opened.key_id) {
            return Ok((Arc::clone(key), opened.held.clone()));
        }
        // A key rotation retired the key it was opened under: the same version, if the
        // record still holds it, is under the record's key now.
        let held = rec.held_version(opened.version()).ok_or(Error::Stale)?;
        let key = state.keys.get(rec.key_id).ok_or(Error::Corrupt {
            what: "a secret's key is not loaded",
        })?;
        // Decrypted outside the lock: a 1 MiB value must not hold up a writer's apply.
        Ok((Arc::clone(key), held.clone()))
    }

    /// Decrypts the current version of a secret for the admin (for example
    /// `deploy secret get NAME --as SERVICE`, where the server checks the grant itself).
    ///
    /// # Errors
    /// [`Error::NoSuchSecret`], [`Error::Decrypt`].
    pub fn reveal(&self, name: &str) -> Result<SecretBytes> {
        let (key, rec) = {
            let state = self.state();
            let rec = state.secrets.get(name).ok_or(Error::NoSuchSecret)?.clone();
            let key = state.keys.get(rec.key_id).cloned().ok_or(Error::Corrupt {
                what: "a secret's key is not loaded",
            })?;
            (key, rec)
        };
        key.open_value(&rec.value(name))
    }

    /// The active key id, counts, rotation progress, and when any of them last changed.
    pub fn status(&self) -> Status {
        let state = self.state();
        Status {
            active_key: state.meta.active_key,
            secrets: state.secrets.len(),
            services: state.services.len(),
            rotation: state.rotation,
            changed: state.status_changed,
        }
    }

    // ---- Mutations: one durable transaction each, then memory. ----
    //
    // These are made by this process ([`Actor::local`]); a server applies its callers'
    // changes with [`Vault::apply`], which says who made them.

    /// Sets a secret (creating it at version 1, or adding 1 to its version), encrypted
    /// under the active key (or the rotation target while a rotation runs). Returns the
    /// new version once it is committed and fsynced.
    ///
    /// # Errors
    /// [`Error::InvalidName`], [`Error::TooLarge`] above 1 MiB, store errors.
    pub fn set(&self, name: &str, value: &[u8]) -> Result<u64> {
        let versions = self.set_many([(name, value)])?;
        versions.first().copied().ok_or(Error::Corrupt {
            what: "set produced no version",
        })
    }

    /// Sets several secrets in one transaction: all or none. Returns the new versions in
    /// order. A name given twice gets two versions, the later value winning.
    ///
    /// # Errors
    /// As [`Vault::set`]; nothing is stored if any entry is refused.
    pub fn set_many<N, V>(&self, entries: impl IntoIterator<Item = (N, V)>) -> Result<Vec<u64>>
    where
        N: AsRef<str>,
        V: AsRef<[u8]>,
    {
        let entries: Vec<(N, V)> = entries.into_iter().collect();
        let changes: Vec<Change<'_>> = entries
            .iter()
            .map(|(name, value)| Change::Set {
                name: name.as_ref(),
                value: value.as_ref(),
            })
            .collect();
        let applied = self.apply(&Actor::local(), &changes).map_err(|e| e.error)?;
        Ok(applied
            .into_iter()
            .filter_map(|a| match a {
                Applied::Set { version } => Some(version),
                _ => None,
            })
            .collect())
    }

    /// Deletes a secret and every grant of it.
    ///
    /// # Errors
    /// [`Error::InvalidName`], [`Error::NoSuchSecret`], store errors.
    pub fn delete(&self, name: &str) -> Result<()> {
        self.apply_one(Change::Delete { name }).map(drop)
    }

    /// Grants `service` the secret `name`. Granting twice is not an error.
    ///
    /// # Errors
    /// [`Error::InvalidName`], [`Error::ReservedName`], [`Error::NoSuchService`],
    /// [`Error::NoSuchSecret`], store errors.
    pub fn grant(&self, service: &str, name: &str) -> Result<()> {
        self.apply_one(Change::Grant {
            service,
            name,
            expires_in: None,
        })
        .map(drop)
    }

    /// Revokes `service`'s grant of `name`; the next read of an open file fails. Revoking
    /// a grant that does not exist is not an error (the outcome the caller wants holds),
    /// but the service and the secret must both exist, so that a typo is reported.
    ///
    /// # Errors
    /// [`Error::InvalidName`], [`Error::ReservedName`], [`Error::NoSuchService`],
    /// [`Error::NoSuchSecret`], store errors.
    pub fn revoke(&self, service: &str, name: &str) -> Result<()> {
        self.apply_one(Change::Revoke { service, name }).map(drop)
    }

    /// Maps unix `uid` to `service`, creating the service (with an empty manifest) if
    /// absent. A service has at most one uid; setting another replaces it.
    ///
    /// # Errors
    /// [`Error::UidIsAdmin`] for uid 0 and the admin uid, [`Error::UidInUse`] if another
    /// service has it, name errors, store errors.
    pub fn service_set_uid(&self, service: &str, uid: u32) -> Result<()> {
        self.apply_one(Change::ServiceUid { service, uid })
            .map(drop)
    }

    /// Replaces `service`'s manifest (parsed first; nothing changes if it does not parse),
    /// creating the service if absent.
    ///
    /// # Errors
    /// [`Error::Manifest`], [`Error::TooLarge`], name errors, store errors.
    pub fn service_set_manifest(&self, service: &str, manifest: &[u8]) -> Result<()> {
        self.apply_one(Change::ServiceManifest { service, manifest })
            .map(drop)
    }

    /// Removes a service, its uid mapping and its grants.
    ///
    /// # Errors
    /// [`Error::NoSuchService`], name errors, store errors.
    pub fn service_remove(&self, service: &str) -> Result<()> {
        self.apply_one(Change::ServiceRemove { service }).map(drop)
    }

    // ---- Internals. ----

    /// Now, in unix seconds.
    fn clock(&self) -> u64 {
        #[cfg(test)]
        if let Some(t) = *self.clock.lock().unwrap_or_else(PoisonError::into_inner) {
            return t;
        }
        now()
    }

    /// Makes the vault's clock read `t` (`None`: the system clock again).
    #[cfg(test)]
    pub(crate) fn set_clock(&self, t: Option<u64>) {
        *self.clock.lock().unwrap_or_else(PoisonError::into_inner) = t;
    }

    fn state(&self) -> RwLockReadGuard<'_, State> {
        // Only `apply` writes under this lock and it cannot fail half-way except by
        // aborting on allocation failure; a poisoned lock still holds a consistent state.
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn state_mut(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the writer mutex, and makes memory match the store before any mutation builds
    /// on it: if a mutation panicked while holding the mutex, memory may lag the store
    /// (committed, not applied); if a write failed and the store could not be reopened
    /// then, it is reopened now.
    ///
    /// # Errors
    /// The reopen's or the reload's; the next call tries again.
    fn writer(&self) -> Result<MutexGuard<'_, ()>> {
        let (guard, poisoned) = match self.writer.lock() {
            Ok(guard) => (guard, false),
            Err(poisoned) => (poisoned.into_inner(), true),
        };
        if self.backend.needs_reopen() {
            // Reloads too, which also covers a poisoned writer.
            if self.reopen_store()? {
                // That commit's caller was told it failed, not that it landed.
                warn!(
                    "the reopened store holds a change whose commit reported a failure; memory now shows it"
                );
            }
        } else if poisoned {
            warn!("a mutation panicked earlier; reloading the store into memory");
            self.reload()?;
        }
        if poisoned {
            self.writer.clear_poison();
        }
        Ok(guard)
    }

    /// Applies to memory every commit the store has and memory lacks: other writers'
    /// (a store shared by several nodes), and this vault's own, which it applies only as
    /// the change feed hands them back. A backend whose feed has news of its own (a watch)
    /// has it called. Returns the revision memory is at.
    ///
    /// # Errors
    /// The store's; memory is then as it was, or reloaded whole.
    pub fn catch_up(&self) -> Result<Revision> {
        let _writer = self.writer()?;
        self.apply_feed()?;
        Ok(self.revision())
    }

    /// [`Vault::catch_up`], with the writer held: the feed's commits in order, each after
    /// the one it was made against. One that does not follow (the feed skipped some), or
    /// a feed that lost track, makes memory reload the whole store.
    fn apply_feed(&self) -> Result<()> {
        let mut at = self.state().revision;
        let commits = match self.backend.changes(at)? {
            Feed::Commits(commits) => commits,
            Feed::Lost => {
                warn!(revision = %at, "the store's change feed lost track; reloading the store");
                self.reload()?;
                return Ok(());
            }
        };
        for commit in commits {
            if commit.revision <= at {
                continue;
            }
            if commit.base != at {
                warn!(revision = %at, next_base = %commit.base, "the change feed skipped commits; reloading the store");
                self.reload()?;
                return Ok(());
            }
            // Decoded and checked before the write lock: readers wait only for the apply.
            let (keys, audit) = {
                let state = self.state();
                (state.keys.clone(), state.audit.clone())
            };
            let checked = rows::decode_ops(commit.ops, &keys, audit.as_deref()).and_then(|fed| {
                let digest = self.state().digest_after(&fed.auths);
                match fed.digest {
                    Some(stored) if stored == digest => Ok((fed, digest)),
                    _ => Err(Error::Tampered {
                        what: "a commit's records are not the ones its store record counts",
                    }),
                }
            });
            let (fed, digest) = match checked {
                Ok(checked) => checked,
                Err(e) => {
                    error!(error = %e, revision = %commit.revision, "a commit in the change feed does not check; reloading the store");
                    self.reload()?;
                    return Ok(());
                }
            };
            let tell = self.events.has_subscribers().then_some(commit.revision);
            let tokens_changed = tokens::touches_tokens(&fed.batch);
            let mut state = self.state_mut();
            let events = state.apply(fed.batch, tell);
            state.apply_auths(fed.auths, digest);
            state.revision = commit.revision;
            drop(state);
            // Still under the writer, so subscribers are told in the commits' order;
            // readers of the state are not kept waiting meanwhile.
            self.events.publish(events);
            if tokens_changed {
                self.token_signal.fire();
            }
            at = commit.revision;
        }
        Ok(())
    }

    /// Plans a batch with `plan` against the state in memory, commits it as made by
    /// `actor`, and applies it in memory (through the change feed). If another writer
    /// committed first, catches up and plans again, a few times. The caller holds the
    /// writer. An empty plan commits nothing.
    ///
    /// # Errors
    /// `plan`'s; [`Error::TooLarge`] for a batch past the bounds of `backend.rs`; the
    /// store's, memory then matching the store as far as it can be read back (see
    /// [`Vault::after_failed_commit`]); [`Error::Conflict`] if other writers kept coming
    /// first.
    fn commit_planned<T, E>(
        &self,
        actor: &Actor,
        mut plan: impl FnMut(&State) -> std::result::Result<(Vec<Mutation>, T), E>,
        whole: impl Fn(Error) -> E,
    ) -> std::result::Result<T, E> {
        let mut tries = 0;
        loop {
            let (batch, out, base) = {
                let state = self.state();
                let (batch, out) = plan(&state)?;
                (batch, out, state.revision)
            };
            if batch.is_empty() {
                return Ok(out);
            }
            match self.commit_batch(actor, base, batch) {
                Ok(()) => return Ok(out),
                Err(Error::Conflict { expected, found }) if tries < CONFLICT_RETRIES => {
                    tries += 1;
                    debug!(
                        expected,
                        found, tries, "another writer committed first; planning again"
                    );
                    self.apply_feed().map_err(&whole)?;
                }
                Err(e) => return Err(whole(e)),
            }
        }
    }

    /// [`Vault::commit_planned`] of a plan that cannot fail.
    fn commit(
        &self,
        actor: &Actor,
        plan: impl FnMut(&State) -> Result<Vec<Mutation>>,
    ) -> Result<()> {
        let mut plan = plan;
        self.commit_planned(actor, |state| plan(state).map(|batch| (batch, ())), |e| e)
    }

    /// The body of [`Vault::commit_planned`]: dates the batch, encodes it, checks its
    /// bounds, commits it, and applies what the feed hands back.
    fn commit_batch(&self, actor: &Actor, base: Revision, mut batch: Vec<Mutation>) -> Result<()> {
        // Dated first, so that `apply` dates the rest by it; never before the last change,
        // so that mtimes only move forward even if the clock steps back. A batch that only
        // records (opens) changes no file's time.
        if !batch.iter().all(Mutation::only_records) {
            let at = self.clock().max(self.state().meta.last_change);
            batch.insert(0, Mutation::SetLastChange(at));
        }
        // Its audit events become records here, against the chains' heads as they are at
        // the batch's base: a batch planned again after a conflict links to the new head.
        self.chain_audit(&mut batch)?;
        // Weighed before it is encoded: a secret's record carries every version's value,
        // and a batch of many small changes to large secrets must be refused before it is
        // copied into rows, not after.
        if rows::values_len(&batch) > MAX_BATCH_BYTES {
            return Err(Error::TooLarge {
                what: "transaction (bytes stored)",
                limit: MAX_BATCH_BYTES,
            });
        }
        let ops = rows::encode(&batch, &self.state())?;
        check_bounds(&ops)?;
        let mutations = ops.len();
        let revision = match self.backend.commit(Batch {
            base,
            actor: actor.clone(),
            ops,
        }) {
            Ok(revision) => revision,
            // Nothing was written, and the store is fine: the caller plans again.
            Err(e @ Error::Conflict { .. }) => return Err(e),
            Err(e) => return Err(self.after_failed_commit(e)),
        };
        debug!(by = %actor, mutations, revision = %revision, "committed");
        self.apply_feed()?;
        if self.state().revision < revision {
            // The feed did not hand the commit back: memory must still show it.
            warn!(revision = %revision, "the change feed lacks a commit just made; reloading the store");
            self.reload()?;
        }
        Ok(())
    }

    /// After a failed commit, with the writer held: if the backend must be reopened, does
    /// it now and reloads, so that the next write works once the cause (a full disk, say)
    /// is gone and memory holds exactly what the store does. Returns the error to report.
    fn after_failed_commit(&self, err: Error) -> Error {
        if !self.backend.needs_reopen() {
            return err;
        }
        warn!(error = %err, "a write to the store failed; reopening it");
        match self.reopen_store() {
            Ok(false) => err,
            Ok(true) => {
                error!(error = %err, "a commit reported a failure, yet the reopened store holds its change");
                Error::CommitUncertain {
                    source: Box::new(err),
                }
            }
            Err(reopen) => {
                warn!(error = %reopen, "could not reopen the store; writes are refused until a reopen works, tried again at each write");
                err
            }
        }
    }

    /// Reopens the store and reloads memory from it. Returns whether memory had to change.
    fn reopen_store(&self) -> Result<bool> {
        self.backend.reopen()?;
        let changed = self.reload()?;
        info!(store = ?self.backend.data_dir(), "reopened the store after a failed write");
        Ok(changed)
    }

    /// Replaces memory with what the store holds. Returns whether that changed anything
    /// (keys and rotation progress aside).
    fn reload(&self) -> Result<bool> {
        let snapshot = self.backend.load()?;
        let revision = snapshot.revision;
        let keys = self.keys_for(&rows::peek_meta(&snapshot)?)?;
        let (audit, token_key) = {
            let state = self.state();
            (state.audit.clone(), state.token_key.clone())
        };
        let stored = rows::decode_snapshot(snapshot, &keys, audit.as_deref())?;
        let mut fresh = State::from_stored(stored, keys, audit, revision)?;
        fresh.token_key = token_key;
        let mut state = self.state_mut();
        if fresh.meta.rotation_target.is_some() {
            fresh.rotation = state.rotation;
        }
        let changed = !fresh.same_records(&state);
        let events = if changed && self.events.has_subscribers() {
            crate::events::between(&state, &fresh, revision)
        } else {
            Vec::new()
        };
        // What did not change keeps its exact times; after a change, the store's last
        // change dates everything (later than the truth, never earlier).
        fresh.status_changed = fresh.status_changed.max(state.status_changed);
        if !changed {
            fresh.changed = std::mem::take(&mut state.changed);
        }
        *state = fresh;
        drop(state);
        self.events.publish(events);
        if changed {
            self.token_signal.fire();
        }
        Ok(changed)
    }

    /// The keys in memory, plus any that `meta` uses but memory lacks (a rotation's new key
    /// whose commit reported a failure yet landed), from the key file, checked as at open.
    fn keys_for(&self, meta: &Meta) -> Result<Keyring> {
        let mut keys = self.state().keys.clone();
        let needed = std::iter::once(meta.active_key).chain(meta.rotation_target);
        if needed.clone().all(|id| keys.get(id).is_some()) {
            return Ok(keys);
        }
        let file_keys = keyfile::read(&self.key_path)?;
        let (found, _) = rotation::reconcile_keys(&self.key_path, file_keys, meta)?;
        for id in needed {
            if let Some(key) = found.get(id) {
                keys.insert(Arc::clone(key));
            }
        }
        Ok(keys)
    }
}

/// Refuses a batch past the bounds every backend takes (see `backend.rs`).
fn check_bounds(ops: &[Op]) -> Result<()> {
    let mutations = ops
        .iter()
        .filter(|op| op.row().table != Table::Meta)
        .count();
    if mutations > MAX_BATCH_MUTATIONS {
        return Err(Error::TooLarge {
            what: "transaction (rows written)",
            limit: MAX_BATCH_MUTATIONS,
        });
    }
    if ops.iter().map(Op::size).sum::<usize>() > MAX_BATCH_BYTES {
        return Err(Error::TooLarge {
            what: "transaction (bytes stored)",
            limit: MAX_BATCH_BYTES,
        });
    }
    Ok(())
}

/// Upgrades a store of format 2, 3, 4 or 5 (`from`), checked whole at `base`, to this
/// build's: the same records, and room for what the later formats add (the catalog in 3,
/// bundles in 4, versions and grants' ends in 5, a freeze and suspensions in 6, which
/// records written before read without), so only the number changes. One commit, taken out of the change feed
/// again (memory is built from the records already read); returns its revision.
fn upgrade_format(backend: &dyn Backend, base: Revision, from: u32) -> Result<Revision> {
    let revision = backend.commit(Batch {
        base,
        actor: Actor::local(),
        ops: vec![Op::Put(
            rows::format_row(),
            FORMAT_VERSION.to_be_bytes().to_vec(),
        )],
    })?;
    // The commit carries no store record, so it must not reach `apply_feed`.
    let _ = backend.changes(base)?;
    warn!(
        from,
        to = FORMAT_VERSION,
        "upgraded the store's format (room for the deployment catalog, bundles, a secret's \
         versions, grants that end, a freeze, suspended services, the audit trail and API \
         tokens): a srv-secrets older than this one can no longer open it"
    );
    Ok(revision)
}

/// Migrates a store of format 1 (`snapshot`) to this build's format, in one commit: every
/// value sealed again under its key, every record in this format's layout. Returns what
/// [`Vault::with_backend`] needs, read back from the store as it now is.
fn migrate(
    backend: &dyn Backend,
    key_path: &Path,
    file_keys: Vec<Key>,
    snapshot: crate::backend::Snapshot,
) -> Result<(rows::Stored, Revision, Keyring, Vec<u32>)> {
    let base = snapshot.revision;
    let old = Legacy::decode(snapshot)?;
    let (keyring, extra) = rotation::reconcile_keys(key_path, file_keys, &old.meta)?;
    let upgraded = old.upgrade(&keyring, FORMAT_VERSION)?;
    let (secrets, services, grants) = (
        upgraded.secrets.len(),
        upgraded.services.len(),
        upgraded.grants.len(),
    );
    backend.replace_all(base, rows::encode_store(&upgraded, &keyring)?)?;
    warn!(
        from = legacy::FORMAT,
        to = FORMAT_VERSION,
        secrets,
        services,
        grants,
        "migrated the store to a new format: a srv-secrets older than this one can no longer open it"
    );
    // Memory holds what the store holds: what was written, read back.
    let snapshot = backend.load()?;
    let revision = snapshot.revision;
    Ok((
        rows::decode_snapshot(snapshot, &keyring, None)?,
        revision,
        keyring,
        extra,
    ))
}

/// The audit's keys, from the key file's seed, checked against the public key the store
/// records; for a store whose audit has not started, the key file's (or, if it has none,
/// new ones: then `true`, and the caller writes the key file).
fn audit_keys(
    key_path: &Path,
    recorded: Option<audit::PublicKey>,
    file: Option<AuditKeys>,
) -> Result<(Arc<AuditKeys>, bool)> {
    match (recorded, file) {
        (Some(public), Some(keys)) if keys.public() == public => Ok((Arc::new(keys), false)),
        (Some(_), Some(_)) => Err(Error::AuditKeyMismatch {
            path: key_path.to_path_buf(),
        }),
        (Some(_), None) => Err(Error::AuditKeyMissing {
            path: key_path.to_path_buf(),
        }),
        (None, Some(keys)) => Ok((Arc::new(keys), false)),
        (None, None) => {
            info!(key = %key_path.display(), "made the audit trail's signing key; it is kept in the key file");
            Ok((Arc::new(AuditKeys::generate()?), true))
        }
    }
}

fn sealing_key(state: &State) -> Result<&Arc<Key>> {
    state
        .keys
        .get(state.meta.sealing_key())
        .ok_or(Error::Corrupt {
            what: "the sealing key is not loaded",
        })
}

fn info_of(name: &str, rec: &SecretRecord) -> SecretInfo {
    SecretInfo {
        name: name.to_owned(),
        version: rec.version(),
        mtime: rec.mtime(),
        length: rec.length(),
    }
}

fn service_of(state: &State, name: &str, rec: &ServiceRecord) -> ServiceInfo {
    let changed = state.changed.get(name).copied();
    ServiceInfo {
        name: name.to_owned(),
        uid: rec.uid,
        manifest: Arc::clone(&rec.manifest),
        // Every service has an entry; the store's last change is never too early.
        changed: changed.map_or(state.meta.last_change, |c| c.record),
        grants_changed: changed.map_or(state.meta.last_change, |c| c.grants),
        suspended: rec.suspended.as_ref().map(breakglass::mark_of),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn exists(path: &Path) -> Result<bool> {
    path.try_exists().map_err(Error::io("checking", path))
}
