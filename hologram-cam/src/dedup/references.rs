//! The references a holder counts, and the seam that keeps them:
//! [`ReferenceStore`], in memory ([`MemoryReferences`]) or durable
//! (implemented by [`RedbStore`](crate::RedbStore), beside its objects).

use super::wire::Reference;
use crate::hashing::FastMap;
use crate::CamError;
use async_trait::async_trait;
use hologram_lattice::{Address, PeerId};
use serde::{Deserialize, Serialize};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The references of one object: those counted, and those released (kept
/// as tombstones so that a late or repeated copy of a reference that was
/// released is not counted again).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferenceSet {
    /// The references counted.
    pub live: ReferenceList,
    /// The references released.
    pub released: ReferenceList,
}

/// References in ascending order, each once.
///
/// A sorted vector: an object almost always has one or a few references,
/// where a B-tree would allocate a node of some 450 bytes per object and
/// holder. Decoding refuses a list out of order or with repeats.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<Reference>")]
pub struct ReferenceList(Vec<Reference>);

impl ReferenceList {
    /// No references.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `r` is in the list.
    pub fn contains(&self, r: &Reference) -> bool {
        self.0.binary_search(r).is_ok()
    }

    /// Adds `r`; returns whether it was new.
    pub fn insert(&mut self, r: Reference) -> bool {
        match self.0.binary_search(&r) {
            Ok(_) => false,
            Err(at) => {
                self.0.insert(at, r);
                true
            }
        }
    }

    /// Removes `r`; returns whether it was there.
    pub fn remove(&mut self, r: &Reference) -> bool {
        match self.0.binary_search(r) {
            Ok(at) => {
                self.0.remove(at);
                true
            }
            Err(_) => false,
        }
    }

    /// How many references.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The references, ascending.
    pub fn iter(&self) -> std::slice::Iter<'_, Reference> {
        self.0.iter()
    }
}

impl TryFrom<Vec<Reference>> for ReferenceList {
    type Error = CamError;
    fn try_from(list: Vec<Reference>) -> Result<Self, CamError> {
        if list.windows(2).any(|w| w[0] >= w[1]) {
            return Err(CamError::Decode(
                "reference list: references out of order".into(),
            ));
        }
        Ok(Self(list))
    }
}

impl FromIterator<Reference> for ReferenceList {
    fn from_iter<I: IntoIterator<Item = Reference>>(iter: I) -> Self {
        let mut list: Vec<Reference> = iter.into_iter().collect();
        list.sort_unstable();
        list.dedup();
        Self(list)
    }
}

impl Extend<Reference> for ReferenceList {
    fn extend<I: IntoIterator<Item = Reference>>(&mut self, iter: I) {
        for r in iter {
            self.insert(r);
        }
    }
}

impl IntoIterator for ReferenceList {
    type Item = Reference;
    type IntoIter = std::vec::IntoIter<Reference>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a ReferenceList {
    type Item = &'a Reference;
    type IntoIter = std::slice::Iter<'a, Reference>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Key-derivation context of [`ReferenceSet::tag`].
pub const REFERENCES_TAG_CONTEXT: &str = "hologram dedup-references v1";

/// The encoded size of one reference: client (32) and op (8).
const REFERENCE_BYTES: usize = 40;

impl ReferenceSet {
    /// Counts the references not released before; returns the live count.
    pub fn add(&mut self, references: impl IntoIterator<Item = Reference>) -> u64 {
        for r in references {
            if !self.released.contains(&r) {
                self.live.insert(r);
            }
        }
        self.count()
    }

    /// Takes in another holder's set of the same object: its releases are
    /// final here too, and its live references count unless released
    /// here. Returns the live count.
    pub fn merge(&mut self, other: ReferenceSet) -> u64 {
        for r in &other.released {
            self.live.remove(r);
        }
        self.released.extend(other.released);
        self.add(other.live)
    }

    /// Releases `reference` (for good); returns the live count.
    pub fn release(&mut self, reference: Reference) -> u64 {
        self.live.remove(&reference);
        self.released.insert(reference);
        self.count()
    }

    /// How many references are counted.
    pub fn count(&self) -> u64 {
        self.live.len() as u64
    }

    /// A short tag of the set, which anti-entropy compares between holders
    /// ([`HeldAddress`](super::HeldAddress)): the first 8 bytes (LE) of the
    /// BLAKE3 derive-key ([`REFERENCES_TAG_CONTEXT`]) of its canonical bytes,
    /// never [`UNKNOWN_REFERENCES`](super::UNKNOWN_REFERENCES) (which it
    /// replaces by 1). Equal sets have equal tags; sets that differ have
    /// equal tags with probability 2^-64.
    pub fn tag(&self) -> u64 {
        let hash = blake3::Hasher::new_derive_key(REFERENCES_TAG_CONTEXT)
            .update(&self.to_bytes())
            .finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&hash.as_bytes()[..8]);
        match u64::from_le_bytes(first) {
            super::UNKNOWN_REFERENCES => 1,
            tag => tag,
        }
    }

    /// The canonical bytes: the live references, then the released ones,
    /// each list as a `u32` LE count followed by the references in order,
    /// each as client (32 bytes) ‖ op (`u64` LE).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(8 + REFERENCE_BYTES * (self.live.len() + self.released.len()));
        for list in [&self.live, &self.released] {
            out.extend_from_slice(&(list.len() as u32).to_le_bytes());
            for r in list {
                out.extend_from_slice(r.client.as_bytes());
                out.extend_from_slice(&r.op.to_le_bytes());
            }
        }
        out
    }

