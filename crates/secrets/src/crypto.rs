//! Keys at rest: the keyring, AES-256-GCM sealing of values, HMAC-SHA256 tags on records,
//! key checks.
//!
//! A value is sealed in chunks of [`CHUNK_LEN`] bytes, each its own AES-256-GCM message,
//! so that a read decrypts only the chunks it touches. Each value takes a fresh 96-bit
//! base nonce from the OS RNG; chunk `i` is sealed with the base XOR `i` (in its last four
//! bytes), and its associated data binds the secret's name, incarnation and version, the
//! chunk's index and whether it is the last: a chunk copied to another secret or version,
//! moved to another place, or a value cut short at a chunk boundary, fails to authenticate
//! instead of decrypting to the wrong plaintext. An empty value is one empty chunk.
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
//! | `wrap`   | AES-256-GCM of the fingerprint key (below), in the store record       |
//!
//! Bundles' values are remembered by a keyed fingerprint, never kept: HMAC-SHA256 of the
//! value under a key derived (HKDF-SHA256, info `srv-secrets/fingerprint/v1\0`) from a
//! random 32-byte fingerprint key ([`FingerprintKey`]). That key must outlive key
//! rotation, or no fingerprint made before a rotation would match again, so it is not
//! derived from the cluster key: it is made once, at the first bundle, and stored sealed
//! under the cluster key's `wrap` key ([`SealedFingerprintKey`], bound to the key id), and
//! a rotation seals the same key again under the new cluster key.
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

use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
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

/// Domain separation for the chunks of values; bump the suffix if the AAD layout changes.
const CHUNK_AAD_PREFIX: &[u8] = b"srv-secrets/chunk/v2\0";
/// Domain separation of whole values in store format 1 (read only, to migrate).
const SECRET_AAD_PREFIX_V1: &[u8] = b"srv-secrets/secret/v1\0";
/// Plaintext bytes in each chunk of a value this build seals. A read decrypts the chunks
/// it touches, so a chunk is as small as a read is likely to be (a page: 9pfuse and `cat`
/// read 4 KiB) while its 16-byte tag stays under half a percent of it.
pub(crate) const CHUNK_LEN: u32 = 4096;
/// Domain separation of format 1's key checks (read only, to migrate).
const CHECK_AAD_PREFIX: &[u8] = b"srv-secrets/keycheck/v1\0";
/// The known plaintext of a format-1 key check.
const CHECK_PLAINTEXT: &[u8] = b"srv-secrets key check v1";
/// What a key check of format 2 is the HMAC of (with the key id).
const CHECK_DOMAIN: &[u8] = b"srv-secrets/keycheck/v2\0";
/// Bytes in an HMAC-SHA256 tag (and in each derived key).
pub(crate) const MAC_LEN: usize = 32;
/// Longest AAD: a prefix, the name, NUL, incarnation, version, chunk index, last flag.
const SECRET_AAD_MAX: usize = 32 + MAX_NAME_LEN + 1 + 8 + 8 + 4 + 1;

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

/// One cluster key: its id, and in pages locked in RAM ([`memlock::Locked`]) its bytes
/// (kept to rewrite the key file) and the keys derived from it.
pub(crate) struct Key {
    id: u32,
    material: memlock::Locked<KeyMaterial>,
}

