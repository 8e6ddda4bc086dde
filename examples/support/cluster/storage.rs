//! The node's durable state in a content-addressed [`Store`]: every decision
//! it delivered, and its voting record.
//!
//! The consensus crate's replica says what must survive a crash (its
//! decisions and its [`VotingRecord`]: the locks and votes it signed, the
//! commands its clients handed it) and that it must be durable before the
//! messages that follow from it are sent. This module keeps both in the
//! node's `RedbStore`:
//!
//! - each delivered [`Decision`] (batch and commit certificate) is one
//!   object;
//! - the voting record is one object carrying a sequence number; a new
//!   version is written in the same atomic batch as the decisions of the
//!   same step, then the old version is removed (after a crash between the
//!   two, the highest sequence number wins and the others are removed).
//!
//! An object is `"hologram-cluster v1" ‖ kind u8 ‖ body`, where kind 1 is a
//! decision (body: its postcard encoding) and kind 2 a voting record (body:
//! sequence u64 LE ‖ postcard). These bytes are this node's private format:
//! nothing signed or compared between nodes is computed from them (the
//! certificates inside carry their own canonical bytes and signatures).
//!
//! Recovery ([`DurableLog::open`]) pages through the store, accepts a
//! decision only if its certificate verifies against the validator set and
//! names its batch, and requires the heights to run from 0 without a gap. A
//! store that fails these checks is reported and left untouched.

use super::error::{store as store_error, ClusterError};
use hologram::cam::{Object, Store};
use hologram::consensus::replica::VotingRecord;
use hologram::consensus::{Decision, ValidatorSet, VoteKind};
use hologram::lattice::Address;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The prefix of every object this module writes.
pub const MAGIC: &[u8; 19] = b"hologram-cluster v1";
/// The kind byte of a decision.
const DECISION: u8 = 1;
/// The kind byte of a voting record.
const RECORD: u8 = 2;
/// The largest entry written or read. A node's record stays far below it
/// (its mempool and pipeline are bounded); one that would not is refused
/// before it is written, so that everything written can be read back.
pub const MAX_ENTRY_BYTES: usize = 256 << 20;
/// Addresses read per scan of the store.
const SCAN_PAGE: usize = 256;

/// One stored entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A delivered decision.
    Decision(Decision),
    /// A version of the voting record.
    Record {
        /// Its sequence number (higher is newer).
        seq: u64,
        /// The record.
        record: VotingRecord,
    },
}

impl Entry {
    /// The stored bytes.
    pub fn encode(&self) -> Result<Vec<u8>, ClusterError> {
        let mut out = MAGIC.to_vec();
        let body = match self {
            Entry::Decision(d) => {
                out.push(DECISION);
                postcard::to_allocvec(d)
            }
            Entry::Record { seq, record } => {
                out.push(RECORD);
                out.extend_from_slice(&seq.to_le_bytes());
                postcard::to_allocvec(record)
            }
        };
        out.extend(body.map_err(|e| ClusterError::Decode {
            what: "stored entry (encoding)",
            reason: e.to_string(),
        })?);
        if out.len() > MAX_ENTRY_BYTES {
            return Err(ClusterError::Decode {
                what: "stored entry (encoding)",
                reason: format!("{} bytes, at most {MAX_ENTRY_BYTES}", out.len()),
            });
        }
        Ok(out)
    }

    /// Decodes stored bytes: refuses more than [`MAX_ENTRY_BYTES`] before
    /// reading, a wrong prefix or kind, malformed bodies and trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Entry, String> {
        if bytes.len() > MAX_ENTRY_BYTES {
            return Err(format!("{} bytes, at most {MAX_ENTRY_BYTES}", bytes.len()));
        }
        let rest = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or("no hologram-cluster v1 prefix")?;
        let (&kind, body) = rest.split_first().ok_or("no kind byte")?;
        match kind {
            DECISION => {
                let decision: Decision = exact(body)?;
                decision.batch.check_bounds().map_err(|e| e.to_string())?;
                Ok(Entry::Decision(decision))
            }
            RECORD => {
                let (seq, body) = body
                    .split_first_chunk::<8>()
                    .ok_or("a voting record without its sequence number")?;
                Ok(Entry::Record {
                    seq: u64::from_le_bytes(*seq),
                    record: exact(body)?,
                })
            }
            other => Err(format!("unknown kind {other}")),
        }
    }
}

/// Decodes exactly `bytes` as a `T`.
fn exact<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let (value, rest) = postcard::take_from_bytes::<T>(bytes).map_err(|e| e.to_string())?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(format!("{} trailing bytes", rest.len()))
    }
}

/// What a node finds in its store when it starts.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Every decision delivered, in height order from height 0.
    pub decisions: Vec<Decision>,
    /// The voting record (empty for a new node).
    pub record: VotingRecord,
}

/// The node's decisions and voting record, kept in a [`Store`].
#[derive(Debug)]
pub struct DurableLog<S> {
    store: Arc<S>,
    /// The address of each stored decision, by height.
    decisions: Vec<Address>,
    record: VotingRecord,
    record_seq: u64,
    record_address: Option<Address>,
}

