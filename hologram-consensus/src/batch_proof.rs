//! One signature for many commands: a client signs the root of a Merkle
//! tree over the ids of a batch of its commands, and each command carries
//! its path to that root ([`BatchProof`]).
//!
//! Verifying a command is then hashing up its path and checking the
//! signature of the root, which a replica does once per batch: the
//! signature cache of [`verify_signature`](hologram_receipt::verify_signature)
//! answers for the batch's other commands. A client with many commands in
//! flight pays one Ed25519 signature, and every replica one verification,
//! per batch instead of per command; each command still travels, is
//! proposed, decided and answered on its own.
//!
//! The tree is defined in [`BatchProof`]'s docs.

use crate::command::CommandId;
use crate::ConsensusError;
use hologram_lattice::Address;
use serde::de::{Error as _, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The most commands one signature covers.
pub const MAX_SIGNED_BATCH: usize = 1 << MAX_DEPTH;

/// The deepest tree: log₂ of [`MAX_SIGNED_BATCH`].
const MAX_DEPTH: usize = 10;

/// The BLAKE3 key-derivation context of a parent node.
const PARENT_CONTEXT: &str = "hologram command-batch v1";

/// A command's place in the batch its client signed at once: its index,
/// the batch's size and the sibling hashes from the command's id up to the
/// signed root. A command signed alone has
/// the proof [`BatchProof::single`]. Cheap to clone.
///
/// # The tree (hand-defined)
///
/// ```text
/// leaves       = the commands' ids, in the batch's order (count ≥ 1)
/// parent(l, r) = BLAKE3-derive("hologram command-batch v1", l ‖ r)
/// ```
///
/// Each level pairs its nodes left to right; an odd last node is carried
/// up unchanged. The root of a batch of one is the command's id, so a
/// command signed alone is signed exactly as before batches existed. A
/// proof is the leaf's index, the batch's count, and the siblings from the
/// leaf up (one per level where the node has one: how many follows from
/// index and count). Ids and parents are hashed under different derivation
/// contexts, so no path can pass a parent off as a leaf or the reverse: a
/// path from an id to a signed root exists only for the ids the client put
/// in that batch.
///
/// Canonical bytes (inside a [`Batch`](crate::Batch)'s): `index u16 LE ‖
/// count u16 LE ‖ siblings (32 bytes each)`. Wire format: a serde tuple
/// `(index, count, siblings)`; decoding refuses an index outside the
/// count, a count over [`MAX_SIGNED_BATCH`] and a sibling list of any other
/// length than the path's (storing at most ten hashes before it refuses).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BatchProof {
    index: u16,
    count: u16,
    siblings: Arc<[Address]>,
}

fn parent(left: &Address, right: &Address) -> Address {
    static CONTEXT: hologram_lattice::DeriveContext =
        hologram_lattice::DeriveContext::new(PARENT_CONTEXT);
    let hash = CONTEXT
        .hasher()
        .update(left.as_bytes())
        .update(right.as_bytes())
        .finalize();
    Address::from_bytes(*hash.as_bytes())
}

/// How many siblings the path of leaf `index` of `count` has, or `None`
/// when the pair is not a place in a batch.
fn path_len(index: usize, count: usize) -> Option<usize> {
    if count == 0 || count > MAX_SIGNED_BATCH || index >= count {
        return None;
    }
    let (mut i, mut n, mut len) = (index, count, 0);
    while n > 1 {
        if i % 2 == 1 || i + 1 < n {
            len += 1;
        }
        i /= 2;
        n = n.div_ceil(2);
    }
    Some(len)
}

impl BatchProof {
    /// The proof of a command signed alone: its root is its id.
    pub fn single() -> Self {
        Self {
            index: 0,
            count: 1,
            siblings: Arc::from([]),
        }
    }

    /// A proof from its parts, checked for shape: `index < count ≤`
    /// [`MAX_SIGNED_BATCH`] and exactly the path's number of siblings.
    /// Whether it leads to a signed root is [`Command::verify`](crate::Command::verify)'s
    /// business.
    pub fn new(index: u16, count: u16, siblings: Vec<Address>) -> Result<Self, ConsensusError> {
        match path_len(usize::from(index), usize::from(count)) {
            Some(len) if len == siblings.len() => Ok(Self {
                index,
                count,
                siblings: siblings.into(),
            }),
            _ => Err(ConsensusError::BadBatchProof {
                index,
                count,
                siblings: siblings.len(),
            }),
        }
    }

