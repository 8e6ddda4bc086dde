//! Sites of the 48 × 256 torus and its metric (SPEC §1).

use core::cmp::Ordering;
use serde::{Deserialize, Serialize};

/// Number of pages of the lattice.
pub const PAGES: usize = 48;
/// Number of bytes (sites) per page.
pub const BYTES_PER_PAGE: usize = 256;
/// Number of sites of the lattice: 48 × 256 = 12,288.
pub const SITES: usize = PAGES * BYTES_PER_PAGE;
/// The largest distance two sites can have: 24 pages and 128 bytes apart.
pub const MAX_DISTANCE: u16 = 24 * 256 + 128;

/// A site of the lattice: a page (`0..48`) and a byte within it (`0..256`).
///
/// Constructors wrap out-of-range inputs, so every `Coord` is valid. The
/// derived order is the linear index order (page first, then byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Coord {
    page: u8,
    byte: u8,
}

impl Coord {
    /// The site `(page mod 48, byte mod 256)`.
    pub const fn new(page: u32, byte: u32) -> Self {
        Self {
            page: (page % PAGES as u32) as u8,
            byte: (byte % BYTES_PER_PAGE as u32) as u8,
        }
    }

    /// The site with linear index `index mod 12288` (`index = 256 * page + byte`).
    pub const fn from_index(index: u64) -> Self {
        let i = index % SITES as u64;
        Self {
            page: (i / BYTES_PER_PAGE as u64) as u8,
            byte: (i % BYTES_PER_PAGE as u64) as u8,
        }
    }

    /// The page, `0..48`.
    pub const fn page(self) -> u8 {
        self.page
    }

    /// The byte within the page, `0..256`.
    pub const fn byte(self) -> u8 {
        self.byte
    }

    /// The linear index `256 * page + byte`, `0..12288`.
    pub const fn index(self) -> u16 {
        self.page as u16 * BYTES_PER_PAGE as u16 + self.byte as u16
    }

    /// The torus distance of SPEC §1: `page_distance * 256 + byte_distance`.
    ///
    /// Page distance dominates, so the nearest sites always lie in the nearest
    /// pages. The result is at most [`MAX_DISTANCE`].
    pub const fn distance(self, other: Coord) -> u16 {
        page_distance(self.page, other.page) as u16 * 256
            + byte_distance(self.byte, other.byte) as u16
    }

    /// Orders two peers by their distance to `self`, ties broken by their ids
    /// (SPEC §1), so that every node ranks peers the same way.
    pub fn cmp_peers<I: Ord>(self, a: (Coord, &I), b: (Coord, &I)) -> Ordering {
        self.distance(a.0)
            .cmp(&self.distance(b.0))
            .then_with(|| a.1.cmp(b.1))
    }
}

impl Serialize for Coord {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (self.page, self.byte).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Coord {
    /// Rejects out-of-range pages rather than wrapping them: a peer that sends
    /// page 200 is wrong, not a neighbour of page 8.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (page, byte) = <(u8, u8)>::deserialize(deserializer)?;
        if usize::from(page) >= PAGES {
            return Err(serde::de::Error::custom(format_args!(
                "page {page} out of range (must be below {PAGES})"
            )));
        }
        Ok(Self { page, byte })
    }
}

/// Distance between two pages on the 48-cycle: `min(|a - b|, 48 - |a - b|)`.
pub(crate) const fn page_distance(a: u8, b: u8) -> u8 {
    let d = a.abs_diff(b);
    let wrap = PAGES as u8 - d;
    if d < wrap {
        d
    } else {
        wrap
    }
}

/// Distance between two bytes on the 256-cycle: `min(|a - b|, 256 - |a - b|)`.
pub(crate) const fn byte_distance(a: u8, b: u8) -> u8 {
    let d = a.abs_diff(b);
    let wrap = d.wrapping_neg(); // 256 - d, and 0 for d = 0
    if d < wrap {
        d
    } else {
        wrap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_wrap() {
        assert_eq!(Coord::new(48, 256), Coord::new(0, 0));
        assert_eq!(Coord::new(49, 257), Coord::new(1, 1));
        assert_eq!(Coord::from_index(12_288 + 513), Coord::new(2, 1));
        assert_eq!(Coord::new(47, 255).index(), 12_287);
    }

    #[test]
    fn metric_examples() {
        assert_eq!(Coord::new(0, 0).distance(Coord::new(47, 255)), 256 + 1);
        assert_eq!(Coord::new(0, 0).distance(Coord::new(24, 128)), MAX_DISTANCE);
        assert_eq!(Coord::new(3, 10).distance(Coord::new(5, 250)), 2 * 256 + 16);
    }

    #[test]
    fn ties_break_by_id() {
        let t = Coord::new(10, 10);
        let (a, b) = (Coord::new(10, 12), Coord::new(10, 8));
        assert_eq!(t.cmp_peers((a, &2u32), (b, &1u32)), Ordering::Greater);
        assert_eq!(
            t.cmp_peers((a, &1u32), (Coord::new(11, 10), &0u32)),
            Ordering::Less
        );
    }
}
