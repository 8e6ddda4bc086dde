//! The names journal of a [`RedbStore`](super::RedbStore): `set_named`
//! made durable by appending to a small file instead of committing redb.
//!
//! A durable redb commit writes every page its copy-on-write touched (tens
//! of KiB for a few small values) and syncs them; a consensus node commits
//! three or four times per height, each on the path of a vote. With the
//! journal on ([`RedbStore::with_names_journal`](super::RedbStore::with_names_journal)),
//! `set_named` appends one record (the changes, a sequence number and a
//! checksum) to `<file>.journal`, syncs it (`fdatasync`), and keeps the
//! changes in memory, where reads look first: redb is not written at all.
//! Every [`JOURNAL_CHECKPOINT_RECORDS`] records or
//! [`JOURNAL_CHECKPOINT_BYTES`] bytes, the write is a *checkpoint*: the
//! changes held in memory and its own go to redb in one durable commit,
//! and the journal is emptied. (Committing each record to redb without a
//! sync cost a B-tree commit per write, and redb keeps the pages of
//! unsynced commits in memory until a synced one.)
//!
//! **What makes replay safe.** Each checkpoint also writes, in the same
//! redb transaction, the sequence number of the last record it covers
//! (the *applied mark*). Opening a store replays the records after the
//! mark, in order, in one durable commit, then empties the journal.
//! Records at or below the mark are skipped, so a journal that could not
//! be emptied (or whose emptying a crash undid) never takes a name back to
//! an older value. A write whose append failed gives up its sequence
//! number and makes the next write a checkpoint, which commits redb
//! durably (mark included) and empties the journal again: the failed
//! record, even if it reached the disk, is then below the mark. As with
//! any failed durable write, a record whose append reported an error may
//! still be replayed if the process stops before the next write: a failed
//! `set_named` may or may not have taken effect. A checkpoint whose commit
//! fails keeps the changes in memory and readable (they are in the
//! journal); redb refuses further writes until the store is reopened, which
//! replays them.
//!
//! **What is refused.** Opening is refused ([`CamError::Storage`]) when the
//! journal does not start with its magic bytes, when a record is cut short
//! or damaged (its checksum fails, or its length is past the file's end or
//! [`JOURNAL_MAX_RECORD_BYTES`]) and an intact record with a higher
//! sequence number than the mark and the records before it follows it
//! anywhere in the file (an acknowledged record, or its header, is damaged),
//! when the sequence numbers after the mark skip one (a record the store
//! acknowledged is missing), or when a checksummed record does not decode.
//! A damaged record that no intact later record follows is the last
//! append, cut by a crash (whatever length its torn header claims): it was
//! never acknowledged and is dropped.
//!
//! File format: `MAGIC` (`HGNAMEJ2`, 8 bytes) ‖ the store's tag (16
//! bytes), then records of `length u32 LE ‖ sequence u64 LE ‖ checksum
//! (16 bytes) ‖ payload (length bytes)`, then zeros (the file is created
//! with `PREALLOCATED` bytes, and emptied by writing zeros over its
//! records, the first header first); a header of zeros ends the records.
//! The checksum field is 8 bytes of keyed BLAKE3 over length u32 LE ‖
//! sequence u64 LE under the header key (keyed BLAKE3 of `"hologram
//! names-journal header v2"` under the store's journal key), then 8 bytes
//! of keyed BLAKE3 over sequence ‖ payload under the journal key itself (32
//! random bytes drawn when the store is first opened, kept in its file);
//! the tag is the first 16 bytes of keyed BLAKE3 of `"hologram
//! names-journal tag v2"` under the journal key. A header is checked
//! before its payload is hashed, so headers made up of other bytes cost a
//! short hash each, whatever length they claim. Keyed checksums make
//! a record unforgeable by whoever chooses the bytes written under a name
//! (the search for a later intact record after a damaged one then cannot
//! be fooled), and the tag tells a journal left beside another store file
//! apart: refused if it holds anything, else emptied. The first format
//! (`HGNAMEJ1`, no tag; checksum BLAKE3-derive(`CHECKSUM_CONTEXT`,
//! sequence ‖ payload)) is still read, and replaced on opening. The payload
//! is `count u32 ‖ (name length u32 ‖ name ‖ 0 | 1 ‖ [data length u32 ‖
//! data])*`; objects are re-addressed from their bytes on replay.

use crate::store::Name;
use crate::{CamError, Object, SharedBytes};
use hologram_lattice::DeriveContext;
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

