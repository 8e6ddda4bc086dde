//! [`FaultyStore`]: any [`Store`] behind a disk that fails the way real disks
//! do, from a seed, for tests and for users who want to test their own code
//! against a bad disk.
//!
//! The faults (each a probability per operation, in [`DiskFaults`]):
//!
//! - **write errors**: a write fails before changing anything, as `EIO` or
//!   `ENOSPC` ([`CamError::Storage`] naming which);
//! - **torn batches**: a batch write (`put_batch`, `set_named`) applies a
//!   prefix of its changes, then fails;
//! - **lost writes**: a write that returned `Ok` sat in a volatile cache;
//!   [`FaultyStore::crash`] loses some of those written since the last crash
//!   (the newest [`UNFLUSHED`] writes are at risk), each key keeping a value
//!   it really held;
//! - **rot at rest**: an object or named record rots after it is written,
//!   until it is written again;
//! - **bit flips on read**: one read returns rotten bytes;
//! - **misdirected reads**: a read returns another key's object;
//! - **stale reads**: a read of a name returns what it held before its last
//!   change;
//! - **a slow disk**: every operation waits [`DiskFaults::delay`] (with a
//!   [`Timer`]).
//!
//! Rotten objects and records, and objects read from another address, are
//! what a store that checks its medium reports: [`CamError::Corrupt`] (the
//! [`Store`] contract; `RedbStore` re-checks every read). A stale named
//! record, or another name's record, is a real object, so only its reader
//! can tell (by what the record says: its height, a chain link).
//!
//! Every fault injected is counted ([`FaultyStore::counts`]);
//! [`FaultyStore::set_faults`] changes the rates (e.g. to
//! [`DiskFaults::NONE`] once a campaign heals; rot already at rest stays).
//! With [`DiskFaults::NONE`] the store passes the conformance suite.

use super::{Name, Store};
use crate::dedup::ReferenceSet;
use crate::{CamError, Object};
use async_trait::async_trait;
use hologram_lattice::transport::Timer;
use hologram_lattice::Address;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// How many of the newest acknowledged writes a [`FaultyStore::crash`] may
/// lose (older ones are on the platter).
pub const UNFLUSHED: usize = 4096;

/// How many recent keys a [`FaultyStore`] remembers to misdirect reads to,
/// and names whose previous value it keeps for stale reads.
const REMEMBERED: usize = 4096;

/// The rates of a [`FaultyStore`]'s faults: each a probability per
/// operation of its kind, in `0.0..=1.0`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiskFaults {
    /// A write fails (as `EIO`) before changing anything.
    pub write_error: f64,
    /// A write fails (as `ENOSPC`) before changing anything.
    pub no_space: f64,
    /// A batch write of two or more changes applies a prefix, then fails.
    pub torn_batch: f64,
    /// At a crash, each unflushed write is lost.
    pub lost_on_crash: f64,
    /// A write's object rots at rest.
    pub rot_at_rest: f64,
    /// A read returns rotten bytes.
    pub flip_on_read: f64,
    /// A read returns another key's object.
    pub misdirected_read: f64,
    /// A read of a name returns its value before its last change.
    pub stale_read: f64,
    /// Every operation waits this long first (needs a timer).
    pub delay: Duration,
}

impl DiskFaults {
    /// A perfect disk.
    pub const NONE: DiskFaults = DiskFaults {
        write_error: 0.0,
        no_space: 0.0,
        torn_batch: 0.0,
        lost_on_crash: 0.0,
        rot_at_rest: 0.0,
        flip_on_read: 0.0,
        misdirected_read: 0.0,
        stale_read: 0.0,
        delay: Duration::ZERO,
    };
}

/// How many faults of each kind a [`FaultyStore`] injected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskFaultCounts {
    /// Writes failed as `EIO`.
    pub write_errors: u64,
    /// Writes failed as `ENOSPC`.
    pub no_space: u64,
    /// Batches torn.
    pub torn: u64,
    /// Acknowledged writes lost at crashes.
    pub lost: u64,
    /// Objects and records that rotted at rest.
    pub rotted: u64,
    /// Reads that returned rotten bytes (rot at rest or a flip on read).
    pub rotten_reads: u64,
    /// Reads misdirected to another key.
    pub misdirected: u64,
    /// Stale reads of names.
    pub stale: u64,
}

/// A key of either space.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Object(Address),
    Named(Name),
    /// An object's reference set ([`ReferenceStore`](crate::ReferenceStore)).
    References(Address),
}

