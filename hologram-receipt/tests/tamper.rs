//! Tampering as a property: any change to a forwarded message is caught, with
//! the error that names it, and nothing panics.

use hologram_lattice::wire::Wire;
use hologram_lattice::NodeId;
use hologram_receipt::{
    AuthenticatedMessage, HopLink, KeyPair, Receipt, ReceiptError, Signature, Witness,
};
use proptest::prelude::*;

/// Distinct keys: node 0 sends, node i forwards to node i + 1.
fn nodes(n: usize) -> Vec<KeyPair> {
    (0..n)
        .map(|i| KeyPair::from_seed([i as u8 + 1; 32]))
        .collect()
}

/// A message from nodes[0] forwarded over `hops` hops, with every stage.
fn forwarded(payload: Vec<u8>, hops: usize) -> (Vec<KeyPair>, Vec<AuthenticatedMessage>) {
    let ks = nodes(hops + 1);
    let mut stages = vec![AuthenticatedMessage::new(payload, &ks[0]).unwrap()];
    for i in 0..hops {
        let next = stages[i].forward(ks[i + 1].node_id(), &ks[i]).unwrap();
        stages.push(next);
    }
    (ks, stages)
}

fn flip_id(id: NodeId, bit: usize) -> NodeId {
    let mut b = id.to_bytes();
    b[bit / 8 % 32] ^= 1 << (bit % 8);
    NodeId::from_bytes(b)
}

fn flip_sig(sig: Signature, bit: usize) -> Signature {
    let mut b = sig.to_bytes();
    b[bit / 8 % 64] ^= 1 << (bit % 8);
    Signature::from_bytes(b)
}

