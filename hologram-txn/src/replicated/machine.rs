//! [`ShardMachine`]: a shard's participant logic as a deterministic
//! [`StateMachine`], and the [`Endorsement`] each group member signs of
//! what applying a command returned.

use crate::participant::ParticipantCore;
use crate::{Key, SignedReceipt, TxnError, TxnMessage};
use hologram_consensus::{Command, StateMachine};
use hologram_lattice::NodeId;
use hologram_receipt::{KeyPair, Purpose, Receipt};
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
/// Every replica of the group starts from the same core (same group keys,
/// same data) and applies the same commands in the same order, so every
/// honest replica computes the same reply, signatures included (Ed25519 is
/// deterministic).
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
}

/// A group member's signed statement: applying the command with these bytes
/// in group `group` returned `output`.
///
/// The signature is the member's, for [`Purpose::Transition`] (the output of
/// a state transition it applied), over the receipt of
/// `ENDORSEMENT_TAG ‖ group(32) ‖ BLAKE3(command bytes)(32) ‖ 0 | 1 ‖ output
/// wire bytes`. The output's wire bytes are only hashed here, never trusted:
/// endorsements are compared by the output itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endorsement {
    /// The group's id (the key its participant receipts are signed with).
    pub group: NodeId,
    /// What the member's machine returned.
    pub output: Option<TxnMessage>,
    /// The member's signature of [`Endorsement::receipt`].
    pub signed: SignedReceipt,
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

    /// `member` endorses `output` of `command` in `group`.
    pub fn sign(
        member: &KeyPair,
        group: NodeId,
        command: &Command,
        output: Option<TxnMessage>,
    ) -> Result<Self, TxnError> {
        let receipt = Self::receipt(&group, command, output.as_ref())?;
        Ok(Endorsement {
            group,
            output,
            signed: SignedReceipt::sign(member, Purpose::Transition, receipt),
        })
    }

    /// Checks that the signer endorsed exactly this output of `command` in
    /// `group`; returns the signer.
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
        Ok(self.signed.signer)
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
            let command = Command::new(bytes.clone()).unwrap();
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
        let command = Command::new(message.to_wire().unwrap()).unwrap();
        let mut m = machine();
        let output = m.apply(&command);
        assert!(matches!(output, Some(TxnMessage::Decided { .. })));
        let e = Endorsement::sign(&member, group, &command, output).unwrap();
        assert_eq!(e.verify(&group, &command), Ok(member.node_id()));
        // Another group, another command, or no output: refused.
        assert!(e.verify(&member.node_id(), &command).is_err());
        let other = Command::new(b"other".to_vec()).unwrap();
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
}
