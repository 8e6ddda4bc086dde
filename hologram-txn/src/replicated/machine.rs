//! [`ShardMachine`]: a shard's participant logic as a deterministic
//! [`StateMachine`], and the [`Endorsement`] each group member signs of
//! what applying a command returned.

use crate::participant::ParticipantCore;
use crate::receipts::{abort_receipt, bounded, Proof};
use crate::types::MAX_PARTICIPANTS;
use crate::{Decision, Key, SignedReceipt, TxnError, TxnMessage};
use hologram_consensus::{Command, StateMachine};
use hologram_lattice::wire::Wire;
use hologram_lattice::NodeId;
use hologram_receipt::{verify_signature, KeyPair, Purpose, Receipt, Signature};
use serde::{Deserialize, Serialize};

/// Prefix of the bytes a member's endorsement covers.
pub const ENDORSEMENT_TAG: &[u8] = b"hologram shard-output v1\n";

/// Prefix of the bytes of a shard machine's state digest.
const STATE_TAG: &[u8] = b"hologram shard-state v1\n";

/// A shard's [`ParticipantCore`] as a replicated [`StateMachine`].
///
/// Each command is a [`TxnMessage`] in its wire form (prepare, one-phase
/// commit, commit, abort, resolve, query); applying it runs
/// [`ParticipantCore::on_message`] and the output is the core's reply.
/// Every replica of the group starts from the same core (same
/// [`Group`](crate::receipts::Group), same data) and applies the same
/// commands in the same order, so every honest replica computes the same
/// reply. The core holds no secret: the receipts in a reply are claimed in
/// the group's name unsigned, and each member signs them in its
/// [`Endorsement`].
///
/// The core's durable writes are not carried out: in a group, what makes a
/// step durable is the certified consensus log, and a replica rebuilds its
/// machine by applying that log again. The core's recovery timers are not
/// run either: a timer is not deterministic across replicas. Their work is
/// done by commands anyone may submit — an `Abort` asks the primary group to
/// decide (it returns the decision already made, if any), a `Resolve`
/// applies it — see [`settle`](super::settle).
#[derive(Debug, Clone)]
pub struct ShardMachine {
    core: ParticipantCore,
    digest: Receipt,
}

impl ShardMachine {
    /// A machine starting from `core` (its data loaded; every replica of
    /// the group must start from an equal one).
    pub fn new(mut core: ParticipantCore) -> Self {
        // Loading made durable writes the group does not make (module docs).
        drop(core.take_effects());
        let mut bytes = STATE_TAG.to_vec();
        bytes.extend_from_slice(core.id().as_bytes());
        for (key, value) in core.values() {
            push_framed(&mut bytes, key.as_bytes());
            push_framed(&mut bytes, value);
        }
        let digest = Receipt::from_bytes(&bytes);
        ShardMachine { core, digest }
    }

    /// The participant core.
    pub fn core(&self) -> &ParticipantCore {
        &self.core
    }

    /// A key's committed value.
    pub fn value(&self, key: &Key) -> Option<&[u8]> {
        self.core.value(key)
    }
}

