//! `BroadcastDriver` over the in-memory transport: delivery, certificates,
//! malformed frames, and repair under loss.

use futures::executor::block_on;
use futures::future::{join, join_all};
use hologram_consensus::broadcast::{BroadcastConfig, BroadcastDriver, Directory, DropReason};
use hologram_consensus::LatticeProtocol;
use hologram_lattice::sim::Faults;
use hologram_lattice::transport::{MemoryNetwork, Transport};
use hologram_receipt::KeyPair;
use std::sync::Arc;
use std::time::Duration;

fn network(
    n: u8,
    config: BroadcastConfig,
    seed: u64,
) -> (MemoryNetwork, Vec<BroadcastDriver>, Directory) {
    let keys: Vec<KeyPair> = (1..=n).map(|i| KeyPair::from_seed([i; 32])).collect();
    let dir = Directory::new(keys.iter().map(|k| k.node_id()));
    let net = MemoryNetwork::new(seed);
    let drivers = keys
        .iter()
        .map(|k| {
            let core = LatticeProtocol::new(k.clone(), dir.clone(), config.clone(), seed);
            let driver = BroadcastDriver::new(core);
            driver.attach(Arc::new(net.join(k.node_id(), driver.handler())));
            driver
        })
        .collect();
    (net, drivers, dir)
}

#[test]
fn a_broadcast_is_delivered_and_certified_over_the_transport() {
    let config = BroadcastConfig {
        ack_threshold: 20,
        repair_interval_ms: 10,
        ..BroadcastConfig::default()
    };
    let (net, drivers, dir) = network(30, config, 1);
    let timer = net.timer().clone();
    // 30 nodes leave most of the 48 pages empty: push reaches most of them,
    // repair the rest.
    let repairs = join_all(drivers.iter().map(|d| d.run(&timer)));
    let (result, _) = block_on(join(
        drivers[0].broadcast_and_wait(b"over the wire", &timer, Duration::from_secs(5)),
        timer.timeout(Duration::from_millis(500), repairs),
    ));
    let result = result.unwrap();
    let cert = result.certificate.expect("20 of 29 acknowledged");
    assert!(cert.verify(&dir, 20).is_ok());
    assert!(result.acknowledged >= 20);
    assert_eq!(drivers[0].take_certificates(), vec![cert.clone()]);
    let last = drivers[0].result(&cert.message()).unwrap();
    assert_eq!(last.acknowledged, 29);
    assert!((last.network_coverage - 1.0).abs() < 1e-9);
    assert!((last.page_coverage - 1.0).abs() < 1e-9);
    for d in &drivers[1..] {
        let got = d.take_deliveries();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].body, b"over the wire");
    }
    assert_eq!(drivers[0].send_failures(), 0);
}

#[test]
fn malformed_frames_are_counted_and_requests_refused() {
    let (net, drivers, _) = network(3, BroadcastConfig::default(), 2);
    let outsider = net.join(
        hologram_lattice::NodeId::from_bytes([200; 32]),
        drivers[0].handler(),
    );
    let target = drivers[1].with_core(|c| c.id());
    block_on(outsider.send(
        target,
        hologram_consensus::BROADCAST_PROTOCOL,
        vec![0xff; 40],
    ))
    .unwrap();
    assert_eq!(
        drivers[1].with_core(|c| c.drops().get(DropReason::Malformed)),
        1
    );
    let answer = block_on(outsider.request(
        target,
        hologram_consensus::BROADCAST_PROTOCOL,
        vec![],
        Duration::from_secs(1),
    ));
    assert!(answer.is_err());
    assert!(drivers[1].take_deliveries().is_empty());
}

#[test]
fn repair_completes_delivery_under_loss() {
    let config = BroadcastConfig {
        repair_interval_ms: 10,
        announce_rounds: 10,
        ack_threshold: 1,
        ..BroadcastConfig::default()
    };
    let (net, drivers, _) = network(30, config, 3);
    net.set_faults(Faults {
        loss: 0.3,
        latency_ms: (0, 0),
        ..Faults::NONE
    });
    let timer = net.timer().clone();
    let runs = join_all(drivers.iter().map(|d| d.run(&timer)));
    let (sent, _) = block_on(join(
        drivers[0].broadcast(b"lossy"),
        timer.timeout(Duration::from_millis(600), runs),
    ));
    sent.unwrap();
    let delivered = drivers[1..]
        .iter()
        .filter(|d| !d.take_deliveries().is_empty())
        .count();
    assert_eq!(
        delivered,
        29,
        "repair left {} nodes without the message",
        29 - delivered
    );
}
