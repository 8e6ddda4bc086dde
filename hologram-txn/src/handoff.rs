//! Crash-safe hand-off of keys between participants, for shard splits and
//! migrations.

use crate::types::{bound, MAX_VALUE_LEN};
use crate::{Key, ShardMap, TxnError};
use hologram_lattice::NodeId;
use hologram_receipt::{verify_signature, KeyPair, Purpose, Signature};
use serde::{Deserialize, Serialize};

/// A key handed off by a split or move: the key, its version and value.
pub type HandedOff = (Key, u64, Option<Vec<u8>>);

/// Prefix of a transfer's canonical bytes.
pub const HANDOFF_TAG: &[u8] = b"hologram txn-handoff v1\n";
/// Prefix of an acknowledgement's canonical bytes.
pub const HANDOFF_ACK_TAG: &[u8] = b"hologram txn-handoff-ack v1\n";
/// The most keys one transfer or acknowledgement carries (a transfer is
/// also bounded by [`MAX_MESSAGE_LEN`](crate::wire::MAX_MESSAGE_LEN)).
pub const MAX_HANDOFF_ENTRIES: usize = u16::MAX as usize;

/// Keys handed off by their previous owner (module docs).
///
/// When a new [`ShardMap`] moves keys from one node (the source) to another
/// (the target):
///
/// 1. the source installs the map durably
///    ([`ParticipantCore::begin_hand_off`](crate::ParticipantCore::begin_hand_off)):
///    from then on it refuses requests for the leaving keys, but keeps their
///    data;
/// 2. it sends the target the keys, with versions and values, in signed
///    [`Transfer`]s of at most [`MAX_HANDOFF_ENTRIES`] entries, again every
///    `resend` interval until acknowledged;
/// 3. the target checks the transfer (signed by the node that owned the keys
///    under the map before, for keys the new map gives the target), makes
///    the keys and the map durable, and acknowledges with a signed
///    [`HandOffAck`] naming the keys and versions it now holds;
/// 4. only then does the source forget those keys.
///
/// So the moved state is durable at the target before the source lets go,
/// and every step is idempotent: a crash anywhere leaves the source holding
/// keys it does not own under its map, which it sends again when it starts;
/// a repeated transfer changes nothing at a target that has the key at that
/// version or newer (versions count commits, so an old copy never
/// overwrites a newer one), and is acknowledged again. Nothing is lost and
/// nothing is applied twice.
///
/// A target owns the keys only once their data has arrived: it learns the
/// new map from the transfer itself. Hand-offs therefore run one at a time,
/// and other participants learn the map once it is complete (the
/// placement service pushes it with
/// [`ParticipantCore::install_map`](crate::ParticipantCore::install_map)).
///
/// Both messages are signed for [`Purpose::HandOff`] over canonical bytes
/// defined here, each with its own tag:
///
/// | message | bytes |
/// |---|---|
/// | transfer | `"hologram txn-handoff v1\n" ‖ source 32 ‖ target 32 ‖ map ‖ n u16 ‖ n × (key ‖ version u64 ‖ 0, or 1 ‖ len u32 ‖ value)` |
/// | acknowledgement | `"hologram txn-handoff-ack v1\n" ‖ target 32 ‖ source 32 ‖ map version u64 ‖ n u16 ‖ n × (key ‖ version u64)` |
///
/// (keys as in [`Key`](crate::Key), the map as [`ShardMap::encode`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    /// The previous owner, who signs.
    pub source: NodeId,
    /// The new owner.
    pub target: NodeId,
    /// The map under which `target` owns the keys.
    pub map: ShardMap,
    /// The keys, their versions and values.
    pub entries: Vec<HandedOff>,
    /// The source's signature of the canonical bytes.
    pub signature: Signature,
}

impl Transfer {
    /// `keys` (the source) hands `entries` to `target` under `map`.
    pub fn sign(keys: &KeyPair, target: NodeId, map: ShardMap, entries: Vec<HandedOff>) -> Self {
        let mut t = Transfer {
            source: keys.node_id(),
            target,
            map,
            entries,
            signature: Signature::from_bytes([0; 64]),
        };
        t.signature = keys.sign(Purpose::HandOff, &t.canonical_bytes());
        t
    }

