//! Composing receipts: sequential, many-way (parallel) and state transitions
//! (SPEC §6).

use crate::{receipt::CANONICAL_LEN, Budget, Receipt};
use hologram_lattice::{Address, DeriveContext, Phase, R96Digest, SchedulePoint};

/// Context of the sequential r96 digest (fixed by SPEC §6).
pub const SEQ_R96_CONTEXT: &str = "hologram receipt-seq v1";
/// Context of the sequential content address.
pub const SEQ_CONTENT_CONTEXT: &str = "hologram receipt-seq-content v1";
/// Context of the many-way r96 digest.
pub const PAR_R96_CONTEXT: &str = "hologram receipt-par v1";
/// Context of the many-way content address.
pub const PAR_CONTENT_CONTEXT: &str = "hologram receipt-par-content v1";
/// Context of a state transition's content address.
pub const TRANSITION_CONTEXT: &str = "hologram receipt-transition v1";

static SEQ_R96: DeriveContext = DeriveContext::new(SEQ_R96_CONTEXT);
static SEQ_CONTENT: DeriveContext = DeriveContext::new(SEQ_CONTENT_CONTEXT);
static PAR_R96: DeriveContext = DeriveContext::new(PAR_R96_CONTEXT);
static PAR_CONTENT: DeriveContext = DeriveContext::new(PAR_CONTENT_CONTEXT);
static TRANSITION: DeriveContext = DeriveContext::new(TRANSITION_CONTEXT);

/// BLAKE3-derive(context, parts concatenated), as 32 bytes.
fn derive<'a>(context: &DeriveContext, parts: impl IntoIterator<Item = &'a [u8]>) -> [u8; 32] {
    let mut hasher = context.hasher();
    for part in parts {
        hasher.update(part);
    }
    *hasher.finalize().as_bytes()
}

impl Receipt {
    /// Sequential composition `self ; next`: `next` happened after `self`.
    ///
    /// r96 = derive("hologram receipt-seq v1", r96 ‖ next.r96), content =
    /// derive("hologram receipt-seq-content v1", content ‖ next.content), the
    /// schedule advances by `next`'s with carry, phi is the AND, budget the sum.
    pub fn then(&self, next: &Receipt) -> Receipt {
        let schedule = self.schedule().advance(next.schedule());
        Receipt {
            content: Address::from_bytes(derive(
                &SEQ_CONTENT,
                [self.content.as_ref(), next.content.as_ref()],
            )),
            r96: R96Digest::from_bytes(derive(&SEQ_R96, [self.r96.as_ref(), next.r96.as_ref()])),
            c768_cycle: schedule.cycle,
            c768_phase: schedule.phase,
            phi_roundtrip: self.phi_roundtrip && next.phi_roundtrip,
            budget: self.budget + next.budget,
        }
    }