/// The bytes a journal file is created with (zeros after the magic), so
/// that an append within them does not change the file's size: the sync of
/// an append then writes the data alone, not the file's inode as well (one
/// I/O fewer per record, measured as about a third of the sync's cost).
const PREALLOCATED: u64 = 4 << 20;
/// The first bytes of a journal file: the magic, then the store's tag.
const MAGIC: [u8; 8] = *b"HGNAMEJ2";
/// The magic of the first format: no tag, checksums not keyed. Still read
/// (a journal left by an earlier build is replayed), never written.
const MAGIC_V1: [u8; 8] = *b"HGNAMEJ1";
/// Bytes before the first record: the magic and the store's tag.
const HEADER: usize = MAGIC.len() + 16;
/// Bytes before a record's payload: length, sequence, checksum.
const RECORD_HEADER: usize = 4 + 8 + 16;
/// The key-derivation context of a record's checksum.
const CHECKSUM_CONTEXT: &str = "hologram names-journal record v1";

/// The largest payload a record holds; larger change sets are committed to
/// redb durably instead (and empty the journal).
pub const JOURNAL_MAX_RECORD_BYTES: usize = 64 << 20;
/// Records appended before a checkpoint commits their changes to redb and
/// the journal is emptied.
pub const JOURNAL_CHECKPOINT_RECORDS: u64 = 64;
/// Bytes appended before a checkpoint commits their changes to redb and the
/// journal is emptied: with the records' count, what bounds the changes held
/// in memory.
pub const JOURNAL_CHECKPOINT_BYTES: u64 = PREALLOCATED - HEADER as u64;

/// The journal's path for the store file `store`: `<store>.journal`.
pub(super) fn path_for(store: &Path) -> PathBuf {
    let mut name = store.as_os_str().to_owned();
    name.push(".journal");
    PathBuf::from(name)
}

/// A storage error about the journal at `path`.
fn error(path: &Path, what: impl std::fmt::Display) -> CamError {
    CamError::Storage(format!("names journal {}: {what}", path.display()))
}

/// The checksum of a record in a first-format journal.
fn checksum_v1(sequence: u64, payload: &[u8]) -> [u8; 16] {
    static CONTEXT: DeriveContext = DeriveContext::new(CHECKSUM_CONTEXT);
    let mut hasher = CONTEXT.hasher();
    hasher.update(&sequence.to_le_bytes());
    hasher.update(payload);
    first_16(hasher.finalize())
}

fn first_16(hash: blake3::Hash) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&hash.as_bytes()[..16]);
    out
}

/// A store's journal key: a secret drawn when the store first opens,
/// kept in its file. Records are checksummed with it (keyed BLAKE3), so
/// that only this store's own appends verify: bytes a client chose (a
/// value written under a name) cannot pass for a record, and a journal
/// left beside another store file is told apart by its tag.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct JournalKey {
    /// The key, as stored.
    key: [u8; 32],
    /// The key that authenticates a record's header (derived from `key`).
    header: [u8; 32],
}

impl std::fmt::Debug for JournalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JournalKey(..)")
    }
}

impl JournalKey {
    /// The key whose stored bytes are `key`.
    pub(super) fn new(key: [u8; 32]) -> Self {
        let header = *blake3::keyed_hash(&key, b"hologram names-journal header v2").as_bytes();
        Self { key, header }
    }

    /// A fresh key from the operating system's generator.
    pub(super) fn generate() -> Self {
        use rand::Rng as _;
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        Self::new(key)
    }

    /// The key's bytes, as stored.
    pub(super) fn bytes(&self) -> &[u8; 32] {
        &self.key
    }

    /// What a journal's header holds after the magic: names the key, and
    /// reveals nothing of it.
    fn tag(&self) -> [u8; 16] {
        first_16(blake3::keyed_hash(
            &self.key,
            b"hologram names-journal tag v2",
        ))
    }

    /// A record's checksum field: 8 bytes authenticating its header
    /// (length and sequence number), then 8 authenticating its sequence
    /// number and payload. The first half is checked before the payload is
    /// hashed, so a header that bytes not from this store make up costs
    /// one short hash, whatever length it claims.
    fn checksum(&self, sequence: u64, payload: &[u8]) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.header_mac(payload.len(), sequence));
        let mut hasher = blake3::Hasher::new_keyed(&self.key);
        hasher.update(&sequence.to_le_bytes());
        hasher.update(payload);
        out[8..].copy_from_slice(&hasher.finalize().as_bytes()[..8]);
        out
    }

    /// The first half of a record's checksum field.
    fn header_mac(&self, len: usize, sequence: u64) -> [u8; 8] {
        let mut header = [0u8; 12];
        header[..4].copy_from_slice(&(len as u32).to_le_bytes());
        header[4..].copy_from_slice(&sequence.to_le_bytes());
        let mut out = [0u8; 8];
        out.copy_from_slice(&blake3::keyed_hash(&self.header, &header).as_bytes()[..8]);
        out
    }
}

