//! The certified snapshot a [`DurableLog`] was compacted to: its base (the
//! certified decision naming it) and its parts, in the store's named key
//! space, replaced together with the deletion of the blocks below it in one
//! atomic write.

use super::{block, block_name, DurableLog};
use crate::membership::Membership;
use crate::message::Decision;
use crate::snapshot::{read_membership, Checkpoint, SnapshotParts};
use crate::ConsensusError;
use hologram_cam::{CamError, Manifest, Name, Object, Store};
use hologram_lattice::Address;

/// The name of the base: the certified decision naming the snapshot.
const BASE_NAME: &[u8] = b"hologram-consensus/log/base";
/// The prefix of a snapshot part's name; the part's index follows, u32 BE.
const PART_NAME: &[u8] = b"hologram-consensus/log/snapshot/";
/// The prefix of a kept set-change link's name; its index follows, u32 BE.
const LINK_NAME: &[u8] = b"hologram-consensus/log/link/";

fn base_name() -> Result<Name, ConsensusError> {
    Ok(Name::new(BASE_NAME)?)
}

fn part_name(index: u32) -> Result<Name, ConsensusError> {
    let mut bytes = PART_NAME.to_vec();
    bytes.extend_from_slice(&index.to_be_bytes());
    Ok(Name::new(bytes)?)
}

fn link_name(index: u32) -> Result<Name, ConsensusError> {
    let mut bytes = LINK_NAME.to_vec();
    bytes.extend_from_slice(&index.to_be_bytes());
    Ok(Name::new(bytes)?)
}

/// The certified snapshot a log starts at, read back and verified.
pub(super) struct Base {
    pub(super) decision: Decision,
    pub(super) checkpoint: Checkpoint,
    pub(super) parts: SnapshotParts,
    /// The validator sets at the checkpoint's height (the snapshot's),
    /// with the set-change links kept from below it.
    pub(super) membership: Membership,
    /// The number of links stored.
    pub(super) links: u32,
}

/// The validator sets a snapshot holds, which must be of the group `ours`
/// is (same genesis set and delay), and a check of `certified` (the
/// decision naming the snapshot, of a height at or after it) against them:
/// against the set in force there, or, beyond the heights they know, as a
/// light client with no link would ([`Membership::verify_chain`]).
fn snapshot_membership(
    ours: &Membership,
    certified: &Decision,
    parts: &SnapshotParts,
) -> Result<Membership, ConsensusError> {
    let theirs = read_membership(&parts.bytes())?;
    if (theirs.genesis(), theirs.delay()) != (ours.genesis(), ours.delay()) {
        return Err(ConsensusError::SnapshotMismatch(
            "taken in another group (genesis validator set or set-change delay)".into(),
        ));
    }
    match theirs.verify(certified) {
        Err(ConsensusError::UnknownValidatorSet { .. }) => {
            theirs.verify_chain(&[], certified).map(drop)?
        }
        other => other?,
    }
    Ok(theirs)
}

/// A stored object that is not what its name says: rejected with why.
fn corrupt(what: &'static str, address: Address, reason: impl Into<String>) -> ConsensusError {
    ConsensusError::CorruptStored {
        what,
        address,
        reason: reason.into(),
    }
}

impl DurableLog {
    /// Compacts the log to a certified snapshot, or moves it to one fetched
    /// from peers: in **one** atomic write, the base becomes `certified`
    /// (whose batch must carry a checkpoint that verifies against the
    /// validator set and names `parts`), the parts replace the old ones, and
    /// the blocks below the checkpoint's height are deleted. The log then
    /// starts at that height (and, if it was shorter, ends there: the
    /// heights after it are appended as usual).
    pub async fn install_snapshot(
        &mut self,
        certified: &Decision,
        parts: &SnapshotParts,
    ) -> Result<(), ConsensusError> {
        let mut sets = snapshot_membership(&self.membership, certified, parts)?;
        let c = *certified
            .batch
            .checkpoint()
            .ok_or_else(|| ConsensusError::Log("the decision names no snapshot".into()))?;
        if parts.address() != c.snapshot {
            return Err(ConsensusError::SnapshotAddress {
                part: 0,
                expected: c.snapshot,
                actual: parts.address(),
            });
        }
        if c.height <= self.start {
            return Ok(());
        }
        // The set-change links (certified decisions carrying changes): kept
        // past the deletion of their blocks, for nodes behind them.
        let membership = if c.height > self.len {
            sets.keep_links(self.membership.links());
            &sets
        } else {
            &self.membership
        };
        let links = membership.links();
        let mut changes = vec![(base_name()?, Some(Object::new(block::encode(certified))))];
        for (i, object) in parts.objects().enumerate() {
            changes.push((part_name(i as u32)?, Some(object.clone())));
        }
        for i in parts.len()..self.parts {
            changes.push((part_name(i)?, None));
        }
        for (i, d) in links.iter().enumerate() {
            changes.push((link_name(i as u32)?, Some(Object::new(block::encode(d)))));
        }
        for i in links.len() as u32..self.links {
            changes.push((link_name(i)?, None));
        }
        let stored_links = links.len() as u32;
        for height in self.start..c.height.min(self.len) {
            changes.push((block_name(height)?, None));
        }
        self.store.set_named(changes).await?;
        self.start = c.height;
        if c.height > self.len {
            // Moved to a fetched snapshot: its sets are the log's.
            self.history = sets.sets().map(|(h, s)| (h, s.clone())).collect();
            self.membership = sets;
        }
        self.len = self.len.max(c.height);
        self.parts = parts.len();
        self.links = stored_links;
        Ok(())
    }

