//! How a [`RedbStore`](super::RedbStore) lays objects out in its file.
//!
//! Four tables:
//!
//! - [`INDEX`]: the 32 bytes of an address → where its bytes are:
//!   `(segment, offset, length)`;
//! - [`SEGMENTS`]: segment number → the bytes of the objects written into it,
//!   back to back;
//! - [`LIVE`]: segment number → how many index entries point into it;
//! - [`MEMBERS`]: segment number → the addresses of the objects written into
//!   it, 32 bytes each, in order (for segments of more than one object).
//!
//! A write transaction appends the new objects of a batch to fresh segments
//! of about [`SEGMENT_BYTES`] each (an object that large or larger gets a
//! segment of its own). Packing small objects this way is what makes a
//! batch cheap: a B-tree keyed by random addresses with 1 KiB values dirties
//! one 4 KiB leaf page per object (about four times the data, plus splits),
//! while the index entries of a whole batch share few pages and the segments
//! are appended at the end of their table. Measured with 1,000 objects of
//! 1 KiB per durable transaction into a fresh store, this is about three
//! times faster than one value per object (see `benches/cam.rs`). The index
//! is still a B-tree keyed by random addresses, though: as the store grows,
//! a batch touches more and more distinct index pages (up to one per
//! object), and the rate falls (criterion's continuous run, which grows the
//! store past 100,000 objects, measures about 13,000 objects/s). A log-
//! structured index would be the next step.
//!
//! A segment is freed when its last object is removed (or rewritten over a
//! corrupt copy). Before that, when no more than a quarter of the objects
//! written into it are still there, it is **compacted** in the same write
//! transaction: its surviving objects are copied into a fresh segment, their
//! index entries repointed, and the old segment freed. So removals in a
//! scattered order cost at most about four times the surviving bytes, not a
//! whole segment per surviving object. (A segment written before [`MEMBERS`]
//! existed has no member list and is only freed when empty.)
//!
//! Nothing read from the file is trusted: an index entry pointing outside
//! its segment, a missing segment, or bytes that do not hash to their
//! address are all reported as a corrupt object, never a panic.

use hologram_lattice::Address;
use redb::{ReadableTable, StorageError, Table, TableDefinition};

use crate::Object;

/// Where an object's bytes are: `(segment, offset, length)`.
pub(super) type Location = (u64, u64, u64);

/// Address bytes → [`Location`].
pub(super) const INDEX: TableDefinition<&[u8; 32], Location> = TableDefinition::new("index");
/// Segment number → object bytes back to back.
pub(super) const SEGMENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("segments");
/// Segment number → how many index entries point into it.
pub(super) const LIVE: TableDefinition<u64, u64> = TableDefinition::new("segment_live");
/// Segment number → the addresses written into it (32 bytes each).
pub(super) const MEMBERS: TableDefinition<u64, &[u8]> = TableDefinition::new("segment_members");

/// A segment is compacted once its live objects are at most this fraction
/// (1 / `COMPACT_BELOW`) of those written into it.
const COMPACT_BELOW: u64 = 4;

/// The size a [`RedbStore`](super::RedbStore) fills a segment to before it
/// starts the next one: 64 bytes short of 64 KiB, so that a full segment and
/// its B-tree leaf's header (16 bytes for this table) fit one 64 KiB page.
/// redb gives a leaf a power-of-two number of pages: a segment of exactly
/// 64 KiB took a 128 KiB page, doubling the file's size, the bytes read per
/// segment and the page cache it needed (measured with 50,000 objects of
/// 1 KiB: a 170 MB file, 103 MB with this bound).
pub const SEGMENT_BYTES: usize = (64 << 10) - 64;

/// The bytes `(offset, length)` of a segment, if they lie inside it.
pub(super) fn slice(segment: &[u8], offset: u64, length: u64) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(length).ok()?)?;
    segment.get(start..end)
}

/// The open tables of one write transaction.
pub(super) struct Tables<'txn> {
    pub(super) index: Table<'txn, &'static [u8; 32], Location>,
    pub(super) segments: Table<'txn, u64, &'static [u8]>,
    pub(super) live: Table<'txn, u64, u64>,
    pub(super) members: Table<'txn, u64, &'static [u8]>,
    /// Segments to compact before the transaction commits.
    pub(super) compact: Vec<u64>,
}

