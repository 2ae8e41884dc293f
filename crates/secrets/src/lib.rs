//! The secrets domain of srv-secrets.
//!
//! A [`Vault`] owns a store (the embedded one, redb, in a data directory; or any
//! [`Backend`]): the cluster key file, AES-256-GCM encryption at rest and a tag on every
//! record, secrets with versions, services (name, uid, [`Manifest`]), grants, and key
//! rotation with crash recovery. Reads are served from memory (they run on every 9P walk,
//! open and read); every mutation is one durable transaction, applied fully or not at
//! all, and says who made it ([`Actor`]).
//!
//! It does **not** know 9P, principals' transports, or the ctl text language: the server
//! crate maps principals to service names and ctl commands to the methods here. The one
//! rule it shares with the server is that a service asking for a secret it may not read
//! gets the same [`Error::NotFound`] whether or not the secret exists.
//!
//! Secret values exist in the clear only inside [`SecretBytes`] (zeroized on drop,
//! `Debug` prints a length, read through [`SecretBytes::expose`]); key bytes only inside
//! the key file and zeroizing buffers, and no function returns them. Errors and logs carry
//! neither; errors about caller input carry limits and line numbers, not the input.
//!
//! ```no_run
//! use secrets::Vault;
//! # fn main() -> secrets::Result<()> {
//! let dir = std::path::Path::new("/var/lib/srv-secrets");
//! Vault::init(dir, None, 1000)?;
//! let vault = Vault::open(dir, None)?;
//! vault.set("db_password", b"hunter2")?;
//! vault.service_set_uid("web", 1001)?;
//! vault.grant("web", "db_password")?;
//! let fid = vault.open_secret("web", "db_password")?;
//! assert_eq!(vault.read_opened("web", &fid)?.expose(), b"hunter2");
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! - [`actor`](Actor): who makes a change; every mutation carries one.
//! - [`vault`](Vault): `init`/`open` of a data directory, [`Vault::with_backend`] for any
//!   store; reads from the in-memory state; durable mutations through the change feed.
//!   `vault/change.rs`: [`Vault::apply`]; `vault/rotation.rs`: key rotation and the
//!   crash recovery `open` runs; `vault/bundles.rs`: the bundles issued
//!   ([`Vault::issued`], [`Vault::identify`]); `vault/versions.rs`: a secret's versions
//!   as services and `history` see them, stale secrets, and the housekeeping that ends
//!   what ends by itself ([`Vault::expire`]); `vault/breakglass.rs`: a freeze, suspended
//!   services and the ownership matrix as readers see them ([`Vault::frozen`],
//!   [`Vault::serves`], [`Vault::matrix`]), and `vault/change/breakglass.rs` the changes
//!   that set them.
//! - `state`: the in-memory copy of the store that reads are served from.
//! - [`events`]: what each commit changed, derived as it is applied to memory (from the
//!   change feed too), and told to subscribers ([`Vault::subscribe`]) without waiting
//!   for them.
//! - [`backend`]: the seam a store implements ([`Backend`]: rows, revisions, conditional
//!   commits, the change feed, bounds), public so that a server can plug in another.
//! - `rows`: the vault's model of the store (meta, mutations) and its rows: what a batch
//!   of mutations becomes, what a backend's rows mean.
//! - `redb_store`: [`RedbBackend`], that interface over one redb file, and the data
//!   directory's lock.
//! - `backup`: a copy of the store as of one commit, from a serving vault
//!   ([`Vault::backup`]) or from a data directory no server holds ([`backup_unserved`]).
//! - `record`: stored records and their byte layout (an envelope, a CBOR header, a
//!   payload; store format 4 adds the bundles' records, format 5 a secret's versions and
//!   a grant's end, format 6 a freeze and a service's suspension).
//! - `legacy`: store format 1, read only, for the migration at open.
//! - `crypto`: keys and the keys derived from them (HKDF-SHA256), the keyring, AES-256-GCM
//!   sealing of values in 4 KiB chunks with identity-bound associated data (a read
//!   decrypts the chunks it touches: [`Vault::read_opened_range`]), HMAC-SHA256 record
//!   tags, key check values, [`SecretBytes`].
//! - `keyfile`: the key file format, strict parsing, owner-only atomic writes.
//! - [`manifest`](Manifest): the service manifest format.
//! - [`names`](is_valid_name): the vault's checks of the name rule and the size limits,
//!   which are the namespace's (the `model` crate, shared with ctl and deploy).
//! - `fsutil`: private directories, atomic file replacement, directory fsync.
//! - `types`: the public value types ([`SecretInfo`], [`Status`], ...).
//! - `error`: the crate's one [`Error`].
//!
//! # Data directory
//!
//! ```text
//! DIR/            mode 0700
//! ├── key         the key file (unless placed elsewhere), mode 0600
//! ├── lock        flock-ed by the serving process
//! └── store.redb  the store, mode 0600
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod actor;
pub mod backend;
mod backup;
mod crypto;
mod error;
pub mod events;
mod fsutil;
mod keyfile;
mod legacy;
mod manifest;
mod names;
mod record;
mod redb_store;
mod rows;
mod state;
mod tokens;
mod trail;
mod types;
mod vault;

pub use actor::{Actor, MAX_REASON_LEN, Principal};
/// The audit trail's records, chains and verification (the `audit` crate).
pub use audit;
pub use backend::{Backend, Revision};
pub use backup::{Backup, backup_unserved};
pub use crypto::SecretBytes;
pub use error::{Error, Result};
pub use manifest::Manifest;
pub use names::{
    MAX_MANIFEST_LEN, MAX_NAME_LEN, MAX_VALUE_LEN, RESERVED_SERVICE_NAMES, check_secret_name,
    check_service_name, check_value, is_valid_name,
};
pub use record::{VersionSlot, VersionState};
pub use redb_store::RedbBackend;
pub use tokens::{NewToken, TOKEN_ID_LEN, TOKEN_LEN, TOKEN_PREFIX, is_valid_token_id};
pub use types::{
    Expired, InitReport, Mark, Matrix, MatrixGrant, MatrixRow, OpenedSecret, RotationProgress,
    RotationReport, SecretInfo, ServiceInfo, StaleSecret, Status, VersionInfo,
};
pub use vault::{
    Applied, AuditHeads, AuditReader, Change, ChangeError, DelegatedTier, FLUSH_AFTER, FLUSH_BATCH,
    Health, Holders, IssuedInfo, KEY_FILE, LOCK_FILE, MAX_READ, MAX_TOKENS, OPEN_QUEUE_BOUND,
    OPENS_NOT_RECORDED, OpenFlusher, RotationHolder, RotationStatus, STORE_FILE, ServiceHolder,
    TokenHolder, TokenInfo, TokenRefused, TokenState, Vault,
};
