//! `LatticeProtocol` broadcast (issue 7): how many broadcasts per second a
//! 1,000-node simulation sustains (beside plain flooding, at 200 nodes where
//! flooding is still affordable), and the verification cost per delivered
//! message (the witness chain checked in one batch, beside the same chain
//! checked signature by signature, and the whole core step of a delivery).
//!
//! The issue sets no numeric target; after criterion's report,
//! `cargo bench --bench broadcast` prints the measured figures, messages per
//! node per broadcast, and whether batch verification beats one-by-one.

#[path = "support/measure.rs"]
mod measure;

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use hologram::consensus::broadcast::{
    encode_envelope, BroadcastConfig, BroadcastMessage, BroadcastNode, Directory, ForwardPolicy,
};
use hologram::consensus::LatticeProtocol;
use hologram::lattice::sim::{Faults, Simulation};
use hologram::lattice::NodeId;
use hologram::receipt::{
    forget_verified_signatures, verify_signature, AuthenticatedMessage, KeyPair, Purpose, Receipt,
    LINK_CONTEXT,
};
use measure::{best_seconds, verdict};
use std::hint::black_box;

/// `n` key pairs.
fn keys(n: usize) -> Vec<KeyPair> {
    (0..n as u64)
        .map(|i| KeyPair::from_seed(*blake3::hash(&i.to_le_bytes()).as_bytes()))
        .collect()
}

/// A simulated network of `n` broadcast nodes without faults.
struct Net {
    sim: Simulation<BroadcastNode>,
    ids: Vec<NodeId>,
    next: usize,
}

impl Net {
    fn new(n: usize, policy: ForwardPolicy) -> Self {
        let keys = keys(n);
        let dir = Directory::new(keys.iter().map(|k| k.node_id()));
        let config = BroadcastConfig {
            policy,
            ack_threshold: 2 * n / 3,
            ..BroadcastConfig::default()
        };
        let nodes = keys.iter().enumerate().map(|(i, k)| {
            let core = LatticeProtocol::new(k.clone(), dir.clone(), config.clone(), i as u64);
            (k.node_id(), BroadcastNode::new(core))
        });
        let sim = Simulation::new(1, Faults::NONE, nodes);
        let ids = sim.ids();
        Net { sim, ids, next: 0 }
    }

    /// One broadcast from the next node, run until the network is quiet
    /// (delivery, acknowledgements and the repair announcements).
    fn broadcast(&mut self) {
        let origin = self.ids[self.next % self.ids.len()];
        self.next += 1;
        let body = (self.next as u64).to_le_bytes();
        self.sim
            .with_node(origin, |node, ctx| node.broadcast(ctx, &body))
            .expect("node is up")
            .expect("body fits");
        let deadline = self.sim.now() + 60_000;
        self.sim.run_until_quiet(deadline).expect("no invariant");
    }

    fn sent_per_node(&self) -> f64 {
        self.sim.stats().sent as f64 / self.ids.len() as f64
    }
}

/// A 1 KiB broadcast forwarded over `hops` hops, held by the last node.
fn chain(hops: usize) -> (AuthenticatedMessage, KeyPair) {
    let keys = keys(hops + 2);
    let mut msg = AuthenticatedMessage::new(encode_envelope(0, &[7; 1024]), &keys[0]).unwrap();
    for i in 0..hops {
        msg = msg.forward(keys[i + 1].node_id(), &keys[i]).unwrap();
    }
    (msg, keys[hops].clone())
}

/// The same checks as `AuthenticatedMessage::verify`, one signature at a time:
/// the payload's receipt, then each link with the digests of the witness
/// module's documented formula.
fn verify_one_by_one(m: &AuthenticatedMessage) -> bool {
    let receipt = Receipt::from_bytes(m.payload());
    if receipt != *m.receipt() {
        return false;
    }
    let origin = m.witness().origin();
    let mut signed = receipt.to_canonical_bytes().to_vec();
    signed.extend_from_slice(origin.sender.as_bytes());
    if verify_signature(
        &origin.sender,
        Purpose::WitnessOrigin,
        &signed,
        &origin.signature,
    )
    .is_err()
    {
        return false;
    }
    let mut previous = *blake3::Hasher::new_derive_key(LINK_CONTEXT)
        .update(&[0x00])
        .update(&signed)
        .update(&origin.signature.to_bytes())
        .finalize()
        .as_bytes();
    let mut holder = origin.sender;
    for hop in m.witness().hops() {
        let mut bytes = previous.to_vec();
        bytes.extend_from_slice(hop.next_hop.as_bytes());
        if hop.forwarder != holder
            || verify_signature(&hop.forwarder, Purpose::WitnessHop, &bytes, &hop.signature)
                .is_err()
        {
            return false;
        }
        previous = *blake3::Hasher::new_derive_key(LINK_CONTEXT)
            .update(&[0x01])
            .update(&previous)
            .update(hop.forwarder.as_bytes())
            .update(hop.next_hop.as_bytes())
            .update(&hop.signature.to_bytes())
            .finalize()
            .as_bytes();
        holder = hop.next_hop;
    }
    true
}

