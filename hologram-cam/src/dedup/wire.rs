//! The deduplication protocol's messages, with decoding bounded before reading.

use super::ranges::{AddressPrefix, HeldAddress, RangeDigest};
use super::references::ReferenceSet;
use crate::wire::MAX_OBJECT_BYTES;
use crate::{CamError, SharedBytes};
use hologram_lattice::{wire, Address};
use serde::{Deserialize, Serialize};

/// The largest encoded message.
pub const MAX_MESSAGE_BYTES: usize = MAX_OBJECT_BYTES + 64;

/// One reference to an object: who took it, and that client's operation
/// number. References are counted as sets, so a reference delivered twice,
/// or to a replica that already has it, counts once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Reference {
    /// The client that took the reference.
    pub client: hologram_lattice::PeerId,
    /// The client's operation number.
    pub op: u64,
}

/// Messages between a [`DeduplicationNetwork`](crate::DeduplicationNetwork)
/// client and the holders (carried under
/// [`crate::DEDUP_PROTOCOL`](crate::DEDUP_PROTOCOL)).
///
/// `D` is how an object's bytes are held: [`SharedBytes`] in a message
/// made or decoded, `&[u8]` while a decoder borrows them from its input
/// (the encoding is the same).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DedupMessage<D = SharedBytes> {
    /// Store an object, and with `reference`, count it (a repair sends
    /// none). Answered with `Held`.
    Put {
        /// The address the sender claims.
        address: Address,
        /// The reference to count, if any.
        reference: Option<Reference>,
        /// The object's bytes (the holder verifies them against `address`).
        /// Last, so that they end the encoding (see [`Request`]).
        data: D,
    },
    /// Hand-off after the ring changed: hold this object with these
    /// references. Answered with `Refs`.
    Adopt {
        /// The address the sender claims.
        address: Address,
        /// The references the previous holder counted and released; `None`
        /// when it had no record of them (after a crash), so that the new
        /// holder counts them as unknown and never frees the object.
        references: Option<ReferenceSet>,
        /// The object's bytes (verified against `address`); last, as in `Put`.
        data: D,
    },
    /// Many `Put`s in one request, each applied (and numbered) on its own:
    /// the objects' bytes back to back in `data`, in the order of `puts`.
    /// Answered with `HeldMany`. At most [`MAX_BATCH`] puts.
    PutMany {
        /// The puts, each with the length of its object.
        puts: Vec<BatchedPut>,
        /// The objects' bytes, concatenated; last, as in `Put`.
        data: D,
    },
    /// Answer to `PutMany`: per put, in order, what `Held` would have said,
    /// or `None` where the put was refused (its bytes did not match).
    HeldMany(Vec<Option<Kept>>),
    /// Count a reference to an object the holder has.
    AddRef(Address, Reference),
    /// Answer to `Adopt`, `AddRef` and `Release`: the references the
    /// holder now counts for the object.
    Refs(u64),
    /// Answer to `Put`: the references the holder now counts, and whether
    /// it held the object before this request (a repeat of the request gets
    /// the first answer again).
    Held {
        /// References counted now.
        refs: u64,
        /// Whether the object was there before.
        before: bool,
    },
    /// Does the holder have this object?
    Has(Address),
    /// Answer to `Has`.
    HasAnswer(bool),
    /// The object's bytes, please.
    Get(Address),
    /// Answer to `Get`.
    Found(D),
    /// Answer to `Get`, `AddRef`, `Release` or `Free`: not held.
    NotFound,
    /// Drop a reference to the object.
    Release(Address, Reference),
    /// Remove the object if the holder counts no reference to it.
    Free(Address),
    /// Answer to `Free`: whether the object was removed.
    Freed(bool),
    /// Answer to `Get`: the holder's copy did not verify (it rotted on its
    /// disk). The holder dropped the copy and keeps its references, so a
    /// repair `Put` restores it.
    Corrupt,
    /// Anti-entropy: per range (at most [`MAX_RANGES`](super::MAX_RANGES)),
    /// the digest of the addresses the holder holds there that it and the
    /// asker both own. Answered with `RangeDigests`.
    Digests(Vec<AddressPrefix>),
    /// Answer to `Digests`: one per range, in order.
    RangeDigests(Vec<RangeDigest>),
    /// Anti-entropy: the addresses the holder holds in a range (of at most
    /// [`RANGE_ADDRESSES`](super::RANGE_ADDRESSES)) that it and the asker
    /// both own. Answered with `Listed`.
    List(AddressPrefix),
    /// Answer to `List`: the addresses, in increasing order, each with its
    /// reference set's tag at the holder.
    Listed(Vec<HeldAddress>),
    /// Anti-entropy: these objects (at most [`MAX_FETCH`](super::MAX_FETCH)),
    /// with their reference sets. Answered with `Fetched`.
    Fetch(Vec<Address>),
    /// Answer to `Fetch`: for the first objects asked for (as many as fit in
    /// one message), in order, the object's references and length, or
    /// `None` where the holder has no good copy. The objects' bytes are back
    /// to back in `data`; `check` covers `items` (see [`fetched_check`]).
    Fetched {
        /// Per object asked for, in order (a prefix of the request).
        items: Vec<Option<FetchedItem>>,
        /// [`fetched_check`] of `items`.
        check: [u8; 8],
        /// The objects' bytes, concatenated; last, as in `Put`.
        data: D,
    },
}

