//! The resonance class of a byte (SPEC §3): the 96-class partition every
//! R96 histogram, digest and residue counts by, as a function and a table
//! the kernels index.

/// Number of resonance classes.
pub const CLASSES: usize = 96;

const fn class_of(b: u8) -> u8 {
    let h2 = b >> 6;
    let l = (b >> 1) & 7;
    let d = match (b >> 4) & 3 {
        1 => 1, // bit 4 alone
        2 => 2, // bit 5 alone
        _ => 0, // neither or both: the unity pair
    };
    24 * h2 + 8 * d + l
}

const fn build_table() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = class_of(b as u8);
        b += 1;
    }
    t
}

/// The class of every byte: `CLASS_TABLE[b] == class(b)`.
pub const CLASS_TABLE: [u8; 256] = build_table();

/// The resonance class of a byte, `0..96`:
/// `24 * (b >> 6) + 8 * d + ((b >> 1) & 7)` with `d = [0, 1, 2, 0][(b >> 4) & 3]`.
///
/// ```
/// assert_eq!(hologram_lattice::class(0x2A), 21);
/// ```
pub const fn class(b: u8) -> u8 {
    CLASS_TABLE[b as usize]
}
