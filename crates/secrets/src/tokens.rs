//! API tokens: what a client without a transport identity (TCP, TLS without a client
//! certificate) proves a principal with.
//!
//! A token reads `srvtok_<ID>_<SECRET>`: `ID` is 16 lowercase hex digits (64 random bits,
//! not secret: it names the token in listings, logs and the audit trail), `SECRET` 256
//! random bits in base64url without padding (43 characters). It is shown once, when made;
//! the store keeps only its keyed hash, HMAC-SHA256 under the key file's `token` key
//! ([`TokenKey`]) of the whole text. A token has 256 bits of entropy, so a fast keyed hash
//! is as good as a slow one against a stolen store (nothing can be guessed), and a slow one
//! would let anyone burn the server's CPU by sending guesses. The hash is compared in
//! constant time (hmac's `verify_slice`), and a token whose ID is unknown is hashed all
//! the same, so that a refusal takes as long whatever was wrong.
//!
//! Who may hold a token, and whether one still holds (not revoked, not expired, its
//! service still there), is the vault's (`vault/tokens.rs`); this module knows the text
//! and the hash.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::crypto::fill_random;
use crate::error::Result;
use crate::keyfile::TokenSeed;

type HmacSha256 = Hmac<Sha256>;

/// How every token starts.
pub const TOKEN_PREFIX: &str = "srvtok_";
/// The length of a token's ID: 16 lowercase hex digits.
pub const TOKEN_ID_LEN: usize = 16;
/// Random bytes in a token's secret part.
const SECRET_BYTES: usize = 32;
/// Characters of the secret part: 32 bytes in base64url, without padding.
const SECRET_CHARS: usize = 43;
/// A token's length: prefix, ID, `_`, secret.
pub const TOKEN_LEN: usize = TOKEN_PREFIX.len() + TOKEN_ID_LEN + 1 + SECRET_CHARS;
/// What the hash of a token is the HMAC of, before the token's text.
const HASH_DOMAIN: &[u8] = b"srv-secrets/token/v1\0";
/// The length of a token's hash.
pub(crate) const HASH_LEN: usize = 32;

/// A token's keyed hash, as the store keeps it.
pub(crate) type TokenHash = [u8; HASH_LEN];

const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The key tokens are hashed under, from the key file's `token` line.
pub(crate) struct TokenKey {
    seed: TokenSeed,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey")
    }
}

impl TokenKey {
    /// The key of `seed`.
    pub(crate) fn from_seed(seed: TokenSeed) -> TokenKey {
        TokenKey { seed }
    }

    /// A fresh key, from the OS's random number generator.
    ///
    /// # Errors
    /// [`crate::Error::Random`].
    pub(crate) fn generate() -> Result<TokenKey> {
        let mut seed = Zeroizing::new([0u8; 32]);
        fill_random(&mut seed[..])?;
        Ok(TokenKey { seed })
    }

    /// The seed, for the key file (and nowhere else).
    pub(crate) fn seed(&self) -> &TokenSeed {
        &self.seed
    }

    fn mac(&self, token: &[u8]) -> HmacSha256 {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.seed[..])
            .unwrap_or_else(|_| unreachable!("HMAC-SHA256 accepts 32-byte keys"));
        mac.update(HASH_DOMAIN);
        mac.update(token);
        mac
    }

    /// The keyed hash of `token`'s text.
    pub(crate) fn hash(&self, token: &[u8]) -> TokenHash {
        self.mac(token).finalize().into_bytes().into()
    }

    /// Whether `token`'s text hashes to `stored`, compared in constant time.
    pub(crate) fn verify(&self, token: &[u8], stored: &TokenHash) -> bool {
        self.mac(token).verify_slice(stored).is_ok()
    }
}

/// A token's text, made now and shown once: kept in a zeroizing buffer, never printed
/// by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct NewToken(Zeroizing<String>);

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NewToken({}, secret hidden)", self.id())
    }
}

impl NewToken {
    /// The token's text, to be shown to its maker once. Named so that every place that
    /// looks at it says so.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The token's ID (not secret).
    pub fn id(&self) -> &str {
        &self.0[TOKEN_PREFIX.len()..TOKEN_PREFIX.len() + TOKEN_ID_LEN]
    }
}

