//! Anti-entropy between ring neighbours: a holder compares the addresses it
//! holds with a neighbour's, range by range of the address space, and
//! fetches what it lacks, with the references, so that the replication
//! factor comes back after a holder is lost (or a copy dropped) without
//! anyone putting again.
//!
//! The exchange, pulled by the holder that may lack objects (each holder
//! pulls from each neighbour, so a difference is settled by whichever side
//! lacks):
//!
//! 1. `Digests` of up to [`MAX_RANGES`] ranges ([`AddressPrefix`]): per
//!    range, the neighbour's [`RangeDigest`] of the addresses it holds there
//!    that both own (on the ring both hold), each with its reference set's
//!    tag ([`HeldAddress`]). Equal digests end the range; a
//!    range holding more than [`RANGE_ADDRESSES`] is split in 16 and asked
//!    again, so the comparison is a Merkle descent that stops where the
//!    sets agree.
//! 2. `List` of each range that differs: the neighbour's addresses there
//!    with their tags (at most [`RANGE_ADDRESSES`], in order, inside the
//!    range, else the answer is refused whole).
//! 3. `Fetch` of those this holder owns and lacks, and of those both hold
//!    whose reference sets differ (their sets follow the objects: the
//!    neighbour's is merged into this holder's), up to [`MAX_FETCH`] a
//!    request and one message of bytes an answer: each object is verified
//!    against its address before it is stored (bad bytes are refused and
//!    counted), and adopted with the neighbour's reference set as a
//!    hand-off's `Adopt` is (merged; unknown if the neighbour has no
//!    record, so never freed).
//!
//! Every answer is bounded (ranges per request, addresses read per range,
//! objects and bytes per answer) and a pass compares at most
//! [`PASS_RANGES`] ranges, however a neighbour answers. A neighbour's
//! answers are trusted for no more than they prove: an object only for
//! bytes that hash to its address, a digest or a list only to choose what
//! to ask for. Reference sets are taken as hand-off takes them (a ring
//! member's word), and covered by a checksum against damage on the way.
//!
//! Reference sets converge: merging is a union of live references less
//! every release either side saw, the same whichever side merges first, so
//! after each neighbour pulled from the other their sets (and so their
//! digests) are equal. A holder with no record of an object's references
//! (tag [`UNKNOWN_REFERENCES`]) keeps it so, never taking a neighbour's set
//! for it, and a neighbour that fetches from it takes the unknown in turn:
//! the object is never freed (a leak, never a loss). A neighbour that
//! claims other tags than it holds only makes this holder fetch objects it
//! has (bounded as every fetch; the neighbour sends the bytes) and merge
//! the sets it is sent, which it takes as a ring member's word, as above.
//!
//! What it does not do: fetch a set without its object (an object whose
//! set differs travels again with it: bounded as every fetch, but bytes
//! spent), and tell a freed object
//! from a lost copy: an object freed while one owner missed the `Free`
//! comes back to the others with that owner's set (counting no live
//! reference, so a later `Free` removes it): a leak, never a loss.

use super::holder::{failed, DedupHandler};
use super::ranges::{
    AddressPrefix, HeldAddress, RangeDigest, MAX_FETCH, MAX_RANGES, RANGE_ADDRESSES,
    UNKNOWN_REFERENCES,
};
use super::references::ReferenceStore;
use super::wire::{fetched_check, DedupMessage, FetchedItem, Request, MAX_MESSAGE_BYTES};
use crate::{CamError, HashRing, Store};
use hologram_lattice::transport::{HandlerError, Transport};
use hologram_lattice::{Address, PeerId};
use std::sync::atomic::Ordering;
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

/// The most ranges one [`DedupHandler::anti_entropy`] pass compares: a
/// neighbour that answers every range "too many" cannot make a pass
/// descend forever. Enough for a holder of hundreds of millions of objects.
pub const PASS_RANGES: usize = 1 << 20;

/// What anti-entropy with one or more neighbours did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AntiEntropy {
    /// Ranges compared.
    pub compared: usize,
    /// Ranges whose digests differed (and were listed).
    pub differing: usize,
    /// Objects fetched and adopted.
    pub fetched: usize,
    /// Objects both held whose reference sets differed: fetched again and
    /// the neighbour's set merged into this holder's.
    pub merged: usize,
    /// Objects a neighbour listed but no longer had a good copy of.
    pub unavailable: usize,
    /// Objects a neighbour sent whose bytes did not match their address:
    /// refused, nothing stored.
    pub refused: usize,
    /// Requests that failed, timed out or were answered out of bounds
    /// (the answer was refused whole), and objects this holder failed to
    /// store: the next pass tries again.
    pub failed: usize,
    /// Whether a pass stopped at [`PASS_RANGES`].
    pub cut_short: bool,
}

