//! Content addresses: the BLAKE3 hash of an object's bytes (SPEC §2).

use crate::bytes32::bytes32_type;
use crate::Coord;

/// The identity of an object: the 32-byte BLAKE3 hash of its bytes.
///
/// Equality, storage keys and integrity checks use all 32 bytes;
/// [`Address::coord`] is for placement and routing only (many objects share a
/// site). Displays and parses as 64 lowercase hex digits.
///
/// ```
/// use hologram_lattice::{Address, Coord};
/// let a = Address::of(b"HELLO WORLD");
/// assert_eq!(a.coord(), Coord::new(4, 216));
/// assert_eq!(a.to_string().parse::<Address>().unwrap(), a);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address([u8; 32]);

bytes32_type!(Address);

impl Address {
    /// The address of `data`: its BLAKE3 hash.
    pub fn of(data: &[u8]) -> Self {
        Self(*blake3::hash(data).as_bytes())
    }

    /// Whether `data` hashes to this address.
    pub fn matches(&self, data: &[u8]) -> bool {
        // blake3::Hash compares in constant time.
        blake3::hash(data) == blake3::Hash::from_bytes(self.0)
    }

    /// The lattice site of this address: the first 8 bytes as a little-endian
    /// `u64`, reduced mod 12,288.
    pub fn coord(&self) -> Coord {
        Coord::from_index(first_u64(&self.0))
    }
}

impl From<blake3::Hash> for Address {
    fn from(hash: blake3::Hash) -> Self {
        Self(*hash.as_bytes())
    }
}

/// The first 8 bytes of a 32-byte value as a little-endian `u64`.
pub(crate) fn first_u64(bytes: &[u8; 32]) -> u64 {
    let mut head = [0u8; 8];
    head.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_vector() {
        let a = Address::of(b"HELLO WORLD");
        assert_eq!(
            a.to_string(),
            "d81405d34c9152ad4bd607c0fb362f26437bc9f2284958eaddd30b45504e96d2"
        );
        assert_eq!(a.coord(), Coord::new(4, 216));
        assert!(a.matches(b"HELLO WORLD"));
        assert!(!a.matches(b"HELLO WORLd"));
    }

    #[test]
    fn serde_round_trips() {
        let a = Address::of(b"x");
        let bin = postcard::to_allocvec(&a).unwrap();
        assert_eq!(bin.len(), 32);
        assert_eq!(postcard::from_bytes::<Address>(&bin).unwrap(), a);
        assert!(postcard::from_bytes::<Address>(&bin[..31]).is_err());
        use serde::de::{value::StrDeserializer, Deserialize};
        let hex = a.to_string();
        let de = StrDeserializer::<serde::de::value::Error>::new(&hex);
        assert_eq!(Address::deserialize(de).unwrap(), a);
        let bad = StrDeserializer::<serde::de::value::Error>::new("zz");
        assert!(Address::deserialize(bad).is_err());
    }
}