/// How the records of a journal being read are checksummed.
#[derive(Clone, Copy)]
enum Sums<'a> {
    /// The first format's (not keyed).
    V1,
    /// Keyed with the store's key.
    Keyed(&'a JournalKey),
}

impl Sums<'_> {
    /// Whether a header's checksum field can belong to it: for a keyed
    /// journal, its first half authenticates the length and sequence
    /// number (one short hash); the first format has nothing to check.
    fn header_ok(self, len: usize, sequence: u64, sum: &[u8; 16]) -> bool {
        match self {
            Sums::V1 => true,
            Sums::Keyed(key) => sum[..8] == key.header_mac(len, sequence),
        }
    }

    /// The checksum field a record of `sequence` and `payload` has.
    fn of(self, sequence: u64, payload: &[u8]) -> [u8; 16] {
        #[cfg(test)]
        tests::HASHED.with(|h| h.set(h.get() + payload.len() as u64));
        match self {
            Sums::V1 => checksum_v1(sequence, payload),
            Sums::Keyed(key) => key.checksum(sequence, payload),
        }
    }
}

/// The bytes of the payload of a record holding `changes`.
pub(super) fn encoded_len(changes: &[(Name, Option<Object>)]) -> usize {
    4 + changes
        .iter()
        .map(|(n, o)| 5 + n.as_bytes().len() + o.as_ref().map_or(0, |o| 4 + o.data().len()))
        .sum::<usize>()
}

/// The payload of a record holding `changes`.
pub(super) fn encode(changes: &[(Name, Option<Object>)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded_len(changes));
    out.extend_from_slice(&(changes.len() as u32).to_le_bytes());
    for (name, object) in changes {
        out.extend_from_slice(&(name.as_bytes().len() as u32).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        match object {
            None => out.push(0),
            Some(object) => {
                out.push(1);
                out.extend_from_slice(&(object.data().len() as u32).to_le_bytes());
                out.extend_from_slice(object.data());
            }
        }
    }
    out
}

/// Reads a `u32` length at the front of `bytes`.
fn take_u32(bytes: &mut &[u8]) -> Result<usize, String> {
    let (n, rest) = bytes
        .split_first_chunk::<4>()
        .ok_or("the payload ends inside a length")?;
    *bytes = rest;
    Ok(u32::from_le_bytes(*n) as usize)
}

/// Takes `n` bytes from the front of `bytes`.
fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
    if bytes.len() < n {
        return Err(format!("a length of {n} runs past the payload's end"));
    }
    let (head, rest) = bytes.split_at(n);
    *bytes = rest;
    Ok(head)
}

/// The changes of a record's payload. Every length is checked against the
/// bytes that remain before anything is allocated for it.
pub(super) fn decode(mut bytes: &[u8]) -> Result<Vec<(Name, Option<Object>)>, String> {
    let count = take_u32(&mut bytes)?;
    // Each change takes at least 5 bytes: no allocation past the payload.
    if count > bytes.len() / 5 {
        return Err(format!("{count} changes cannot fit in the payload"));
    }
    let mut changes = Vec::with_capacity(count);
    for _ in 0..count {
        let len = take_u32(&mut bytes)?;
        let name = Name::new(take(&mut bytes, len)?).map_err(|e| e.to_string())?;
        let object = match take(&mut bytes, 1)?[0] {
            0 => None,
            1 => {
                let len = take_u32(&mut bytes)?;
                let data = take(&mut bytes, len)?;
                Some(Object::new(SharedBytes::copy_from_slice(data)))
            }
            tag => return Err(format!("unknown change tag {tag}")),
        };
        changes.push((name, object));
    }
    if !bytes.is_empty() {
        return Err(format!("{} bytes after the last change", bytes.len()));
    }
    Ok(changes)
}

/// The records of a journal file, as read at open.
#[derive(Debug, Default)]
pub(super) struct Records {
    /// Each intact record's sequence number and payload, in file order.
    pub(super) records: Vec<(u64, Vec<u8>)>,
    /// Bytes dropped at the end: an incomplete or damaged last record.
    pub(super) torn_bytes: u64,
}