/// One object of a [`DedupMessage::Fetched`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchedItem {
    /// The references the holder counts, as an `Adopt` carries them: `None`
    /// when it has no record of them (or they do not fit in one message
    /// with the object), so that the asker counts them as unknown and never
    /// frees the object.
    pub references: Option<ReferenceSet>,
    /// How many bytes of the message's `data` are this object's.
    pub len: u32,
}

/// The checksum of a `Fetched` answer's items: the first 8 bytes of keyed
/// BLAKE3 (the key of [`Request`]'s checksum) of their postcard encoding.
/// The objects' bytes are verified against their addresses instead; the
/// reference sets cannot be, so a damaged answer is refused whole.
pub fn fetched_check(items: &[Option<FetchedItem>]) -> [u8; 8] {
    let encoded = wire::encode("fetched items", items).unwrap_or_default();
    // `covered` is the whole encoding, so the checksum is always computed.
    checksum(&encoded, encoded.len()).unwrap_or_default()
}

impl DedupMessage {
    /// The postcard encoding.
    pub fn encode(&self) -> Vec<u8> {
        let buffer = Vec::with_capacity(self.object_bytes().len() + 64);
        // Encoding into a Vec cannot fail for these types.
        wire::encode_into("dedup message", self, buffer).unwrap_or_default()
    }

    /// Decodes a message, refusing more than [`MAX_MESSAGE_BYTES`] before
    /// reading; object bytes are copied out of `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Self, CamError> {
        Self::decode_owned(bytes.to_vec())
    }

    /// [`DedupMessage::decode`] of a buffer it takes: the object bytes of a
    /// `Put`, `Adopt` or `Found` stay in it, not copied.
    pub fn decode_owned(bytes: Vec<u8>) -> Result<Self, CamError> {
        let owner = SharedBytes::from(bytes);
        let message: DedupMessage<&[u8]> =
            wire::decode("dedup message", &owner, MAX_MESSAGE_BYTES)?;
        Ok(message.map_data(|data| owner.slice_ref(data)))
    }
}