impl AntiEntropy {
    pub(super) fn absorb(&mut self, other: AntiEntropy) {
        self.compared += other.compared;
        self.differing += other.differing;
        self.fetched += other.fetched;
        self.merged += other.merged;
        self.unavailable += other.unavailable;
        self.refused += other.refused;
        self.failed += other.failed;
        self.cut_short |= other.cut_short;
    }
}

/// The encoded size of a `Fetched` answer's fixed part, at most.
const FETCHED_HEADER: usize = 32;

/// The encoded size of one item of a `Fetched` answer, at most, but for its
/// references (each at most [`REFERENCE_BYTES`]).
const ITEM_BYTES: usize = 24;

/// One reference of a `Fetched` item, encoded, at most: client 32, op as
/// a varint of at most 10.
const REFERENCE_BYTES: usize = 42;

impl<S: Store, R: ReferenceStore> DedupHandler<S, R> {
    /// This holder's id, ring and replication factor, if it has a ring.
    fn placement(&self) -> Result<(PeerId, &RwLock<HashRing>, usize), CamError> {
        self.placement
            .as_ref()
            .map(|(me, ring, n)| (*me, &**ring, *n))
            .ok_or_else(|| CamError::Storage("a holder without a ring: no anti-entropy".into()))
    }

    /// The addresses this holder holds in `range` that it and `peer` both
    /// own, in order, with their reference sets' tags; `None` when the range
    /// holds more than [`RANGE_ADDRESSES`] addresses.
    async fn shared_in(
        &self,
        range: AddressPrefix,
        peer: PeerId,
    ) -> Result<Option<Vec<HeldAddress>>, CamError> {
        let (me, ring, n) = self.placement()?;
        let page = self.store.scan(range.before(), RANGE_ADDRESSES + 1).await?;
        let mut inside: Vec<Address> = page.into_iter().take_while(|a| range.contains(a)).collect();
        if inside.len() > RANGE_ADDRESSES {
            return Ok(None);
        }
        {
            let ring = ring.read().unwrap_or_else(PoisonError::into_inner);
            inside.retain(|a| {
                let owners = ring.owners(a, n);
                owners.contains(&me) && owners.contains(&peer)
            });
        }
        let mut held = Vec::with_capacity(inside.len());
        for address in inside {
            // Under the address's lock: a set that rotted is forgotten.
            let references = {
                let _guard = self.locks.lock(address).await;
                self.load_references(&address).await?
            };
            let references = references.map_or(UNKNOWN_REFERENCES, |set| set.tag());
            held.push(HeldAddress {
                address,
                references,
            });
        }
        Ok(Some(held))
    }

    /// Answers a neighbour's `Digests`.
    pub(super) async fn answer_digests(
        &self,
        from: PeerId,
        ranges: Vec<AddressPrefix>,
    ) -> Result<DedupMessage, HandlerError> {
        self.placement().map_err(refused)?;
        if ranges.len() > MAX_RANGES {
            return Err(HandlerError::Refused(format!(
                "{} ranges in one request (at most {MAX_RANGES})",
                ranges.len()
            )));
        }
        let mut digests = Vec::with_capacity(ranges.len());
        for range in ranges {
            digests.push(match self.shared_in(range, from).await.map_err(failed)? {
                Some(addresses) => RangeDigest::of(&addresses),
                None => RangeDigest::TooMany,
            });
        }
        Ok(DedupMessage::RangeDigests(digests))
    }

    /// Answers a neighbour's `List`.
    pub(super) async fn answer_list(
        &self,
        from: PeerId,
        range: AddressPrefix,
    ) -> Result<DedupMessage, HandlerError> {
        self.placement().map_err(refused)?;
        match self.shared_in(range, from).await.map_err(failed)? {
            Some(addresses) => Ok(DedupMessage::Listed(addresses)),
            None => Err(HandlerError::Refused(format!(
                "the range holds more than {RANGE_ADDRESSES} addresses"
            ))),
        }
    }

