//! Storing many objects at once: one `PutMany` per owner instead of one
//! `Put` per object and owner.

use super::network::{DeduplicationNetwork, StoreResult};
use super::wire::{BatchedPut, DedupMessage, Kept, Reference, MAX_BATCH};
use crate::wire::MAX_OBJECT_BYTES;
use futures::future::join_all;
use hologram_lattice::transport::Transport;
use hologram_lattice::{Address, PeerId};
use std::collections::BTreeMap;

/// One object of a [`DeduplicationNetwork::store_many`].
struct Pending {
    address: Address,
    data: Vec<u8>,
    owners: Vec<PeerId>,
    reference: Reference,
    op: u64,
    /// Owners that acknowledged, and those that had the object before.
    acks: usize,
    had: usize,
}

impl DeduplicationNetwork {
    /// Stores many objects, each as [`store_unique`](Self::store_unique)
    /// would (same quorum, same results, in the same order), in fewer
    /// requests: each owner gets its objects in `PutMany` requests of up to
    /// [`MAX_BATCH`] objects and 1 MiB, and applies each object on its own.
    /// Objects over the direct-put size go through `store_unique`.
    pub async fn store_many(&self, objects: Vec<Vec<u8>>) -> Vec<StoreResult> {
        let mut pending = Vec::new();
        let mut large = Vec::new();
        for (i, data) in objects.into_iter().enumerate() {
            if data.len() > self.direct_put_bytes {
                large.push((i, data));
                continue;
            }
            let address = Address::of(&data);
            pending.push((
                i,
                Pending {
                    address,
                    owners: self.owners(&address),
                    data,
                    reference: Reference {
                        client: self.transport.local_id(),
                        op: self.next_op(),
                    },
                    op: self.next_op(),
                    acks: 0,
                    had: 0,
                },
            ));
        }
        // Per owner, the positions (in `pending`) of its objects, in batches.
        let mut per_owner: BTreeMap<PeerId, Vec<usize>> = BTreeMap::new();
        for (k, (_, p)) in pending.iter().enumerate() {
            for owner in &p.owners {
                per_owner.entry(*owner).or_default().push(k);
            }
        }
        let mut batches = Vec::new();
        for (owner, positions) in per_owner {
            let mut batch = Vec::new();
            let mut bytes = 0;
            for k in positions {
                let len = pending[k].1.data.len();
                if batch.len() == MAX_BATCH || (bytes + len > MAX_OBJECT_BYTES && !batch.is_empty())
                {
                    batches.push((owner, std::mem::take(&mut batch)));
                    bytes = 0;
                }
                batch.push(k);
                bytes += len;
            }
            if !batch.is_empty() {
                batches.push((owner, batch));
            }
        }
        let answers = join_all(batches.iter().map(|(owner, batch)| {
            let puts: Vec<BatchedPut> = batch
                .iter()
                .map(|&k| {
                    let p = &pending[k].1;
                    BatchedPut {
                        op: p.op,
                        address: p.address,
                        reference: Some(p.reference),
                        len: p.data.len() as u32,
                    }
                })
                .collect();
            let size = batch.iter().map(|&k| pending[k].1.data.len()).sum();
            let mut data = Vec::with_capacity(size);
            for &k in batch {
                data.extend_from_slice(&pending[k].1.data);
            }
            let message = DedupMessage::PutMany {
                puts,
                data: data.into(),
            };
            async move { self.ask_all(&[*owner], message).await.pop().flatten() }
        }))
        .await;
        for ((_, batch), answer) in batches.iter().zip(answers) {
            let Some(DedupMessage::HeldMany(kept)) = answer else {
                continue;
            };
            if kept.len() != batch.len() {
                continue; // A malformed answer acknowledges nothing.
            }
            for (&k, kept) in batch.iter().zip(kept) {
                if let Some(Kept { before, .. }) = kept {
                    pending[k].1.acks += 1;
                    pending[k].1.had += usize::from(before);
                }
            }
        }
        let settled = join_all(pending.into_iter().map(|(i, p)| async move {
            let result = self
                .settle(&p.owners, p.address, p.reference, p.acks, p.had)
                .await;
            (i, result)
        }))
        .await;
        let mut results = settled;
        for (i, data) in large {
            results.push((i, self.store_unique(data).await));
        }
        // Every position is in `pending` or `large`, once.
        results.sort_unstable_by_key(|(i, _)| *i);
        results.into_iter().map(|(_, result)| result).collect()
    }
}
