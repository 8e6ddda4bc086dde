//! The checks of the conformance suite about scale and threads: "many
//! objects" and "concurrent".

use super::{
    expect_absent, expect_removed, expect_stored, get_checked, Suite, MANY, PER_THREAD, THREADS,
};
use crate::store::Store;
use crate::Object;
use futures::executor::block_on;
use hologram_lattice::Address;
use std::sync::Barrier;

/// Whether the worker of [`Suite::concurrent`] removes its `i`-th object
/// again after putting it.
fn removed_by_worker(i: usize) -> bool {
    i % 20 == 7
}

/// One thread of [`Suite::concurrent`]: puts the first half (even threads)
/// or eighth (odd ones) of its objects one by one, reading an object stored
/// before after each, and the rest in batches of 25; removes some again;
/// then checks its own.
async fn concurrent_worker<S: Store + ?Sized>(
    store: &S,
    t: usize,
    objects: &[Object],
    existing: &[Address],
) -> Result<(), String> {
    let (singles, batched) =
        objects.split_at(objects.len() / if t.is_multiple_of(2) { 2 } else { 8 });
    for (i, object) in singles.iter().enumerate() {
        store
            .put(object.clone())
            .await
            .map_err(|e| format!("thread {t}: put failed: {e}"))?;
        if let Some(address) = existing.get((t * PER_THREAD + i) % existing.len().max(1)) {
            if get_checked(store, address).await?.is_none() {
                return Err(format!("thread {t}: get({address}) lost a stored object"));
            }
        }
    }
    for batch in batched.chunks(25) {
        store
            .put_batch(batch.to_vec())
            .await
            .map_err(|e| format!("thread {t}: put_batch failed: {e}"))?;
    }
    for (i, object) in objects.iter().enumerate() {
        if removed_by_worker(i) {
            expect_removed(store, &object.address(), true)
                .await
                .map_err(|e| format!("thread {t}, an object it put: {e}"))?;
        }
    }
    for (i, object) in objects.iter().enumerate() {
        if removed_by_worker(i) {
            expect_absent(store, &object.address()).await?;
        } else {
            expect_stored(store, object)
                .await
                .map_err(|e| format!("thread {t}: {e}"))?;
        }
    }
    Ok(())
}

impl<S: Store + ?Sized> Suite<'_, S> {
    /// Holds [`MANY`] small objects at once, put in batches and one by one,
    /// and checks every one is there and intact.
    pub(super) async fn many_objects(&mut self) -> Result<(), String> {
        let objects: Vec<Object> = (0..MANY)
            .map(|_| {
                let len = 16 + self.rng.below(64);
                self.rng.object(len)
            })
            .collect();
        let (singles, batched) = objects.split_at(MANY / 16);
        for object in singles {
            self.put(object).await?;
        }
        for batch in batched.chunks(256) {
            self.put_batch_of(batch).await?;
        }
        for object in &objects {
            expect_stored(self.store, object).await?;
        }
        self.expect_all_listed("after the puts").await
    }

    /// [`THREADS`] OS threads put, read and remove on the one store at once
    /// (each thread drives its own futures with `block_on`); then every
    /// object is checked.
    pub(super) async fn concurrent(&mut self) -> Result<(), String> {
        let existing: Vec<Address> = self.model.iter().copied().collect();
        let work: Vec<Vec<Object>> = (0..THREADS)
            .map(|_| (0..PER_THREAD).map(|_| self.rng.object(256)).collect())
            .collect();
        let store = self.store;
        let start = Barrier::new(THREADS);
        let results: Vec<Result<(), String>> = std::thread::scope(|scope| {
            let threads: Vec<_> = work
                .iter()
                .enumerate()
                .map(|(t, objects)| {
                    let (existing, start) = (&existing, &start);
                    scope.spawn(move || {
                        start.wait();
                        block_on(concurrent_worker(store, t, objects, existing))
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|thread| {
                    thread
                        .join()
                        .unwrap_or_else(|_| Err("a thread panicked".into()))
                })
                .collect()
        });
        results.into_iter().collect::<Result<(), String>>()?;
        for (t, objects) in work.iter().enumerate() {
            for (i, object) in objects.iter().enumerate() {
                if removed_by_worker(i) {
                    expect_absent(self.store, &object.address())
                        .await
                        .map_err(|e| format!("after the threads: {e}"))?;
                } else {
                    expect_stored(self.store, object).await.map_err(|e| {
                        format!("after {THREADS} threads put {PER_THREAD} objects each (thread {t}): {e}")
                    })?;
                    self.model.insert(object.address());
                }
            }
        }
        self.expect_all_listed("after the threads").await
    }
}