    /// The canonical bytes (module docs).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = HANDOFF_TAG.to_vec();
        out.extend_from_slice(self.source.as_bytes());
        out.extend_from_slice(self.target.as_bytes());
        self.map.encode(&mut out);
        // `check` bounds the count by MAX_HANDOFF_ENTRIES.
        out.extend_from_slice(&(self.entries.len() as u16).to_le_bytes());
        for (key, version, value) in &self.entries {
            key.encode(&mut out);
            out.extend_from_slice(&version.to_le_bytes());
            match value {
                None => out.push(0),
                Some(v) => {
                    out.push(1);
                    out.extend_from_slice(&(v.len() as u32).to_le_bytes());
                    out.extend_from_slice(v);
                }
            }
        }
        out
    }

    /// Checks the bounds a decoded transfer must meet.
    pub fn check(&self) -> Result<(), TxnError> {
        self.map.check()?;
        if self.entries.is_empty() {
            return Err(TxnError::Empty("hand-off"));
        }
        bound("hand-off", self.entries.len(), MAX_HANDOFF_ENTRIES)?;
        for (key, _, value) in &self.entries {
            key.check()?;
            bound("value", value.as_ref().map_or(0, Vec::len), MAX_VALUE_LEN)?;
        }
        Ok(())
    }

    /// Checks the source's signature.
    pub fn verify(&self) -> Result<(), TxnError> {
        verify(self.source, &self.canonical_bytes(), &self.signature)
    }
}

/// The target's signed acknowledgement: it holds these keys, durably, at
/// these versions or newer (module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandOffAck {
    /// The new owner, who signs.
    pub target: NodeId,
    /// The previous owner, which may now forget the keys.
    pub source: NodeId,
    /// The version of the map the keys moved under.
    pub map_version: u64,
    /// The keys and the versions received.
    pub keys: Vec<(Key, u64)>,
    /// The target's signature of the canonical bytes.
    pub signature: Signature,
}

impl HandOffAck {
    /// `keys` (the target) acknowledges `received` from `source`.
    pub fn sign(
        keys: &KeyPair,
        source: NodeId,
        map_version: u64,
        received: Vec<(Key, u64)>,
    ) -> Self {
        let mut ack = HandOffAck {
            target: keys.node_id(),
            source,
            map_version,
            keys: received,
            signature: Signature::from_bytes([0; 64]),
        };
        ack.signature = keys.sign(Purpose::HandOff, &ack.canonical_bytes());
        ack
    }

    /// The canonical bytes (module docs).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = HANDOFF_ACK_TAG.to_vec();
        out.extend_from_slice(self.target.as_bytes());
        out.extend_from_slice(self.source.as_bytes());
        out.extend_from_slice(&self.map_version.to_le_bytes());
        out.extend_from_slice(&(self.keys.len() as u16).to_le_bytes());
        for (key, version) in &self.keys {
            key.encode(&mut out);
            out.extend_from_slice(&version.to_le_bytes());
        }
        out
    }

    /// Checks the bounds a decoded acknowledgement must meet.
    pub fn check(&self) -> Result<(), TxnError> {
        bound(
            "hand-off acknowledgement",
            self.keys.len(),
            MAX_HANDOFF_ENTRIES,
        )?;
        self.keys.iter().try_for_each(|(k, _)| k.check())
    }

    /// Checks the target's signature.
    pub fn verify(&self) -> Result<(), TxnError> {
        verify(self.target, &self.canonical_bytes(), &self.signature)
    }
}