fn push_framed(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

impl StateMachine for ShardMachine {
    /// The core's reply; `None` for a command that has none (undecodable,
    /// or a message that is not a request).
    type Output = Option<TxnMessage>;

    fn apply(&mut self, command: &Command) -> Option<TxnMessage> {
        let reply = match TxnMessage::from_wire(command.bytes()) {
            Ok(message) => {
                // The reply's addressee is not used: the group answers
                // whoever submitted the command.
                self.core.on_message(self.core.id(), message);
                self.core
                    .take_effects()
                    .send
                    .into_iter()
                    .next()
                    .map(|s| s.1)
            }
            Err(_) => None,
        };
        // The state is a function of the initial state and the commands
        // applied, so this digest of the history is equal on replicas with
        // equal states (and cheap to keep up to date).
        let mut bytes = STATE_TAG.to_vec();
        bytes.extend_from_slice(&self.digest.to_canonical_bytes());
        bytes.extend_from_slice(blake3::hash(command.bytes()).as_bytes());
        self.digest = Receipt::from_bytes(&bytes);
        reply
    }

    fn state_receipt(&self) -> Receipt {
        self.digest
    }

    /// A shard group's machine has no snapshot: its participant core holds
    /// keys and locks that are rebuilt by replaying the group's log.
    fn snapshot(&self) -> Result<Vec<u8>, String> {
        Err("a shard group's machine is rebuilt by replaying its log".into())
    }

    fn restore(&mut self, _: &[u8]) -> Result<(), String> {
        Err("a shard group's machine is rebuilt by replaying its log".into())
    }
}

/// A group member's signed statement: applying the command with these bytes
/// in group `group` returned `output`.
///
/// The signature is the member's, for [`Purpose::Transition`] (the output of
/// a state transition it applied), over the receipt of
/// `ENDORSEMENT_TAG ‖ group(32) ‖ BLAKE3(command bytes)(32) ‖ 0 | 1 ‖ output
/// wire bytes`. The output's wire bytes are only hashed here, never trusted:
/// endorsements are compared by the output itself.
///
/// `shares` are the member's signatures of the receipts the output claims
/// in the group's name ([`group_claims`], in that order), each made as a
/// single signature for the purpose that receipt needs:
/// [`Purpose::Prepare`] for a vote (alone, or among a decision's prepares),
/// the decision's purpose ([`Purpose::Commit`] or [`Purpose::Abort`]) for a
/// decision the group made, and for an acknowledgement
/// [`Purpose::Abort`] if it acknowledges the abort receipt, else
/// [`Purpose::Commit`]. `f + 1` members' shares make each receipt's
/// [`GroupProof`](crate::receipts::GroupProof).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endorsement {
    /// The group's id ([`group_id`](crate::receipts::group_id) of its members).
    pub group: NodeId,
    /// What the member's machine returned.
    pub output: Option<TxnMessage>,
    /// The member's signature of [`Endorsement::receipt`].
    pub signed: SignedReceipt,
    /// The member's signature of each receipt the output claims in the
    /// group's name (at most [`MAX_PARTICIPANTS`] `+ 1`).
    #[serde(deserialize_with = "bounded::<_, _, { MAX_PARTICIPANTS + 1 }>")]
    pub shares: Vec<Signature>,
}

/// The receipts `message` claims in `group`'s name (signer `group`) and its
/// members have not signed yet, each with the purpose it is signed for, in
/// a fixed order: a vote; a decision's prepares in order, then its primary
/// receipt; an acknowledgement.
pub fn group_claims<'a>(
    message: &'a mut TxnMessage,
    group: &NodeId,
) -> Vec<(Purpose, &'a mut SignedReceipt)> {
    let mut claims = Vec::new();
    match message {
        TxnMessage::Prepared { vote, .. } => claims.push((Purpose::Prepare, vote)),
        TxnMessage::Decided { decision, .. } => {
            let purpose = decision.purpose();
            match decision {
                Decision::Committed { prepares, primary } => {
                    claims.extend(prepares.iter_mut().map(|p| (Purpose::Prepare, p)));
                    claims.push((purpose, primary));
                }
                Decision::Aborted { primary } => claims.push((purpose, primary)),
            }
        }
        TxnMessage::Ack { txn, ack } => {
            let purpose = match ack.receipt == abort_receipt(txn) {
                true => Purpose::Abort,
                false => Purpose::Commit,
            };
            claims.push((purpose, ack));
        }
        _ => {}
    }
    // A claim that already carries member signatures was given to the
    // group (a prepare of its own echoed in a decision, its proof verified
    // when the command was applied): it is returned as it came, not signed
    // again.
    claims.retain(|(_, s)| s.signer == *group && is_unsigned(s));
    claims
}

/// Whether `s` is a group's claim with no member signature yet.
fn is_unsigned(s: &SignedReceipt) -> bool {
    matches!(&s.proof, Proof::Group(p) if p.signatures.is_empty())
}

