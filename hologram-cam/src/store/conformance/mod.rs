//! The conformance suite: checks a [`Store`] against the trait's contract.
//!
//! [`run`] takes an **empty** store, runs every check in order on it and
//! returns the first [`Failure`], naming the check and what went wrong. The
//! data is pseudo-random but fixed, so a failure reproduces exactly (the
//! interleaving of the concurrent check is the OS's, so a store that loses
//! updates fails it almost always, not always at the same object). The
//! suite leaves the objects it stored behind (about 7,000, a few megabytes).
//!
//! Two checks are about scale and threads: "many objects" holds [`MANY`]
//! small objects at once and reads every one back (a store that silently
//! evicts fails it), and "concurrent" runs [`THREADS`] OS threads against
//! the one store, each putting [`PER_THREAD`] objects (some in batches),
//! reading and removing, then checks every object (a store whose methods
//! race, e.g. one that copies its map, changes the copy and writes it back
//! without holding its lock, fails it). The last, "named key space", checks
//! the store's names ([`Name`](super::Name)): round trips, replacement,
//! clearing, [`NAMES`] names at once, and separation from the objects.
//!
//! The suite is one async function and needs no runtime of its own: drive it
//! with whatever executor your store needs. Only the "concurrent" check
//! blocks the calling thread while its [`THREADS`] threads each drive the
//! store's futures with `futures::executor::block_on`, so those futures must
//! complete without a runtime's reactor (or enter one themselves). To check
//! your own store, add a test like this one (here against
//! [`MemoryStore`](super::MemoryStore)):
//!
//! ```
//! use futures::executor::block_on;
//! use hologram_cam::{conformance, MemoryStore};
//!
//! let store = MemoryStore::new();
//! if let Err(failure) = block_on(conformance::run(&store)) {
//!     panic!("{failure}");
//! }
//! ```
//!
//! Durability after a crash cannot be checked from inside one process; the
//! `redb_crash` test of the `hologram-stack` package shows how to do it for a
//! durable store (kill a writer with SIGKILL, reopen, check what it
//! acknowledged).
//!
//! The checks, in order: [`CHECKS`].

mod named;
mod scale;

use super::Store;
use crate::Object;
use hologram_lattice::Address;
use std::collections::BTreeSet;
use std::ops::Bound;
use thiserror::Error;

/// How many small objects the "many objects" check holds at once.
pub const MANY: usize = 4096;
/// How many names the "named key space" check sets at once.
pub const NAMES: usize = 1000;
/// How many OS threads the "concurrent" check runs on one store.
pub const THREADS: usize = 8;
/// How many objects each thread of the "concurrent" check puts.
pub const PER_THREAD: usize = 200;

/// The names of the checks [`run`] makes, in the order it makes them.
pub const CHECKS: [&str; 13] = [
    "starts empty",
    "round trip",
    "absent",
    "idempotent put",
    "remove",
    "put_batch",
    "empty object",
    "large object",
    "many objects",
    "concurrent",
    "scan",
    "integrity",
    "named key space",
];

/// A check the store failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("conformance check `{check}` failed: {message}")]
#[non_exhaustive]
pub struct Failure {
    /// Which check (one of [`CHECKS`]).
    pub check: &'static str,
    /// What was wrong.
    pub message: String,
}

/// Runs every check of the suite on `store`, which must be empty (see the
/// [module docs](self) for what the "concurrent" check needs of the
/// store's futures).
pub async fn run<S: Store + ?Sized>(store: &S) -> Result<(), Failure> {
    let mut suite = Suite {
        store,
        model: BTreeSet::new(),
        rng: Xorshift(0x9e37_79b9_7f4a_7c15),
    };
    let [starts_empty, round_trip, absent, idempotent, remove, batch, empty, large, many, concurrent, scan, integrity, named] =
        CHECKS;
    check(starts_empty, suite.starts_empty().await)?;
    check(round_trip, suite.round_trip().await)?;
    check(absent, suite.absent().await)?;
    check(idempotent, suite.idempotent_put().await)?;
    check(remove, suite.remove().await)?;
    check(batch, suite.put_batch().await)?;
    check(empty, suite.empty_object().await)?;
    check(large, suite.large_object().await)?;
    check(many, suite.many_objects().await)?;
    check(concurrent, suite.concurrent().await)?;
    check(scan, suite.scan_paging().await)?;
    check(integrity, suite.integrity().await)?;
    check(named, suite.named().await)
}

fn check(name: &'static str, result: Result<(), String>) -> Result<(), Failure> {
    result.map_err(|message| Failure {
        check: name,
        message,
    })
}