    /// Answers a `Fetch`: good copies with their references, as many as
    /// fit in one message; a rotten copy is dropped (to be repaired) and
    /// answered `None`.
    pub(super) async fn answer_fetch(
        &self,
        addresses: Vec<Address>,
    ) -> Result<DedupMessage, HandlerError> {
        if addresses.len() > MAX_FETCH {
            return Err(HandlerError::Refused(format!(
                "{} objects in one fetch (at most {MAX_FETCH})",
                addresses.len()
            )));
        }
        let (mut items, mut data, mut size) = (Vec::new(), Vec::new(), FETCHED_HEADER);
        for address in addresses {
            let found = {
                let _guard = self.locks.lock(address).await;
                match self.store.get(&address).await {
                    Ok(Some(object)) => {
                        let references = self.load_references(&address).await.map_err(failed)?;
                        Some((object, references))
                    }
                    Ok(None) => None,
                    Err(CamError::Corrupt(_)) => {
                        drop(_guard);
                        self.drop_corrupt(address).await.map_err(failed)?;
                        None
                    }
                    Err(e) => return Err(failed(e)),
                }
            };
            let Some((object, mut references)) = found else {
                items.push(None);
                size += ITEM_BYTES;
                continue;
            };
            let bare = ITEM_BYTES + object.len();
            let with = bare
                + references.as_ref().map_or(0, |set| {
                    REFERENCE_BYTES * (set.live.len() + set.released.len())
                });
            if size + with > MAX_MESSAGE_BYTES {
                if !items.is_empty() || size + bare > MAX_MESSAGE_BYTES {
                    // The rest next time; an object too large to send at
                    // all is answered as no copy.
                    if items.is_empty() {
                        items.push(None);
                    }
                    break;
                }
                // Alone and still too large with its references: sent as
                // unknown references, so the asker never frees it.
                references = None;
            }
            size += if references.is_some() { with } else { bare };
            items.push(Some(FetchedItem {
                references,
                len: object.len() as u32,
            }));
            data.extend_from_slice(object.data());
        }
        Ok(DedupMessage::Fetched {
            check: fetched_check(&items),
            items,
            data: data.into(),
        })
    }

    /// One request to `peer`, its answer decoded (`None` if it failed).
    async fn ask<T: Transport + ?Sized>(
        &self,
        transport: &T,
        peer: PeerId,
        message: DedupMessage,
        timeout: Duration,
    ) -> Option<DedupMessage> {
        let request = Request {
            op: self.next_op.fetch_add(1, Ordering::Relaxed),
            message,
        }
        .encode();
        let answer = transport
            .request(peer, crate::DEDUP_PROTOCOL, request, timeout)
            .await
            .ok()?;
        DedupMessage::decode_owned(answer).ok()
    }

    /// One anti-entropy pass with every ring neighbour in turn
    /// ([`anti_entropy`](Self::anti_entropy) with each).
    pub async fn anti_entropy_round<T: Transport + ?Sized>(
        &self,
        transport: &T,
        timeout: Duration,
    ) -> Result<AntiEntropy, CamError> {
        let (me, ring, n) = self.placement()?;
        let neighbours = ring
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .neighbours(&me, n);
        let mut total = AntiEntropy::default();
        for peer in neighbours {
            total.absorb(self.anti_entropy(transport, peer, timeout).await?);
        }
        Ok(total)
    }

    /// One anti-entropy pass with `peer` (see the module docs): compares the
    /// addresses both own, range by range, and fetches, verifies and adopts
    /// those this holder lacks. Needs a ring ([`with_ring`](Self::with_ring));
    /// errors only for this holder's own store failing to read.
    pub async fn anti_entropy<T: Transport + ?Sized>(
        &self,
        transport: &T,
        peer: PeerId,
        timeout: Duration,
    ) -> Result<AntiEntropy, CamError> {
        self.placement()?;
        let mut report = AntiEntropy::default();
        // Ranges still to compare, the next on top (in address order).
        let mut work = vec![AddressPrefix::ALL];
        while !work.is_empty() {
            if report.compared >= PASS_RANGES {
                report.cut_short = true;
                break;
            }
            let batch = work.split_off(work.len().saturating_sub(MAX_RANGES));
            let answer = self
                .ask(
                    transport,
                    peer,
                    DedupMessage::Digests(batch.clone()),
                    timeout,
                )
                .await;
            let theirs = match answer {
                Some(DedupMessage::RangeDigests(theirs)) if theirs.len() == batch.len() => theirs,
                _ => {
                    report.failed += 1;
                    continue;
                }
            };
            // The batch was taken off the top: compare it last-first, so
            // that the children pushed keep the stack in address order.
            for (range, theirs) in batch.into_iter().zip(theirs).rev() {
                report.compared += 1;
                let mine = self.shared_in(range, peer).await?;
                match (theirs, mine) {
                    (RangeDigest::Of { count: 0, .. }, _) => {}
                    (RangeDigest::Of { .. }, Some(mine)) if RangeDigest::of(&mine) == theirs => {}
                    (RangeDigest::Of { .. }, Some(mine)) => {
                        report.differing += 1;
                        self.pull_range(transport, peer, range, &mine, timeout, &mut report)
                            .await;
                    }
                    // Too many addresses on one side or the other: split.
                    _ => work.extend(range.children().into_iter().rev()),
                }
            }
        }
        if report.fetched > 0 || report.merged > 0 || report.refused > 0 {
            tracing::info!(
                %peer,
                fetched = report.fetched,
                merged = report.merged,
                refused = report.refused,
                unavailable = report.unavailable,
                failed = report.failed,
                "anti-entropy pass"
            );
        }
        Ok(report)
    }

