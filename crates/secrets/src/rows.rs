//! The vault's model of the store, and its rows: what [`Mutation`]s become when committed
//! ([`encode`]), and what a backend's rows mean when loaded or fed back ([`decode_snapshot`],
//! [`decode_ops`]).
//!
//! Format 1, field by field:
//!
//! | row                     | value                                               |
//! |-------------------------|-----------------------------------------------------|
//! | `meta/format_version`   | u32, big-endian                                     |
//! | `meta/admin_uid`        | u32                                                 |
//! | `meta/active_key`       | u32                                                 |
//! | `meta/rotation_target`  | u32 (absent: none)                                  |
//! | `meta/key_check.ID`     | [`KeyCheck::encode`]                                |
//! | `meta/last_change`      | u64 (absent in stores written before it was: 0)     |
//! | `secrets/NAME`          | [`SecretRecord::encode`]                            |
//! | `services/NAME`         | [`ServiceRecord::encode`]                           |
//! | `grants/SERVICE/SECRET` | empty: presence is the grant                        |
//!
//! Unknown meta rows are ignored.

use std::collections::BTreeMap;

use crate::backend::{Op, Row, Snapshot, Table};
use crate::crypto::KeyCheck;
use crate::error::{Error, Result};
use crate::record::{SecretRecord, ServiceRecord};

/// The store format this build reads and writes.
pub(crate) const FORMAT_VERSION: u32 = 1;

const FORMAT_VERSION_FIELD: &str = "format_version";
const ADMIN_UID_FIELD: &str = "admin_uid";
const ACTIVE_KEY_FIELD: &str = "active_key";
const ROTATION_TARGET_FIELD: &str = "rotation_target";
const KEY_CHECK_PREFIX: &str = "key_check.";
const LAST_CHANGE_FIELD: &str = "last_change";

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

/// The rows a batch of mutations writes, in order.
pub(crate) fn encode(batch: &[Mutation]) -> Vec<Op> {
    batch
        .iter()
        .map(|m| match m {
            Mutation::PutSecret(name, rec) => {
                Op::Put(Row::new(Table::Secrets, name.as_str()), rec.encode())
            }
            Mutation::DeleteSecret(name) => Op::Delete(Row::new(Table::Secrets, name.as_str())),
            Mutation::PutService(name, rec) => {
                Op::Put(Row::new(Table::Services, name.as_str()), rec.encode())
            }
            Mutation::DeleteService(name) => Op::Delete(Row::new(Table::Services, name.as_str())),
            Mutation::PutGrant(svc, sec) => Op::Put(Row::grant(svc, sec), Vec::new()),
            Mutation::DeleteGrant(svc, sec) => Op::Delete(Row::grant(svc, sec)),
            Mutation::SetActiveKey(id) => {
                Op::Put(meta_row(ACTIVE_KEY_FIELD), id.to_be_bytes().to_vec())
            }
            Mutation::SetRotationTarget(Some(id)) => {
                Op::Put(meta_row(ROTATION_TARGET_FIELD), id.to_be_bytes().to_vec())
            }
            Mutation::SetRotationTarget(None) => Op::Delete(meta_row(ROTATION_TARGET_FIELD)),
            Mutation::PutKeyCheck(id, check) => Op::Put(key_check_row(*id), check.encode()),
            Mutation::DeleteKeyCheck(id) => Op::Delete(key_check_row(*id)),
            Mutation::SetLastChange(t) => {
                Op::Put(meta_row(LAST_CHANGE_FIELD), t.to_be_bytes().to_vec())
            }
        })
        .collect()
}

/// The rows of a new store holding `meta` and nothing else.
pub(crate) fn initial(meta: &Meta) -> Vec<Op> {
    let mut batch = vec![
        Mutation::SetLastChange(meta.last_change),
        Mutation::SetActiveKey(meta.active_key),
        Mutation::SetRotationTarget(meta.rotation_target),
    ];
    for (id, check) in &meta.key_checks {
        batch.push(Mutation::PutKeyCheck(*id, check.clone()));
    }
    let mut ops = vec![
        Op::Put(
            meta_row(FORMAT_VERSION_FIELD),
            meta.format_version.to_be_bytes().to_vec(),
        ),
        Op::Put(
            meta_row(ADMIN_UID_FIELD),
            meta.admin_uid.to_be_bytes().to_vec(),
        ),
    ];
    ops.extend(encode(&batch));
    ops
}

/// Decodes everything a backend holds. Refuses a store whose format version is not
/// [`FORMAT_VERSION`] with [`Error::FormatVersion`].
pub(crate) fn decode_snapshot(snapshot: Snapshot) -> Result<Stored> {
    let mut fields = BTreeMap::new();
    let mut secrets = Vec::new();
    let mut services = Vec::new();
    let mut grants = Vec::new();
    for (row, value) in snapshot.rows {
        match row.table {
            Table::Meta => {
                fields.insert(row.key, value);
            }
            Table::Secrets => secrets.push((row.key, SecretRecord::decode(&value)?)),
            Table::Services => services.push((row.key, ServiceRecord::decode(&value)?)),
            Table::Grants => grants.push(decode_grant(&row, &value)?),
        }
    }
    Ok(Stored {
        meta: decode_meta(&fields)?,
        secrets,
        services,
        grants,
    })
}

