//! Changing a running cluster's validators: what a node tells of the sets
//! it follows ([`Members`]), its approval of a change ([`Approval`]), and
//! the operator's procedure that gathers a quorum of approvals and has the
//! change decided ([`change_validators`]).
//!
//! A change ([`SetChange`]) must be approved by a quorum of the set it
//! changes, each approval a signature of one of its validators. A node
//! signs one only when a key its operator configured
//! ([`NodeConfig::operators`](super::NodeConfig::operators)) asks
//! ([`ControlRequest::Approve`](super::ControlRequest::Approve)), over the
//! version and the newest set it knows; the operator's client collects the
//! approvals of the nodes it is given, and once a quorum of them approved
//! the same version of the same set, builds the change and hands it to
//! every node ([`ControlRequest::ChangeSet`](super::ControlRequest::ChangeSet)):
//! the next of them to lead proposes it, consensus decides it, and it is in
//! force [`Membership::delay`] heights later.

use super::client::Client;
use super::error::NodeError;
use hologram_consensus::{Membership, SetChange, SetOp, ValidatorSet};
use hologram_lattice::transport::TransportError;
use hologram_lattice::NodeId;
use hologram_receipt::{verify_signature, Purpose, Signature};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tracing::{debug, info};

/// How often [`change_validators`] asks whether its change is in force.
pub const CHANGE_POLL: Duration = Duration::from_millis(200);

/// The validator sets a node follows (answer to
/// [`ControlRequest::Members`](super::ControlRequest::Members)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Members {
    /// The node.
    pub node: NodeId,
    /// The number of set changes applied (the version a new change names).
    pub version: u64,
    /// The node's next height (heights applied).
    pub heights: u64,
    /// The validators in force at that height, in leader order.
    pub current: Vec<NodeId>,
    /// The validators every change applied makes (the set a new change
    /// changes): `current` unless a change is not in force yet.
    pub newest: Vec<NodeId>,
    /// The first height `newest` is in force at.
    pub newest_from: u64,
    /// Where the node knows members of those sets to listen (the node's
    /// peers use it to reach validators they have no address for; a wrong
    /// one only fails: a connection proves the key it reaches).
    pub addresses: Vec<(NodeId, SocketAddr)>,
}

impl Members {
    /// What `node` reports of `membership`.
    pub(crate) fn of(
        node: NodeId,
        membership: &Membership,
        addresses: Vec<(NodeId, SocketAddr)>,
    ) -> Self {
        let newest_from = membership.sets().last().map_or(0, |(from, _)| from);
        Self {
            node,
            version: membership.version(),
            heights: membership.next_height(),
            current: membership.current().validators().to_vec(),
            newest: membership.newest().validators().to_vec(),
            newest_from,
            addresses,
        }
    }

    /// Whether every change applied is in force.
    pub fn settled(&self) -> bool {
        self.heights >= self.newest_from
    }
}

/// A node's approval of a set change: its signature over
/// [`SetChange::approval_bytes`] of the operation at `version` on the set
/// whose fingerprint is `set`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// The set version approved.
    pub version: u64,
    /// The fingerprint of the set changed.
    pub set: [u8; 32],
    /// The validator approving.
    pub approver: NodeId,
    /// Its signature.
    pub signature: Signature,
}

/// A change decided and in force ([`change_validators`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChangeDone {
    /// The set version the change made.
    pub version: u64,
    /// The first height the new set decides.
    pub in_force_at: u64,
    /// The new set, in leader order.
    pub validators: Vec<NodeId>,
}

