//! The crate's one error type.
//!
//! Messages say what is wrong and what to do. They never carry a secret value, key bytes,
//! or text the caller supplied (names, manifest lines): limits and line numbers only. Paths
//! and key ids are not secret and do appear.

use std::path::PathBuf;

/// Everything that can go wrong in the secrets domain.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `init` found a store in the data directory.
    #[error(
        "data directory {} is already initialized (it holds a store); run `srv-secrets serve` to use it",
        dir.display()
    )]
    AlreadyInitialized {
        /// The data directory.
        dir: PathBuf,
    },
    /// A commit reported a failure, yet the store held its change once reopened: the change
    /// took effect (and memory now shows it).
    #[error(
        "the store reported an error ({source}), yet after reopening it holds the change: \
         the change took effect"
    )]
    CommitUncertain {
        /// The error the commit reported.
        source: Box<Error>,
    },
    /// The key file lacks the audit trail's signing key, which the store's audit is
    /// signed with.
    #[error(
        "key file {} lacks the audit key (its `audit` line), which this store's audit trail is \
         signed with: put back the key file that belongs to this store (from where you keep \
         its copy)",
        path.display()
    )]
    AuditKeyMissing {
        /// The key file.
        path: PathBuf,
    },
    /// The key file's audit key is not the one the store's audit trail is signed with.
    #[error(
        "key file {}'s audit key is not the one this store's audit trail is signed with \
         (wrong key file?): put back the key file that belongs to this store",
        path.display()
    )]
    AuditKeyMismatch {
        /// The key file.
        path: PathBuf,
    },
    /// A conditional commit found the store at a later revision than the one its batch was
    /// planned against: another writer committed first. Nothing was written.
    #[error(
        "the store changed meanwhile (revision {found}, not {expected}): another writer \
         committed first; nothing was written, try again"
    )]
    Conflict {
        /// The revision the batch was planned against.
        expected: u64,
        /// The store's revision.
        found: u64,
    },
    /// No bundle could be issued: the catalog's reason (the plan's problems, a core tier,
    /// a template), naming secrets and tiers, never a value; nothing was recorded.
    #[error("{0}")]
    Bundle(catalog::BundleError),
    /// A template makes a value that holds a stored value: a bundle never carries one, so
    /// none was issued.
    #[error(
        "secret `{secret}`'s template makes a value that holds the stored value of `{stored}`, \
         and a bundle never carries a stored value; no bundle was issued: change the template"
    )]
    BundleHoldsStoredValue {
        /// The secret whose template it is.
        secret: String,
        /// The secret whose stored value it holds.
        stored: String,
    },
    /// A catalog apply that would break the catalog's rules: every declaration refused
    /// (named, never a value); nothing was changed.
    #[error("{0}")]
    CatalogRefused(catalog::Refusal),
    /// The store holds something this version cannot make sense of.
    #[error("store is corrupt: {what}")]
    Corrupt {
        /// What is inconsistent, in general terms.
        what: &'static str,
    },
    /// A declaration the deployment catalog refuses (a name, a field, the class rule),
    /// naming the secret and tier, never a value; nothing was changed.
    #[error("{0}")]
    Declaration(catalog::DeclError),
    /// A deployment id that already has a bundle of the service on the tier, and no
    /// replace was asked for.
    #[error(
        "deployment `{deployment}` already has bundle {bundle} of service `{service}` on tier \
         `{tier}`; issue it a new one with --replace (its earlier values stay on record)"
    )]
    DeploymentUsed {
        /// The service.
        service: String,
        /// The tier.
        tier: String,
        /// The deployment.
        deployment: String,
        /// Its last bundle's number.
        bundle: u64,
    },
    /// A record failed authentication: tampered with, moved to another name or version, or
    /// encrypted under a different key.
    #[error("decryption failed: the record does not authenticate under its key")]
    Decrypt,
    /// `init` found unknown files in the data directory.
    #[error(
        "data directory {} is not empty and holds no store; refusing to initialize over unknown \
         files (remove them, e.g. leftovers of an interrupted init, or choose another directory)",
        dir.display()
    )]
    DirNotEmpty {
        /// The data directory.
        dir: PathBuf,
    },
    /// A data directory's file (or the key file) belongs to a uid neither ours nor root's.
    #[error(
        "{what} {} belongs to uid {owner}, not to this process's uid {euid} or root, and uid \
         {owner} could rewrite the store (add grants, make itself admin) or read the key; run \
         srv-secrets as uid {owner}, or give it to uid {euid}: `chown {euid} {}`",
        path.display(),
        path.display()
    )]
    ForeignOwner {
        /// "data directory", "store", "lock file" or "key file".
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// This process's effective uid.
        euid: u32,
    },
    /// Deploys are frozen, and the change is one a freeze stops (a grant, a service's
    /// uid or manifest, the catalog, a bundle: [`Change::stops_when_frozen`]); nothing was
    /// changed. Word for word [`model::FROZEN`].
    ///
    /// [`Change::stops_when_frozen`]: crate::Change::stops_when_frozen
    #[error("{}", model::FROZEN)]
    Frozen,
    /// The store was written in a format this version does not read.
    #[error(
        "store format version {found} is not supported (this srv-secrets reads version {supported})"
    )]
    FormatVersion {
        /// The version found in the store.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// A secret name, service name or config key breaks the name rule.
    #[error("invalid {kind} name: use 1 to 128 characters from A-Z a-z 0-9 . _ - (not . or ..)")]
    InvalidName {
        /// Which kind of name: "secret", "service" or "config key".
        kind: &'static str,
    },
    /// A file system operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "reading key file".
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The key file is malformed.
    #[error("key file {}: {}{reason}", path.display(), AtLine(*line))]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// 1-based line number; 0 when the problem is the file as a whole.
        line: usize,
        /// What is wrong with that line (never its content).
        reason: &'static str,
    },
    /// `init` would overwrite an existing key file.
    #[error(
        "key file {} already exists; refusing to overwrite a key (move it away first)",
        path.display()
    )]
    KeyFileExists {
        /// The key file.
        path: PathBuf,
    },
    /// The key file does not exist.
    #[error(
        "key file {} does not exist; pass --key with the key file's path, or restore it from \
         the key backup of the data backup's time (docs/operations.md, \"Backup and restore\")",
        path.display()
    )]
    KeyFileMissing {
        /// The key file.
        path: PathBuf,
    },
    /// A key in the key file does not match the store's key check: the wrong key file.
    #[error(
        "key file {} does not match this store: key {id} fails the store's key check (wrong key file?)",
        path.display()
    )]
    KeyMismatch {
        /// The key file.
        path: PathBuf,
        /// The key id whose check failed.
        id: u32,
    },
    /// The store needs a key that the key file does not hold.
    #[error("key file {} lacks key {id}, which this store needs (wrong key file?)", path.display())]
    KeyMissing {
        /// The key file.
        path: PathBuf,
        /// The missing key id.
        id: u32,
    },
    /// The key file is one the server may read but not rewrite (a systemd credential), and
    /// what was asked needs it rewritten.
    #[error(
        "the key file {} is read-only to the server (a systemd credential), and {needs}: do it \
         with the key file itself, then encrypt that into the credential again \
         (docs/operations.md, \"The key as a systemd credential\")",
        path.display()
    )]
    KeyReadOnly {
        /// The key file.
        path: PathBuf,
        /// What would have rewritten it.
        needs: &'static str,
    },
    /// The key file is readable or writable by group or others.
    #[error(
        "key file {} has mode {mode:o}, open to group or others; run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    KeyPermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Another process holds the data directory's lock.
    #[error(
        "another srv-secrets serves {} (its lock file is held); stop it first",
        dir.display()
    )]
    Locked {
        /// The data directory.
        dir: PathBuf,
    },
    /// A manifest line is malformed.
    #[error("manifest line {line}: {reason}")]
    Manifest {
        /// 1-based line number.
        line: usize,
        /// What is wrong with that line (never its text).
        reason: &'static str,
    },
    /// An admin operation named a secret that does not exist.
    #[error("no such secret")]
    NoSuchSecret,
    /// An admin operation named a service that does not exist.
    #[error("no such service")]
    NoSuchService,
    /// `token revoke` of an ID no token has.
    #[error("no such token")]
    NoSuchToken,
    /// A token ID that cannot be one.
    #[error("invalid token ID: it is 16 hex digits, as deploy token list shows")]
    InvalidTokenId,
    /// `token create` when the store keeps as many tokens as it may, all still holding.
    #[error("{limit} tokens hold already: revoke one first (see: deploy token list)")]
    TooManyTokens {
        /// [`MAX_TOKENS`](crate::MAX_TOKENS).
        limit: usize,
    },
    /// `promote` or `discard` of a secret with no pending version (or one past its hour).
    #[error(
        "the secret has no pending version (stage one first; one not promoted within an \
         hour is discarded)"
    )]
    NoPendingVersion,
    /// `rollback` or `retire` of a secret with no previous version.
    #[error("the secret has no previous version")]
    NoPreviousVersion,
    /// An operation named a tier the catalog does not declare.
    #[error("no such tier")]
    NoSuchTier,
    /// `generate` with no template, of a secret whose core tiers give none.
    #[error(
        "no template to generate the value from: give one, or declare the secret's strategy \
         on a core tier with one (serve TEMPLATE or generate TEMPLATE)"
    )]
    NoTemplate,
    /// On behalf of a service: the secret does not exist or is not granted (deliberately
    /// indistinguishable).
    #[error("file does not exist")]
    NotFound,
    /// `set` or `stage` of a secret that has a pending version: a rotation is under way.
    #[error(
        "the secret has pending version {version} (a rotation under way): promote or \
         discard it first"
    )]
    PendingVersion {
        /// The pending version's number.
        version: u64,
    },
    /// On behalf of a service: the version a file was opened at was cut off by a rotation
    /// that revoked the previous value.
    #[error("the version this file was opened at was revoked; open it again")]
    VersionRevoked,
    /// The data directory holds no store.
    #[error(
        "data directory {} holds no store; run `srv-secrets init` first",
        dir.display()
    )]
    NotInitialized {
        /// The data directory.
        dir: PathBuf,
    },
    /// The data directory, the store or the lock file is open to group or others.
    #[error(
        "{what} {} has mode {mode:o}, open to group or others; run `chmod {fix:o} {}`",
        path.display(),
        path.display()
    )]
    OpenToOthers {
        /// "data directory", "store" or "lock file".
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// The mode to give it.
        fix: u32,
    },
    /// The OS random number generator failed.
    #[error("the operating system's random number generator failed")]
    Random,
    /// A service name is reserved for the server's own trees.
    #[error("service names admin and secrets are reserved")]
    ReservedName,
    /// A key rotation switched to its new key, but rewriting the key file without the old
    /// key failed; the next start (or the next rotation) finishes that.
    #[error(
        "key rotation to key {key} is committed and every secret is under the new key, but \
         removing the old key from the key file failed ({source}); the unused old key stays in \
         the file until the next start removes it"
    )]
    RotationCleanup {
        /// The new (now active) key id.
        key: u32,
        /// Why the key file could not be rewritten.
        source: Box<Error>,
    },
    /// A key rotation stopped after committing its new key and before switching to it; it
    /// stays pending (records stay under the key they are in, new ones use the new key).
    #[error(
        "key rotation to key {key} stopped part-way ({source}); it stays pending and resumes \
         at the next rotate-key or the next start"
    )]
    RotationPending {
        /// The key id the rotation moves to.
        key: u32,
        /// Why it stopped.
        source: Box<Error>,
    },
    /// An opened file's version was re-encrypted by a key rotation and then replaced, so its
    /// old value can no longer be decrypted.
    #[error("the opened version was replaced during a key rotation; open the file again")]
    Stale,
    /// The store backend failed.
    #[error("store: {op}: {source}")]
    Store {
        /// What was being done, e.g. "commit".
        op: &'static str,
        /// The backend's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The data directory has a key file but no store: never initialized over (restore it).
    #[error(
        "data directory {} has a key file ({}) but no store ({}): the store was lost or moved, \
         or an init never finished. Restore it from a backup: put the backup at {} and the key \
         file of the backup's time at {} (docs/operations.md, \"Backup and restore\"). To start \
         over with no secrets instead, move {} and {} away, then run `srv-secrets init`",
        dir.display(),
        key.display(),
        store.display(),
        store.display(),
        key.display(),
        key.display(),
        dir.display()
    )]
    StoreLost {
        /// The data directory.
        dir: PathBuf,
        /// The key file that exists.
        key: PathBuf,
        /// Where the store should be.
        store: PathBuf,
    },
    /// The store holds a record that does not authenticate, or its records are not the set
    /// its last commit wrote (one removed, put back from an earlier copy, or added): it was
    /// changed by something other than srv-secrets. Which record is logged.
    #[error(
        "the store was changed outside srv-secrets ({what}); refusing to serve it: restore it \
         from a backup (docs/operations.md, \"Backup and restore\")"
    )]
    Tampered {
        /// What does not hold, in general terms.
        what: &'static str,
    },
    /// A template that could not be rendered: a placeholder that needs what a stored
    /// value has not (a service, a tier, a deployment), or the OS random number generator
    /// failed.
    #[error("template {0}")]
    Template(catalog::TemplateError),
    /// A value or manifest exceeds its size limit.
    #[error("{what} too large: the limit is {limit} bytes")]
    TooLarge {
        /// "secret value" or "manifest".
        what: &'static str,
        /// The limit in bytes.
        limit: usize,
    },
    /// The uid is already mapped to another service.
    #[error("uid {uid} already maps to service {service}")]
    UidInUse {
        /// The uid.
        uid: u32,
        /// The service it maps to (a name from the store, not from the caller).
        service: String,
    },
    /// uid 0 and the admin uid cannot be mapped to a service.
    #[error(
        "uid {uid} is the admin (root and uid {admin_uid}, which ran init, are) and cannot \
         be mapped to a service"
    )]
    UidIsAdmin {
        /// The uid.
        uid: u32,
        /// The uid that ran init.
        admin_uid: u32,
    },
}

/// "line N: ", or nothing for line 0.
struct AtLine(usize);

impl std::fmt::Display for AtLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            0 => Ok(()),
            n => write!(f, "line {n}: "),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Io`] builder for `map_err`.
    pub(crate) fn io(
        op: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| Error::Io { op, path, source }
    }

    /// An [`Error::Store`] builder for `map_err`.
    pub(crate) fn store<E>(op: &'static str) -> impl FnOnce(E) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        move |source| Error::Store {
            op,
            source: Box::new(source),
        }
    }
}