/// A record's header: payload length, sequence number and checksum.
fn header(bytes: &[u8]) -> Option<(usize, u64, [u8; 16])> {
    let (len, rest) = bytes.split_first_chunk::<4>()?;
    let (sequence, rest) = rest.split_first_chunk::<8>()?;
    let (sum, _) = rest.split_first_chunk::<16>()?;
    Some((
        u32::from_le_bytes(*len) as usize,
        u64::from_le_bytes(*sequence),
        *sum,
    ))
}

/// The intact record at the front of `bytes`, if there is one: its
/// sequence number, payload and length in the file.
fn record<'a>(bytes: &'a [u8], sums: Sums<'_>) -> Option<(u64, &'a [u8], usize)> {
    let (len, sequence, sum) = header(bytes)?;
    if len > JOURNAL_MAX_RECORD_BYTES || !sums.header_ok(len, sequence, &sum) {
        return None;
    }
    let end = RECORD_HEADER.saturating_add(len);
    let payload = bytes.get(RECORD_HEADER..end)?;
    (sums.of(sequence, payload) == sum).then_some((sequence, payload, end))
}

/// The offset in `bytes` of an intact record whose sequence number is
/// above `after` (and not implausibly far above it), searching byte by
/// byte: after a damaged record, whether an acknowledged one follows it.
/// Only headers whose sequence number is in range are checked, and in a
/// keyed journal a header's own authentication is checked before its
/// payload is hashed: a pass of short hashes at most, whatever the bytes
/// (a client's data written under a name) claim. (A first-format journal,
/// whose headers are not authenticated, can cost a hash of each claimed
/// payload; such journals come only from the build before the key.)
fn later_record(bytes: &[u8], after: u64, sums: Sums<'_>) -> Option<(usize, u64)> {
    // No more records can follow than headers fit in the bytes.
    let highest = after.saturating_add((bytes.len() / RECORD_HEADER) as u64 + 1);
    (0..bytes.len().saturating_sub(RECORD_HEADER)).find_map(|at| {
        let (_, sequence, _) = header(&bytes[at..])?;
        if sequence <= after || sequence > highest {
            return None;
        }
        record(&bytes[at..], sums).map(|(sequence, _, _)| (at, sequence))
    })
}

/// Parses a journal file's bytes; see the [module docs](self) for what is
/// refused and what is dropped. `mark` is the applied mark of the store:
/// records at or below it are stale, and do not count as acknowledged
/// records following a damaged one. `key` is the store's journal key.
pub(super) fn parse(bytes: &[u8], mark: u64, key: &JournalKey) -> Result<Records, String> {
    // An empty file, or one whose creation was cut short (the size
    // reached the disk, the bytes not: zeros): nothing in it.
    if (bytes.len() < HEADER && (MAGIC.starts_with(bytes) || bytes.starts_with(&MAGIC)))
        || bytes.iter().all(|&b| b == 0)
    {
        return Ok(Records::default());
    }
    let (mut rest, sums) = if let Some(rest) = bytes.strip_prefix(&MAGIC_V1[..]) {
        (rest, Sums::V1)
    } else if let Some((tag, rest)) = bytes
        .strip_prefix(&MAGIC[..])
        .and_then(|b| b.split_first_chunk::<16>())
    {
        if *tag != key.tag() {
            if rest.iter().all(|&b| b == 0) {
                return Ok(Records::default());
            }
            return Err(
                "it belongs to another store file (its tag is not this store's): \
                 if this store's file was replaced on purpose, remove the journal"
                    .into(),
            );
        }
        (rest, Sums::Keyed(key))
    } else if let Some(newer) = bytes
        .strip_prefix(b"HGNAMEJ")
        .and_then(|b| b.first())
        .filter(|v| (b'3'..=b'9').contains(v))
    {
        return Err(format!(
            "it is of a newer format (HGNAMEJ{}) than this build replays: open the store \
             with a newer build (removing the journal would lose acknowledged writes)",
            char::from(*newer)
        ));
    } else {
        return Err("it does not start with the journal's magic bytes".into());
    };
    let mut out = Records::default();
    while !rest.is_empty() {
        let Some((sequence, payload, end)) = record(rest, sums) else {
            // The end of the records: the zeros of the preallocated space
            // or of an emptying, or a record cut short or damaged. If it
            // was the last append (a crash during it: never acknowledged),
            // no intact record with a higher sequence number follows,
            // whatever its header says (a torn header can claim any
            // length). If one does, an acknowledged record or its header
            // is damaged: refused, not dropped. (Stale records of an
            // emptying cut short are at or below the mark.)
            let after = out.records.last().map_or(mark, |(s, _)| *s).max(mark);
            if let Some((at, later)) = later_record(&rest[1..], after, sums) {
                let offset = bytes.len() - rest.len();
                return Err(format!(
                    "the record at byte {offset} is damaged and an intact record (sequence {later}) follows it at byte {}",
                    offset + 1 + at
                ));
            }
            let head = rest.get(..RECORD_HEADER).unwrap_or(rest);
            if head.iter().any(|&b| b != 0) {
                out.torn_bytes = rest
                    .iter()
                    .rposition(|&b| b != 0)
                    .map_or(0, |i| i as u64 + 1);
            }
            break;
        };
        out.records.push((sequence, payload.to_vec()));
        rest = &rest[end..];
    }
    Ok(out)
}

