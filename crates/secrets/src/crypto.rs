//! Keys at rest: the keyring, AES-256-GCM sealing of values, HMAC-SHA256 tags on records,
//! key checks.
//!
//! Every encryption takes a fresh 96-bit nonce from the OS RNG. The associated data binds a
//! ciphertext to its identity (secret name, incarnation and version), so a blob copied to
//! another name or version fails to authenticate instead of decrypting to the wrong
//! plaintext.
//!
//! The cluster key itself seals nothing in store format 2: each use has its own key,
//! derived from it with HKDF-SHA256 (salt `srv-secrets`, info `srv-secrets/v2/USE\0` and
//! the key id, big-endian), so that no two uses share a key and a key file with the same
//! bytes under another id derives other keys:
//!
//! | use      | what it keys                                                        |
//! |----------|---------------------------------------------------------------------|
//! | `value`  | AES-256-GCM of secret values                                        |
//! | `record` | HMAC-SHA256 tag of every stored record                              |
//! | `digest` | HMAC-SHA256 of each record's tag, XOR-ed into the store's digest    |
//! | `check`  | HMAC-SHA256 key check: the key file holds the right key             |
//!
//! Tags are compared in constant time (`hmac`'s `verify_slice`). Format 1 sealed values and
//! key checks with the cluster key itself; [`Key::open_v1`] and [`Key::verify_v1`] read
//! them, to migrate.
//!
//! Key bytes live in [`Zeroizing`] buffers and in ciphers built with aes-gcm's `zeroize`
//! feature; nothing here is `Debug`-printable beyond a key id, and no function returns key
//! bytes except [`Key::hex`], which exists only so the key file can be written.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::TryRng;
use rand::rngs::SysRng;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::names::MAX_NAME_LEN;

/// Bytes in an AES-256 key.
pub(crate) const KEY_LEN: usize = 32;
/// Bytes in a GCM nonce (96 bits, the size GCM is designed for).
pub(crate) const NONCE_LEN: usize = 12;
/// Bytes in a GCM tag, appended to every ciphertext.
pub(crate) const TAG_LEN: usize = 16;

/// Domain separation for secret values; bump the suffix if the AAD layout ever changes.
const SECRET_AAD_PREFIX: &[u8] = b"srv-secrets/value/v2\0";
/// The same, in store format 1 (read only, to migrate).
const SECRET_AAD_PREFIX_V1: &[u8] = b"srv-secrets/secret/v1\0";
/// Domain separation of format 1's key checks (read only, to migrate).
const CHECK_AAD_PREFIX: &[u8] = b"srv-secrets/keycheck/v1\0";
/// The known plaintext of a format-1 key check.
const CHECK_PLAINTEXT: &[u8] = b"srv-secrets key check v1";
/// What a key check of format 2 is the HMAC of (with the key id).
const CHECK_DOMAIN: &[u8] = b"srv-secrets/keycheck/v2\0";
/// Bytes in an HMAC-SHA256 tag (and in each derived key).
pub(crate) const MAC_LEN: usize = 32;
/// Longest secret AAD: prefix, name, NUL, incarnation, version.
const SECRET_AAD_MAX: usize = SECRET_AAD_PREFIX_V1.len() + MAX_NAME_LEN + 1 + 8 + 8;

/// A secret value in memory: zeroized on drop, never printed.
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// The plaintext. Named so that every place that handles a value in the clear says so.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Length of the plaintext in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the plaintext is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The plaintext's zeroizing buffer, handed on without a copy (to become a 9P reply).
    pub fn into_zeroizing(self) -> Zeroizing<Vec<u8>> {
        self.0
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes({} bytes)", self.0.len())
    }
}

/// One cluster key: its id, its bytes (kept to rewrite the key file), and the keys derived
/// from it.
pub(crate) struct Key {
    id: u32,
    bytes: Zeroizing<[u8; KEY_LEN]>,
    /// Format 1's cipher, keyed with the cluster key itself: read only, to migrate.
    raw: Aes256Gcm,
    /// Seals values.
    cipher: Aes256Gcm,
    /// Tags records.
    record: Zeroizing<[u8; MAC_LEN]>,
    /// Makes the terms of the store's digest.
    digest: Zeroizing<[u8; MAC_LEN]>,
    /// Makes key checks.
    check: Zeroizing<[u8; MAC_LEN]>,
}

