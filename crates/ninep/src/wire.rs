//! The wire format: one trait, [`Wire`], that every 9P2000 field type implements.
//!
//! intro(5): integers are little-endian; a string is a 2-byte count followed by that many
//! bytes of UTF-8 (no NUL); data is a 4-byte count and that many bytes. Messages are built
//! from these by [`wire_struct!`](crate::wire_struct), so the field order of each message is
//! written once, and encoding, decoding and size all follow from it.
//!
//! Decoding reads from a bounded [`Reader`] over one whole message: nothing is read past
//! its end, and no allocation is larger than the bytes that remain in it.

use bytes::BufMut;

use crate::error::DecodeError;

/// A value that has a 9P2000 wire encoding.
pub trait Wire: Sized {
    /// The number of bytes [`encode`](Wire::encode) writes.
    fn byte_size(&self) -> usize;
    /// Appends the encoding to `buf`.
    fn encode(&self, buf: &mut impl BufMut);
    /// Decodes one value from the front of `r`.
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError>;
}

/// A cursor over the bytes of one message. Every read is bounds-checked.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Takes the next `n` bytes, or fails without consuming anything.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// Fails with [`DecodeError::TrailingBytes`] unless everything was read: a message
    /// whose size field says more than its fields hold is malformed, not padded.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes(self.buf.len()))
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }
}

macro_rules! wire_int {
    ($($t:ty => $put:ident),* $(,)?) => {$(
        impl Wire for $t {
            fn byte_size(&self) -> usize {
                std::mem::size_of::<$t>()
            }
            fn encode(&self, buf: &mut impl BufMut) {
                buf.$put(*self);
            }
            fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
                Ok(<$t>::from_le_bytes(r.array()?))
            }
        }
    )*};
}

wire_int!(u8 => put_u8, u16 => put_u16_le, u32 => put_u32_le, u64 => put_u64_le);

impl Wire for String {
    fn byte_size(&self) -> usize {
        2 + self.len()
    }
    fn encode(&self, buf: &mut impl BufMut) {
        // Strings longer than u16::MAX cannot be sent; the builders of messages bound
        // every string they make (names, error strings), so this truncation never
        // silently happens in practice. Clamp rather than panic all the same.
        let len = self.len().min(u16::MAX as usize);
        buf.put_u16_le(len as u16);
        buf.put_slice(&self.as_bytes()[..len]);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let len = u16::decode(r)? as usize;
        let bytes = r.take(len)?;
        let s = std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8)?;
        Ok(s.to_owned())
    }
}

/// A count-prefixed sequence: `n[2] n*(T)`, as in Twalk's names and Rwalk's qids.
/// The element limit is enforced by the message that holds it (see
/// [`MAXWELEM`](crate::MAXWELEM)); here the count is only trusted as far as the bytes go.
impl<T: Wire> Wire for Vec<T> {
    fn byte_size(&self) -> usize {
        2 + self.iter().map(Wire::byte_size).sum::<usize>()
    }
    fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u16_le(self.len().min(u16::MAX as usize) as u16);
        for item in self.iter().take(u16::MAX as usize) {
            item.encode(buf);
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let n = u16::decode(r)? as usize;
        // Every element takes at least two bytes, so a count the remaining bytes cannot
        // hold is rejected before anything is allocated for it.
        if n > r.remaining() / 2 {
            return Err(DecodeError::Truncated);
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(T::decode(r)?);
        }
        Ok(out)
    }
}

/// Implements [`Wire`] for a struct by listing its fields in wire order.
#[macro_export]
#[doc(hidden)]
macro_rules! wire_struct {
    ($name:ident { $($field:ident),* $(,)? }) => {
        impl $crate::wire::Wire for $name {
            fn byte_size(&self) -> usize {
                0 $(+ $crate::wire::Wire::byte_size(&self.$field))*
            }
            fn encode(&self, _buf: &mut impl ::bytes::BufMut) {
                $($crate::wire::Wire::encode(&self.$field, _buf);)*
            }
            fn decode(_r: &mut $crate::wire::Reader<'_>) -> Result<Self, $crate::error::DecodeError> {
                Ok($name { $($field: $crate::wire::Wire::decode(_r)?,)* })
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip<T: Wire + PartialEq + std::fmt::Debug>(v: T) {
        let mut buf = Vec::new();
        v.encode(&mut buf);
        assert_eq!(buf.len(), v.byte_size());
        let mut r = Reader::new(&buf);
        assert_eq!(T::decode(&mut r).unwrap(), v);
        r.finish().unwrap();
    }

    #[test]
    fn integers_are_little_endian() {
        let mut buf = Vec::new();
        0x0102_0304u32.encode(&mut buf);
        assert_eq!(buf, [4, 3, 2, 1]);
        roundtrip(u8::MAX);
        roundtrip(0xbeefu16);
        roundtrip(u64::MAX - 7);
    }

    #[test]
    fn strings_carry_a_two_byte_count() {
        let mut buf = Vec::new();
        "héllo".to_string().encode(&mut buf);
        assert_eq!(&buf[..2], &[6, 0]);
        roundtrip(String::new());
        roundtrip("9P2000".to_string());
    }

    #[test]
    fn string_past_the_end_is_truncated() {
        let mut r = Reader::new(&[5, 0, b'a', b'b']);
        assert_eq!(String::decode(&mut r), Err(DecodeError::Truncated));
    }

    #[test]
    fn invalid_utf8_is_rejected() {
        let mut r = Reader::new(&[2, 0, 0xff, 0xfe]);
        assert_eq!(String::decode(&mut r), Err(DecodeError::InvalidUtf8));
    }

    #[test]
    fn huge_sequence_count_is_rejected_before_allocating() {
        let mut r = Reader::new(&[0xff, 0xff, 1, 0]);
        assert_eq!(Vec::<String>::decode(&mut r), Err(DecodeError::Truncated));
    }

    #[test]
    fn trailing_bytes_are_reported() {
        let r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.finish(), Err(DecodeError::TrailingBytes(3)));
    }
}
