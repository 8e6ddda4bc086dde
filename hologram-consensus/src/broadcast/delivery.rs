//! Delivery proofs (the chapter's exercise 1): signed acknowledgements and
//! the certificate an origin builds from a threshold of them.

use super::{Directory, DropReason, MessageId};
use crate::ConsensusError;
use hologram_lattice::wire::{check_count, Wire};
use hologram_lattice::NodeId;
use hologram_receipt::{
    verify_signature, KeyPair, Purpose, ReceiptError, Signature, SignatureBatch,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Bytes a delivery acknowledgement signs.
pub const ACK_SIGNED_LEN: usize = 96;
/// Most acknowledgements a certificate may carry.
pub const MAX_CERTIFICATE_ACKS: usize = 4096;
/// Longest valid certificate encoding: ids, a length varint and the acks.
pub const MAX_CERTIFICATE_WIRE: usize = 32 + 32 + 3 + MAX_CERTIFICATE_ACKS * (32 + 64);

/// The canonical bytes of an acknowledgement.
fn ack_bytes(message: &MessageId, origin: &NodeId, receiver: &NodeId) -> [u8; ACK_SIGNED_LEN] {
    let mut out = [0u8; ACK_SIGNED_LEN];
    out[..32].copy_from_slice(message.as_bytes());
    out[32..64].copy_from_slice(origin.as_bytes());
    out[64..].copy_from_slice(receiver.as_bytes());
    out
}

/// A receiver's signed statement that it delivered a broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DeliveryReceipt {
    /// The broadcast delivered.
    pub message: MessageId,
    /// Its origin.
    pub origin: NodeId,
    /// The node that delivered it.
    pub receiver: NodeId,
    /// The receiver's signature for [`Purpose::Delivery`].
    pub signature: Signature,
}

impl DeliveryReceipt {
    /// `receiver` acknowledges delivery of `message` from `origin`.
    pub fn sign(receiver: &KeyPair, message: MessageId, origin: NodeId) -> Self {
        let id = receiver.node_id();
        Self {
            message,
            origin,
            receiver: id,
            signature: receiver.sign(Purpose::Delivery, &ack_bytes(&message, &origin, &id)),
        }
    }

    /// Checks the signature (strict Ed25519).
    pub fn verify(&self) -> Result<(), ReceiptError> {
        verify_signature(
            &self.receiver,
            Purpose::Delivery,
            &ack_bytes(&self.message, &self.origin, &self.receiver),
            &self.signature,
        )
    }
}

/// One acknowledgement inside a certificate: who, and their signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ack {
    /// The receiver.
    pub receiver: NodeId,
    /// Its signature over (message, origin, receiver).
    pub signature: Signature,
}

/// Proof that at least a threshold of distinct nodes delivered a broadcast.
///
/// ```
/// use hologram_consensus::broadcast::{DeliveryReceipt, Directory, MessageId};
/// use hologram_consensus::DeliveryCertificate;
/// use hologram_receipt::{KeyPair, Receipt};
/// let keys: Vec<KeyPair> = (1..=4u8).map(|i| KeyPair::from_seed([i; 32])).collect();
/// let dir = Directory::new(keys.iter().map(|k| k.node_id()));
/// let origin = keys[0].node_id();
/// let id = MessageId::of(&Receipt::from_bytes(b"m"), &origin);
/// let acks = keys[1..].iter().map(|k| DeliveryReceipt::sign(k, id, origin));
/// let cert = DeliveryCertificate::from_receipts(id, origin, acks).unwrap();
/// assert!(cert.verify(&dir, 3).is_ok());
/// assert!(cert.verify(&dir, 4).is_err());
/// ```
///
/// A receiver that delivers a broadcast signs, for
/// [`Purpose::Delivery`], the 96 bytes
///
/// ```text
/// message id (32) ‖ origin id (32) ‖ receiver id (32)
/// ```
///
/// and sends this [`DeliveryReceipt`] to the origin. Once `threshold` distinct
/// members acknowledged, the origin holds a [`DeliveryCertificate`]: the
/// message id, the origin and the acknowledgements sorted by receiver, which
/// anyone can check against the node identities
/// ([`DeliveryCertificate::verify`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryCertificate {
    message: MessageId,
    origin: NodeId,
    acks: Vec<Ack>,
}

