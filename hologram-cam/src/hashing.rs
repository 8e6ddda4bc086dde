//! A keyed hasher for the crate's in-memory maps, which are keyed by
//! addresses and peer ids: a folded 64×64→128-bit multiply per 8-byte word,
//! keyed by a random value drawn per map from `std`'s `RandomState`. It
//! costs a few nanoseconds where SipHash costs about twenty. Addresses are
//! BLAKE3 outputs, so they are already uniform; the secret key is what stops
//! a peer from grinding addresses that collide in one bucket (a
//! pass-through of the first bytes would let it). It is the construction of
//! `foldhash`, not a cryptographic PRF.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// Builds [`AddressHasher`]s with one secret key (random by default).
#[derive(Debug, Clone, Copy)]
pub struct AddressHashing {
    pub(crate) key: u64,
}

impl Default for AddressHashing {
    fn default() -> Self {
        Self {
            key: RandomState::new().hash_one(0x6c6f_6761_6d73_u64),
        }
    }
}

impl BuildHasher for AddressHashing {
    type Hasher = AddressHasher;

    fn build_hasher(&self) -> AddressHasher {
        AddressHasher(self.key)
    }
}

/// A keyed folded-multiply hasher (see the module docs).
pub struct AddressHasher(u64);

/// An odd constant with well-mixed bits (the fractional part of π).
const MULTIPLIER: u64 = 0x243f_6a88_85a3_08d3;

impl AddressHasher {
    #[inline]
    fn mix(&mut self, word: [u8; 8]) {
        let product = u128::from(self.0 ^ u64::from_le_bytes(word)) * u128::from(MULTIPLIER);
        self.0 = (product as u64) ^ ((product >> 64) as u64);
    }
}

impl Hasher for AddressHasher {
    /// Mixes in each 8-byte word, the last one zero-padded. (Whole words
    /// are read as fixed-size loads: no byte-by-byte copy.)
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for chunk in &mut words {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.mix(word);
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.mix(word);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A `HashMap` with [`AddressHashing`].
pub type FastMap<K, V> = std::collections::HashMap<K, V, AddressHashing>;
/// A `HashSet` with [`AddressHashing`].
pub type FastSet<K> = std::collections::HashSet<K, AddressHashing>;

/// An address of bytes `0x55` but for the first, `b` (for tests).
#[cfg(test)]
pub(crate) fn address_with_first_byte(b: u8) -> hologram_lattice::Address {
    let mut bytes = [0x55; 32];
    bytes[0] = b;
    hologram_lattice::Address::from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hologram_lattice::Address;

    #[test]
    fn the_hash_depends_on_every_byte_and_on_the_key() {
        let hashing = AddressHashing { key: 1 };
        let base = hashing.hash_one(address_with_first_byte(0));
        for i in 0..32 {
            let mut bytes = *address_with_first_byte(0).as_bytes();
            bytes[i] ^= 0x80;
            assert_ne!(
                hashing.hash_one(Address::from_bytes(bytes)),
                base,
                "byte {i}"
            );
        }
        let other = AddressHashing { key: 2 };
        assert_ne!(other.hash_one(address_with_first_byte(0)), base);
    }
}
