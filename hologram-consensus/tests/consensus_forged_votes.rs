//! Forged and replayed votes (issue 19, point 6): what a replica refuses
//! before verifying a signature, counted with `Replica::vote_checks`.
//!
//! - One replica fed directly: real votes moved to other slots (their
//!   signatures then fail), replays of valid votes, a real equivocation
//!   repeated, votes of far rounds, votes from a non-validator. Signature
//!   verifications are bounded per sender and slot (per resend interval),
//!   and the equivocation still yields its proof.
//! - A simulated cluster in which a validator floods every honest replica
//!   with replays and moved copies of the votes it receives: verifications
//!   stay bounded per sender and slot, and heights commit at the pace they
//!   have without the flood.

mod hostile;

use hologram_consensus::Slot;
use hologram_consensus::{
    ConsensusMessage, Outputs, Replica, ReplicaConfig, ValidatorSet, Vote, VoteKind,
};
use hologram_lattice::sim::check_seeds;
use hologram_lattice::NodeId;
use hologram_receipt::{KeyPair, Receipt};
use hostile::{Cluster, LATENCY_MS, RESEND_MS};
use std::collections::HashSet;

fn slot(height: u64, round: u32, kind: VoteKind) -> Slot {
    Slot {
        height,
        round,
        kind,
    }
}

/// `vote` with its signature kept and its slot changed (no longer valid).
fn moved(vote: &Vote, to: Slot) -> Vote {
    Vote { slot: to, ..*vote }
}

#[test]
fn verifications_are_bounded_per_sender_and_slot() {
    let keys: Vec<KeyPair> = (0..4u8).map(|i| KeyPair::from_seed([i + 1; 32])).collect();
    let ids: Vec<NodeId> = keys.iter().map(KeyPair::node_id).collect();
    let set = ValidatorSet::new(ids.clone()).expect("distinct");
    let mut config = ReplicaConfig::new(set);
    config.timeouts.resend_ms = 100;
    let mut replica = Replica::new(keys[0].clone(), config).expect("config");
    let mut out = Outputs::default();
    replica.start(0, &mut out);
    let (hostile, honest) = (ids[3], ids[1]);
    let deliver = |replica: &mut Replica, now: u64, from: NodeId, vote: Vote| {
        let mut out = Outputs::default();
        replica.handle_message(now, from, ConsensusMessage::Vote(vote), &mut out);
    };
    let value = Receipt::from_bytes(b"a batch");
    let real = Vote::sign(&keys[1], slot(0, 0, VoteKind::Prevote), Some(value));

    // A valid vote, replayed 1,000 times by its voter and by the hostile
    // validator: verified once.
    for i in 0..1_000 {
        deliver(
            &mut replica,
            1,
            if i % 2 == 0 { honest } else { hostile },
            real,
        );
    }
    let c = replica.vote_checks();
    assert_eq!((c.verified, c.invalid, c.duplicates), (1, 0, 999), "{c:?}");

    // The real vote moved to 16 slots (rounds 0..8, both kinds; one of
    // them is its own slot with another value), each sent 100 times: one
    // failed verification per slot.
    let mut targets = Vec::new();
    for round in 0..8 {
        for kind in [VoteKind::Prevote, VoteKind::Precommit] {
            targets.push(slot(0, round, kind));
        }
    }
    for _ in 0..100 {
        for (i, to) in targets.iter().enumerate() {
            let mut v = moved(&real, *to);
            if i == 0 {
                v.value = Some(Receipt::from_bytes(b"another batch"));
            }
            deliver(&mut replica, 2, hostile, v);
        }
    }
    let c = replica.vote_checks();
    assert_eq!((c.verified, c.invalid), (1 + 16, 16), "{c:?}");

    // A real equivocation, repeated with 50 different values: the second
    // vote is verified and proves it; the rest are refused.
    let eq_slot = slot(0, 8, VoteKind::Precommit);
    for i in 0..50u32 {
        let v = Vote::sign(
            &keys[3],
            eq_slot,
            Some(Receipt::from_bytes(&i.to_le_bytes())),
        );
        deliver(&mut replica, 3, hostile, v);
    }
    let c = replica.vote_checks();
    assert_eq!((c.verified, c.invalid), (17 + 2, 16), "{c:?}");
    let proof = replica
        .detector()
        .proof(&hostile, &eq_slot)
        .expect("the equivocation is proven");
    assert_eq!(proof.verify().expect("a valid proof"), hostile);

    // 1,000 signed votes of far rounds: one verified per interval.
    for r in 0..1_000u32 {
        let v = Vote::sign(&keys[3], slot(0, 1_000 + r, VoteKind::Prevote), None);
        deliver(&mut replica, 4, hostile, v);
    }
    let c = replica.vote_checks();
    assert_eq!(c.verified, 19 + 1, "{c:?}");

    // Votes relayed by a node that is not a validator: none verified.
    let outsider = KeyPair::from_seed([9; 32]).node_id();
    let other = Vote::sign(&keys[2], slot(0, 0, VoteKind::Prevote), Some(value));
    for _ in 0..1_000 {
        deliver(&mut replica, 5, outsider, other);
    }
    assert_eq!(replica.vote_checks().verified, 20);

    // A resend interval later, each forged slot may cost one more check.
    for _ in 0..100 {
        for to in &targets[1..] {
            deliver(&mut replica, 200, hostile, moved(&real, *to));
        }
    }
    let c = replica.vote_checks();
    assert_eq!((c.verified, c.invalid), (20 + 15, 16 + 15), "{c:?}");
    // Before the fix every one of these ~9,600 distinct-or-not forged,
    // moved or repeated votes cost a verification (only exact repeats of
    // a verified vote were skipped).
    assert!(c.refused + c.duplicates > 5_000, "{c:?}");

    // And the honest vote of another validator still counts.
    deliver(&mut replica, 201, ids[2], other);
    assert_eq!(replica.vote_checks().verified, 36);
}

