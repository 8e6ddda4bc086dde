//! Authenticated epidemic broadcast with a delivery certificate.
//!
//! Run it with `cargo run --release --example broadcast`.
//!
//! 96 nodes on the in-memory network, which loses 10% of all messages. One
//! node broadcasts; the message spreads around its page and to pages the C768
//! schedule picks, every hop extending a signed witness chain that each
//! receiver verifies before it delivers or forwards. Lazy-push repair
//! (announce ids, pull what is missing) fills the gaps loss leaves. Receivers
//! sign delivery receipts; once two thirds of the network has acknowledged,
//! the sender holds a `DeliveryCertificate` anyone can check against the node
//! identities (the chapter's exercise 1). Finally an outsider's frame and a
//! tampered copy are dropped, each with its reason, before anything is
//! delivered or forwarded.

use futures::executor::block_on;
use futures::future::{join, join_all};
use hologram::consensus::broadcast::{
    encode_envelope, unix_millis, BroadcastConfig, BroadcastDriver, BroadcastMessage, Directory,
};
use hologram::consensus::LatticeProtocol;
use hologram::lattice::sim::Faults;
use hologram::lattice::transport::{MemoryNetwork, Transport};
use hologram::lattice::wire::Wire;
use hologram::receipt::{AuthenticatedMessage, KeyPair};
use std::sync::Arc;
use std::time::{Duration, Instant};

const NODES: u8 = 96;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let keys: Vec<KeyPair> = (1..=NODES).map(|i| KeyPair::from_seed([i; 32])).collect();
    let directory = Directory::new(keys.iter().map(KeyPair::node_id));
    let threshold = (2 * keys.len()) / 3;
    let config = BroadcastConfig {
        ack_threshold: threshold,
        repair_interval_ms: 20,
        ..BroadcastConfig::default()
    };

    let network = MemoryNetwork::new(42);
    network.set_faults(Faults {
        loss: 0.10,
        latency_ms: (0, 2),
        ..Faults::NONE
    });
    let drivers: Vec<BroadcastDriver> = keys
        .iter()
        .map(|k| {
            let core = LatticeProtocol::new(k.clone(), directory.clone(), config.clone(), 42);
            let driver = BroadcastDriver::new(core);
            driver.attach(Arc::new(network.join(k.node_id(), driver.handler())));
            driver
        })
        .collect();

    // An outsider, who will send node 5 a frame.
    let target = keys[5].node_id();
    let outsider = KeyPair::from_seed([200; 32]);
    let rogue = network.join(outsider.node_id(), drivers[0].handler());
    let uninvited =
        AuthenticatedMessage::new(encode_envelope(unix_millis(), b"let me in"), &outsider)?
            .forward(target, &outsider)?;

    // Node 0 broadcasts while every node runs its driver (repair included);
    // then the outsider's frame gets nowhere.
    let timer = network.timer().clone();
    let start = Instant::now();
    let runs = join_all(drivers.iter().map(|d| d.run(&timer)));
    let broadcast = async {
        let result = drivers[0]
            .broadcast_and_wait(b"the lattice says hello", &timer, Duration::from_secs(5))
            .await;
        let took = start.elapsed();
        let frame = BroadcastMessage::Gossip(uninvited)
            .to_wire()
            .unwrap_or_default();
        let sent = rogue
            .send(target, hologram::consensus::BROADCAST_PROTOCOL, frame)
            .await;
        timer.sleep(Duration::from_millis(20)).await;
        (result, took, sent)
    };
    let ((result, took, sent), _) = block_on(join(
        broadcast,
        timer.timeout(Duration::from_millis(800), runs),
    ));
    sent?;
    let result = result?;
    let certificate = result
        .certificate
        .ok_or("no certificate: too few acknowledgements")?;
    println!(
        "certificate after {took:.0?}: {} of {} nodes acknowledged (threshold {threshold}), page coverage {:.0}%",
        certificate.acks().len(),
        NODES - 1,
        result.page_coverage * 100.0
    );
    certificate.verify(&directory, threshold)?;
    println!("anyone holding the node identities can verify it: ok");

    let delivered = drivers[1..]
        .iter()
        .filter(|d| !d.take_deliveries().is_empty())
        .count();
    println!(
        "delivered at {delivered} of {} receivers despite 10% loss",
        NODES - 1
    );

    // A member's tampered copy gets nowhere either.
    let member = &keys[7];
    let genuine = AuthenticatedMessage::new(encode_envelope(unix_millis(), b"pay 10"), member)?
        .forward(target, member)?;
    let (mut payload, receipt, witness) = genuine.into_parts();
    if let Some(last) = payload.last_mut() {
        *last = b'9'; // "pay 19": the receipt still binds "pay 10"
    }
    let tampered = AuthenticatedMessage::from_parts(payload, receipt, witness)?;
    drivers[5].with_core(|core| {
        let mut out = Vec::new();
        core.handle(
            unix_millis(),
            member.node_id(),
            BroadcastMessage::Gossip(tampered),
            &mut out,
        );
        for (reason, count) in core.drops().iter().filter(|(_, n)| *n > 0) {
            println!("node 5 dropped {count} message(s) as {reason:?}");
        }
    });
    Ok(())
}
