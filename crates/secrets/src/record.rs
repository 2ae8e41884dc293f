//! Records as the store holds them (store format 2), and their byte form.
//!
//! Every record is an envelope around a header and a payload:
//!
//! ```text
//! u8 2 | u32 key_id | u32 header_len | header (CBOR) | payload
//! ```
//!
//! (integers big-endian). `key_id` is the key the record is under: a secret's values are
//! sealed with it. The header is a serde struct in CBOR: a map of named fields, so that a
//! later build adds a field (with a default, for records written before it) rather than a
//! new layout, and an unknown enum value (a version state a later build defines, say) is an
//! error, never ignored. The payload is raw bytes the header describes: a secret's
//! ciphertexts, one per version, in the order of its versions.
//!
//! | record  | header                                                       | payload      |
//! |---------|--------------------------------------------------------------|--------------|
//! | secret  | `incarnation`, `versions`: [`version`, `state`, `mtime`, `length`, `nonce`] | ciphertexts |
//! | service | `uid` (absent: none), `manifest` (its text)                  | empty        |
//! | grant   | nothing yet                                                  | empty        |
//! | store   | `admin_uid`, `active_key`, `rotation_target`, `last_change`  | empty        |
//!
//! Room to grow: a secret's header holds a list of versions, each with a state (only
//! `current` exists yet, exactly one); metadata (class, owner, tiers), a grant's expiry or
//! a service's flags are fields added to these headers. A field an older build must not
//! ignore (an expiry, a suspension) comes with a new store format, so that older builds
//! refuse the store instead of serving it without the field.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::crypto::{NONCE_LEN, SecretAad, TAG_LEN};
use crate::error::{Error, Result};
use crate::manifest::Manifest;

/// The first byte of every record of store format 2.
const ENVELOPE_FORMAT: u8 = 2;
const ENVELOPE_LEN: usize = 1 + 4 + 4;

/// An envelope, parsed: borrowed from the stored bytes.
struct Envelope<'a> {
    key_id: u32,
    header: &'a [u8],
    payload: &'a [u8],
}

fn envelope(key_id: u32, header: &impl Serialize, payload: &[u8]) -> Vec<u8> {
    let mut head = Vec::new();
    // Serializing a plain struct into a Vec cannot fail but for allocation.
    if ciborium::into_writer(header, &mut head).is_err() {
        head.clear();
    }
    let mut out = Vec::with_capacity(ENVELOPE_LEN + head.len() + payload.len());
    out.push(ENVELOPE_FORMAT);
    out.extend_from_slice(&key_id.to_be_bytes());
    out.extend_from_slice(&u32::try_from(head.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(payload);
    out
}

fn open_envelope<'a>(bytes: &'a [u8], what: &'static str) -> Result<Envelope<'a>> {
    let corrupt = || Error::Corrupt { what };
    let (&format, rest) = bytes.split_first().ok_or_else(corrupt)?;
    if format != ENVELOPE_FORMAT {
        return Err(corrupt());
    }
    let (key_id, rest) = rest.split_first_chunk::<4>().ok_or_else(corrupt)?;
    let (len, rest) = rest.split_first_chunk::<4>().ok_or_else(corrupt)?;
    let len = usize::try_from(u32::from_be_bytes(*len)).map_err(|_| corrupt())?;
    if rest.len() < len {
        return Err(corrupt());
    }
    let (header, payload) = rest.split_at(len);
    Ok(Envelope {
        key_id: u32::from_be_bytes(*key_id),
        header,
        payload,
    })
}

fn header<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &'static str) -> Result<T> {
    ciborium::from_reader(bytes).map_err(|_| Error::Corrupt { what })
}

/// The state of one version of a secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum VersionState {
    /// The version services read.
    Current,
}

#[derive(Serialize, Deserialize)]
struct SecretHeader {
    incarnation: u64,
    versions: Vec<VersionHeader>,
}

