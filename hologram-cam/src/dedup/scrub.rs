//! Scrubbing a holder's objects ([`DedupHandler::scrub`]) and dropping a
//! copy that rotted, so that the one repair path (a `Put` from a read's
//! repair, [`DeduplicationNetwork::repair`](crate::DeduplicationNetwork::repair)
//! or a later [`get`](crate::DeduplicationNetwork::get)) restores it.

use super::holder::DedupHandler;
use super::references::ReferenceStore;
use crate::{CamError, Name, Object, Store};
use hologram_lattice::telemetry::LogLimit;
use hologram_lattice::Address;

/// The name under which a holder keeps its scrub's cursor (in its store's
/// named key space).
pub const SCRUB_CURSOR: &[u8] = b"hologram dedup scrub cursor";

/// Logs of rotten copies: at most this many a second per process.
static CORRUPT_LOG: LogLimit = LogLimit::new(10, 1_000);

/// What one step of a holder's scrub found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScrubStep {
    /// Objects read back (and so re-hashed by a store that checks its
    /// medium, as the [`Store`] contract asks).
    pub checked: usize,
    /// Objects whose copy did not verify. Each was dropped (its references
    /// kept) and waits for a repair:
    /// [`DeduplicationNetwork::repair`](crate::DeduplicationNetwork::repair)
    /// of the address puts it back from a good replica.
    pub corrupt: Vec<Address>,
    /// Whether this step reached the end of the store: the next one starts
    /// a new pass from the first address.
    pub finished_pass: bool,
}

impl<S: Store, R: ReferenceStore> DedupHandler<S, R> {
    /// Scrubs the next `max` objects (at least one) after the cursor the
    /// last step left in the store, so a scrub survives restarts and its
    /// rate is the caller's: one step per tick of whatever clock it runs on.
    /// A rotten cursor starts the pass again.
    pub async fn scrub(&self, max: usize) -> Result<ScrubStep, CamError> {
        let name = Name::new(SCRUB_CURSOR)?;
        let after = match self.store.get_named(&name).await {
            Ok(Some(cursor)) => <[u8; 32]>::try_from(cursor.data())
                .ok()
                .map(Address::from_bytes),
            Ok(None) | Err(CamError::Corrupt(_)) => None,
            Err(e) => return Err(e),
        };
        let max = max.max(1);
        let page = self.store.scan(after, max).await?;
        let mut step = ScrubStep {
            checked: page.len(),
            finished_pass: page.len() < max,
            ..ScrubStep::default()
        };
        for address in self.store.corrupt_among(&page).await? {
            if self.drop_corrupt(address).await? {
                step.corrupt.push(address);
            }
        }
        ::metrics::counter!("hologram_dedup_scrubbed_total").increment(page.len() as u64);
        let cursor = match step.finished_pass {
            true => None,
            false => page.last().map(|a| Object::new(a.as_bytes().to_vec())),
        };
        self.store.set_named(vec![(name, cursor)]).await?;
        Ok(step)
    }

    /// Drops this holder's copy of `address` if it (still) does not
    /// verify, keeping its references; returns whether it did.
    pub(super) async fn drop_corrupt(&self, address: Address) -> Result<bool, CamError> {
        let _guard = self.locks.lock(address).await;
        match self.store.get(&address).await {
            Err(CamError::Corrupt(_)) => {}
            // Repaired meanwhile, or gone.
            Ok(_) => return Ok(false),
            Err(e) => return Err(e),
        }
        self.store.remove(&address).await?;
        ::metrics::counter!("hologram_dedup_corrupt_total").increment(1);
        if let Some(suppressed) = CORRUPT_LOG.allow() {
            tracing::warn!(%address, suppressed, "a held object rotted: dropped, to be repaired from a replica");
        }
        Ok(true)
    }
}