/// The receipts `output` claims in `group`'s name, read-only.
fn claims_of(output: Option<&TxnMessage>, group: &NodeId) -> Vec<(Purpose, Receipt)> {
    let mut output = output.cloned();
    output
        .as_mut()
        .map(|m| group_claims(m, group))
        .unwrap_or_default()
        .into_iter()
        .map(|(purpose, s)| (purpose, s.receipt))
        .collect()
}

impl Endorsement {
    /// The receipt a member signs for `output` of `command` in `group`.
    pub fn receipt(
        group: &NodeId,
        command: &Command,
        output: Option<&TxnMessage>,
    ) -> Result<Receipt, TxnError> {
        let mut bytes = ENDORSEMENT_TAG.to_vec();
        bytes.extend_from_slice(group.as_bytes());
        bytes.extend_from_slice(blake3::hash(command.bytes()).as_bytes());
        match output {
            Some(message) => {
                bytes.push(1);
                bytes.extend_from_slice(&message.to_wire()?);
            }
            None => bytes.push(0),
        }
        Ok(Receipt::from_bytes(&bytes))
    }

    /// `member` endorses `output` of `command` in `group`, and signs each
    /// receipt it claims in the group's name.
    pub fn sign(
        member: &KeyPair,
        group: NodeId,
        command: &Command,
        output: Option<TxnMessage>,
    ) -> Result<Self, TxnError> {
        let receipt = Self::receipt(&group, command, output.as_ref())?;
        let shares = claims_of(output.as_ref(), &group)
            .into_iter()
            .map(|(purpose, r)| member.sign(purpose, &r.to_canonical_bytes()))
            .collect();
        Ok(Endorsement {
            group,
            output,
            signed: SignedReceipt::sign(member, Purpose::Transition, receipt),
            shares,
        })
    }

