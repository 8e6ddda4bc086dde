//! A budget ledger: charges and releases against a non-negative limit.

use crate::{Budget, ReceiptError};
use serde::{Deserialize, Serialize};

/// Tracks what has been charged against a budget limit.
///
/// The limit and every amount are non-negative budgets (`0..=47`): a ledger
/// never goes negative. A refused operation leaves the ledger unchanged and
/// says why.
///
/// ```
/// use hologram_receipt::{Budget, BudgetLedger, ReceiptError};
/// let mut ledger = BudgetLedger::new(Budget::new(10).unwrap()).unwrap();
/// ledger.charge(Budget::new(7).unwrap()).unwrap();
/// assert_eq!(
///     ledger.charge(Budget::new(4).unwrap()),
///     Err(ReceiptError::InsufficientBudget { requested: 4, remaining: 3 })
/// );
/// ledger.release(Budget::new(7).unwrap()).unwrap();
/// assert!(ledger.spent().crush());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "(Budget, Budget)", into = "(Budget, Budget)")]
pub struct BudgetLedger {
    limit: Budget,
    spent: Budget,
}

impl BudgetLedger {
    /// A ledger with nothing charged, or [`ReceiptError::ImpossibleClaim`]
    /// when the limit is negative (above 47).
    pub fn new(limit: Budget) -> Result<Self, ReceiptError> {
        Ok(Self {
            limit: limit.non_negative()?,
            spent: Budget::ZERO,
        })
    }

    /// The limit.
    pub const fn limit(&self) -> Budget {
        self.limit
    }

    /// What is charged now (the budget a receipt of this work claims).
    pub const fn spent(&self) -> Budget {
        self.spent
    }

    /// What may still be charged.
    pub const fn remaining(&self) -> Budget {
        // spent <= limit <= 47, so the difference is in range.
        Budget::wrapping((self.limit.get() - self.spent.get()) as u64)
    }

    /// Charges `amount`, refusing negative amounts
    /// ([`ReceiptError::ImpossibleClaim`]) and amounts above what remains
    /// ([`ReceiptError::InsufficientBudget`]).
    pub fn charge(&mut self, amount: Budget) -> Result<(), ReceiptError> {
        let amount = amount.non_negative()?;
        let remaining = self.remaining();
        if amount > remaining {
            return Err(ReceiptError::InsufficientBudget {
                requested: amount.get(),
                remaining: remaining.get(),
            });
        }
        self.spent += amount;
        Ok(())
    }

    /// Releases `amount` of what was charged, refusing negative amounts
    /// ([`ReceiptError::ImpossibleClaim`]) and amounts above the charge
    /// ([`ReceiptError::ReleaseExceedsCharge`]).
    pub fn release(&mut self, amount: Budget) -> Result<(), ReceiptError> {
        let amount = amount.non_negative()?;
        if amount > self.spent {
            return Err(ReceiptError::ReleaseExceedsCharge {
                requested: amount.get(),
                charged: self.spent.get(),
            });
        }
        self.spent = self.spent - amount;
        Ok(())
    }
}

impl TryFrom<(Budget, Budget)> for BudgetLedger {
    type Error = ReceiptError;
    /// A ledger from `(limit, spent)`, with the checks of [`BudgetLedger::new`]
    /// and [`BudgetLedger::charge`] (so serde cannot build an invalid ledger).
    fn try_from((limit, spent): (Budget, Budget)) -> Result<Self, ReceiptError> {
        let mut ledger = BudgetLedger::new(limit)?;
        ledger.charge(spent)?;
        Ok(ledger)
    }
}

impl From<BudgetLedger> for (Budget, Budget) {
    fn from(l: BudgetLedger) -> Self {
        (l.limit, l.spent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(v: u8) -> Budget {
        Budget::new(v).unwrap()
    }

    #[test]
    fn refuses_negative_limits_and_amounts() {
        assert_eq!(
            BudgetLedger::new(b(48)),
            Err(ReceiptError::ImpossibleClaim(48))
        );
        let mut l = BudgetLedger::new(b(47)).unwrap();
        assert_eq!(l.charge(b(95)), Err(ReceiptError::ImpossibleClaim(95)));
        assert_eq!(l.release(b(60)), Err(ReceiptError::ImpossibleClaim(60)));
        assert!(l.spent().crush());
    }

    #[test]
    fn charges_and_releases_never_go_negative() {
        let mut l = BudgetLedger::new(b(47)).unwrap();
        l.charge(b(40)).unwrap();
        l.charge(b(7)).unwrap();
        assert_eq!(l.remaining(), Budget::ZERO);
        assert_eq!(
            l.charge(b(1)),
            Err(ReceiptError::InsufficientBudget {
                requested: 1,
                remaining: 0
            })
        );
        l.release(b(47)).unwrap();
        assert_eq!(
            l.release(b(1)),
            Err(ReceiptError::ReleaseExceedsCharge {
                requested: 1,
                charged: 0
            })
        );
        assert_eq!(l.remaining(), b(47));
        l.charge(b(5)).unwrap();
        let wire = postcard::to_allocvec(&l).unwrap();
        assert_eq!(postcard::from_bytes::<BudgetLedger>(&wire), Ok(l));
        // spent above limit, or a negative limit, cannot be decoded.
        assert!(postcard::from_bytes::<BudgetLedger>(&[10, 11]).is_err());
        assert!(postcard::from_bytes::<BudgetLedger>(&[50, 0]).is_err());
    }
}
