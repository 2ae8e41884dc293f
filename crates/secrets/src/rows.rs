//! The vault's model of the store, and its rows: what [`Mutation`]s become when committed
//! ([`encode`]), and what a backend's rows mean when loaded or fed back ([`decode_snapshot`],
//! [`decode_ops`]).
//!
//! Store format 7 (records as `record.rs` lays them out; format 6 is the same without
//! API tokens; format 5 is format 6 without the
//! audit trail, which starts when a format-5 store is opened, and without a freeze in the
//! store record or a suspension in a service's; format 4 is format 5 with one version per
//! secret record and grants without an expiry, which later formats read as they are;
//! format 3 is format 4 without the bundles, format 2 without the catalog either; all are
//! upgraded at open by writing the number):
//!
//! | row                     | value                                                     |
//! |-------------------------|-----------------------------------------------------------|
//! | `meta/format_version`   | u32, big-endian: 2 (plain, so that a build of format 1 refuses the store by its number) |
//! | `meta/key_check.ID`     | [`KeyCheck::encode`], one per key the store uses          |
//! | `meta/store`            | the store record: admin uid, active key, rotation target, last change, fingerprint key, freeze |
//! | `secrets/NAME`          | a secret record                                           |
//! | `services/NAME`         | a service record                                          |
//! | `grants/SERVICE/SECRET` | a grant record                                            |
//! | `catalog/tier/T`, `catalog/service/S`, `catalog/secret/NAME` | a declaration of the deployment catalog |
//! | `bundles/bundle/S/T/D/N`, `bundles/value/S/T/D/N/SECRET` | a bundle issued, a value generated for it (its fingerprint) |
//! | `audit/CHAIN/SEQ`       | an audit record (`audit` crate: signed, linked), never loaded: read by range |
//! | `opened/SECRET/SERVICE` | the highest version SERVICE opened of SECRET (`trail.rs`) |
//! | `tokens/ID`             | an API token's record: whose, its keyed hash, made, ends, revoked (never the token) |
//!
//! Format 1 is read by `legacy.rs`, for the migration at open.
//!
//! # Authentication
//!
//! Every record is tagged under a key derived from the cluster key (`record.rs`), so none
//! can be forged or moved. That alone would let whoever can write the store put back a
//! record it saw earlier (a revoked grant, a replaced service) or remove one. So the store
//! record also holds a digest of the whole set: the XOR, over every secret, service,
//! grant, declaration, bundle and token record, of its term (the HMAC of its tag under a key derived for that, which nothing
//! stored reveals). Each commit updates it from the terms of the records it replaces and
//! writes; a load recomputes it from every record and refuses a store whose records do
//! not add up to what its last commit recorded ([`Error::Tampered`]), as it refuses a
//! record that does not authenticate. Replacing the whole store with an earlier copy of
//! it, store record and all, is not detected: that is a backup restored.

use std::collections::{BTreeMap, HashMap};

use crate::backend::{Op, Row, Snapshot, Table};
use crate::crypto::{Key, KeyCheck, Keyring, MAC_LEN, SealedFingerprintKey};
use crate::error::{Error, Result};
use crate::record::{
    self, Auth, Decl, DeclKind, Issued, IssuedRow, Marked, SecretRecord, ServiceRecord,
    StoreRecord, TokenRecord,
};
use crate::state::State;
use crate::trail::{AuditKeys, audit_row, opened_names, opened_row};

/// The store format this build reads and writes.
pub(crate) const FORMAT_VERSION: u32 = 7;

/// The format before the catalog: read, and upgraded at open by writing the number (its
/// stores have no catalog table; everything else is laid out alike).
pub(crate) const FORMAT_WITHOUT_CATALOG: u32 = 2;

/// The format before bundles: read, and upgraded at open by writing the number (its
/// stores have no bundles table, and no fingerprint key in the store record).
pub(crate) const FORMAT_WITHOUT_BUNDLES: u32 = 3;

/// The format before versions: read, and upgraded at open by writing the number (its
/// secret records hold one version and none of format 5's fields, its grants no expiry;
/// both read as they are).
pub(crate) const FORMAT_WITHOUT_VERSIONS: u32 = 4;

/// The format before the audit trail and break-glass: read, and upgraded at open by
/// writing the number; its audit then starts, with a record saying so (its store record
/// holds no freeze, its service records no suspension: none read as absent).
pub(crate) const FORMAT_WITHOUT_AUDIT: u32 = 5;

/// The format before API tokens: read, and upgraded at open by writing the number (its
/// stores have no tokens table). A build of this format refuses a store of the next by
/// its number, rather than serving it without its tokens' revocations.
pub(crate) const FORMAT_WITHOUT_TOKENS: u32 = 6;

/// Whether this build reads stores of `format` as they are.
pub(crate) fn readable(format: u32) -> bool {
    matches!(
        format,
        FORMAT_VERSION
            | FORMAT_WITHOUT_CATALOG
            | FORMAT_WITHOUT_BUNDLES
            | FORMAT_WITHOUT_VERSIONS
            | FORMAT_WITHOUT_AUDIT
            | FORMAT_WITHOUT_TOKENS
    )
}