impl<D: AsRef<[u8]>> DedupMessage<D> {
    /// The same message with its object bytes (if it carries any) held as
    /// `f` makes them.
    pub fn map_data<E>(self, f: impl FnOnce(D) -> E) -> DedupMessage<E> {
        use DedupMessage as M;
        match self {
            M::Put {
                address,
                reference,
                data,
            } => M::Put {
                address,
                reference,
                data: f(data),
            },
            M::Adopt {
                address,
                references,
                data,
            } => M::Adopt {
                address,
                references,
                data: f(data),
            },
            M::PutMany { puts, data } => M::PutMany {
                puts,
                data: f(data),
            },
            M::Found(data) => M::Found(f(data)),
            M::HeldMany(kept) => M::HeldMany(kept),
            M::AddRef(address, reference) => M::AddRef(address, reference),
            M::Refs(n) => M::Refs(n),
            M::Held { refs, before } => M::Held { refs, before },
            M::Has(address) => M::Has(address),
            M::HasAnswer(has) => M::HasAnswer(has),
            M::Get(address) => M::Get(address),
            M::NotFound => M::NotFound,
            M::Release(address, reference) => M::Release(address, reference),
            M::Free(address) => M::Free(address),
            M::Freed(freed) => M::Freed(freed),
            M::Corrupt => M::Corrupt,
            M::Digests(ranges) => M::Digests(ranges),
            M::RangeDigests(digests) => M::RangeDigests(digests),
            M::List(range) => M::List(range),
            M::Listed(addresses) => M::Listed(addresses),
            M::Fetch(addresses) => M::Fetch(addresses),
            M::Fetched { items, check, data } => M::Fetched {
                items,
                check,
                data: f(data),
            },
        }
    }

    /// The object a request changes, if it changes one: every mutating
    /// request names exactly one address.
    pub fn mutated(&self) -> Option<Address> {
        match self {
            DedupMessage::Put { address, .. }
            | DedupMessage::Adopt { address, .. }
            | DedupMessage::AddRef(address, _)
            | DedupMessage::Release(address, _)
            | DedupMessage::Free(address) => Some(*address),
            _ => None,
        }
    }

    /// The object bytes a request carries, which end its encoding.
    fn object_bytes(&self) -> &[u8] {
        match self {
            DedupMessage::Put { data, .. }
            | DedupMessage::Adopt { data, .. }
            | DedupMessage::PutMany { data, .. }
            | DedupMessage::Fetched { data, .. } => data.as_ref(),
            _ => &[],
        }
    }
}

/// The most puts one `PutMany` carries.
pub const MAX_BATCH: usize = 256;

/// One put of a [`DedupMessage::PutMany`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchedPut {
    /// The put's own operation number: a holder applies it once, as it
    /// would a `Put` request with that number.
    pub op: u64,
    /// The address the sender claims.
    pub address: Address,
    /// The reference to count, if any.
    pub reference: Option<Reference>,
    /// How many bytes of the message's `data` are this object's.
    pub len: u32,
}

/// What a holder did with one put of a batch (as `Held` says for a `Put`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    /// References counted now.
    pub refs: u64,
    /// Whether the object was there before.
    pub before: bool,
}

/// Key-derivation context of the key of a request's checksum.
pub const REQUEST_CHECK_CONTEXT: &str = "hologram dedup-request v3";

/// A request with the sender's operation number, so that a holder applies a
/// duplicated request once: it answers a repeat of `(sender, op)` with the
/// answer it gave the first time.
///
/// The encoding is the postcard encoding of the request followed by an
/// 8-byte checksum: the first 8 bytes of keyed BLAKE3, under the key
/// `blake3::derive_key(`[`REQUEST_CHECK_CONTEXT`]`, "")`, of everything
/// but the object bytes a `Put`, `Adopt` or `PutMany` carries. Those end the encoding
/// (they are the last field) and are not covered: the holder verifies them
/// against the address, which is covered, so damaged object bytes are
/// refused as not matching their address, and hashing them a second time
/// would only double the cost of a put. Everything else (the operation
/// number, the address, the references) is covered, so a request damaged on
/// the way is refused instead of being applied as another operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request<D = SharedBytes> {
    /// The sender's operation number (unique per sender).
    pub op: u64,
    /// The request.
    pub message: DedupMessage<D>,
}

/// The checksum of the first `covered` bytes of `body`.
fn checksum(body: &[u8], covered: usize) -> Result<[u8; 8], CamError> {
    let covered = body
        .get(..covered)
        .ok_or_else(|| CamError::Decode("request shorter than its object bytes".into()))?;
    // The key is derived once (a compression of its own), not per request.
    static KEY: std::sync::LazyLock<[u8; 32]> =
        std::sync::LazyLock::new(|| blake3::derive_key(REQUEST_CHECK_CONTEXT, &[]));
    let h = blake3::keyed_hash(&KEY, covered);
    let mut out = [0u8; 8];
    out.copy_from_slice(&h.as_bytes()[..8]);
    Ok(out)
}

