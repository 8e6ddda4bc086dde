//! Budgets in Z/96 (SPEC §5).

use crate::ReceiptError;
use core::ops::{Add, AddAssign, Mul, Neg, Sub};
use serde::{Deserialize, Serialize};

/// The modulus of budget arithmetic.
pub const MODULUS: u8 = 96;
/// The largest non-negative budget; anything above encodes a negative value.
pub const MAX_NON_NEGATIVE: u8 = 47;

/// A budget: an element of Z/96, always below 96.
///
/// Add, multiply, negate and subtract are mod 96. Values `0..=47` are
/// non-negative; `48..=95` encode `β − 96`. A receipt claiming a budget above
/// 47 claims to have spent more than it had: an
/// [impossible claim](Budget::is_impossible_claim).
///
/// ```
/// use hologram_receipt::Budget;
/// let b = Budget::new(50).unwrap();
/// assert_eq!(b.signed(), -46);
/// assert!(b.is_impossible_claim());
/// assert_eq!(b + Budget::new(46).unwrap(), Budget::ZERO);
/// assert!(Budget::ZERO.crush());
/// ```
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(try_from = "u8", into = "u8")]
pub struct Budget(u8);

impl Budget {
    /// The lawful budget, 0.
    pub const ZERO: Budget = Budget(0);
    /// The budget 1.
    pub const ONE: Budget = Budget(1);

    /// The budget `value`, or [`ReceiptError::BudgetOutOfRange`] when it is not below 96.
    pub fn new(value: u8) -> Result<Self, ReceiptError> {
        if value < MODULUS {
            Ok(Self(value))
        } else {
            Err(ReceiptError::BudgetOutOfRange(value))
        }
    }

    /// The budget `value mod 96`.
    pub const fn wrapping(value: u64) -> Self {
        Self((value % MODULUS as u64) as u8)
    }

    /// The budget `value mod 96` of a signed value (so `-1` gives 95).
    pub const fn from_signed(value: i64) -> Self {
        Self(value.rem_euclid(MODULUS as i64) as u8)
    }

    /// The residue, `0..96`.
    pub const fn get(self) -> u8 {
        self.0
    }

    /// The signed view, `-48..=47`: values above 47 read as `β − 96`.
    pub const fn signed(self) -> i8 {
        if self.0 > MAX_NON_NEGATIVE {
            (self.0 as i16 - MODULUS as i16) as i8
        } else {
            self.0 as i8
        }
    }

    /// `crush(β) = (β == 0)`: whether the budget is the lawful one.
    pub const fn crush(self) -> bool {
        self.0 == 0
    }

    /// Whether this budget, claimed as spent, is impossible (above 47, i.e. negative).
    pub const fn is_impossible_claim(self) -> bool {
        self.0 > MAX_NON_NEGATIVE
    }

    /// This budget if it is non-negative, else [`ReceiptError::ImpossibleClaim`].
    pub fn non_negative(self) -> Result<Self, ReceiptError> {
        if self.is_impossible_claim() {
            Err(ReceiptError::ImpossibleClaim(self.0))
        } else {
            Ok(self)
        }
    }
}

impl TryFrom<u8> for Budget {
    type Error = ReceiptError;
    fn try_from(value: u8) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<Budget> for u8 {
    fn from(b: Budget) -> u8 {
        b.0
    }
}

impl core::fmt::Display for Budget {
    /// The residue, as in `37`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Add for Budget {
    type Output = Budget;
    fn add(self, rhs: Budget) -> Budget {
        // Both below 96: the sum fits in a u8.
        Budget((self.0 + rhs.0) % MODULUS)
    }
}

impl AddAssign for Budget {
    fn add_assign(&mut self, rhs: Budget) {
        *self = *self + rhs;
    }
}

impl Sub for Budget {
    type Output = Budget;
    fn sub(self, rhs: Budget) -> Budget {
        self + -rhs
    }
}

impl Neg for Budget {
    type Output = Budget;
    fn neg(self) -> Budget {
        Budget((MODULUS - self.0) % MODULUS)
    }
}

impl Mul for Budget {
    type Output = Budget;
    fn mul(self, rhs: Budget) -> Budget {
        Budget(((self.0 as u16 * rhs.0 as u16) % MODULUS as u16) as u8)
    }
}

impl core::iter::Sum for Budget {
    fn sum<I: Iterator<Item = Budget>>(iter: I) -> Budget {
        iter.fold(Budget::ZERO, Add::add)
    }
}

impl<'a> core::iter::Sum<&'a Budget> for Budget {
    fn sum<I: Iterator<Item = &'a Budget>>(iter: I) -> Budget {
        iter.copied().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_is_enforced() {
        assert_eq!(Budget::new(95).map(Budget::get), Ok(95));
        assert_eq!(Budget::new(96), Err(ReceiptError::BudgetOutOfRange(96)));
        assert_eq!(Budget::wrapping(96 * 7 + 5).get(), 5);
        assert_eq!(Budget::from_signed(-1).get(), 95);
        assert!(postcard::from_bytes::<Budget>(&[96]).is_err());
        assert_eq!(postcard::from_bytes::<Budget>(&[95]), Ok(Budget(95)));
    }

    #[test]
    fn signed_view_and_impossible_claims() {
        assert_eq!(Budget(47).signed(), 47);
        assert_eq!(Budget(48).signed(), -48);
        assert_eq!(Budget(95).signed(), -1);
        assert!(!Budget(47).is_impossible_claim());
        assert!(Budget(48).is_impossible_claim());
        assert_eq!(
            Budget(48).non_negative(),
            Err(ReceiptError::ImpossibleClaim(48))
        );
        assert!(Budget::ZERO.crush() && !Budget::ONE.crush());
    }

    #[test]
    fn arithmetic_is_mod_96() {
        for a in 0..96u8 {
            assert_eq!(Budget(a) + -Budget(a), Budget::ZERO);
            assert_eq!(Budget::from_signed(Budget(a).signed() as i64), Budget(a));
            for b in 0..96u8 {
                let (x, y) = (Budget(a), Budget(b));
                assert_eq!((x + y).get() as u32, (a as u32 + b as u32) % 96);
                assert_eq!((x * y).get() as u32, (a as u32 * b as u32) % 96);
                assert_eq!(x - y + y, x);
            }
        }
        assert_eq!(
            [Budget(90), Budget(10), Budget(1)].iter().sum::<Budget>(),
            Budget(5)
        );
    }
}
