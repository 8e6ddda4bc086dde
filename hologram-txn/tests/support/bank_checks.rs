//! Invariants of a simulated bank over single-replica shards, shared by
//! `hologram-txn/tests/bank_sim.rs` and the whole-stack campaign
//! (`tests/whole_stack.rs`, which includes this file with `#[path]`).

use hologram_lattice::sim::Simulation;
use hologram_lattice::NodeId;
use hologram_receipt::{KeyPair, Purpose, Receipt};
use hologram_txn::abort_receipt;
use hologram_txn::{Decision, Op, ParticipantCore, SignedReceipt, TxnId, TxnMessage, TxnNode};

/// The simulation both banks run.
pub type Sim = Simulation<TxnNode>;

/// The participant core of node `id`, if it is up and a participant.
pub fn core_of(sim: &Sim, id: NodeId) -> Option<&ParticipantCore> {
    sim.node(id)?.participant()?.core().ok()
}

/// The sum of the halves of transfers committed at their primary but not
/// yet applied where they are prepared.
pub fn committed_pending(sim: &Sim) -> Result<i64, String> {
    let mut pending = 0i64;
    for (id, node, _) in sim.nodes() {
        let Some(p) = node.participant() else {
            continue;
        };
        let core = p.core().map_err(|e| format!("{id} failed: {e}"))?;
        for (txn, request) in core.prepared() {
            let committed = core_of(sim, request.primary)
                .and_then(|c| c.outcome(txn))
                .is_some_and(Decision::is_commit);
            if committed {
                for op in &request.ops {
                    if let Op::Add { delta, .. } = op {
                        pending += delta;
                    }
                }
            }
        }
    }
    Ok(pending)
}

/// Every decision a participant applied agrees with its primary's.
pub fn decisions_agree(sim: &Sim) -> Result<(), String> {
    for (id, node, _) in sim.nodes() {
        let Some(core) = node.participant().and_then(|p| p.core().ok()) else {
            continue;
        };
        for (txn, decision) in core.outcomes() {
            let primary = decision.primary().signer;
            if primary == id {
                continue;
            }
            let theirs = core_of(sim, primary).and_then(|c| c.outcome(txn));
            if theirs.map(Decision::is_commit) != Some(decision.is_commit()) {
                return Err(format!(
                    "{txn}: {id} applied commit={} but its primary has {:?}",
                    decision.is_commit(),
                    theirs.map(Decision::is_commit)
                ));
            }
        }
    }
    Ok(())
}

/// A non-participant's forgeries about `txn`, signed with `forger`'s own
/// key: an abort and a commit decision sent to `target` as if they were the
/// primary's, and that commit sent to `client` as if `target` reported it.
/// Returns how many messages were injected.
pub fn inject_forgeries(
    sim: &mut Sim,
    forger: &KeyPair,
    txn: TxnId,
    target: NodeId,
    client: NodeId,
) -> u64 {
    let forged_abort = Decision::Aborted {
        primary: SignedReceipt::sign(forger, Purpose::Abort, abort_receipt(&txn)),
    };
    let fake = Receipt::from_bytes(b"forged");
    let forged_commit = Decision::Committed {
        prepares: vec![SignedReceipt::sign(forger, Purpose::Prepare, fake)],
        primary: SignedReceipt::sign(forger, Purpose::Commit, fake),
    };
    let by = forger.node_id();
    for decision in [forged_abort, forged_commit.clone()] {
        sim.inject(by, target, TxnMessage::Resolve { txn, decision });
    }
    let decision = forged_commit;
    sim.inject(target, client, TxnMessage::Decided { txn, decision });
    3
}