const FORMAT_VERSION_FIELD: &str = "format_version";
const KEY_CHECK_PREFIX: &str = "key_check.";
const STORE_FIELD: &str = "store";

/// The meta table: store-wide facts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Meta {
    /// Layout version of the store; refused at load unless [`FORMAT_VERSION`].
    pub(crate) format_version: u32,
    /// The unix uid of the admin principal.
    pub(crate) admin_uid: u32,
    /// The key new records are sealed under outside a rotation.
    pub(crate) active_key: u32,
    /// The key a rotation in flight moves records to (`None` when none). While set, new
    /// records are sealed under it.
    pub(crate) rotation_target: Option<u32>,
    /// A check value per key id the store references.
    pub(crate) key_checks: BTreeMap<u32, KeyCheck>,
    /// Unix seconds of the last commit (written by every commit, 0 in a store written
    /// before it was): the newest mtime known at open.
    pub(crate) last_change: u64,
    /// The fingerprint key of bundles' values, sealed; absent until the first bundle.
    pub(crate) fingerprint_key: Option<SealedFingerprintKey>,
    /// Deploys are frozen: by whom, since when, why.
    pub(crate) frozen: Option<Marked>,
    /// The audit trail's public key; absent until the audit starts.
    pub(crate) audit_key: Option<audit::PublicKey>,
    /// Each audit chain's last record.
    pub(crate) audit_heads: BTreeMap<String, audit::Head>,
}

impl Meta {
    /// The key new records are sealed under.
    pub(crate) fn sealing_key(&self) -> u32 {
        self.rotation_target.unwrap_or(self.active_key)
    }
}

/// The store's digest: the XOR of every record's term.
pub(crate) type Digest = [u8; MAC_LEN];

fn xor(digest: &mut Digest, term: &[u8; MAC_LEN]) {
    for (d, t) in digest.iter_mut().zip(term) {
        *d ^= t;
    }
}

/// Everything a store holds, decoded.
#[derive(Debug, Default)]
pub(crate) struct Stored {
    /// The meta table.
    pub(crate) meta: Meta,
    /// All secrets.
    pub(crate) secrets: Vec<(String, SecretRecord)>,
    /// All services.
    pub(crate) services: Vec<(String, ServiceRecord)>,
    /// All grants, as (service, secret, when it ends if it does).
    pub(crate) grants: Vec<(String, String, Option<u64>)>,
    /// The highest version of each secret each service opened: (secret, service, version).
    pub(crate) opened: Vec<(String, String, u64)>,
    /// Every declaration of the catalog, by name.
    pub(crate) decls: Vec<(String, Decl)>,
    /// Every bundle issued, and every value generated for one.
    pub(crate) issued: Vec<Issued>,
    /// Every API token's record, by ID.
    pub(crate) tokens: Vec<(String, TokenRecord)>,
    /// How each secret, service, grant and declaration is authenticated, by row.
    pub(crate) auths: HashMap<Row, Auth>,
    /// The digest of their terms.
    pub(crate) digest: Digest,
}

/// A commit of the change feed, decoded and checked.
pub(crate) struct Fed {
    /// Its mutations, the store record's first.
    pub(crate) batch: Vec<Mutation>,
    /// The rows it wrote, with how each is authenticated now (`None`: deleted).
    pub(crate) auths: Vec<(Row, Option<Auth>)>,
    /// The digest its store record holds, if it wrote one.
    pub(crate) digest: Option<Digest>,
}

/// One change the vault plans, before it is encoded into rows.
#[derive(Clone, Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "a batch lives for one commit; boxing each record would cost every set an allocation"
)]
pub(crate) enum Mutation {
    /// Insert or replace a secret.
    PutSecret(String, SecretRecord),
    /// Remove a secret (its grants are removed by separate mutations).
    DeleteSecret(String),
    /// Insert or replace a service.
    PutService(String, ServiceRecord),
    /// Remove a service (its grants are removed by separate mutations).
    DeleteService(String),
    /// Add or replace a grant (service, secret, when it ends if it does).
    PutGrant(String, String, Option<u64>),
    /// Remove a grant (service, secret).
    DeleteGrant(String, String),
    /// Declare a tier, a service's tiers or a secret's metadata (replacing what was).
    PutDecl(String, Decl),
    /// Remove a declaration.
    DeleteDecl(DeclKind, String),
    /// Record a bundle issued, or a value generated for one (replacing what was).
    PutIssued(Issued),
    /// Remove such a record.
    DeleteIssued(IssuedRow),
    /// Record an API token (made, or revoked), by ID.
    PutToken(String, TokenRecord),
    /// Forget a token's record.
    DeleteToken(String),
    /// Set or clear the sealed fingerprint key.
    SetFingerprintKey(Option<SealedFingerprintKey>),
    /// Freeze deploys (`Some`: by whom, when, why) or unfreeze them.
    SetFrozen(Option<Marked>),
    /// Set `active_key`.
    SetActiveKey(u32),
    /// Set or clear `rotation_target`.
    SetRotationTarget(Option<u32>),
    /// Store a key check value.
    PutKeyCheck(u32, KeyCheck),
    /// Remove a key check value.
    DeleteKeyCheck(u32),
    /// Set `last_change`: the vault puts one first in every batch that changes anything
    /// but the audit, with the batch's time.
    SetLastChange(u64),
    /// Something to record in the audit chain named: made into a record (numbered,
    /// linked, signed) by the commit, against the chain's head at that moment
    /// (`Vault::commit_batch`).
    Audit(String, Box<audit::Event>),
    /// An audit record, ready to store (what the commit made of an [`Mutation::Audit`]):
    /// its chain, its number and its stored form.
    PutAudit(String, u64, Vec<u8>),
    /// The audit chains' heads once the batch is applied (the commit puts one after the
    /// records it made; the store record keeps them).
    SetAuditHeads(BTreeMap<String, audit::Head>),
    /// The audit trail's public key (the commit that starts the audit).
    SetAuditKey(audit::PublicKey),
    /// The highest version of a secret a service opened: (secret, service, version).
    PutOpened(String, String, u64),
    /// Forget what a service opened of a secret (the secret or the service is gone).
    DeleteOpened(String, String),
}