#[derive(Serialize, Deserialize)]
struct VersionHeader {
    version: u64,
    state: VersionState,
    mtime: u64,
    /// Plaintext bytes; the version's ciphertext is `length + 16` bytes of the payload.
    length: u64,
    #[serde(with = "serde_bytes")]
    nonce: [u8; NONCE_LEN],
}

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
        SecretAad::new(name, self.incarnation, self.version)
    }

    /// Stored form.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let head = SecretHeader {
            incarnation: self.incarnation,
            versions: vec![VersionHeader {
                version: self.version,
                state: VersionState::Current,
                mtime: self.mtime,
                length: self.length(),
                nonce: self.nonce,
            }],
        };
        envelope(self.key_id, &head, &self.ciphertext)
    }

    /// Parses the stored form.
    pub(crate) fn decode(bytes: &[u8]) -> Result<SecretRecord> {
        const WHAT: &str = "malformed secret record";
        let env = open_envelope(bytes, WHAT)?;
        let head: SecretHeader = header(env.header, WHAT)?;
        let [v] = &head.versions[..] else {
            return Err(Error::Corrupt {
                what: "a secret record without exactly one version",
            });
        };
        let expected = usize::try_from(v.length)
            .ok()
            .and_then(|n| n.checked_add(TAG_LEN));
        if v.state != VersionState::Current || v.version == 0 || expected != Some(env.payload.len())
        {
            return Err(Error::Corrupt { what: WHAT });
        }
        Ok(SecretRecord {
            version: v.version,
            incarnation: head.incarnation,
            mtime: v.mtime,
            key_id: env.key_id,
            nonce: v.nonce,
            ciphertext: Arc::from(env.payload),
        })
    }
}

#[derive(Serialize, Deserialize)]
struct ServiceHeader {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uid: Option<u32>,
    manifest: String,
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
    /// Stored form, under key `key_id`.
    pub(crate) fn encode(&self, key_id: u32) -> Vec<u8> {
        let head = ServiceHeader {
            uid: self.uid,
            manifest: self.manifest.text().to_owned(),
        };
        envelope(key_id, &head, &[])
    }

    /// Parses the stored form (and the manifest in it).
    pub(crate) fn decode(bytes: &[u8]) -> Result<ServiceRecord> {
        const WHAT: &str = "malformed service record";
        let env = open_envelope(bytes, WHAT)?;
        let head: ServiceHeader = header(env.header, WHAT)?;
        if !env.payload.is_empty() {
            return Err(Error::Corrupt { what: WHAT });
        }
        let manifest = Manifest::parse(head.manifest.as_bytes()).map_err(|_| Error::Corrupt {
            what: "stored manifest does not parse",
        })?;
        Ok(ServiceRecord {
            uid: head.uid,
            manifest: Arc::new(manifest),
        })
    }
}

/// A grant's record: nothing but its presence yet (room for an expiry, who granted it).
#[derive(Serialize, Deserialize)]
struct GrantHeader {}

/// A grant's stored form, under key `key_id`.
pub(crate) fn encode_grant(key_id: u32) -> Vec<u8> {
    envelope(key_id, &GrantHeader {}, &[])
}

/// Checks a grant's stored form.
pub(crate) fn decode_grant(bytes: &[u8]) -> Result<()> {
    const WHAT: &str = "malformed grant record";
    let env = open_envelope(bytes, WHAT)?;
    let GrantHeader {} = header(env.header, WHAT)?;
    if !env.payload.is_empty() {
        return Err(Error::Corrupt { what: WHAT });
    }
    Ok(())
}

/// The store record: the store-wide facts that are not key checks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoreRecord {
    /// The unix uid of the admin principal.
    pub(crate) admin_uid: u32,
    /// The key new records are sealed under outside a rotation.
    pub(crate) active_key: u32,
    /// The key a rotation in flight moves records to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) rotation_target: Option<u32>,
    /// Unix seconds of the last commit.
    pub(crate) last_change: u64,
}