/// What a [`Key`] keeps locked.
struct KeyMaterial {
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
    /// Seals the fingerprint key.
    wrap: Aes256Gcm,
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
        let wrap = derive(&bytes, id, "wrap")?;
        let wrap = Aes256Gcm::new_from_slice(&wrap[..]).map_err(wrong)?;
        let material = KeyMaterial {
            raw,
            cipher,
            wrap,
            record: derive(&bytes, id, "record")?,
            digest: derive(&bytes, id, "digest")?,
            check: derive(&bytes, id, "check")?,
            bytes,
        };
        Ok(Key {
            id,
            material: memlock::Locked::new(material),
        })
    }

    /// The key id.
    pub(crate) fn id(&self) -> u32 {
        self.id
    }

    /// Whether its bytes and derived keys are in pages locked in RAM.
    pub(crate) fn is_locked(&self) -> bool {
        self.material.is_locked()
    }

    /// The key as 64 lowercase hex digits, for the key file only.
    pub(crate) fn hex(&self) -> Zeroizing<String> {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = Zeroizing::new(String::with_capacity(2 * KEY_LEN));
        for b in self.material.bytes.iter() {
            out.push(char::from(DIGITS[usize::from(b >> 4)]));
            out.push(char::from(DIGITS[usize::from(b & 0xf)]));
        }
        out
    }

    /// Seals `value` as the value `id` in chunks of [`CHUNK_LEN`], under a fresh base
    /// nonce. Returns the nonce and the chunks' ciphertexts and tags, in order. The
    /// plaintext is read where it is and never copied: each chunk is encrypted from it into
    /// the output.
    pub(crate) fn seal_value(
        &self,
        id: ValueId<'_>,
        value: &[u8],
    ) -> Result<([u8; NONCE_LEN], Vec<u8>)> {
        let too_large = || Error::TooLarge {
            what: "secret value",
            limit: crate::MAX_VALUE_LEN,
        };
        let length = u64::try_from(value.len()).map_err(|_| too_large())?;
        let total = sealed_len(length, CHUNK_LEN).ok_or_else(too_large)?;
        let base = random_nonce()?;
        let count = chunk_count(length, CHUNK_LEN);
        let mut out = vec![0u8; usize::try_from(total).map_err(|_| too_large())?];
        let chunk = CHUNK_LEN as usize;
        for i in 0..count {
            let from = (i as usize) * chunk;
            let piece = &value[from..value.len().min(from + chunk)];
            let at = (i as usize) * (chunk + TAG_LEN);
            let aad = SecretAad::chunk(id, i, i + 1 == count);
            let buf =
                InOutBuf::new(piece, &mut out[at..at + piece.len()]).map_err(|_| too_large())?;
            let tag = self
                .material
                .cipher
                .encrypt_inout_detached(&Nonce::from(chunk_nonce(&base, i)), aad.as_bytes(), buf)
                .map_err(|_| too_large())?;
            out[at + piece.len()..at + piece.len() + TAG_LEN].copy_from_slice(&tag);
        }
        Ok((base, out))
    }

    /// Decrypts every chunk of a value.
    pub(crate) fn open_value(&self, value: &Value<'_>) -> Result<SecretBytes> {
        let length = usize::try_from(value.length).map_err(|_| Error::Decrypt)?;
        let count = value.check_layout()?;
        let mut out = Zeroizing::new(vec![0u8; length]);
        let chunk = value.chunk as usize;
        for i in 0..count {
            let from = (i as usize) * chunk;
            let to = length.min(from + chunk);
            self.open_chunk(value, i, count, &mut out[from..to])?;
        }
        Ok(SecretBytes(out))
    }

    /// The bytes `[offset, offset + count)` of a value (fewer at its end, none past it),
    /// decrypting only the chunks they lie in: whole chunks straight into the result, the
    /// part of one at either end through a chunk-sized buffer that is wiped after use.
    pub(crate) fn open_value_range(
        &self,
        value: &Value<'_>,
        offset: u64,
        count: u64,
    ) -> Result<SecretBytes> {
        let chunks = value.check_layout()?;
        let end = offset.saturating_add(count).min(value.length);
        if offset >= end {
            return Ok(SecretBytes(Zeroizing::new(Vec::new())));
        }
        let chunk = u64::from(value.chunk);
        let want = usize::try_from(end - offset).map_err(|_| Error::Decrypt)?;
        // Exactly the capacity the result needs: it never reallocates, so leaves no copy.
        let mut out = Zeroizing::new(Vec::with_capacity(want));
        // Only for a chunk the range takes part of: most reads are of whole chunks.
        let mut scratch: Option<Zeroizing<Vec<u8>>> = None;
        for i in offset / chunk..=(end - 1) / chunk {
            let (from, to) = (i * chunk, ((i + 1) * chunk).min(value.length));
            let len = (to - from) as usize;
            if offset <= from && to <= end {
                let at = out.len();
                out.resize(at + len, 0);
                self.open_chunk(value, i, chunks, &mut out[at..])?;
            } else {
                let scratch =
                    scratch.get_or_insert_with(|| Zeroizing::new(vec![0u8; value.chunk as usize]));
                self.open_chunk(value, i, chunks, &mut scratch[..len])?;
                let lo = (offset.max(from) - from) as usize;
                let hi = (end.min(to) - from) as usize;
                out.extend_from_slice(&scratch[lo..hi]);
            }
        }
        Ok(SecretBytes(out))
    }

    /// Decrypts chunk `i` of `count` of a value into `out`, which is as long as its
    /// plaintext.
    fn open_chunk(&self, value: &Value<'_>, i: u64, count: u64, out: &mut [u8]) -> Result<()> {
        let at = usize::try_from(i * (u64::from(value.chunk) + TAG_LEN as u64))
            .map_err(|_| Error::Decrypt)?;
        let ciphertext = value
            .ciphertext
            .get(at..at + out.len())
            .ok_or(Error::Decrypt)?;
        let tag = value
            .ciphertext
            .get(at + out.len()..at + out.len() + TAG_LEN)
            .and_then(|t| Tag::try_from(t).ok())
            .ok_or(Error::Decrypt)?;
        let aad = SecretAad::chunk(value.id, i, i + 1 == count);
        let buf = InOutBuf::new(ciphertext, out).map_err(|_| Error::Decrypt)?;
        self.material
            .cipher
            .decrypt_inout_detached(
                &Nonce::from(chunk_nonce(&value.nonce, i)),
                aad.as_bytes(),
                buf,
                &tag,
            )
            .map_err(|_| Error::Decrypt)
    }

    /// Decrypts a value of store format 1, sealed with the cluster key itself.
    pub(crate) fn open_v1(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<SecretBytes> {
        open_with(&self.material.raw, nonce, aad, ciphertext)
    }

    /// The tag of a record: HMAC-SHA256 under this key's record key of `parts`, which the
    /// caller makes unambiguous (lengths before variable parts).
    pub(crate) fn record_tag(&self, parts: &[&[u8]]) -> [u8; MAC_LEN] {
        hmac(&self.material.record, parts)
            .finalize()
            .into_bytes()
            .into()
    }

    /// Whether `tag` is the tag of `parts`, compared in constant time.
    pub(crate) fn verify_record_tag(&self, parts: &[&[u8]], tag: &[u8; MAC_LEN]) -> bool {
        hmac(&self.material.record, parts).verify_slice(tag).is_ok()
    }

    /// A record's term in the store's digest: the HMAC of its tag under this key's digest
    /// key. Tags are stored; terms are not, and cannot be made without the key.
    pub(crate) fn digest_term(&self, tag: &[u8; MAC_LEN]) -> [u8; MAC_LEN] {
        hmac(&self.material.digest, &[tag])
            .finalize()
            .into_bytes()
            .into()
    }

    /// Seals the fingerprint key under this key, for the store record.
    pub(crate) fn seal_fingerprint_key(
        &self,
        fingerprint: &FingerprintKey,
    ) -> Result<SealedFingerprintKey> {
        let nonce = random_nonce()?;
        let mut sealed = [0u8; KEY_LEN + TAG_LEN];
        let buf = InOutBuf::new(&fingerprint.seed[..], &mut sealed[..KEY_LEN])
            .map_err(|_| Error::Random)?;
        let tag = self
            .material
            .wrap
            .encrypt_inout_detached(&Nonce::from(nonce), &fingerprint_aad(self.id), buf)
            .map_err(|_| Error::Random)?;
        sealed[KEY_LEN..].copy_from_slice(&tag);
        Ok(SealedFingerprintKey {
            key_id: self.id,
            nonce,
            sealed,
        })
    }

    /// Opens the fingerprint key sealed under this key.
    ///
    /// # Errors
    /// [`Error::Tampered`] if it was not sealed by this key, for this key id.
    pub(crate) fn open_fingerprint_key(
        &self,
        sealed: &SealedFingerprintKey,
    ) -> Result<FingerprintKey> {
        let tampered = || Error::Tampered {
            what: "the fingerprint key does not authenticate under its key",
        };
        if sealed.key_id != self.id {
            return Err(tampered());
        }
        let mut seed = Zeroizing::new([0u8; KEY_LEN]);
        let tag = Tag::try_from(&sealed.sealed[KEY_LEN..]).map_err(|_| tampered())?;
        let buf =
            InOutBuf::new(&sealed.sealed[..KEY_LEN], &mut seed[..]).map_err(|_| tampered())?;
        self.material
            .wrap
            .decrypt_inout_detached(
                &Nonce::from(sealed.nonce),
                &fingerprint_aad(self.id),
                buf,
                &tag,
            )
            .map_err(|_| tampered())?;
        FingerprintKey::from_seed(seed)
    }

    /// Decrypts a value under `self` and seals it again under `to`, for key rotation.
    pub(crate) fn reseal_value(
        &self,
        to: &Key,
        value: &Value<'_>,
    ) -> Result<([u8; NONCE_LEN], Vec<u8>)> {
        let plain = self.open_value(value)?;
        to.seal_value(value.id, plain.expose())
    }

    /// A key check value, stored in the meta table so that `open` recognizes the wrong key
    /// file before touching any record: the HMAC of a fixed text and the key id under this
    /// key's check key.
    pub(crate) fn check(&self) -> Result<KeyCheck> {
        let tag = hmac(
            &self.material.check,
            &[CHECK_DOMAIN, &self.id.to_be_bytes()],
        )
        .finalize();
        Ok(KeyCheck(tag.into_bytes().to_vec()))
    }

    /// Whether `check` was made by this key (and for this key id), compared in constant
    /// time.
    pub(crate) fn verify(&self, check: &KeyCheck) -> bool {
        hmac(
            &self.material.check,
            &[CHECK_DOMAIN, &self.id.to_be_bytes()],
        )
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
        let _ =
            self.material
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

/// Domain separation of the sealed fingerprint key.
const FINGERPRINT_KEY_AAD: &[u8] = b"srv-secrets/fingerprint-key/v1\0";
/// What a fingerprint is the HMAC of, before the value.
const FINGERPRINT_DOMAIN: &[u8] = b"srv-secrets/bundle-value/v1\0";

fn fingerprint_aad(id: u32) -> [u8; FINGERPRINT_KEY_AAD.len() + 4] {
    let mut aad = [0u8; FINGERPRINT_KEY_AAD.len() + 4];
    aad[..FINGERPRINT_KEY_AAD.len()].copy_from_slice(FINGERPRINT_KEY_AAD);
    aad[FINGERPRINT_KEY_AAD.len()..].copy_from_slice(&id.to_be_bytes());
    aad
}

/// The key bundles' values are fingerprinted under: random, made once, kept across key
/// rotations (see the module documentation). Never printed, never stored in the clear.
pub(crate) struct FingerprintKey {
    seed: Zeroizing<[u8; KEY_LEN]>,
    mac: Zeroizing<[u8; MAC_LEN]>,
}

impl fmt::Debug for FingerprintKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FingerprintKey")
    }
}

