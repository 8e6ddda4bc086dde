//! Arbitrary bytes into every decoder: an error or a value, never a panic.

use hologram_lattice::wire::{Wire, WireError};
use hologram_lattice::NodeId;
use hologram_receipt::{
    verify_signature, AuthenticatedMessage, Budget, BudgetLedger, KeyPair, Purpose, Receipt,
    ReceiptChain, ReceiptError, Signature, Witness,
};
use proptest::prelude::*;

fn decode_all(bytes: &[u8]) {
    let _ = Receipt::from_canonical_bytes(bytes);
    let _ = Receipt::from_wire(bytes);
    let _ = Budget::from_wire(bytes);
    let _ = BudgetLedger::from_wire(bytes);
    let _ = Signature::from_wire(bytes);
    let _ = ReceiptChain::from_wire(bytes);
    if let Ok(w) = Witness::from_wire(bytes) {
        let _ = w.verify(&Receipt::from_bytes(bytes));
    }
    if let Ok(m) = AuthenticatedMessage::from_wire(bytes) {
        let _ = m.verify();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        decode_all(&bytes);
    }

    #[test]
    fn canonical_receipts_decode_iff_fields_are_in_range(bytes in proptest::array::uniform32(any::<u8>()), tail in proptest::collection::vec(any::<u8>(), 40)) {
        let mut all = bytes.to_vec();
        all.extend_from_slice(&tail);
        let phase = u16::from_le_bytes([all[68], all[69]]);
        let expected_ok = phase < 768 && all[70] <= 1 && all[71] < 96;
        match Receipt::from_canonical_bytes(&all) {
            Ok(r) => {
                prop_assert!(expected_ok);
                prop_assert_eq!(r.to_canonical_bytes().to_vec(), all);
            }
            Err(e) => {
                prop_assert!(!expected_ok);
                prop_assert!(matches!(e, ReceiptError::PhaseOutOfRange(_) | ReceiptError::PhiNotBoolean(_) | ReceiptError::BudgetOutOfRange(_)));
            }
        }
    }

    #[test]
    fn arbitrary_keys_and_signatures_never_panic(key in proptest::array::uniform32(any::<u8>()), r in proptest::array::uniform32(any::<u8>()), s in proptest::array::uniform32(any::<u8>())) {
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&r);
        sig[32..].copy_from_slice(&s);
        let res = verify_signature(&NodeId::from_bytes(key), Purpose::Vote, b"x", &Signature::from_bytes(sig));
        prop_assert!(res.is_err());
    }
}

#[test]
fn oversized_input_is_rejected_before_reading() {
    let too_big = vec![0u8; AuthenticatedMessage::MAX_WIRE_LEN + 1];
    assert!(matches!(
        AuthenticatedMessage::from_wire(&too_big),
        Err(ReceiptError::Wire(WireError::TooLarge { .. }))
    ));
    assert_eq!(
        Receipt::from_wire(&[0u8; 75]),
        Err(ReceiptError::Wire(WireError::TooLarge {
            what: "Receipt",
            len: 75,
            max: 74
        }))
    );
}

#[test]
fn trailing_bytes_and_long_chains_are_rejected() {
    let keys = KeyPair::from_seed([8; 32]);
    let msg = AuthenticatedMessage::new(b"x".to_vec(), &keys).unwrap();
    let mut wire = msg.to_wire().unwrap();
    wire.push(0);
    assert_eq!(
        AuthenticatedMessage::from_wire(&wire),
        Err(ReceiptError::Wire(WireError::Trailing {
            what: "AuthenticatedMessage",
            extra: 1
        }))
    );
    // A witness wire encoding claiming 33 hops decodes (it is within the
    // byte bound) but is refused as too long.
    let mut w = Witness::new(msg.receipt(), &keys);
    for _ in 0..32 {
        w = w.extend(msg.receipt(), keys.node_id(), &keys).unwrap();
    }
    let mut bytes = w.to_wire().unwrap();
    let hop = bytes[bytes.len() - 128..].to_vec();
    // Origin is 96 bytes, then the hop count varint (32 -> 33).
    assert_eq!(bytes[96], 32);
    bytes[96] = 33;
    bytes.extend_from_slice(&hop);
    assert!(bytes.len() > Witness::MAX_WIRE_LEN);
    assert!(matches!(
        Witness::from_wire(&bytes),
        Err(ReceiptError::Wire(WireError::TooLarge { .. }))
    ));
    // Inside a message with a small payload, the size bound does not catch it:
    // the hop-count check does.
    let (payload, receipt, _) = msg.into_parts();
    let mut mbytes = postcard::to_allocvec(&(payload, receipt)).unwrap();
    mbytes.extend_from_slice(&bytes);
    assert_eq!(
        AuthenticatedMessage::from_wire(&mbytes),
        Err(ReceiptError::ChainTooLong { hops: 33, max: 32 })
    );
}