/// A xorshift64 generator: deterministic data without a `rand` dependency.
struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn object(&mut self, len: usize) -> Object {
        let bytes: Vec<u8> = (0..len).map(|_| (self.next() >> 32) as u8).collect();
        Object::new(bytes)
    }
}

/// The store under test and what it should hold.
struct Suite<'a, S: ?Sized> {
    store: &'a S,
    model: BTreeSet<Address>,
    rng: Xorshift,
}

/// `get(address)`, checking that an object returned is the one asked for and
/// hashes to it.
async fn get_checked<S: Store + ?Sized>(
    store: &S,
    address: &Address,
) -> Result<Option<Object>, String> {
    let found = store
        .get(address)
        .await
        .map_err(|e| format!("get({address}) failed: {e}"))?;
    if let Some(object) = &found {
        if object.address() != *address {
            return Err(format!(
                "get({address}) returned the object at {}",
                object.address()
            ));
        }
        if Address::of(object.data()) != *address {
            return Err(format!(
                "get({address}) returned bytes that do not hash to it"
            ));
        }
    }
    Ok(found)
}

/// Checks that `object` is stored with its bytes intact.
async fn expect_stored<S: Store + ?Sized>(store: &S, object: &Object) -> Result<(), String> {
    match get_checked(store, &object.address()).await? {
        Some(found) if found.data() == object.data() => {}
        Some(_) => return Err(format!("get({}) returned other bytes", object.address())),
        None => {
            return Err(format!(
                "get({}) found nothing after a put",
                object.address()
            ))
        }
    }
    let address = object.address();
    match store.contains(&address).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!("contains({address}) is false after a put")),
        Err(e) => Err(format!("contains({address}) failed: {e}")),
    }
}

/// `remove(address)`, which must answer `expected` (whether it was present).
async fn expect_removed<S: Store + ?Sized>(
    store: &S,
    address: &Address,
    expected: bool,
) -> Result<(), String> {
    match store.remove(address).await {
        Ok(removed) if removed == expected => Ok(()),
        Ok(removed) => Err(format!(
            "remove({address}) returned {removed}, expected {expected}"
        )),
        Err(e) => Err(format!("remove({address}) failed: {e}")),
    }
}

/// Checks that nothing is stored at `address`.
async fn expect_absent<S: Store + ?Sized>(store: &S, address: &Address) -> Result<(), String> {
    if get_checked(store, address).await?.is_some() {
        return Err(format!("get({address}) found an object that is not stored"));
    }
    match store.contains(address).await {
        Ok(false) => Ok(()),
        Ok(true) => Err(format!("contains({address}) is true for an absent object")),
        Err(e) => Err(format!("contains({address}) failed: {e}")),
    }
}