/// A value's fingerprint: the HMAC-SHA256 of the value under the fingerprint key.
pub(crate) type Fingerprint = [u8; MAC_LEN];

impl FingerprintKey {
    /// A fresh one from the OS RNG.
    pub(crate) fn generate() -> Result<FingerprintKey> {
        let mut seed = Zeroizing::new([0u8; KEY_LEN]);
        fill_random(&mut seed[..])?;
        FingerprintKey::from_seed(seed)
    }

    fn from_seed(seed: Zeroizing<[u8; KEY_LEN]>) -> Result<FingerprintKey> {
        let mut mac = Zeroizing::new([0u8; MAC_LEN]);
        Hkdf::<Sha256>::new(Some(b"srv-secrets"), &seed[..])
            .expand(b"srv-secrets/fingerprint/v1\0", &mut mac[..])
            .map_err(|_| Error::Corrupt {
                what: "a key could not be derived",
            })?;
        Ok(FingerprintKey { seed, mac })
    }

    /// The fingerprint of `value`.
    pub(crate) fn fingerprint(&self, value: &[u8]) -> Fingerprint {
        hmac(&self.mac, &[FINGERPRINT_DOMAIN, value])
            .finalize()
            .into_bytes()
            .into()
    }
}

/// The fingerprint key sealed under cluster key `key_id`: `u32 key_id | nonce | sealed`
/// (the key's 32 bytes and the GCM tag).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SealedFingerprintKey {
    /// The cluster key it is sealed under.
    pub(crate) key_id: u32,
    nonce: [u8; NONCE_LEN],
    sealed: [u8; KEY_LEN + TAG_LEN],
}