type HmacSha256 = Hmac<Sha256>;

/// The key for `use` derived from key `id`'s bytes.
fn derive(bytes: &[u8; KEY_LEN], id: u32, purpose: &str) -> Result<Zeroizing<[u8; MAC_LEN]>> {
    let mut out = Zeroizing::new([0u8; MAC_LEN]);
    let info = [
        b"srv-secrets/v2/".as_slice(),
        purpose.as_bytes(),
        b"\0",
        &id.to_be_bytes(),
    ]
    .concat();
    Hkdf::<Sha256>::new(Some(b"srv-secrets"), bytes)
        .expand(&info, &mut out[..])
        .map_err(|_| Error::Corrupt {
            what: "a key could not be derived",
        })?;
    Ok(out)
}

fn hmac(key: &[u8; MAC_LEN], parts: &[&[u8]]) -> HmacSha256 {
    // HMAC takes a key of any length: this cannot fail.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC-SHA256 accepts 32-byte keys"));
    for part in parts {
        mac.update(part);
    }
    mac
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Key {
    /// A fresh key from the OS RNG.
    pub(crate) fn generate(id: u32) -> Result<Key> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        fill_random(&mut bytes[..])?;
        Key::from_bytes(id, bytes)
    }

    /// A key from bytes read from the key file.
    pub(crate) fn from_bytes(id: u32, bytes: Zeroizing<[u8; KEY_LEN]>) -> Result<Key> {
        // new_from_slice borrows the bytes: no unzeroized copy of the key is made here.
        let wrong = |_| Error::Corrupt {
            what: "key has the wrong length",
        };
        let raw = Aes256Gcm::new_from_slice(&bytes[..]).map_err(wrong)?;
        let value = derive(&bytes, id, "value")?;
        let cipher = Aes256Gcm::new_from_slice(&value[..]).map_err(wrong)?;
        Ok(Key {
            id,
            raw,
            cipher,
            record: derive(&bytes, id, "record")?,
            digest: derive(&bytes, id, "digest")?,
            check: derive(&bytes, id, "check")?,
            bytes,
        })
    }

    /// The key id.
    pub(crate) fn id(&self) -> u32 {
        self.id
    }

    /// The key as 64 lowercase hex digits, for the key file only.
    pub(crate) fn hex(&self) -> Zeroizing<String> {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = Zeroizing::new(String::with_capacity(2 * KEY_LEN));
        for b in self.bytes.iter() {
            out.push(char::from(DIGITS[usize::from(b >> 4)]));
            out.push(char::from(DIGITS[usize::from(b & 0xf)]));
        }
        out
    }

    /// Encrypts `plaintext` under a fresh nonce.
    pub(crate) fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<([u8; NONCE_LEN], Vec<u8>)> {
        let nonce = random_nonce()?;
        // Zeroizing so the plaintext copy is wiped if encryption fails before overwriting it;
        // the capacity covers the tag, so the buffer never reallocates (no stray copies).
        let mut buf = Zeroizing::new(Vec::with_capacity(plaintext.len() + TAG_LEN));
        buf.extend_from_slice(plaintext);
        self.cipher
            .encrypt_in_place(&Nonce::from(nonce), aad, &mut *buf)
            .map_err(|_| Error::TooLarge {
                what: "secret value",
                limit: crate::MAX_VALUE_LEN,
            })?;
        Ok((nonce, std::mem::take(&mut *buf)))
    }

    /// Decrypts and authenticates a value.
    pub(crate) fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<SecretBytes> {
        open_with(&self.cipher, nonce, aad, ciphertext)
    }

    /// Decrypts a value of store format 1, sealed with the cluster key itself.
    pub(crate) fn open_v1(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<SecretBytes> {
        open_with(&self.raw, nonce, aad, ciphertext)
    }

    /// The tag of a record: HMAC-SHA256 under this key's record key of `parts`, which the
    /// caller makes unambiguous (lengths before variable parts).
    pub(crate) fn record_tag(&self, parts: &[&[u8]]) -> [u8; MAC_LEN] {
        hmac(&self.record, parts).finalize().into_bytes().into()
    }

    /// Whether `tag` is the tag of `parts`, compared in constant time.
    pub(crate) fn verify_record_tag(&self, parts: &[&[u8]], tag: &[u8; MAC_LEN]) -> bool {
        hmac(&self.record, parts).verify_slice(tag).is_ok()
    }

    /// A record's term in the store's digest: the HMAC of its tag under this key's digest
    /// key. Tags are stored; terms are not, and cannot be made without the key.
    pub(crate) fn digest_term(&self, tag: &[u8; MAC_LEN]) -> [u8; MAC_LEN] {
        hmac(&self.digest, &[tag]).finalize().into_bytes().into()
    }

    /// Decrypts under `self` and encrypts under `to`, in one buffer, for key rotation.
    pub(crate) fn reseal(
        &self,
        to: &Key,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<([u8; NONCE_LEN], Vec<u8>)> {
        let mut buf = self.open(nonce, aad, ciphertext)?.0;
        let new_nonce = random_nonce()?;
        // The buffer's capacity is the old ciphertext's length, plaintext plus a tag, so
        // appending the new tag does not reallocate and leaves no plaintext copy behind.
        to.cipher
            .encrypt_in_place(&Nonce::from(new_nonce), aad, &mut *buf)
            .map_err(|_| Error::Decrypt)?;
        Ok((new_nonce, std::mem::take(&mut *buf)))
    }

    /// A key check value, stored in the meta table so that `open` recognizes the wrong key
    /// file before touching any record: the HMAC of a fixed text and the key id under this
    /// key's check key.
    pub(crate) fn check(&self) -> Result<KeyCheck> {
        let tag = hmac(&self.check, &[CHECK_DOMAIN, &self.id.to_be_bytes()]).finalize();
        Ok(KeyCheck(tag.into_bytes().to_vec()))
    }

    /// Whether `check` was made by this key (and for this key id), compared in constant
    /// time.
    pub(crate) fn verify(&self, check: &KeyCheck) -> bool {
        hmac(&self.check, &[CHECK_DOMAIN, &self.id.to_be_bytes()])
            .verify_slice(&check.0)
            .is_ok()
    }

    /// Whether `check` is a format-1 key check made by this key: the known plaintext
    /// sealed with the cluster key itself.
    pub(crate) fn verify_v1(&self, check: &KeyCheck) -> bool {
        let Some((nonce, ciphertext)) = check.0.split_first_chunk::<NONCE_LEN>() else {
            return false;
        };
        self.open_v1(nonce, &check_aad(self.id), ciphertext)
            .is_ok_and(|p| p.expose() == CHECK_PLAINTEXT)
    }

    /// A format-1 key check, for the tests of the migration.
    #[cfg(test)]
    pub(crate) fn check_v1(&self) -> KeyCheck {
        let nonce = random_nonce().unwrap_or_default();
        let mut buf = CHECK_PLAINTEXT.to_vec();
        let _ = self
            .raw
            .encrypt_in_place(&Nonce::from(nonce), &check_aad(self.id), &mut buf);
        KeyCheck([nonce.as_slice(), &buf].concat())
    }
}

fn open_with(
    cipher: &Aes256Gcm,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<SecretBytes> {
    let mut buf = Zeroizing::new(Vec::with_capacity(ciphertext.len()));
    buf.extend_from_slice(ciphertext);
    cipher
        .decrypt_in_place(&Nonce::from(*nonce), aad, &mut *buf)
        .map_err(|_| Error::Decrypt)?;
    Ok(SecretBytes(buf))
}

/// A key check value as stored in the meta table: opaque bytes, 1 to 256 of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KeyCheck(Vec<u8>);

impl KeyCheck {
    /// Stored form.
    pub(crate) fn encode(&self) -> Vec<u8> {
        self.0.clone()
    }

    /// Parses the stored form.
    pub(crate) fn decode(bytes: &[u8]) -> Result<KeyCheck> {
        if bytes.is_empty() || bytes.len() > 256 {
            return Err(Error::Corrupt {
                what: "malformed key check",
            });
        }
        Ok(KeyCheck(bytes.to_vec()))
    }
}

/// The keys in use, by id: one normally, two during a rotation.
#[derive(Debug, Default, Clone)]
pub(crate) struct Keyring {
    keys: BTreeMap<u32, Arc<Key>>,
}

impl Keyring {
    /// A keyring holding `keys`.
    pub(crate) fn new(keys: impl IntoIterator<Item = Key>) -> Keyring {
        Keyring {
            keys: keys.into_iter().map(|k| (k.id, Arc::new(k))).collect(),
        }
    }

    /// The key with this id.
    pub(crate) fn get(&self, id: u32) -> Option<&Arc<Key>> {
        self.keys.get(&id)
    }

    /// Adds (or replaces) a key.
    pub(crate) fn insert(&mut self, key: Arc<Key>) {
        self.keys.insert(key.id, key);
    }

    /// Keeps only the keys `keep` accepts.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(u32) -> bool) {
        self.keys.retain(|id, _| keep(*id));
    }

    /// The key ids, ascending.
    pub(crate) fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.keys.keys().copied()
    }
}

/// Associated data for a secret's value: its name, incarnation and version.
pub(crate) struct SecretAad {
    buf: [u8; SECRET_AAD_MAX],
    len: usize,
}

impl SecretAad {
    /// The AAD binding `name` at `version` of its `incarnation`, so that a value sealed
    /// for a deleted secret of the same name and version does not open for its successor.
    /// Names are at most [`MAX_NAME_LEN`] bytes (checked before anything is stored); a
    /// longer one is truncated here, which can only make authentication fail, never
    /// succeed wrongly for a valid name.
    pub(crate) fn new(name: &str, incarnation: u64, version: u64) -> SecretAad {
        SecretAad::of(&[
            SECRET_AAD_PREFIX,
            truncated(name),
            b"\0",
            &incarnation.to_be_bytes(),
            &version.to_be_bytes(),
        ])
    }

    /// The AAD of store format 1: name and version only (read, to migrate).
    pub(crate) fn v1(name: &str, version: u64) -> SecretAad {
        SecretAad::of(&[
            SECRET_AAD_PREFIX_V1,
            truncated(name),
            b"\0",
            &version.to_be_bytes(),
        ])
    }

    fn of(parts: &[&[u8]]) -> SecretAad {
        let mut buf = [0u8; SECRET_AAD_MAX];
        let mut len = 0;
        for part in parts {
            buf[len..len + part.len()].copy_from_slice(part);
            len += part.len();
        }
        SecretAad { buf, len }
    }

    /// The bytes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

fn truncated(name: &str) -> &[u8] {
    &name.as_bytes()[..name.len().min(MAX_NAME_LEN)]
}

fn check_aad(id: u32) -> Vec<u8> {
    [CHECK_AAD_PREFIX, &id.to_be_bytes()].concat()
}

/// Fills `buf` from the OS RNG.
pub(crate) fn fill_random(buf: &mut [u8]) -> Result<()> {
    SysRng.try_fill_bytes(buf).map_err(|_| Error::Random)
}

/// A random u64 from the OS RNG.
pub(crate) fn random_u64() -> Result<u64> {
    SysRng.try_next_u64().map_err(|_| Error::Random)
}

fn random_nonce() -> Result<[u8; NONCE_LEN]> {
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce)?;
    Ok(nonce)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails by panicking")]
mod tests {
    use super::*;

    fn key(id: u32) -> Key {
        Key::generate(id).unwrap()
    }

    #[test]
    fn seal_open_round_trip() {
        let k = key(1);
        let aad = SecretAad::new("db", 7, 1);
        let (nonce, ct) = k.seal(aad.as_bytes(), b"hunter2").unwrap();
        assert_eq!(ct.len(), 7 + TAG_LEN);
        assert!(!ct.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(
            k.open(&nonce, aad.as_bytes(), &ct).unwrap().expose(),
            b"hunter2"
        );
    }

    #[test]
    fn aad_binds_name_and_version() {
        let k = key(1);
        let (nonce, ct) = k.seal(SecretAad::new("db", 7, 1).as_bytes(), b"v").unwrap();
        for (name, incarnation, version) in [
            ("dc", 7, 1),
            ("db", 7, 2),
            ("db\0", 7, 1),
            ("d", 7, 1),
            ("db", 8, 1),
        ] {
            let aad = SecretAad::new(name, incarnation, version);
            assert!(matches!(
                k.open(&nonce, aad.as_bytes(), &ct),
                Err(Error::Decrypt)
            ));
        }
    }

    #[test]
    fn nonces_are_fresh() {
        let k = key(1);
        let aad = SecretAad::new("a", 7, 1);
        let (n1, c1) = k.seal(aad.as_bytes(), b"same").unwrap();
        let (n2, c2) = k.seal(aad.as_bytes(), b"same").unwrap();
        assert_ne!(n1, n2);
        assert_ne!(c1, c2);
    }

    #[test]
    fn wrong_key_fails() {
        let (a, b) = (key(1), key(1));
        let aad = SecretAad::new("a", 7, 1);
        let (nonce, ct) = a.seal(aad.as_bytes(), b"x").unwrap();
        assert!(matches!(
            b.open(&nonce, aad.as_bytes(), &ct),
            Err(Error::Decrypt)
        ));
    }

    #[test]
    fn reseal_moves_to_the_new_key() {
        let (old, new) = (key(1), key(2));
        let aad = SecretAad::new("a", 7, 3);
        let (nonce, ct) = old.seal(aad.as_bytes(), b"value").unwrap();
        let (nonce2, ct2) = old.reseal(&new, &nonce, aad.as_bytes(), &ct).unwrap();
        assert_eq!(
            new.open(&nonce2, aad.as_bytes(), &ct2).unwrap().expose(),
            b"value"
        );
        assert!(old.open(&nonce2, aad.as_bytes(), &ct2).is_err());
    }

    #[test]
    fn key_checks() {
        let (a, b) = (key(1), key(1));
        let check = a.check().unwrap();
        assert!(a.verify(&check));
        assert!(!b.verify(&check));
        // A check is bound to its key id as well.
        let a2 = Key::from_bytes(2, a.bytes.clone()).unwrap();
        assert!(!a2.verify(&check));
        assert_eq!(KeyCheck::decode(&check.encode()).unwrap(), check);
        assert!(KeyCheck::decode(&[]).is_err());
        // Format 1's checks are another kind: neither passes for the other.
        let v1 = a.check_v1();
        assert!(a.verify_v1(&v1) && !b.verify_v1(&v1) && !a2.verify_v1(&v1));
        assert!(!a.verify(&v1) && !a.verify_v1(&check));
    }

    #[test]
    fn derived_keys_are_apart_from_the_cluster_key_and_from_each_other() {
        let k = key(1);
        let aad = SecretAad::new("a", 7, 1);
        let (nonce, ct) = k.seal(aad.as_bytes(), b"value").unwrap();
        // A value of format 2 is not sealed with the cluster key itself.
        assert!(k.open_v1(&nonce, aad.as_bytes(), &ct).is_err());
        let tag = k.record_tag(&[b"row"]);
        assert!(k.verify_record_tag(&[b"row"], &tag));
        assert!(!k.verify_record_tag(&[b"rox"], &tag));
        assert!(!key(1).verify_record_tag(&[b"row"], &tag));
        assert_ne!(k.digest_term(&tag), tag);
        let same_bytes_other_id = Key::from_bytes(2, k.bytes.clone()).unwrap();
        assert!(!same_bytes_other_id.verify_record_tag(&[b"row"], &tag));
    }

    #[test]
    fn debug_prints_no_bytes() {
        let k = key(7);
        let hex = k.hex();
        assert_eq!(hex.len(), 64);
        let dbg = format!("{k:?} {:?}", Keyring::new([key(8)]));
        assert!(dbg.contains('7'));
        assert!(!dbg.contains(hex.as_str()));
        let s = SecretBytes(Zeroizing::new(b"hunter2".to_vec()));
        assert_eq!(format!("{s:?}"), "SecretBytes(7 bytes)");
    }

    #[test]
    fn aad_layout() {
        let aad = SecretAad::new("ab", 3, 0x0102);
        assert_eq!(
            aad.as_bytes(),
            b"srv-secrets/value/v2\0ab\0\0\0\0\0\0\0\0\x03\0\0\0\0\0\0\x01\x02".as_slice()
        );
        let v1 = SecretAad::v1("ab", 0x0102);
        assert_eq!(
            v1.as_bytes(),
            b"srv-secrets/secret/v1\0ab\0\0\0\0\0\0\0\x01\x02".as_slice()
        );
        let long = "x".repeat(MAX_NAME_LEN + 1);
        assert!(SecretAad::new(&long, 1, 1).as_bytes().len() <= SECRET_AAD_MAX);
        assert!(SecretAad::v1(&long, 1).as_bytes().len() <= SECRET_AAD_MAX);
    }
}
