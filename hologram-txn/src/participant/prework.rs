//! Signature work done before a call takes the participant's lock.
//!
//! Signing and verifying are most of what a participant spends on a call,
//! and both are pure functions of the message and the node's keys (Ed25519
//! signatures are deterministic). A driver that serves several callers at
//! once (e.g. [`LocalParticipant`](crate::LocalParticipant)) computes them
//! with the call's constructor (e.g. [`Prework::prepare`]) **outside** its
//! lock on the core, then runs the call with [`ParticipantCore::with_prework`](super::ParticipantCore::with_prework):
//! the core takes each signature it would make from the prework if it is
//! there, and each signature it would verify as verified if the prework
//! verified exactly it (same signer, receipt, signature and purpose). What
//! the call does not use is dropped; anything missing the core computes as
//! it always does. So results are identical with or without prework, and
//! verification stays strict (`verify_strict`, one signature at a time):
//! prework only moves the work out of the critical section.
//!
//! Only a participant with its own keys signs ahead: a replicated group's
//! core ([`Signer::Group`](super::Signer::Group)) signs nothing (its
//! members do, see [`crate::replicated`]). Group proofs are verified ahead
//! like single signatures (every member signature, strictly).
//!
//! A `Prework` cannot claim a verification it did not make: its fields are
//! private and filled only by verifying.

use crate::receipts::commit_receipt;
use crate::types::MAX_PARTICIPANTS;
use crate::{Decision, PrepareRequest, SignedReceipt};
use hologram_lattice::NodeId;
use hologram_receipt::{KeyPair, Purpose, Receipt};

/// Signatures made and verified ahead of a participant call (module docs).
#[derive(Debug, Clone, Default)]
pub struct Prework {
    signed: Vec<(Purpose, SignedReceipt)>,
    verified: Vec<(Purpose, SignedReceipt)>,
}

impl Prework {
    /// For [`ParticipantCore::prepare`](super::ParticipantCore::prepare): the vote.
    pub fn prepare(keys: &KeyPair, request: &PrepareRequest) -> Self {
        let mut work = Prework::default();
        if request.check().is_ok() {
            work.sign(
                keys,
                Purpose::Prepare,
                request.prepare_receipt(&keys.node_id()),
            );
        }
        work
    }

    /// For [`ParticipantCore::commit_one_phase`](super::ParticipantCore::commit_one_phase):
    /// the vote and the commit.
    pub fn commit_one_phase(keys: &KeyPair, request: &PrepareRequest) -> Self {
        let mut work = Prework::default();
        if request.check().is_ok() {
            let vote = work.sign(
                keys,
                Purpose::Prepare,
                request.prepare_receipt(&keys.node_id()),
            );
            work.sign(keys, Purpose::Commit, commit_receipt([&vote]));
        }
        work
    }

    /// For [`ParticipantCore::commit`](super::ParticipantCore::commit): the
    /// other participants' votes, and the commit.
    pub fn commit(keys: &KeyPair, prepares: &[SignedReceipt]) -> Self {
        let mut work = Prework::default();
        if prepares.len() <= MAX_PARTICIPANTS {
            let id = keys.node_id();
            for p in prepares.iter().filter(|p| p.signer != id) {
                work.verify(Purpose::Prepare, p);
            }
            work.sign(keys, Purpose::Commit, commit_receipt(prepares));
        }
        work
    }

    /// For [`ParticipantCore::resolve`](super::ParticipantCore::resolve): the
    /// primary's decision, and this participant's acknowledgement of it.
    pub fn resolve(keys: &KeyPair, decision: &Decision) -> Self {
        let mut work = Prework::default();
        let (purpose, primary) = (decision.purpose(), decision.primary());
        work.verify(purpose, primary);
        work.sign(keys, purpose, primary.receipt);
        work
    }

    fn sign(&mut self, keys: &KeyPair, purpose: Purpose, receipt: Receipt) -> SignedReceipt {
        let signed = SignedReceipt::sign(keys, purpose, receipt);
        self.signed.push((purpose, signed.clone()));
        signed
    }

    fn verify(&mut self, purpose: Purpose, signed: &SignedReceipt) {
        if signed.verify(purpose).is_ok() {
            self.verified.push((purpose, signed.clone()));
        }
    }

