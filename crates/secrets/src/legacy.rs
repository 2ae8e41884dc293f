//! Store format 1, read only: what the migration at open reads and rewrites.
//!
//! | row                     | value                                               |
//! |-------------------------|-----------------------------------------------------|
//! | `meta/format_version`   | u32, big-endian: 1                                  |
//! | `meta/admin_uid`, `meta/active_key`, `meta/rotation_target` | u32 (the target absent: none) |
//! | `meta/key_check.ID`     | a key check                                         |
//! | `meta/last_change`      | u64 (absent in the oldest stores: 0)                |
//! | `secrets/NAME`          | `u8 1 \| u64 version \| u64 incarnation \| u64 mtime \| u32 key_id \| [12] nonce \| ciphertext+tag`, sealed with [`SecretAad::v1`] |
//! | `services/NAME`         | `u8 1 \| u8 has_uid \| u32 uid \| manifest text`     |
//! | `grants/SERVICE/SECRET` | empty: presence is the grant                        |
//!
//! Unknown meta rows are ignored.

use std::collections::BTreeMap;
use std::sync::Arc;

use tracing::error;

use crate::backend::{Snapshot, Table};
use crate::crypto::{KeyCheck, Keyring, NONCE_LEN, SecretAad, TAG_LEN};
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::record::{Made, SecretRecord, ServiceRecord};
use crate::rows::{Meta, Stored};

/// The format this module reads.
pub(crate) const FORMAT: u32 = 1;

const SECRET_FORMAT: u8 = 1;
const SERVICE_FORMAT: u8 = 1;

/// A secret as format 1 stores it.
pub(crate) struct Secret {
    version: u64,
    incarnation: u64,
    mtime: u64,
    key_id: u32,
    nonce: [u8; NONCE_LEN],
    ciphertext: Vec<u8>,
}

/// A format-1 store, decoded.
pub(crate) struct Legacy {
    /// Its meta fields, as a format-2 meta would hold them (key checks included).
    pub(crate) meta: Meta,
    secrets: Vec<(String, Secret)>,
    services: Vec<(String, ServiceRecord)>,
    grants: Vec<(String, String)>,
}

impl Legacy {
    /// Decodes a format-1 snapshot.
    pub(crate) fn decode(snapshot: Snapshot) -> Result<Legacy> {
        let mut fields = BTreeMap::new();
        let mut secrets = Vec::new();
        let mut services = Vec::new();
        let mut grants = Vec::new();
        for (row, value) in snapshot.rows {
            match row.table {
                Table::Meta => {
                    fields.insert(row.key, value);
                }
                Table::Secrets => secrets.push((row.key, decode_secret(&value)?)),
                Table::Services => services.push((row.key, decode_service(&value)?)),
                Table::Grants => {
                    let (svc, sec) = row.grant_names().ok_or(Error::Corrupt {
                        what: "malformed grant key",
                    })?;
                    if !value.is_empty() {
                        return Err(Error::Corrupt {
                            what: "malformed grant record",
                        });
                    }
                    grants.push((svc.to_owned(), sec.to_owned()));
                }
                Table::Catalog | Table::Bundles | Table::Audit | Table::Opened | Table::Tokens => {
                    return Err(Error::Corrupt {
                        what: "a store of format 1 with a catalog, bundles or an audit",
                    });
                }
            }
        }
        Ok(Legacy {
            meta: decode_meta(&fields)?,
            secrets,
            services,
            grants,
        })
    }

    /// The same store in this build's model: every value decrypted under its key and
    /// sealed again as this build seals values (under the same key, with a fresh nonce),
    /// everything else as it was. `keys` holds every key the store uses (checked).
    ///
    /// # Errors
    /// [`Error::Corrupt`] for a value that does not decrypt (its name is logged): the
    /// store cannot be migrated without losing it.
    pub(crate) fn upgrade(self, keys: &Keyring, format: u32) -> Result<Stored> {
        let mut secrets = Vec::with_capacity(self.secrets.len());
        for (name, old) in self.secrets {
            let key = keys.get(old.key_id).ok_or(Error::Corrupt {
                what: "a secret's key is not loaded",
            })?;
            let aad = SecretAad::v1(&name, old.version);
            let plain = key
                .open_v1(&old.nonce, aad.as_bytes(), &old.ciphertext)
                .inspect_err(|_| {
                    error!(secret = %name, "cannot migrate: the record does not authenticate under its key");
                })
                .map_err(|_| Error::Corrupt {
                    what: "a secret does not decrypt under its key, so the store cannot be \
                           migrated to this format; restore a backup, or delete that secret \
                           (named in the log) with the previous srv-secrets",
                })?;
            let made = Made {
                version: old.version,
                at: old.mtime,
                by: None,
                uid: None,
                reason: None,
            };
            let rec = SecretRecord::seal(&name, old.incarnation, made, key, plain.expose())?;
            secrets.push((name, rec));
        }
        // Format 2's key checks, of the same keys.
        let mut key_checks = BTreeMap::new();
        for &id in self.meta.key_checks.keys() {
            if let Some(key) = keys.get(id) {
                key_checks.insert(id, key.check()?);
            }
        }
        Ok(Stored {
            meta: Meta {
                format_version: format,
                key_checks,
                ..self.meta
            },
            secrets,
            services: self.services,
            grants: self
                .grants
                .into_iter()
                .map(|(svc, sec)| (svc, sec, None))
                .collect(),
            ..Stored::default()
        })
    }
}

