//! Persistence through a [`Store`]: the committed log and the voting record.

mod block;
mod record;
mod replay;
mod snapshot;

pub use record::MAX_RECORD_BYTES;
pub use replay::Replay;

use crate::membership::Membership;
use crate::message::Decision;
use crate::replica::{Replica, ReplicaConfig, VotingRecord};
use crate::snapshot::SnapshotParts;
use crate::{ConsensusError, ValidatorSet};
use hologram_cam::Name;
use hologram_cam::{CamError, Object, Store};
use hologram_lattice::Address;
use hologram_receipt::KeyPair;
use std::sync::Arc;

/// The prefix of a block's name; the height follows, u64 big-endian.
const BLOCK_NAME: &[u8] = b"hologram-consensus/log/block/";
/// The names of the voting record's two copies.
const RECORD_NAMES: [&[u8]; 2] = [
    b"hologram-consensus/log/voting-record",
    b"hologram-consensus/log/voting-record/copy",
];

/// The highest pipeline depth a replica may use
/// ([`ReplicaConfig::max_pipeline_depth`]): a replica at next height `h`
/// has signed nothing at `h + MAX_PIPELINE_DEPTH` or above.
pub(crate) const MAX_PIPELINE_DEPTH: u64 = 256;

/// The version of a stored object that begins with `prefix` and a version
/// digit newer than `supported` (written by a newer build), if it is one:
/// [`ConsensusError::UnsupportedFormat`] rather than a damaged object, so
/// that an older build refuses the log instead of discarding (and
/// re-fetching over) what a newer one wrote.
fn newer_format(
    what: &'static str,
    data: &[u8],
    prefix: &[u8],
    supported: u32,
) -> Result<(), ConsensusError> {
    let digit = data.strip_prefix(prefix).and_then(|rest| rest.first());
    match digit.and_then(|d| d.checked_sub(b'0')).map(u32::from) {
        Some(found) if found <= 9 && found > supported => Err(ConsensusError::UnsupportedFormat {
            what,
            found,
            supported,
        }),
        _ => Ok(()),
    }
}

/// The name of the block of `height`.
fn block_name(height: u64) -> Result<Name, ConsensusError> {
    let mut bytes = BLOCK_NAME.to_vec();
    bytes.extend_from_slice(&height.to_be_bytes());
    Ok(Name::new(bytes)?)
}

/// The names of the voting record's copies.
fn record_names() -> Result<[Name; 2], ConsensusError> {
    Ok([Name::new(RECORD_NAMES[0])?, Name::new(RECORD_NAMES[1])?])
}

/// What [`DurableLog::open`] (or [`Replay::finish`]) found.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The height of the first of `decisions`: the log's start from
    /// [`DurableLog::open`], which keeps them all.
    pub first: u64,
    /// The certified snapshot the log was compacted to (the decision naming
    /// it, and its parts, all verified): restore the machine from it, then
    /// apply `decisions`.
    pub snapshot: Option<(Decision, SnapshotParts)>,
    /// The verified decisions of heights `first..`, in order: the log's
    /// whole verified run from [`DurableLog::open`], its newest ones from
    /// [`Replay::finish`].
    pub decisions: Vec<Decision>,
    /// The newest voting record (empty if none was stored).
    pub record: VotingRecord,
    /// Stored blocks and records that were not used, each with the address
    /// of its object and why (malformed, corrupt in the store, certificate
    /// invalid, or a verified block beyond a missing height).
    pub rejected: Vec<(Address, ConsensusError)>,
    /// Whether the stored voting record was lost: every copy of it was
    /// rejected (malformed, or reported corrupt by the store). Then what
    /// the validator signed is unknown, and signing from an empty record
    /// could sign a conflicting vote: [`replica`](Self::replica) starts a
    /// replica that abstains until it is past every height it may have
    /// signed in, and [`LocalValidator::durable`](crate::LocalValidator::durable)
    /// refuses to start.
    pub record_unreadable: bool,
    /// The height after the highest block name stored, whether or not that
    /// block was readable, or the log's length the newest voting record
    /// names if that is higher (a read of a stored name may wrongly say it
    /// is unset): the validator had delivered no further than this when it
    /// stopped (the store keeps every name it acknowledged).
    pub stored_end: u64,
    /// The validator sets at the log's end (the genesis membership given
    /// to the log, every change its blocks carry applied, or the one its
    /// snapshot holds): `None` only for a default value.
    pub membership: Option<Membership>,
}

