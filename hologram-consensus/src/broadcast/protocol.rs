//! [`LatticeProtocol`]: the deterministic core of one broadcast node.

use super::delivery::Acknowledgements;
use super::id::{decode_envelope, encode_envelope, ENVELOPE_HEADER};
use super::recent::{MessageCache, SeenIds};
use super::targets::Forwarding;
use super::wire::MAX_IDS;
use super::{
    BroadcastConfig, BroadcastMessage, DeliveryCertificate, DeliveryReceipt, Directory, DropCounts,
    DropReason, MessageId,
};
use crate::ConsensusError;
use hologram_lattice::wire::Wire;
use hologram_lattice::NodeId;
use hologram_receipt::{AuthenticatedMessage, KeyPair, Receipt, MAX_HOPS};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// What the core asks its driver to do, or tells its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send `message` to `to`.
    Send {
        /// The peer.
        to: NodeId,
        /// The message.
        message: BroadcastMessage,
    },
    /// Call [`LatticeProtocol::on_repair_timer`] after `after_ms`.
    SetRepairTimer {
        /// Delay in milliseconds.
        after_ms: u64,
    },
    /// A broadcast from another node, verified, delivered for the first time.
    Deliver(Delivery),
    /// One of this node's broadcasts reached its acknowledgement threshold.
    Certified(DeliveryCertificate),
}

/// A delivered broadcast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Its id.
    pub id: MessageId,
    /// The node that broadcast it.
    pub origin: NodeId,
    /// When the origin issued it (its clock, milliseconds).
    pub issued_ms: u64,
    /// The body the origin broadcast.
    pub body: Vec<u8>,
    /// Hops in the witness chain it arrived with: the gossip round of the
    /// delivery (the origin's own sends are round 1).
    pub hops: usize,
    /// The peer it came from (the chain's last forwarder).
    pub from: NodeId,
}

/// Messages a node sent, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SentCounts {
    /// Full messages pushed (eagerly, or in answer to a pull).
    pub gossip: u64,
    /// Announcements of ids (lazy push).
    pub ihave: u64,
    /// Pulls of missing ids.
    pub iwant: u64,
    /// Delivery acknowledgements.
    pub ack: u64,
}

impl SentCounts {
    /// Messages of every kind.
    pub fn total(&self) -> u64 {
        self.gossip + self.ihave + self.iwant + self.ack
    }
}

/// What one of this node's broadcasts achieved so far, as the chapter's
/// `BroadcastResult` has it, from the delivery acknowledgements received.
#[derive(Debug, Clone, PartialEq)]
pub struct BroadcastResult {
    /// The broadcast.
    pub id: MessageId,
    /// The receipt of its payload.
    pub receipt: Receipt,
    /// The fraction of this node's page neighbours that acknowledged
    /// (1.0 when it has none).
    pub page_coverage: f64,
    /// The estimated fraction of the other members that delivered: those that
    /// acknowledged, over all other members. A lower bound: acknowledgements
    /// can be lost, and Byzantine members may deliver without saying so.
    pub network_coverage: f64,
    /// The fraction of occupied pages with a member that acknowledged (this
    /// node's page included).
    pub pages_reached: f64,
    /// Distinct members that acknowledged.
    pub acknowledged: usize,
    /// The delivery certificate, once the threshold was met.
    pub certificate: Option<DeliveryCertificate>,
}

/// One broadcast node on the lattice: the chapter's `LatticeProtocol`, as a
/// deterministic core without I/O (see the [module docs](super) for the
/// protocol).
///
/// Inputs are [`broadcast`](Self::broadcast), [`handle`](Self::handle) (a
/// message from a peer) and [`on_repair_timer`](Self::on_repair_timer), each
/// with the current time; what to do comes back as [`Output`]s. The core
/// never reads a clock or touches the network; its only randomness (whom
/// repair announcements go to) comes from a seeded generator.
#[derive(Debug, Clone)]
pub struct LatticeProtocol {
    keys: KeyPair,
    id: NodeId,
    local_page: u8,
    directory: Directory,
    config: BroadcastConfig,
    seen: SeenIds,
    cache: MessageCache,
    announce: VecDeque<(MessageId, u8)>,
    repair_armed: bool,
    pending: BTreeMap<MessageId, (Receipt, Acknowledgements)>,
    pending_order: VecDeque<MessageId>,
    drops: DropCounts,
    sent: SentCounts,
    rng: ChaCha8Rng,
    seed: u64,
}

