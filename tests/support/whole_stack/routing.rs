//! Lattice routing in the whole-stack campaign: every node keeps a
//! `LatticeRouter` whose table holds the peers it can reach (a failure
//! detector's view: crashed nodes and nodes across a partition removed,
//! restored when they come back). After every tick, from every node that is
//! up, the route to sampled stored objects' addresses names only reachable
//! peers, and exactly the k nearest of them on the lattice (by the metric,
//! ties by id), as a full sort of the reachable peers says.

use hologram_lattice::routing::{Insertion, RoutingTable};
use hologram_lattice::LatticeRouter;
use hologram_lattice::{Address, NodeId};
use std::collections::BTreeSet;

/// Every node's router.
pub struct Routing {
    routers: Vec<LatticeRouter>,
    pub routes_checked: u64,
}

impl Routing {
    /// Each node starts knowing every other.
    pub fn new(ids: &[NodeId]) -> Routing {
        let routers = ids
            .iter()
            .map(|&me| {
                let others = ids.iter().filter(|&&p| p != me).map(|p| (*p, p.coord()));
                LatticeRouter::with_table(me, RoutingTable::from_sites(others))
            })
            .collect();
        Routing {
            routers,
            routes_checked: 0,
        }
    }

    /// Brings every router's table to what it can reach: `reachable(i)`
    /// is the set of peers node i can reach.
    pub fn refresh(
        &mut self,
        reachable: impl Fn(NodeId) -> BTreeSet<NodeId>,
    ) -> Result<(), String> {
        for router in &mut self.routers {
            let me = router.local();
            let want = reachable(me);
            let known: Vec<NodeId> = router.table().iter().map(|(p, _)| p).collect();
            for p in known {
                if !want.contains(&p) {
                    router.table_mut().remove(&p);
                }
            }
            for p in want {
                if p != me && !router.table().contains(&p) {
                    let added = router.table_mut().insert(p);
                    if added != Insertion::Added {
                        return Err(format!("routing: {me} could not add {p}: {added:?}"));
                    }
                }
            }
        }
        Ok(())
    }

    /// The routes from every node in `up` to `addresses`.
    pub fn check(
        &mut self,
        up: &BTreeSet<NodeId>,
        reachable: impl Fn(NodeId) -> BTreeSet<NodeId>,
        addresses: &[Address],
    ) -> Result<(), String> {
        for router in &self.routers {
            let me = router.local();
            if !up.contains(&me) {
                continue;
            }
            let can = reachable(me);
            for address in addresses {
                let site = address.coord();
                let route = router.route_to_address(address);
                let mut by_sort: Vec<(u16, NodeId)> = can
                    .iter()
                    .filter(|&&p| p != me)
                    .map(|p| (p.coord().distance(site), *p))
                    .collect();
                by_sort.sort_unstable();
                let want: Vec<NodeId> = by_sort
                    .into_iter()
                    .take(router.k())
                    .map(|(_, p)| p)
                    .collect();
                if route != want {
                    return Err(format!(
                        "routing: {me} routes {address} to {route:?}, the nearest reachable are {want:?}"
                    ));
                }
                self.routes_checked += 1;
            }
        }
        Ok(())
    }
}
