//! The signing key (kept beside the cluster key, never exported) and its public key
//! (recorded in the store, printed by `deploy audit head`, enough to verify a log).

use std::fmt;

use ed25519_dalek::{Signer as _, Verifier as _};
use zeroize::Zeroizing;

use crate::record::{Signature, hex, parse_hex};

/// Bytes of a signing key's seed.
pub const SEED_LEN: usize = 32;
/// Bytes of a public key.
pub const PUBLIC_KEY_LEN: usize = 32;

/// An Ed25519 signing key. Its bytes are wiped on drop, and nothing returns them: it is
/// made from a seed that the caller keeps (in the key file) and zeroizes.
pub struct SigningKey(ed25519_dalek::SigningKey);

impl SigningKey {
    /// The key of `seed` (32 random bytes).
    pub fn from_seed(seed: &Zeroizing<[u8; SEED_LEN]>) -> SigningKey {
        SigningKey(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    /// Its public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    /// The signature of `message`.
    pub fn sign(&self, message: &[u8]) -> Signature {
        self.0.sign(message).to_bytes()
    }
}

/// The key bytes are not shown.
impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey(public {})", self.public())
    }
}

/// An Ed25519 public key: what checks a record's signature.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; PUBLIC_KEY_LEN]);

impl PublicKey {
    /// The key of 64 hex digits.
    pub fn parse(hex_digits: &str) -> Option<PublicKey> {
        parse_hex(hex_digits.trim()).map(PublicKey)
    }

    /// Whether `sig` is this key's signature of `message`.
    pub fn verifies(&self, message: &[u8], sig: &Signature) -> bool {
        let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&self.0) else {
            return false;
        };
        let sig = ed25519_dalek::Signature::from_bytes(sig);
        key.verify(message, &sig).is_ok()
    }
}

/// 64 lowercase hex digits.
impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails by panicking")]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies_with_the_public_key_only() {
        let key = SigningKey::from_seed(&Zeroizing::new([9; SEED_LEN]));
        let public = PublicKey::parse(&key.public().to_string()).unwrap();
        let sig = key.sign(b"record");
        assert!(public.verifies(b"record", &sig));
        assert!(!public.verifies(b"recorD", &sig));
        let other = SigningKey::from_seed(&Zeroizing::new([8; SEED_LEN])).public();
        assert!(!other.verifies(b"record", &sig));
        assert!(!format!("{key:?}").contains(&hex(&[9; SEED_LEN])));
    }
}