/// Reads and parses the journal at `path` of a store whose applied mark is
/// `mark`; `None` if there is none.
pub(super) fn read(path: &Path, mark: u64, key: &JournalKey) -> Result<Option<Records>, CamError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(error(path, format!("opening: {e}"))),
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| error(path, format!("reading: {e}")))?;
    parse(&bytes, mark, key)
        .map(Some)
        .map_err(|why| error(path, why))
}

/// Writes an empty journal at `path` for the store whose key is `key`: its
/// magic bytes and the key's tag, then zeros up to [`PREALLOCATED`] bytes,
/// synced, the directory entry too.
pub(super) fn reset(path: &Path, key: &JournalKey) -> Result<File, CamError> {
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(|e| error(path, format!("creating: {e}")))?;
    file.write_all(&MAGIC)
        .and_then(|()| file.write_all(&key.tag()))
        .and_then(|()| write_zeros(&file, HEADER as u64, PREALLOCATED - HEADER as u64))
        .and_then(|()| file.sync_all())
        .map_err(|e| error(path, format!("emptying: {e}")))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // The directory entry: without it a new journal may vanish with
        // the records synced into it. (Not possible on every platform.)
        if let Ok(dir) = File::open(dir) {
            let _ = dir.sync_all();
        }
    }
    Ok(file)
}

/// Writes `len` zeros at `offset` of `file`, from one static buffer: no
/// allocation of the journal's size (a freed multi-MiB buffer raises
/// glibc's mmap threshold, and later allocations fragment its heap).
fn write_zeros(file: &File, offset: u64, len: u64) -> std::io::Result<()> {
    static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(ZEROS.len() as u64);
        write_at(file, &ZEROS[..n as usize], offset + done)?;
        done += n;
    }
    Ok(())
}

/// Writes all of `bytes` at `offset` of `file`.
fn write_at(mut file: &File, bytes: &[u8], offset: u64) -> std::io::Result<()> {
    file.seek(SeekFrom::Start(offset))?;
    file.write_all(bytes)
}

/// Test-only faults: the next append on this thread writes its record,
/// syncs it, then reports an error (the worst case: on disk, not
/// acknowledged); the next emptying on this thread zeros the first
/// header, syncs it, then reports an error; the next checkpoint on this
/// thread fails before its redb commit.
#[cfg(test)]
pub(super) mod faults {
    use std::cell::Cell;
    thread_local! {
        pub(in super::super) static FAIL_APPEND: Cell<bool> = const { Cell::new(false) };
        pub(in super::super) static FAIL_EMPTY: Cell<bool> = const { Cell::new(false) };
        pub(in super::super) static FAIL_CHECKPOINT: Cell<bool> = const { Cell::new(false) };
    }

    /// Takes the armed fault, disarming it.
    pub(in super::super) fn take(fault: &'static std::thread::LocalKey<Cell<bool>>) -> bool {
        fault.with(|f| f.replace(false))
    }
}

/// The open journal of a store that journals its names.
#[derive(Debug)]
pub(super) struct Journal {
    file: File,
    path: PathBuf,
    /// The store's journal key: checksums the records.
    key: JournalKey,
    /// The sequence number of the next record.
    pub(super) next: u64,
    /// Records and bytes appended since the journal was last emptied; the
    /// next record goes at byte `HEADER + bytes`.
    records: u64,
    bytes: u64,
    /// Bytes after the header that may be other than zero (`bytes`, and
    /// what a failed append may have left past them): what emptying zeros.
    dirty: u64,
    /// An append, a redb commit after one or an emptying failed: the next
    /// write commits redb durably and empties the journal.
    pub(super) failed: bool,
}

/// A journal as opening a store left it: the sequence number its next
/// record takes, and the file, emptied, if there was one.
#[derive(Debug)]
pub(super) struct Replayed {
    /// The sequence number of the next record.
    pub(super) next: u64,
    /// The journal file, emptied; `None` if there was none.
    pub(super) file: Option<File>,
    /// The store's journal key.
    pub(super) key: JournalKey,
}