impl Recovered {
    /// An error if the voting record was lost (see
    /// [`record_unreadable`](Self::record_unreadable)): for a validator
    /// that cannot abstain and catch up (a [`LocalValidator`](crate::LocalValidator)).
    pub fn check_record(&self) -> Result<(), ConsensusError> {
        if self.record_unreadable {
            return Err(ConsensusError::Log(
                "a stored voting record is unreadable: starting from an older one could sign conflicting votes".into(),
            ));
        }
        Ok(())
    }

    /// The length of the log's verified run: the next height to decide.
    pub fn next_height(&self) -> u64 {
        self.first + self.decisions.len() as u64
    }

    /// The voting record a replica restarts from: the one recovered, or,
    /// if it was lost ([`record_unreadable`](Self::record_unreadable)), an
    /// empty one that **abstains** ([`VotingRecord::abstain_below`]) below
    /// `stored_end + 256`.
    ///
    /// The rule: a replica that had delivered the heights below `d` signs
    /// only at heights below `d + max_pipeline_depth`, and the depth is at
    /// most 256; a validator stores the block of every height it delivered
    /// (in the same atomic write as the record that let it sign further),
    /// so `d ≤ stored_end` even when blocks themselves rotted. Below that
    /// height the replica signs no proposal and no vote: it follows the
    /// decisions its peers certify (re-fetching the ones its log lost) and
    /// serves them, and the group decides without it (as with any crashed
    /// validator; `f` of them are tolerated). From there on nothing it
    /// signed before can conflict. The rule assumes the store keeps what it
    /// acknowledged (the [`Store`] contract): a disk that loses
    /// acknowledged writes can lose the record and the block names alike.
    ///
    /// A damaged log needs the same care: a replica drops from its record
    /// the heights it delivered, so if blocks it had stored were lost (the
    /// verified run ends before `stored_end`), the heights between were
    /// decided and it may have voted in them with no trace left. It
    /// abstains below `stored_end` (and re-fetches those heights' certified
    /// decisions from its peers, which makes them moot).
    pub fn restart_record(&self) -> VotingRecord {
        let mut record = if self.record_unreadable {
            let abstain_below = self.stored_end.saturating_add(MAX_PIPELINE_DEPTH);
            tracing::warn!(
                abstain_below,
                "the voting record was lost: signing nothing below this height"
            );
            VotingRecord {
                abstain_below,
                ..VotingRecord::default()
            }
        } else {
            self.record.clone()
        };
        if self.stored_end > self.next_height() && record.abstain_below < self.stored_end {
            tracing::warn!(
                verified = self.next_height(),
                stored = self.stored_end,
                "stored blocks were lost: signing nothing below the last one stored"
            );
            record.abstain_below = self.stored_end;
        }
        record
    }

    /// A replica restarted from what was recovered: its log's length as the
    /// next height, the newest `config.retain_decisions` decisions to serve
    /// catch-up (within `config.retain_decision_bytes`), and the voting
    /// record ([`restart_record`](Self::restart_record): a lost one makes
    /// the replica abstain for a while, never sign from scratch).
    pub fn replica(&self, keys: KeyPair, config: ReplicaConfig) -> Result<Replica, ConsensusError> {
        let keep = self.decisions.len().saturating_sub(config.retain_decisions);
        let mut replica = Replica::restore(
            keys,
            config,
            self.next_height(),
            self.decisions[keep..].to_vec(),
            self.restart_record(),
        )?;
        if let Some((d, _)) = &self.snapshot {
            if let Some(c) = d.batch.checkpoint() {
                replica.remember_certified(d.clone(), *c);
            }
        }
        if let Some(m) = &self.membership {
            replica.restore_membership(m.clone())?;
        }
        Ok(replica)
    }
}

