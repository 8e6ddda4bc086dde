//! Witness chains: who sent a message and who forwarded it to whom (SPEC §7).

use crate::{
    receipt::CANONICAL_LEN, KeyPair, Purpose, Receipt, ReceiptError, Signature, SignatureBatch,
};
use hologram_lattice::NodeId;
use serde::{Deserialize, Serialize};

/// The most hops a witness chain may have.
pub const MAX_HOPS: usize = 32;
/// Key-derivation context of link digests.
pub const LINK_CONTEXT: &str = "hologram witness-link v1";

/// The sender's signature over (receipt, sender).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OriginLink {
    /// The node that sent the message.
    pub sender: NodeId,
    /// Its signature for [`Purpose::WitnessOrigin`].
    pub signature: Signature,
}

/// A forwarder's signature over (previous link digest, next hop).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HopLink {
    /// The node that forwarded the message.
    pub forwarder: NodeId,
    /// The node it forwarded the message to.
    pub next_hop: NodeId,
    /// The forwarder's signature for [`Purpose::WitnessHop`].
    pub signature: Signature,
}

/// The digest of a link, which the next hop signs.
type LinkDigest = [u8; 32];

impl OriginLink {
    /// The bytes the sender signs: receipt canonical bytes ‖ sender id.
    fn signed_bytes(receipt: &Receipt, sender: &NodeId) -> [u8; CANONICAL_LEN + 32] {
        let mut out = [0u8; CANONICAL_LEN + 32];
        out[..CANONICAL_LEN].copy_from_slice(&receipt.to_canonical_bytes());
        out[CANONICAL_LEN..].copy_from_slice(sender.as_bytes());
        out
    }

    fn digest(&self, receipt: &Receipt) -> LinkDigest {
        *blake3::Hasher::new_derive_key(LINK_CONTEXT)
            .update(&[0x00])
            .update(&Self::signed_bytes(receipt, &self.sender))
            .update(&self.signature.to_bytes())
            .finalize()
            .as_bytes()
    }
}

impl HopLink {
    /// The bytes the forwarder signs: previous link digest ‖ next hop id.
    fn signed_bytes(previous: &LinkDigest, next_hop: &NodeId) -> [u8; 64] {
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(previous);
        out[32..].copy_from_slice(next_hop.as_bytes());
        out
    }

    fn digest(&self, previous: &LinkDigest) -> LinkDigest {
        *blake3::Hasher::new_derive_key(LINK_CONTEXT)
            .update(&[0x01])
            .update(previous)
            .update(self.forwarder.as_bytes())
            .update(self.next_hop.as_bytes())
            .update(&self.signature.to_bytes())
            .finalize()
            .as_bytes()
    }
}

/// The chain of signatures behind an authenticated message: the origin link
/// and up to [`MAX_HOPS`] hop links.
///
/// A chain starts with an **origin link**: the sender's signature, for
/// [`Purpose::WitnessOrigin`], over
///
/// ```text
/// receipt canonical bytes (72) ‖ sender id (32)
/// ```
///
/// Each forward appends a **hop link**: the forwarder's signature, for
/// [`Purpose::WitnessHop`], over
///
/// ```text
/// previous link digest (32) ‖ next hop id (32)
/// ```
///
/// The **link digest** chains the links: with `D = BLAKE3-derive("hologram
/// witness-link v1", ·)` ([`LINK_CONTEXT`]),
///
/// ```text
/// digest(origin) = D(0x00 ‖ receipt (72) ‖ sender (32) ‖ signature (64))
/// digest(hop i)  = D(0x01 ‖ digest(link i−1) (32) ‖ forwarder (32) ‖ next hop (32) ‖ signature (64))
/// ```
///
/// so each hop's signature commits to the receipt, the sender and every
/// earlier hop, in order. The chain of custody is explicit: the first hop must
/// be signed by the sender and each later hop by the previous hop's next hop.
///
/// [`Witness::verify`] checks, in this order: the length bound
/// ([`ReceiptError::ChainTooLong`]), the chain of custody
/// ([`ReceiptError::BrokenLink`]), then all signatures in one batch
/// ([`SignatureBatch`]), naming the first bad one on failure
/// ([`ReceiptError::BadOriginSignature`], [`ReceiptError::BadHopSignature`]).
///
/// A witness does not hold the receipt it vouches for; every method that needs
/// it takes it as an argument.
///
/// ```
/// use hologram_receipt::{KeyPair, Receipt, Witness};
/// let (alice, bob) = (KeyPair::from_seed([1; 32]), KeyPair::from_seed([2; 32]));
/// let receipt = Receipt::from_bytes(b"hello");
/// let w = Witness::new(&receipt, &alice)
///     .extend(&receipt, bob.node_id(), &alice)
///     .unwrap();
/// assert!(w.verify(&receipt).is_ok());
/// assert!(w.authorizes(&alice.node_id()) && !w.authorizes(&bob.node_id()));
/// assert_eq!(w.holder(), bob.node_id());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Witness {
    origin: OriginLink,
    hops: Vec<HopLink>,
}