fn rebuild(payload: Vec<u8>, receipt: Receipt, witness: Witness) -> AuthenticatedMessage {
    AuthenticatedMessage::from_parts(payload, receipt, witness).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn honest_messages_verify(payload in proptest::collection::vec(any::<u8>(), 0..256), hops in 0usize..6) {
        let (ks, stages) = forwarded(payload, hops);
        for (i, m) in stages.iter().enumerate() {
            prop_assert_eq!(m.verify(), Ok(()));
            prop_assert!(m.authorizes(&ks[0].node_id()));
            prop_assert_eq!(m.holder(), ks[i].node_id());
            if i > 0 {
                prop_assert!(!m.authorizes(&ks[i].node_id()));
            }
        }
    }

    #[test]
    fn flipped_payload_or_receipt_is_a_mismatch(payload in proptest::collection::vec(any::<u8>(), 1..256), hops in 0usize..4, bit in any::<usize>(), in_receipt in any::<bool>()) {
        let (_, stages) = forwarded(payload, hops);
        let (mut payload, receipt, witness) = stages[hops].clone().into_parts();
        let receipt = if in_receipt {
            let mut bytes = receipt.to_canonical_bytes();
            bytes[bit / 8 % 72] ^= 1 << (bit % 8);
            match Receipt::from_canonical_bytes(&bytes) {
                Ok(r) => r,
                // Out-of-range phase, budget or phi: the decoder already refuses.
                Err(e) => {
                    prop_assert!(matches!(e, ReceiptError::PhaseOutOfRange(_) | ReceiptError::BudgetOutOfRange(_) | ReceiptError::PhiNotBoolean(_)));
                    return Ok(());
                }
            }
        } else {
            let len = payload.len();
            payload[bit / 8 % len] ^= 1 << (bit % 8);
            receipt
        };
        let m = rebuild(payload, receipt, witness);
        let is_mismatch = matches!(m.verify(), Err(ReceiptError::PayloadMismatch { .. }));
        prop_assert!(is_mismatch);
    }

    #[test]
    fn flipped_links_fail_with_the_error_that_names_them(hops in 0usize..5, target in any::<usize>(), field in 0u8..4, bit in any::<usize>()) {
        let (ks, stages) = forwarded(b"authenticated".to_vec(), hops);
        let (payload, receipt, witness) = stages[hops].clone().into_parts();
        let (mut origin, mut links) = witness.into_parts();
        let expected = if hops == 0 || target % (hops + 1) == 0 {
            // The origin link.
            if field % 2 == 0 {
                origin.signature = flip_sig(origin.signature, bit);
                ReceiptError::BadOriginSignature { sender: ks[0].node_id() }
            } else {
                origin.sender = flip_id(origin.sender, bit);
                if hops == 0 {
                    ReceiptError::BadOriginSignature { sender: origin.sender }
                } else {
                    ReceiptError::BrokenLink { hop: 0, expected: origin.sender, forwarder: ks[0].node_id() }
                }
            }
        } else {
            let i = target % (hops + 1) - 1;
            let link: &mut HopLink = &mut links[i];
            match field {
                0 | 3 => {
                    link.signature = flip_sig(link.signature, bit);
                    ReceiptError::BadHopSignature { hop: i, forwarder: ks[i].node_id() }
                }
                1 => {
                    link.forwarder = flip_id(link.forwarder, bit);
                    ReceiptError::BrokenLink { hop: i, expected: ks[i].node_id(), forwarder: link.forwarder }
                }
                _ => {
                    link.next_hop = flip_id(link.next_hop, bit);
                    if i + 1 < hops {
                        ReceiptError::BrokenLink { hop: i + 1, expected: link.next_hop, forwarder: ks[i + 1].node_id() }
                    } else {
                        ReceiptError::BadHopSignature { hop: i, forwarder: ks[i].node_id() }
                    }
                }
            }
        };
        let m = rebuild(payload, receipt, Witness::from_parts(origin, links).unwrap());
        prop_assert_eq!(m.verify(), Err(expected));
    }

    #[test]
    fn reordered_or_dropped_hops_break_the_chain(hops in 2usize..6, a in any::<usize>(), b in any::<usize>(), drop in any::<bool>()) {
        let (ks, stages) = forwarded(b"order matters".to_vec(), hops);
        let (payload, receipt, witness) = stages[hops].clone().into_parts();
        let (origin, mut links) = witness.into_parts();
        let i = a % hops;
        if drop {
            links.remove(i);
            let m = rebuild(payload, receipt, Witness::from_parts(origin, links).unwrap());
            if i + 1 == hops {
                // Dropping the last hop gives exactly the previous stage.
                prop_assert_eq!(&m, &stages[hops - 1]);
                prop_assert_eq!(m.verify(), Ok(()));
            } else {
                prop_assert_eq!(m.verify(), Err(ReceiptError::BrokenLink {
                    hop: i, expected: ks[i].node_id(), forwarder: ks[i + 1].node_id(),
                }));
            }
        } else {
            let j = (i + 1 + b % (hops - 1)) % hops; // j != i
            let (lo, hi) = (i.min(j), i.max(j));
            links.swap(lo, hi);
            let m = rebuild(payload, receipt, Witness::from_parts(origin, links).unwrap());
            prop_assert_eq!(m.verify(), Err(ReceiptError::BrokenLink {
                hop: lo, expected: ks[lo].node_id(), forwarder: ks[hi].node_id(),
            }));
        }
    }

    #[test]
    fn flipped_wire_bits_never_verify_as_something_else(hops in 0usize..4, bit in any::<usize>()) {
        let (_, stages) = forwarded(b"on the wire".to_vec(), hops);
        let original = &stages[hops];
        let mut wire = original.to_wire().unwrap();
        let len = wire.len();
        wire[bit / 8 % len] ^= 1 << (bit % 8);
        if let Ok(decoded) = AuthenticatedMessage::from_wire(&wire) {
            // Either the flip was caught, or it did not change the message.
            prop_assert!(decoded.verify().is_err() || &decoded == original);
        }
    }
}

#[test]
fn re_signing_a_hop_for_another_purpose_is_caught() {
    let (ks, stages) = forwarded(b"purpose".to_vec(), 1);
    let (payload, receipt, witness) = stages[1].clone().into_parts();
    let (origin, mut links) = witness.into_parts();
    // The forwarder signs the right bytes, but as a vote.
    let mut origin_bytes = receipt.to_canonical_bytes().to_vec();
    origin_bytes.extend_from_slice(ks[0].node_id().as_bytes());
    let forged = Witness::from_parts(
        hologram_receipt::OriginLink {
            sender: origin.sender,
            signature: ks[0].sign(hologram_receipt::Purpose::Vote, &origin_bytes),
        },
        std::mem::take(&mut links),
    )
    .unwrap();
    let m = rebuild(payload, receipt, forged);
    assert_eq!(
        m.verify(),
        Err(ReceiptError::BadOriginSignature {
            sender: ks[0].node_id()
        })
    );
}
