//! The broadcast protocol's messages and their bounded decoding.

use super::{DeliveryReceipt, MessageId};
use crate::ConsensusError;
use hologram_lattice::wire::{check_count, Wire, WireError};
use hologram_receipt::{AuthenticatedMessage, MAX_HOPS, MAX_PAYLOAD_LEN};
use serde::{Deserialize, Serialize};

/// Most message ids one announcement or pull carries.
pub const MAX_IDS: usize = 64;

/// Longest valid encoding of a [`BroadcastMessage`]: the largest
/// authenticated message and the variant tag. Longer input is refused unread.
pub const MAX_MESSAGE_WIRE: usize = <AuthenticatedMessage as Wire>::MAX_WIRE_LEN + 8;

/// What broadcast nodes send each other (carried under
/// [`crate::BROADCAST_PROTOCOL`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BroadcastMessage {
    /// Eager push: a broadcast, its witness chain ending at the receiver.
    Gossip(AuthenticatedMessage),
    /// Lazy push: "I delivered these recently" (at most [`MAX_IDS`]).
    IHave(Vec<MessageId>),
    /// Pull: "send me these" (at most [`MAX_IDS`]).
    IWant(Vec<MessageId>),
    /// A receiver's signed delivery acknowledgement, sent to the origin.
    Ack(DeliveryReceipt),
}

/// Decoded from exactly one buffer ([`Wire::from_wire`]: more than
/// [`MAX_MESSAGE_WIRE`] refused unread), then refused with id lists over
/// [`MAX_IDS`] and witness chains or payloads over their bounds. Nothing is
/// verified here.
impl Wire for BroadcastMessage {
    const NAME: &'static str = "broadcast message";
    const MAX_WIRE_LEN: usize = MAX_MESSAGE_WIRE;
    type Error = ConsensusError;

    fn check_decoded(&self) -> Result<(), ConsensusError> {
        match self {
            Self::IHave(ids) => check_count("announcement ids", ids.len(), MAX_IDS)?,
            Self::IWant(ids) => check_count("pull ids", ids.len(), MAX_IDS)?,
            Self::Gossip(m) => {
                check_count("witness hops", m.witness().len(), MAX_HOPS)?;
                if m.payload().len() > MAX_PAYLOAD_LEN {
                    return Err(WireError::TooLarge {
                        what: "gossip payload",
                        len: m.payload().len(),
                        max: MAX_PAYLOAD_LEN,
                    }
                    .into());
                }
            }
            Self::Ack(_) => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hologram_receipt::KeyPair;
    use proptest::prelude::*;

    fn samples() -> Vec<BroadcastMessage> {
        let (a, b) = (KeyPair::from_seed([1; 32]), KeyPair::from_seed([2; 32]));
        let msg = AuthenticatedMessage::new(b"0123456789".to_vec(), &a)
            .unwrap()
            .forward(b.node_id(), &a)
            .unwrap();
        let id = MessageId::of(msg.receipt(), &a.node_id());
        vec![
            BroadcastMessage::Gossip(msg),
            BroadcastMessage::IHave(vec![id; 3]),
            BroadcastMessage::IWant(vec![id]),
            BroadcastMessage::Ack(DeliveryReceipt::sign(&b, id, a.node_id())),
        ]
    }

    #[test]
    fn long_lists_and_long_input_are_refused() {
        let id = MessageId::from_bytes([3; 32]);
        let long = BroadcastMessage::IHave(vec![id; MAX_IDS + 1])
            .to_wire()
            .unwrap();
        assert!(matches!(
            BroadcastMessage::from_wire(&long),
            Err(ConsensusError::Wire(WireError::TooMany {
                count: 65,
                max: MAX_IDS,
                ..
            }))
        ));
        let ok = BroadcastMessage::IWant(vec![id; MAX_IDS])
            .to_wire()
            .unwrap();
        assert!(BroadcastMessage::from_wire(&ok).is_ok());
        let huge = vec![0u8; MAX_MESSAGE_WIRE + 1];
        assert!(matches!(
            BroadcastMessage::from_wire(&huge),
            Err(ConsensusError::Wire(WireError::TooLarge {
                max: MAX_MESSAGE_WIRE,
                ..
            }))
        ));
        let mut trailing = ok;
        trailing.push(0);
        assert!(matches!(
            BroadcastMessage::from_wire(&trailing),
            Err(ConsensusError::Wire(WireError::Trailing { extra: 1, .. }))
        ));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = BroadcastMessage::from_wire(&bytes);
        }

        #[test]
        fn messages_round_trip_and_flipped_bits_never_panic(which in 0usize..4, bit in any::<usize>()) {
            let m = samples().swap_remove(which);
            let mut bytes = m.to_wire().unwrap();
            prop_assert_eq!(BroadcastMessage::from_wire(&bytes).unwrap(), m);
            let bit = bit % (bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
            let _ = BroadcastMessage::from_wire(&bytes);
        }
    }
}