impl DeliveryCertificate {
    /// A certificate of the receipts for `message` from `origin`, sorted by
    /// receiver. Receipts for another message or origin, and repeated
    /// receivers, are refused ([`ConsensusError::CertificateDuplicateReceiver`]
    /// for a repeat); signatures are not checked here (see
    /// [`verify`](Self::verify)).
    pub fn from_receipts(
        message: MessageId,
        origin: NodeId,
        receipts: impl IntoIterator<Item = DeliveryReceipt>,
    ) -> Result<Self, ConsensusError> {
        let mut acks = BTreeMap::new();
        for r in receipts {
            if r.message != message || r.origin != origin {
                return Err(ConsensusError::CertificateForgedAck {
                    receiver: r.receiver,
                });
            }
            if acks.insert(r.receiver, r.signature).is_some() {
                return Err(ConsensusError::CertificateDuplicateReceiver {
                    receiver: r.receiver,
                });
            }
        }
        Ok(Self::from_sorted(message, origin, &acks))
    }

    fn from_sorted(message: MessageId, origin: NodeId, acks: &BTreeMap<NodeId, Signature>) -> Self {
        Self {
            message,
            origin,
            acks: acks
                .iter()
                .map(|(&receiver, &signature)| Ack {
                    receiver,
                    signature,
                })
                .collect(),
        }
    }

    /// The broadcast certified.
    pub fn message(&self) -> MessageId {
        self.message
    }

    /// Its origin.
    pub fn origin(&self) -> NodeId {
        self.origin
    }

    /// The acknowledgements, sorted by receiver.
    pub fn acks(&self) -> &[Ack] {
        &self.acks
    }

    /// The receivers counted.
    pub fn receivers(&self) -> impl ExactSizeIterator<Item = NodeId> + '_ {
        self.acks.iter().map(|a| a.receiver)
    }

    /// Checks the certificate: at least `threshold` acknowledgements
    /// ([`ConsensusError::CertificateBelowThreshold`]), receivers strictly
    /// increasing so none counts twice
    /// ([`ConsensusError::CertificateDuplicateReceiver`]), every receiver a
    /// member of `directory` ([`ConsensusError::CertificateUnknownReceiver`]),
    /// and every signature valid, checked in one batch
    /// ([`ConsensusError::CertificateForgedAck`] names the first bad one).
    pub fn verify(&self, directory: &Directory, threshold: usize) -> Result<(), ConsensusError> {
        if self.acks.len() < threshold {
            return Err(ConsensusError::CertificateBelowThreshold {
                acks: self.acks.len(),
                threshold,
            });
        }
        let mut batch = SignatureBatch::with_capacity(self.acks.len());
        let mut previous: Option<NodeId> = None;
        for ack in &self.acks {
            if previous.is_some_and(|p| p >= ack.receiver) {
                return Err(ConsensusError::CertificateDuplicateReceiver {
                    receiver: ack.receiver,
                });
            }
            previous = Some(ack.receiver);
            if !directory.is_member(&ack.receiver) {
                return Err(ConsensusError::CertificateUnknownReceiver {
                    receiver: ack.receiver,
                });
            }
            batch.push(
                ack.receiver,
                Purpose::Delivery,
                &ack_bytes(&self.message, &self.origin, &ack.receiver),
                ack.signature,
            );
        }
        batch
            .verify()
            .map_err(|e| ConsensusError::CertificateForgedAck {
                receiver: match e {
                    ReceiptError::BadBatchEntry { signer, .. } => signer,
                    _ => self.acks.first().map_or(self.origin, |a| a.receiver),
                },
            })
    }
}

/// Decoded from exactly one buffer ([`Wire::from_wire`]: more than
/// [`MAX_CERTIFICATE_WIRE`] bytes refused unread), refusing more than
/// [`MAX_CERTIFICATE_ACKS`] acknowledgements. Decoding does not verify it.
impl Wire for DeliveryCertificate {
    const NAME: &'static str = "delivery certificate";
    const MAX_WIRE_LEN: usize = MAX_CERTIFICATE_WIRE;
    type Error = ConsensusError;

