//! The validator set: who votes, who leads each round, how many make a quorum.

use crate::ConsensusError;
use hologram_lattice::NodeId;

/// The largest validator set this crate accepts (bounds every certificate).
pub const MAX_VALIDATORS: usize = 256;

/// The BLAKE3 key-derivation context of [`ValidatorSet::fingerprint`].
const FINGERPRINT_CONTEXT: &str = "hologram validator-set v1";

/// The validators of a consensus group, in a fixed order every member agrees on.
///
/// With `n` validators the group tolerates `f = (n - 1) / 3` Byzantine ones
/// and a quorum is `⌊2n / 3⌋ + 1` (`2f + 1` when `n = 3f + 1`): any two
/// quorums share at least one honest validator. The leader of `(height,
/// round)` is `validators[(height + round) mod n]`, so leadership rotates
/// fairly over heights and, within a height, over rounds.
///
/// ```
/// use hologram_consensus::ValidatorSet;
/// use hologram_lattice::NodeId;
/// let ids: Vec<NodeId> = (1..=4u8).map(|i| NodeId::from_bytes([i; 32])).collect();
/// let set = ValidatorSet::new(ids.clone()).unwrap();
/// assert_eq!((set.len(), set.max_faulty(), set.quorum()), (4, 1, 3));
/// assert_eq!(set.leader(0, 0), ids[0]);
/// assert_eq!(set.leader(5, 2), ids[3]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ValidatorSet {
    validators: Vec<NodeId>,
}

impl ValidatorSet {
    /// A set of these validators in this order: between 1 and
    /// [`MAX_VALIDATORS`], each named once.
    pub fn new(validators: Vec<NodeId>) -> Result<Self, ConsensusError> {
        if validators.is_empty() || validators.len() > MAX_VALIDATORS {
            return Err(ConsensusError::InvalidValidatorSet(format!(
                "{} validators, between 1 and {MAX_VALIDATORS} allowed",
                validators.len()
            )));
        }
        let mut sorted = validators.clone();
        sorted.sort_unstable();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(ConsensusError::InvalidValidatorSet(format!(
                "{} is named twice",
                w[0]
            )));
        }
        Ok(Self { validators })
    }

    /// The validators, in order.
    pub fn validators(&self) -> &[NodeId] {
        &self.validators
    }

    /// The number of validators, `n`.
    pub fn len(&self) -> usize {
        self.validators.len()
    }

    /// Always false: a set has at least one validator.
    pub fn is_empty(&self) -> bool {
        self.validators.is_empty()
    }

    /// The number of Byzantine validators tolerated, `f = (n - 1) / 3`.
    pub fn max_faulty(&self) -> usize {
        (self.len() - 1) / 3
    }

    /// The number of matching votes that make a certificate, `⌊2n / 3⌋ + 1`.
    pub fn quorum(&self) -> usize {
        self.len() * 2 / 3 + 1
    }

    /// Whether `id` is a validator.
    pub fn contains(&self, id: &NodeId) -> bool {
        self.validators.contains(id)
    }

    /// The leader (proposer) of `round` at `height`.
    pub fn leader(&self, height: u64, round: u32) -> NodeId {
        let n = self.len() as u64;
        let i = (height % n + u64::from(round) % n) % n;
        // `i < n`, and `n` is the length: the index is in range.
        self.validators[i as usize]
    }

    /// The set's fingerprint: `BLAKE3-derive("hologram validator-set v1",
    /// count u16 LE ‖ each id, in the set's order)`. Order matters (it
    /// decides the leaders), so two sets with the same members in another
    /// order differ. A snapshot records the fingerprint of the set it was
    /// taken under.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new_derive_key(FINGERPRINT_CONTEXT);
        // At most MAX_VALIDATORS (< 2^16) ids.
        h.update(&(self.validators.len() as u16).to_le_bytes());
        for id in &self.validators {
            h.update(id.as_bytes());
        }
        *h.finalize().as_bytes()
    }

    /// `Ok` if `id` is a validator, else [`ConsensusError::NotAValidator`].
    pub fn check_member(&self, id: &NodeId) -> Result<(), ConsensusError> {
        if self.contains(id) {
            Ok(())
        } else {
            Err(ConsensusError::NotAValidator(*id))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: u8) -> Vec<NodeId> {
        (1..=n).map(|i| NodeId::from_bytes([i; 32])).collect()
    }

    #[test]
    fn quorums_intersect_in_more_than_f() {
        for n in 1..=40u8 {
            let set = ValidatorSet::new(ids(n)).unwrap();
            let (q, f, n) = (set.quorum(), set.max_faulty(), usize::from(n));
            assert!(
                2 * q > n + f,
                "n={n}: two quorums share an honest validator"
            );
            assert!(
                q <= n - f,
                "n={n}: the honest validators alone form a quorum"
            );
        }
    }

    #[test]
    fn leaders_rotate_over_every_validator() {
        let set = ValidatorSet::new(ids(7)).unwrap();
        for h in 0..20u64 {
            let mut seen: Vec<NodeId> = (0..7).map(|r| set.leader(h, r)).collect();
            seen.sort();
            assert_eq!(seen, ids(7));
        }
        assert_eq!(
            set.leader(u64::MAX, u32::MAX),
            set.leader(u64::MAX % 7, u32::MAX % 7)
        );
    }

    #[test]
    fn fingerprints_name_the_members_and_their_order() {
        let set = ValidatorSet::new(ids(4)).unwrap();
        assert_eq!(
            set.fingerprint(),
            ValidatorSet::new(ids(4)).unwrap().fingerprint()
        );
        let mut reordered = ids(4);
        reordered.swap(0, 1);
        assert_ne!(
            set.fingerprint(),
            ValidatorSet::new(reordered).unwrap().fingerprint()
        );
        assert_ne!(
            set.fingerprint(),
            ValidatorSet::new(ids(5)).unwrap().fingerprint()
        );
    }

    #[test]
    fn bad_sets_are_refused() {
        assert!(ValidatorSet::new(vec![]).is_err());
        let mut twice = ids(3);
        twice.push(twice[0]);
        assert!(ValidatorSet::new(twice).is_err());
        assert!(ValidatorSet::new(vec![NodeId::from_bytes([0; 32]); 1]).is_ok());
    }
}