impl Journal {
    /// Starts the journal at `path` as opening left it (creating an empty
    /// one if there was none).
    pub(super) fn start(path: PathBuf, replayed: Replayed) -> Result<Self, CamError> {
        let file = match replayed.file {
            Some(file) => file,
            None => reset(&path, &replayed.key)?,
        };
        Ok(Self {
            file,
            path,
            key: replayed.key,
            next: replayed.next,
            records: 0,
            bytes: 0,
            dirty: 0,
            failed: false,
        })
    }

    /// Whether the next write is to commit redb durably: a checkpoint is
    /// due, or something failed.
    pub(super) fn durable_due(&self) -> bool {
        self.failed
            || self.records >= JOURNAL_CHECKPOINT_RECORDS
            || self.bytes >= JOURNAL_CHECKPOINT_BYTES
    }

    /// Writes the record `sequence` with `payload` after the last one and
    /// syncs the file.
    pub(super) fn append(&mut self, sequence: u64, payload: &[u8]) -> Result<(), CamError> {
        let mut record = Vec::with_capacity(RECORD_HEADER + payload.len());
        record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        record.extend_from_slice(&sequence.to_le_bytes());
        record.extend_from_slice(&self.key.checksum(sequence, payload));
        record.extend_from_slice(payload);
        self.dirty = self.dirty.max(self.bytes + record.len() as u64);
        write_at(&self.file, &record, HEADER as u64 + self.bytes)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| error(&self.path, format!("appending record {sequence}: {e}")))?;
        #[cfg(test)]
        if faults::take(&faults::FAIL_APPEND) {
            return Err(error(&self.path, "appending: a test's fault"));
        }
        self.records += 1;
        self.bytes += record.len() as u64;
        Ok(())
    }

    /// Empties the journal, after a durable redb commit made its records
    /// redundant: zeros over the first record's header, synced (from then
    /// on the journal reads as empty, whatever a crash leaves of the rest),
    /// then zeros over the other records, synced.
    pub(super) fn empty(&mut self) -> Result<(), CamError> {
        let start = HEADER as u64;
        let zero = |file: &File, from: u64, len: u64| {
            write_zeros(file, from, len).and_then(|()| file.sync_data())
        };
        let header = self.dirty.min(RECORD_HEADER as u64);
        zero(&self.file, start, header)
            .and_then(|()| {
                #[cfg(test)]
                if faults::take(&faults::FAIL_EMPTY) {
                    return Err(std::io::Error::other("a test's fault"));
                }
                zero(&self.file, start + header, self.dirty - header)
            })
            .map_err(|e| error(&self.path, format!("emptying: {e}")))?;
        self.records = 0;
        self.bytes = 0;
        self.dirty = 0;
        self.failed = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    thread_local! {
        /// Payload bytes checksummed on this thread (see `Sums::of`).
        pub(super) static HASHED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }

    fn name(s: &str) -> Name {
        Name::new(s.as_bytes().to_vec()).unwrap()
    }

    fn key() -> JournalKey {
        JournalKey::new([0x5a; 32])
    }

    /// A journal of `records`, as this build writes them.
    fn file(records: &[(u64, Vec<u8>)]) -> Vec<u8> {
        let key = key();
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&key.tag());
        for (seq, payload) in records {
            out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            out.extend_from_slice(&seq.to_le_bytes());
            out.extend_from_slice(&key.checksum(*seq, payload));
            out.extend_from_slice(payload);
        }
        out
    }

    /// A journal of `records` in the first format (no tag, no key).
    fn file_v1(records: &[(u64, Vec<u8>)]) -> Vec<u8> {
        let mut out = MAGIC_V1.to_vec();
        for (seq, payload) in records {
            out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            out.extend_from_slice(&seq.to_le_bytes());
            out.extend_from_slice(&checksum_v1(*seq, payload));
            out.extend_from_slice(payload);
        }
        out
    }

    #[test]
    fn changes_round_trip() {
        let changes = vec![
            (name("a"), Some(Object::new(b"one".to_vec()))),
            (name("b"), None),
            (name("c"), Some(Object::new(Vec::new()))),
        ];
        assert_eq!(decode(&encode(&changes)).unwrap(), changes);
        assert_eq!(encoded_len(&changes), encode(&changes).len());
    }

    #[test]
    fn a_cut_or_damaged_last_record_is_dropped_and_an_earlier_one_refused() {
        let records = vec![(1, encode(&[(name("a"), None)])), (2, b"xyz".to_vec())];
        let whole = file(&records);
        assert_eq!(parse(&whole, 0, &key()).unwrap().records, records);
        for cut in HEADER..whole.len() {
            let parsed = parse(&whole[..cut], 0, &key()).unwrap();
            assert!(parsed.records.len() < 2, "cut at {cut}");
            // Only a cut between records leaves no torn bytes.
            let between = cut == HEADER || cut == whole.len() - 3 - RECORD_HEADER;
            assert_eq!(parsed.torn_bytes == 0, between, "cut at {cut}");
            // The same followed by zeros, as in a preallocated file.
            let mut padded = whole[..cut].to_vec();
            padded.resize(whole.len() + 64, 0);
            assert!(
                parse(&padded, 0, &key()).unwrap().records.len() < 2,
                "cut at {cut}"
            );
        }
        let mut padded = whole.clone();
        padded.extend_from_slice(&[0; 100]);
        assert_eq!(parse(&padded, 0, &key()).unwrap().records, records);
        padded[whole.len() - 1] ^= 1;
        assert_eq!(parse(&padded, 0, &key()).unwrap().records.len(), 1);
        // The last record's payload damaged: dropped.
        let mut last = whole.clone();
        *last.last_mut().unwrap() ^= 1;
        let parsed = parse(&last, 0, &key()).unwrap();
        assert_eq!(parsed.records.len(), 1);
        // The first record's payload damaged while the second follows: refused.
        let mut first = whole.clone();
        first[HEADER + RECORD_HEADER] ^= 1;
        assert!(parse(&first, 0, &key())
            .unwrap_err()
            .contains("intact record (sequence 2) follows"));
        // An emptying cut short after its first step (the first header
        // zeroed and synced, after the durable commit that raised the mark
        // to the last record): nothing, whatever follows.
        let mut emptying = whole.clone();
        emptying[HEADER..HEADER + RECORD_HEADER].fill(0);
        let parsed = parse(&emptying, 2, &key()).unwrap();
        assert!(parsed.records.is_empty());
        assert_eq!(parsed.torn_bytes, 0);
        // Not a journal, or one of a newer format.
        assert!(parse(b"something else", 0, &key()).is_err());
        let newer = parse(b"HGNAMEJ3 and more", 0, &key()).unwrap_err();
        assert!(newer.contains("newer format (HGNAMEJ3)"), "{newer}");
        // An empty or half-created file holds nothing.
        assert!(parse(&[], 0, &key()).unwrap().records.is_empty());
        assert!(parse(&MAGIC[..3], 0, &key()).unwrap().records.is_empty());
        assert!(parse(&MAGIC, 0, &key()).unwrap().records.is_empty());
        assert!(parse(&[0; 4096], 0, &key()).unwrap().records.is_empty());
    }

    #[test]
    fn a_torn_header_of_the_last_record_is_dropped_whatever_length_it_claims() {
        let records = vec![(1, encode(&[(name("a"), None)])), (2, vec![7; 300])];
        let whole = file(&records);
        let second = whole.len() - 300 - RECORD_HEADER;
        // The header's first bytes (its page) not on disk, the rest of it
        // and the payload there: the length reads as anything.
        for torn in 1..RECORD_HEADER {
            for fill in [0u8, 0xff] {
                let mut bytes = whole.clone();
                bytes[second..second + torn].fill(fill);
                bytes.resize(bytes.len() + 4096, 0);
                let parsed = parse(&bytes, 0, &key()).unwrap();
                assert_eq!(parsed.records, records[..1], "torn {torn} fill {fill}");
                assert!(parsed.torn_bytes > 0, "torn {torn} fill {fill}");
            }
        }
    }

    #[test]
    fn a_damaged_record_with_a_later_one_after_it_is_refused_a_stale_one_not() {
        let records: Vec<_> = (5..9).map(|s| (s, vec![s as u8; 40])).collect();
        let whole = file(&records);
        let at = |i: usize| HEADER + i * (RECORD_HEADER + 40);
        // Bit rot in the length, the sequence or the checksum of an
        // acknowledged record, or its header zeroed: the records after it
        // were acknowledged too.
        for byte in [0, 3, 4, 12, 27] {
            let mut bytes = whole.clone();
            bytes[at(1) + byte] ^= 0x40;
            let why = parse(&bytes, 0, &key()).unwrap_err();
            assert!(why.contains("intact record (sequence 7)"), "{why}");
        }
        let mut zeroed = whole.clone();
        zeroed[at(1)..at(1) + RECORD_HEADER].fill(0);
        assert!(parse(&zeroed, 0, &key()).is_err());
        // The same when the records after it are at or below the mark
        // (stale, from an emptying cut short): nothing to replay after it.
        let mut stale = whole.clone();
        stale[at(1)] ^= 0x40;
        let parsed = parse(&stale, 8, &key()).unwrap();
        assert_eq!(parsed.records, records[..1]);
        assert!(parse(&stale, 7, &key()).is_err());
    }

    #[test]
    fn a_first_format_journal_is_read_with_its_own_checksums() {
        let records = vec![(3, encode(&[(name("a"), None)])), (4, b"xyz".to_vec())];
        let v1 = file_v1(&records);
        assert_eq!(parse(&v1, 0, &key()).unwrap().records, records);
        // Its checksums are not keyed: a keyed journal's are not them.
        let mut other = v1.clone();
        other.splice(..8, MAGIC.iter().copied().chain(key().tag()));
        assert!(parse(&other, 0, &key()).unwrap().records.is_empty());
    }

    #[test]
    fn another_stores_journal_is_refused_unless_it_is_empty() {
        let records = vec![(1, b"abc".to_vec())];
        let other = JournalKey::new([0xa5; 32]);
        let why = parse(&file(&records), 0, &other).unwrap_err();
        assert!(why.contains("another store"), "{why}");
        let mut empty = file(&[]);
        empty.resize(4096, 0);
        assert!(parse(&empty, 0, &other).unwrap().records.is_empty());
    }

    #[test]
    fn a_record_forged_without_the_key_is_not_a_record() {
        // A client's data holding what would be a record under the
        // public first-format checksum, after a torn last append: the
        // forgery does not make opening refuse the journal.
        let forged = file_v1(&[(9, b"forged".to_vec())])[MAGIC_V1.len()..].to_vec();
        let mut bytes = file(&[(1, b"one".to_vec())]);
        let torn = bytes.len();
        bytes.extend_from_slice(&[0xff; RECORD_HEADER]);
        bytes.extend_from_slice(&forged);
        let parsed = parse(&bytes, 0, &key()).unwrap();
        assert_eq!(parsed.records, vec![(1, b"one".to_vec())]);
        assert_eq!(parsed.torn_bytes as usize, bytes.len() - torn);
    }

    #[test]
    fn made_up_headers_after_a_damaged_record_cost_no_payload_hashing() {
        // A torn last record, then 1 MiB of a client's bytes shaped as
        // headers claiming 512 KiB payloads with plausible sequence
        // numbers, every 12 bytes: without the header's authentication the
        // search would hash ~87,000 × 512 KiB.
        let mut bytes = file(&[(1, b"one".to_vec())]);
        bytes.extend_from_slice(&[0xff; RECORD_HEADER]);
        let mut shaped = Vec::new();
        while shaped.len() < 1 << 20 {
            shaped.extend_from_slice(&(512u32 << 10).to_le_bytes());
            shaped.extend_from_slice(&2u64.to_le_bytes());
        }
        bytes.extend_from_slice(&shaped);
        bytes.extend_from_slice(&vec![0; 1 << 20]);
        HASHED.with(|h| h.set(0));
        let parsed = parse(&bytes, 0, &key()).unwrap();
        assert_eq!(parsed.records, vec![(1, b"one".to_vec())]);
        let hashed = HASHED.with(|h| h.get());
        assert!(hashed < 1 << 10, "{hashed} payload bytes hashed");
        // The first format cannot tell: it hashes what the headers claim.
        let mut v1 = file_v1(&[(1, b"one".to_vec())]);
        v1.extend_from_slice(&[0xff; RECORD_HEADER]);
        v1.extend_from_slice(&shaped[..4096]);
        v1.extend_from_slice(&vec![0; 1 << 20]);
        HASHED.with(|h| h.set(0));
        assert_eq!(parse(&v1, 0, &key()).unwrap().records.len(), 1);
        assert!(HASHED.with(|h| h.get()) > 1 << 20);
    }

    #[test]
    fn a_payload_that_lies_about_its_lengths_is_refused() {
        assert!(decode(&u32::MAX.to_le_bytes()).is_err());
        let mut bad = 1u32.to_le_bytes().to_vec();
        bad.extend_from_slice(&1u32.to_le_bytes());
        bad.push(b'a');
        bad.push(1);
        bad.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&bad).is_err());
    }

    proptest! {
        #[test]
        fn parsing_and_decoding_arbitrary_bytes_never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..512),
            prefixed in any::<bool>(),
        ) {
            let bytes = match prefixed {
                true => [&MAGIC[..], &key().tag(), &bytes].concat(),
                false => bytes,
            };
            let _ = parse(&bytes, 0, &key());
            let _ = decode(&bytes);
        }
    }
}
