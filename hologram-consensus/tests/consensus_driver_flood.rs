//! The driver under a flood (issue 19, point 5): three validators run their
//! `ReplicaDriver` over a `MemoryNetwork`; the fourth floods one of them
//! with catch-up requests (bursts of 20,000 frames, identical and
//! overlapping). The flooded driver's inbox stays within its per-peer limit
//! (the rest is dropped and counted), the flooder is sent at most its byte
//! budget per interval, and the validators keep committing.

mod support;

use async_trait::async_trait;
use futures::channel::mpsc::UnboundedReceiver;
use futures::executor::LocalPool;
use futures::task::LocalSpawnExt;
use futures::StreamExt;
use hologram_consensus::{
    inbox, Command, ConsensusMessage, Decision, ReplicaConfig, ReplicaDriver,
};
use hologram_lattice::driver::PEER_MESSAGES;
use hologram_lattice::transport::{Handler, HandlerError, MemoryNetwork, Protocol, Timer};
use hologram_lattice::wire::Wire;
use hologram_lattice::NodeId;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::decided::{commands, validators};

/// Counts the bytes of the decisions it is sent.
#[derive(Default)]
struct Counter {
    bytes: AtomicUsize,
}

#[async_trait]
impl Handler for Counter {
    async fn request(&self, _: NodeId, _: Protocol, _: Vec<u8>) -> Result<Vec<u8>, HandlerError> {
        Err(HandlerError::Refused("no requests".into()))
    }

    async fn message(&self, _: NodeId, _: Protocol, payload: Vec<u8>) {
        // Only catch-up answers: the flooder is a validator, so it is also
        // sent every proposal and vote.
        if let Ok(ConsensusMessage::Decision(_)) = ConsensusMessage::from_wire(&payload) {
            self.bytes.fetch_add(payload.len(), Ordering::Relaxed);
        }
    }
}

fn await_commands(
    pool: &mut LocalPool,
    decisions: &mut UnboundedReceiver<Decision>,
    seen: &mut Vec<Decision>,
    wanted: &[Command],
) {
    let timer = Timer::new();
    while !wanted
        .iter()
        .all(|c| seen.iter().any(|d| d.batch.commands().contains(c)))
    {
        let next = pool.run_until(timer.timeout(Duration::from_secs(20), decisions.next()));
        seen.push(next.flatten().expect("a decision within 20 s"));
    }
}

#[test]
fn a_flooded_driver_stays_bounded_and_keeps_committing() {
    let (keys, set) = validators();
    let network = MemoryNetwork::new(7);
    let timer = Timer::new();
    let mut pool = LocalPool::new();
    let spawner = pool.spawner();
    let mut config = ReplicaConfig::new(set.clone());
    config.max_batch = 2;
    config.timeouts.propose_ms = 30;
    config.sync_bytes_per_interval = 8 << 10;
    let resend = Duration::from_millis(config.timeouts.resend_ms);
    let hostile = keys[3].node_id();
    let counter = Arc::new(Counter::default());
    let _hostile_transport = network.join(hostile, counter.clone());
    let mut handles = Vec::new();
    let mut target = None;
    let mut decisions = None;
    for k in &keys[..3] {
        let replica = hologram_consensus::Replica::new(k.clone(), config.clone()).expect("config");
        let (handler, queue) = inbox();
        if target.is_none() {
            target = Some(handler.clone());
        }
        let transport = network.join(k.node_id(), Arc::new(handler));
        let (driver, handle, d) =
            ReplicaDriver::new(replica, Arc::new(transport), timer.clone(), queue);
        if decisions.is_none() {
            decisions = Some(d);
        }
        spawner
            .spawn_local(async move {
                driver.run().await;
            })
            .expect("spawn");
        handles.push(handle);
    }
    let (target, mut decisions) = (target.expect("target"), decisions.expect("decisions"));
    let mut seen = Vec::new();
    let warm = commands("warm", 80);
    for h in &handles {
        pool.run_until(h.submit(warm.clone(), false))
            .expect("taken");
    }
    await_commands(&mut pool, &mut decisions, &mut seen, &warm);
    let warm_heights = seen.len();

    let frame = |from: u64| {
        ConsensusMessage::SyncRequest { from }
            .to_wire()
            .expect("encodes")
    };
    let started = Instant::now();
    let before = counter.bytes.load(Ordering::Relaxed);
    let mut flooded = 0usize;
    for round in 0..5 {
        // A burst of 20,000 frames, all queued before the driver runs again.
        for i in 0..20_000u64 {
            let from = if i % 2 == 0 { 0 } else { i % 64 };
            pool.run_until(target.message(
                hostile,
                hologram_consensus::CONSENSUS_PROTOCOL,
                frame(from),
            ));
            flooded += 1;
        }
        let stats = handles[0].inbox_stats();
        assert!(
            stats.queued <= PEER_MESSAGES,
            "{} messages queued from one peer",
            stats.queued
        );
        // The validators keep committing through the flood.
        let fresh = commands(&format!("during {round}"), 4);
        for h in &handles {
            pool.run_until(h.submit(fresh.clone(), false))
                .expect("taken");
        }
        await_commands(&mut pool, &mut decisions, &mut seen, &fresh);
    }
    let elapsed = started.elapsed();
    let stats = handles[0].inbox_stats();
    let answered = counter.bytes.load(Ordering::Relaxed) - before;
    let intervals = (elapsed.as_millis() / resend.as_millis()) as usize + 2;
    eprintln!(
        "{flooded} frames flooded in {elapsed:?}: inbox peak {} messages ({} bytes), \
         {} dropped; {answered} bytes answered to the flooder over {intervals} intervals; \
         {} heights committed after {warm_heights}",
        stats.peak,
        stats.peak_bytes,
        stats.dropped,
        seen.len()
    );
    // The inbox held at most one peer's share plus a few honest messages.
    assert!(stats.peak <= PEER_MESSAGES + 64, "{stats:?}");
    assert!(
        stats.dropped >= (flooded - 5 * PEER_MESSAGES) as u64,
        "{stats:?}"
    );
    // Bytes answered: the budget (by its encoded-size bound) per interval.
    assert!(
        answered <= intervals * (8 << 10),
        "{answered} bytes over {intervals} intervals"
    );
    for h in &handles {
        h.stop();
    }
    pool.run_until_stalled();
}