const FLOOD_MS: u64 = 600;
/// Copies of each vote the flooder received that it replays, and slots it
/// moves each to (with `MOVED_COPIES` copies each).
const REPLAYS: usize = 20;
const MOVED_SLOTS: u32 = 4;
const MOVED_COPIES: usize = 5;

struct Run {
    committed: usize,
    verified: Vec<u64>,
    invalid: Vec<u64>,
    /// Per target, the distinct (slot, resend interval of arrival) the
    /// flooder sent moved votes for: at most one failed check each.
    forged_slots: Vec<usize>,
    sent: usize,
}

fn run(seed: u64, flood: bool) -> Result<Run, String> {
    let mut c = Cluster::new(seed, |_| {});
    c.run_for(200, 4);
    c.take_received();
    let before = c.committed();
    let start_checks: Vec<_> = c
        .honest
        .iter()
        .map(|id| c.replica(*id).replica().vote_checks())
        .collect();
    let start = c.sim.now();
    let mut slots: Vec<HashSet<(Slot, u64)>> = vec![HashSet::new(); c.honest.len()];
    let mut sent = 0;
    while c.sim.now() < start + FLOOD_MS {
        c.run_for(5, 4);
        let received = c.take_received();
        if !flood {
            continue;
        }
        for (_, m) in received {
            let ConsensusMessage::Vote(v) = m else {
                continue;
            };
            for (i, target) in c.honest.clone().into_iter().enumerate() {
                for _ in 0..REPLAYS {
                    c.sim.inject(c.hostile, target, ConsensusMessage::Vote(v));
                }
                for k in 1..=MOVED_SLOTS {
                    let to = Slot {
                        round: v.slot.round + k / 2,
                        kind: if k % 2 == 0 {
                            v.slot.kind
                        } else {
                            match v.slot.kind {
                                VoteKind::Prevote => VoteKind::Precommit,
                                VoteKind::Precommit => VoteKind::Prevote,
                            }
                        },
                        ..v.slot
                    };
                    let arrival = c.sim.now() + LATENCY_MS - start;
                    slots[i].insert((to, arrival / RESEND_MS));
                    for _ in 0..MOVED_COPIES {
                        c.sim
                            .inject(c.hostile, target, ConsensusMessage::Vote(moved(&v, to)));
                    }
                }
                sent += REPLAYS + MOVED_SLOTS as usize * MOVED_COPIES;
            }
        }
    }
    c.sim
        .run_until(c.sim.now() + 20)
        .map_err(|e| e.to_string())?;
    let checks: Vec<_> = c
        .honest
        .iter()
        .map(|id| c.replica(*id).replica().vote_checks())
        .collect();
    Ok(Run {
        committed: c.committed() - before,
        verified: checks
            .iter()
            .zip(&start_checks)
            .map(|(a, b)| a.verified - b.verified)
            .collect(),
        invalid: checks
            .iter()
            .zip(&start_checks)
            .map(|(a, b)| a.invalid - b.invalid)
            .collect(),
        forged_slots: slots.iter().map(HashSet::len).collect(),
        sent,
    })
}

#[test]
fn a_flood_of_moved_and_replayed_votes_costs_little_and_heights_commit() {
    check_seeds("forged vote flood", 2, |seed| {
        let calm = run(seed, false)?;
        let flooded = run(seed, true)?;
        eprintln!(
            "seed {seed}: {} votes flooded; verifications per replica {:?} (calm {:?}), \
             invalid {:?} over {:?} forged slots; heights {} flooded vs {} calm",
            flooded.sent,
            flooded.verified,
            calm.verified,
            flooded.invalid,
            flooded.forged_slots,
            flooded.committed,
            calm.committed
        );
        // One failed verification per (sender, slot) per resend interval:
        // a slot's failures are at least an interval apart, so each falls
        // in a distinct interval.
        for (i, (&invalid, &slots)) in flooded
            .invalid
            .iter()
            .zip(&flooded.forged_slots)
            .enumerate()
        {
            if invalid as usize > slots {
                return Err(format!(
                    "replica {i}: {invalid} failed verifications for {slots} forged (slot, interval)s"
                ));
            }
            // The replays cost nothing beyond the calm run's checks: all
            // the extra verifications are the forged ones.
            let extra = flooded.verified[i].saturating_sub(calm.verified[i]);
            if extra > invalid + invalid / 2 + 10 {
                return Err(format!(
                    "replica {i}: {extra} extra verifications, {invalid} of them forged"
                ));
            }
            if flooded.verified[i] * 20 > flooded.sent as u64 {
                return Err(format!(
                    "replica {i}: {} verifications for {} votes flooded",
                    flooded.verified[i], flooded.sent
                ));
            }
        }
        if flooded.committed * 10 < calm.committed * 9 || calm.committed < 20 {
            return Err(format!(
                "{} heights committed under the flood, {} without",
                flooded.committed, calm.committed
            ));
        }
        Ok(())
    });
}