/// The operator's procedure: has `op` decided by the cluster whose nodes
/// `nodes` are (`client`'s key must be one these nodes take approval
/// requests from), and waits, up to `patience`, until it is in force.
///
/// 1. asks every node for the sets it follows, and takes the most advanced
///    answer (the highest version): the set to change, and its quorum;
/// 2. asks every node to approve `op` on it (once more if the request was
///    lost on the way); approvals of another version or set, or whose
///    signature does not verify, are not used;
/// 3. with a quorum of them, hands the change to every node (the next to
///    lead proposes it);
/// 4. waits until a node applied it and it is in force.
///
/// Errors: [`NodeError::SetChangeRefused`] when `op` does not fit the set
/// or no node answered; [`NodeError::NoApprovalQuorum`] (with each node's
/// refusal) when too few approved; [`NodeError::SetChangeNotTaken`] when no
/// node took the change; [`NodeError::SetChangeTimeout`] when it was not in
/// force within `patience`.
pub async fn change_validators(
    client: &Client,
    nodes: &[NodeId],
    op: SetOp,
    patience: Duration,
) -> Result<ChangeDone, NodeError> {
    let start = Instant::now();
    let refused = |reason: String| NodeError::SetChangeRefused { op, reason };
    let answers = futures::future::join_all(nodes.iter().map(|&n| client.members(n))).await;
    let mut refusals: Vec<String> = Vec::new();
    let mut best: Option<Members> = None;
    for (node, answer) in nodes.iter().zip(answers) {
        match answer {
            Ok(m) if best.as_ref().is_none_or(|b| m.version > b.version) => best = Some(m),
            Ok(_) => {}
            Err(e) => refusals.push(format!("{node}: {e}")),
        }
    }
    let members = best.ok_or_else(|| refused(format!("no node answered: {refusals:?}")))?;
    let set = ValidatorSet::new(members.newest.clone()).map_err(|e| refused(e.to_string()))?;
    op.apply(&set).map_err(refused)?;
    let version = members.version;
    let fingerprint = set.fingerprint();
    let bytes = SetChange::approval_bytes(version, &set, &op);

    let mut answers = futures::future::join_all(nodes.iter().map(|&n| client.approve(n, op))).await;
    // A request lost on the way (not a refusal) is asked once more.
    for (&node, answer) in nodes.iter().zip(answers.iter_mut()) {
        if matches!(answer, Err(NodeError::Transport(e)) if !matches!(e, TransportError::Refused(_)))
        {
            tokio::time::sleep(CHANGE_POLL).await;
            *answer = client.approve(node, op).await;
        }
    }
    let mut approvals: Vec<(NodeId, Signature)> = Vec::new();
    let mut refusals: Vec<String> = Vec::new();
    for (node, answer) in nodes.iter().zip(answers) {
        match answer {
            Ok(a) if a.version != version || a.set != fingerprint => refusals.push(format!(
                "{node}: approved version {} of another set or version",
                a.version
            )),
            Ok(a) if !set.contains(&a.approver) => {
                refusals.push(format!("{node}: {} is not a validator", a.approver))
            }
            Ok(a) => {
                match verify_signature(&a.approver, Purpose::SetChange, &bytes, &a.signature) {
                    Ok(()) => approvals.push((a.approver, a.signature)),
                    Err(e) => refusals.push(format!("{node}: the approval does not verify: {e}")),
                }
            }
            Err(e) => refusals.push(format!("{node}: {e}")),
        }
    }
    let change = SetChange::new(version, op, approvals);
    if change.approvals.len() < set.quorum() {
        return Err(NodeError::NoApprovalQuorum {
            version,
            approvals: change.approvals.len(),
            quorum: set.quorum(),
            refusals,
        });
    }
    change.verify(version, &set)?;
    info!(
        version,
        ?op,
        approvals = change.approvals.len(),
        "set change approved by a quorum"
    );

    let taken =
        futures::future::join_all((nodes.iter()).map(|&n| client.change_set(n, change.clone())))
            .await;
    let mut refusals: Vec<String> = Vec::new();
    let mut took = 0;
    for (node, answer) in nodes.iter().zip(taken) {
        match answer {
            Ok(()) => took += 1,
            Err(e) => refusals.push(format!("{node}: {e}")),
        }
    }
    if took == 0 {
        return Err(NodeError::SetChangeNotTaken { refusals });
    }
    debug!(took, "set change handed to the nodes");

    loop {
        for &node in nodes {
            if let Ok(m) = client.members(node).await {
                if m.version > version && m.settled() {
                    return Ok(ChangeDone {
                        version: m.version,
                        in_force_at: m.newest_from,
                        validators: m.newest,
                    });
                }
            }
        }
        if start.elapsed() >= patience {
            return Err(NodeError::SetChangeTimeout {
                version,
                waited: start.elapsed(),
            });
        }
        tokio::time::sleep(CHANGE_POLL).await;
    }
}
