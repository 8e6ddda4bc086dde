//! SPEC §5–§7 vectors, and pinned values of the contexts this crate introduces.

use hologram_lattice::wire::Wire;
use hologram_lattice::{Address, R96Digest};
use hologram_receipt::{
    AuthenticatedMessage, Budget, ChainHead, KeyPair, Purpose, Receipt, ReceiptChain, MAX_HOPS,
    MAX_PAYLOAD_LEN,
};

fn hex32(s: &str) -> [u8; 32] {
    s.parse::<Address>().unwrap().to_bytes()
}

fn derive(ctx: &str, parts: &[&[u8]]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(ctx);
    for p in parts {
        h.update(p);
    }
    *h.finalize().as_bytes()
}

#[test]
fn spec6_receipt_of_hello_world() {
    let r = Receipt::from_bytes(b"HELLO WORLD");
    let mut expected = [0u8; 72];
    expected[..32].copy_from_slice(&hex32(
        "d81405d34c9152ad4bd607c0fb362f26437bc9f2284958eaddd30b45504e96d2",
    ));
    expected[32..64].copy_from_slice(&hex32(
        "85fef195227443ef4fa583e6ceadefa5c824a7049edc8ac6a9bfb63806ff848a",
    ));
    expected[70] = 1; // phi true; cycle, phase and budget 0
    assert_eq!(r.to_canonical_bytes(), expected);
    assert_eq!(Receipt::from_canonical_bytes(&expected), Ok(r));
    assert!(r.is_lawful(Some(b"HELLO WORLD")));
    // The digest alone accepts a permutation; the receipt does not.
    assert_eq!(R96Digest::of(b"DLROW OLLEH"), r.r96);
    assert!(r.verify(Some(b"DLROW OLLEH")).is_err());
}

#[test]
fn spec5_budget_vectors() {
    assert!(Budget::ZERO.crush());
    assert_eq!(Budget::new(47).unwrap().signed(), 47);
    assert_eq!(Budget::new(48).unwrap().signed(), -48);
    assert!(!Budget::new(47).unwrap().is_impossible_claim());
    assert!(Budget::new(48).unwrap().is_impossible_claim());
    assert!(Budget::new(96).is_err());
}

#[test]
fn spec6_sequential_r96_and_chain_head() {
    let a = Receipt::from_bytes(b"HELLO ");
    let b = Receipt::from_bytes(b"WORLD");
    let ab = a.then(&b);
    assert_eq!(
        ab.r96.to_bytes(),
        derive(
            "hologram receipt-seq v1",
            &[a.r96.as_bytes(), b.r96.as_bytes()]
        )
    );
    let h = Receipt::from_bytes(b"HELLO WORLD");
    let head = ReceiptChain::from_receipts([&h]).head();
    assert_eq!(
        *head.as_bytes(),
        derive(
            "hologram receipt-chain v1",
            &[&[0; 32], &h.to_canonical_bytes()]
        )
    );
    assert_eq!(
        head,
        ChainHead::from_bytes(hex32(
            "fb9cd041dbeb26656dc2b4e5357009950f4413daf1db5b1f2e2dd1e9b1049892"
        ))
    );
}

#[test]
fn pinned_values_of_this_crates_contexts() {
    let a = Receipt::from_bytes(b"HELLO ");
    let b = Receipt::from_bytes(b"WORLD");
    let h = Receipt::from_bytes(b"HELLO WORLD");
    let ab = a.then(&b);
    assert_eq!(
        ab.content.to_string(),
        "0958ad6438df867babed78b4d5f6aaa686b5f4a261c40839b0d3e79624a384de"
    );
    assert_eq!(
        ab.content.to_bytes(),
        derive(
            "hologram receipt-seq-content v1",
            &[a.content.as_bytes(), b.content.as_bytes()]
        )
    );
    let par = Receipt::compose_all([&b, &a]);
    assert_eq!(
        par.content.to_string(),
        "44827a48e1a593ea0b6a07e5463e7b1a8986d8c405d0dbaebdafba9feba193f8"
    );
    assert_eq!(
        par.r96.to_string(),
        "85f12f2784f0f110f7c31684661baefc5d67f21c51867d3df35960154e3d5434"
    );
    let mut sorted = [a.to_canonical_bytes(), b.to_canonical_bytes()];
    sorted.sort();
    assert_eq!(
        par.content.to_bytes(),
        derive("hologram receipt-par-content v1", &[&sorted[0], &sorted[1]])
    );
    let t = Receipt::from_transition(&a, &b, &h);
    assert_eq!(
        t.content.to_string(),
        "ece6d26400fe6fa75f7d46d12145df40682c4ded0731362bd9ff8e77bee9956e"
    );
}

#[test]
fn spec7_keys_are_rfc8032_ed25519() {
    // RFC 8032 §7.1, TEST 1: secret key and public key.
    let keys = KeyPair::from_seed(hex32(
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
    ));
    assert_eq!(
        keys.node_id().to_string(),
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    );
    // The signed message is the 32-byte derived hash, per purpose.
    let canonical = Receipt::from_bytes(b"HELLO WORLD").to_canonical_bytes();
    assert_eq!(
        Purpose::WitnessOrigin.message(&canonical),
        derive("hologram witness-origin v1", &[&canonical])
    );
    assert_eq!(Purpose::Vote.context(), "hologram vote v1");
    assert_eq!(Purpose::WitnessHop.context(), "hologram witness-hop v1");
}

#[test]
fn largest_valid_message_fits_its_wire_bound() {
    let keys = KeyPair::from_seed([4; 32]);
    let mut msg = AuthenticatedMessage::new(vec![0xff; MAX_PAYLOAD_LEN], &keys).unwrap();
    for _ in 0..MAX_HOPS {
        msg = msg.forward(keys.node_id(), &keys).unwrap();
    }
    let wire = msg.to_wire().unwrap();
    assert!(wire.len() <= AuthenticatedMessage::MAX_WIRE_LEN);
    assert_eq!(AuthenticatedMessage::from_wire(&wire), Ok(msg.clone()));
    let receipt = *msg.receipt();
    let r = Receipt {
        c768_cycle: u32::MAX,
        c768_phase: hologram_lattice::Phase::new(767).unwrap(),
        ..receipt
    };
    assert!(r.to_wire().unwrap().len() <= Receipt::MAX_WIRE_LEN);
    let w = msg.witness();
    assert!(w.to_wire().unwrap().len() <= hologram_receipt::Witness::MAX_WIRE_LEN);
}
