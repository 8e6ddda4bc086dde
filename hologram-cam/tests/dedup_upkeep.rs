//! A holder's background upkeep (issue 22): the scrub at its pace finds the
//! copies that rotted at rest, the next tick's anti-entropy fetches them
//! back from replicas, and the periodic round restores N copies after a
//! holder is lost for good; nobody puts again and nobody calls `repair`.
//!
//! Seeds: `HOLOGRAM_SEEDS=<n>` (default 3), `HOLOGRAM_SEED=<s>`.

use futures::executor::block_on;
use hologram_cam::dedup::{Upkeep, UpkeepPlan, UpkeepReport};
use hologram_cam::{
    DedupHandler, DeduplicationNetwork, DiskFaults, FaultyStore, HashRing, MemoryStore, Object,
    Store, StoreResult,
};
use hologram_lattice::sim::seeds;
use hologram_lattice::transport::{MemoryNetwork, MemoryTransport};
use hologram_lattice::NodeId;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

type Disk = FaultyStore<MemoryStore>;

struct Holder {
    id: NodeId,
    disk: Arc<Disk>,
    handler: Arc<DedupHandler<Disk>>,
    transport: MemoryTransport,
}

struct Net {
    _network: MemoryNetwork,
    ring: Arc<RwLock<HashRing>>,
    holders: Vec<Holder>,
    client: DeduplicationNetwork,
}

fn network(seed: u64) -> Net {
    let network = MemoryNetwork::new(seed);
    let ring = Arc::new(RwLock::new(HashRing::new()));
    let mut holders = Vec::new();
    for i in 0..5u8 {
        let id = NodeId::from_bytes(*blake3::hash(&[i, 23]).as_bytes());
        let disk = Arc::new(FaultyStore::new(
            MemoryStore::new(),
            seed ^ (u64::from(i) << 32),
            DiskFaults::NONE,
        ));
        let handler =
            Arc::new(DedupHandler::new(Arc::clone(&disk)).with_ring(id, Arc::clone(&ring), 3));
        let transport = network.join(id, Arc::clone(&handler) as _);
        ring.write().unwrap().add(id);
        holders.push(Holder {
            id,
            disk,
            handler,
            transport,
        });
    }
    let client = network.join(
        NodeId::from_bytes([0xc2; 32]),
        Arc::new(DedupHandler::new(Arc::new(MemoryStore::new()))),
    );
    let client = DeduplicationNetwork::new(Arc::new(client), Arc::clone(&ring), 3);
    Net {
        _network: network,
        ring,
        holders,
        client,
    }
}

/// The owners of `object` on the ring that hold no good copy of it (asked
/// of each disk's oracle, not by a read, which may inject a fault).
fn missing_copies(net: &Net, object: &Object) -> usize {
    net.client
        .owners(&object.address())
        .into_iter()
        .filter(|owner| {
            let h = net.holders.iter().find(|h| h.id == *owner).unwrap();
            let held = block_on(h.disk.inner().get(&object.address()))
                .ok()
                .flatten();
            held.as_ref() != Some(object) || h.disk.is_rotten(&object.address())
        })
        .count()
}

fn missing(net: &Net, objects: &[Object]) -> usize {
    objects.iter().map(|o| missing_copies(net, o)).sum()
}

/// Runs `ticks` ticks of every holder's upkeep on the ring, in turn.
fn tick_all(net: &Net, upkeeps: &mut [Upkeep], ticks: u64) {
    let on_ring: Vec<NodeId> = net.ring.read().unwrap().nodes().collect();
    for _ in 0..ticks {
        for (h, upkeep) in net.holders.iter().zip(upkeeps.iter_mut()) {
            if on_ring.contains(&h.id) {
                block_on(upkeep.tick(&h.handler, &h.transport));
            }
        }
    }
}

fn sum(upkeeps: &[Upkeep], f: impl Fn(&UpkeepReport) -> u64) -> u64 {
    upkeeps.iter().map(|u| f(u.report())).sum()
}