/// Whether `id` is a token's ID as [`NewToken::id`] gives it: 16 lowercase hex digits.
pub fn is_valid_token_id(id: &str) -> bool {
    id.len() == TOKEN_ID_LEN && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The ID of what looks like a token: the prefix, a valid ID, `_`, and 43 characters of
/// base64url. `None` for anything else (no part of which is ever shown).
pub(crate) fn id_of(token: &[u8]) -> Option<&str> {
    if token.len() != TOKEN_LEN {
        return None;
    }
    let rest = token.strip_prefix(TOKEN_PREFIX.as_bytes())?;
    let (id, rest) = rest.split_at(TOKEN_ID_LEN);
    let secret = rest.strip_prefix(b"_")?;
    if !secret.iter().all(|b| BASE64URL.contains(b)) {
        return None;
    }
    let id = std::str::from_utf8(id).ok()?;
    is_valid_token_id(id).then_some(id)
}

/// A new token with the ID `id`, and its hash under `key`.
///
/// # Errors
/// [`crate::Error::Random`].
pub(crate) fn generate(key: &TokenKey, id: &str) -> Result<(NewToken, TokenHash)> {
    let mut secret = Zeroizing::new([0u8; SECRET_BYTES]);
    fill_random(&mut secret[..])?;
    let mut text = Zeroizing::new(String::with_capacity(TOKEN_LEN));
    text.push_str(TOKEN_PREFIX);
    text.push_str(id);
    text.push('_');
    base64url(&secret[..], &mut text);
    let hash = key.hash(text.as_bytes());
    Ok((NewToken(text), hash))
}

/// A new token ID: 64 random bits in hex.
///
/// # Errors
/// [`crate::Error::Random`].
pub(crate) fn new_id() -> Result<String> {
    let mut bytes = [0u8; TOKEN_ID_LEN / 2];
    fill_random(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Appends `bytes` in base64url without padding. `out` has the room: it never grows (and
/// so never leaves a copy behind).
fn base64url(bytes: &[u8], out: &mut String) {
    let digit = |n: u32| char::from(BASE64URL[(n & 63) as usize]);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        out.push(digit(n >> 18));
        out.push(digit(n >> 12));
        if chunk.len() > 1 {
            out.push(digit(n >> 6));
        }
        if chunk.len() > 2 {
            out.push(digit(n));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails by panicking")]
mod tests {
    use super::*;

    fn key(b: u8) -> TokenKey {
        TokenKey::from_seed(Zeroizing::new([b; 32]))
    }

    #[test]
    fn a_token_reads_prefix_id_and_256_random_bits() {
        let k = key(1);
        let id = new_id().unwrap();
        assert!(is_valid_token_id(&id), "{id}");
        let (token, hash) = generate(&k, &id).unwrap();
        let text = token.expose();
        assert_eq!(text.len(), TOKEN_LEN);
        assert!(text.starts_with(&format!("srvtok_{id}_")), "{text}");
        assert_eq!(token.id(), id);
        assert_eq!(id_of(text.as_bytes()), Some(id.as_str()));
        assert!(k.verify(text.as_bytes(), &hash));
        // Another token of the same ID is another secret.
        let (again, _) = generate(&k, &id).unwrap();
        assert_ne!(again.expose(), text);
        // Debug shows the ID, never the secret.
        let shown = format!("{token:?}");
        assert!(
            shown.contains(&id) && !shown.contains(&text[24..]),
            "{shown}"
        );
    }

    #[test]
    fn the_hash_is_keyed_and_checks_every_byte() {
        let (token, hash) = generate(&key(1), "0123456789abcdef").unwrap();
        let text = token.expose().as_bytes();
        assert_eq!(hash, key(1).hash(text));
        // Under another key, the same token does not verify: a stolen store and no key
        // file is no oracle.
        assert!(!key(2).verify(text, &hash));
        assert_ne!(key(2).hash(text), hash);
        for i in 0..text.len() {
            let mut changed = text.to_vec();
            changed[i] ^= 1;
            assert!(!key(1).verify(&changed, &hash), "byte {i}");
        }
        assert!(!key(1).verify(&text[..text.len() - 1], &hash));
    }

    #[test]
    fn base64url_matches_the_rfc_4648_test_vectors() {
        for (bytes, want) in [
            (&b""[..], ""),
            (b"f", "Zg"),
            (b"fo", "Zm8"),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg"),
            (b"fooba", "Zm9vYmE"),
            (b"foobar", "Zm9vYmFy"),
            (&[0xfb, 0xff], "-_8"),
        ] {
            let mut out = String::new();
            base64url(bytes, &mut out);
            assert_eq!(out, want);
        }
        let mut out = String::with_capacity(SECRET_CHARS);
        base64url(&[0xff; SECRET_BYTES], &mut out);
        assert_eq!(out.len(), SECRET_CHARS);
    }

    #[test]
    fn only_a_token_shaped_text_has_an_id() {
        let good = format!("srvtok_0123456789abcdef_{}", "A".repeat(43));
        assert_eq!(id_of(good.as_bytes()), Some("0123456789abcdef"));
        let bad = [
            String::new(),
            good[..good.len() - 1].to_string(),
            format!("{good}A"),
            good.replace("srvtok_", "srvtok-"),
            good.replace("0123456789abcdef", "0123456789ABCDEF"),
            good.replace("0123456789abcdef", "0123456789abcdeg"),
            good.replace("ef_A", "efAA"),
            format!("srvtok_0123456789abcdef_{}=", "A".repeat(42)),
            format!("srvtok_0123456789abcdef_{}\n", "A".repeat(42)),
            format!("srvtok_0123456789abcdef_{}é", "A".repeat(41)),
        ];
        for text in bad {
            assert_eq!(id_of(text.as_bytes()), None, "{text:?}");
        }
        assert!(!is_valid_token_id("0123456789abcde"));
        assert!(!is_valid_token_id("../../etc/passwd"));
    }
}