impl SealedFingerprintKey {
    /// Bytes in the stored form.
    const LEN: usize = 4 + NONCE_LEN + KEY_LEN + TAG_LEN;

    /// The stored form.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::LEN);
        out.extend_from_slice(&self.key_id.to_be_bytes());
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.sealed);
        out
    }

    /// Parses the stored form (its seal is checked when it is opened).
    pub(crate) fn decode(bytes: &[u8]) -> Result<SealedFingerprintKey> {
        let corrupt = || Error::Corrupt {
            what: "malformed sealed fingerprint key",
        };
        if bytes.len() != Self::LEN {
            return Err(corrupt());
        }
        let (id, rest) = bytes.split_first_chunk::<4>().ok_or_else(corrupt)?;
        let (nonce, sealed) = rest.split_first_chunk::<NONCE_LEN>().ok_or_else(corrupt)?;
        Ok(SealedFingerprintKey {
            key_id: u32::from_be_bytes(*id),
            nonce: *nonce,
            sealed: sealed.try_into().map_err(|_| corrupt())?,
        })
    }
}

/// What a value's chunks are bound to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ValueId<'a> {
    /// The secret's name.
    pub(crate) name: &'a str,
    /// Its incarnation.
    pub(crate) incarnation: u64,
    /// The version this value is.
    pub(crate) version: u64,
}

