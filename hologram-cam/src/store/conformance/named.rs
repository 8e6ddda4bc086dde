//! The "named key space" check of the conformance suite.

use super::{expect_absent, expect_removed, Suite, NAMES};
use crate::store::{Name, Store};
use crate::Object;
use hologram_lattice::Address;

/// Checks that `name` holds `expected` (intact) or nothing.
async fn expect_named<S: Store + ?Sized>(
    store: &S,
    name: &Name,
    expected: Option<&Object>,
) -> Result<(), String> {
    let shown = String::from_utf8_lossy(name.as_bytes()).into_owned();
    let found = store
        .get_named(name)
        .await
        .map_err(|e| format!("get_named({shown}) failed: {e}"))?;
    match (found, expected) {
        (None, None) => Ok(()),
        (Some(found), Some(expected)) => {
            if found.address() != expected.address() || found.data() != expected.data() {
                return Err(format!("get_named({shown}) returned another object"));
            }
            if Address::of(found.data()) != found.address() {
                return Err(format!(
                    "get_named({shown}) returned bytes that do not hash to their address"
                ));
            }
            Ok(())
        }
        (Some(_), None) => Err(format!("get_named({shown}) found an object, expected none")),
        (None, Some(_)) => Err(format!("get_named({shown}) found nothing after it was set")),
    }
}

impl<S: Store + ?Sized> Suite<'_, S> {
    /// The named key space: round trip, replacement, clearing, batches
    /// (the last value of a name given twice wins), [`NAMES`] names at
    /// once, and separation from the objects both ways.
    pub(super) async fn named(&mut self) -> Result<(), String> {
        let name = |i: usize| {
            Name::new(format!("hologram-cam conformance {i}"))
                .map_err(|e| format!("a test name: {e}"))
        };
        let first = name(0)?;
        expect_named(self.store, &first, None).await?;
        let a = self.rng.object(300);
        self.set_named(vec![(first.clone(), Some(a.clone()))])
            .await?;
        expect_named(self.store, &first, Some(&a)).await?;
        // Not in the object space: neither found nor listed.
        expect_absent(self.store, &a.address()).await?;
        self.scan_all(usize::MAX).await?;
        // Replaced; then the same bytes put and removed as an object leave
        // the name as it is.
        let b = self.rng.object(40);
        self.set_named(vec![(first.clone(), Some(b.clone()))])
            .await?;
        expect_named(self.store, &first, Some(&b)).await?;
        self.put(&b).await?;
        expect_removed(self.store, &b.address(), true).await?;
        self.model.remove(&b.address());
        expect_named(self.store, &first, Some(&b))
            .await
            .map_err(|e| {
                format!("removing an object with a named object's bytes changed the name: {e}")
            })?;
        // Many names in batches; one given twice (the last wins); the first
        // cleared in the same batch; a large object and the empty one.
        let objects: Vec<Object> = (0..NAMES)
            .map(|i| match i {
                1 => self.rng.object(1 << 20),
                2 => Object::new(Vec::new()),
                _ => {
                    let len = self.rng.below(200);
                    self.rng.object(len)
                }
            })
            .collect();
        let mut changes = vec![(first.clone(), None)];
        for (i, object) in objects.iter().enumerate() {
            changes.push((name(i + 1)?, Some(object.clone())));
        }
        changes.insert(1, (name(5)?, Some(self.rng.object(10))));
        for batch in changes.chunks(NAMES / 4) {
            self.set_named(batch.to_vec()).await?;
        }
        expect_named(self.store, &first, None)
            .await
            .map_err(|e| format!("a cleared name: {e}"))?;
        for (i, object) in objects.iter().enumerate() {
            expect_named(self.store, &name(i + 1)?, Some(object)).await?;
        }
        // Clearing an absent name succeeds; an empty batch too.
        self.set_named(vec![(first.clone(), None)]).await?;
        self.set_named(Vec::new()).await?;
        self.expect_all_listed("with names set").await
    }

    async fn set_named(&self, changes: Vec<(Name, Option<Object>)>) -> Result<(), String> {
        let n = changes.len();
        self.store
            .set_named(changes)
            .await
            .map_err(|e| format!("set_named of {n} changes failed: {e}"))
    }
}
