//! Checking a request against the shard (ownership, locks, the ops) and
//! applying what is decided: locks, prepared records, values, outcomes, each
//! durable write queued in the effects.

use super::records::Record;
use super::{ParticipantCore, Prepared, Stored, Writes};
use crate::receipts::abort_receipt;
use crate::{Decision, Key, PrepareRequest, SignedReceipt, TxnError, TxnId};
use hologram_lattice::Address;
use hologram_receipt::Purpose;
use std::collections::BTreeMap;

impl ParticipantCore {
    pub(super) fn check_participant(&self, request: &PrepareRequest) -> Result<(), TxnError> {
        if request.participants.binary_search(&self.id).is_err() {
            return Err(TxnError::Decode {
                what: "prepare request",
                reason: "this node is not a participant".into(),
            });
        }
        Ok(())
    }

    pub(super) fn check_owned(&self, key: &Key) -> Result<(), TxnError> {
        match self.owns(key) {
            true => Ok(()),
            false => Err(TxnError::StaleShardMap {
                key: key.clone(),
                current: self.map.version(),
            }),
        }
    }

    pub(super) fn vote(&self, request: &PrepareRequest) -> SignedReceipt {
        self.sign(Purpose::Prepare, request.prepare_receipt(&self.id))
    }

    /// Each written key's value after the request's ops, in order.
    pub(super) fn writes(&self, request: &PrepareRequest) -> Result<Writes, TxnError> {
        let mut writes: Writes = BTreeMap::new();
        for op in &request.ops {
            let key = op.key();
            let current = match writes.get(key) {
                Some(pending) => pending.as_deref(),
                None => self.value(key),
            };
            let next = op.apply(current)?;
            writes.insert(key.clone(), next);
        }
        Ok(writes)
    }

    /// Ownership, locks and applicability, without changing anything.
    pub(super) fn validate(&self, request: &PrepareRequest) -> Result<Writes, TxnError> {
        for op in &request.ops {
            self.check_owned(op.key())?;
            if let Some(holder) = self.locks.holder(op.key()) {
                if holder != request.txn {
                    return Err(TxnError::Conflict {
                        key: op.key().clone(),
                        holder,
                    });
                }
            }
        }
        self.writes(request)
    }

    pub(super) fn try_prepare(
        &mut self,
        request: PrepareRequest,
    ) -> Result<SignedReceipt, TxnError> {
        let writes = self.validate(&request)?;
        let object = Record::Prepared {
            request: request.clone(),
        }
        .to_object()?;
        let txn = request.txn;
        let vote = self.hold(request, writes, object.address())?;
        self.effects.persist.put.push(object);
        self.arm(txn);
        Ok(vote)
    }

    /// Locks a prepared transaction's keys and keeps it (its record at
    /// `address`); returns its vote.
    pub(super) fn hold(
        &mut self,
        request: PrepareRequest,
        writes: Writes,
        address: Address,
    ) -> Result<SignedReceipt, TxnError> {
        self.locks
            .lock_all(request.txn, request.ops.iter().map(|op| op.key()))?;
        let vote = self.vote(&request);
        let txn = request.txn;
        let prepared = Prepared {
            request,
            vote: vote.clone(),
            writes,
            address,
        };
        self.prepared.insert(txn, prepared);
        Ok(vote)
    }

    /// Applies `decision` durably in one batch: its outcome record, and for
    /// a commit the new values (the prepared transaction's, or `writes` when
    /// none is prepared); a prepared transaction's locks and record go.
    pub(super) fn settle(
        &mut self,
        txn: TxnId,
        decision: Decision,
        mut writes: Writes,
    ) -> Result<(), TxnError> {
        let outcome = Record::Outcome {
            txn,
            decision: decision.clone(),
        }
        .to_object()?;
        self.effects.persist.put.push(outcome);
        if let Some(p) = self.prepared.remove(&txn) {
            self.locks.release(txn, p.writes.keys());
            self.effects.persist.remove.push(p.address);
            writes = p.writes;
        }
        let commit = decision.is_commit();
        self.outcomes.insert(txn, decision);
        if commit {
            self.write_values(writes)?;
        }
        Ok(())
    }

    pub(super) fn write_values(&mut self, writes: Writes) -> Result<(), TxnError> {
        for (key, value) in writes {
            let version = self.data.get(&key).map_or(1, |s| s.version + 1);
            self.put_value(key, version, value)?;
        }
        Ok(())
    }

    pub(super) fn put_value(
        &mut self,
        key: Key,
        version: u64,
        value: Option<Vec<u8>>,
    ) -> Result<(), TxnError> {
        let object = Record::Value {
            key: key.clone(),
            version,
            value: value.clone(),
        }
        .to_object()?;
        let stored = Stored {
            version,
            value,
            address: object.address(),
        };
        self.effects.persist.put.push(object);
        if let Some(old) = self.data.insert(key, stored) {
            self.effects.persist.remove.push(old.address);
        }
        Ok(())
    }

    /// The primary decides abort: releases what `txn` holds here.
    pub(super) fn decide_abort(&mut self, txn: TxnId) -> Result<Decision, TxnError> {
        let decision = Decision::Aborted {
            primary: self.sign(Purpose::Abort, abort_receipt(&txn)),
        };
        self.settle(txn, decision.clone(), Writes::new())?;
        Ok(decision)
    }
}