/// What undoes one acknowledged write.
#[derive(Debug)]
enum Undo {
    /// The object was put (it was not there before).
    Put(Address),
    /// The object was removed.
    Remove(Object),
    /// The name held this before.
    Named(Name, Option<Object>),
    /// The object's reference set was this before.
    References(Address, Option<ReferenceSet>),
}

impl Undo {
    fn key(&self) -> Key {
        match self {
            Undo::Put(a) => Key::Object(*a),
            Undo::Remove(o) => Key::Object(o.address()),
            Undo::Named(n, _) => Key::Named(n.clone()),
            Undo::References(a, _) => Key::References(*a),
        }
    }
}

#[derive(Debug)]
struct State {
    faults: DiskFaults,
    rng: ChaCha8Rng,
    counts: DiskFaultCounts,
    /// The newest acknowledged writes, oldest first.
    unflushed: VecDeque<Undo>,
    rotten: HashSet<Key>,
    /// Recent object addresses and names, for misdirected reads.
    recent: VecDeque<Key>,
    /// Each recently changed name's value before its last change.
    previous: HashMap<Name, Option<Object>>,
}

impl State {
    fn roll(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.random_bool(p.min(1.0))
    }

    fn remember(&mut self, key: Key) {
        if self.recent.len() == REMEMBERED {
            self.recent.pop_front();
        }
        self.recent.push_back(key);
    }

    /// A write of `key` landed: it is fresh (not rotten) unless it rots now.
    fn written(&mut self, key: Key, undo: Undo) {
        self.rotten.remove(&key);
        if self.roll(self.faults.rot_at_rest) {
            self.counts.rotted += 1;
            self.rotten.insert(key.clone());
        }
        if self.unflushed.len() == UNFLUSHED {
            self.unflushed.pop_front();
        }
        self.unflushed.push_back(undo);
        // Reads of reference sets are not misdirected (see `references`).
        if !matches!(key, Key::References(_)) {
            self.remember(key);
        }
    }

    /// Whether a write fails before it starts, and how.
    fn write_fails(&mut self) -> Result<(), CamError> {
        if self.roll(self.faults.write_error) {
            self.counts.write_errors += 1;
            return Err(injected("EIO: input/output error"));
        }
        if self.roll(self.faults.no_space) {
            self.counts.no_space += 1;
            return Err(injected("ENOSPC: no space left on device"));
        }
        Ok(())
    }

    /// How many of a batch of `n` changes land before it tears, if it does.
    fn tear(&mut self, n: usize) -> Option<usize> {
        (n >= 2 && self.roll(self.faults.torn_batch)).then(|| {
            self.counts.torn += 1;
            self.rng.random_range(0..n)
        })
    }

    /// Whether a read of `key` comes back rotten.
    fn rotten_read(&mut self, key: &Key) -> bool {
        let rotten = self.rotten.contains(key) || self.roll(self.faults.flip_on_read);
        if rotten {
            self.counts.rotten_reads += 1;
        }
        rotten
    }

    /// Another recent key of the same space to misdirect a read to.
    fn misdirect(&mut self, key: &Key) -> Option<Key> {
        if self.recent.is_empty() || !self.roll(self.faults.misdirected_read) {
            return None;
        }
        let other = self.recent[self.rng.random_range(0..self.recent.len())].clone();
        let same_space = matches!(
            (key, &other),
            (Key::Object(_), Key::Object(_))
                | (Key::Named(_), Key::Named(_))
                | (Key::References(_), Key::References(_))
        );
        (same_space && other != *key).then(|| {
            self.counts.misdirected += 1;
            other
        })
    }
}

fn injected(what: &str) -> CamError {
    CamError::Storage(format!("injected disk fault: {what}"))
}

/// A [`Store`] over `S` whose disk fails as [`DiskFaults`] says, from a
/// seed (see the module docs).
///
/// ```
/// # futures::executor::block_on(async {
/// use hologram_cam::{DiskFaults, FaultyStore, MemoryStore, Object, Store};
///
/// let disk = FaultyStore::new(MemoryStore::new(), 7, DiskFaults {
///     rot_at_rest: 1.0,
///     ..DiskFaults::NONE
/// });
/// let object = Object::new(&b"kept"[..]);
/// disk.put(object.clone()).await.unwrap();
/// // The object rotted where it lies: the store reports it corrupt.
/// assert!(disk.get(&object.address()).await.is_err());
/// assert_eq!(disk.counts().rotted, 1);
/// # });
/// ```
pub struct FaultyStore<S> {
    inner: S,
    state: Mutex<State>,
    timer: Option<Timer>,
}

