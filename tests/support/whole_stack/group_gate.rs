//! The nemesis as the shard groups' coordinators see it: which nodes are
//! down, the partition in force and the loss rate, from which a
//! coordinator's call to a group is cut or lost (`group_transfers.rs`).
//! (The members' own traffic goes over their group's `MemoryNetwork`,
//! whose faults `groups.rs` sets alike.)

use hologram_lattice::NodeId;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

/// The nemesis' state as the groups see it.
#[derive(Debug)]
pub struct View {
    loss: f64,
    down: BTreeSet<NodeId>,
    /// Each node's side of the partition in force (empty when healed).
    side: BTreeMap<NodeId, usize>,
    rng: ChaCha8Rng,
    /// Coordinator calls the nemesis cut or lost.
    pub failed_calls: u64,
}

impl View {
    pub fn new(rng: ChaCha8Rng, loss: f64) -> Self {
        View {
            loss,
            down: BTreeSet::new(),
            side: BTreeMap::new(),
            rng,
            failed_calls: 0,
        }
    }

    pub fn set_loss(&mut self, loss: f64) {
        self.loss = loss;
    }

    pub fn set_down(&mut self, id: NodeId, down: bool) {
        match down {
            true => self.down.insert(id),
            false => self.down.remove(&id),
        };
    }

    pub fn partition(&mut self, sides: &[Vec<NodeId>]) {
        self.side = sides
            .iter()
            .enumerate()
            .flat_map(|(s, ids)| ids.iter().map(move |&id| (id, s)))
            .collect();
    }

    pub fn heal(&mut self) {
        self.side.clear();
    }

    pub fn is_down(&self, id: NodeId) -> bool {
        self.down.contains(&id)
    }

    /// Whether `a` and `b` cannot talk: one is down, or a partition
    /// separates them.
    pub fn cut(&self, a: NodeId, b: NodeId) -> bool {
        self.is_down(a) || self.is_down(b) || self.side.get(&a) != self.side.get(&b)
    }

    /// Draws whether one message is lost at the current rate.
    pub fn lose(&mut self) -> bool {
        self.loss > 0.0 && self.rng.random_bool(self.loss.min(1.0))
    }

    /// A fair coin from the same stream.
    pub fn coin(&mut self) -> bool {
        self.rng.random()
    }
}

/// The view shared by every gate and the driver.
#[derive(Debug, Clone)]
pub struct Nemesis(Arc<Mutex<View>>);

impl Nemesis {
    pub fn new(view: View) -> Self {
        Nemesis(Arc::new(Mutex::new(view)))
    }

    pub fn lock(&self) -> MutexGuard<'_, View> {
        // A panic while holding the view fails the test anyway.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
