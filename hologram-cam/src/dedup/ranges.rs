//! Ranges of the address space that anti-entropy compares
//! ([`AddressPrefix`]), and what a holder says of the addresses it holds in
//! one ([`RangeDigest`]).

use crate::CamError;
use hologram_lattice::Address;
use serde::{Deserialize, Serialize};

/// Key-derivation context of a [`RangeDigest`]'s hash (v2: it covers each
/// address's reference-set tag too).
pub const RANGE_DIGEST_CONTEXT: &str = "hologram dedup-range v2";

/// The most ranges one anti-entropy `Digests` request names.
pub const MAX_RANGES: usize = 64;

/// The most addresses a holder reads in one range to answer for it: a
/// range holding more is answered [`RangeDigest::TooMany`] (the asker
/// splits it), and a `List` of it is refused. So one `Digests` request
/// reads at most `MAX_RANGES × (RANGE_ADDRESSES + 1)` addresses.
pub const RANGE_ADDRESSES: usize = 512;

/// The most objects one anti-entropy `Fetch` asks for.
pub const MAX_FETCH: usize = 256;

/// The addresses whose first `bits` bits are those of `first`: a range of
/// the address space (and so of the ring, whose positions are addresses'
/// leading bytes), split in 16 by [`children`](Self::children).
///
/// Decoding refuses more than 256 bits and set bits past `bits` (the
/// encoding never has them), so every prefix names one range, one way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "(Address, u16)", into = "(Address, u16)")]
pub struct AddressPrefix {
    first: Address,
    bits: u16,
}

impl AddressPrefix {
    /// Every address.
    pub const ALL: AddressPrefix = AddressPrefix {
        first: Address::from_bytes([0; 32]),
        bits: 0,
    };

    /// The prefix of `address`'s first `bits` bits (at most 256).
    pub fn of(address: &Address, bits: u16) -> Self {
        let bits = bits.min(256);
        let mut bytes = *address.as_bytes();
        mask(&mut bytes, bits);
        Self {
            first: Address::from_bytes(bytes),
            bits,
        }
    }

    /// How many leading bits the range's addresses share.
    pub fn bits(&self) -> u16 {
        self.bits
    }

    /// The range's smallest address.
    pub fn first(&self) -> Address {
        self.first
    }

    /// Whether `address` is in the range.
    pub fn contains(&self, address: &Address) -> bool {
        let mut bytes = *address.as_bytes();
        mask(&mut bytes, self.bits);
        bytes == *self.first.as_bytes()
    }

    /// The address just before the range (what a [`Store::scan`](crate::Store::scan)
    /// starts after), `None` when the range starts at zero.
    pub fn before(&self) -> Option<Address> {
        let mut bytes = *self.first.as_bytes();
        for byte in bytes.iter_mut().rev() {
            let (less, borrow) = byte.overflowing_sub(1);
            *byte = less;
            if !borrow {
                return Some(Address::from_bytes(bytes));
            }
        }
        None
    }

    /// The range cut in 16 by its next four bits, in address order; none
    /// for a range of one address.
    pub fn children(&self) -> Vec<AddressPrefix> {
        if self.bits >= 256 {
            return Vec::new();
        }
        let bits = (self.bits + 4).min(256);
        let step = bits - self.bits;
        (0..1u8 << step)
            .map(|k| {
                let mut bytes = *self.first.as_bytes();
                for i in 0..step {
                    if k >> (step - 1 - i) & 1 == 1 {
                        let bit = usize::from(self.bits + i);
                        bytes[bit / 8] |= 0x80 >> (bit % 8);
                    }
                }
                AddressPrefix {
                    first: Address::from_bytes(bytes),
                    bits,
                }
            })
            .collect()
    }
}

/// Clears every bit of `bytes` past the first `bits`.
fn mask(bytes: &mut [u8; 32], bits: u16) {
    let bits = usize::from(bits.min(256));
    for (i, byte) in bytes.iter_mut().enumerate() {
        let kept = bits.saturating_sub(i * 8).min(8);
        *byte &= !(0xffu8.checked_shr(kept as u32).unwrap_or(0));
    }
}

