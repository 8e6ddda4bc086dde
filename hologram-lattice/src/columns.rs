//! Peer coordinates stored as columns, for batched distance and k-nearest
//! queries (the routing table's hot path).

use crate::Coord;

/// A peer found by [`PeerColumns::nearest`]: its position in the columns and
/// its distance to the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Neighbor {
    /// Distance to the target (compared first).
    pub distance: u16,
    /// Position of the peer in the columns (breaks ties).
    pub index: usize,
}

/// Many sites stored as two columns (pages, bytes), so that one target can be
/// compared against all of them with SIMD.
///
/// Every stored site is valid (the columns are only filled from [`Coord`]s).
/// Ties in [`PeerColumns::nearest`] are broken by position, so a caller that
/// keeps its peers in `PeerId` order gets SPEC §1's tie-break.
///
/// ```
/// use hologram_lattice::{Coord, PeerColumns};
/// let cols: PeerColumns = [Coord::new(0, 0), Coord::new(5, 5), Coord::new(1, 1)]
///     .into_iter()
///     .collect();
/// let near = cols.nearest(Coord::new(1, 0), 2);
/// assert_eq!(near.iter().map(|n| n.index).collect::<Vec<_>>(), vec![2, 0]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerColumns {
    pages: Vec<u8>,
    bytes: Vec<u8>,
}

impl PeerColumns {
    /// Empty columns.
    pub const fn new() -> Self {
        Self {
            pages: Vec::new(),
            bytes: Vec::new(),
        }
    }

    /// Empty columns with room for `n` sites.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            pages: Vec::with_capacity(n),
            bytes: Vec::with_capacity(n),
        }
    }

    /// Appends a site and returns its position.
    pub fn push(&mut self, c: Coord) -> usize {
        self.pages.push(c.page());
        self.bytes.push(c.byte());
        self.pages.len() - 1
    }

    /// Inserts a site at position `i` (at most `len()`), shifting later ones.
    /// Returns `false`, changing nothing, when `i > len()`.
    pub fn insert(&mut self, i: usize, c: Coord) -> bool {
        if i > self.len() {
            return false;
        }
        self.pages.insert(i, c.page());
        self.bytes.insert(i, c.byte());
        true
    }

    /// Removes and returns the site at position `i`, shifting later ones.
    pub fn remove(&mut self, i: usize) -> Option<Coord> {
        if i >= self.len() {
            return None;
        }
        let c = Coord::new(self.pages.remove(i).into(), self.bytes.remove(i).into());
        Some(c)
    }

    /// The site at position `i`.
    pub fn get(&self, i: usize) -> Option<Coord> {
        Some(Coord::new(
            (*self.pages.get(i)?).into(),
            (*self.bytes.get(i)?).into(),
        ))
    }

    /// Number of sites.
    pub fn len(&self) -> usize {
        self.pages.len()
    }

    /// Whether there are no sites.
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }

    /// The sites in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Coord> + '_ {
        self.pages
            .iter()
            .zip(&self.bytes)
            .map(|(&p, &b)| Coord::new(p.into(), b.into()))
    }

    /// The page column.
    pub fn pages(&self) -> &[u8] {
        &self.pages
    }

    /// The byte column.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl FromIterator<Coord> for PeerColumns {
    fn from_iter<T: IntoIterator<Item = Coord>>(iter: T) -> Self {
        let mut cols = PeerColumns::new();
        cols.extend(iter);
        cols
    }
}

impl Extend<Coord> for PeerColumns {
    fn extend<T: IntoIterator<Item = Coord>>(&mut self, iter: T) {
        for c in iter {
            self.push(c);
        }
    }
}
