//! Persistence through a [`Store`]: the committed log and the voting record.
//!
//! A [`DurableLog`] keeps two kinds of objects in a store:
//!
//! - a **block** per decided height: the batch and its commit certificate,
//!   appended in height order when decided, in bytes defined by hand:
//!
//!   ```text
//!   "hologram block v1" (17 bytes) ‖ height u64 LE ‖ round u32 LE ‖
//!   value (72 canonical receipt bytes) ‖ signer count u16 LE ‖
//!   for each signer: node id (32) ‖ signature (64) ‖
//!   batch canonical bytes (crate::batch) to the end
//!   ```
//!
//! - the replica's **voting record** ([`VotingRecord`]: locks, every vote and
//!   proposal it signed, commands its clients submitted), rewritten whenever
//!   it changes, *before* anything it signed is sent (write-ahead), so a
//!   restarted validator re-sends what it signed instead of signing a
//!   conflicting vote. Its object is `"hologram voting-record v1" ‖
//!   sequence u64 LE ‖ postcard body` (local state, never signed or hashed
//!   for consensus; the address is only its key); a save writes the next
//!   sequence, then removes older copies, and recovery takes the highest.
//!
//! [`DurableLog::open`] recovers both with a bounded scan of the store
//! (pages of [`SCAN_PAGE`] addresses). Every block is checked as a decision
//! from a peer is: its commit certificate must verify against the validator
//! set and name its batch's receipt ([`Decision::verify`]). A block that does
//! not decode, that the store reports corrupt, or whose certificate fails is
//! rejected with a specific error in [`Recovered::rejected`] and never
//! applied; the log is the run of verified heights from 0, and what is
//! missing after it is fetched from peers (certified, so no peer is trusted).
//! Two *verified* blocks with different batches at one height would mean
//! more than `f` validators signed both: recovery refuses with
//! [`ConsensusError::Log`] rather than pick one.
//!
//! ```
//! use hologram_cam::MemoryStore;
//! use hologram_consensus::{DurableLog, ValidatorSet};
//! use hologram_receipt::KeyPair;
//! use std::sync::Arc;
//!
//! let set = ValidatorSet::new(vec![KeyPair::from_seed([1; 32]).node_id()])?;
//! let store = Arc::new(MemoryStore::new());
//! let (log, recovered) = futures::executor::block_on(DurableLog::open(store, set))?;
//! assert_eq!(log.len(), 0);
//! assert!(recovered.decisions.is_empty() && recovered.rejected.is_empty());
//! # Ok::<(), hologram_consensus::ConsensusError>(())
//! ```

mod block;
mod record;

pub use record::MAX_RECORD_BYTES;

use crate::message::Decision;
use crate::replica::{Replica, ReplicaConfig, VotingRecord};
use crate::{ConsensusError, ValidatorSet};
use hologram_cam::{Object, Store};
use hologram_lattice::Address;
use hologram_receipt::KeyPair;
use std::collections::BTreeMap;
use std::sync::Arc;

/// How many addresses one scan page holds during recovery.
pub const SCAN_PAGE: usize = 1024;

/// What [`DurableLog::open`] found.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The verified decisions of heights `0..len`, in order.
    pub decisions: Vec<Decision>,
    /// The newest voting record (empty if none was stored).
    pub record: VotingRecord,
    /// Objects that claimed to be blocks or records and were not used, each
    /// with why (malformed, corrupt in the store, certificate invalid, or a
    /// verified block beyond a missing height).
    pub rejected: Vec<(Address, ConsensusError)>,
    /// Whether an object that is (or, unreadable in the store, may be) a
    /// voting record was rejected. Then the record above may be older than
    /// what the validator signed, and starting from it could sign a
    /// conflicting vote: [`replica`](Self::replica) and
    /// [`LocalValidator::durable`](crate::LocalValidator::durable) refuse.
    /// (Remove the bad object after checking what it was to start anyway.)
    pub record_unreadable: bool,
}

impl Recovered {
    /// An error if a voting record may have been lost (see
    /// [`record_unreadable`](Self::record_unreadable)).
    pub fn check_record(&self) -> Result<(), ConsensusError> {
        if self.record_unreadable {
            return Err(ConsensusError::Log(
                "a stored voting record is unreadable: starting from an older one could sign conflicting votes".into(),
            ));
        }
        Ok(())
    }

    /// A replica restarted from what was recovered: its log's length as the
    /// next height, the newest `config.retain_decisions` decisions to serve
    /// catch-up, and the voting record.
    pub fn replica(&self, keys: KeyPair, config: ReplicaConfig) -> Result<Replica, ConsensusError> {
        self.check_record()?;
        let keep = self.decisions.len().saturating_sub(config.retain_decisions);
        Replica::restore(
            keys,
            config,
            self.decisions.len() as u64,
            self.decisions[keep..].to_vec(),
            self.record.clone(),
        )
    }
}