/// The committed log and voting record of one replica in a [`Store`]; see
/// the docs below.
///
/// A [`DurableLog`] keeps two kinds of objects in the store's **named key
/// space** ([`Store::get_named`]), never among its content-addressed
/// objects:
///
/// - a **block** per decided height, under the name
///   `"hologram-consensus/log/block/" ‖ height u64 BE`: the batch and its
///   commit certificate, appended in height order when decided, in bytes
///   defined by hand:
///
///   ```text
///   "hologram block v1" (17 bytes) ‖ height u64 LE ‖ round u32 LE ‖
///   value (72 canonical receipt bytes) ‖ signer count u16 LE ‖
///   for each signer: node id (32) ‖ signature (64) ‖
///   batch canonical bytes (crate::batch) to the end
///   ```
///
/// - the replica's **voting record** ([`VotingRecord`]: locks, every vote and
///   proposal it signed, commands its clients submitted), in two copies
///   under the names `"hologram-consensus/log/voting-record"` and
///   `"hologram-consensus/log/voting-record/copy"`, both replaced in one
///   atomic write whenever it changes, *before* anything it signed is sent
///   (write-ahead), so a restarted validator re-sends what it signed
///   instead of signing a conflicting vote. A copy that rots is outlived by
///   the other; if both are lost the replica abstains for a while
///   ([`Recovered::restart_record`]). Its object is `"hologram
///   voting-record v3" ‖ sequence u64 LE ‖ abstain_below u64 LE ‖ log_len
///   u64 LE ‖ postcard body` (local state, never signed or hashed for
///   consensus); `log_len` is the log's length with the write (its heights
///   below were stored, whatever a read of their names says later: see
///   [`Recovered::stored_end`]). `v1` (no abstain height) and `v2` objects
///   (no log length) are still read.
///
/// - once compacted ([`DurableLog::install_snapshot`]), the **base**, under
///   `"hologram-consensus/log/base"`: the certified decision (a block, as
///   above) whose batch names the snapshot the log starts at, and the
///   snapshot's **parts** ([`SnapshotParts`]: manifest, then chunks, each
///   an [`Object`] verified by its address when read back) under
///   `"hologram-consensus/log/snapshot/" ‖ index u32 BE`. The base, the
///   parts and the deletion of every block below the snapshot's height are
///   one atomic write. They live in the named key space too, so that
///   deleting them never touches a CAM sharing the store.
///
/// [`DurableLog::open`] reads the base (and its parts), then the names of
/// heights `start`, `start + 1`, ... until one is unset (read twice before
/// the log ends there), and the record's names: its cost is one lookup per
/// stored height plus seven (plus the parts), whatever else the store
/// holds. **A log may share its store
/// with a CAM** (a `DistributedCAM`, a deduplication holder): their objects
/// are never read by the log, and nothing they do (putting, removing,
/// handing off objects) touches the log's names. A store holds at most one
/// log.
///
/// Every block is checked as a decision from a peer is: its commit
/// certificate must verify against the validator set and name its batch's
/// receipt ([`Decision::verify`]). A block that does not decode, that the
/// store reports corrupt, or whose certificate fails is rejected with a
/// specific error in [`Recovered::rejected`] and never applied; the log is
/// the run of verified heights from 0, and what is missing after it is
/// fetched from peers (certified, so no peer is trusted).
///
/// Crash safety rests on the store's contract: `set_named` is durable and
/// atomic when it returns. An append writes its heights in one `set_named`
/// (all or none after a crash), and the record is replaced in one, so a
/// crash leaves either the old or the new record, never neither; a
/// validator acknowledges a height or sends a vote only after its write
/// returned.
///
/// ```
/// use hologram_cam::MemoryStore;
/// use hologram_consensus::{DurableLog, ValidatorSet};
/// use hologram_receipt::KeyPair;
/// use std::sync::Arc;
///
/// let set = ValidatorSet::new(vec![KeyPair::from_seed([1; 32]).node_id()])?;
/// let store = Arc::new(MemoryStore::new());
/// let (log, recovered) = futures::executor::block_on(DurableLog::open(store, set))?;
/// assert_eq!(log.len(), 0);
/// assert!(recovered.decisions.is_empty() && recovered.rejected.is_empty());
/// # Ok::<(), hologram_consensus::ConsensusError>(())
/// ```
pub struct DurableLog {
    store: Arc<dyn Store>,
    /// The validator sets at `len`.
    membership: Membership,
    /// Every set in force from `start` on: `(first height, set)`, to check
    /// the blocks read back for a peer.
    history: Vec<(u64, ValidatorSet)>,
    len: u64,
    /// The first height stored (the height of the snapshot compacted to).
    start: u64,
    /// The number of snapshot parts stored.
    parts: u32,
    /// The number of set-change links stored with the base.
    links: u32,
    record: VotingRecord,
    record_seq: u64,
}