impl<S: Store + ?Sized> Suite<'_, S> {
    async fn put(&mut self, object: &Object) -> Result<(), String> {
        self.store
            .put(object.clone())
            .await
            .map_err(|e| format!("put({}) failed: {e}", object.address()))?;
        self.model.insert(object.address());
        Ok(())
    }

    async fn put_batch_of(&mut self, objects: &[Object]) -> Result<(), String> {
        self.store
            .put_batch(objects.to_vec())
            .await
            .map_err(|e| format!("put_batch of {} objects failed: {e}", objects.len()))?;
        self.model.extend(objects.iter().map(Object::address));
        Ok(())
    }

    async fn scan(&self, after: Option<Address>, limit: usize) -> Result<Vec<Address>, String> {
        let found = self
            .store
            .scan(after, limit)
            .await
            .map_err(|e| format!("scan(after {after:?}, limit {limit}) failed: {e}"))?;
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let expected: Vec<Address> = self
            .model
            .range((lower, Bound::Unbounded))
            .take(limit)
            .copied()
            .collect();
        if found != expected {
            return Err(format!(
                "scan(after {after:?}, limit {limit}) returned {} addresses, expected the {} smallest stored ones after `after`, in order",
                found.len(),
                expected.len()
            ));
        }
        Ok(found)
    }

    /// Checks that a full scan lists exactly the objects stored; `when`
    /// starts the error.
    async fn expect_all_listed(&self, when: &str) -> Result<(), String> {
        let listed = self.scan_all(usize::MAX).await?.len();
        if listed != self.model.len() {
            return Err(format!(
                "{when}, scan lists {listed} objects, {} are stored",
                self.model.len()
            ));
        }
        Ok(())
    }

    /// Pages through the whole store `page` addresses at a time.
    async fn scan_all(&self, page: usize) -> Result<Vec<Address>, String> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let found = self.scan(after, page).await?;
            match found.last() {
                Some(last) => after = Some(*last),
                None => return Ok(all),
            }
            all.extend(found);
        }
    }

    async fn starts_empty(&self) -> Result<(), String> {
        match self.store.scan(None, 1).await {
            Ok(found) if found.is_empty() => Ok(()),
            Ok(_) => Err("the suite needs an empty store, and scan found objects".into()),
            Err(e) => Err(format!("scan of the empty store failed: {e}")),
        }
    }

    async fn round_trip(&mut self) -> Result<(), String> {
        for len in [1, 2, 31, 32, 33, 1000, 1024, 4097, 65_536] {
            let object = self.rng.object(len);
            self.put(&object).await?;
            expect_stored(self.store, &object).await?;
        }
        Ok(())
    }

    async fn absent(&mut self) -> Result<(), String> {
        let never = [
            Address::of(b"hologram-cam conformance: never stored"),
            Address::from_bytes([0; 32]),
            Address::from_bytes([0xff; 32]),
        ];
        for address in never {
            expect_absent(self.store, &address).await?;
            expect_removed(self.store, &address, false).await?;
        }
        Ok(())
    }

    async fn idempotent_put(&mut self) -> Result<(), String> {
        let object = self.rng.object(700);
        for _ in 0..3 {
            self.put(&object).await?;
        }
        self.put_batch_of(&[object.clone(), object.clone()]).await?;
        expect_stored(self.store, &object).await?;
        let all = self.scan_all(usize::MAX).await?;
        if all.iter().filter(|a| **a == object.address()).count() != 1 {
            return Err("an object put five times is not listed exactly once".into());
        }
        Ok(())
    }

    async fn remove(&mut self) -> Result<(), String> {
        let object = self.rng.object(300);
        let address = object.address();
        self.put(&object).await?;
        expect_stored(self.store, &object).await?;
        for expected in [true, false] {
            expect_removed(self.store, &address, expected).await?;
            self.model.remove(&address);
        }
        expect_absent(self.store, &address).await?;
        self.scan_all(usize::MAX).await?;
        self.put(&object).await?;
        expect_stored(self.store, &object).await
    }

    async fn put_batch(&mut self) -> Result<(), String> {
        let mut batch: Vec<Object> = (0..300)
            .map(|_| {
                let len = self.rng.below(2048);
                self.rng.object(len)
            })
            .collect();
        // A duplicate inside the batch and an object stored already.
        batch.extend(batch.first().cloned());
        let stored = self.rng.object(100);
        self.put(&stored).await?;
        batch.push(stored);
        self.put_batch_of(&batch).await?;
        for object in &batch {
            expect_stored(self.store, object).await?;
        }
        self.put_batch_of(&[]).await?;
        self.scan_all(usize::MAX).await.map(drop)
    }

    async fn empty_object(&mut self) -> Result<(), String> {
        let empty = Object::new(Vec::new());
        if empty.address() != Address::of(b"") {
            return Err("the empty object's address is not the hash of no bytes".into());
        }
        self.put(&empty).await?;
        expect_stored(self.store, &empty).await
    }

    async fn large_object(&mut self) -> Result<(), String> {
        let large = self.rng.object(1 << 20);
        self.put(&large).await?;
        expect_stored(self.store, &large).await
    }

    async fn scan_paging(&mut self) -> Result<(), String> {
        for page in [1, 2, 7, 64, usize::MAX] {
            let all = self.scan_all(page).await?;
            if all.len() != self.model.len() {
                return Err(format!(
                    "paging by {page} listed {} of {} objects",
                    all.len(),
                    self.model.len()
                ));
            }
        }
        if !self.scan(None, 0).await?.is_empty() {
            return Err("scan with limit 0 returned addresses".into());
        }
        // From stored addresses, from addresses between them and from the ends.
        let stored: Vec<Address> = self.model.iter().copied().step_by(37).collect();
        let mut afters: Vec<Address> = stored.clone();
        afters.extend((0..20).map(|_| self.rng.object(8).address()));
        afters.push(Address::from_bytes([0; 32]));
        afters.push(Address::from_bytes([0xff; 32]));
        for after in afters {
            for limit in [1, 3, 50] {
                self.scan(Some(after), limit).await?;
            }
        }
        Ok(())
    }

    async fn integrity(&self) -> Result<(), String> {
        let mut all = self.scan_all(usize::MAX).await?;
        for address in &all {
            if get_checked(self.store, address).await?.is_none() {
                return Err(format!("scan listed {address} but get found nothing"));
            }
        }
        // Nothing rotted, so a scrub's check of every object (and of an
        // absent one) finds nothing.
        all.push(Address::of(b"hologram conformance: never stored"));
        let corrupt = self
            .store
            .corrupt_among(&all)
            .await
            .map_err(|e| e.to_string())?;
        if !corrupt.is_empty() {
            return Err(format!(
                "corrupt_among reported {} sound objects",
                corrupt.len()
            ));
        }
        Ok(())
    }
}