/// Decodes the writes of a commit (the change feed's) back into mutations.
pub(crate) fn decode_ops(ops: Vec<Op>) -> Result<Vec<Mutation>> {
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        let m = match op {
            Op::Put(row, value) => match row.table {
                Table::Secrets => Mutation::PutSecret(row.key, SecretRecord::decode(&value)?),
                Table::Services => Mutation::PutService(row.key, ServiceRecord::decode(&value)?),
                Table::Grants => {
                    let (svc, sec) = decode_grant(&row, &value)?;
                    Mutation::PutGrant(svc, sec)
                }
                Table::Meta => match decode_meta_put(&row.key, &value)? {
                    Some(m) => m,
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
                Table::Meta if row.key == ROTATION_TARGET_FIELD => {
                    Mutation::SetRotationTarget(None)
                }
                Table::Meta => match row.key.strip_prefix(KEY_CHECK_PREFIX) {
                    Some(id) => Mutation::DeleteKeyCheck(key_id(id)?),
                    None => continue,
                },
            },
        };
        out.push(m);
    }
    Ok(out)
}

/// A put of a meta row as a mutation; `None` for the rows written once at creation and for
/// unknown ones.
fn decode_meta_put(field: &str, value: &[u8]) -> Result<Option<Mutation>> {
    Ok(Some(match field {
        ACTIVE_KEY_FIELD => Mutation::SetActiveKey(be_u32(value)?),
        ROTATION_TARGET_FIELD => Mutation::SetRotationTarget(Some(be_u32(value)?)),
        LAST_CHANGE_FIELD => Mutation::SetLastChange(be_u64(value)?),
        _ => match field.strip_prefix(KEY_CHECK_PREFIX) {
            Some(id) => Mutation::PutKeyCheck(key_id(id)?, KeyCheck::decode(value)?),
            None => return Ok(None),
        },
    }))
}

fn grant_names(row: &Row) -> Result<(String, String)> {
    row.grant_names()
        .map(|(svc, sec)| (svc.to_owned(), sec.to_owned()))
        .ok_or(Error::Corrupt {
            what: "malformed grant key",
        })
}

fn decode_grant(row: &Row, value: &[u8]) -> Result<(String, String)> {
    if !value.is_empty() {
        return Err(Error::Corrupt {
            what: "malformed grant record",
        });
    }
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
        .map_err(|_| malformed_meta())
}

fn be_u64(v: &[u8]) -> Result<u64> {
    <[u8; 8]>::try_from(v)
        .map(u64::from_be_bytes)
        .map_err(|_| malformed_meta())
}

fn malformed_meta() -> Error {
    Error::Corrupt {
        what: "malformed meta field",
    }
}

fn decode_meta(fields: &BTreeMap<String, Vec<u8>>) -> Result<Meta> {
    let u32_field = |name: &str| fields.get(name).map(|v| be_u32(v)).transpose();
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
        .map(|v| be_u64(v))
        .transpose()?
        .unwrap_or(0);
    let mut key_checks = BTreeMap::new();
    for (name, value) in fields {
        if let Some(id) = name.strip_prefix(KEY_CHECK_PREFIX) {
            key_checks.insert(key_id(id)?, KeyCheck::decode(value)?);
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
            Mutation::PutSecret("a".into(), secret(1)),
            Mutation::PutService("web".into(), svc.clone()),
            Mutation::PutGrant("web".into(), "a".into()),
            Mutation::SetRotationTarget(Some(2)),
        ];
        let mut ops = initial(&m);
        ops.extend(encode(&batch));
        let stored = decode_snapshot(snapshot(ops.clone())).unwrap();
        assert_eq!(stored.meta.rotation_target, Some(2));
        assert_eq!(stored.meta.admin_uid, 1000);
        assert_eq!(stored.secrets, vec![("a".to_owned(), secret(1))]);
        assert_eq!(stored.services, vec![("web".to_owned(), svc)]);
        assert_eq!(stored.grants, vec![("web".to_owned(), "a".to_owned())]);
        // The feed's view of the same writes: the creation's own rows are not mutations.
        let fed = decode_ops(encode(&batch)).unwrap();
        assert_eq!(fed.len(), batch.len());
        let undo = encode(&[
            Mutation::DeleteGrant("web".into(), "a".into()),
            Mutation::SetRotationTarget(None),
            Mutation::DeleteKeyCheck(1),
        ]);
        assert!(matches!(
            decode_ops(undo).unwrap()[..],
            [
                Mutation::DeleteGrant(..),
                Mutation::SetRotationTarget(None),
                Mutation::DeleteKeyCheck(1)
            ]
        ));
    }

    #[test]
    fn refuses_other_format_versions_and_bad_fields() {
        let mut m = meta();
        m.format_version = 2;
        let err = decode_snapshot(snapshot(initial(&m))).unwrap_err();
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
        let mut ops = initial(&meta());
        ops.push(Op::Put(meta_row(FORMAT_VERSION_FIELD), b"x".to_vec()));
        let err = decode_snapshot(snapshot(ops)).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
        let mut ops = initial(&meta());
        ops.push(Op::Put(Row::grant("web", "a"), b"x".to_vec()));
        assert!(decode_snapshot(snapshot(ops)).is_err());
    }

    #[test]
    fn a_store_from_before_last_change_loads_as_0_and_a_bad_one_is_refused() {
        let mut ops = initial(&meta());
        ops.push(Op::Delete(meta_row(LAST_CHANGE_FIELD)));
        assert_eq!(
            decode_snapshot(snapshot(ops.clone()))
                .unwrap()
                .meta
                .last_change,
            0
        );
        ops.push(Op::Put(meta_row(LAST_CHANGE_FIELD), vec![1, 2, 3]));
        let err = decode_snapshot(snapshot(ops)).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    }
}