    /// The first height whose block the log holds (the height of the
    /// snapshot it was compacted to; 0 before).
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Reads the base and its snapshot's parts back, each verified: the
    /// base's certificate against `validators`, the manifest against the
    /// checkpoint's address, each chunk against the manifest. `None` if
    /// there is no base; if anything fails, it is listed in `rejected` and
    /// `None` returned (the blocks below the base are gone: the log is then
    /// fetched from peers). Also returns the number of parts stored.
    pub(super) async fn read_base(
        store: &dyn Store,
        genesis: &Membership,
        rejected: &mut Vec<(Address, ConsensusError)>,
    ) -> Result<Option<Base>, ConsensusError> {
        let object = match store.get_named(&base_name()?).await {
            Ok(Some(object)) => object,
            Ok(None) => return Ok(None),
            Err(CamError::Corrupt(a)) => {
                rejected.push((a, ConsensusError::Store(CamError::Corrupt(a))));
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        let address = object.address();
        // Checked with the snapshot's sets, once its parts are read.
        let decision = match Self::check_block(|_| Ok(()), address, object.data()) {
            Ok(d) => d,
            Err(e @ ConsensusError::UnsupportedFormat { .. }) => return Err(e),
            Err(e) => {
                rejected.push((address, e));
                return Ok(None);
            }
        };
        let Some(&checkpoint) = decision.batch.checkpoint() else {
            rejected.push((address, corrupt("log base", address, "names no snapshot")));
            return Ok(None);
        };
        match Self::read_parts(store, checkpoint.snapshot).await? {
            Ok(parts) => match snapshot_membership(genesis, &decision, &parts) {
                Ok(mut membership) => {
                    let (links, stored) = Self::read_links(store, rejected).await?;
                    membership.keep_links(&links);
                    Ok(Some(Base {
                        decision,
                        checkpoint,
                        parts,
                        membership,
                        links: stored,
                    }))
                }
                Err(e) => {
                    rejected.push((
                        address,
                        ConsensusError::RejectedBlock {
                            height: decision.height(),
                            address,
                            source: Box::new(e),
                        },
                    ));
                    Ok(None)
                }
            },
            Err(e) => {
                rejected.push((checkpoint.snapshot, e));
                Ok(None)
            }
        }
    }

    /// The set-change links kept with the base, and how many names are
    /// stored. A link that does not decode as a block carrying a set change
    /// is rejected; the others are not verified here: they are evidence for
    /// nodes behind them, which check them as a light client does before
    /// they trust anything by them.
    async fn read_links(
        store: &dyn Store,
        rejected: &mut Vec<(Address, ConsensusError)>,
    ) -> Result<(Vec<Decision>, u32), ConsensusError> {
        let mut links = Vec::new();
        let mut stored = 0;
        while (stored as usize) < crate::membership::MAX_SET_CHANGE_LINKS {
            let object = match store.get_named(&link_name(stored)?).await {
                Ok(Some(object)) => object,
                Ok(None) => break,
                Err(CamError::Corrupt(a)) => {
                    rejected.push((a, ConsensusError::Store(CamError::Corrupt(a))));
                    stored += 1;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            stored += 1;
            let address = object.address();
            match Self::check_block(|_| Ok(()), address, object.data()) {
                Ok(d) if d.batch.set_change().is_some() => links.push(d),
                Ok(_) => {
                    rejected.push((address, corrupt("link", address, "carries no set change")))
                }
                Err(e @ ConsensusError::UnsupportedFormat { .. }) => return Err(e),
                Err(e) => rejected.push((address, e)),
            }
        }
        Ok((links, stored))
    }

    /// The stored parts of the snapshot at `address`, each verified.
    async fn read_parts(
        store: &dyn Store,
        address: Address,
    ) -> Result<Result<SnapshotParts, ConsensusError>, ConsensusError> {
        let get = |i: u32| async move {
            match store.get_named(&part_name(i)?).await {
                Ok(Some(o)) => Ok(Ok(o)),
                Ok(None) => Ok(Err(corrupt(
                    "snapshot part",
                    address,
                    format!("part {i} is missing"),
                ))),
                Err(CamError::Corrupt(a)) => Ok(Err(ConsensusError::Store(CamError::Corrupt(a)))),
                Err(e) => Err(ConsensusError::from(e)),
            }
        };
        let manifest = match get(0).await? {
            Ok(o) => o,
            Err(e) => return Ok(Err(e)),
        };
        if manifest.address() != address {
            return Ok(Err(ConsensusError::SnapshotAddress {
                part: 0,
                expected: address,
                actual: manifest.address(),
            }));
        }
        let listed = match Manifest::decode(manifest.data()) {
            Ok(m) => m,
            Err(e) => {
                return Ok(Err(ConsensusError::SnapshotMalformed(format!(
                    "manifest: {e}"
                ))))
            }
        };
        let mut chunks = Vec::with_capacity(listed.chunks.len());
        for (i, (chunk, len)) in listed.chunks.iter().enumerate() {
            let part = i as u32 + 1;
            let object = match get(part).await? {
                Ok(o) => o,
                Err(e) => return Ok(Err(e)),
            };
            if object.len() != *len as usize {
                return Ok(Err(ConsensusError::SnapshotChunkLength {
                    part,
                    expected: u64::from(*len),
                    actual: object.len() as u64,
                }));
            }
            if object.address() != *chunk {
                return Ok(Err(ConsensusError::SnapshotAddress {
                    part,
                    expected: *chunk,
                    actual: object.address(),
                }));
            }
            chunks.push(object);
        }
        Ok(Ok(SnapshotParts::from_objects(manifest, chunks)))
    }
}