impl<S: Store> FaultyStore<S> {
    /// `inner` behind a disk with `faults`, drawn from `seed`.
    pub fn new(inner: S, seed: u64, faults: DiskFaults) -> Self {
        FaultyStore {
            inner,
            state: Mutex::new(State {
                faults,
                rng: ChaCha8Rng::seed_from_u64(seed),
                counts: DiskFaultCounts::default(),
                unflushed: VecDeque::new(),
                rotten: HashSet::new(),
                recent: VecDeque::new(),
                previous: HashMap::new(),
            }),
            timer: None,
        }
    }

    /// Waits [`DiskFaults::delay`] on `timer` before each operation.
    pub fn with_timer(mut self, timer: Timer) -> Self {
        self.timer = Some(timer);
        self
    }

    /// The store under the faulty disk.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The faults injected so far.
    pub fn counts(&self) -> DiskFaultCounts {
        self.state().counts
    }

    /// Whether the object at `address` rotted at rest (until it is written
    /// again): a test's oracle of which copies are good, asked without
    /// reading (a read may inject a fault of its own).
    pub fn is_rotten(&self, address: &Address) -> bool {
        self.state().rotten.contains(&Key::Object(*address))
    }

    /// Changes the rates from now on.
    pub fn set_faults(&self, faults: DiskFaults) {
        self.state().faults = faults;
    }

    /// The process crashed: each unflushed write is lost with probability
    /// [`DiskFaults::lost_on_crash`], newest first, a key losing only writes
    /// newer than every write of it that was kept. Returns how many were
    /// lost. What is left is flushed. (Writes of reference sets, kept in
    /// this store through its [`ReferenceStore`](crate::ReferenceStore)
    /// face, are lost only by
    /// [`crash_with_references`](Self::crash_with_references).)
    pub async fn crash(&self) -> Result<u64, CamError> {
        let lost = self.lose_unflushed(false);
        let n = lost.len() as u64;
        self.undo(lost).await?;
        Ok(n)
    }

    /// Takes the unflushed writes a crash loses (reference sets' only
    /// `with_references`), counting them; the rest are flushed.
    fn lose_unflushed(&self, with_references: bool) -> Vec<Undo> {
        let (mut lost, mut kept) = (Vec::new(), HashSet::new());
        let mut state = self.state();
        let p = state.faults.lost_on_crash;
        while let Some(undo) = state.unflushed.pop_back() {
            let key = undo.key();
            let may_lose = with_references || !matches!(key, Key::References(_));
            if may_lose && !kept.contains(&key) && state.roll(p) {
                lost.push(undo);
            } else {
                kept.insert(key);
            }
        }
        state.counts.lost += lost.len() as u64;
        lost
    }