impl Mutation {
    /// Whether it only records: the audit's mutations, which change nothing a file shows
    /// (and so do not date the batch).
    pub(crate) fn only_records(&self) -> bool {
        matches!(
            self,
            Mutation::Audit(..)
                | Mutation::PutAudit(..)
                | Mutation::SetAuditHeads(_)
                | Mutation::PutOpened(..)
                | Mutation::DeleteOpened(..)
        )
    }
}

/// The row of the format version.
pub(crate) fn format_row() -> Row {
    meta_row(FORMAT_VERSION_FIELD)
}

fn meta_row(field: impl Into<String>) -> Row {
    Row::new(Table::Meta, field)
}

fn key_check_row(id: u32) -> Row {
    meta_row(format!("{KEY_CHECK_PREFIX}{id}"))
}

fn store_record(meta: &Meta, digest: Digest) -> StoreRecord {
    StoreRecord {
        admin_uid: meta.admin_uid,
        active_key: meta.active_key,
        rotation_target: meta.rotation_target,
        last_change: meta.last_change,
        digest,
        fingerprint_key: meta
            .fingerprint_key
            .as_ref()
            .map(SealedFingerprintKey::encode),
        frozen: meta.frozen.clone(),
        audit_key: meta.audit_key.map(|k| k.0.to_vec()),
        audit_heads: meta
            .audit_heads
            .iter()
            .map(|(chain, head)| (chain.clone(), (*head).into()))
            .collect(),
    }
}

fn key_of(keys: &Keyring, id: u32) -> Result<&Key> {
    keys.get(id).map(|k| &**k).ok_or(Error::Corrupt {
        what: "a record's key is not loaded",
    })
}

/// The bytes of value the records a batch puts carry (every held version of each
/// secret), without encoding anything: what a batch's size mostly is.
pub(crate) fn values_len(batch: &[Mutation]) -> usize {
    batch
        .iter()
        .map(|m| match m {
            Mutation::PutSecret(_, rec) => rec.held().map(|(_, h)| h.sealed.ciphertext.len()).sum(),
            _ => 0,
        })
        .sum()
}

