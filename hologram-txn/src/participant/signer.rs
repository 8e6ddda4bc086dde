//! Who a participant signs as: its own keys, or its replicated group.

use crate::receipts::Group;
use crate::SignedReceipt;
use hologram_lattice::NodeId;
use hologram_receipt::{KeyPair, Purpose, Receipt};

/// Who a participant signs as.
#[derive(Debug, Clone)]
pub enum Signer {
    /// A single-replica shard: its own keys (its id is its public key).
    Key(KeyPair),
    /// The core of a replicated group, run alike on every member: it holds
    /// no secret, and claims its receipts in the group's name with no
    /// member signature yet ([`Group::unsigned`]); the members sign them
    /// (see [`ReplicatedParticipant`](crate::ReplicatedParticipant)). Such a core does not hand keys off.
    Group(Group),
}

impl Signer {
    /// The participant id: the key's node id, or the group's id.
    pub fn id(&self) -> NodeId {
        match self {
            Signer::Key(keys) => keys.node_id(),
            Signer::Group(group) => group.id(),
        }
    }

    /// The keys, for a single-replica shard.
    pub fn keys(&self) -> Option<&KeyPair> {
        match self {
            Signer::Key(keys) => Some(keys),
            Signer::Group(_) => None,
        }
    }

    /// `receipt` signed for `purpose` (claimed unsigned, for a group).
    pub fn sign(&self, purpose: Purpose, receipt: Receipt) -> SignedReceipt {
        match self {
            Signer::Key(keys) => SignedReceipt::sign(keys, purpose, receipt),
            Signer::Group(group) => group.unsigned(receipt),
        }
    }
}

impl From<KeyPair> for Signer {
    fn from(keys: KeyPair) -> Self {
        Signer::Key(keys)
    }
}

impl From<Group> for Signer {
    fn from(group: Group) -> Self {
        Signer::Group(group)
    }
}