    /// Decodes [`to_bytes`](Self::to_bytes), checking every count against
    /// the bytes left before reading, and refusing trailing bytes and
    /// lists out of order (which the encoding never produces).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CamError> {
        let mut rest = bytes;
        let live = read_list(&mut rest)?;
        let released = read_list(&mut rest)?;
        if !rest.is_empty() {
            return Err(CamError::Decode(format!(
                "reference set: {} bytes after the end",
                rest.len()
            )));
        }
        Ok(Self { live, released })
    }
}

/// Takes `n` bytes off the front of `rest`.
fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], CamError> {
    if rest.len() < n {
        return Err(CamError::Decode(format!(
            "reference set: {n} bytes wanted, {} left",
            rest.len()
        )));
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Ok(head)
}

/// Reads one count-prefixed list of references, strictly increasing.
fn read_list(rest: &mut &[u8]) -> Result<ReferenceList, CamError> {
    let mut count = [0u8; 4];
    count.copy_from_slice(take(rest, 4)?);
    let count = u32::from_le_bytes(count) as usize;
    // Bound the count by the bytes present before reading any of them.
    let body = take(rest, count.saturating_mul(REFERENCE_BYTES))?;
    let mut set = Vec::with_capacity(count);
    for chunk in body.chunks_exact(REFERENCE_BYTES) {
        let (client, op) = chunk.split_at(32);
        let mut id = [0u8; 32];
        id.copy_from_slice(client);
        let mut number = [0u8; 8];
        number.copy_from_slice(op);
        let r = Reference {
            client: PeerId::from_bytes(id),
            op: u64::from_le_bytes(number),
        };
        if set.last().is_some_and(|last| *last >= r) {
            return Err(CamError::Decode(
                "reference set: references out of order".into(),
            ));
        }
        set.push(r);
    }
    Ok(ReferenceList(set))
}

/// Where a holder keeps the [`ReferenceSet`] of each object it holds.
///
/// The holder reads, changes and writes back one object's set at a time
/// (it serializes the requests that touch one object), so an
/// implementation needs no read-modify-write of its own.
///
/// **Durability.** When `save` or `forget` returns `Ok`, a durable
/// implementation has made the change survive a crash, as a durable
/// [`Store`](crate::Store) does with its objects; then a holder restarted
/// over it counts exactly the references it acknowledged. A holder keeps
/// objects first and references second, so after a crash an object may
/// have no set (it is counted as one unknown reference: it may leak, it is
/// never freed early) and a set may outlive its object (ignored).
#[async_trait]
pub trait ReferenceStore: Send + Sync {
    /// The set recorded for `address`, if any.
    async fn load(&self, address: &Address) -> Result<Option<ReferenceSet>, CamError>;

    /// Records `set` for `address`.
    async fn save(&self, address: &Address, set: &ReferenceSet) -> Result<(), CamError>;

    /// Forgets the set of `address`.
    async fn forget(&self, address: &Address) -> Result<(), CamError>;

    /// Changes the set of `address` (an empty one if none is recorded) with
    /// `f`, records it, and returns its live count. The default loads,
    /// changes and saves; an implementation may do it in place.
    async fn update(
        &self,
        address: &Address,
        f: &mut (dyn for<'s> FnMut(&'s mut ReferenceSet) + Send),
    ) -> Result<u64, CamError> {
        let mut set = self.load(address).await?.unwrap_or_default();
        f(&mut set);
        self.save(address, &set).await?;
        Ok(set.count())
    }
}

/// Reference sets in memory: lost when the process ends. The map is cut
/// into shards by the address's first byte, each behind its own mutex.
#[derive(Debug, Default)]
pub struct MemoryReferences {
    sets: [Mutex<FastMap<Address, ReferenceSet>>; REFERENCE_SHARDS],
}

/// How many independently locked parts a [`MemoryReferences`] has.
const REFERENCE_SHARDS: usize = 16;