/// The rows a batch of mutations writes, applied to the store `state` mirrors: the records
/// in order, each tagged, then the store record (the meta the batch leaves, and the digest
/// updated from the terms of the records replaced and written). Records without a key of
/// their own (services, grants, the store record) are tagged under the key the store
/// seals with once the batch is applied.
pub(crate) fn encode(batch: &[Mutation], state: &State) -> Result<Vec<Op>> {
    let mut after = state.meta.clone();
    for m in batch {
        match m {
            Mutation::SetActiveKey(id) => after.active_key = *id,
            Mutation::SetRotationTarget(id) => after.rotation_target = *id,
            Mutation::SetLastChange(t) => after.last_change = *t,
            Mutation::SetFingerprintKey(sealed) => after.fingerprint_key = sealed.clone(),
            Mutation::SetFrozen(frozen) => after.frozen = frozen.clone(),
            Mutation::SetAuditHeads(heads) => after.audit_heads.clone_from(heads),
            Mutation::SetAuditKey(key) => after.audit_key = Some(*key),
            _ => {}
        }
    }
    let keys = &state.keys;
    let key = key_of(keys, after.sealing_key())?;
    let mut digest = state.digest;
    // The rows this batch wrote so far, as they now are.
    let mut written: HashMap<Row, Option<Auth>> = HashMap::new();
    let mut ops = Vec::with_capacity(batch.len() + 1);
    for m in batch {
        let (row, put) = match m {
            Mutation::PutSecret(name, rec) => {
                let row = Row::new(Table::Secrets, name.as_str());
                (row, Some(rec.encode(name, key_of(keys, rec.key_id)?)))
            }
            Mutation::DeleteSecret(name) => (Row::new(Table::Secrets, name.as_str()), None),
            Mutation::PutService(name, rec) => (
                Row::new(Table::Services, name.as_str()),
                Some(rec.encode(name, key)),
            ),
            Mutation::DeleteService(name) => (Row::new(Table::Services, name.as_str()), None),
            Mutation::PutGrant(svc, sec, expires) => {
                let row = Row::grant(svc, sec);
                let put = record::encode_grant(&row, *expires, key);
                (row, Some(put))
            }
            Mutation::DeleteGrant(svc, sec) => (Row::grant(svc, sec), None),
            Mutation::PutDecl(name, decl) => (decl.kind().row(name), Some(decl.encode(name, key))),
            Mutation::DeleteDecl(kind, name) => (kind.row(name), None),
            Mutation::PutIssued(issued) => (issued.row(), Some(issued.encode(key))),
            Mutation::DeleteIssued(what) => (what.row(), None),
            Mutation::PutToken(id, rec) => (TokenRecord::row(id), Some(rec.encode(id, key))),
            Mutation::DeleteToken(id) => (TokenRecord::row(id), None),
            Mutation::PutKeyCheck(id, check) => {
                ops.push(Op::Put(key_check_row(*id), check.encode()));
                continue;
            }
            Mutation::DeleteKeyCheck(id) => {
                ops.push(Op::Delete(key_check_row(*id)));
                continue;
            }
            // Authenticated by their signatures and links, not by the digest: a key
            // rotation never touches them.
            Mutation::PutAudit(chain, seq, bytes) => {
                ops.push(Op::Put(audit_row(chain, *seq), bytes.clone()));
                continue;
            }
            Mutation::PutOpened(secret, service, version) => {
                let keys = state.audit.as_ref().ok_or(Error::Corrupt {
                    what: "the audit key is not loaded",
                })?;
                let row = opened_row(secret, service);
                let bytes = keys.encode_opened(&row.key, *version);
                ops.push(Op::Put(row, bytes));
                continue;
            }
            Mutation::DeleteOpened(secret, service) => {
                ops.push(Op::Delete(opened_row(secret, service)));
                continue;
            }
            // Made into records by the commit before the batch is encoded.
            Mutation::Audit(..) => {
                return Err(Error::Corrupt {
                    what: "an audit event reached the store unrecorded",
                });
            }
            Mutation::SetActiveKey(_)
            | Mutation::SetRotationTarget(_)
            | Mutation::SetLastChange(_)
            | Mutation::SetFingerprintKey(_)
            | Mutation::SetFrozen(_)
            | Mutation::SetAuditHeads(_)
            | Mutation::SetAuditKey(_) => continue,
        };
        let before = match written.get(&row) {
            Some(now) => *now,
            None => state.auths.get(&row).copied(),
        };
        if let Some(old) = before {
            xor(&mut digest, &old.term);
        }
        match put {
            Some((bytes, auth)) => {
                xor(&mut digest, &auth.term);
                written.insert(row.clone(), Some(auth));
                ops.push(Op::Put(row, bytes));
            }
            None => {
                written.insert(row.clone(), None);
                ops.push(Op::Delete(row));
            }
        }
    }
    ops.push(Op::Put(
        meta_row(STORE_FIELD),
        store_record(&after, digest).encode(key),
    ));
    Ok(ops)
}

/// The rows of a new store holding `meta` and nothing else, `key` its active key.
pub(crate) fn initial(meta: &Meta, key: &Key) -> Vec<Op> {
    let mut ops = vec![Op::Put(
        meta_row(FORMAT_VERSION_FIELD),
        FORMAT_VERSION.to_be_bytes().to_vec(),
    )];
    for (id, check) in &meta.key_checks {
        ops.push(Op::Put(key_check_row(*id), check.encode()));
    }
    ops.push(Op::Put(
        meta_row(STORE_FIELD),
        store_record(meta, [0; MAC_LEN]).encode(key),
    ));
    ops
}

/// Every row of a store holding `stored`, as this build writes it (a migration's),
/// tagged with `keys`.
pub(crate) fn encode_store(stored: &Stored, keys: &Keyring) -> Result<Vec<(Row, Vec<u8>)>> {
    let mut batch: Vec<Mutation> = Vec::new();
    for (name, rec) in &stored.secrets {
        batch.push(Mutation::PutSecret(name.clone(), rec.clone()));
    }
    for (name, rec) in &stored.services {
        batch.push(Mutation::PutService(name.clone(), rec.clone()));
    }
    for (svc, sec, expires) in &stored.grants {
        batch.push(Mutation::PutGrant(svc.clone(), sec.clone(), *expires));
    }
    for (name, decl) in &stored.decls {
        batch.push(Mutation::PutDecl(name.clone(), decl.clone()));
    }
    for issued in &stored.issued {
        batch.push(Mutation::PutIssued(issued.clone()));
    }
    for (id, rec) in &stored.tokens {
        batch.push(Mutation::PutToken(id.clone(), rec.clone()));
    }
    // A migration's store (of format 1) has no audit and no opens yet.
    let empty = State::empty(stored.meta.clone(), keys.clone());
    let key = key_of(keys, stored.meta.sealing_key())?;
    Ok(initial(&stored.meta, key)
        .into_iter()
        .chain(encode(&batch, &empty)?)
        .filter_map(|op| match op {
            Op::Put(row, value) => Some((row, value)),
            Op::Delete(_) => None,
        })
        .collect())
}