/// A sealed value, as a record holds it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Value<'a> {
    /// What it is the value of.
    pub(crate) id: ValueId<'a>,
    /// Its base nonce.
    pub(crate) nonce: [u8; NONCE_LEN],
    /// Plaintext bytes per chunk.
    pub(crate) chunk: u32,
    /// Plaintext bytes in all.
    pub(crate) length: u64,
    /// The chunks' ciphertexts and tags.
    pub(crate) ciphertext: &'a [u8],
}

impl Value<'_> {
    /// The number of chunks, once the ciphertext is seen to have the length they make.
    fn check_layout(&self) -> Result<u64> {
        match sealed_len(self.length, self.chunk) {
            Some(n) if n == self.ciphertext.len() as u64 => {
                Ok(chunk_count(self.length, self.chunk))
            }
            _ => Err(Error::Decrypt),
        }
    }
}

/// Chunks of a value of `length` bytes, `chunk` bytes each: at least one (an empty value is
/// an empty chunk). `chunk` is never 0 (decoding refuses it).
pub(crate) fn chunk_count(length: u64, chunk: u32) -> u64 {
    length.div_ceil(u64::from(chunk.max(1))).max(1)
}

/// Bytes the chunks and tags of a value of `length` bytes take; `None` for a chunk length
/// of 0 or an overflow.
pub(crate) fn sealed_len(length: u64, chunk: u32) -> Option<u64> {
    if chunk == 0 {
        return None;
    }
    chunk_count(length, chunk)
        .checked_mul(TAG_LEN as u64)?
        .checked_add(length)
}

