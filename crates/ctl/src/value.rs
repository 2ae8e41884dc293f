//! [`Value`]: the bytes of a secret value or a manifest, as a command carries them.

use std::fmt;

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// A value carried by a command (`set`'s VALUE, `service … manifest`'s text).
///
/// The bytes live in a zeroized buffer and are reachable only through
/// [`expose`](Value::expose); `Debug` prints the length alone, so a [`Command`](crate::Command)
/// can be logged. Equality is constant-time in the bytes.
#[derive(Clone, Default)]
pub struct Value(Zeroizing<Vec<u8>>);

impl Value {
    /// The value's bytes. Named so that every use of plaintext is easy to find.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The value's length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the value is empty (`''` and `{0}` are legal values).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Zeroizing<Vec<u8>>> for Value {
    fn from(bytes: Zeroizing<Vec<u8>>) -> Self {
        Value(bytes)
    }
}

impl From<Vec<u8>> for Value {
    fn from(bytes: Vec<u8>) -> Self {
        Value(Zeroizing::new(bytes))
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Value({} bytes)", self.0.len())
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        // Slices of different lengths compare unequal at once; only the length leaks.
        self.0.as_slice().ct_eq(other.0.as_slice()).into()
    }
}

impl Eq for Value {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_only_the_length() {
        let v = Value::from(b"hunter2".to_vec());
        assert_eq!(format!("{v:?}"), "Value(7 bytes)");
        assert_eq!(format!("{:?}", Value::default()), "Value(0 bytes)");
    }

    #[test]
    fn expose_len_and_equality() {
        let v = Value::from(Zeroizing::new(b"abc".to_vec()));
        assert_eq!(v.expose(), b"abc");
        assert_eq!(v.len(), 3);
        assert!(!v.is_empty());
        assert!(Value::default().is_empty());
        assert_eq!(v, Value::from(b"abc".to_vec()));
        assert_ne!(v, Value::from(b"abd".to_vec()));
        assert_ne!(v, Value::from(b"ab".to_vec()));
    }
}