    /// The proofs of a batch of ids (1 to [`MAX_SIGNED_BATCH`]), in order,
    /// and the root they lead to: what the client signs.
    pub(crate) fn build(ids: &[CommandId]) -> Result<(Address, Vec<BatchProof>), ConsensusError> {
        let count = u16::try_from(ids.len())
            .ok()
            .filter(|&n| n >= 1 && usize::from(n) <= MAX_SIGNED_BATCH)
            .ok_or(ConsensusError::TooLarge {
                what: "signed batch (commands; at least one)",
                size: ids.len(),
                max: MAX_SIGNED_BATCH,
            })?;
        let mut paths: Vec<Vec<Address>> = vec![Vec::new(); ids.len()];
        let mut level: Vec<Address> = ids.to_vec();
        // `at[j]`: the index of leaf j's ancestor on the current level.
        let mut at: Vec<usize> = (0..ids.len()).collect();
        while level.len() > 1 {
            for (path, i) in paths.iter_mut().zip(at.iter_mut()) {
                let sibling = *i ^ 1;
                if sibling < level.len() {
                    path.push(level[sibling]);
                }
                *i /= 2;
            }
            level = level
                .chunks(2)
                // An odd last node is carried up unchanged.
                .map(|pair| pair.get(1).map_or(pair[0], |r| parent(&pair[0], r)))
                .collect();
        }
        let proofs = paths
            .into_iter()
            .enumerate()
            .map(|(index, siblings)| BatchProof {
                // `index < count ≤ MAX_SIGNED_BATCH` fits.
                index: index as u16,
                count,
                siblings: siblings.into(),
            })
            .collect();
        Ok((level[0], proofs))
    }

    /// The root that `leaf` (a command's id) leads to along this path.
    pub fn root(&self, leaf: &CommandId) -> Address {
        let (mut i, mut n, mut node) = (usize::from(self.index), usize::from(self.count), *leaf);
        let mut siblings = self.siblings.iter();
        while n > 1 {
            if i % 2 == 1 {
                // The shape was checked when the proof was made: a sibling
                // is there whenever the path says so.
                if let Some(s) = siblings.next() {
                    node = parent(s, &node);
                }
            } else if i + 1 < n {
                if let Some(s) = siblings.next() {
                    node = parent(&node, s);
                }
            }
            i /= 2;
            n = n.div_ceil(2);
        }
        node
    }

    /// The command's index in its signed batch.
    pub fn index(&self) -> u16 {
        self.index
    }

    /// How many commands the signed batch holds.
    pub fn count(&self) -> u16 {
        self.count
    }

    /// The sibling hashes, from the leaf up.
    pub fn siblings(&self) -> &[Address] {
        &self.siblings
    }

    /// The length of the canonical bytes.
    pub(crate) fn canonical_len(&self) -> usize {
        4 + 32 * self.siblings.len()
    }

    /// Appends the canonical bytes.
    pub(crate) fn write_canonical(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.index.to_le_bytes());
        out.extend_from_slice(&self.count.to_le_bytes());
        for s in self.siblings.iter() {
            out.extend_from_slice(s.as_bytes());
        }
    }

    /// How many sibling bytes follow an `index` and `count` in canonical
    /// bytes, or the error for a pair that is no place in a batch.
    pub(crate) fn canonical_siblings_len(index: u16, count: u16) -> Result<usize, ConsensusError> {
        path_len(usize::from(index), usize::from(count))
            .map(|n| 32 * n)
            .ok_or(ConsensusError::BadBatchProof {
                index,
                count,
                siblings: 0,
            })
    }

    /// The proof of `index` and `count` with the siblings of `bytes` (as
    /// many as [`canonical_siblings_len`](Self::canonical_siblings_len) said).
    pub(crate) fn from_canonical(
        index: u16,
        count: u16,
        bytes: &[u8],
    ) -> Result<Self, ConsensusError> {
        let siblings = bytes
            .chunks_exact(32)
            .map(|c| {
                let mut a = [0u8; 32];
                a.copy_from_slice(c);
                Address::from_bytes(a)
            })
            .collect();
        Self::new(index, count, siblings)
    }
}

impl Serialize for BatchProof {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(3)?;
        t.serialize_element(&self.index)?;
        t.serialize_element(&self.count)?;
        t.serialize_element(&*self.siblings)?;
        t.end()
    }
}