/// The format version of the store a snapshot is of.
pub(crate) fn format_of(snapshot: &Snapshot) -> Result<u32> {
    let field = snapshot
        .rows
        .iter()
        .find(|(row, _)| row.table == Table::Meta && row.key == FORMAT_VERSION_FIELD)
        .ok_or(Error::Corrupt {
            what: "meta field missing",
        })?;
    be_u32(&field.1)
}

/// What a store says of itself before anything in it is checked: its meta, for the key
/// file to be checked against ([`decode_snapshot`] then checks everything under those
/// keys). Refuses a store whose format version is not [`FORMAT_VERSION`] with
/// [`Error::FormatVersion`].
pub(crate) fn peek_meta(snapshot: &Snapshot) -> Result<Meta> {
    let format_version = format_of(snapshot)?;
    if !readable(format_version) {
        return Err(Error::FormatVersion {
            found: format_version,
            supported: FORMAT_VERSION,
        });
    }
    let mut store = None;
    let mut key_checks = BTreeMap::new();
    for (row, value) in &snapshot.rows {
        if row.table != Table::Meta {
            continue;
        }
        if row.key == STORE_FIELD {
            store = Some(StoreRecord::peek(value)?.0);
        } else if let Some(id) = row.key.strip_prefix(KEY_CHECK_PREFIX) {
            key_checks.insert(key_id(id)?, KeyCheck::decode(value)?);
        }
    }
    let store = store.ok_or(Error::Corrupt {
        what: "the store record is missing",
    })?;
    meta_of(format_version, store, key_checks)
}

fn meta_of(
    format_version: u32,
    store: StoreRecord,
    key_checks: BTreeMap<u32, KeyCheck>,
) -> Result<Meta> {
    Ok(Meta {
        format_version,
        admin_uid: store.admin_uid,
        active_key: store.active_key,
        rotation_target: store.rotation_target,
        key_checks,
        last_change: store.last_change,
        fingerprint_key: sealed_of(store.fingerprint_key.as_deref())?,
        frozen: store.frozen,
        audit_key: audit_key_of(store.audit_key.as_deref())?,
        audit_heads: store
            .audit_heads
            .into_iter()
            .map(|(chain, head)| (chain, head.into()))
            .collect(),
    })
}

fn audit_key_of(bytes: Option<&[u8]>) -> Result<Option<audit::PublicKey>> {
    bytes
        .map(|b| {
            <[u8; audit::PUBLIC_KEY_LEN]>::try_from(b)
                .map(audit::PublicKey)
                .map_err(|_| Error::Corrupt {
                    what: "malformed audit key",
                })
        })
        .transpose()
}

fn sealed_of(bytes: Option<&[u8]>) -> Result<Option<SealedFingerprintKey>> {
    bytes.map(SealedFingerprintKey::decode).transpose()
}

/// Decodes everything a backend holds, checking every record under `keys` (the store's
/// active key and rotation target, checked against the key file) and the set of them
/// against the store's digest.
///
/// # Errors
/// [`Error::Tampered`] for a record that does not authenticate (logged by row) or a set
/// of records that is not the one the last commit wrote; [`Error::FormatVersion`];
/// [`Error::Corrupt`].
pub(crate) fn decode_snapshot(
    snapshot: Snapshot,
    keys: &Keyring,
    audit: Option<&AuditKeys>,
) -> Result<Stored> {
    let format_version = format_of(&snapshot)?;
    if !readable(format_version) {
        return Err(Error::FormatVersion {
            found: format_version,
            supported: FORMAT_VERSION,
        });
    }
    let mut store = None;
    let mut key_checks = BTreeMap::new();
    let mut out = Stored::default();
    let mut digest = [0; MAC_LEN];
    for (row, value) in snapshot.rows {
        let auth = match row.table {
            Table::Meta if row.key == STORE_FIELD => {
                store = Some(StoreRecord::decode(&value, keys)?);
                continue;
            }
            Table::Meta => {
                if let Some(id) = row.key.strip_prefix(KEY_CHECK_PREFIX) {
                    key_checks.insert(key_id(id)?, KeyCheck::decode(&value)?);
                }
                continue;
            }
            Table::Secrets => {
                let (rec, auth) = SecretRecord::decode(&row.key, &value, keys)?;
                out.secrets.push((row.key.clone(), rec));
                auth
            }
            Table::Services => {
                let (rec, auth) = ServiceRecord::decode(&row.key, &value, keys)?;
                out.services.push((row.key.clone(), rec));
                auth
            }
            Table::Grants => {
                let (expires, auth) = record::decode_grant(&row, &value, keys)?;
                let (svc, sec) = grant_names(&row)?;
                out.grants.push((svc, sec, expires));
                auth
            }
            Table::Catalog => {
                let (_, name, decl, auth) = Decl::decode(&row.key, &value, keys)?;
                out.decls.push((name, decl));
                auth
            }
            Table::Bundles => {
                let (issued, auth) = Issued::decode(&row.key, &value, keys)?;
                out.issued.push(issued);
                auth
            }
            Table::Tokens => {
                let (rec, auth) = TokenRecord::decode(&row.key, &value, keys)?;
                out.tokens.push((row.key.clone(), rec));
                auth
            }
            // Read by range, never loaded (a backend that hands them over anyway).
            Table::Audit => continue,
            Table::Opened => {
                out.opened.push(decode_opened(&row.key, &value, audit)?);
                continue;
            }
        };
        xor(&mut digest, &auth.term);
        out.auths.insert(row, auth);
    }
    let store = store.ok_or(Error::Corrupt {
        what: "the store record is missing",
    })?;
    if digest != store.digest {
        tracing::error!(
            "the store's records are not the set its last commit wrote: one was removed, \
             added, or put back from an earlier copy"
        );
        return Err(Error::Tampered {
            what: "its records are not the set its last commit wrote",
        });
    }
    out.digest = digest;
    out.meta = meta_of(format_version, store, key_checks)?;
    Ok(out)
}

