//! Records as the store holds them, and their stored (byte) form.
//!
//! The byte forms are backend-neutral (redb today, etcd later) and start with a record
//! format byte so that a later layout can be told apart. All integers are big-endian.
//!
//! ```text
//! secret:  u8 1 | u64 version | u64 incarnation | u64 mtime | u32 key_id | [12] nonce | ciphertext+tag
//! service: u8 1 | u8 has_uid | u32 uid | manifest text (UTF-8)
//! ```

use std::sync::Arc;

use crate::crypto::{NONCE_LEN, SecretAad, TAG_LEN};
use crate::error::{Error, Result};
use crate::manifest::Manifest;

const SECRET_FORMAT: u8 = 1;
const SERVICE_FORMAT: u8 = 1;
const SECRET_HEADER_LEN: usize = 1 + 8 + 8 + 8 + 4 + NONCE_LEN;
const SERVICE_HEADER_LEN: usize = 1 + 1 + 4;

/// One stored secret: the current version, encrypted.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct SecretRecord {
    /// 1 on the first `set`, +1 on each later one; unchanged by key rotation.
    pub(crate) version: u64,
    /// Random, fixed when the name is first set (or set again after a delete). With the
    /// version it identifies one value for ever, even if a deleted name is set again and
    /// its version restarts at 1.
    pub(crate) incarnation: u64,
    /// Unix seconds of the last `set`.
    pub(crate) mtime: u64,
    /// The key the ciphertext is under.
    pub(crate) key_id: u32,
    /// The nonce it was sealed with.
    pub(crate) nonce: [u8; NONCE_LEN],
    /// Ciphertext and tag; shared so that opening a file does not copy it.
    pub(crate) ciphertext: Arc<[u8]>,
}

impl std::fmt::Debug for SecretRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretRecord")
            .field("version", &self.version)
            .field("key_id", &self.key_id)
            .field("length", &self.length())
            .finish_non_exhaustive()
    }
}

impl SecretRecord {
    /// Length of the plaintext.
    pub(crate) fn length(&self) -> u64 {
        // Decoding guarantees at least a tag; usize always fits in u64 on supported targets.
        u64::try_from(self.ciphertext.len().saturating_sub(TAG_LEN)).unwrap_or(u64::MAX)
    }

    /// The associated data this record was sealed with.
    pub(crate) fn aad(&self, name: &str) -> SecretAad {
        SecretAad::new(name, self.version)
    }

    /// Stored form.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SECRET_HEADER_LEN + self.ciphertext.len());
        out.push(SECRET_FORMAT);
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.incarnation.to_be_bytes());
        out.extend_from_slice(&self.mtime.to_be_bytes());
        out.extend_from_slice(&self.key_id.to_be_bytes());
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.ciphertext);
        out
    }

    /// Parses the stored form.
    pub(crate) fn decode(bytes: &[u8]) -> Result<SecretRecord> {
        let corrupt = || Error::Corrupt {
            what: "malformed secret record",
        };
        let mut r = Reader(bytes);
        if r.array::<1>().ok_or_else(corrupt)? != [SECRET_FORMAT] {
            return Err(Error::Corrupt {
                what: "secret record in an unknown format",
            });
        }
        let version = u64::from_be_bytes(r.array().ok_or_else(corrupt)?);
        let incarnation = u64::from_be_bytes(r.array().ok_or_else(corrupt)?);
        let mtime = u64::from_be_bytes(r.array().ok_or_else(corrupt)?);
        let key_id = u32::from_be_bytes(r.array().ok_or_else(corrupt)?);
        let nonce = r.array().ok_or_else(corrupt)?;
        if r.0.len() < TAG_LEN || version == 0 {
            return Err(corrupt());
        }
        Ok(SecretRecord {
            version,
            incarnation,
            mtime,
            key_id,
            nonce,
            ciphertext: Arc::from(r.0),
        })
    }
}

/// One stored service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ServiceRecord {
    /// The unix uid that authenticates as this service, if mapped.
    pub(crate) uid: Option<u32>,
    /// The manifest (empty until one is set); shared with readers.
    pub(crate) manifest: Arc<Manifest>,
}

impl ServiceRecord {
    /// Stored form.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let text = self.manifest.text().as_bytes();
        let mut out = Vec::with_capacity(SERVICE_HEADER_LEN + text.len());
        out.push(SERVICE_FORMAT);
        out.push(u8::from(self.uid.is_some()));
        out.extend_from_slice(&self.uid.unwrap_or(0).to_be_bytes());
        out.extend_from_slice(text);
        out
    }

    /// Parses the stored form (and the manifest in it).
    pub(crate) fn decode(bytes: &[u8]) -> Result<ServiceRecord> {
        let corrupt = || Error::Corrupt {
            what: "malformed service record",
        };
        let mut r = Reader(bytes);
        if r.array::<1>().ok_or_else(corrupt)? != [SERVICE_FORMAT] {
            return Err(Error::Corrupt {
                what: "service record in an unknown format",
            });
        }
        let [has_uid] = r.array().ok_or_else(corrupt)?;
        let uid = u32::from_be_bytes(r.array().ok_or_else(corrupt)?);
        let uid = match has_uid {
            0 => None,
            1 => Some(uid),
            _ => return Err(corrupt()),
        };
        let manifest = Manifest::parse(r.0).map_err(|_| Error::Corrupt {
            what: "stored manifest does not parse",
        })?;
        Ok(ServiceRecord {
            uid,
            manifest: Arc::new(manifest),
        })
    }
}

/// A cursor over a byte slice.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails by panicking")]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn secret_round_trip(
            version in 1u64.., incarnation: u64, mtime: u64, key_id: u32,
            nonce: [u8; NONCE_LEN], ct in proptest::collection::vec(any::<u8>(), TAG_LEN..100)
        ) {
            let rec = SecretRecord { version, incarnation, mtime, key_id, nonce, ciphertext: ct.into() };
            let back = SecretRecord::decode(&rec.encode()).unwrap();
            prop_assert_eq!(back.length(), rec.length());
            prop_assert!(back == rec);
        }

        #[test]
        fn secret_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(rec) = SecretRecord::decode(&bytes) {
                prop_assert_eq!(rec.encode(), bytes);
            }
        }

        #[test]
        fn service_round_trip(uid: Option<u32>, secrets in proptest::collection::vec("[a-z]{1,8}", 0..4)) {
            let mut text = String::new();
            for s in &secrets {
                text.push_str(&format!("# {s}\n"));
            }
            let manifest = Arc::new(Manifest::parse(text.as_bytes()).unwrap());
            let rec = ServiceRecord { uid, manifest };
            prop_assert_eq!(ServiceRecord::decode(&rec.encode()).unwrap(), rec);
        }
    }

    #[test]
    fn refuses_unknown_formats_and_short_records() {
        let rec = SecretRecord {
            version: 1,
            incarnation: 2,
            mtime: 3,
            key_id: 4,
            nonce: [5; NONCE_LEN],
            ciphertext: vec![6; TAG_LEN].into(),
        };
        let mut bytes = rec.encode();
        assert!(SecretRecord::decode(&bytes[..bytes.len() - 1]).is_err());
        bytes[0] = 2;
        assert!(SecretRecord::decode(&bytes).is_err());
        assert!(ServiceRecord::decode(&[1, 2, 0, 0, 0, 0]).is_err());
        assert!(ServiceRecord::decode(&[1, 0, 0, 0, 0]).is_err());
        let debug = format!("{rec:?}");
        assert!(debug.contains("length: 0"), "{debug}");
    }
}