    /// Lists `range` at `peer` and fetches what this holder (holding `mine`
    /// there) owns and lacks, and what both hold with other references.
    async fn pull_range<T: Transport + ?Sized>(
        &self,
        transport: &T,
        peer: PeerId,
        range: AddressPrefix,
        mine: &[HeldAddress],
        timeout: Duration,
        report: &mut AntiEntropy,
    ) {
        let answer = self
            .ask(transport, peer, DedupMessage::List(range), timeout)
            .await;
        let listed = match answer {
            Some(DedupMessage::Listed(listed))
                if listed.len() <= RANGE_ADDRESSES
                    && listed.windows(2).all(|w| w[0].address < w[1].address)
                    && listed.iter().all(|h| range.contains(&h.address)) =>
            {
                listed
            }
            _ => {
                report.failed += 1;
                return;
            }
        };
        let Ok((me, ring, n)) = self.placement() else {
            return;
        };
        let (mut missing, mut other_sets) = (Vec::new(), Vec::new());
        {
            let ring = ring.read().unwrap_or_else(PoisonError::into_inner);
            for theirs in listed {
                match mine.binary_search_by(|m| m.address.cmp(&theirs.address)) {
                    Err(_) if ring.owners(&theirs.address, n).contains(&me) => {
                        missing.push(theirs.address)
                    }
                    Ok(at)
                        if mine[at].references != theirs.references
                            && mine[at].references != UNKNOWN_REFERENCES =>
                    {
                        other_sets.push(theirs.address)
                    }
                    _ => {}
                }
            }
        }
        for chunk in missing.chunks(MAX_FETCH) {
            self.fetch(transport, peer, chunk, timeout, false, report)
                .await;
        }
        for chunk in other_sets.chunks(MAX_FETCH) {
            self.fetch(transport, peer, chunk, timeout, true, report)
                .await;
        }
    }

    /// Fetches `addresses` from `peer` (over as many answers as it takes),
    /// verifying and adopting each object; `merging` when this holder holds
    /// them already, for their reference sets.
    async fn fetch<T: Transport + ?Sized>(
        &self,
        transport: &T,
        peer: PeerId,
        mut addresses: &[Address],
        timeout: Duration,
        merging: bool,
        report: &mut AntiEntropy,
    ) {
        while !addresses.is_empty() {
            let answer = self
                .ask(
                    transport,
                    peer,
                    DedupMessage::Fetch(addresses.to_vec()),
                    timeout,
                )
                .await;
            let (items, data) = match answer {
                Some(DedupMessage::Fetched { items, check, data })
                    if !items.is_empty()
                        && items.len() <= addresses.len()
                        && fetched_check(&items) == check
                        && items
                            .iter()
                            .flatten()
                            .map(|i| i.len as usize)
                            .sum::<usize>()
                            == data.len() =>
                {
                    (items, data)
                }
                _ => {
                    report.failed += 1;
                    return;
                }
            };
            let mut at = 0;
            for (&address, item) in addresses.iter().zip(&items) {
                let Some(item) = item else {
                    report.unavailable += 1;
                    continue;
                };
                let bytes = data.slice(at..at + item.len as usize);
                at += item.len as usize;
                let _guard = self.locks.lock(address).await;
                match self.adopt(address, item.references.clone(), bytes).await {
                    Ok(_) if merging => {
                        report.merged += 1;
                        ::metrics::counter!("hologram_dedup_anti_entropy_merged_total")
                            .increment(1);
                    }
                    Ok(_) => {
                        report.fetched += 1;
                        ::metrics::counter!("hologram_dedup_anti_entropy_fetched_total")
                            .increment(1);
                    }
                    Err(HandlerError::Refused(_)) => {
                        report.refused += 1;
                        ::metrics::counter!("hologram_dedup_anti_entropy_refused_total")
                            .increment(1);
                    }
                    Err(_) => report.failed += 1,
                }
            }
            addresses = &addresses[items.len()..];
        }
    }
}

/// A holder without a ring refuses anti-entropy requests.
fn refused(e: CamError) -> HandlerError {
    HandlerError::Refused(e.to_string())
}