impl StoreRecord {
    /// Stored form, under key `key_id`.
    pub(crate) fn encode(&self, key_id: u32) -> Vec<u8> {
        envelope(key_id, self, &[])
    }

    /// Parses the stored form.
    pub(crate) fn decode(bytes: &[u8]) -> Result<StoreRecord> {
        const WHAT: &str = "malformed store record";
        let env = open_envelope(bytes, WHAT)?;
        if !env.payload.is_empty() {
            return Err(Error::Corrupt { what: WHAT });
        }
        header(env.header, WHAT)
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
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = SecretRecord::decode(&bytes);
            let _ = ServiceRecord::decode(&bytes);
            let _ = StoreRecord::decode(&bytes);
            let _ = decode_grant(&bytes);
        }

        #[test]
        fn service_round_trip(uid: Option<u32>, key_id: u32, secrets in proptest::collection::vec("[a-z]{1,8}", 0..4)) {
            let mut text = String::new();
            for s in &secrets {
                text.push_str(&format!("# {s}\n"));
            }
            let manifest = Arc::new(Manifest::parse(text.as_bytes()).unwrap());
            let rec = ServiceRecord { uid, manifest };
            prop_assert_eq!(ServiceRecord::decode(&rec.encode(key_id)).unwrap(), rec);
        }
    }

    #[test]
    fn refuses_other_formats_short_records_and_mismatched_lengths() {
        let rec = SecretRecord {
            version: 1,
            incarnation: 2,
            mtime: 3,
            key_id: 4,
            nonce: [5; NONCE_LEN],
            ciphertext: vec![6; TAG_LEN + 3].into(),
        };
        let mut bytes = rec.encode();
        assert!(SecretRecord::decode(&bytes[..bytes.len() - 1]).is_err());
        bytes.push(0);
        assert!(SecretRecord::decode(&bytes).is_err());
        bytes.pop();
        bytes[0] = 1;
        assert!(SecretRecord::decode(&bytes).is_err());
        // A record of one kind is not another's.
        assert!(ServiceRecord::decode(&rec.encode()).is_err());
        assert!(decode_grant(&encode_grant(1)).is_ok());
        assert!(decode_grant(&rec.encode()).is_err());
        let debug = format!("{rec:?}");
        assert!(debug.contains("length: 3"), "{debug}");
        let store = StoreRecord {
            admin_uid: 1000,
            active_key: 2,
            rotation_target: None,
            last_change: 5,
        };
        assert_eq!(StoreRecord::decode(&store.encode(2)).unwrap(), store);
    }

    #[test]
    fn a_header_is_a_map_of_named_fields() {
        let store = StoreRecord {
            admin_uid: 1000,
            active_key: 2,
            rotation_target: Some(3),
            last_change: 5,
        };
        let bytes = store.encode(2);
        let value: ciborium::Value = ciborium::from_reader(&bytes[ENVELOPE_LEN..]).unwrap();
        let keys: Vec<String> = value
            .as_map()
            .unwrap()
            .iter()
            .map(|(k, _)| k.as_text().unwrap().to_owned())
            .collect();
        assert_eq!(
            keys,
            ["admin_uid", "active_key", "rotation_target", "last_change"]
        );
        // A version state a later build defines is refused, not taken for current.
        let rec = SecretRecord {
            version: 1,
            incarnation: 2,
            mtime: 3,
            key_id: 4,
            nonce: [5; NONCE_LEN],
            ciphertext: vec![6; TAG_LEN].into(),
        };
        let mut bytes = rec.encode();
        let at = bytes
            .windows(b"current".len())
            .position(|w| w == b"current")
            .unwrap();
        bytes[at..at + 7].copy_from_slice(b"pending");
        assert!(SecretRecord::decode(&bytes).is_err());
    }
}
