//! The vault's model of the store, and its rows: what [`Mutation`]s become when committed
//! ([`encode`]), and what a backend's rows mean when loaded or fed back ([`decode_snapshot`],
//! [`decode_ops`]).
//!
//! Store format 2 (records as `record.rs` lays them out):
//!
//! | row                     | value                                                     |
//! |-------------------------|-----------------------------------------------------------|
//! | `meta/format_version`   | u32, big-endian: 2 (plain, so that a build of format 1 refuses the store by its number) |
//! | `meta/key_check.ID`     | [`KeyCheck::encode`], one per key the store uses          |
//! | `meta/store`            | the store record: admin uid, active key, rotation target, last change |
//! | `secrets/NAME`          | a secret record                                           |
//! | `services/NAME`         | a service record                                          |
//! | `grants/SERVICE/SECRET` | a grant record                                            |
//!
//! Format 1 is read by `legacy.rs`, for the migration at open.

use std::collections::BTreeMap;

use crate::backend::{Op, Row, Snapshot, Table};
use crate::crypto::KeyCheck;
use crate::error::{Error, Result};
use crate::record::{self, SecretRecord, ServiceRecord, StoreRecord};

/// The store format this build reads and writes.
pub(crate) const FORMAT_VERSION: u32 = 2;

const FORMAT_VERSION_FIELD: &str = "format_version";
const KEY_CHECK_PREFIX: &str = "key_check.";
const STORE_FIELD: &str = "store";

/// The meta table: store-wide facts.
#[derive(Clone, Debug, PartialEq, Eq)]
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
}

impl Meta {
    /// The key new records are sealed under.
    pub(crate) fn sealing_key(&self) -> u32 {
        self.rotation_target.unwrap_or(self.active_key)
    }
}

/// Everything a store holds, decoded.
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

/// One change the vault plans, before it is encoded into rows.
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

fn meta_row(field: impl Into<String>) -> Row {
    Row::new(Table::Meta, field)
}

fn key_check_row(id: u32) -> Row {
    meta_row(format!("{KEY_CHECK_PREFIX}{id}"))
}

fn store_record(meta: &Meta) -> StoreRecord {
    StoreRecord {
        admin_uid: meta.admin_uid,
        active_key: meta.active_key,
        rotation_target: meta.rotation_target,
        last_change: meta.last_change,
    }
}

/// The rows a batch of mutations writes, applied to a store whose meta is `meta`: the
/// records in order, then the store record if the batch changed it. Records that have no
/// key of their own (services, grants, the store record) are under the key the store
/// seals with once the batch is applied.
pub(crate) fn encode(batch: &[Mutation], meta: &Meta) -> Vec<Op> {
    let mut after = meta.clone();
    let mut store_changed = false;
    for m in batch {
        match m {
            Mutation::SetActiveKey(id) => after.active_key = *id,
            Mutation::SetRotationTarget(id) => after.rotation_target = *id,
            Mutation::SetLastChange(t) => after.last_change = *t,
            _ => continue,
        }
        store_changed = true;
    }
    let key = after.sealing_key();
    let mut ops: Vec<Op> = batch
        .iter()
        .filter_map(|m| {
            Some(match m {
                Mutation::PutSecret(name, rec) => {
                    Op::Put(Row::new(Table::Secrets, name.as_str()), rec.encode())
                }
                Mutation::DeleteSecret(name) => Op::Delete(Row::new(Table::Secrets, name.as_str())),
                Mutation::PutService(name, rec) => {
                    Op::Put(Row::new(Table::Services, name.as_str()), rec.encode(key))
                }
                Mutation::DeleteService(name) => {
                    Op::Delete(Row::new(Table::Services, name.as_str()))
                }
                Mutation::PutGrant(svc, sec) => {
                    Op::Put(Row::grant(svc, sec), record::encode_grant(key))
                }
                Mutation::DeleteGrant(svc, sec) => Op::Delete(Row::grant(svc, sec)),
                Mutation::PutKeyCheck(id, check) => Op::Put(key_check_row(*id), check.encode()),
                Mutation::DeleteKeyCheck(id) => Op::Delete(key_check_row(*id)),
                Mutation::SetActiveKey(_)
                | Mutation::SetRotationTarget(_)
                | Mutation::SetLastChange(_) => return None,
            })
        })
        .collect();
    if store_changed {
        ops.push(Op::Put(
            meta_row(STORE_FIELD),
            store_record(&after).encode(key),
        ));
    }
    ops
}

