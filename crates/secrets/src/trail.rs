//! The audit trail's keys and rows: the signing key (from the key file's `audit` line),
//! the rows records and opens are stored in.
//!
//! Records are signed with Ed25519 (`audit` crate) and need no tag of the cluster key:
//! a key rotation re-tags none of them, however many there are. The `opened` rows (the
//! highest version of each secret each service has opened) are an index of the opens'
//! records, kept so that nobody has to read the trail to ask: they carry an HMAC-SHA256
//! tag under a key derived from the audit key's seed, so they too outlive key rotations.
//! They are not in the store's digest: put back or removed, one says that a service
//! opened an older version than it did, or none, which makes a rotation wait longer for
//! it, never shorter; forging a newer one takes the key.

use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::backend::{Row, Table};
use crate::crypto::fill_random;
use crate::error::{Error, Result};
use crate::keyfile::AuditSeed;

type HmacSha256 = Hmac<Sha256>;

/// What an `opened` row's tag is the HMAC of, before the row's key and the version.
const OPENED_DOMAIN: &[u8] = b"srv-secrets/opened/v1\0";
/// The first byte of an `opened` row.
const OPENED_FORMAT: u8 = 1;
/// The length of an `opened` row: format, version, tag.
const OPENED_LEN: usize = 1 + 8 + 32;

/// The audit trail's keys, made from the seed in the key file; all but the public key in
/// pages locked in RAM ([`memlock::Locked`]).
pub(crate) struct AuditKeys {
    secret: memlock::Locked<AuditSecret>,
    public: audit::PublicKey,
}

/// What [`AuditKeys`] keep locked.
struct AuditSecret {
    seed: AuditSeed,
    signing: audit::SigningKey,
    opened: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for AuditKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuditKeys(public {})", self.public)
    }
}

impl AuditKeys {
    /// The keys of `seed`.
    ///
    /// # Errors
    /// None in practice: HKDF-SHA256 gives 32 bytes of any key.
    pub(crate) fn from_seed(seed: AuditSeed) -> Result<AuditKeys> {
        let signing = audit::SigningKey::from_seed(&seed);
        let public = signing.public();
        let mut opened = Zeroizing::new([0u8; 32]);
        Hkdf::<Sha256>::new(Some(b"srv-secrets"), &seed[..])
            .expand(b"srv-secrets/audit/opened/v1\0", &mut opened[..])
            .map_err(|_| Error::Corrupt {
                what: "a key could not be derived",
            })?;
        Ok(AuditKeys {
            secret: memlock::Locked::new(AuditSecret {
                seed,
                signing,
                opened,
            }),
            public,
        })
    }

    /// Fresh keys, from the OS's random number generator.
    ///
    /// # Errors
    /// [`Error::Random`].
    pub(crate) fn generate() -> Result<AuditKeys> {
        let mut seed = Zeroizing::new([0u8; 32]);
        fill_random(&mut seed[..])?;
        AuditKeys::from_seed(seed)
    }

    /// The seed, for the key file (and nowhere else).
    pub(crate) fn seed(&self) -> &AuditSeed {
        &self.secret.seed
    }

    /// The public key.
    pub(crate) fn public(&self) -> audit::PublicKey {
        self.public
    }

    /// The signature of `message`.
    pub(crate) fn sign(&self, message: &[u8]) -> audit::Signature {
        self.secret.signing.sign(message)
    }

    fn opened_mac(&self, key: &str, version: u64) -> HmacSha256 {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.secret.opened[..])
            .unwrap_or_else(|_| unreachable!("HMAC-SHA256 accepts 32-byte keys"));
        mac.update(OPENED_DOMAIN);
        mac.update(&u32::try_from(key.len()).unwrap_or(u32::MAX).to_be_bytes());
        mac.update(key.as_bytes());
        mac.update(&version.to_be_bytes());
        mac
    }

    /// The stored form of the `opened` row `key`: `u8 1 | u64 version | tag`.
    pub(crate) fn encode_opened(&self, key: &str, version: u64) -> Vec<u8> {
        let tag: [u8; 32] = self.opened_mac(key, version).finalize().into_bytes().into();
        let mut out = Vec::with_capacity(OPENED_LEN);
        out.push(OPENED_FORMAT);
        out.extend_from_slice(&version.to_be_bytes());
        out.extend_from_slice(&tag);
        out
    }

    /// The version an `opened` row at `key` holds, once its tag is checked.
    ///
    /// # Errors
    /// [`Error::Tampered`] for a row that does not authenticate.
    pub(crate) fn decode_opened(&self, key: &str, bytes: &[u8]) -> Result<u64> {
        let tampered = || {
            tracing::error!(row = %key, "an opened row does not authenticate: refused");
            Error::Tampered {
                what: "a record of the opens does not authenticate",
            }
        };
        if bytes.len() != OPENED_LEN || bytes[0] != OPENED_FORMAT {
            return Err(tampered());
        }
        let mut version = [0u8; 8];
        version.copy_from_slice(&bytes[1..9]);
        let version = u64::from_be_bytes(version);
        self.opened_mac(key, version)
            .verify_slice(&bytes[9..])
            .map_err(|_| tampered())?;
        Ok(version)
    }
}

/// The row of record `seq` of `chain`.
pub(crate) fn audit_row(chain: &str, seq: u64) -> Row {
    Row::new(Table::Audit, format!("{chain}/{seq:020}"))
}

/// The row of the highest version of `secret` that `service` opened.
pub(crate) fn opened_row(secret: &str, service: &str) -> Row {
    Row::new(Table::Opened, format!("{secret}/{service}"))
}

/// The (secret, service) of an `opened` row's key.
pub(crate) fn opened_names(key: &str) -> Option<(&str, &str)> {
    key.split_once('/')
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails by panicking")]
mod tests {
    use super::*;

    #[test]
    fn opened_rows_are_tagged_to_their_key_and_version() {
        let keys = AuditKeys::generate().unwrap();
        let bytes = keys.encode_opened("db/web", 7);
        assert_eq!(keys.decode_opened("db/web", &bytes).unwrap(), 7);
        assert!(keys.decode_opened("db/api", &bytes).is_err());
        let mut newer = bytes.clone();
        newer[8] = 8;
        assert!(keys.decode_opened("db/web", &newer).is_err());
        let other = AuditKeys::generate().unwrap();
        assert!(other.decode_opened("db/web", &bytes).is_err());
        // The same seed, the same keys.
        let again = AuditKeys::from_seed(keys.seed().clone()).unwrap();
        assert_eq!(again.public(), keys.public());
        assert_eq!(again.decode_opened("db/web", &bytes).unwrap(), 7);
        assert_eq!(audit_row("changes", 42).key, "changes/00000000000000000042");
    }
}