impl<S: Store> DurableLog<S> {
    /// Reads what `store` holds (see the [module docs](self)).
    pub async fn open(
        store: Arc<S>,
        validators: &ValidatorSet,
    ) -> Result<(Self, Recovered), ClusterError> {
        let mut decisions: BTreeMap<u64, (Address, Decision)> = BTreeMap::new();
        let mut records: Vec<(u64, Address, VotingRecord)> = Vec::new();
        let mut after = None;
        loop {
            let page = store
                .scan(after, SCAN_PAGE)
                .await
                .map_err(store_error("listing the stored entries"))?;
            let Some(&last) = page.last() else { break };
            after = Some(last);
            for address in page {
                let Some(object) = store
                    .get(&address)
                    .await
                    .map_err(store_error("reading a stored entry"))?
                else {
                    continue; // removed since the scan
                };
                let corrupt = |reason: String| ClusterError::CorruptEntry { address, reason };
                match Entry::decode(object.data()).map_err(corrupt)? {
                    Entry::Decision(d) => {
                        check_decision(&d, validators).map_err(corrupt)?;
                        let h = d.height();
                        if decisions.get(&h).is_some_and(|(_, other)| *other != d) {
                            return Err(corrupt(format!(
                                "a second certified decision for height {h}"
                            )));
                        }
                        decisions.insert(h, (address, d));
                    }
                    Entry::Record { seq, record } => records.push((seq, address, record)),
                }
            }
        }
        if let Some((expected, (h, _))) = decisions
            .iter()
            .enumerate()
            .find(|(i, (h, _))| *i as u64 != **h)
        {
            return Err(ClusterError::MissingHeight {
                missing: expected as u64,
                stored: *h,
            });
        }
        records.sort_by_key(|(seq, _, _)| *seq);
        let newest = records.pop();
        for (_, stale, _) in records {
            store
                .remove(&stale)
                .await
                .map_err(store_error("removing a stale voting record"))?;
        }
        let (record_seq, record_address, record) = match newest {
            Some((seq, address, record)) => (seq, Some(address), record),
            None => (0, None, VotingRecord::default()),
        };
        let log = Self {
            store,
            decisions: decisions.values().map(|(address, _)| *address).collect(),
            record: record.clone(),
            record_seq,
            record_address,
        };
        let recovered = Recovered {
            decisions: decisions.into_values().map(|(_, d)| d).collect(),
            record,
        };
        Ok((log, recovered))
    }

    /// The number of decisions stored.
    pub fn heights(&self) -> u64 {
        self.decisions.len() as u64
    }

    /// The stored decision of `height`, if there is one: how a node serves
    /// catch-up requests for heights older than what its replica keeps in
    /// memory.
    pub async fn decision(&self, height: u64) -> Result<Option<Decision>, ClusterError> {
        let stored = usize::try_from(height)
            .ok()
            .and_then(|h| self.decisions.get(h));
        let Some(&address) = stored else {
            return Ok(None);
        };
        let object = self
            .store
            .get(&address)
            .await
            .map_err(store_error("reading a stored decision"))?;
        let corrupt = |reason: String| ClusterError::CorruptEntry { address, reason };
        match object.map(|o| Entry::decode(o.data())) {
            Some(Ok(Entry::Decision(d))) if d.height() == height => Ok(Some(d)),
            Some(Ok(_)) => Err(corrupt(format!("not the decision of height {height}"))),
            Some(Err(reason)) => Err(corrupt(reason)),
            None => Err(corrupt(format!("the decision of height {height} is gone"))),
        }
    }

    /// Makes `decisions` (the next ones, in height order) and `record` (if it
    /// changed) durable, atomically; returns when they survive a crash.
    pub async fn persist(
        &mut self,
        decisions: &[Decision],
        record: &VotingRecord,
    ) -> Result<(), ClusterError> {
        let mut objects = Vec::with_capacity(decisions.len() + 1);
        let mut stored = Vec::with_capacity(decisions.len());
        for d in decisions {
            let expected = self.heights() + objects.len() as u64;
            if d.height() != expected {
                return Err(ClusterError::OutOfOrder {
                    expected,
                    got: d.height(),
                });
            }
            let object = Object::new(Entry::Decision(d.clone()).encode()?);
            stored.push(object.address());
            objects.push(object);
        }
        let changed = *record != self.record;
        let mut new_address = None;
        if changed {
            let entry = Entry::Record {
                seq: self.record_seq + 1,
                record: record.clone(),
            };
            let object = Object::new(entry.encode()?);
            new_address = Some(object.address());
            objects.push(object);
        }
        if objects.is_empty() {
            return Ok(());
        }
        self.store
            .put_batch(objects)
            .await
            .map_err(store_error("writing decisions and the voting record"))?;
        self.decisions.extend(stored);
        if let Some(address) = new_address {
            self.record_seq += 1;
            self.record = record.clone();
            if let Some(old) = self.record_address.replace(address) {
                if old != address {
                    self.store
                        .remove(&old)
                        .await
                        .map_err(store_error("removing the previous voting record"))?;
                }
            }
        }
        Ok(())
    }
}

/// Checks a stored decision: its certificate is a quorum of valid precommits
/// of `validators`, for this batch.
fn check_decision(d: &Decision, validators: &ValidatorSet) -> Result<(), String> {
    d.certificate
        .verify_kind(VoteKind::Precommit, validators)
        .map_err(|e| format!("its certificate does not verify: {e}"))?;
    if d.batch.receipt() != d.certificate.value {
        return Err("its certificate names another batch".into());
    }
    Ok(())
}