/// Decodes the writes of a commit (the change feed's) back into mutations, the store
/// record's first, so that they date the rest, checking every record under `keys`.
///
/// # Errors
/// [`Error::Tampered`] for a record that does not authenticate; [`Error::Corrupt`].
pub(crate) fn decode_ops(ops: Vec<Op>, keys: &Keyring, audit: Option<&AuditKeys>) -> Result<Fed> {
    let mut batch = Vec::with_capacity(ops.len() + 2);
    let mut auths = Vec::with_capacity(ops.len());
    let mut store = Vec::new();
    let mut digest = None;
    for op in ops {
        let m = match op {
            Op::Put(row, value) => match row.table {
                Table::Secrets => {
                    let (rec, auth) = SecretRecord::decode(&row.key, &value, keys)?;
                    auths.push((row.clone(), Some(auth)));
                    Mutation::PutSecret(row.key, rec)
                }
                Table::Services => {
                    let (rec, auth) = ServiceRecord::decode(&row.key, &value, keys)?;
                    auths.push((row.clone(), Some(auth)));
                    Mutation::PutService(row.key, rec)
                }
                Table::Grants => {
                    let (expires, auth) = record::decode_grant(&row, &value, keys)?;
                    let (svc, sec) = grant_names(&row)?;
                    auths.push((row, Some(auth)));
                    Mutation::PutGrant(svc, sec, expires)
                }
                Table::Catalog => {
                    let (_, name, decl, auth) = Decl::decode(&row.key, &value, keys)?;
                    auths.push((row, Some(auth)));
                    Mutation::PutDecl(name, decl)
                }
                Table::Bundles => {
                    let (issued, auth) = Issued::decode(&row.key, &value, keys)?;
                    auths.push((row, Some(auth)));
                    Mutation::PutIssued(issued)
                }
                Table::Tokens => {
                    let (rec, auth) = TokenRecord::decode(&row.key, &value, keys)?;
                    auths.push((row.clone(), Some(auth)));
                    Mutation::PutToken(row.key, rec)
                }
                // The heads, in the store record, are what memory keeps of the records.
                Table::Audit => continue,
                Table::Opened => {
                    let (secret, service, version) = decode_opened(&row.key, &value, audit)?;
                    Mutation::PutOpened(secret, service, version)
                }
                Table::Meta if row.key == STORE_FIELD => {
                    let rec = StoreRecord::decode(&value, keys)?;
                    digest = Some(rec.digest);
                    let audit_key = audit_key_of(rec.audit_key.as_deref())?;
                    store = vec![
                        Mutation::SetLastChange(rec.last_change),
                        Mutation::SetActiveKey(rec.active_key),
                        Mutation::SetRotationTarget(rec.rotation_target),
                        Mutation::SetFingerprintKey(sealed_of(rec.fingerprint_key.as_deref())?),
                        Mutation::SetFrozen(rec.frozen),
                        Mutation::SetAuditHeads(
                            rec.audit_heads
                                .into_iter()
                                .map(|(chain, head)| (chain, head.into()))
                                .collect(),
                        ),
                    ];
                    store.extend(audit_key.map(Mutation::SetAuditKey));
                    continue;
                }
                Table::Meta => match row.key.strip_prefix(KEY_CHECK_PREFIX) {
                    Some(id) => Mutation::PutKeyCheck(key_id(id)?, KeyCheck::decode(&value)?),
                    None => continue,
                },
            },
            Op::Delete(row) => match row.table {
                Table::Secrets => {
                    auths.push((row.clone(), None));
                    Mutation::DeleteSecret(row.key)
                }
                Table::Services => {
                    auths.push((row.clone(), None));
                    Mutation::DeleteService(row.key)
                }
                Table::Grants => {
                    let (svc, sec) = grant_names(&row)?;
                    auths.push((row, None));
                    Mutation::DeleteGrant(svc, sec)
                }
                Table::Catalog => {
                    let (kind, name) = DeclKind::of_key(&row.key).ok_or(Error::Corrupt {
                        what: "malformed catalog key",
                    })?;
                    let name = name.to_owned();
                    auths.push((row, None));
                    Mutation::DeleteDecl(kind, name)
                }
                Table::Bundles => {
                    let what = IssuedRow::of_key(&row.key).ok_or(Error::Corrupt {
                        what: "malformed bundle key",
                    })?;
                    auths.push((row, None));
                    Mutation::DeleteIssued(what)
                }
                Table::Tokens => {
                    auths.push((row.clone(), None));
                    Mutation::DeleteToken(row.key)
                }
                Table::Audit => continue,
                Table::Opened => {
                    let (secret, service) = opened_names(&row.key).ok_or(Error::Corrupt {
                        what: "malformed opened key",
                    })?;
                    Mutation::DeleteOpened(secret.to_owned(), service.to_owned())
                }
                Table::Meta => match row.key.strip_prefix(KEY_CHECK_PREFIX) {
                    Some(id) => Mutation::DeleteKeyCheck(key_id(id)?),
                    None => continue,
                },
            },
        };
        batch.push(m);
    }
    store.extend(batch);
    Ok(Fed {
        batch: store,
        auths,
        digest,
    })
}