/// The committed log and voting record of one replica in a [`Store`]; see
/// the [module docs](self).
pub struct DurableLog {
    store: Arc<dyn Store>,
    validators: ValidatorSet,
    len: u64,
    record: VotingRecord,
    record_seq: u64,
    record_at: Vec<Address>,
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
    /// [module docs](self)). Errors only when the store fails to scan or
    /// holds two certified values for one height.
    pub async fn open(
        store: Arc<dyn Store>,
        validators: ValidatorSet,
    ) -> Result<(Self, Recovered), ConsensusError> {
        let mut blocks: BTreeMap<u64, (Address, Decision)> = BTreeMap::new();
        let mut records: Vec<(u64, Address, VotingRecord)> = Vec::new();
        let mut rejected = Vec::new();
        let mut record_unreadable = false;
        let mut after = None;
        loop {
            let page = store.scan(after, SCAN_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(*last);
            for address in page {
                let object = match store.get(&address).await {
                    Ok(Some(object)) => object,
                    Ok(None) => continue,
                    Err(e) => {
                        record_unreadable = true;
                        rejected.push((address, ConsensusError::Store(e)));
                        continue;
                    }
                };
                let data = object.data();
                if data.starts_with(block::BLOCK_MAGIC) {
                    match Self::check_block(&validators, address, data) {
                        Ok(d) => Self::add_block(&mut blocks, address, d)?,
                        Err(e) => rejected.push((address, e)),
                    }
                } else if data.starts_with(record::RECORD_MAGIC) {
                    match record::decode(data) {
                        Ok((seq, r)) => records.push((seq, address, r)),
                        Err(reason) => {
                            record_unreadable = true;
                            rejected.push((
                                address,
                                ConsensusError::CorruptStored {
                                    what: "voting record",
                                    address,
                                    reason,
                                },
                            ))
                        }
                    }
                }
            }
        }
        let mut decisions = Vec::with_capacity(blocks.len());
        for (height, (address, d)) in blocks {
            if height == decisions.len() as u64 {
                decisions.push(d);
            } else {
                rejected.push((
                    address,
                    ConsensusError::Log(format!(
                        "block of height {height} follows a missing height {}",
                        decisions.len()
                    )),
                ));
            }
        }
        records.sort_by_key(|(seq, _, _)| *seq);
        let record_at: Vec<Address> = records.iter().map(|(_, a, _)| *a).collect();
        let (record_seq, record) = records
            .pop()
            .map(|(seq, _, r)| (seq, r))
            .unwrap_or_default();
        let log = Self {
            store,
            validators,
            len: decisions.len() as u64,
            record: record.clone(),
            record_seq,
            record_at,
        };
        Ok((
            log,
            Recovered {
                decisions,
                record,
                rejected,
                record_unreadable,
            },
        ))
    }

    fn check_block(
        validators: &ValidatorSet,
        address: Address,
        data: &[u8],
    ) -> Result<Decision, ConsensusError> {
        let d = block::decode(data).map_err(|reason| ConsensusError::CorruptStored {
            what: "block",
            address,
            reason,
        })?;
        d.verify(validators)
            .map_err(|e| ConsensusError::RejectedBlock {
                height: d.height(),
                address,
                source: Box::new(e),
            })?;
        Ok(d)
    }

    fn add_block(
        blocks: &mut BTreeMap<u64, (Address, Decision)>,
        address: Address,
        d: Decision,
    ) -> Result<(), ConsensusError> {
        let h = d.height();
        match blocks.get(&h) {
            Some((_, other)) if other.batch != d.batch => Err(ConsensusError::Log(format!(
                "two certified batches stored for height {h}: more than f validators equivocated"
            ))),
            // The same batch under another certificate: either will do.
            Some(_) => Ok(()),
            None => {
                blocks.insert(h, (address, d));
                Ok(())
            }
        }
    }

    /// The number of heights stored (the next height to append).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether no height is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The validator set whose certificates the log accepts.
    pub fn validators(&self) -> &ValidatorSet {
        &self.validators
    }

    /// The voting record last saved.
    pub fn record(&self) -> &VotingRecord {
        &self.record
    }

    /// Appends decided heights, which must continue the log in order, in one
    /// atomic batch. Each is verified first; none is stored if any fails.
    pub async fn append(&mut self, decisions: &[Decision]) -> Result<(), ConsensusError> {
        let mut objects = Vec::with_capacity(decisions.len());
        for (i, d) in decisions.iter().enumerate() {
            let expected = self.len + i as u64;
            if d.height() != expected {
                return Err(ConsensusError::Log(format!(
                    "height {} appended where height {expected} was next",
                    d.height()
                )));
            }
            d.verify(&self.validators)?;
            objects.push(Object::new(block::encode(d)));
        }
        if objects.is_empty() {
            return Ok(());
        }
        self.store.put_batch(objects).await?;
        self.len += decisions.len() as u64;
        Ok(())
    }

    /// Makes `record` durable if it differs from the one last saved: writes
    /// it under the next sequence number, then removes the older copies.
    pub async fn save_record(&mut self, record: &VotingRecord) -> Result<(), ConsensusError> {
        if *record == self.record {
            return Ok(());
        }
        let seq = self.record_seq + 1;
        let bytes = record::encode(seq, record).map_err(|reason| ConsensusError::Decode {
            what: "voting record (encoding)",
            reason,
        })?;
        let object = Object::new(bytes);
        let address = object.address();
        self.store.put(object).await?;
        self.record = record.clone();
        self.record_seq = seq;
        for old in std::mem::replace(&mut self.record_at, vec![address]) {
            if old != address {
                self.store.remove(&old).await?;
            }
        }
        Ok(())
    }

    /// Makes what a replica's step produced durable, before its messages
    /// are sent: the decisions, then the replica's voting record.
    pub async fn persist(
        &mut self,
        decisions: &[Decision],
        record: &VotingRecord,
    ) -> Result<(), ConsensusError> {
        self.append(decisions).await?;
        self.save_record(record).await
    }
}
