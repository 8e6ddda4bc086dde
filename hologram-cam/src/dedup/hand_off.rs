//! Hand-off after the ring changed: a holder moves the objects whose owners
//! changed, with their references, to their new owners.

use super::holder::DedupHandler;
use super::references::ReferenceStore;
use super::wire::{DedupMessage, Request};
use crate::{CamError, HashRing, Store};
use hologram_lattice::transport::Transport;
use hologram_lattice::PeerId;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// What one [`DedupHandler::hand_off`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HandOff {
    /// Objects this node keeps (whether or not their owners changed).
    pub kept: usize,
    /// Copies new owners adopted.
    pub copied: usize,
    /// Objects this node no longer owns, removed after every owner adopted them.
    pub moved: usize,
    /// Objects it no longer owns but kept, because an owner did not adopt.
    pub pending: usize,
}

impl<S: Store, R: ReferenceStore> DedupHandler<S, R> {
    /// After the ring changed from `before` to `after`: pages through the
    /// store and moves only the objects whose owners changed, each to the
    /// owners that are new, with its references. The owners that leave an
    /// object's set send it (and remove their copy only once every new owner
    /// adopted it, so no acknowledged copy is lost in the move); when none
    /// leaves, the old primary sends it.
    ///
    /// Each object is moved under its lock, so references counted while it
    /// moves are not left behind.
    pub async fn hand_off<T: Transport + ?Sized>(
        &self,
        me: PeerId,
        transport: &T,
        before: &HashRing,
        after: &HashRing,
        replication: usize,
        timeout: Duration,
    ) -> Result<HandOff, CamError> {
        let mut report = HandOff::default();
        let mut cursor = None;
        loop {
            let page = self.store.scan(cursor, 256).await?;
            let Some(&last) = page.last() else { break };
            cursor = Some(last);
            for address in page {
                let (old, new) = (
                    before.owners(&address, replication),
                    after.owners(&address, replication),
                );
                let leaving = !new.contains(&me);
                let someone_leaves = old.iter().any(|o| !new.contains(o));
                let sends = leaving || (!someone_leaves && old.first() == Some(&me));
                if old == new || !sends {
                    report.kept += usize::from(!leaving);
                    continue;
                }
                let _guard = self.locks.lock(address).await;
                let Some(object) = self.store.get(&address).await? else {
                    continue;
                };
                let references = self.load_references(&address).await?;
                let adopt = Request {
                    op: self.next_op.fetch_add(1, Ordering::Relaxed),
                    message: DedupMessage::Adopt {
                        address,
                        references,
                        data: object.shared_data(),
                    },
                }
                .encode();
                let targets: Vec<PeerId> = new
                    .iter()
                    .copied()
                    .filter(|o| *o != me && !old.contains(o))
                    .collect();
                let mut adopted = 0;
                for &owner in &targets {
                    let answer = transport
                        .request(owner, crate::DEDUP_PROTOCOL, adopt.clone(), timeout)
                        .await;
                    if let Ok(Ok(DedupMessage::Refs(_))) = answer.map(|a| DedupMessage::decode(&a))
                    {
                        adopted += 1;
                        report.copied += 1;
                        ::metrics::counter!("hologram_dedup_handoffs_total").increment(1);
                    }
                }
                if !leaving {
                    report.kept += 1;
                } else if adopted == targets.len() {
                    self.store.remove(&address).await?;
                    self.references.forget(&address).await?;
                    report.moved += 1;
                } else {
                    report.pending += 1;
                }
            }
        }
        tracing::info!(
            kept = report.kept,
            copied = report.copied,
            moved = report.moved,
            pending = report.pending,
            "dedup hand-off done"
        );
        Ok(report)
    }
}
