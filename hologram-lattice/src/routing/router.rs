//! The chapter's `LatticeRouter`: which peers hold or serve an address.

use super::RoutingTable;
use crate::{Address, Coord, PeerId};

/// How many peers [`LatticeRouter::route_to_address`] returns by default.
pub const DEFAULT_K: usize = 3;

/// Routes content addresses to the peers nearest their lattice site.
///
/// ```
/// use hologram_lattice::LatticeRouter;
/// use hologram_lattice::{Address, NodeId};
///
/// let me = NodeId::from_bytes([0; 32]);
/// let mut router = LatticeRouter::new(me);
/// for i in 1..=10u8 {
///     router.table_mut().insert(NodeId::from_bytes([i; 32]));
/// }
/// let peers = router.route_to_address(&Address::of(b"HELLO WORLD"));
/// assert_eq!(peers.len(), 3);
/// ```
#[derive(Debug, Clone)]
pub struct LatticeRouter {
    local: PeerId,
    table: RoutingTable,
    k: usize,
}

impl LatticeRouter {
    /// A router for node `local` with an empty, uncapped table and k = 3.
    pub fn new(local: PeerId) -> Self {
        Self::with_table(local, RoutingTable::new())
    }

    /// A router over an existing table.
    pub fn with_table(local: PeerId, table: RoutingTable) -> Self {
        Self {
            local,
            table,
            k: DEFAULT_K,
        }
    }

    /// Sets how many peers a route returns.
    pub fn with_k(mut self, k: usize) -> Self {
        self.k = k;
        self
    }

    /// The local node.
    pub fn local(&self) -> PeerId {
        self.local
    }

    /// The local node's lattice site.
    pub fn local_site(&self) -> Coord {
        self.local.coord()
    }

    /// How many peers a route returns.
    pub fn k(&self) -> usize {
        self.k
    }

    /// The routing table.
    pub fn table(&self) -> &RoutingTable {
        &self.table
    }

    /// The routing table, to add and remove peers.
    pub fn table_mut(&mut self) -> &mut RoutingTable {
        &mut self.table
    }

    /// The `k` peers nearest `addr.coord()` (SPEC §8): by the lattice metric,
    /// ties by id, widening page by page in a sparse table until `k` peers
    /// are found or none are left.
    pub fn route_to_address(&self, addr: &Address) -> Vec<PeerId> {
        self.route_to_site(addr.coord())
    }

    /// The `k` peers nearest a site.
    pub fn route_to_site(&self, site: Coord) -> Vec<PeerId> {
        self.table
            .nearest(site, self.k)
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    }
}
