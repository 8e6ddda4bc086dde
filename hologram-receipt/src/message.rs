//! Authenticated messages: a payload, its receipt and a witness chain (SPEC §7).

use crate::{KeyPair, Receipt, ReceiptError, Witness};
use hologram_lattice::NodeId;
use serde::{Deserialize, Serialize};

/// The largest payload an [`AuthenticatedMessage`] carries: 1 MiB.
pub const MAX_PAYLOAD_LEN: usize = 1 << 20;

/// A message whose payload, sender and forwarding path can be checked by
/// anyone: the payload, its [`Receipt`] and a [`Witness`] chain.
///
/// A receiver accepts a message when [`verify`](AuthenticatedMessage::verify)
/// succeeds and [`authorizes`](AuthenticatedMessage::authorizes) names the
/// sender it expects (and, if it cares, when
/// [`holder`](AuthenticatedMessage::holder) is itself).
///
/// ```
/// use hologram_receipt::{AuthenticatedMessage, KeyPair};
/// let (alice, bob, carol) = (KeyPair::from_seed([1; 32]), KeyPair::from_seed([2; 32]), KeyPair::from_seed([3; 32]));
/// let msg = AuthenticatedMessage::new(b"hello".to_vec(), &alice).unwrap();
/// let at_bob = msg.forward(bob.node_id(), &alice).unwrap();
/// let at_carol = at_bob.forward(carol.node_id(), &bob).unwrap();
/// assert!(at_carol.verify().is_ok());
/// assert!(at_carol.authorizes(&alice.node_id()));
/// assert!(!at_carol.authorizes(&bob.node_id()));
/// assert_eq!(at_carol.holder(), carol.node_id());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AuthenticatedMessage {
    payload: Vec<u8>,
    receipt: Receipt,
    witness: Witness,
}

impl AuthenticatedMessage {
    /// A message from `sender`: the receipt of `payload` and the sender's
    /// origin signature. Fails when the payload exceeds [`MAX_PAYLOAD_LEN`].
    pub fn new(payload: Vec<u8>, sender: &KeyPair) -> Result<Self, ReceiptError> {
        check_payload(&payload)?;
        let receipt = Receipt::from_bytes(&payload);
        let witness = Witness::new(&receipt, sender);
        Self::from_parts(payload, receipt, witness)
    }

    /// Assembles a message from its parts without checking anything but the
    /// payload size (use [`AuthenticatedMessage::verify`]).
    pub fn from_parts(
        payload: Vec<u8>,
        receipt: Receipt,
        witness: Witness,
    ) -> Result<Self, ReceiptError> {
        check_payload(&payload)?;
        Ok(Self {
            payload,
            receipt,
            witness,
        })
    }

    /// The parts, consumed.
    pub fn into_parts(self) -> (Vec<u8>, Receipt, Witness) {
        (self.payload, self.receipt, self.witness)
    }

    /// The payload.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The receipt the message claims for its payload.
    pub fn receipt(&self) -> &Receipt {
        &self.receipt
    }

    /// The witness chain.
    pub fn witness(&self) -> &Witness {
        &self.witness
    }

    /// The claimed sender (the origin of the witness chain).
    pub fn sender(&self) -> NodeId {
        self.witness.sender()
    }

    /// The node the message was last handed to (the sender if never forwarded).
    pub fn holder(&self) -> NodeId {
        self.witness.holder()
    }

    /// Whether the message's origin is `sender` (not merely its last hop).
    /// Meaningful after [`AuthenticatedMessage::verify`] succeeds.
    pub fn authorizes(&self, sender: &NodeId) -> bool {
        self.witness.authorizes(sender)
    }

    /// Checks the message: the payload size, that the receipt is the
    /// payload's ([`ReceiptError::PayloadMismatch`]), and the witness chain
    /// ([`Witness::verify`]: length, custody, then every signature in one
    /// batch).
    pub fn verify(&self) -> Result<(), ReceiptError> {
        self.check_bounds()?;
        let computed = Receipt::from_bytes(&self.payload);
        if computed != self.receipt {
            return Err(ReceiptError::PayloadMismatch {
                claimed: Box::new(self.receipt),
                computed: Box::new(computed),
            });
        }
        self.witness.verify(&self.receipt)
    }

    /// The message handed on to `next_hop` by `forwarder`, who must be the
    /// current holder. The payload and receipt are unchanged; the witness
    /// gains a hop ([`Witness::extend`]). Forwarding does not verify: the
    /// receiver does.
    pub fn forward(&self, next_hop: NodeId, forwarder: &KeyPair) -> Result<Self, ReceiptError> {
        Ok(Self {
            payload: self.payload.clone(),
            receipt: self.receipt,
            witness: self.witness.extend(&self.receipt, next_hop, forwarder)?,
        })
    }

    /// The size bounds: payload and hop count.
    pub(crate) fn check_bounds(&self) -> Result<(), ReceiptError> {
        check_payload(&self.payload)?;
        self.witness.check_bounds()
    }
}

/// [`ReceiptError::PayloadTooLarge`] above [`MAX_PAYLOAD_LEN`].
fn check_payload(payload: &[u8]) -> Result<(), ReceiptError> {
    if payload.len() > MAX_PAYLOAD_LEN {
        Err(ReceiptError::PayloadTooLarge {
            len: payload.len(),
            max: MAX_PAYLOAD_LEN,
        })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_and_receipt_must_match() {
        let alice = KeyPair::from_seed([1; 32]);
        let msg = AuthenticatedMessage::new(b"pay".to_vec(), &alice).unwrap();
        let (_, receipt, witness) = msg.clone().into_parts();
        let swapped = AuthenticatedMessage::from_parts(b"pax".to_vec(), receipt, witness).unwrap();
        assert!(matches!(
            swapped.verify(),
            Err(ReceiptError::PayloadMismatch { .. })
        ));
        assert_eq!(msg.sender(), alice.node_id());
        assert_eq!(msg.holder(), alice.node_id());
    }

    #[test]
    fn payload_size_is_bounded() {
        let alice = KeyPair::from_seed([1; 32]);
        let big = vec![0u8; MAX_PAYLOAD_LEN + 1];
        assert_eq!(
            AuthenticatedMessage::new(big, &alice),
            Err(ReceiptError::PayloadTooLarge {
                len: MAX_PAYLOAD_LEN + 1,
                max: MAX_PAYLOAD_LEN
            })
        );
        assert!(AuthenticatedMessage::new(vec![7; MAX_PAYLOAD_LEN], &alice).is_ok());
    }
}