/// Checks `signer`'s hand-off signature of `bytes`.
fn verify(signer: NodeId, bytes: &[u8], signature: &Signature) -> Result<(), TxnError> {
    verify_signature(&signer, Purpose::HandOff, bytes, signature)
        .map_err(|source| TxnError::BadSignature { signer, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hologram_lattice::wire::Wire;

    fn transfer() -> (KeyPair, Transfer) {
        let (a, b) = (KeyPair::from_seed([1; 32]), KeyPair::from_seed([2; 32]));
        let map = ShardMap::even(&[a.node_id(), b.node_id()]);
        let entries = vec![
            (Key::new(b"x".to_vec()).unwrap(), 3, Some(vec![1, 2])),
            (Key::new(b"y".to_vec()).unwrap(), 1, None),
        ];
        (a.clone(), Transfer::sign(&a, b.node_id(), map, entries))
    }

    #[test]
    fn a_transfer_verifies_only_as_signed() {
        let (a, t) = transfer();
        assert_eq!(t.check(), Ok(()));
        assert_eq!(t.verify(), Ok(()));
        let mut bad = t.clone();
        bad.entries[0].2 = Some(vec![1, 3]);
        assert!(matches!(bad.verify(), Err(TxnError::BadSignature { .. })));
        let mut bad = t.clone();
        bad.entries[1].1 = 2;
        assert!(bad.verify().is_err());
        let mut bad = t.clone();
        bad.target = a.node_id();
        assert!(bad.verify().is_err());
        // Absent and empty values differ.
        let mut bad = t.clone();
        bad.entries[1].2 = Some(vec![]);
        assert!(bad.verify().is_err());
        // A transfer signature is not an acknowledgement's, nor another purpose's.
        let ack = HandOffAck {
            target: t.source,
            source: t.target,
            map_version: 1,
            keys: vec![],
            signature: t.signature,
        };
        assert!(ack.verify().is_err());
        let bytes = t.canonical_bytes();
        assert!(verify_signature(&t.source, Purpose::Delivery, &bytes, &t.signature).is_err());
    }

    #[test]
    fn an_acknowledgement_verifies_only_as_signed() {
        let (a, t) = transfer();
        let b = KeyPair::from_seed([2; 32]);
        let keys: Vec<(Key, u64)> = t.entries.iter().map(|e| (e.0.clone(), e.1)).collect();
        let ack = HandOffAck::sign(&b, a.node_id(), 1, keys);
        assert_eq!(ack.check(), Ok(()));
        assert_eq!(ack.verify(), Ok(()));
        let mut bad = ack.clone();
        bad.keys[0].1 += 1;
        assert!(bad.verify().is_err());
        let mut bad = ack;
        bad.target = a.node_id();
        assert!(bad.verify().is_err());
    }

    proptest::proptest! {
        #[test]
        fn hand_off_messages_round_trip_and_garbage_is_an_error(
            value in proptest::option::of(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)),
            version in proptest::prelude::any::<u64>(),
            flip in 0usize..4096,
        ) {
            let (a, mut t) = transfer();
            t.entries[0] = (t.entries[0].0.clone(), version, value);
            let t = Transfer::sign(&a, t.target, t.map.clone(), t.entries.clone());
            let ack = HandOffAck::sign(&a, t.target, 2, vec![(t.entries[0].0.clone(), version)]);
            for m in [crate::TxnMessage::HandOff(Box::new(t)), crate::TxnMessage::HandedOver(Box::new(ack))] {
                let mut bytes = m.to_wire().unwrap();
                proptest::prop_assert_eq!(&crate::TxnMessage::from_wire(&bytes).unwrap(), &m);
                let i = flip % (bytes.len() * 8);
                bytes[i / 8] ^= 1 << (i % 8);
                // Decodes to an error, or to a transfer that is the original
                // or whose signature no longer verifies.
                if let Ok(crate::TxnMessage::HandOff(t)) = crate::TxnMessage::from_wire(&bytes) {
                    let same = crate::TxnMessage::HandOff(t.clone()) == m;
                    proptest::prop_assert!(same || t.verify().is_err());
                }
            }
        }
    }

    fn a_keys() -> KeyPair {
        KeyPair::from_seed([1; 32])
    }

    #[test]
    fn empty_or_oversized_transfers_are_refused() {
        let (_, mut t) = transfer();
        let entry = t.entries[0].clone();
        t.entries = vec![entry; MAX_HANDOFF_ENTRIES + 1];
        let ack = HandOffAck::sign(
            &a_keys(),
            t.target,
            1,
            vec![(t.entries[0].0.clone(), 1); MAX_HANDOFF_ENTRIES + 1],
        );
        assert!(matches!(ack.check(), Err(TxnError::TooLarge { .. })));
        assert!(matches!(t.check(), Err(TxnError::TooLarge { .. })));
        t.entries.clear();
        assert_eq!(t.check(), Err(TxnError::Empty("hand-off")));
    }
}