impl TryFrom<(Address, u16)> for AddressPrefix {
    type Error = CamError;
    fn try_from((first, bits): (Address, u16)) -> Result<Self, CamError> {
        if bits > 256 {
            return Err(CamError::Decode(format!("address prefix of {bits} bits")));
        }
        let prefix = AddressPrefix::of(&first, bits);
        if prefix.first != first {
            return Err(CamError::Decode(
                "address prefix with bits set past its length".into(),
            ));
        }
        Ok(prefix)
    }
}

impl From<AddressPrefix> for (Address, u16) {
    fn from(prefix: AddressPrefix) -> Self {
        (prefix.first, prefix.bits)
    }
}

/// An address a holder holds, with the tag of its reference set there
/// ([`ReferenceSet::tag`](super::ReferenceSet::tag), or
/// [`UNKNOWN_REFERENCES`] when the holder has no record of its references):
/// what anti-entropy compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HeldAddress {
    /// The object's address.
    pub address: Address,
    /// Its reference set's tag.
    pub references: u64,
}

/// The tag of an object held with no record of its references (after a
/// crash between the object and its set, or adopted with unknown
/// references): counted as one unknown reference, never freed. A set's own
/// tag is never this value.
pub const UNKNOWN_REFERENCES: u64 = 0;

/// What a holder holds in one range, of the addresses both it and the
/// asker own: their number and a hash of them with their reference-set
/// tags, in order, or that the range holds too many addresses to read in
/// one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RangeDigest {
    /// The range holds more than [`RANGE_ADDRESSES`] addresses (of any
    /// owners): split it.
    TooMany,
    /// The addresses, in increasing order.
    Of {
        /// How many.
        count: u32,
        /// BLAKE3 derive-key ([`RANGE_DIGEST_CONTEXT`]) of each address's
        /// bytes then its reference-set tag (`u64` LE), in order.
        hash: [u8; 32],
    },
}

impl RangeDigest {
    /// The digest of `addresses` (in increasing order).
    pub fn of(addresses: &[HeldAddress]) -> Self {
        let mut hasher = blake3::Hasher::new_derive_key(RANGE_DIGEST_CONTEXT);
        for held in addresses {
            hasher.update(held.address.as_bytes());
            hasher.update(&held.references.to_le_bytes());
        }
        RangeDigest::Of {
            count: addresses.len() as u32,
            hash: *hasher.finalize().as_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn children_cover_their_parent_exactly(bytes in any::<[u8; 32]>(), bits in 0u16..=256) {
            let address = Address::from_bytes(bytes);
            let prefix = AddressPrefix::of(&address, bits);
            prop_assert!(prefix.contains(&address));
            let children = prefix.children();
            if bits < 256 {
                prop_assert_eq!(children.iter().filter(|c| c.contains(&address)).count(), 1);
                prop_assert!(children.windows(2).all(|w| w[0].first() < w[1].first()));
                prop_assert_eq!(children[0].first(), prefix.first());
            } else {
                prop_assert!(children.is_empty());
            }
            // The address before the range is outside it, and just before.
            if let Some(before) = prefix.before() {
                prop_assert!(!prefix.contains(&before));
                prop_assert!(before < prefix.first());
            } else {
                prop_assert_eq!(prefix.first(), Address::from_bytes([0; 32]));
            }
        }

        #[test]
        fn decoding_accepts_only_canonical_prefixes(bytes in any::<[u8; 32]>(), bits in any::<u16>()) {
            let encoded = postcard::to_allocvec(&(Address::from_bytes(bytes), bits)).unwrap();
            let decoded: Result<AddressPrefix, _> = postcard::from_bytes(&encoded);
            let canonical = bits <= 256 && AddressPrefix::of(&Address::from_bytes(bytes), bits).first() == Address::from_bytes(bytes);
            prop_assert_eq!(decoded.is_ok(), canonical);
            if let Ok(prefix) = decoded {
                prop_assert_eq!(postcard::to_allocvec(&prefix).unwrap(), encoded);
            }
        }
    }

    #[test]
    fn a_prefix_of_four_bits_is_a_sixteenth() {
        let children = AddressPrefix::ALL.children();
        assert_eq!(children.len(), 16);
        assert_eq!(children[1].first().as_bytes()[0], 0x10);
        assert!(children[15].contains(&Address::from_bytes([0xff; 32])));
        assert_eq!(AddressPrefix::ALL.before(), None);
        let mut just_before = [0xff; 32];
        just_before[0] = 0x0f;
        assert_eq!(children[1].before(), Some(Address::from_bytes(just_before)));
    }
}