    /// The left fold of [`Receipt::then`] over `receipts`: `((r0 ; r1) ; r2) ; …`.
    /// `None` for an empty sequence.
    pub fn sequence<'a>(receipts: impl IntoIterator<Item = &'a Receipt>) -> Option<Receipt> {
        let mut iter = receipts.into_iter();
        let first = *iter.next()?;
        Some(iter.fold(first, |acc, r| acc.then(r)))
    }

    /// Many-way composition of independent parts (for example the commit
    /// receipt of a transaction from its prepare receipts). Order-independent
    /// and deterministic; defined with
    /// the other compositions below. The composition of no parts has phi true, budget 0 and the
    /// zero schedule point.
    ///
    ///
    /// Every composition adds budgets mod 96 and ANDs the round-trip flags. What
    /// differs is how the digests and the schedule point are formed:
    ///
    /// | composition | `content` | `r96` | schedule |
    /// |---|---|---|---|
    /// | `A ; B` ([`Receipt::then`]) | derive([`SEQ_CONTENT_CONTEXT`], content_A ‖ content_B) | derive([`SEQ_R96_CONTEXT`], r96_A ‖ r96_B) (SPEC) | A advanced by B, with carry |
    /// | many-way ([`Receipt::compose_all`]) | derive([`PAR_CONTENT_CONTEXT`], sorted canonical bytes) | derive([`PAR_R96_CONTEXT`], the r96 digests in that order) | the latest part |
    /// | transition ([`Receipt::from_transition`]) | derive([`TRANSITION_CONTEXT`], previous ‖ command ‖ next canonical bytes) | the next state's r96 | previous advanced by command |
    ///
    /// "derive" is `blake3::Hasher::new_derive_key(context)`. Concatenations are
    /// of fixed-size fields, so they need no length prefixes.
    ///
    /// Sequential composition is associative in its schedule, phi and budget
    /// (Z/(768·2³²), AND and Z/96 are all associative), but not in `content` and
    /// `r96`: SPEC fixes `r96 = derive(rA ‖ rB)`, which records the grouping, so
    /// `(A;B);C` and `A;(B;C)` are different receipts of the same work. Fold a
    /// sequence left to right ([`Receipt::sequence`]) so that all nodes group the
    /// same way.
    ///
    /// Many-way composition treats its input as a multiset: it sorts the parts'
    /// canonical bytes (bytewise), so any order of the same parts gives the same
    /// receipt; a part given twice counts twice. The parts run concurrently, so
    /// the composite's schedule point is the latest part's (the maximum by cycle,
    /// then phase).
    pub fn compose_all<'a>(parts: impl IntoIterator<Item = &'a Receipt>) -> Receipt {
        let mut sorted: Vec<([u8; CANONICAL_LEN], &Receipt)> = parts
            .into_iter()
            .map(|r| (r.to_canonical_bytes(), r))
            .collect();
        sorted.sort_unstable_by_key(|(canonical, _)| *canonical);
        let schedule = sorted
            .iter()
            .map(|(_, r)| r.schedule())
            .max()
            .unwrap_or(SchedulePoint {
                cycle: 0,
                phase: Phase::ZERO,
            });
        Receipt {
            content: Address::from_bytes(derive(
                &PAR_CONTENT,
                sorted.iter().map(|(c, _)| c.as_slice()),
            )),
            r96: R96Digest::from_bytes(derive(
                &PAR_R96,
                sorted.iter().map(|(_, r)| r.r96.as_ref()),
            )),
            c768_cycle: schedule.cycle,
            c768_phase: schedule.phase,
            phi_roundtrip: sorted.iter().all(|(_, r)| r.phi_roundtrip),
            budget: sorted.iter().map(|(_, r)| r.budget).sum::<Budget>(),
        }
    }

    /// The receipt of a state transition of a replicated state machine: the
    /// state with receipt `previous` executed the command with receipt
    /// `command` and reached the state with receipt `next`.
    ///
    /// content = derive("hologram receipt-transition v1", previous ‖ command ‖
    /// next canonical bytes) binds all three; r96 is the next state's (a
    /// transition is placed with the state it produced); the schedule is
    /// `previous` advanced by `command`; phi is the AND and budget the sum of
    /// all three.
    pub fn from_transition(previous: &Receipt, command: &Receipt, next: &Receipt) -> Receipt {
        let schedule = previous.schedule().advance(command.schedule());
        Receipt {
            content: Address::from_bytes(derive(
                &TRANSITION,
                [
                    previous.to_canonical_bytes().as_slice(),
                    command.to_canonical_bytes().as_slice(),
                    next.to_canonical_bytes().as_slice(),
                ],
            )),
            r96: next.r96,
            c768_cycle: schedule.cycle,
            c768_phase: schedule.phase,
            phi_roundtrip: previous.phi_roundtrip && command.phi_roundtrip && next.phi_roundtrip,
            budget: previous.budget + command.budget + next.budget,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(data: &[u8], steps: u64, budget: u8, phi: bool) -> Receipt {
        let p = SchedulePoint::from_steps(steps);
        Receipt {
            c768_cycle: p.cycle,
            c768_phase: p.phase,
            budget: Budget::wrapping(budget as u64),
            phi_roundtrip: phi,
            ..Receipt::from_bytes(data)
        }
    }

    #[test]
    fn sequential_follows_the_spec() {
        let a = at(b"a", 700, 90, true);
        let b = at(b"b", 100, 10, false);
        let ab = a.then(&b);
        let expected_r96 = blake3::Hasher::new_derive_key("hologram receipt-seq v1")
            .update(a.r96.as_bytes())
            .update(b.r96.as_bytes())
            .finalize();
        assert_eq!(ab.r96.as_bytes(), expected_r96.as_bytes());
        assert_eq!((ab.c768_cycle, ab.c768_phase.get()), (1, 32));
        assert_eq!(ab.budget.get(), 4);
        assert!(!ab.phi_roundtrip);
        assert_ne!(ab, b.then(&a));
        assert_eq!(Receipt::sequence([&a, &b]), Some(ab));
        assert_eq!(Receipt::sequence([]), None);
    }

    #[test]
    fn many_way_sums_budgets_and_takes_the_latest_point() {
        let parts = [
            at(b"x", 5, 40, true),
            at(b"y", 800, 60, true),
            at(b"z", 3, 0, true),
        ];
        let c = Receipt::compose_all(&parts);
        assert_eq!(c.budget.get(), 4);
        assert_eq!(c.schedule(), SchedulePoint::from_steps(800));
        assert!(c.phi_roundtrip);
        let empty = Receipt::compose_all([]);
        assert!(empty.phi_roundtrip && empty.budget.crush());
        assert_ne!(Receipt::compose_all(&parts[..2]), c);
        // A part given twice counts twice.
        let twice = Receipt::compose_all([&parts[0], &parts[0]]);
        assert_ne!(twice, Receipt::compose_all([&parts[0]]));
        assert_eq!(twice.budget.get(), 80);
    }

    #[test]
    fn transition_binds_all_three_receipts() {
        let (p, c, n) = (
            at(b"s0", 10, 0, true),
            at(b"cmd", 20, 0, true),
            at(b"s1", 0, 0, true),
        );
        let t = Receipt::from_transition(&p, &c, &n);
        assert_eq!(t.r96, n.r96);
        assert_eq!(t.schedule(), SchedulePoint::from_steps(30));
        assert!(t.is_lawful(None));
        assert_ne!(t, Receipt::from_transition(&p, &c, &at(b"s2", 0, 0, true)));
        assert_ne!(t, Receipt::from_transition(&n, &c, &p));
    }
}