    fn check_decoded(&self) -> Result<(), ConsensusError> {
        let acks = self.acks.len();
        Ok(check_count(
            "certificate acknowledgements",
            acks,
            MAX_CERTIFICATE_ACKS,
        )?)
    }
}

/// What an origin collects for one of its broadcasts: verified
/// acknowledgements by receiver, and the certificate once the threshold is met.
#[derive(Debug, Clone)]
pub(crate) struct Acknowledgements {
    message: MessageId,
    origin: NodeId,
    acks: BTreeMap<NodeId, Signature>,
    certificate: Option<DeliveryCertificate>,
}

impl Acknowledgements {
    pub(crate) fn new(message: MessageId, origin: NodeId) -> Self {
        Self {
            message,
            origin,
            acks: BTreeMap::new(),
            certificate: None,
        }
    }

    /// Counts `ack` sent by `from` if it is new, from a member, sent by its
    /// own receiver and correctly signed; returns the certificate when this
    /// acknowledgement completes one.
    pub(crate) fn add(
        &mut self,
        ack: &DeliveryReceipt,
        from: NodeId,
        directory: &Directory,
        threshold: usize,
    ) -> Result<Option<DeliveryCertificate>, DropReason> {
        if !directory.is_member(&ack.receiver) {
            return Err(DropReason::UnknownAcker);
        }
        if self.acks.contains_key(&ack.receiver) {
            return Err(DropReason::DuplicateAck);
        }
        if ack.message != self.message || ack.origin != self.origin {
            return Err(DropReason::UnexpectedAck);
        }
        if ack.receiver != from || ack.verify().is_err() {
            return Err(DropReason::ForgedAck);
        }
        self.acks.insert(ack.receiver, ack.signature);
        if self.certificate.is_none() && self.acks.len() >= threshold {
            let cert = DeliveryCertificate::from_sorted(self.message, self.origin, &self.acks);
            self.certificate = Some(cert.clone());
            return Ok(Some(cert));
        }
        Ok(None)
    }

