//! Sybil-resistant discovery (the chapter's exercise 2): peer records carry a
//! proof of work (SPEC §7) and enter a routing table only when it verifies,
//! and a cap on peers per page keeps an identity farm from filling a region.

use super::{Insertion, RoutingTable};
use crate::{wire, Coord, LatticeError, PeerId, ProofOfWork};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Largest number of records one `Nodes` response may carry.
pub const MAX_RECORDS: usize = 64;
/// Largest encoded discovery message: `MAX_RECORDS` records and a header.
pub const MAX_MESSAGE_BYTES: usize = 64 + MAX_RECORDS * 48;

/// A peer as discovery passes it around: its id and the proof of work that
/// admits it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PeerRecord {
    /// The peer's id (its public key).
    pub id: PeerId,
    /// Its proof of work.
    pub pow: ProofOfWork,
}

impl PeerRecord {
    /// Mints a record for `id` at `difficulty` (about `2^difficulty` hashes;
    /// `None` if `max_attempts` were not enough).
    pub fn mint(
        id: PeerId,
        difficulty: u32,
        max_attempts: u64,
    ) -> Result<Option<Self>, LatticeError> {
        Ok(id
            .mint_pow(difficulty, max_attempts)?
            .map(|pow| PeerRecord { id, pow }))
    }

    /// Checks the proof of work at `difficulty` (one hash).
    pub fn verify(&self, difficulty: u32) -> Result<(), LatticeError> {
        self.id.verify_pow(self.pow, difficulty)
    }
}

/// The discovery protocol's messages (carried under
/// [`Protocol::DISCOVERY`](crate::transport::Protocol::DISCOVERY)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DiscoveryMessage {
    /// "Which peers do you know nearest this site?"
    FindNodes {
        /// The site looked up.
        target: Coord,
        /// How many peers to return (the answer caps it at [`MAX_RECORDS`]).
        k: u16,
    },
    /// The answer: peer records, nearest first.
    Nodes(Vec<PeerRecord>),
}

impl DiscoveryMessage {
    /// The postcard encoding.
    pub fn encode(&self) -> Vec<u8> {
        // Encoding into a Vec cannot fail for these types.
        wire::encode("discovery message", self).unwrap_or_default()
    }

    /// Decodes exactly `bytes`, refusing frames over [`MAX_MESSAGE_BYTES`]
    /// before reading them and answers with more than [`MAX_RECORDS`] records.
    pub fn decode(bytes: &[u8]) -> Result<Self, LatticeError> {
        let message: Self = wire::decode("discovery message", bytes, MAX_MESSAGE_BYTES)?;
        if let DiscoveryMessage::Nodes(records) = &message {
            wire::check_count("discovery records", records.len(), MAX_RECORDS)?;
        }
        Ok(message)
    }
}

/// Why a record was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Its proof of work does not verify.
    #[error("proof of work does not verify: {0}")]
    Work(LatticeError),
    /// Its page is full.
    #[error("its page of the routing table is full")]
    PageFull,
    /// It is the local node.
    #[error("it is the local node")]
    IsLocal,
}

/// A node's view of the network: a capped [`RoutingTable`] that admits only
/// records whose proof of work verifies, with the records kept so they can be
/// passed on.
#[derive(Debug, Clone)]
pub struct PeerBook {
    local: PeerId,
    difficulty: u32,
    table: RoutingTable,
    records: HashMap<PeerId, PeerRecord>,
}

impl PeerBook {
    /// An empty book for node `local`, admitting records of at least
    /// `difficulty` bits of work, at most `page_cap` per page.
    pub fn new(local: PeerId, difficulty: u32, page_cap: usize) -> Self {
        Self {
            local,
            difficulty,
            table: RoutingTable::with_page_cap(page_cap),
            records: HashMap::new(),
        }
    }

    /// The local node.
    pub fn local(&self) -> PeerId {
        self.local
    }

    /// The proof-of-work difficulty records need.
    pub fn difficulty(&self) -> u32 {
        self.difficulty
    }

    /// Admits a record if its work verifies, it is not the local node, and
    /// its page has room. Returns whether it was new.
    pub fn admit(&mut self, record: PeerRecord) -> Result<bool, Rejection> {
        if record.id == self.local {
            return Err(Rejection::IsLocal);
        }
        if self.records.contains_key(&record.id) {
            return Ok(false);
        }
        record.verify(self.difficulty).map_err(Rejection::Work)?;
        match self.table.insert(record.id) {
            Insertion::Added => {
                self.records.insert(record.id, record);
                Ok(true)
            }
            Insertion::Present => Ok(false),
            Insertion::PageFull => Err(Rejection::PageFull),
        }
    }

    /// Forgets a peer.
    pub fn remove(&mut self, peer: &PeerId) -> Option<PeerRecord> {
        self.table.remove(peer);
        self.records.remove(peer)
    }

    /// The record of a known peer.
    pub fn record(&self, peer: &PeerId) -> Option<&PeerRecord> {
        self.records.get(peer)
    }

    /// The routing table (only admitted peers).
    pub fn table(&self) -> &RoutingTable {
        &self.table
    }

    /// The records of the `k` known peers nearest `target` (at most
    /// [`MAX_RECORDS`]), nearest first.
    pub fn nearest_records(&self, target: Coord, k: usize) -> Vec<PeerRecord> {
        self.table
            .nearest(target, k.min(MAX_RECORDS))
            .into_iter()
            .filter_map(|(id, _)| self.records.get(&id).copied())
            .collect()
    }

    /// Answers a `FindNodes` request; anything else gets `None`.
    pub fn answer(&self, request: &DiscoveryMessage) -> Option<DiscoveryMessage> {
        match request {
            DiscoveryMessage::FindNodes { target, k } => Some(DiscoveryMessage::Nodes(
                self.nearest_records(*target, usize::from(*k)),
            )),
            DiscoveryMessage::Nodes(_) => None,
        }
    }
}