impl MemoryReferences {
    /// No sets yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn shard(&self, address: &Address) -> MutexGuard<'_, FastMap<Address, ReferenceSet>> {
        self.sets[usize::from(address.as_bytes()[0]) % REFERENCE_SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl ReferenceStore for MemoryReferences {
    async fn load(&self, address: &Address) -> Result<Option<ReferenceSet>, CamError> {
        let sets = self.shard(address);
        Ok(sets.get(address).cloned())
    }

    async fn save(&self, address: &Address, set: &ReferenceSet) -> Result<(), CamError> {
        let mut sets = self.shard(address);
        sets.insert(*address, set.clone());
        Ok(())
    }

    async fn forget(&self, address: &Address) -> Result<(), CamError> {
        let mut sets = self.shard(address);
        sets.remove(address);
        Ok(())
    }

    async fn update(
        &self,
        address: &Address,
        f: &mut (dyn for<'s> FnMut(&'s mut ReferenceSet) + Send),
    ) -> Result<u64, CamError> {
        let mut sets = self.shard(address);
        let set = sets.entry(*address).or_default();
        f(set);
        Ok(set.count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reference() -> impl Strategy<Value = Reference> {
        (any::<[u8; 32]>(), any::<u64>()).prop_map(|(c, op)| Reference {
            client: PeerId::from_bytes(c),
            op,
        })
    }

    proptest! {
        #[test]
        fn sets_round_trip(
            live in prop::collection::btree_set(reference(), 0..8),
            released in prop::collection::btree_set(reference(), 0..8),
        ) {
            let set = ReferenceSet { live: live.into_iter().collect(), released: released.into_iter().collect() };
            prop_assert_eq!(ReferenceSet::from_bytes(&set.to_bytes()), Ok(set));
        }

        #[test]
        fn two_holders_that_merge_each_other_hold_one_set_with_one_tag(
            a_live in prop::collection::btree_set(reference(), 0..6),
            a_released in prop::collection::btree_set(reference(), 0..6),
            b_live in prop::collection::btree_set(reference(), 0..6),
            b_released in prop::collection::btree_set(reference(), 0..6),
        ) {
            let mut a = ReferenceSet::default();
            a.add(a_live);
            a_released.into_iter().for_each(|r| { a.release(r); });
            let mut b = ReferenceSet::default();
            b.add(b_live);
            b_released.into_iter().for_each(|r| { b.release(r); });
            let differed = a != b;
            prop_assert_eq!(differed, a.tag() != b.tag());
            // Anti-entropy: a pulls from b, then b from a.
            a.merge(b.clone());
            b.merge(a.clone());
            prop_assert_eq!(&a, &b);
            prop_assert_eq!(a.tag(), b.tag());
            prop_assert_ne!(a.tag(), crate::dedup::UNKNOWN_REFERENCES);
        }

        #[test]
        fn garbage_is_an_error_never_a_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = ReferenceSet::from_bytes(&bytes);
        }

        #[test]
        fn a_truncated_or_extended_record_is_refused(
            live in prop::collection::btree_set(reference(), 1..4),
            cut in 1usize..40,
        ) {
            let bytes = ReferenceSet { live: live.into_iter().collect(), released: ReferenceList::new() }.to_bytes();
            prop_assert!(ReferenceSet::from_bytes(&bytes[..bytes.len() - cut]).is_err());
            let mut longer = bytes.clone();
            longer.push(0);
            prop_assert!(ReferenceSet::from_bytes(&longer).is_err());
        }
    }

    #[test]
    fn a_list_out_of_order_or_repeated_is_refused_on_the_wire() {
        let r = |op| Reference {
            client: PeerId::from_bytes([4; 32]),
            op,
        };
        let good: ReferenceList = [r(2), r(1), r(2)].into_iter().collect();
        assert_eq!(good.iter().copied().collect::<Vec<_>>(), [r(1), r(2)]);
        let wire = postcard::to_allocvec(&good).unwrap();
        assert_eq!(postcard::from_bytes::<ReferenceList>(&wire), Ok(good));
        for bad in [vec![r(2), r(1)], vec![r(1), r(1)]] {
            let wire = postcard::to_allocvec(&bad).unwrap();
            assert!(postcard::from_bytes::<ReferenceList>(&wire).is_err());
        }
    }

    #[test]
    fn a_huge_count_is_refused_before_anything_is_read() {
        let mut bytes = u32::MAX.to_le_bytes().to_vec();
        bytes.extend_from_slice(&[0; 44]);
        assert!(ReferenceSet::from_bytes(&bytes).is_err());
    }

    #[test]
    fn a_merge_keeps_releases_from_either_side() {
        let r = |op| Reference {
            client: PeerId::from_bytes([2; 32]),
            op,
        };
        let mut here = ReferenceSet::default();
        here.add([r(1), r(2)]);
        here.release(r(3));
        let mut there = ReferenceSet::default();
        there.add([r(3), r(4)]);
        there.release(r(1));
        assert_eq!(here.merge(there), 2);
        assert_eq!(here.live, [r(2), r(4)].into_iter().collect());
        assert_eq!(here.released, [r(1), r(3)].into_iter().collect());
    }

    #[test]
    fn a_released_reference_is_never_counted_again() {
        let r = Reference {
            client: PeerId::from_bytes([1; 32]),
            op: 7,
        };
        let mut set = ReferenceSet::default();
        assert_eq!(set.add([r]), 1);
        assert_eq!(set.add([r]), 1);
        assert_eq!(set.release(r), 0);
        assert_eq!(set.add([r]), 0);
        assert_eq!(set.release(r), 0);
    }
}