impl core::fmt::Debug for DurableLog {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DurableLog")
            .field("len", &self.len)
            .field("record_seq", &self.record_seq)
            .finish_non_exhaustive()
    }
}

impl DurableLog {
    /// Opens the log in `store`, recovering what it holds (see the
    /// docs of [`DurableLog`]): one lookup per stored height plus seven, not a
    /// scan. Errors only when the store fails (other than reporting an
    /// object corrupt).
    pub async fn open(
        store: Arc<dyn Store>,
        validators: impl Into<Membership>,
    ) -> Result<(Self, Recovered), ConsensusError> {
        Self::replay(store, validators, usize::MAX, usize::MAX)
            .finish()
            .await
    }

    /// [`open`](Self::open), one decision at a time: the returned [`Replay`]
    /// yields the verified decisions in height order
    /// ([`Replay::next`]), then [`Replay::finish`] opens the log and returns
    /// what was recovered, with only the newest `keep` decisions (and at
    /// most `keep_bytes` of their stored bytes, the newest one always) in
    /// [`Recovered::decisions`]. Recovering a long log this way holds one
    /// decision at a time plus those kept, not the whole log.
    ///
    /// `validators` is the group's genesis set (with the default set-change
    /// delay) or its genesis [`Membership`] (with the delay its replicas
    /// use): each block is checked against the set in force at its height,
    /// the changes the blocks carry applied in order.
    pub fn replay(
        store: Arc<dyn Store>,
        validators: impl Into<Membership>,
        keep: usize,
        keep_bytes: usize,
    ) -> Replay {
        Replay::new(store, validators.into(), keep, keep_bytes)
    }

