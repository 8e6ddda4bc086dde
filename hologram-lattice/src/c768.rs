//! The C768 schedule: the lattice automorphism σ, its orbits, phases and the
//! page rotation that picks gossip targets (SPEC §4).

use crate::{Coord, LatticeError, PAGES};
use core::num::NonZeroU64;
use serde::{Deserialize, Serialize};

/// The period of σ: lcm(48, 256) = 768.
pub const PERIOD: u16 = 768;
/// The number of σ-orbits: 12,288 / 768 = 16.
pub const ORBITS: u8 = 16;

/// σ(page, byte) = ((page + 1) mod 48, (byte + 1) mod 256).
pub const fn sigma(c: Coord) -> Coord {
    Coord::new(c.page() as u32 + 1, c.byte() as u32 + 1)
}

/// σ applied `n` times, in constant time.
pub const fn sigma_pow(c: Coord, n: u64) -> Coord {
    let n = n % PERIOD as u64;
    Coord::new(c.page() as u32 + n as u32, c.byte() as u32 + n as u32)
}

/// The σ-orbit of a site, `0..16`: `(byte - page) mod 16`.
pub const fn orbit(c: Coord) -> u8 {
    ((c.byte() as i32 - c.page() as i32).rem_euclid(ORBITS as i32)) as u8
}

/// A position within the C768 period, `0..768`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
pub struct Phase(u16);

impl Phase {
    /// Phase zero.
    pub const ZERO: Phase = Phase(0);

    /// The phase `value`, or an error when it is not below 768.
    pub const fn new(value: u16) -> Result<Self, LatticeError> {
        if value < PERIOD {
            Ok(Self(value))
        } else {
            Err(LatticeError::PhaseOutOfRange(value as u64))
        }
    }

    /// The phase `value mod 768`.
    pub const fn wrapping(value: u64) -> Self {
        Self((value % PERIOD as u64) as u16)
    }

    /// The phase as a number, `0..768`.
    pub const fn get(self) -> u16 {
        self.0
    }
}

impl<'de> Deserialize<'de> for Phase {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Phase::new(u16::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A point in schedule time: completed periods (`cycle`) and the phase within
/// the current one. Adding points carries phase overflow into the cycle; the
/// cycle counter wraps at `u32::MAX`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct SchedulePoint {
    /// Completed periods.
    pub cycle: u32,
    /// Phase within the current period.
    pub phase: Phase,
}

impl SchedulePoint {
    /// The point `steps` phases after the origin.
    pub const fn from_steps(steps: u64) -> Self {
        Self {
            cycle: (steps / PERIOD as u64) as u32,
            phase: Phase::wrapping(steps),
        }
    }

    /// `self` advanced by `other`, with carry from phase into cycle.
    pub const fn advance(self, other: SchedulePoint) -> Self {
        let phase = self.phase.0 as u32 + other.phase.0 as u32;
        let carry = phase / PERIOD as u32;
        Self {
            cycle: self.cycle.wrapping_add(other.cycle).wrapping_add(carry),
            phase: Phase((phase % PERIOD as u32) as u16),
        }
    }
}

/// The page rotation of one phase: which remote pages inter-page gossip goes to.
///
/// `map_page(local, i) = (local + 1 + (phase + i) mod 47) mod 48` never returns
/// the local page, returns 47 distinct pages for `i < 47`, and rotates with the
/// phase so that every page is chosen equally often over a period.
///
/// ```
/// use hologram_lattice::{Phase, ScheduleRotation};
/// let r = ScheduleRotation::at_phase(Phase::new(5).unwrap());
/// assert_eq!(r.map_page(10, 0), 16);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScheduleRotation {
    phase: Phase,
}

impl ScheduleRotation {
    /// The rotation of `phase`.
    pub const fn at_phase(phase: Phase) -> Self {
        Self { phase }
    }

    /// The rotation at wall-clock time `now_ms` with slots of `slot_ms`:
    /// phase `⌊now_ms / slot_ms⌋ mod 768`. Wall-clock phases choose gossip
    /// targets only and never enter a receipt.
    pub const fn at_time(now_ms: u64, slot_ms: NonZeroU64) -> Self {
        Self::at_phase(Phase::wrapping(now_ms / slot_ms.get()))
    }

    /// The phase of this rotation.
    pub const fn phase(&self) -> Phase {
        self.phase
    }

    /// The `i`-th remote page for a node on `local_page` (taken mod 48).
    pub const fn map_page(&self, local_page: u8, i: usize) -> u8 {
        let step = (self.phase.0 as usize + i % 47) % 47;
        ((local_page as usize % PAGES + 1 + step) % PAGES) as u8
    }

    /// The first `fanout` remote pages (at most 47, all distinct).
    pub fn pages(&self, local_page: u8, fanout: usize) -> impl Iterator<Item = u8> + '_ {
        (0..fanout.min(47)).map(move |i| self.map_page(local_page, i))
    }
}

/// A schedule slot length in milliseconds, for [`ScheduleRotation::at_time`].
pub fn slot_ms(ms: u64) -> Result<NonZeroU64, LatticeError> {
    NonZeroU64::new(ms).ok_or(LatticeError::ZeroSlot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_bounded() {
        assert!(Phase::new(767).is_ok());
        assert_eq!(Phase::new(768), Err(LatticeError::PhaseOutOfRange(768)));
        assert_eq!(Phase::wrapping(769).get(), 1);
        assert!(postcard::from_bytes::<Phase>(&postcard::to_allocvec(&800u16).unwrap()).is_err());
    }

    #[test]
    fn schedule_points_carry() {
        let a = SchedulePoint::from_steps(700);
        let b = SchedulePoint::from_steps(100);
        assert_eq!(a.advance(b), SchedulePoint::from_steps(800));
        assert_eq!(a.advance(b).cycle, 1);
        assert_eq!(a.advance(b).phase.get(), 32);
    }

    #[test]
    fn at_time_uses_the_slot() {
        let slot = slot_ms(10).unwrap();
        assert_eq!(ScheduleRotation::at_time(7_685, slot).phase().get(), 0);
        assert_eq!(ScheduleRotation::at_time(7_695, slot).phase().get(), 1);
        assert_eq!(slot_ms(0), Err(LatticeError::ZeroSlot));
    }

    #[test]
    fn sigma_pow_matches_iteration() {
        let mut c = Coord::new(7, 250);
        for n in 0..1600u64 {
            assert_eq!(sigma_pow(Coord::new(7, 250), n), c);
            c = sigma(c);
        }
    }
}