fn corrupt(what: &'static str) -> impl Fn() -> Error {
    move || Error::Corrupt { what }
}

fn decode_secret(bytes: &[u8]) -> Result<Secret> {
    let bad = corrupt("malformed secret record");
    let (&format, r) = bytes.split_first().ok_or_else(&bad)?;
    if format != SECRET_FORMAT {
        return Err(Error::Corrupt {
            what: "secret record in an unknown format",
        });
    }
    let (version, r) = r.split_first_chunk::<8>().ok_or_else(&bad)?;
    let (incarnation, r) = r.split_first_chunk::<8>().ok_or_else(&bad)?;
    let (mtime, r) = r.split_first_chunk::<8>().ok_or_else(&bad)?;
    let (key_id, r) = r.split_first_chunk::<4>().ok_or_else(&bad)?;
    let (nonce, r) = r.split_first_chunk::<NONCE_LEN>().ok_or_else(&bad)?;
    let version = u64::from_be_bytes(*version);
    if r.len() < TAG_LEN || version == 0 {
        return Err(bad());
    }
    Ok(Secret {
        version,
        incarnation: u64::from_be_bytes(*incarnation),
        mtime: u64::from_be_bytes(*mtime),
        key_id: u32::from_be_bytes(*key_id),
        nonce: *nonce,
        ciphertext: r.to_vec(),
    })
}

fn decode_service(bytes: &[u8]) -> Result<ServiceRecord> {
    let bad = corrupt("malformed service record");
    let (&format, r) = bytes.split_first().ok_or_else(&bad)?;
    if format != SERVICE_FORMAT {
        return Err(Error::Corrupt {
            what: "service record in an unknown format",
        });
    }
    let (&has_uid, r) = r.split_first().ok_or_else(&bad)?;
    let (uid, text) = r.split_first_chunk::<4>().ok_or_else(&bad)?;
    let uid = match has_uid {
        0 => None,
        1 => Some(u32::from_be_bytes(*uid)),
        _ => return Err(bad()),
    };
    let manifest = Manifest::parse(text).map_err(|_| Error::Corrupt {
        what: "stored manifest does not parse",
    })?;
    Ok(ServiceRecord {
        uid,
        manifest: Arc::new(manifest),
        suspended: None,
    })
}

fn decode_meta(fields: &BTreeMap<String, Vec<u8>>) -> Result<Meta> {
    let bad = corrupt("malformed meta field");
    let u32_field = |name: &str| -> Result<Option<u32>> {
        fields
            .get(name)
            .map(|v| {
                <[u8; 4]>::try_from(v.as_slice())
                    .map(u32::from_be_bytes)
                    .map_err(|_| bad())
            })
            .transpose()
    };
    let required = |name: &str| u32_field(name)?.ok_or_else(corrupt("meta field missing"));
    let format_version = required("format_version")?;
    if format_version != FORMAT {
        return Err(bad());
    }
    let last_change = fields
        .get("last_change")
        .map(|v| {
            <[u8; 8]>::try_from(v.as_slice())
                .map(u64::from_be_bytes)
                .map_err(|_| bad())
        })
        .transpose()?
        .unwrap_or(0);
    let mut key_checks = BTreeMap::new();
    for (name, value) in fields {
        if let Some(id) = name.strip_prefix("key_check.") {
            let id = id.parse().map_err(|_| Error::Corrupt {
                what: "malformed key check id",
            })?;
            key_checks.insert(id, KeyCheck::decode(value)?);
        }
    }
    Ok(Meta {
        format_version,
        admin_uid: required("admin_uid")?,
        active_key: required("active_key")?,
        rotation_target: u32_field("rotation_target")?,
        key_checks,
        last_change,
        fingerprint_key: None,
        frozen: None,
        audit_key: None,
        audit_heads: BTreeMap::new(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails by panicking")]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = decode_secret(&bytes);
            let _ = decode_service(&bytes);
        }
    }

    #[test]
    fn refuses_unknown_formats_and_short_records() {
        let mut bytes = vec![1u8];
        bytes.extend_from_slice(&1u64.to_be_bytes());
        bytes.extend_from_slice(&[0; 8 + 8 + 4 + NONCE_LEN]);
        assert!(decode_secret(&bytes).is_err(), "no tag");
        bytes.extend_from_slice(&[0; TAG_LEN]);
        assert!(decode_secret(&bytes).is_ok());
        bytes[0] = 2;
        assert!(decode_secret(&bytes).is_err());
        assert!(decode_service(&[1, 2, 0, 0, 0, 0]).is_err());
        assert!(decode_service(&[1, 0, 0, 0, 0]).is_err());
        assert_eq!(
            decode_service(&[1, 1, 0, 0, 3, 233]).unwrap().uid,
            Some(1001)
        );
    }
}