/// Chunk `i`'s nonce: the base with `i` XOR-ed into its last four bytes.
fn chunk_nonce(base: &[u8; NONCE_LEN], i: u64) -> [u8; NONCE_LEN] {
    let mut nonce = *base;
    // A value has at most MAX_VALUE_LEN / CHUNK_LEN chunks: far below 2^32.
    for (n, b) in nonce[NONCE_LEN - 4..]
        .iter_mut()
        .zip((i as u32).to_be_bytes())
    {
        *n ^= b;
    }
    nonce
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

/// Associated data for a chunk of a secret's value (or, in format 1, a whole value).
pub(crate) struct SecretAad {
    buf: [u8; SECRET_AAD_MAX],
    len: usize,
}

impl SecretAad {
    /// The AAD of chunk `index` of value `id`, `last` if it is the value's last chunk.
    /// Names are at most [`MAX_NAME_LEN`] bytes (checked before anything is stored); a
    /// longer one is truncated here, which can only make authentication fail, never
    /// succeed wrongly for a valid name.
    pub(crate) fn chunk(id: ValueId<'_>, index: u64, last: bool) -> SecretAad {
        SecretAad::of(&[
            CHUNK_AAD_PREFIX,
            truncated(id.name),
            b"\0",
            &id.incarnation.to_be_bytes(),
            &id.version.to_be_bytes(),
            &(index as u32).to_be_bytes(),
            &[u8::from(last)],
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
    fn a_keys_material_is_locked_in_pages_of_its_own() {
        let k = key(1);
        // Every derived key and the cipher states fit one page.
        assert_eq!(k.material.footprint(), memlock::PAGE, "{:?}", k.material);
        let limit = rustix::process::getrlimit(rustix::process::Resource::Memlock).current;
        if rustix::process::geteuid().is_root() || limit.is_none_or(|l| l >= 1 << 20) {
            assert!(k.is_locked(), "{:?}", memlock::status());
        }
    }

    fn id(name: &str, incarnation: u64, version: u64) -> ValueId<'_> {
        ValueId {
            name,
            incarnation,
            version,
        }
    }

    fn value<'a>(
        id: ValueId<'a>,
        nonce: [u8; NONCE_LEN],
        length: usize,
        ct: &'a [u8],
    ) -> Value<'a> {
        Value {
            id,
            nonce,
            chunk: CHUNK_LEN,
            length: length as u64,
            ciphertext: ct,
        }
    }

    #[test]
    fn the_fingerprint_key_is_sealed_to_one_key_and_survives_a_reseal() {
        let (a, b) = (key(1), key(2));
        let fk = FingerprintKey::generate().unwrap();
        let print = fk.fingerprint(b"value");
        assert_ne!(print, fk.fingerprint(b"value\n"));
        let sealed = a.seal_fingerprint_key(&fk).unwrap();
        let back = SealedFingerprintKey::decode(&sealed.encode()).unwrap();
        assert_eq!(back, sealed);
        let opened = a.open_fingerprint_key(&back).unwrap();
        assert_eq!(opened.fingerprint(b"value"), print);
        // Under another key, or moved to another key id, it does not open.
        assert!(matches!(
            b.open_fingerprint_key(&sealed),
            Err(Error::Tampered { .. })
        ));
        let mut moved = sealed.encode();
        moved[..4].copy_from_slice(&2u32.to_be_bytes());
        let moved = SealedFingerprintKey::decode(&moved).unwrap();
        assert!(b.open_fingerprint_key(&moved).is_err());
        // Sealed again under the next key, it makes the same fingerprints.
        let resealed = b.seal_fingerprint_key(&opened).unwrap();
        assert_eq!(
            b.open_fingerprint_key(&resealed)
                .unwrap()
                .fingerprint(b"value"),
            print
        );
        assert!(SealedFingerprintKey::decode(&[0; 10]).is_err());
        // Another fingerprint key makes other fingerprints.
        assert_ne!(
            FingerprintKey::generate().unwrap().fingerprint(b"value"),
            print
        );
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn seal_open_round_trip_in_chunks() {
        let k = key(1);
        let c = CHUNK_LEN as usize;
        for n in [0, 1, 7, c - 1, c, c + 1, 3 * c, 3 * c + 5] {
            let plain = pattern(n);
            let (nonce, ct) = k.seal_value(id("db", 7, 1), &plain).unwrap();
            let chunks = n.div_ceil(c).max(1);
            assert_eq!(ct.len(), n + chunks * TAG_LEN, "{n}");
            let v = value(id("db", 7, 1), nonce, n, &ct);
            assert_eq!(k.open_value(&v).unwrap().expose(), &plain[..], "{n}");
            // Every range, including ones that cross chunk edges or run past the end.
            for (offset, count) in [
                (0, 1),
                (0, n),
                (1, c),
                (c - 1, 2),
                (c, c),
                (n / 2, n),
                (n, 5),
                (n + 9, 5),
            ] {
                let got = k.open_value_range(&v, offset as u64, count as u64).unwrap();
                let lo = offset.min(n);
                let hi = (offset + count).min(n);
                assert_eq!(got.expose(), &plain[lo..hi], "{n} {offset} {count}");
            }
        }
        let (_, ct) = k.seal_value(id("db", 7, 1), b"hunter2").unwrap();
        assert!(!ct.windows(7).any(|w| w == b"hunter2"));
    }

    #[test]
    fn a_range_decrypts_only_the_chunks_it_touches() {
        let k = key(1);
        let c = CHUNK_LEN as usize;
        let plain = pattern(4 * c);
        let (nonce, mut ct) = k.seal_value(id("db", 7, 1), &plain).unwrap();
        // Damage chunk 3: reads of chunks 0 to 2 still work, a read that touches 3 fails.
        ct[3 * (c + TAG_LEN)] ^= 1;
        let v = value(id("db", 7, 1), nonce, plain.len(), &ct);
        assert_eq!(
            k.open_value_range(&v, 0, 3 * c as u64).unwrap().expose(),
            &plain[..3 * c]
        );
        assert!(matches!(
            k.open_value_range(&v, 3 * c as u64 - 1, 2),
            Err(Error::Decrypt)
        ));
        assert!(matches!(k.open_value(&v), Err(Error::Decrypt)));
    }

    #[test]
    fn chunks_cannot_be_reordered_moved_or_cut_off() {
        let k = key(1);
        let c = CHUNK_LEN as usize;
        let plain = pattern(3 * c);
        let (nonce, ct) = k.seal_value(id("db", 7, 1), &plain).unwrap();
        let stride = c + TAG_LEN;
        // Chunks 0 and 1 swapped.
        let mut swapped = ct.clone();
        swapped[..stride].copy_from_slice(&ct[stride..2 * stride]);
        swapped[stride..2 * stride].copy_from_slice(&ct[..stride]);
        let v = value(id("db", 7, 1), nonce, plain.len(), &swapped);
        assert!(matches!(k.open_value_range(&v, 0, 1), Err(Error::Decrypt)));
        assert!(matches!(k.open_value(&v), Err(Error::Decrypt)));
        // Cut after chunk 1, the length made to match: chunk 1 was not the last.
        let cut = value(id("db", 7, 1), nonce, 2 * c, &ct[..2 * stride]);
        assert!(matches!(k.open_value(&cut), Err(Error::Decrypt)));
        assert!(matches!(
            k.open_value_range(&cut, c as u64, 1),
            Err(Error::Decrypt)
        ));
        // Chunk 0 alone, passed off as a whole one-chunk value.
        let first = value(id("db", 7, 1), nonce, c, &ct[..stride]);
        assert!(matches!(k.open_value(&first), Err(Error::Decrypt)));
        // A length that does not match the chunks.
        let short = value(id("db", 7, 1), nonce, plain.len() - 1, &ct);
        assert!(matches!(k.open_value(&short), Err(Error::Decrypt)));
        // Another secret, version or incarnation; another key.
        for other in [
            id("dc", 7, 1),
            id("db", 7, 2),
            id("db", 8, 1),
            id("db\0", 7, 1),
        ] {
            let v = value(other, nonce, plain.len(), &ct);
            assert!(
                matches!(k.open_value_range(&v, 0, 1), Err(Error::Decrypt)),
                "{other:?}"
            );
        }
        let v = value(id("db", 7, 1), nonce, plain.len(), &ct);
        assert!(matches!(key(1).open_value(&v), Err(Error::Decrypt)));
        assert_eq!(k.open_value(&v).unwrap().expose(), &plain[..]);
    }

    #[test]
    fn nonces_are_fresh() {
        let k = key(1);
        let (n1, c1) = k.seal_value(id("a", 7, 1), b"same").unwrap();
        let (n2, c2) = k.seal_value(id("a", 7, 1), b"same").unwrap();
        assert_ne!(n1, n2);
        assert_ne!(c1, c2);
        assert_ne!(chunk_nonce(&n1, 1), n1);
    }

    #[test]
    fn reseal_moves_to_the_new_key() {
        let (old, new) = (key(1), key(2));
        let plain = pattern(2 * CHUNK_LEN as usize + 3);
        let (nonce, ct) = old.seal_value(id("a", 7, 3), &plain).unwrap();
        let v = value(id("a", 7, 3), nonce, plain.len(), &ct);
        let (nonce2, ct2) = old.reseal_value(&new, &v).unwrap();
        let v2 = value(id("a", 7, 3), nonce2, plain.len(), &ct2);
        assert_eq!(new.open_value(&v2).unwrap().expose(), &plain[..]);
        assert!(old.open_value(&v2).is_err());
    }

    #[test]
    fn key_checks() {
        let (a, b) = (key(1), key(1));
        let check = a.check().unwrap();
        assert!(a.verify(&check));
        assert!(!b.verify(&check));
        // A check is bound to its key id as well.
        let a2 = Key::from_bytes(2, a.material.bytes.clone()).unwrap();
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
        let (nonce, ct) = k.seal_value(id("a", 7, 1), b"value").unwrap();
        // A value of format 2 is not sealed with the cluster key itself.
        let aad = SecretAad::chunk(id("a", 7, 1), 0, true);
        assert!(k.open_v1(&nonce, aad.as_bytes(), &ct).is_err());
        let tag = k.record_tag(&[b"row"]);
        assert!(k.verify_record_tag(&[b"row"], &tag));
        assert!(!k.verify_record_tag(&[b"rox"], &tag));
        assert!(!key(1).verify_record_tag(&[b"row"], &tag));
        assert_ne!(k.digest_term(&tag), tag);
        let same_bytes_other_id = Key::from_bytes(2, k.material.bytes.clone()).unwrap();
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
        let aad = SecretAad::chunk(id("ab", 3, 0x0102), 5, true);
        assert_eq!(
            aad.as_bytes(),
            b"srv-secrets/chunk/v2\0ab\0\0\0\0\0\0\0\0\x03\0\0\0\0\0\0\x01\x02\0\0\0\x05\x01"
                .as_slice()
        );
        let v1 = SecretAad::v1("ab", 0x0102);
        assert_eq!(
            v1.as_bytes(),
            b"srv-secrets/secret/v1\0ab\0\0\0\0\0\0\0\x01\x02".as_slice()
        );
        let long = "x".repeat(MAX_NAME_LEN + 1);
        assert!(SecretAad::chunk(id(&long, 1, 1), 1, false).as_bytes().len() <= SECRET_AAD_MAX);
        assert!(SecretAad::v1(&long, 1).as_bytes().len() <= SECRET_AAD_MAX);
    }
}
