//! Reading a [`DurableLog`] back one verified decision at a time
//! ([`DurableLog::replay`]), so that recovering a long log holds only the
//! decisions asked to be kept, not all of them.

use super::{block_name, DurableLog, Recovered};
use crate::membership::Membership;
use crate::message::Decision;
use crate::ConsensusError;
use hologram_cam::{CamError, Store};
use hologram_lattice::Address;
use std::collections::VecDeque;
use std::sync::Arc;

/// A log being read back: [`next`](Self::next) yields its verified
/// decisions in height order, [`finish`](Self::finish) opens the log (see
/// [`DurableLog::replay`]).
pub struct Replay {
    store: Arc<dyn Store>,
    /// The validator sets at `len`.
    membership: Membership,
    /// Every set in force from the log's start: `(first height, set)`.
    history: Vec<(u64, crate::ValidatorSet)>,
    /// The next block name to read.
    height: u64,
    /// The verified run `0..len` read so far.
    len: u64,
    /// Whether the first unset name was reached.
    done: bool,
    /// The newest decisions of the run, within `keep` and `keep_bytes`.
    recent: VecDeque<(Decision, usize)>,
    recent_bytes: usize,
    keep: usize,
    keep_bytes: usize,
    rejected: Vec<(Address, ConsensusError)>,
    /// Whether the base was read (first call to `next`).
    began: bool,
    /// The certified snapshot the log starts at.
    base: Option<super::snapshot::Base>,
}

impl core::fmt::Debug for Replay {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Replay")
            .field("height", &self.height)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl Replay {
    pub(super) fn new(
        store: Arc<dyn Store>,
        membership: Membership,
        keep: usize,
        keep_bytes: usize,
    ) -> Self {
        Self {
            store,
            history: membership.sets().map(|(h, s)| (h, s.clone())).collect(),
            membership,
            height: 0,
            len: 0,
            done: false,
            recent: VecDeque::new(),
            recent_bytes: 0,
            keep,
            keep_bytes,
            rejected: Vec::new(),
            began: false,
            base: None,
        }
    }

    /// The next verified decision (heights 0, 1, 2, ... without a gap),
    /// `None` after the last. Blocks that are damaged, do not verify or
    /// follow a missing height are skipped and listed in
    /// [`Recovered::rejected`]. Errors only when the store fails (other
    /// than reporting an object corrupt).
    pub async fn next(&mut self) -> Result<Option<Decision>, ConsensusError> {
        if !self.began {
            self.began = true;
            self.base =
                DurableLog::read_base(&*self.store, &self.membership, &mut self.rejected).await?;
            if let Some(base) = &self.base {
                self.height = base.checkpoint.height;
                self.len = base.checkpoint.height;
                self.membership = base.membership.clone();
                self.history = (self.membership.sets())
                    .map(|(h, s)| (h, s.clone()))
                    .collect();
            }
        }
        while !self.done {
            let height = self.height;
            let name = block_name(height)?;
            let mut read = self.store.get_named(&name).await;
            // The log ends at the first unset name: a read saying so is
            // read again (a disk that misdirects one read, to a name it no
            // longer holds, must not end the log early: the heights after
            // would look undelivered, and their votes unsigned).
            if matches!(read, Ok(None)) {
                read = self.store.get_named(&name).await;
            }
            let object = match read {
                Ok(Some(object)) => object,
                Ok(None) => {
                    self.done = true;
                    break;
                }
                // Damaged in the store: rejected, and the next height read.
                Err(CamError::Corrupt(address)) => {
                    let e = ConsensusError::Store(CamError::Corrupt(address));
                    self.rejected.push((address, e));
                    self.height += 1;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            self.height += 1;
            let address = object.address();
            // The next height of the run is checked against the set in
            // force there; one beyond a gap (rejected anyway) against the
            // current set.
            let (sets, in_run) = (&self.membership, self.len == height);
            let verify = |d: &Decision| {
                if in_run {
                    sets.verify(d)
                } else {
                    d.verify(sets.current())
                }
            };
            match DurableLog::check_block(verify, address, object.data()) {
                // Written by a newer build: the log is refused.
                Err(e @ ConsensusError::UnsupportedFormat { .. }) => return Err(e),
                Ok(d) if d.height() != height => self.rejected.push((
                    address,
                    ConsensusError::CorruptStored {
                        what: "block",
                        address,
                        reason: format!("claims height {} under the name of {height}", d.height()),
                    },
                )),
                Ok(d) if self.len == height => {
                    self.len += 1;
                    if let Ok(Some(at)) = self.membership.apply(&d) {
                        self.history.push((at, self.membership.newest().clone()));
                    }
                    self.remember(&d, object.data().len());
                    return Ok(Some(d));
                }
                Ok(_) => self.rejected.push((
                    address,
                    ConsensusError::Log(format!(
                        "block of height {height} follows a missing height {}",
                        self.len
                    )),
                )),
                Err(e) => self.rejected.push((address, e)),
            }
        }
        Ok(None)
    }

    /// Keeps `d` among the newest, within both bounds.
    fn remember(&mut self, d: &Decision, size: usize) {
        if self.keep == 0 {
            return;
        }
        self.recent.push_back((d.clone(), size));
        self.recent_bytes = self.recent_bytes.saturating_add(size);
        while self.recent.len() > self.keep
            || (self.recent.len() > 1 && self.recent_bytes > self.keep_bytes)
        {
            if let Some((_, size)) = self.recent.pop_front() {
                self.recent_bytes = self.recent_bytes.saturating_sub(size);
            }
        }
    }

    /// Reads the rest of the log, then its voting record: the log, opened
    /// at the end of the verified run, and what was recovered (the newest
    /// decisions kept, from [`Recovered::first`]).
    pub async fn finish(mut self) -> Result<(DurableLog, Recovered), ConsensusError> {
        while self.next().await?.is_some() {}
        let (stored, record_unreadable) =
            DurableLog::read_record(&*self.store, &mut self.rejected).await?;
        let record = stored.record;
        // The record names the log's length when it was written: heights
        // below it were stored even if their names now read as unset.
        let stored_end = self.height.max(stored.log_len);
        let decisions: Vec<Decision> = self.recent.into_iter().map(|(d, _)| d).collect();
        let start = self.base.as_ref().map_or(0, |b| b.checkpoint.height);
        let log = DurableLog {
            store: self.store,
            membership: self.membership.clone(),
            history: self.history,
            len: self.len,
            start,
            parts: self.base.as_ref().map_or(0, |b| b.parts.len()),
            links: self.base.as_ref().map_or(0, |b| b.links),
            record: record.clone(),
            record_seq: stored.seq,
        };
        tracing::info!(
            heights = self.len,
            kept = decisions.len(),
            rejected = self.rejected.len(),
            record_unreadable,
            "durable log recovered"
        );
        let recovered = Recovered {
            first: self.len - decisions.len() as u64,
            snapshot: self.base.map(|b| (b.decision, b.parts)),
            decisions,
            record,
            rejected: self.rejected,
            record_unreadable,
            stored_end,
            membership: Some(self.membership),
        };
        Ok((log, recovered))
    }
}