/// A receiver core on a 1,000-node directory and a message for it from a
/// member, to time one full delivery step.
fn delivery_step(hops: usize) -> (LatticeProtocol, AuthenticatedMessage, NodeId) {
    let all = keys(1000);
    let dir = Directory::new(all.iter().map(|k| k.node_id()));
    let mut msg = AuthenticatedMessage::new(encode_envelope(0, &[7; 1024]), &all[0]).unwrap();
    for i in 0..hops {
        msg = msg.forward(all[i + 1].node_id(), &all[i]).unwrap();
    }
    let receiver = all[hops].clone();
    let from = all[hops - 1].node_id();
    let core = LatticeProtocol::new(receiver, dir, BroadcastConfig::default(), 0);
    (core, msg, from)
}

/// Handles `msg` on a fresh copy of `core`.
fn deliver(core: &LatticeProtocol, msg: &AuthenticatedMessage, from: NodeId) -> usize {
    let mut core = core.clone();
    let mut out = Vec::new();
    core.handle(1, from, BroadcastMessage::Gossip(msg.clone()), &mut out);
    out.len()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("broadcast_sim");
    group.sample_size(10);
    group.throughput(Throughput::Elements(1));
    for (n, policy) in [
        (200, ForwardPolicy::Lattice),
        (200, ForwardPolicy::Flood),
        (1000, ForwardPolicy::Lattice),
    ] {
        let mut net = Net::new(n, policy);
        group.bench_function(BenchmarkId::new(format!("{policy:?}"), n), |b| {
            b.iter(|| net.broadcast())
        });
    }
    group.finish();

    let mut group = c.benchmark_group("broadcast_verify");
    for hops in [1, 4, 12] {
        let (msg, _) = chain(hops);
        group.bench_function(BenchmarkId::new("batch", hops), |b| {
            b.iter(|| {
                forget_verified_signatures();
                black_box(&msg).verify().is_ok()
            })
        });
        group.bench_function(BenchmarkId::new("one by one", hops), |b| {
            b.iter(|| {
                forget_verified_signatures();
                verify_one_by_one(black_box(&msg))
            })
        });
    }
    let (core, msg, from) = delivery_step(4);
    group.bench_function("core delivery step, 4 hops", |b| {
        b.iter(|| {
            forget_verified_signatures();
            deliver(&core, &msg, from)
        })
    });
    group.finish();
}

fn check_targets() {
    println!("\nIssue 7 figures (best of 7 runs; the issue sets no numeric target):");
    for (n, policy, reps) in [
        (200, ForwardPolicy::Lattice, 5),
        (200, ForwardPolicy::Flood, 2),
        (1000, ForwardPolicy::Lattice, 2),
    ] {
        let mut net = Net::new(n, policy);
        let secs = best_seconds(reps, || net.broadcast());
        println!(
            "  {n} nodes, {policy:?}: {:.1} broadcasts/s sustained, {:.1} messages per node per broadcast",
            1.0 / secs,
            net.sent_per_node() / net.next as f64
        );
    }
    for hops in [1, 4, 12] {
        let (msg, _) = chain(hops);
        assert!(msg.verify().is_ok() && verify_one_by_one(&msg));
        // Each time as a node that sees these signatures first (the
        // process remembers the ones it found valid).
        let batch = best_seconds(200, || {
            forget_verified_signatures();
            black_box(black_box(&msg).verify().is_ok());
        });
        let single = best_seconds(200, || {
            forget_verified_signatures();
            black_box(verify_one_by_one(black_box(&msg)));
        });
        println!(
            "  verify a delivered 1 KiB message with {hops} hops: batch {:.1} µs, one by one {:.1} µs ({:.2}x; batch faster: {})",
            batch * 1e6,
            single * 1e6,
            single / batch,
            verdict(batch < single)
        );
    }
    let (core, msg, from) = delivery_step(4);
    let step = best_seconds(200, || {
        forget_verified_signatures();
        black_box(deliver(&core, &msg, from));
    });
    let copy = best_seconds(200, || {
        black_box(core.clone());
    });
    println!(
        "  core delivery step (checks, batch verify, ack signature, forwards with signed hops), 4 hops: {:.1} µs (less {:.1} µs of the bench's core copy)",
        (step - copy) * 1e6,
        copy * 1e6
    );
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    if std::env::args().any(|a| a == "--bench") {
        check_targets();
    }
}
