//! The `LatticeProtocol` core on single inputs: what it drops, with which
//! reason, and that nothing it drops is delivered, stored or forwarded.

use hologram_consensus::broadcast::{
    encode_envelope, BroadcastConfig, BroadcastMessage, DeliveryReceipt, Directory, DropReason,
    MessageId, Output,
};
use hologram_consensus::LatticeProtocol;
use hologram_lattice::wire::Wire;
use hologram_lattice::NodeId;
use hologram_receipt::{AuthenticatedMessage, HopLink, KeyPair, Purpose, Witness};
use proptest::prelude::*;

const NOW: u64 = 1_000_000;

struct Setup {
    a: KeyPair,
    b: KeyPair,
    c: KeyPair,
    stranger: KeyPair,
    core: LatticeProtocol,
}

fn setup(config: BroadcastConfig) -> Setup {
    let keys: Vec<KeyPair> = (1..=6u8).map(|i| KeyPair::from_seed([i; 32])).collect();
    let dir = Directory::new(keys.iter().map(|k| k.node_id()));
    let core = LatticeProtocol::new(keys[1].clone(), dir, config, 7);
    Setup {
        a: keys[0].clone(),
        b: keys[1].clone(),
        c: keys[2].clone(),
        stranger: KeyPair::from_seed([99; 32]),
        core,
    }
}

/// `body` broadcast by `origin` at `issued`, handed to `to`.
fn sent(origin: &KeyPair, to: NodeId, issued: u64, body: &[u8]) -> AuthenticatedMessage {
    AuthenticatedMessage::new(encode_envelope(issued, body), origin)
        .unwrap()
        .forward(to, origin)
        .unwrap()
}

/// `m` with a hop to `next` appended by `signer`, signed over junk rather
/// than the previous link's digest.
fn with_junk_hop(m: AuthenticatedMessage, signer: &KeyPair, next: NodeId) -> AuthenticatedMessage {
    let (payload, receipt, witness) = m.into_parts();
    let (origin, mut hops) = witness.into_parts();
    hops.push(HopLink {
        forwarder: signer.node_id(),
        next_hop: next,
        signature: signer.sign(Purpose::WitnessHop, b"junk"),
    });
    let witness = Witness::from_parts(origin, hops).unwrap();
    AuthenticatedMessage::from_parts(payload, receipt, witness).unwrap()
}

/// Handles one input; returns the outputs.
fn feed(core: &mut LatticeProtocol, from: NodeId, m: BroadcastMessage) -> Vec<Output> {
    let mut out = Vec::new();
    core.handle(NOW, from, m, &mut out);
    out
}

/// Asserts that `m` from `from` is dropped for `reason` and causes nothing.
fn assert_dropped(
    core: &mut LatticeProtocol,
    from: NodeId,
    m: AuthenticatedMessage,
    reason: DropReason,
) {
    let before = core.drops().get(reason);
    let out = feed(core, from, BroadcastMessage::Gossip(m));
    assert!(out.is_empty(), "dropped input caused {out:?}");
    assert_eq!(
        core.drops().get(reason),
        before + 1,
        "expected {reason:?}, drops {:?}",
        core.drops()
    );
}