    /// The newest stored voting record (with its sequence number and the
    /// log length it names; an empty one numbered 0 if none), and whether
    /// it was lost: every copy stored unreadable (each rejected, with why,
    /// into `rejected`).
    ///
    /// Both copies are written by one atomic write, so a readable copy holds
    /// the newest record written unless that write never returned (then
    /// nothing it let the replica sign was sent): the newest readable copy
    /// is the record. Each copy is read twice, so a read that returns a
    /// copy's previous value (a stale read) is outvoted by the other read.
    async fn read_record(
        store: &dyn Store,
        rejected: &mut Vec<(Address, ConsensusError)>,
    ) -> Result<(record::Read, bool), ConsensusError> {
        let mut newest: Option<record::Read> = None;
        let mut unreadable = false;
        for name in record_names()? {
            let mut rejected_copy = false;
            for _ in 0..2 {
                let copy = match store.get_named(&name).await {
                    Ok(None) => continue,
                    Ok(Some(object)) => {
                        // Written by a newer build: the log is refused.
                        record::check_version(object.data())?;
                        record::decode(object.data()).map_err(|reason| {
                            let address = object.address();
                            let what = "voting record";
                            (
                                address,
                                ConsensusError::CorruptStored {
                                    what,
                                    address,
                                    reason,
                                },
                            )
                        })
                    }
                    Err(CamError::Corrupt(address)) => {
                        Err((address, ConsensusError::Store(CamError::Corrupt(address))))
                    }
                    Err(e) => return Err(e.into()),
                };
                match copy {
                    Ok(read) if newest.as_ref().is_none_or(|n| read.seq > n.seq) => {
                        newest = Some(read);
                    }
                    Ok(_) => {}
                    Err(rejection) => {
                        unreadable = true;
                        if !rejected_copy {
                            rejected_copy = true;
                            rejected.push(rejection);
                        }
                    }
                }
            }
        }
        Ok(match newest {
            Some(read) => (read, false),
            None => (record::Read::default(), unreadable),
        })
    }

    /// Decodes a block and checks it with `verify`.
    fn check_block(
        verify: impl FnOnce(&Decision) -> Result<(), ConsensusError>,
        address: Address,
        data: &[u8],
    ) -> Result<Decision, ConsensusError> {
        block::check_version(data)?;
        let d = block::decode(data).map_err(|reason| ConsensusError::CorruptStored {
            what: "block",
            address,
            reason,
        })?;
        verify(&d).map_err(|e| ConsensusError::RejectedBlock {
            height: d.height(),
            address,
            source: Box::new(e),
        })?;
        Ok(d)
    }

    /// The next height to append: the heights stored are
    /// [`start`](Self::start)` .. len`.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether no height is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The validator set in force at the log's next height.
    pub fn validators(&self) -> &ValidatorSet {
        self.membership.current()
    }

    /// The validator sets from the log's next height on.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// The set in force at `h` (a height the log holds or the next ones).
    fn set_for(&self, h: u64) -> Option<&ValidatorSet> {
        let i = self.history.partition_point(|(from, _)| *from <= h);
        self.history.get(i.checked_sub(1)?).map(|(_, s)| s)
    }