    /// Undoes lost writes of objects and names (newest first); returns the
    /// lost writes of reference sets, for the caller that can undo them.
    async fn undo(
        &self,
        lost: Vec<Undo>,
    ) -> Result<Vec<(Address, Option<ReferenceSet>)>, CamError> {
        let mut references = Vec::new();
        for undo in lost {
            match undo {
                Undo::Put(address) => {
                    self.inner.remove(&address).await?;
                }
                Undo::Remove(object) => self.inner.put(object).await?,
                Undo::Named(name, before) => self.inner.set_named(vec![(name, before)]).await?,
                Undo::References(address, before) => references.push((address, before)),
            }
        }
        Ok(references)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn slow(&self) {
        let delay = self.state().faults.delay;
        if let (Some(timer), false) = (&self.timer, delay.is_zero()) {
            timer.sleep(delay).await;
        }
    }

    /// The outcome of reading `key`, whose stored object is `found`.
    async fn read(&self, key: Key, found: Option<Object>) -> Result<Option<Object>, CamError> {
        let misdirected = self.state().misdirect(&key);
        let found = match (&key, misdirected) {
            // Another object's bytes do not hash to this address.
            (Key::Object(address), Some(_)) => return Err(CamError::Corrupt(*address)),
            // Another name's record is an object of its own: the store
            // cannot tell, its reader may.
            (Key::Named(_), Some(Key::Named(other))) => self.inner.get_named(&other).await?,
            _ => found,
        };
        let Some(object) = found else {
            return Ok(None);
        };
        match self.state().rotten_read(&key) {
            true => Err(CamError::Corrupt(object.address())),
            false => Ok(Some(object)),
        }
    }

    /// Starts a batch write of `changes`: fails it, or cuts it to the
    /// prefix that lands if it tears (then answering the tear's error once
    /// the prefix is written).
    async fn write<T: Send>(&self, changes: &mut Vec<T>) -> Result<Result<(), CamError>, CamError> {
        self.slow().await;
        let mut state = self.state();
        state.write_fails()?;
        Ok(match state.tear(changes.len()) {
            None => Ok(()),
            Some(landed) => {
                changes.truncate(landed);
                Err(injected("a torn batch write"))
            }
        })
    }

    /// Puts `objects` in one batch of the store under, noting each.
    async fn put_all(&self, objects: Vec<Object>) -> Result<(), CamError> {
        let mut fresh = Vec::with_capacity(objects.len());
        for object in &objects {
            fresh.push(!self.inner.contains(&object.address()).await?);
        }
        let addresses: Vec<Address> = objects.iter().map(Object::address).collect();
        self.inner.put_batch(objects).await?;
        let mut state = self.state();
        for (address, fresh) in addresses.into_iter().zip(fresh) {
            match fresh {
                true => state.written(Key::Object(address), Undo::Put(address)),
                // Written again: whatever rotted is rewritten.
                false => {
                    state.rotten.remove(&Key::Object(address));
                }
            }
        }
        Ok(())
    }

    /// Sets `changes` in one batch of the store under, noting each name's
    /// previous value.
    async fn set_all(&self, changes: Vec<(Name, Option<Object>)>) -> Result<(), CamError> {
        let mut before = Vec::with_capacity(changes.len());
        for (name, _) in &changes {
            before.push(self.inner.get_named(name).await?);
        }
        let names: Vec<Name> = changes.iter().map(|(n, _)| n.clone()).collect();
        self.inner.set_named(changes).await?;
        let mut state = self.state();
        for (name, before) in names.into_iter().zip(before) {
            if state.previous.len() >= REMEMBERED && !state.previous.contains_key(&name) {
                state.previous.clear();
            }
            state.previous.insert(name.clone(), before.clone());
            state.written(Key::Named(name.clone()), Undo::Named(name, before));
        }
        Ok(())
    }
}

#[async_trait]
impl<S: Store> Store for FaultyStore<S> {
    async fn get(&self, address: &Address) -> Result<Option<Object>, CamError> {
        self.slow().await;
        let found = self.inner.get(address).await?;
        self.read(Key::Object(*address), found).await
    }

    async fn put(&self, object: Object) -> Result<(), CamError> {
        self.put_batch(vec![object]).await
    }

    async fn put_batch(&self, mut objects: Vec<Object>) -> Result<(), CamError> {
        let torn = self.write(&mut objects).await?;
        self.put_all(objects).await?;
        torn
    }

    async fn contains(&self, address: &Address) -> Result<bool, CamError> {
        self.slow().await;
        self.inner.contains(address).await
    }

    async fn remove(&self, address: &Address) -> Result<bool, CamError> {
        self.slow().await;
        self.state().write_fails()?;
        let Some(object) = self.inner.get(address).await? else {
            return Ok(false);
        };
        let removed = self.inner.remove(address).await?;
        self.state()
            .written(Key::Object(*address), Undo::Remove(object));
        Ok(removed)
    }

    async fn scan(&self, after: Option<Address>, limit: usize) -> Result<Vec<Address>, CamError> {
        self.slow().await;
        self.inner.scan(after, limit).await
    }

    async fn get_named(&self, name: &Name) -> Result<Option<Object>, CamError> {
        self.slow().await;
        let stale = {
            let mut state = self.state();
            let p = state.faults.stale_read;
            match state.previous.get(name).cloned() {
                Some(before) if state.roll(p) => {
                    state.counts.stale += 1;
                    Some(before)
                }
                _ => None,
            }
        };
        let found = match stale {
            Some(before) => before,
            None => self.inner.get_named(name).await?,
        };
        self.read(Key::Named(name.clone()), found).await
    }

    async fn set_named(&self, mut changes: Vec<(Name, Option<Object>)>) -> Result<(), CamError> {
        let torn = self.write(&mut changes).await?;
        self.set_all(changes).await?;
        torn
    }
}

impl<S> std::fmt::Debug for FaultyStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("FaultyStore")
            .field("faults", &state.faults)
            .field("counts", &state.counts)
            .finish_non_exhaustive()
    }
}

mod references;

#[cfg(test)]
mod tests;