/// The rows of a new store holding `meta` and nothing else.
pub(crate) fn initial(meta: &Meta) -> Vec<Op> {
    let mut ops = vec![Op::Put(
        meta_row(FORMAT_VERSION_FIELD),
        FORMAT_VERSION.to_be_bytes().to_vec(),
    )];
    for (id, check) in &meta.key_checks {
        ops.push(Op::Put(key_check_row(*id), check.encode()));
    }
    ops.push(Op::Put(
        meta_row(STORE_FIELD),
        store_record(meta).encode(meta.sealing_key()),
    ));
    ops
}

/// Every row of a store holding `stored`, as this build writes it (a migration's).
pub(crate) fn encode_store(stored: &Stored) -> Vec<(Row, Vec<u8>)> {
    let mut batch: Vec<Mutation> = Vec::new();
    for (name, rec) in &stored.secrets {
        batch.push(Mutation::PutSecret(name.clone(), rec.clone()));
    }
    for (name, rec) in &stored.services {
        batch.push(Mutation::PutService(name.clone(), rec.clone()));
    }
    for (svc, sec) in &stored.grants {
        batch.push(Mutation::PutGrant(svc.clone(), sec.clone()));
    }
    initial(&stored.meta)
        .into_iter()
        .chain(encode(&batch, &stored.meta))
        .filter_map(|op| match op {
            Op::Put(row, value) => Some((row, value)),
            Op::Delete(_) => None,
        })
        .collect()
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

/// Decodes everything a backend holds. Refuses a store whose format version is not
/// [`FORMAT_VERSION`] with [`Error::FormatVersion`].
pub(crate) fn decode_snapshot(snapshot: Snapshot) -> Result<Stored> {
    let format_version = format_of(&snapshot)?;
    if format_version != FORMAT_VERSION {
        return Err(Error::FormatVersion {
            found: format_version,
            supported: FORMAT_VERSION,
        });
    }
    let mut store = None;
    let mut key_checks = BTreeMap::new();
    let mut secrets = Vec::new();
    let mut services = Vec::new();
    let mut grants = Vec::new();
    for (row, value) in snapshot.rows {
        match row.table {
            Table::Meta if row.key == STORE_FIELD => store = Some(StoreRecord::decode(&value)?),
            Table::Meta => {
                if let Some(id) = row.key.strip_prefix(KEY_CHECK_PREFIX) {
                    key_checks.insert(key_id(id)?, KeyCheck::decode(&value)?);
                }
            }
            Table::Secrets => secrets.push((row.key, SecretRecord::decode(&value)?)),
            Table::Services => services.push((row.key, ServiceRecord::decode(&value)?)),
            Table::Grants => grants.push(decode_grant(&row, &value)?),
        }
    }
    let store = store.ok_or(Error::Corrupt {
        what: "the store record is missing",
    })?;
    Ok(Stored {
        meta: Meta {
            format_version,
            admin_uid: store.admin_uid,
            active_key: store.active_key,
            rotation_target: store.rotation_target,
            key_checks,
            last_change: store.last_change,
        },
        secrets,
        services,
        grants,
    })
}

/// Decodes the writes of a commit (the change feed's) back into mutations, the store
/// record's first, so that they date the rest.
pub(crate) fn decode_ops(ops: Vec<Op>) -> Result<Vec<Mutation>> {
    let mut out = Vec::with_capacity(ops.len() + 2);
    let mut store = Vec::new();
    for op in ops {
        let m = match op {
            Op::Put(row, value) => match row.table {
                Table::Secrets => Mutation::PutSecret(row.key, SecretRecord::decode(&value)?),
                Table::Services => Mutation::PutService(row.key, ServiceRecord::decode(&value)?),
                Table::Grants => {
                    let (svc, sec) = decode_grant(&row, &value)?;
                    Mutation::PutGrant(svc, sec)
                }
                Table::Meta if row.key == STORE_FIELD => {
                    let rec = StoreRecord::decode(&value)?;
                    store = vec![
                        Mutation::SetLastChange(rec.last_change),
                        Mutation::SetActiveKey(rec.active_key),
                        Mutation::SetRotationTarget(rec.rotation_target),
                    ];
                    continue;
                }
                Table::Meta => match row.key.strip_prefix(KEY_CHECK_PREFIX) {
                    Some(id) => Mutation::PutKeyCheck(key_id(id)?, KeyCheck::decode(&value)?),
                    None => continue,
                },
            },
            Op::Delete(row) => match row.table {
                Table::Secrets => Mutation::DeleteSecret(row.key),
                Table::Services => Mutation::DeleteService(row.key),
                Table::Grants => {
                    let (svc, sec) = grant_names(&row)?;
                    Mutation::DeleteGrant(svc, sec)
                }
                Table::Meta => match row.key.strip_prefix(KEY_CHECK_PREFIX) {
                    Some(id) => Mutation::DeleteKeyCheck(key_id(id)?),
                    None => continue,
                },
            },
        };
        out.push(m);
    }
    store.extend(out);
    Ok(store)
}

fn grant_names(row: &Row) -> Result<(String, String)> {
    row.grant_names()
        .map(|(svc, sec)| (svc.to_owned(), sec.to_owned()))
        .ok_or(Error::Corrupt {
            what: "malformed grant key",
        })
}

fn decode_grant(row: &Row, value: &[u8]) -> Result<(String, String)> {
    record::decode_grant(value)?;
    grant_names(row)
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
    use crate::crypto::Key;
    use crate::manifest::Manifest;

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

    #[test]
    fn rows_round_trip() {
        let m = meta();
        let svc = ServiceRecord {
            uid: Some(42),
            manifest: Arc::new(Manifest::parse(b"secret a\n").unwrap()),
        };
        let batch = vec![
            Mutation::SetLastChange(1_800_000_000),
            Mutation::PutSecret("a".into(), secret(1)),
            Mutation::PutService("web".into(), svc.clone()),
            Mutation::PutGrant("web".into(), "a".into()),
            Mutation::SetRotationTarget(Some(2)),
        ];
        let mut ops = initial(&m);
        ops.extend(encode(&batch, &m));
        let stored = decode_snapshot(snapshot(ops)).unwrap();
        assert_eq!(stored.meta.rotation_target, Some(2));
        assert_eq!(stored.meta.admin_uid, 1000);
        assert_eq!(stored.meta.last_change, 1_800_000_000);
        assert_eq!(stored.meta.key_checks, m.key_checks);
        assert_eq!(stored.secrets, vec![("a".to_owned(), secret(1))]);
        assert_eq!(stored.services, vec![("web".to_owned(), svc)]);
        assert_eq!(stored.grants, vec![("web".to_owned(), "a".to_owned())]);
        // The feed's view of the same writes: the store record's first, dating the rest.
        let fed = decode_ops(encode(&batch, &m)).unwrap();
        assert!(matches!(
            fed[..],
            [
                Mutation::SetLastChange(1_800_000_000),
                Mutation::SetActiveKey(1),
                Mutation::SetRotationTarget(Some(2)),
                Mutation::PutSecret(..),
                Mutation::PutService(..),
                Mutation::PutGrant(..),
            ]
        ));
        let undo = encode(
            &[
                Mutation::DeleteGrant("web".into(), "a".into()),
                Mutation::DeleteKeyCheck(1),
            ],
            &m,
        );
        assert!(matches!(
            decode_ops(undo).unwrap()[..],
            [Mutation::DeleteGrant(..), Mutation::DeleteKeyCheck(1)]
        ));
    }

    #[test]
    fn refuses_other_format_versions_and_bad_fields() {
        let mut ops = initial(&meta());
        ops.push(Op::Put(
            meta_row(FORMAT_VERSION_FIELD),
            3u32.to_be_bytes().to_vec(),
        ));
        let err = decode_snapshot(snapshot(ops)).unwrap_err();
        assert!(
            matches!(
                err,
                Error::FormatVersion {
                    found: 3,
                    supported: 2
                }
            ),
            "{err:?}"
        );
        let mut ops = initial(&meta());
        ops.push(Op::Put(meta_row(FORMAT_VERSION_FIELD), b"x".to_vec()));
        let err = decode_snapshot(snapshot(ops)).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
        let mut ops = initial(&meta());
        ops.push(Op::Put(Row::grant("web", "a"), b"x".to_vec()));
        assert!(decode_snapshot(snapshot(ops)).is_err());
        let mut ops = initial(&meta());
        ops.push(Op::Delete(meta_row(STORE_FIELD)));
        assert!(decode_snapshot(snapshot(ops)).is_err());
    }
}