#[test]
fn a_genuine_message_is_delivered_acknowledged_and_forwarded_once() {
    let mut s = setup(BroadcastConfig::default());
    let (a, b) = (s.a.node_id(), s.b.node_id());
    let m = sent(&s.a, b, NOW, b"hello");
    let out = feed(&mut s.core, a, BroadcastMessage::Gossip(m.clone()));
    let delivered: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::Deliver(d) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(delivered.len(), 1);
    assert_eq!(
        (
            delivered[0].body.as_slice(),
            delivered[0].origin,
            delivered[0].hops
        ),
        (&b"hello"[..], a, 1)
    );
    let acks: Vec<&DeliveryReceipt> = out
        .iter()
        .filter_map(|o| match o {
            Output::Send {
                to,
                message: BroadcastMessage::Ack(r),
            } if *to == a => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(acks.len(), 1);
    assert!(acks[0].verify().is_ok());
    // Forwards carry the chain extended by this node, and verify.
    for o in &out {
        if let Output::Send {
            to,
            message: BroadcastMessage::Gossip(f),
        } = o
        {
            assert_eq!(f.holder(), *to);
            assert!(f.verify().is_ok() && f.authorizes(&a));
        }
    }
    assert_dropped(&mut s.core, a, m, DropReason::Duplicate);
}

#[test]
fn unknown_and_shunned_senders_are_dropped() {
    let mut s = setup(BroadcastConfig::default());
    let (a, b, c) = (s.a.node_id(), s.b.node_id(), s.c.node_id());
    // A stranger sends its own message.
    let m = sent(&s.stranger, b, NOW, b"x");
    assert_dropped(
        &mut s.core,
        s.stranger.node_id(),
        m,
        DropReason::UnknownPeer,
    );
    // A member relays a stranger's message.
    let m = sent(&s.stranger, c, NOW, b"y").forward(b, &s.c).unwrap();
    assert_dropped(&mut s.core, c, m, DropReason::UnknownOrigin);
    // A shunned origin, relayed by a member; then the shunned peer itself.
    s.core.directory_mut().shun(a);
    let m = sent(&s.a, c, NOW, b"z").forward(b, &s.c).unwrap();
    assert_dropped(&mut s.core, c, m, DropReason::ShunnedOrigin);
    let m = sent(&s.a, b, NOW, b"w");
    assert_dropped(&mut s.core, a, m, DropReason::ShunnedPeer);
    // A chain through a stranger.
    s.core.directory_mut().forgive(&a);
    let m = sent(&s.a, s.stranger.node_id(), NOW, b"v")
        .forward(c, &s.stranger)
        .unwrap()
        .forward(b, &s.c)
        .unwrap();
    assert_dropped(&mut s.core, c, m, DropReason::BadForwarder);
}

#[test]
fn broken_chains_are_dropped_with_their_reason() {
    let mut s = setup(BroadcastConfig::default());
    let (a, b, c) = (s.a.node_id(), s.b.node_id(), s.c.node_id());
    // Another payload under the genuine receipt and chain.
    let (_, receipt, witness) = sent(&s.a, b, NOW, b"pay").into_parts();
    let swapped =
        AuthenticatedMessage::from_parts(encode_envelope(NOW, b"pax"), receipt, witness).unwrap();
    assert_dropped(&mut s.core, a, swapped, DropReason::PayloadMismatch);
    // A hop signed over the wrong bytes.
    let forged = with_junk_hop(sent(&s.a, c, NOW, b"q"), &s.c, b);
    assert_dropped(&mut s.core, c, forged, DropReason::ForgedSignature);
    // Custody broken: the second hop signed by someone who never held it.
    let broken = with_junk_hop(sent(&s.a, c, NOW, b"r"), &s.a, b);
    assert_dropped(&mut s.core, a, broken, DropReason::BrokenChain);
    // Addressed to another node; or relayed by a peer that did not sign the last hop.
    assert_dropped(
        &mut s.core,
        a,
        sent(&s.a, c, NOW, b"s"),
        DropReason::NotAddressedHere,
    );
    assert_dropped(
        &mut s.core,
        c,
        sent(&s.a, b, NOW, b"t"),
        DropReason::SenderMismatch,
    );
    // A payload too short for an envelope.
    let bare = AuthenticatedMessage::new(vec![1, 2, 3], &s.a)
        .unwrap()
        .forward(b, &s.a)
        .unwrap();
    assert_dropped(&mut s.core, a, bare, DropReason::NoEnvelope);
    // None of it was delivered: the genuine message still is.
    let out = feed(
        &mut s.core,
        a,
        BroadcastMessage::Gossip(sent(&s.a, b, NOW, b"pay")),
    );
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Deliver(d) if d.body == b"pay")));
}

#[test]
fn oversized_stale_and_future_messages_are_dropped() {
    let config = BroadcastConfig {
        max_body: 16,
        max_age_ms: 1000,
        max_skew_ms: 100,
        ..BroadcastConfig::default()
    };
    let mut s = setup(config);
    let (a, b) = (s.a.node_id(), s.b.node_id());
    assert_dropped(
        &mut s.core,
        a,
        sent(&s.a, b, NOW, &[7; 17]),
        DropReason::Oversized,
    );
    assert_dropped(
        &mut s.core,
        a,
        sent(&s.a, b, NOW - 1001, b"old"),
        DropReason::Stale,
    );
    assert_dropped(
        &mut s.core,
        a,
        sent(&s.a, b, NOW + 101, b"new"),
        DropReason::FromTheFuture,
    );
    let out = feed(
        &mut s.core,
        a,
        BroadcastMessage::Gossip(sent(&s.a, b, NOW - 1000, &[7; 16])),
    );
    assert!(out.iter().any(|o| matches!(o, Output::Deliver(_))));
    let mut out = Vec::new();
    assert!(s.core.broadcast(NOW, &[0; 17], &mut out).is_err());
    assert!(out.is_empty());
}