impl Request {
    /// The encoding: postcard, then the checksum.
    pub fn encode(&self) -> Vec<u8> {
        let object = self.message.object_bytes().len();
        // Room for the header (at most ~100 bytes but for an `Adopt` with many
        // references, which grows the buffer) and the checksum.
        let buffer = Vec::with_capacity(object + 128);
        let mut out = wire::encode_into("dedup request", self, buffer).unwrap_or_default();
        let covered = out.len().saturating_sub(self.message.object_bytes().len());
        // `covered` is within `out`, so the checksum is always computed.
        if let Ok(check) = checksum(&out, covered) {
            out.extend_from_slice(&check);
        }
        out
    }

    /// Decodes a request, refusing more than [`MAX_MESSAGE_BYTES`] before
    /// reading and anything whose checksum does not match; object bytes are
    /// copied out of `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Self, CamError> {
        Self::decode_owned(bytes.to_vec())
    }

    /// [`Request::decode`] of a buffer it takes: the object bytes of a `Put`
    /// or `Adopt` stay in it, not copied (those of a `PutMany` are copied
    /// when the holder splits them).
    pub fn decode_owned(bytes: Vec<u8>) -> Result<Self, CamError> {
        let owner = SharedBytes::from(bytes);
        let request = Self::check(&owner)?;
        Ok(Request {
            op: request.op,
            message: request.message.map_data(|data| owner.slice_ref(data)),
        })
    }

    /// The request `bytes` encode, its object bytes borrowed, once its size
    /// and checksum are checked.
    fn check(bytes: &[u8]) -> Result<Request<&[u8]>, CamError> {
        let split = bytes
            .len()
            .checked_sub(8)
            .ok_or_else(|| CamError::Decode("request shorter than its checksum".into()))?;
        let (body, check) = bytes.split_at(split);
        // At most MAX_MESSAGE_BYTES in all, checksum included: checked unread.
        let max = MAX_MESSAGE_BYTES - 8;
        let request: Request<&[u8]> = wire::decode("dedup request", body, max)?;
        let covered = body
            .len()
            .checked_sub(request.message.object_bytes().len())
            .ok_or_else(|| CamError::Decode("request shorter than its object bytes".into()))?;
        if checksum(body, covered)? != check {
            return Err(CamError::Decode("request checksum mismatch".into()));
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(Request::decode(&bytes), Request::decode_owned(bytes.clone()));
            prop_assert_eq!(DedupMessage::decode(&bytes), DedupMessage::decode_owned(bytes.clone()));
        }

        #[test]
        fn any_flipped_bit_is_refused(op in any::<u64>(), bit in any::<usize>()) {
            let reference = Reference { client: hologram_lattice::NodeId::from_bytes([1; 32]), op };
            let r = Request { op, message: DedupMessage::Release(Address::of(b"x"), reference) };
            let mut bytes = r.encode();
            prop_assert_eq!(Request::decode(&bytes), Ok(r));
            let bit = bit % (bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(Request::decode(&bytes).is_err());
        }

        #[test]
        fn an_adopt_round_trips(
            op in any::<u64>(),
            data in prop::collection::vec(any::<u8>(), 0..512),
            live in prop::collection::btree_set(any::<u64>(), 0..6),
            released in prop::collection::btree_set(any::<u64>(), 0..6),
            known in any::<bool>(),
        ) {
            let reference = |op| Reference { client: hologram_lattice::NodeId::from_bytes([3; 32]), op };
            let set = ReferenceSet {
                live: live.into_iter().map(reference).collect(),
                released: released.into_iter().map(reference).collect(),
            };
            let r = Request {
                op,
                message: DedupMessage::Adopt {
                    address: Address::of(&data),
                    references: known.then_some(set),
                    data: data.into(),
                },
            };
            prop_assert_eq!(Request::decode(&r.encode()), Ok(r));
        }

        #[test]
        fn a_fetched_answer_round_trips_and_its_check_catches_damaged_items(
            objects in prop::collection::vec(
                (prop::collection::vec(any::<u8>(), 0..64), prop::option::of(prop::collection::btree_set(any::<u64>(), 0..4))),
                0..6,
            ),
            bit in any::<usize>(),
        ) {
            let reference = |op| Reference { client: hologram_lattice::NodeId::from_bytes([4; 32]), op };
            let items: Vec<Option<FetchedItem>> = objects
                .iter()
                .map(|(data, refs)| Some(FetchedItem {
                    references: refs.clone().map(|r| ReferenceSet { live: r.into_iter().map(reference).collect(), released: Default::default() }),
                    len: data.len() as u32,
                }))
                .collect();
            let data: Vec<u8> = objects.iter().flat_map(|(d, _)| d.clone()).collect();
            let answer = DedupMessage::Fetched { check: fetched_check(&items), items: items.clone(), data: data.into() };
            let bytes = answer.encode();
            prop_assert_eq!(DedupMessage::decode(&bytes), Ok(answer.clone()));
            // Any change to the items' encoding fails the check (or decoding).
            let mut encoded = hologram_lattice::wire::encode("items", &items).unwrap();
            if !encoded.is_empty() {
                let bit = bit % (encoded.len() * 8);
                encoded[bit / 8] ^= 1 << (bit % 8);
                if let Ok(damaged) = postcard::from_bytes::<Vec<Option<FetchedItem>>>(&encoded) {
                    prop_assert_ne!(fetched_check(&damaged), fetched_check(&items));
                }
            }
            let ranges = vec![crate::dedup::AddressPrefix::of(&Address::of(&bytes), (bit % 257) as u16)];
            let r = Request { op: bit as u64, message: DedupMessage::Digests(ranges) };
            prop_assert_eq!(Request::decode(&r.encode()), Ok(r));
        }

        #[test]
        fn a_listed_answer_round_trips(
            held in prop::collection::vec((any::<[u8; 32]>(), any::<u64>()), 0..12),
        ) {
            let listed = held
                .into_iter()
                .map(|(a, references)| HeldAddress { address: Address::from_bytes(a), references })
                .collect();
            let answer = DedupMessage::Listed(listed);
            prop_assert_eq!(DedupMessage::decode(&answer.encode()), Ok(answer));
        }

        #[test]
        fn a_put_many_round_trips(
            op in any::<u64>(),
            objects in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..8),
        ) {
            let puts = objects
                .iter()
                .enumerate()
                .map(|(i, o)| BatchedPut {
                    op: op.wrapping_add(i as u64),
                    address: Address::of(o),
                    reference: None,
                    len: o.len() as u32,
                })
                .collect();
            let r = Request { op, message: DedupMessage::PutMany { puts, data: objects.concat().into() } };
            prop_assert_eq!(Request::decode(&r.encode()), Ok(r));
        }

        #[test]
        fn a_put_round_trips_and_any_flipped_bit_is_refused_or_fails_its_address(
            op in any::<u64>(),
            data in prop::collection::vec(any::<u8>(), 0..2048),
            bit in any::<usize>(),
        ) {
            let address = Address::of(&data);
            let reference = Reference { client: hologram_lattice::NodeId::from_bytes([2; 32]), op };
            let r = Request { op, message: DedupMessage::Put { address, reference: Some(reference), data: data.into() } };
            let mut bytes = r.encode();
            prop_assert_eq!(Request::decode(&bytes), Ok(r.clone()));
            prop_assert_eq!(Request::decode_owned(bytes.clone()), Ok(r.clone()));
            let bit = bit % (bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
            match Request::decode(&bytes) {
                Err(_) => {}
                // Only the uncovered object bytes can change unnoticed by the
                // checksum, and then they no longer match the address.
                Ok(Request { op: o, message: DedupMessage::Put { address: a, reference: f, data: d } }) => {
                    prop_assert_eq!((o, a, f), (op, address, Some(reference)));
                    prop_assert_ne!(Address::of(&d), address);
                }
                Ok(other) => prop_assert!(false, "decoded as {:?}", other),
            }
        }
    }
}