    /// The signature of `receipt` for `purpose` by `signer`, if made ahead.
    pub(crate) fn signed(
        &self,
        signer: &NodeId,
        purpose: Purpose,
        receipt: &Receipt,
    ) -> Option<SignedReceipt> {
        self.signed
            .iter()
            .find(|(p, s)| *p == purpose && s.signer == *signer && s.receipt == *receipt)
            .map(|(_, s)| s.clone())
    }

    /// Whether exactly this signature was verified ahead for `purpose`.
    pub(crate) fn verified(&self, purpose: Purpose, signed: &SignedReceipt) -> bool {
        self.verified
            .iter()
            .any(|(p, s)| *p == purpose && s == signed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::participant::{ParticipantConfig, ParticipantCore};
    use crate::receipts::abort_receipt;
    use crate::{Key, Op, ShardMap, TxnError, TxnId};

    /// Two participants, the primary first, and a request for each.
    fn setup() -> (Vec<ParticipantCore>, Vec<KeyPair>, Vec<PrepareRequest>) {
        let mut keys = vec![KeyPair::from_seed([3; 32]), KeyPair::from_seed([4; 32])];
        keys.sort_by_key(KeyPair::node_id);
        let ids: Vec<NodeId> = keys.iter().map(KeyPair::node_id).collect();
        let map = ShardMap::even(&ids);
        let cores: Vec<ParticipantCore> = keys
            .iter()
            .map(|k| ParticipantCore::new(k.clone(), ParticipantConfig::default(), map.clone()))
            .collect::<Result<_, _>>()
            .unwrap();
        let requests = ids
            .iter()
            .map(|id| {
                let key = (0u32..)
                    .map(|i| Key::new(format!("k{i}").into_bytes()).unwrap())
                    .find(|k| map.node_of(k) == Some(*id))
                    .unwrap();
                PrepareRequest {
                    txn: TxnId([1; 16]),
                    primary: ids[0],
                    participants: ids.clone(),
                    ops: vec![Op::Put {
                        key,
                        value: vec![1],
                    }],
                    map_version: 1,
                }
            })
            .collect();
        (cores, keys, requests)
    }

    #[test]
    fn prework_changes_nothing_but_where_the_work_is_done() {
        let (mut with, keys, requests) = setup();
        let (mut without, _, _) = setup();
        let mut votes = Vec::new();
        for i in 0..2 {
            let work = Prework::prepare(&keys[i], &requests[i]);
            assert!(!work.signed.is_empty(), "the vote is signed ahead");
            let a = with[i].with_prework(work, |c| c.prepare(requests[i].clone()));
            let b = without[i].prepare(requests[i].clone());
            assert_eq!(a, b);
            votes.push(a.unwrap());
        }
        let txn = requests[0].txn;
        let work = Prework::commit(&keys[0], &votes);
        let a = with[0]
            .with_prework(work, |c| c.commit(txn, &votes))
            .unwrap();
        assert_eq!(a, without[0].commit(txn, &votes).unwrap());
        let work = Prework::resolve(&keys[1], &a);
        let ack = with[1].with_prework(work, |c| c.resolve(txn, &a));
        assert_eq!(ack, without[1].resolve(txn, &a));
        assert_eq!(ack.unwrap().receipt, a.primary().receipt);
    }

    #[test]
    fn prework_never_passes_a_forgery_nor_signs_for_another_node() {
        let (mut cores, keys, requests) = setup();
        let txn = requests[0].txn;
        cores[1].prepare(requests[1].clone()).unwrap();
        // A decision "from the primary" signed by someone else.
        let mut forged = SignedReceipt::sign(&keys[1], Purpose::Abort, abort_receipt(&txn));
        forged.signer = keys[0].node_id();
        let decision = Decision::Aborted { primary: forged };
        let work = Prework::resolve(&keys[1], &decision);
        assert!(matches!(
            cores[1].with_prework(work, |c| c.resolve(txn, &decision)),
            Err(TxnError::BadSignature { .. })
        ));
        assert!(cores[1].prepared().next().is_some(), "still prepared");
        // Prework made with another node's keys is not used: the vote is
        // this node's own.
        let work = Prework::prepare(&keys[1], &requests[0]);
        let vote = cores[0]
            .with_prework(work, |c| c.prepare(requests[0].clone()))
            .unwrap();
        assert_eq!(vote.signer, keys[0].node_id());
        assert!(vote.verify(Purpose::Prepare).is_ok());
    }
}