#[test]
fn acknowledgements_are_counted_once_and_forgeries_never() {
    let config = BroadcastConfig {
        ack_threshold: 2,
        ..BroadcastConfig::default()
    };
    let mut s = setup(config);
    let mut out = Vec::new();
    let id = s.core.broadcast(NOW, b"mine", &mut out).unwrap();
    let me = s.b.node_id();
    let ack_a = DeliveryReceipt::sign(&s.a, id, me);
    // C sends A's acknowledgement first: it does not count, and does not
    // stop A's own from counting.
    feed(&mut s.core, s.c.node_id(), BroadcastMessage::Ack(ack_a));
    assert!(feed(&mut s.core, s.a.node_id(), BroadcastMessage::Ack(ack_a)).is_empty());
    feed(&mut s.core, s.a.node_id(), BroadcastMessage::Ack(ack_a));
    assert_eq!(s.core.drops().get(DropReason::DuplicateAck), 1);
    // C's own acknowledgement with a signature for another message.
    let mut wrong = DeliveryReceipt::sign(&s.c, id, me);
    wrong.signature = DeliveryReceipt::sign(&s.c, MessageId::from_bytes([1; 32]), me).signature;
    feed(&mut s.core, s.c.node_id(), BroadcastMessage::Ack(wrong));
    assert_eq!(s.core.drops().get(DropReason::ForgedAck), 2);
    let other = DeliveryReceipt::sign(&s.c, MessageId::from_bytes([1; 32]), me);
    feed(&mut s.core, s.c.node_id(), BroadcastMessage::Ack(other));
    assert_eq!(s.core.drops().get(DropReason::UnexpectedAck), 1);
    assert_eq!(s.core.result(&id).unwrap().acknowledged, 1);
    let out = feed(
        &mut s.core,
        s.c.node_id(),
        BroadcastMessage::Ack(DeliveryReceipt::sign(&s.c, id, me)),
    );
    let cert = out
        .iter()
        .find_map(|o| match o {
            Output::Certified(c) => Some(c.clone()),
            _ => None,
        })
        .expect("the second distinct acknowledgement completes the certificate");
    assert!(cert.verify(s.core.directory(), 2).is_ok());
    let result = s.core.result(&id).unwrap();
    assert_eq!(result.acknowledged, 2);
    assert_eq!(result.certificate, Some(cert));
    assert!(result.network_coverage > 0.0 && result.network_coverage <= 1.0);
}

#[test]
fn announcements_pull_what_is_missing_and_pulls_are_answered() {
    let mut s = setup(BroadcastConfig::default());
    let (a, b, c) = (s.a.node_id(), s.b.node_id(), s.c.node_id());
    let m = sent(&s.a, b, NOW, b"held");
    let id = MessageId::of(m.receipt(), &a);
    let out = feed(&mut s.core, c, BroadcastMessage::IHave(vec![id, id]));
    assert_eq!(
        out,
        vec![Output::Send {
            to: c,
            message: BroadcastMessage::IWant(vec![id])
        }]
    );
    feed(&mut s.core, a, BroadcastMessage::Gossip(m));
    assert!(feed(&mut s.core, c, BroadcastMessage::IHave(vec![id])).is_empty());
    let out = feed(
        &mut s.core,
        c,
        BroadcastMessage::IWant(vec![id, MessageId::from_bytes([9; 32])]),
    );
    match out.as_slice() {
        [Output::Send {
            to,
            message: BroadcastMessage::Gossip(f),
        }] => {
            assert_eq!(*to, c);
            assert_eq!(f.holder(), c);
            assert!(f.verify().is_ok());
        }
        other => panic!("expected one push to C, got {other:?}"),
    }
}

proptest! {
    /// Any single flipped bit in a genuine message's encoding is either
    /// refused by the decoder or dropped by the core: nothing else than the
    /// genuine body is ever delivered, and no drop forwards anything.
    #[test]
    fn flipped_bits_never_deliver_anything_else(bit in any::<usize>()) {
        let mut s = setup(BroadcastConfig::default());
        let (a, b) = (s.a.node_id(), s.b.node_id());
        let mut bytes = BroadcastMessage::Gossip(sent(&s.a, b, NOW, b"genuine body")).to_wire().unwrap();
        let bit = bit % (bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        if let Ok(m @ BroadcastMessage::Gossip(_)) = BroadcastMessage::from_wire(&bytes) {
            let out = feed(&mut s.core, a, m);
            let delivered = out.iter().any(|o| matches!(o, Output::Deliver(_)));
            for o in &out {
                if let Output::Deliver(d) = o {
                    prop_assert_eq!(d.body.as_slice(), &b"genuine body"[..]);
                }
            }
            if !delivered {
                prop_assert!(out.is_empty());
            }
        }
    }
}
