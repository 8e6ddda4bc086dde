//! A replicated group's identity and its proof: the self-certifying group
//! id and `f + 1` member signatures (see the module docs of `receipts`).

use super::SignedReceipt;
use crate::types::bound;
use crate::TxnError;
use hologram_lattice::NodeId;
use hologram_receipt::{Receipt, Signature};
use serde::{Deserialize, Serialize};

/// Prefix of the bytes a group's id is the hash of (the `receipts` module docs).
pub const GROUP_ID_TAG: &[u8] = b"hologram shard-group v1\n";

/// The most members a group may have (every decoder refuses more before
/// reading them).
pub const MAX_GROUP: usize = 64;

/// The id of the group whose members are `members`: `BLAKE3(GROUP_ID_TAG ‖
/// n u8 ‖ the n member ids)`. The members must be strictly ascending, 1 to
/// [`MAX_GROUP`] of them.
pub fn group_id(members: &[NodeId]) -> Result<NodeId, TxnError> {
    if members.is_empty() {
        return Err(TxnError::Empty("group member list"));
    }
    bound("group member list", members.len(), MAX_GROUP)?;
    if !members.windows(2).all(|w| w[0] < w[1]) {
        return Err(TxnError::Decode {
            what: "group member list",
            reason: "members not ascending and distinct".into(),
        });
    }
    let mut hasher = blake3::Hasher::new();
    hasher.update(GROUP_ID_TAG);
    // Bounded above by MAX_GROUP < 256.
    hasher.update(&[members.len() as u8]);
    members.iter().for_each(|m| {
        hasher.update(m.as_bytes());
    });
    Ok(NodeId::from_bytes(*hasher.finalize().as_bytes()))
}

/// A group of members that signs as one participant (see
/// [`ReplicatedParticipant`](crate::ReplicatedParticipant)): its members, ascending, and its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    id: NodeId,
    members: Vec<NodeId>,
}

impl Group {
    /// The group of `members` (in any order; distinct, 1 to [`MAX_GROUP`]).
    pub fn new(mut members: Vec<NodeId>) -> Result<Self, TxnError> {
        members.sort_unstable();
        let id = group_id(&members)?;
        Ok(Group { id, members })
    }

    /// Its id, [`group_id`] of its members.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Its members, ascending.
    pub fn members(&self) -> &[NodeId] {
        &self.members
    }

    /// How many member signatures make a receipt the group's: `f + 1`, with
    /// `f = (n - 1) / 3` the members that may be Byzantine.
    pub fn needed(&self) -> usize {
        needed(self.members.len())
    }

    /// `receipt` claimed by the group, with no member signature yet: its
    /// proof names the members and fails to verify until `f + 1` of them
    /// sign (see [`ReplicatedParticipant`](crate::ReplicatedParticipant)).
    pub fn unsigned(&self, receipt: Receipt) -> SignedReceipt {
        SignedReceipt {
            signer: self.id,
            receipt,
            proof: Proof::Group(GroupProof {
                members: self.members.clone(),
                signatures: Vec::new(),
            }),
        }
    }
}

/// `f + 1` for a group of `n` members.
fn needed(n: usize) -> usize {
    n.saturating_sub(1) / 3 + 1
}

/// What proves that a [`SignedReceipt`]'s signer signed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Proof {
    /// The signer's own Ed25519 signature (the signer's id is its key).
    Single(Signature),
    /// Signatures of `f + 1` members of the group whose id is the signer.
    Group(GroupProof),
}

/// A group's signature: signatures of its members, each over the same
/// canonical bytes under the same purpose as a single signature.
///
/// It proves the receipt is the group's when the members hash to the
/// group's id ([`group_id`]) and at least `f + 1` of them (`f = (n - 1) /
/// 3`) signed: honest members sign only what the group's deterministic
/// machine output from its certified log, so one honest signer suffices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupProof {
    /// The group's members, strictly ascending, 1 to [`MAX_GROUP`].
    #[serde(deserialize_with = "bounded::<_, _, MAX_GROUP>")]
    pub members: Vec<NodeId>,
    /// Member signatures, each with the index of its member in `members`.
    #[serde(deserialize_with = "bounded::<_, _, MAX_GROUP>")]
    pub signatures: Vec<(u8, Signature)>,
}

/// Deserializes a sequence of at most `MAX` elements, refusing a longer one
/// before reading past its bound.
pub(crate) fn bounded<'de, D, T, const MAX: usize>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Bounded<T, const MAX: usize>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>, const MAX: usize> serde::de::Visitor<'de> for Bounded<T, MAX> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "at most {MAX} elements")
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let too_many = || serde::de::Error::invalid_length(MAX + 1, &self);
            if seq.size_hint().is_some_and(|n| n > MAX) {
                return Err(too_many());
            }
            let mut out = Vec::new();
            while let Some(item) = seq.next_element()? {
                if out.len() == MAX {
                    return Err(too_many());
                }
                out.push(item);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_seq(Bounded::<T, MAX>(std::marker::PhantomData))
}

impl GroupProof {
    /// Checks the bounds a decoded proof must meet: 1 to [`MAX_GROUP`]
    /// members, at most one signature per member.
    pub fn check(&self) -> Result<(), TxnError> {
        if self.members.is_empty() {
            return Err(TxnError::Empty("group member list"));
        }
        bound("group member list", self.members.len(), MAX_GROUP)?;
        bound(
            "group signature list",
            self.signatures.len(),
            self.members.len(),
        )
    }

    /// The member signatures that must all verify for `group`'s proof to
    /// hold, after every check that needs no signature: the members hash to
    /// `group`, indices are in range and distinct, and there are `f + 1`.
    pub(super) fn shares(&self, group: &NodeId) -> Result<Vec<(NodeId, Signature)>, TxnError> {
        if group_id(&self.members)? != *group {
            return Err(TxnError::NotTheGroup { group: *group });
        }
        let mut seen = [false; MAX_GROUP];
        let mut shares = Vec::with_capacity(self.signatures.len());
        for &(index, signature) in &self.signatures {
            let member =
                self.members
                    .get(usize::from(index))
                    .ok_or(TxnError::MemberIndexOutOfRange {
                        group: *group,
                        index,
                        members: self.members.len(),
                    })?;
            if std::mem::replace(&mut seen[usize::from(index)], true) {
                return Err(TxnError::DuplicateMemberIndex {
                    group: *group,
                    index,
                });
            }
            shares.push((*member, signature));
        }
        let needed = needed(self.members.len());
        if shares.len() < needed {
            return Err(TxnError::TooFewSignatures {
                group: *group,
                got: shares.len(),
                needed,
            });
        }
        Ok(shares)
    }
}