/// An `opened` row: (secret, service, version), its tag checked.
fn decode_opened(
    key: &str,
    value: &[u8],
    audit: Option<&AuditKeys>,
) -> Result<(String, String, u64)> {
    let keys = audit.ok_or(Error::Tampered {
        what: "the store records opens but has no audit key",
    })?;
    let version = keys.decode_opened(key, value)?;
    let (secret, service) = opened_names(key).ok_or(Error::Corrupt {
        what: "malformed opened key",
    })?;
    Ok((secret.to_owned(), service.to_owned(), version))
}

fn grant_names(row: &Row) -> Result<(String, String)> {
    row.grant_names()
        .map(|(svc, sec)| (svc.to_owned(), sec.to_owned()))
        .ok_or(Error::Corrupt {
            what: "malformed grant key",
        })
}

fn key_id(text: &str) -> Result<u32> {
    text.parse().map_err(|_| Error::Corrupt {
        what: "malformed key check id",
    })
}

fn be_u32(v: &[u8]) -> Result<u32> {
    <[u8; 4]>::try_from(v)
        .map(u32::from_be_bytes)
        .map_err(|_| Error::Corrupt {
            what: "malformed meta field",
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails by panicking")]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::manifest::Manifest;

    fn store() -> (Keyring, Meta) {
        let key = Key::generate(1).unwrap();
        let meta = Meta {
            format_version: FORMAT_VERSION,
            admin_uid: 1000,
            active_key: 1,
            rotation_target: None,
            key_checks: [(1, key.check().unwrap())].into(),
            last_change: 1_700_000_000,
            fingerprint_key: None,
            frozen: None,
            audit_key: None,
            audit_heads: BTreeMap::new(),
        };
        (Keyring::new([key]), meta)
    }

    fn secret(version: u64) -> SecretRecord {
        SecretRecord::made_up(version, 9, 10, 1, 4)
    }

    fn snapshot(ops: Vec<Op>) -> Snapshot {
        let mut rows = BTreeMap::new();
        for op in ops {
            match op {
                Op::Put(row, value) => {
                    rows.insert(row, value);
                }
                Op::Delete(row) => {
                    rows.remove(&row);
                }
            }
        }
        Snapshot {
            revision: crate::backend::Revision(1),
            rows: rows.into_iter().collect(),
        }
    }

    /// The rows of a store made with `meta` after `batch`, and the state they load as.
    fn committed(keys: &Keyring, meta: &Meta, batch: &[Mutation]) -> (Vec<Op>, State) {
        let mut ops = initial(meta, keys.get(1).unwrap());
        let empty = State::empty(meta.clone(), keys.clone());
        ops.extend(encode(batch, &empty).unwrap());
        let stored = decode_snapshot(snapshot(ops.clone()), keys, None).unwrap();
        let state =
            State::from_stored(stored, keys.clone(), None, crate::backend::Revision(1)).unwrap();
        (ops, state)
    }

    fn web() -> ServiceRecord {
        ServiceRecord {
            uid: Some(42),
            manifest: Arc::new(Manifest::parse(b"secret a\n").unwrap()),
            suspended: None,
        }
    }

    #[test]
    fn rows_round_trip() {
        let (keys, m) = store();
        let batch = vec![
            Mutation::SetLastChange(1_800_000_000),
            Mutation::PutSecret("a".into(), secret(1)),
            Mutation::PutService("web".into(), web()),
            Mutation::PutGrant("web".into(), "a".into(), Some(77)),
            Mutation::SetRotationTarget(Some(1)),
        ];
        let (ops, state) = committed(&keys, &m, &batch);
        assert_eq!(
            peek_meta(&snapshot(ops.clone())).unwrap().rotation_target,
            Some(1)
        );
        let stored = decode_snapshot(snapshot(ops), &keys, None).unwrap();
        assert_eq!(stored.meta.rotation_target, Some(1));
        assert_eq!(stored.meta.admin_uid, 1000);
        assert_eq!(stored.meta.last_change, 1_800_000_000);
        assert_eq!(stored.meta.key_checks, m.key_checks);
        assert_eq!(stored.secrets, vec![("a".to_owned(), secret(1))]);
        assert_eq!(stored.services, vec![("web".to_owned(), web())]);
        assert_eq!(
            stored.grants,
            vec![("web".to_owned(), "a".to_owned(), Some(77))]
        );
        assert_eq!(stored.auths.len(), 3);
        // The feed's view of the same writes: the store record's first, dating the rest.
        let empty = State::empty(m.clone(), keys.clone());
        let fed = decode_ops(encode(&batch, &empty).unwrap(), &keys, None).unwrap();
        assert!(matches!(
            fed.batch[..],
            [
                Mutation::SetLastChange(1_800_000_000),
                Mutation::SetActiveKey(1),
                Mutation::SetRotationTarget(Some(1)),
                Mutation::SetFingerprintKey(None),
                Mutation::SetFrozen(None),
                Mutation::SetAuditHeads(_),
                Mutation::PutSecret(..),
                Mutation::PutService(..),
                Mutation::PutGrant(..),
            ]
        ));
        assert_eq!(fed.digest, Some(state.digest));
        let undo = encode(
            &[
                Mutation::DeleteGrant("web".into(), "a".into()),
                Mutation::DeleteKeyCheck(1),
            ],
            &state,
        )
        .unwrap();
        let fed = decode_ops(undo, &keys, None).unwrap();
        assert!(matches!(
            fed.batch[..],
            [
                Mutation::SetLastChange(_),
                Mutation::SetActiveKey(_),
                Mutation::SetRotationTarget(_),
                Mutation::SetFingerprintKey(_),
                Mutation::SetFrozen(_),
                Mutation::SetAuditHeads(_),
                Mutation::DeleteGrant(..),
                Mutation::DeleteKeyCheck(1)
            ]
        ));
    }

    #[test]
    fn the_digest_catches_a_record_removed_added_or_put_back() {
        let (keys, m) = store();
        let (first, state) = committed(
            &keys,
            &m,
            &[
                Mutation::PutSecret("a".into(), secret(1)),
                Mutation::PutService("web".into(), web()),
                Mutation::PutGrant("web".into(), "a".into(), None),
            ],
        );
        let old_grant = first
            .iter()
            .find(|op| op.row().table == Table::Grants)
            .cloned()
            .unwrap();
        // The grant is revoked: a later, genuine commit.
        let mut ops = first.clone();
        ops.extend(encode(&[Mutation::DeleteGrant("web".into(), "a".into())], &state).unwrap());
        assert!(
            decode_snapshot(snapshot(ops.clone()), &keys, None)
                .unwrap()
                .grants
                .is_empty()
        );
        // Its record put back from the earlier copy: authentic on its own, refused.
        let mut replayed = ops.clone();
        replayed.push(old_grant);
        let err = decode_snapshot(snapshot(replayed), &keys, None).unwrap_err();
        assert!(matches!(err, Error::Tampered { .. }), "{err:?}");
        // A record removed.
        let mut removed = ops.clone();
        removed.push(Op::Delete(Row::new(Table::Services, "web")));
        assert!(matches!(
            decode_snapshot(snapshot(removed), &keys, None),
            Err(Error::Tampered { .. })
        ));
        // The whole store as it was before the revoke, store record and all: a backup.
        assert_eq!(
            decode_snapshot(snapshot(first), &keys, None)
                .unwrap()
                .grants
                .len(),
            1
        );
    }

    #[test]
    fn refuses_other_format_versions_and_bad_fields() {
        let (keys, m) = store();
        let key = keys.get(1).unwrap();
        let mut ops = initial(&m, key);
        ops.push(Op::Put(
            meta_row(FORMAT_VERSION_FIELD),
            8u32.to_be_bytes().to_vec(),
        ));
        let err = decode_snapshot(snapshot(ops.clone()), &keys, None).unwrap_err();
        assert!(
            matches!(
                err,
                Error::FormatVersion {
                    found: 8,
                    supported: 7
                }
            ),
            "{err:?}"
        );
        assert!(matches!(
            peek_meta(&snapshot(ops)),
            Err(Error::FormatVersion { .. })
        ));
        let mut ops = initial(&m, key);
        ops.push(Op::Put(meta_row(FORMAT_VERSION_FIELD), b"x".to_vec()));
        let err = decode_snapshot(snapshot(ops), &keys, None).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
        let mut ops = initial(&m, key);
        ops.push(Op::Delete(meta_row(STORE_FIELD)));
        assert!(decode_snapshot(snapshot(ops), &keys, None).is_err());
    }
}