/// A sibling list of at most [`MAX_DEPTH`] entries, refused past that
/// before anything more is stored.
struct Siblings(Vec<Address>);

impl<'de> Deserialize<'de> for Siblings {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Siblings;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                write!(f, "at most {MAX_DEPTH} sibling hashes")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Siblings, A::Error> {
                let mut out = Vec::new();
                while let Some(a) = seq.next_element::<Address>()? {
                    if out.len() == MAX_DEPTH {
                        return Err(A::Error::invalid_length(MAX_DEPTH + 1, &self));
                    }
                    out.push(a);
                }
                Ok(Siblings(out))
            }
        }
        d.deserialize_seq(Visit)
    }
}

impl<'de> Deserialize<'de> for BatchProof {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (index, count, siblings): (u16, u16, Siblings) = Deserialize::deserialize(d)?;
        BatchProof::new(index, count, siblings.0).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ids(n: usize) -> Vec<CommandId> {
        (0..n)
            .map(|i| Address::of(&(i as u64).to_le_bytes()))
            .collect()
    }

    #[test]
    fn a_batch_of_one_is_its_id() {
        let (root, proofs) = BatchProof::build(&ids(1)).unwrap();
        assert_eq!(root, ids(1)[0]);
        assert_eq!(proofs, vec![BatchProof::single()]);
    }

    #[test]
    fn the_tree_follows_its_definition() {
        // Five leaves: ((a b) (c d)) e, with e carried up twice.
        let l = ids(5);
        let (root, proofs) = BatchProof::build(&l).unwrap();
        let ab = parent(&l[0], &l[1]);
        let cd = parent(&l[2], &l[3]);
        assert_eq!(root, parent(&parent(&ab, &cd), &l[4]));
        assert_eq!(proofs[4].siblings(), &[parent(&ab, &cd)]);
        assert_eq!(proofs[2].siblings(), &[l[3], ab, l[4]]);
        assert!(BatchProof::build(&[]).is_err());
        assert!(BatchProof::build(&ids(MAX_SIGNED_BATCH + 1)).is_err());
    }

    #[test]
    fn proofs_of_the_wrong_shape_are_refused() {
        assert!(BatchProof::new(1, 1, vec![]).is_err());
        assert!(BatchProof::new(0, 0, vec![]).is_err());
        assert!(BatchProof::new(0, 2, vec![]).is_err());
        assert!(BatchProof::new(0, 1, ids(1)).is_err());
        assert!(BatchProof::new(0, (MAX_SIGNED_BATCH + 1) as u16, ids(11)).is_err());
        let wire = postcard::to_allocvec(&(0u16, 4096u16, ids(12))).unwrap();
        assert!(postcard::from_bytes::<BatchProof>(&wire).is_err());
    }

    proptest! {
        /// Every leaf's proof leads to the root, round-trips through both
        /// encodings, and no other leaf (nor another place) leads there.
        #[test]
        fn every_proof_leads_to_the_root(n in 1usize..80, pick in any::<prop::sample::Index>()) {
            let l = ids(n);
            let (root, proofs) = BatchProof::build(&l).unwrap();
            for (leaf, proof) in l.iter().zip(&proofs) {
                prop_assert_eq!(proof.root(leaf), root);
            }
            let j = pick.index(n);
            let p = &proofs[j];
            let back: BatchProof = postcard::from_bytes(&postcard::to_allocvec(p).unwrap()).unwrap();
            prop_assert_eq!(&back, p);
            let mut canonical = Vec::new();
            p.write_canonical(&mut canonical);
            prop_assert_eq!(canonical.len(), p.canonical_len());
            let len = BatchProof::canonical_siblings_len(p.index(), p.count()).unwrap();
            prop_assert_eq!(
                BatchProof::from_canonical(p.index(), p.count(), &canonical[4..4 + len]).unwrap(),
                p.clone()
            );
            prop_assert_ne!(p.root(&Address::of(b"another")), root);
            if n > 1 {
                prop_assert_ne!(proofs[(j + 1) % n].root(&l[j]), root);
            }
        }

        /// Decoding never panics, and what decodes has a consistent shape.
        #[test]
        fn decoding_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(p) = postcard::from_bytes::<BatchProof>(&bytes) {
                prop_assert_eq!(
                    path_len(usize::from(p.index()), usize::from(p.count())),
                    Some(p.siblings().len())
                );
            }
        }
    }
}