impl LatticeProtocol {
    /// A node with these keys, accepting `directory`, its repair choices
    /// drawn from `seed` mixed with its id (nodes given the same seed still
    /// choose differently).
    pub fn new(keys: KeyPair, directory: Directory, config: BroadcastConfig, seed: u64) -> Self {
        let id = keys.node_id();
        Self {
            id,
            local_page: id.coord().page(),
            seen: SeenIds::new(config.seen_capacity, config.max_age_ms),
            cache: MessageCache::new(config.cache_capacity),
            keys,
            directory,
            config,
            announce: VecDeque::new(),
            repair_armed: false,
            pending: BTreeMap::new(),
            pending_order: VecDeque::new(),
            drops: DropCounts::default(),
            sent: SentCounts::default(),
            rng: ChaCha8Rng::from_seed(rng_seed(&id, seed)),
            seed,
        }
    }

    /// The same node after a crash: keys, directory, configuration and seed,
    /// none of the volatile state (nothing of it is durable).
    pub fn restarted(&self) -> Self {
        Self::new(
            self.keys.clone(),
            self.directory.clone(),
            self.config.clone(),
            self.seed,
        )
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// This node's page.
    pub fn local_page(&self) -> u8 {
        self.local_page
    }

    /// The membership this node accepts.
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// The membership, to shun or forgive nodes.
    pub fn directory_mut(&mut self) -> &mut Directory {
        &mut self.directory
    }

    /// The configuration.
    pub fn config(&self) -> &BroadcastConfig {
        &self.config
    }

    /// What this node dropped, by reason.
    pub fn drops(&self) -> &DropCounts {
        &self.drops
    }

    /// What this node sent, by kind.
    pub fn sent(&self) -> SentCounts {
        self.sent
    }

    /// Counts a drop that happened before the core saw the input (bytes
    /// that did not decode).
    pub(crate) fn count_drop(&mut self, reason: DropReason) {
        self.drops.add(reason);
    }

    /// Broadcasts `body` at time `now_ms`: phase 1 to the page neighbours,
    /// phase 2 to `gossip_fanout` pages. Returns the broadcast's id, under
    /// which [`result`](Self::result) reports its acknowledgements. Fails
    /// with [`ConsensusError::TooLarge`] above `max_body`.
    pub fn broadcast(
        &mut self,
        now_ms: u64,
        body: &[u8],
        out: &mut Vec<Output>,
    ) -> Result<MessageId, ConsensusError> {
        if body.len() > self.config.max_body {
            return Err(ConsensusError::TooLarge {
                what: "broadcast body",
                size: body.len(),
                max: self.config.max_body,
            });
        }
        let message = AuthenticatedMessage::new(encode_envelope(now_ms, body), &self.keys)
            .map_err(ConsensusError::BroadcastBuild)?;
        let id = MessageId::of(message.receipt(), &self.id);
        self.seen.insert(id, now_ms, now_ms);
        self.pending
            .insert(id, (*message.receipt(), Acknowledgements::new(id, self.id)));
        self.pending_order.push_back(id);
        while self.pending_order.len() > self.config.max_pending.max(1) {
            if let Some(old) = self.pending_order.pop_front() {
                self.pending.remove(&old);
            }
        }
        self.accept(now_ms, id, message, None, out);
        Ok(id)
    }

    /// Handles `message` from peer `from` at time `now_ms`.
    pub fn handle(
        &mut self,
        now_ms: u64,
        from: NodeId,
        message: BroadcastMessage,
        out: &mut Vec<Output>,
    ) {
        let checked = if !self.directory.is_member(&from) {
            Err(DropReason::UnknownPeer)
        } else if self.directory.is_shunned(&from) {
            Err(DropReason::ShunnedPeer)
        } else if message.check_decoded().is_err() {
            Err(DropReason::OverLimit)
        } else {
            match message {
                BroadcastMessage::Gossip(m) => self.on_gossip(now_ms, from, m, out),
                BroadcastMessage::IHave(ids) => {
                    self.on_ihave(from, ids, out);
                    Ok(())
                }
                BroadcastMessage::IWant(ids) => {
                    self.on_iwant(from, ids, out);
                    Ok(())
                }
                BroadcastMessage::Ack(ack) => self.on_ack(from, ack, out),
            }
        };
        if let Err(reason) = checked {
            self.drops.add(reason);
        }
    }

    /// The repair timer fired: announce recently delivered ids to
    /// `repair_fanout` random members, and re-arm while some remain to be
    /// announced.
    pub fn on_repair_timer(&mut self, out: &mut Vec<Output>) {
        self.repair_armed = false;
        let mut ids = Vec::new();
        for entry in self.announce.iter_mut().take(MAX_IDS) {
            ids.push(entry.0);
            entry.1 = entry.1.saturating_sub(1);
        }
        self.announce.retain(|&(_, left)| left > 0);
        if !ids.is_empty() {
            for peer in self.random_peers(self.config.repair_fanout) {
                self.send(out, peer, BroadcastMessage::IHave(ids.clone()));
            }
        }
        self.arm_repair(out);
    }

    /// What one of this node's broadcasts achieved so far, while it is among
    /// the last `max_pending`.
    pub fn result(&self, id: &MessageId) -> Option<BroadcastResult> {
        let (receipt, acks) = self.pending.get(id)?;
        let neighbours = self.directory.page(self.local_page).len().saturating_sub(1);
        let mut pages = BTreeSet::from([self.local_page]);
        let mut on_page = 0;
        for r in acks.receivers() {
            let page = r.coord().page();
            on_page += usize::from(page == self.local_page);
            pages.insert(page);
        }
        let fraction = |part: usize, whole: usize| {
            if whole == 0 {
                1.0
            } else {
                part as f64 / whole as f64
            }
        };
        Some(BroadcastResult {
            id: *id,
            receipt: *receipt,
            page_coverage: fraction(on_page, neighbours),
            network_coverage: fraction(acks.count(), self.directory.len().saturating_sub(1)),
            pages_reached: fraction(pages.len(), self.directory.occupied_pages()),
            acknowledged: acks.count(),
            certificate: acks.certificate().cloned(),
        })
    }

    /// Checks a pushed message and delivers it; see the module docs for the
    /// order of checks.
    fn on_gossip(
        &mut self,
        now_ms: u64,
        from: NodeId,
        m: AuthenticatedMessage,
        out: &mut Vec<Output>,
    ) -> Result<(), DropReason> {
        let origin = m.sender();
        let id = MessageId::of(m.receipt(), &origin);
        if self.seen.contains(&id) {
            return Err(DropReason::Duplicate);
        }
        if m.payload().len() > self.config.max_body.saturating_add(ENVELOPE_HEADER) {
            return Err(DropReason::Oversized);
        }
        if !self.directory.is_member(&origin) {
            return Err(DropReason::UnknownOrigin);
        }
        if self.directory.is_shunned(&origin) {
            return Err(DropReason::ShunnedOrigin);
        }
        let hops = m.witness().hops();
        if hops.iter().any(|h| !self.directory.accepts(&h.forwarder)) {
            return Err(DropReason::BadForwarder);
        }
        if m.holder() != self.id {
            return Err(DropReason::NotAddressedHere);
        }
        if hops.last().is_none_or(|h| h.forwarder != from) {
            return Err(DropReason::SenderMismatch);
        }
        let (issued_ms, _) = decode_envelope(m.payload()).ok_or(DropReason::NoEnvelope)?;
        if issued_ms > now_ms.saturating_add(self.config.max_skew_ms) {
            return Err(DropReason::FromTheFuture);
        }
        if !self.seen.is_fresh(issued_ms, now_ms) {
            return Err(DropReason::Stale);
        }
        m.verify().map_err(|e| DropReason::of_chain_error(&e))?;
        self.seen.insert(id, issued_ms, now_ms);
        let body = m
            .payload()
            .get(ENVELOPE_HEADER..)
            .unwrap_or_default()
            .to_vec();
        ::metrics::counter!("hologram_broadcast_deliveries_total").increment(1);
        out.push(Output::Deliver(Delivery {
            id,
            origin,
            issued_ms,
            body,
            hops: hops.len(),
            from,
        }));
        let ack = DeliveryReceipt::sign(&self.keys, id, origin);
        self.send(out, origin, BroadcastMessage::Ack(ack));
        self.accept(now_ms, id, m, Some(from), out);
        Ok(())
    }

    /// Keeps a message this node now holds (its own or a delivered one),
    /// forwards it, and schedules its announcement.
    fn accept(
        &mut self,
        now_ms: u64,
        id: MessageId,
        message: AuthenticatedMessage,
        from: Option<NodeId>,
        out: &mut Vec<Output>,
    ) {
        let targets = Forwarding {
            directory: &self.directory,
            config: &self.config,
            me: self.id,
            local_page: self.local_page,
            message: id,
            origin: message.sender(),
            from,
            now_ms,
        }
        .targets();
        if message.witness().len() < MAX_HOPS {
            for to in targets {
                self.push_to(out, &message, to);
            }
        }
        self.cache.insert(id, message);
        if self.config.announce_rounds > 0 {
            self.announce.push_back((id, self.config.announce_rounds));
            self.arm_repair(out);
        }
    }

    /// Announced ids this node lacks are pulled from the announcer.
    fn on_ihave(&mut self, from: NodeId, ids: Vec<MessageId>, out: &mut Vec<Output>) {
        let mut wanted: Vec<MessageId> = ids
            .into_iter()
            .filter(|id| !self.seen.contains(id))
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        if !wanted.is_empty() {
            self.send(out, from, BroadcastMessage::IWant(wanted));
        }
    }

    /// Pulled ids this node still holds are pushed to the puller.
    fn on_iwant(&mut self, from: NodeId, mut ids: Vec<MessageId>, out: &mut Vec<Output>) {
        ids.sort_unstable();
        ids.dedup();
        for id in ids {
            if let Some(message) = self.cache.get(&id).cloned() {
                if message.sender() != from {
                    self.push_to(out, &message, from);
                }
            }
        }
    }

    fn on_ack(
        &mut self,
        from: NodeId,
        ack: DeliveryReceipt,
        out: &mut Vec<Output>,
    ) -> Result<(), DropReason> {
        let threshold = self.config.ack_threshold;
        let (_, acks) = self
            .pending
            .get_mut(&ack.message)
            .ok_or(DropReason::UnexpectedAck)?;
        if let Some(cert) = acks.add(&ack, from, &self.directory, threshold)? {
            ::metrics::counter!("hologram_broadcast_certificates_total").increment(1);
            out.push(Output::Certified(cert));
        }
        Ok(())
    }

    /// Forwards `message` (held by this node) to `to`, extending its chain.
    fn push_to(&mut self, out: &mut Vec<Output>, message: &AuthenticatedMessage, to: NodeId) {
        if let Ok(forwarded) = message.forward(to, &self.keys) {
            self.send(out, to, BroadcastMessage::Gossip(forwarded));
        }
    }

    fn send(&mut self, out: &mut Vec<Output>, to: NodeId, message: BroadcastMessage) {
        let counter = match &message {
            BroadcastMessage::Gossip(_) => &mut self.sent.gossip,
            BroadcastMessage::IHave(_) => &mut self.sent.ihave,
            BroadcastMessage::IWant(_) => &mut self.sent.iwant,
            BroadcastMessage::Ack(_) => &mut self.sent.ack,
        };
        *counter += 1;
        out.push(Output::Send { to, message });
    }

    fn arm_repair(&mut self, out: &mut Vec<Output>) {
        if !self.repair_armed && !self.announce.is_empty() {
            self.repair_armed = true;
            out.push(Output::SetRepairTimer {
                after_ms: self.config.repair_interval_ms,
            });
        }
    }

    /// Up to `k` distinct accepted members other than this node, at random.
    fn random_peers(&mut self, k: usize) -> Vec<NodeId> {
        let n = self.directory.len();
        let mut picked = Vec::with_capacity(k);
        // A bounded number of draws: a directory of mostly shunned nodes
        // yields fewer peers rather than a long search.
        for _ in 0..k.saturating_mul(4) {
            if picked.len() == k || n == 0 {
                break;
            }
            let i = self.rng.random_range(0..n);
            if let Some(id) = self.directory.member_at(i) {
                if id != self.id && self.directory.accepts(&id) && !picked.contains(&id) {
                    picked.push(id);
                }
            }
        }
        picked
    }
}

/// The generator seed of node `id` given `seed`: BLAKE3 of id ‖ seed (LE).
fn rng_seed(id: &NodeId, seed: u64) -> [u8; 32] {
    *blake3::Hasher::new()
        .update(id.as_bytes())
        .update(&seed.to_le_bytes())
        .finalize()
        .as_bytes()
}