    /// Applies `decisions` (appended in order) to the sets.
    fn follow(&mut self, decisions: &[Decision]) {
        for d in decisions {
            match self.membership.apply(d) {
                Ok(Some(at)) => self.history.push((at, self.membership.newest().clone())),
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "the log's sets are out of step"),
            }
        }
    }

    /// The voting record last saved.
    pub fn record(&self) -> &VotingRecord {
        &self.record
    }

    /// Reads the stored decisions of heights `first .. end` (those below
    /// [`len`](Self::len)), in height order, each checked as at
    /// [`open`](Self::open) (decoded, its certificate verified): what serves
    /// a peer's catch-up past the decisions a replica keeps in memory
    /// ([`LogRead`](crate::LogRead)). Stops once the blocks read reach
    /// `max_bytes` (at least one is read), and before the first block that
    /// is missing, damaged or does not verify (the run before it is
    /// returned). Errors only when the store fails otherwise.
    pub async fn read(
        &self,
        first: u64,
        end: u64,
        max_bytes: usize,
    ) -> Result<Vec<Decision>, ConsensusError> {
        let mut decisions = Vec::new();
        if first < self.start {
            return Ok(decisions); // compacted: the snapshot is offered instead
        }
        let mut bytes = 0usize;
        for height in first..end.min(self.len) {
            if bytes >= max_bytes && !decisions.is_empty() {
                break;
            }
            let object = match self.store.get_named(&block_name(height)?).await {
                Ok(Some(object)) => object,
                Ok(None) | Err(CamError::Corrupt(_)) => break,
                Err(e) => return Err(e.into()),
            };
            let Some(set) = self.set_for(height) else {
                break;
            };
            match Self::check_block(|d| d.verify(set), object.address(), object.data()) {
                Ok(d) if d.height() == height => decisions.push(d),
                _ => break,
            }
            bytes = bytes.saturating_add(object.data().len());
        }
        Ok(decisions)
    }

    /// Appends decided heights, which must continue the log in order, in one
    /// atomic batch. Each is verified first; none is stored if any fails.
    pub async fn append(&mut self, decisions: &[Decision]) -> Result<(), ConsensusError> {
        let mut sets = self.membership.clone();
        for d in decisions {
            sets.verify(d)?;
            sets.apply(d)?;
        }
        let objects = self.blocks(decisions)?;
        if objects.is_empty() {
            return Ok(());
        }
        self.store.set_named(objects).await?;
        self.len += decisions.len() as u64;
        self.follow(decisions);
        Ok(())
    }

    /// The named objects of `decisions`' blocks, which must continue the
    /// log in order (not verified here).
    fn blocks(
        &self,
        decisions: &[Decision],
    ) -> Result<Vec<(Name, Option<Object>)>, ConsensusError> {
        let mut objects = Vec::with_capacity(decisions.len() + 1);
        for (i, d) in decisions.iter().enumerate() {
            let expected = self.len + i as u64;
            if d.height() != expected {
                return Err(ConsensusError::Log(format!(
                    "height {} appended where height {expected} was next",
                    d.height()
                )));
            }
            objects.push((block_name(expected)?, Some(Object::new(block::encode(d)))));
        }
        Ok(objects)
    }

    /// The named objects replacing the stored record's two copies with
    /// `record` under the next sequence number (naming the log's length
    /// `log_len`), if it differs from the one last saved.
    fn record_object(
        &self,
        record: &VotingRecord,
        log_len: u64,
    ) -> Result<Vec<(Name, Option<Object>)>, ConsensusError> {
        if *record == self.record {
            return Ok(Vec::new());
        }
        let object = Object::new(record::encode(self.record_seq + 1, record, log_len)?);
        let [first, copy] = record_names()?;
        Ok(vec![(first, Some(object.clone())), (copy, Some(object))])
    }

    /// Makes `record` durable if it differs from the one last saved:
    /// replaces the stored record, in one atomic write, with it under the
    /// next sequence number.
    pub async fn save_record(&mut self, record: &VotingRecord) -> Result<(), ConsensusError> {
        self.persist(&[], record).await
    }

    /// Makes what a replica's step produced durable, before its messages
    /// are sent: the decisions and the replica's voting record, in **one**
    /// atomic write (one store commit, one sync, for everything the step
    /// produced; a crash keeps all of it or none).
    ///
    /// The decisions are not verified again here (unlike
    /// [`append`](Self::append)): they are what the replica delivered, and
    /// a replica delivers a decision only with a certificate it checked
    /// (one it formed from precommits whose signatures it verified, or one
    /// from a peer that it verified on receipt). Blocks read back from the
    /// store are verified by [`open`](Self::open), as always.
    pub async fn persist(
        &mut self,
        decisions: &[Decision],
        record: &VotingRecord,
    ) -> Result<(), ConsensusError> {
        let mut objects = self.blocks(decisions)?;
        let log_len = self.len + decisions.len() as u64;
        let record_objects = self.record_object(record, log_len)?;
        let saves_record = !record_objects.is_empty();
        objects.extend(record_objects);
        if !objects.is_empty() {
            self.store.set_named(objects).await?;
        }
        self.len += decisions.len() as u64;
        self.follow(decisions);
        if saves_record {
            self.record = record.clone();
            self.record_seq += 1;
        }
        // What was signed is durable now (in the record, or moot: its height
        // delivered by this write's blocks).
        self.record.signed = record.signed;
        Ok(())
    }
}