impl Witness {
    /// A chain with only the origin link: `sender` signs (receipt, its id).
    pub fn new(receipt: &Receipt, sender: &KeyPair) -> Self {
        let id = sender.node_id();
        let signature = sender.sign(
            Purpose::WitnessOrigin,
            &OriginLink::signed_bytes(receipt, &id),
        );
        Self {
            origin: OriginLink {
                sender: id,
                signature,
            },
            hops: Vec::new(),
        }
    }

    /// Assembles a chain from its links without checking any signature (use
    /// [`Witness::verify`]). Fails only when there are more than [`MAX_HOPS`] hops.
    pub fn from_parts(origin: OriginLink, hops: Vec<HopLink>) -> Result<Self, ReceiptError> {
        let witness = Self { origin, hops };
        witness.check_bounds()?;
        Ok(witness)
    }

    /// The origin link.
    pub fn origin(&self) -> &OriginLink {
        &self.origin
    }

    /// The hop links, first hop first.
    pub fn hops(&self) -> &[HopLink] {
        &self.hops
    }

    /// The links, consumed.
    pub fn into_parts(self) -> (OriginLink, Vec<HopLink>) {
        (self.origin, self.hops)
    }

    /// The sender: the node that signed the origin link.
    pub fn sender(&self) -> NodeId {
        self.origin.sender
    }

    /// Whether the chain's origin is `id`. This is the sender, never the last
    /// hop. It does not check signatures: call [`Witness::verify`] as well.
    pub fn authorizes(&self, id: &NodeId) -> bool {
        self.origin.sender == *id
    }

    /// The node that holds the message now: the last hop's next hop, or the
    /// sender when the message has not been forwarded.
    pub fn holder(&self) -> NodeId {
        self.hops.last().map_or(self.origin.sender, |h| h.next_hop)
    }

    /// The number of hop links.
    pub fn len(&self) -> usize {
        self.hops.len()
    }

    /// Whether the chain has no hop links (only the origin).
    pub fn is_empty(&self) -> bool {
        self.hops.is_empty()
    }

    /// The chain with one more hop: `forwarder` hands the message to
    /// `next_hop`. The forwarder must be the current [`holder`](Witness::holder)
    /// ([`ReceiptError::BrokenLink`] otherwise) and the chain must stay within
    /// [`MAX_HOPS`] ([`ReceiptError::ChainTooLong`]).
    pub fn extend(
        &self,
        receipt: &Receipt,
        next_hop: NodeId,
        forwarder: &KeyPair,
    ) -> Result<Self, ReceiptError> {
        check_hops(self.hops.len() + 1)?;
        let id = forwarder.node_id();
        if id != self.holder() {
            return Err(ReceiptError::BrokenLink {
                hop: self.hops.len(),
                expected: self.holder(),
                forwarder: id,
            });
        }
        let previous = self.last_digest(receipt);
        let signature = forwarder.sign(
            Purpose::WitnessHop,
            &HopLink::signed_bytes(&previous, &next_hop),
        );
        let mut hops = Vec::with_capacity(self.hops.len() + 1);
        hops.extend_from_slice(&self.hops);
        hops.push(HopLink {
            forwarder: id,
            next_hop,
            signature,
        });
        Ok(Self {
            origin: self.origin,
            hops,
        })
    }

    /// Checks every link against `receipt`; see [`Witness`]
    /// for the order of checks and the error each failure gives.
    pub fn verify(&self, receipt: &Receipt) -> Result<(), ReceiptError> {
        self.check_bounds()?;
        let mut holder = self.origin.sender;
        for (hop, link) in self.hops.iter().enumerate() {
            if link.forwarder != holder {
                return Err(ReceiptError::BrokenLink {
                    hop,
                    expected: holder,
                    forwarder: link.forwarder,
                });
            }
            holder = link.next_hop;
        }
        let mut batch = SignatureBatch::with_capacity(self.hops.len() + 1);
        batch.push(
            self.origin.sender,
            Purpose::WitnessOrigin,
            &OriginLink::signed_bytes(receipt, &self.origin.sender),
            self.origin.signature,
        );
        let mut previous = self.origin.digest(receipt);
        for link in &self.hops {
            batch.push(
                link.forwarder,
                Purpose::WitnessHop,
                &HopLink::signed_bytes(&previous, &link.next_hop),
                link.signature,
            );
            previous = link.digest(&previous);
        }
        match batch.first_invalid() {
            None => Ok(()),
            Some((0, sender)) => Err(ReceiptError::BadOriginSignature { sender }),
            Some((index, forwarder)) => Err(ReceiptError::BadHopSignature {
                hop: index - 1,
                forwarder,
            }),
        }
    }