#[test]
fn upkeep_finds_rot_fetches_it_back_and_restores_a_lost_holder() {
    for seed in seeds(3) {
        let net = network(seed);
        // Two disks rot a third of what they are given.
        for h in &net.holders[..2] {
            h.disk.set_faults(DiskFaults {
                rot_at_rest: 0.3,
                ..DiskFaults::NONE
            });
        }
        let objects: Vec<Object> = (0..150)
            .map(|i| Object::new(format!("upkeep seed {seed} object {i}").into_bytes()))
            .collect();
        for o in &objects {
            let stored = block_on(net.client.store_unique(o.shared_data()));
            assert!(
                matches!(stored, StoreResult::Stored(..)),
                "seed {seed}: {stored:?}"
            );
        }
        for h in &net.holders {
            h.disk.set_faults(DiskFaults::NONE);
        }
        let rotted: u64 = net.holders.iter().map(|h| h.disk.counts().rotted).sum();
        assert!(rotted > 0, "seed {seed}: nothing rotted");
        assert_eq!(missing(&net, &objects) as u64, rotted, "seed {seed}");

        // No periodic rounds: what comes back, the scrub found. 10 objects
        // a tick: a pass over a holder's ~90 objects takes ~10 ticks.
        let plan = UpkeepPlan {
            scrub_per_tick: 10,
            anti_entropy_every: 0,
            ..UpkeepPlan::default()
        };
        let mut upkeeps: Vec<Upkeep> = net
            .holders
            .iter()
            .map(|_| Upkeep::new(plan.clone()))
            .collect();
        tick_all(&net, &mut upkeeps, 3);
        assert!(
            missing(&net, &objects) > 0,
            "seed {seed}: three small steps cannot have scrubbed everything"
        );
        tick_all(&net, &mut upkeeps, 20);
        assert_eq!(missing(&net, &objects), 0, "seed {seed}: all fetched back");
        // A rotten copy is found by a scrub, or dropped by the holder when a
        // neighbour's anti-entropy asks it for the object (it answers
        // "corrupt"): either way, fetched back once.
        let found = sum(&upkeeps, |r| r.rotten);
        assert!(found > 0 && found <= rotted, "seed {seed}: {found} found");
        assert_eq!(
            sum(&upkeeps, |r| r.anti_entropy.fetched as u64),
            rotted,
            "seed {seed}: each fetched back once"
        );
        assert!(
            sum(&upkeeps, |r| r.passes) >= 5,
            "seed {seed}: every holder finished a pass"
        );
        assert_eq!(sum(&upkeeps, |r| r.errors), 0, "seed {seed}");

        // A holder is wiped and leaves the ring for good. Nothing rotted,
        // so only the periodic round (every 5 ticks) restores N = 3.
        let lost = &net.holders[4];
        for o in &objects {
            block_on(lost.disk.inner().remove(&o.address())).unwrap();
        }
        net.ring.write().unwrap().remove(&lost.id);
        let under = missing(&net, &objects);
        assert!(under > 0, "seed {seed}: the lost holder owned nothing");
        let plan = UpkeepPlan {
            anti_entropy_every: 5,
            ..plan
        };
        let mut upkeeps: Vec<Upkeep> = net
            .holders
            .iter()
            .map(|_| Upkeep::new(plan.clone()))
            .collect();
        tick_all(&net, &mut upkeeps, 4);
        assert_eq!(missing(&net, &objects), under, "seed {seed}: no round yet");
        tick_all(&net, &mut upkeeps, 1);
        assert_eq!(missing(&net, &objects), 0, "seed {seed}: N = 3 again");
        assert_eq!(sum(&upkeeps, |r| r.rotten), 0, "seed {seed}");
        println!(
            "seed {seed}: {rotted} rotten copies ({found} found by scrubs) fetched back; {under} copies of a lost holder restored"
        );
    }
}

/// A future that is pending once (waking itself), then ready: a sleep that
/// lets the loop's `stop` be polled between ticks without real time.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[test]
fn run_ticks_at_its_pace_until_stopped_and_resumes_its_scrub() {
    let net = network(7);
    let objects: Vec<Object> = (0..40)
        .map(|i| Object::new(format!("run object {i}").into_bytes()))
        .collect();
    for o in &objects {
        block_on(net.client.store_unique(o.shared_data()));
    }
    let h = &net.holders[0];
    let held = block_on(h.disk.scan(None, usize::MAX)).unwrap().len() as u64;
    assert!(held > 4, "holder 0 holds {held}");
    let plan = UpkeepPlan {
        tick: Duration::from_millis(250),
        scrub_per_tick: 2,
        anti_entropy_every: 0,
        ..UpkeepPlan::default()
    };
    // Stops once the sleep was asked for three ticks: three ticks ran, each
    // after a sleep of the plan's tick.
    let asked = std::cell::RefCell::new(Vec::new());
    let sleep = |d: Duration| {
        asked.borrow_mut().push(d);
        YieldOnce(false)
    };
    let stop = futures::future::poll_fn(|cx| {
        if asked.borrow().len() > 3 {
            Poll::Ready(())
        } else {
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    });
    let report = block_on(Upkeep::new(plan.clone()).run(&h.handler, &h.transport, sleep, stop));
    assert_eq!(report.ticks, 3);
    assert_eq!(report.scrubbed, 6);
    assert!(asked.borrow().iter().all(|d| *d == plan.tick));
    // A new upkeep (a restarted holder) resumes the pass at the cursor: the
    // rest of the holder's objects, then the pass ends.
    let mut again = Upkeep::new(UpkeepPlan {
        scrub_per_tick: held as usize,
        ..plan
    });
    block_on(again.tick(&h.handler, &h.transport));
    assert_eq!(again.report().scrubbed, held - 6);
    assert_eq!(again.report().passes, 1);
}