    /// The receivers that acknowledged.
    pub(crate) fn receivers(&self) -> impl Iterator<Item = &NodeId> + '_ {
        self.acks.keys()
    }

    pub(crate) fn count(&self) -> usize {
        self.acks.len()
    }

    pub(crate) fn certificate(&self) -> Option<&DeliveryCertificate> {
        self.certificate.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hologram_lattice::wire::WireError;
    use hologram_receipt::Receipt;
    use proptest::prelude::*;

    fn setup(n: u8) -> (Vec<KeyPair>, Directory, MessageId, NodeId) {
        let keys: Vec<KeyPair> = (1..=n).map(|i| KeyPair::from_seed([i; 32])).collect();
        let dir = Directory::new(keys.iter().map(|k| k.node_id()));
        let origin = keys[0].node_id();
        (
            keys,
            dir,
            MessageId::of(&Receipt::from_bytes(b"m"), &origin),
            origin,
        )
    }

    #[test]
    fn certificates_refuse_repeats_strangers_and_forgeries() {
        let (keys, dir, id, origin) = setup(5);
        let acks: Vec<DeliveryReceipt> = keys
            .iter()
            .map(|k| DeliveryReceipt::sign(k, id, origin))
            .collect();
        let cert = DeliveryCertificate::from_receipts(id, origin, acks.clone()).unwrap();
        assert!(cert.verify(&dir, 5).is_ok());

        // A receiver twice.
        let mut twice = cert.clone();
        twice.acks.insert(1, twice.acks[0]);
        assert!(matches!(
            twice.verify(&dir, 1),
            Err(ConsensusError::CertificateDuplicateReceiver { .. })
        ));
        assert!(matches!(
            DeliveryCertificate::from_receipts(id, origin, [acks[1], acks[1]]),
            Err(ConsensusError::CertificateDuplicateReceiver { .. })
        ));

        // A stranger's genuine signature.
        let stranger = KeyPair::from_seed([99; 32]);
        let with_stranger = DeliveryCertificate::from_receipts(
            id,
            origin,
            acks.iter()
                .copied()
                .chain([DeliveryReceipt::sign(&stranger, id, origin)]),
        )
        .unwrap();
        assert!(matches!(
            with_stranger.verify(&dir, 1),
            Err(ConsensusError::CertificateUnknownReceiver { receiver }) if receiver == stranger.node_id()
        ));

        // A signature moved to another receiver, and one for another message.
        let mut forged = cert.clone();
        forged.acks[2].signature = forged.acks[3].signature;
        let victim = forged.acks[2].receiver;
        assert!(matches!(
            forged.verify(&dir, 1),
            Err(ConsensusError::CertificateForgedAck { receiver }) if receiver == victim
        ));
        let other = MessageId::of(&Receipt::from_bytes(b"n"), &origin);
        let mut moved = cert.clone();
        moved.message = other;
        assert!(matches!(
            moved.verify(&dir, 1),
            Err(ConsensusError::CertificateForgedAck { .. })
        ));

        assert!(matches!(
            cert.verify(&dir, 6),
            Err(ConsensusError::CertificateBelowThreshold {
                acks: 5,
                threshold: 6
            })
        ));
    }

    #[test]
    fn a_delivery_ack_is_not_a_vote() {
        let (keys, _, id, origin) = setup(2);
        let ack = DeliveryReceipt::sign(&keys[1], id, origin);
        let bytes = ack_bytes(&id, &origin, &keys[1].node_id());
        assert!(ack.verify().is_ok());
        assert!(
            verify_signature(&keys[1].node_id(), Purpose::Vote, &bytes, &ack.signature).is_err()
        );
    }

    #[test]
    fn the_collector_counts_each_member_once() {
        let (keys, dir, id, origin) = setup(4);
        let mut col = Acknowledgements::new(id, origin);
        let a1 = DeliveryReceipt::sign(&keys[1], id, origin);
        assert_eq!(col.add(&a1, keys[1].node_id(), &dir, 2), Ok(None));
        assert_eq!(
            col.add(&a1, keys[1].node_id(), &dir, 2),
            Err(DropReason::DuplicateAck)
        );
        // Sent by someone else than its receiver.
        let a2 = DeliveryReceipt::sign(&keys[2], id, origin);
        assert_eq!(
            col.add(&a2, keys[3].node_id(), &dir, 2),
            Err(DropReason::ForgedAck)
        );
        let mut bad = a2;
        bad.signature = a1.signature;
        assert_eq!(
            col.add(&bad, keys[2].node_id(), &dir, 2),
            Err(DropReason::ForgedAck)
        );
        let cert = col.add(&a2, keys[2].node_id(), &dir, 2).unwrap().unwrap();
        assert!(cert.verify(&dir, 2).is_ok());
        assert_eq!(col.count(), 2);
        let stranger = KeyPair::from_seed([77; 32]);
        let a3 = DeliveryReceipt::sign(&stranger, id, origin);
        assert_eq!(
            col.add(&a3, stranger.node_id(), &dir, 2),
            Err(DropReason::UnknownAcker)
        );
    }

    proptest! {
        #[test]
        fn certificate_decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = DeliveryCertificate::from_wire(&bytes);
        }

        #[test]
        fn certificates_round_trip(n in 1u8..8) {
            let (keys, dir, id, origin) = setup(n);
            let cert = DeliveryCertificate::from_receipts(
                id, origin, keys.iter().map(|k| DeliveryReceipt::sign(k, id, origin))).unwrap();
            let back = DeliveryCertificate::from_wire(&cert.to_wire().unwrap()).unwrap();
            prop_assert_eq!(&back, &cert);
            prop_assert!(back.verify(&dir, usize::from(n)).is_ok());
        }
    }

    #[test]
    fn oversized_certificates_are_not_read() {
        let big = vec![0u8; MAX_CERTIFICATE_WIRE + 1];
        assert!(matches!(
            DeliveryCertificate::from_wire(&big),
            Err(ConsensusError::Wire(WireError::TooLarge {
                max: MAX_CERTIFICATE_WIRE,
                ..
            }))
        ));
    }
}