    /// The digest of the last link (the origin's when there are no hops).
    fn last_digest(&self, receipt: &Receipt) -> LinkDigest {
        self.hops
            .iter()
            .fold(self.origin.digest(receipt), |prev, link| link.digest(&prev))
    }

    /// [`ReceiptError::ChainTooLong`] when the chain exceeds [`MAX_HOPS`].
    pub(crate) fn check_bounds(&self) -> Result<(), ReceiptError> {
        check_hops(self.hops.len())
    }
}

/// [`ReceiptError::ChainTooLong`] when `hops` exceeds [`MAX_HOPS`].
fn check_hops(hops: usize) -> Result<(), ReceiptError> {
    if hops > MAX_HOPS {
        Err(ReceiptError::ChainTooLong {
            hops,
            max: MAX_HOPS,
        })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: u8) -> Vec<KeyPair> {
        (0..n).map(|i| KeyPair::from_seed([i + 10; 32])).collect()
    }

    /// A witness forwarded along keys[0] → keys[1] → … → keys[n-1].
    fn forwarded(keys: &[KeyPair], receipt: &Receipt) -> Witness {
        let mut w = Witness::new(receipt, &keys[0]);
        for pair in keys.windows(2) {
            w = w.extend(receipt, pair[1].node_id(), &pair[0]).unwrap();
        }
        w
    }

    #[test]
    fn a_forwarded_chain_verifies_and_names_its_origin() {
        let ks = keys(5);
        let r = Receipt::from_bytes(b"msg");
        let w = forwarded(&ks, &r);
        assert_eq!(w.len(), 4);
        assert_eq!(w.verify(&r), Ok(()));
        assert_eq!(w.sender(), ks[0].node_id());
        assert_eq!(w.holder(), ks[4].node_id());
        assert!(w.authorizes(&ks[0].node_id()));
        assert!(!w.authorizes(&ks[4].node_id()));
        // Against another receipt, the origin signature fails.
        let other = Receipt::from_bytes(b"msh");
        assert_eq!(
            w.verify(&other),
            Err(ReceiptError::BadOriginSignature {
                sender: ks[0].node_id()
            })
        );
    }

    #[test]
    fn only_the_holder_may_forward() {
        let ks = keys(3);
        let r = Receipt::from_bytes(b"msg");
        let w = Witness::new(&r, &ks[0]);
        assert_eq!(
            w.extend(&r, ks[2].node_id(), &ks[1]),
            Err(ReceiptError::BrokenLink {
                hop: 0,
                expected: ks[0].node_id(),
                forwarder: ks[1].node_id()
            })
        );
    }

    #[test]
    fn chains_are_bounded() {
        let a = KeyPair::from_seed([1; 32]);
        let r = Receipt::from_bytes(b"loop");
        let mut w = Witness::new(&r, &a);
        for _ in 0..MAX_HOPS {
            w = w.extend(&r, a.node_id(), &a).unwrap();
        }
        assert_eq!(w.verify(&r), Ok(()));
        assert_eq!(
            w.extend(&r, a.node_id(), &a),
            Err(ReceiptError::ChainTooLong {
                hops: MAX_HOPS + 1,
                max: MAX_HOPS
            })
        );
        let (origin, mut hops) = w.into_parts();
        hops.push(hops[0]);
        assert_eq!(
            Witness::from_parts(origin, hops),
            Err(ReceiptError::ChainTooLong {
                hops: MAX_HOPS + 1,
                max: MAX_HOPS
            })
        );
    }

    #[test]
    fn a_hop_signature_from_one_chain_does_not_fit_another() {
        let ks = keys(3);
        let r = Receipt::from_bytes(b"msg");
        let w = forwarded(&ks, &r);
        // Same custody, but the second hop re-signed over the origin digest.
        let (origin, mut hops) = w.clone().into_parts();
        hops[1].signature = hops[0].signature;
        let tampered = Witness::from_parts(origin, hops).unwrap();
        assert_eq!(
            tampered.verify(&r),
            Err(ReceiptError::BadHopSignature {
                hop: 1,
                forwarder: ks[1].node_id()
            })
        );
    }
}