impl Tables<'_> {
    /// Whether an index entry points at exactly `data`.
    fn holds(
        &self,
        (segment, offset, length): Location,
        data: &[u8],
    ) -> Result<bool, StorageError> {
        Ok(self
            .segments
            .get(segment)?
            .is_some_and(|bytes| slice(bytes.value(), offset, length) == Some(data)))
    }

    /// Drops one index entry's claim on `segment`, freeing it at zero and
    /// marking it for compaction when few of its objects are left.
    pub(super) fn release(&mut self, segment: u64) -> Result<(), StorageError> {
        let count = self.live.get(segment)?.map_or(0, |c| c.value());
        if count <= 1 {
            return self.free(segment);
        }
        self.live.insert(segment, count - 1)?;
        let written = self
            .members
            .get(segment)?
            .map_or(0, |m| (m.value().len() / 32) as u64);
        if (count - 1) * COMPACT_BELOW <= written && !self.compact.contains(&segment) {
            self.compact.push(segment);
        }
        Ok(())
    }

    /// Forgets `segment` and its bytes.
    fn free(&mut self, segment: u64) -> Result<(), StorageError> {
        self.live.remove(segment)?;
        self.segments.remove(segment)?;
        self.members.remove(segment)?;
        Ok(())
    }

    /// Removes `address`; returns whether it was present.
    pub(super) fn remove(&mut self, address: &Address) -> Result<bool, StorageError> {
        let Some(entry) = self.index.remove(address.as_bytes())?.map(|e| e.value()) else {
            return Ok(false);
        };
        self.release(entry.0)?;
        self.compact_marked()?;
        Ok(true)
    }

    /// The number a new segment gets: one past the last.
    fn next_segment(&self) -> Result<u64, StorageError> {
        Ok(self
            .segments
            .last()?
            .map_or(0, |(k, _)| k.value().wrapping_add(1)))
    }

    /// Compacts the segments marked by [`release`](Self::release): copies
    /// the objects whose index entries still point into each to fresh
    /// segments, repoints them, and frees the old segment.
    fn compact_marked(&mut self) -> Result<(), StorageError> {
        for old in std::mem::take(&mut self.compact) {
            let Some(members) = self.members.get(old)?.map(|m| m.value().to_vec()) else {
                continue;
            };
            let Some(bytes) = self.segments.get(old)?.map(|b| b.value().to_vec()) else {
                continue;
            };
            let mut next = self.next_segment()?;
            let mut segment = Segment::default();
            for key in members.chunks_exact(32) {
                let key: &[u8; 32] = key.try_into().unwrap_or(&[0; 32]);
                let Some((at, offset, length)) = self.index.get(key)?.map(|e| e.value()) else {
                    continue;
                };
                // Moved elsewhere since, or an entry pointing outside: the
                // latter stays as it is (reads report it as corrupt).
                let Some(data) = (at == old).then(|| slice(&bytes, offset, length)).flatten()
                else {
                    continue;
                };
                next = segment.push(self, key, data, next)?;
            }
            segment.flush(self, next)?;
            self.free(old)?;
        }
        Ok(())
    }

    /// Writes the objects that are missing, or whose stored copy differs
    /// (is corrupt); returns whether anything changed.
    pub(super) fn put_all(&mut self, objects: &[Object]) -> Result<bool, StorageError> {
        let mut next = self.next_segment()?;
        let mut segment = Segment::default();
        // In address order, so that the index is updated leaf after leaf.
        let mut sorted: Vec<&Object> = objects.iter().collect();
        sorted.sort_unstable_by_key(|o| o.address());
        sorted.dedup_by_key(|o| o.address());
        let mut changed = false;
        let mut large = Vec::new();
        for object in sorted {
            let address = object.address();
            let key = address.to_bytes();
            let found = self.index.get(&key)?.map(|e| e.value());
            if let Some(entry) = found {
                if self.holds(entry, object.data())? {
                    continue;
                }
                // A corrupt copy: write the object again, somewhere else.
                self.release(entry.0)?;
            }
            changed = true;
            if object.len() >= SEGMENT_BYTES {
                large.push(object);
                continue;
            }
            next = segment.push(self, &key, object.data(), next)?;
        }
        next = segment.flush(self, next)?;
        // Each large object in a segment of its own.
        for object in large {
            self.index
                .insert(&object.address().to_bytes(), (next, 0, object.len() as u64))?;
            self.segments.insert(next, object.data())?;
            self.live.insert(next, 1)?;
            next = next.wrapping_add(1);
        }
        self.compact_marked()?;
        Ok(changed)
    }
}

/// The segment being filled.
#[derive(Default)]
struct Segment {
    bytes: Vec<u8>,
    /// The addresses of its objects, back to back.
    members: Vec<u8>,
    objects: u64,
}

impl Segment {
    /// Appends an object, pointing its index entry at it in segment
    /// `number`, or in the next one if it would overflow this one (which is
    /// flushed first); returns the number of the segment being filled.
    fn push(
        &mut self,
        tables: &mut Tables<'_>,
        key: &[u8; 32],
        data: &[u8],
        mut number: u64,
    ) -> Result<u64, StorageError> {
        if self.bytes.len() + data.len() > SEGMENT_BYTES {
            number = self.flush(tables, number)?;
        }
        let offset = self.bytes.len() as u64;
        tables
            .index
            .insert(key, (number, offset, data.len() as u64))?;
        self.bytes.extend_from_slice(data);
        self.members.extend_from_slice(key);
        self.objects += 1;
        Ok(number)
    }

    /// Writes the segment as number `number` if it holds any object, and
    /// starts an empty one; returns the number of the next segment.
    fn flush(&mut self, tables: &mut Tables<'_>, number: u64) -> Result<u64, StorageError> {
        if self.objects == 0 {
            return Ok(number);
        }
        tables.segments.insert(number, self.bytes.as_slice())?;
        tables.live.insert(number, self.objects)?;
        if self.objects > 1 {
            tables.members.insert(number, self.members.as_slice())?;
        }
        self.bytes.clear();
        self.members.clear();
        self.objects = 0;
        Ok(number.wrapping_add(1))
    }
}