    /// Checks that the signer endorsed exactly this output of `command` in
    /// `group`, and signed each receipt the output claims in the group's
    /// name for its purpose (one share each); returns the signer.
    pub fn verify(&self, group: &NodeId, command: &Command) -> Result<NodeId, TxnError> {
        if self.group != *group {
            return Err(TxnError::Decode {
                what: "endorsement",
                reason: format!("for group {}, not {group}", self.group),
            });
        }
        let expected = Self::receipt(group, command, self.output.as_ref())?;
        if self.signed.receipt != expected {
            return Err(TxnError::Decode {
                what: "endorsement",
                reason: "its receipt is not that of the output it carries".into(),
            });
        }
        self.signed.verify(Purpose::Transition)?;
        let signer = self.signed.signer;
        let claims = claims_of(self.output.as_ref(), group);
        if claims.len() != self.shares.len() {
            return Err(TxnError::Decode {
                what: "endorsement",
                reason: format!(
                    "{} shares for {} group receipts",
                    self.shares.len(),
                    claims.len()
                ),
            });
        }
        for ((purpose, receipt), share) in claims.iter().zip(&self.shares) {
            verify_signature(&signer, *purpose, &receipt.to_canonical_bytes(), share)
                .map_err(|source| TxnError::BadSignature { signer, source })?;
        }
        Ok(signer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ParticipantConfig, ShardMap, TxnId};
    use proptest::prelude::*;

    fn machine() -> ShardMachine {
        let keys = KeyPair::from_seed([1; 32]);
        let map = ShardMap::even(&[keys.node_id()]);
        ShardMachine::new(ParticipantCore::new(keys, ParticipantConfig::default(), map).unwrap())
    }

    proptest! {
        /// Any bytes decided as a command are applied without panic: garbage
        /// has no output, and two replicas stay equal.
        #[test]
        fn garbage_commands_are_applied_without_output(bytes in proptest::collection::vec(any::<u8>(), 1..256)) {
            let (mut a, mut b) = (machine(), machine());
            let command = Command::sign(&hologram_receipt::KeyPair::from_seed([0xc1; 32]), 0, 0, bytes.clone()).unwrap();
            let out = a.apply(&command);
            prop_assert_eq!(&out, &b.apply(&command));
            if TxnMessage::from_wire(&bytes).is_err() {
                prop_assert_eq!(out, None);
            }
            prop_assert_eq!(a.state_receipt(), b.state_receipt());
            prop_assert_ne!(a.state_receipt(), machine().state_receipt());
        }
    }

    #[test]
    fn endorsements_bind_group_command_output_and_purpose() {
        let member = KeyPair::from_seed([5; 32]);
        let group = KeyPair::from_seed([1; 32]).node_id();
        let message = TxnMessage::Abort {
            txn: TxnId([3; 16]),
        };
        let command = Command::sign(
            &hologram_receipt::KeyPair::from_seed([0xc1; 32]),
            0,
            0,
            message.to_wire().unwrap(),
        )
        .unwrap();
        let mut m = machine();
        let output = m.apply(&command);
        assert!(matches!(output, Some(TxnMessage::Decided { .. })));
        let e = Endorsement::sign(&member, group, &command, output).unwrap();
        assert_eq!(e.verify(&group, &command), Ok(member.node_id()));
        // Another group, another command, or no output: refused.
        assert!(e.verify(&member.node_id(), &command).is_err());
        let other = Command::sign(
            &hologram_receipt::KeyPair::from_seed([0xc1; 32]),
            0,
            0,
            b"other".to_vec(),
        )
        .unwrap();
        assert!(e.verify(&group, &other).is_err());
        let mut silent = e.clone();
        silent.output = None;
        assert!(silent.verify(&group, &command).is_err());
        // A signature for another purpose does not pass as an endorsement.
        let mut forged = e.clone();
        forged.signed = SignedReceipt::sign(&member, Purpose::Commit, e.signed.receipt);
        assert!(matches!(
            forged.verify(&group, &command),
            Err(TxnError::BadSignature { .. })
        ));
    }

    #[test]
    fn endorsements_sign_each_receipt_claimed_in_the_groups_name() {
        let members: Vec<KeyPair> = (0..4u8).map(|i| KeyPair::from_seed([20 + i; 32])).collect();
        let group = crate::Group::new(members.iter().map(KeyPair::node_id).collect()).unwrap();
        let map = ShardMap::even(&[group.id()]);
        let core = ParticipantCore::new(group.clone(), ParticipantConfig::default(), map).unwrap();
        let mut m = ShardMachine::new(core);
        let txn = TxnId([4; 16]);
        let command = Command::sign(
            &hologram_receipt::KeyPair::from_seed([0xc1; 32]),
            0,
            0,
            TxnMessage::Abort { txn }.to_wire().unwrap(),
        )
        .unwrap();
        let output = m.apply(&command);
        // The machine's decision is claimed unsigned in the group's name.
        let Some(TxnMessage::Decided { decision, .. }) = &output else {
            panic!("expected a decision, got {output:?}");
        };
        assert_eq!(
            decision.verify(&txn, &group.id()),
            Err(TxnError::TooFewSignatures {
                group: group.id(),
                got: 0,
                needed: 2
            })
        );
        let e = Endorsement::sign(&members[0], group.id(), &command, output.clone()).unwrap();
        assert_eq!(e.shares.len(), 1);
        assert_eq!(e.verify(&group.id(), &command), Ok(members[0].node_id()));
        let mut claims = output.clone();
        let claims = group_claims(claims.as_mut().unwrap(), &group.id());
        assert_eq!(claims.len(), 1);
        assert_eq!(claims[0].0, Purpose::Abort);
        // A share for another purpose, or a missing one, is refused.
        let mut wrong = e.clone();
        wrong.shares[0] =
            members[0].sign(Purpose::Commit, &abort_receipt(&txn).to_canonical_bytes());
        assert!(matches!(
            wrong.verify(&group.id(), &command),
            Err(TxnError::BadSignature { .. })
        ));
        let mut missing = e;
        missing.shares.clear();
        assert!(matches!(
            missing.verify(&group.id(), &command),
            Err(TxnError::Decode { .. })
        ));
        // A group's core does not hand keys off.
        let mut core = m.core().clone();
        let map = ShardMap::even(&[group.id(), members[0].node_id()]);
        assert!(matches!(
            core.begin_hand_off(map),
            Err(TxnError::InvalidHandOff(_))
        ));
    }
}
