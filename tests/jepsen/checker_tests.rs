//! The checker on known histories: linearizable ones pass, non-linearizable
//! ones fail with their minimal window, unknown outcomes included; random
//! histories agree with a brute-force enumeration of every order.

use super::checker::{check, CheckError, History, Model, Operation, Outcome};
use super::models::*;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn done<I, O>(process: usize, input: I, call: u64, at: u64, output: O) -> Operation<I, O> {
    Operation {
        process,
        input,
        call,
        outcome: Outcome::Returned { at, output },
    }
}

fn unknown<I, O>(process: usize, input: I, call: u64) -> Operation<I, O> {
    Operation {
        process,
        input,
        call,
        outcome: Outcome::Unknown,
    }
}

fn violation<M: Model>(model: &M, history: &History<M>) -> super::checker::Violation<M::State> {
    match check(model, history) {
        Err(CheckError::Violation(v)) => v,
        other => panic!("expected a violation, got {other:?}"),
    }
}

use RegisterInput::{Cas, Read, Write};
use RegisterOutput as R;

const REG: Register = Register { initial: 0 };

#[test]
fn register_histories_known_linearizable_pass() {
    // Sequential.
    let h = vec![
        done(0, Write(1), 0, 1, R::Written),
        done(1, Read, 2, 3, R::Read(1)),
        done(0, Cas { from: 1, to: 2 }, 4, 5, R::Cas(true)),
        done(1, Cas { from: 1, to: 3 }, 6, 7, R::Cas(false)),
        done(1, Read, 8, 9, R::Read(2)),
    ];
    assert_eq!(check(&REG, &h).unwrap(), vec![0, 1, 2, 3, 4]);
    // A read concurrent with a write sees either value.
    for seen in [0, 1] {
        let h = vec![
            done(0, Write(1), 0, 10, R::Written),
            done(1, Read, 2, 3, R::Read(seen)),
        ];
        check(&REG, &h).unwrap();
    }
    // Two concurrent reads see the write in either order... as long as once
    // one returns 1 a later read cannot return 0.
    let h = vec![
        done(0, Write(1), 0, 10, R::Written),
        done(1, Read, 1, 4, R::Read(1)),
        done(2, Read, 2, 3, R::Read(0)),
    ];
    check(&REG, &h).unwrap();
}

#[test]
fn register_histories_known_non_linearizable_fail() {
    // A stale read: the write had returned before the read began.
    let h = vec![
        done(0, Write(1), 0, 1, R::Written),
        done(1, Read, 2, 3, R::Read(0)),
    ];
    let v = violation(&REG, &h);
    assert_eq!(v.culprit, 1);
    assert_eq!(v.window, vec![1]);
    // A read of a value never written.
    let h = vec![done(0, Read, 0, 1, R::Read(7))];
    violation(&REG, &h);
    // Two concurrent compare-and-sets from the same value both succeed.
    let h = vec![
        done(0, Cas { from: 0, to: 1 }, 0, 5, R::Cas(true)),
        done(1, Cas { from: 0, to: 2 }, 1, 6, R::Cas(true)),
    ];
    let v = violation(&REG, &h);
    // Until 6 the second may not have taken effect.
    assert_eq!(v.culprit, 1);
    assert_eq!(v.window, vec![0, 1]);
    // New-old inversion: one read saw 1, a later one (after it returned) 0.
    let h = vec![
        done(0, Write(1), 0, 10, R::Written),
        done(1, Read, 1, 2, R::Read(1)),
        done(2, Read, 3, 4, R::Read(0)),
    ];
    let v = violation(&REG, &h);
    assert_eq!(v.culprit, 2);
}

#[test]
fn unknown_outcomes_may_take_effect_late_or_never_but_not_undo() {
    // A write that timed out: a later read may see it, or not.
    for seen in [0, 5] {
        let h = vec![
            unknown(0, Write(5), 0),
            done(1, Read, 10, 11, R::Read(seen)),
        ];
        check(&REG, &h).unwrap();
    }
    // ...even long after (it takes effect late).
    let h = vec![
        unknown(0, Write(5), 0),
        done(1, Read, 10, 11, R::Read(0)),
        done(1, Read, 20, 21, R::Read(5)),
    ];
    let order = check(&REG, &h).unwrap();
    assert_eq!(order, vec![1, 0, 2]);
    // Once seen it cannot be unseen.
    let h = vec![
        unknown(0, Write(5), 0),
        done(1, Read, 10, 11, R::Read(5)),
        done(1, Read, 20, 21, R::Read(0)),
    ];
    assert_eq!(violation(&REG, &h).culprit, 2);
    // It cannot take effect before it was invoked.
    let h = vec![done(1, Read, 0, 1, R::Read(5)), unknown(0, Write(5), 2)];
    violation(&REG, &h);
    // A compare-and-set of unknown outcome is applied at most once.
    let h = vec![
        done(0, Write(1), 0, 1, R::Written),
        unknown(1, Cas { from: 1, to: 2 }, 2),
        done(0, Write(1), 3, 4, R::Written),
        done(0, Read, 5, 6, R::Read(2)),
        done(0, Write(1), 7, 8, R::Written),
        done(0, Read, 9, 10, R::Read(2)),
    ];
    assert_eq!(violation(&REG, &h).culprit, 5);
}

use LogInput::{Append, Read as LogRead};
use LogOutput::{Appended, Read as Log};

#[test]
fn append_log_histories() {
    // Concurrent appends land in either order; the final read agrees.
    let ok = vec![
        done(0, Append(10), 0, 5, Appended { position: 1 }),
        done(1, Append(11), 1, 4, Appended { position: 0 }),
        unknown(2, Append(12), 2),
        unknown(3, Append(13), 3),
        done(0, LogRead, 20, 21, Log(vec![11, 10, 13])),
    ];
    assert_eq!(check(&AppendLog, &ok).unwrap(), vec![1, 0, 3, 4]);
    // A lost acknowledged append: the final read lacks it.
    let mut lost = ok.clone();
    lost[4] = done(0, LogRead, 20, 21, Log(vec![11, 13]));
    let v = violation(&AppendLog, &lost);
    assert_eq!(v.culprit, 4);
    // Every state it could be in holds the acknowledged 10.
    assert!(!v.states_before.is_empty());
    for state in &v.states_before {
        assert!(state.values().starts_with(&[11, 10]), "{state:?}");
    }
    // Applied twice.
    let mut twice = ok.clone();
    twice[4] = done(0, LogRead, 20, 21, Log(vec![11, 10, 10]));
    violation(&AppendLog, &twice);
    // Real-time order broken: 20 was acknowledged before 21 was invoked,
    // yet sits after it.
    let h = vec![
        done(0, Append(20), 0, 1, Appended { position: 1 }),
        done(1, Append(21), 2, 3, Appended { position: 0 }),
    ];
    assert_eq!(violation(&AppendLog, &h).culprit, 0);
    // Two appends acknowledged at the same position.
    let h = vec![
        done(0, Append(1), 0, 2, Appended { position: 0 }),
        done(1, Append(2), 1, 3, Appended { position: 0 }),
    ];
    violation(&AppendLog, &h);
}

#[test]
fn bank_histories() {
    use BankInput::{Read as Balances, Transfer};
    use BankOutput::{Read as Seen, Transferred};
    let bank = Bank {
        accounts: 3,
        initial: 10,
    };
    let ok = vec![
        done(
            0,
            Transfer {
                from: 0,
                to: 1,
                amount: 7,
            },
            0,
            4,
            Transferred(true),
        ),
        done(
            1,
            Transfer {
                from: 0,
                to: 2,
                amount: 7,
            },
            1,
            5,
            Transferred(false),
        ),
        unknown(
            2,
            Transfer {
                from: 1,
                to: 2,
                amount: 17,
            },
            2,
        ),
        done(0, Balances, 6, 7, Seen(vec![3, 0, 27])),
    ];
    check(&bank, &ok).unwrap();
    // Both transfers of 7 out of 10 made: money created.
    let mut created = ok.clone();
    created[1] = done(
        1,
        Transfer {
            from: 0,
            to: 2,
            amount: 7,
        },
        1,
        5,
        Transferred(true),
    );
    created[3] = done(0, Balances, 6, 7, Seen(vec![0, 17, 17]));
    violation(&bank, &created);
    // A read whose total is not conserved.
    let h = vec![done(0, Balances, 0, 1, Seen(vec![10, 10, 11]))];
    violation(&bank, &h);
}

#[test]
fn a_violation_deep_in_a_long_history_is_reported_in_a_small_window() {
    // 4 clients appending, 2000 operations; one acknowledged append (the
    // 1000th) is missing from every read after it.
    let mut h = Vec::new();
    let mut log = Vec::new();
    let mut t = 0;
    for k in 0..2000u64 {
        let p = (k % 4) as usize;
        if k == 1000 {
            h.push(done(
                p,
                Append(k),
                t,
                t + 3,
                Appended {
                    position: log.len() as u64,
                },
            ));
            // Lost: not pushed into the log the reads see.
        } else {
            let position = log.len() as u64 + u64::from(k > 1000);
            h.push(done(p, Append(k), t, t + 3, Appended { position }));
            log.push(k);
        }
        t += 2;
    }
    h.push(done(0, LogRead, t + 10, t + 11, Log(log.clone())));
    let v = violation(&AppendLog, &h);
    // The appends acknowledged after the lost one keep positions counted
    // with it: the first failure is the final read.
    assert_eq!(v.culprit, 2000);
    assert!(v.window.len() <= 2, "{:?}", v.window);
    let text = v.render(&h, 42);
    assert!(
        text.contains("seed 42") && text.contains("=> #2000"),
        "{text}"
    );
    // The same history without the read passes.
    h.pop();
    check(&AppendLog, &h).unwrap();
}

/// The definition, by brute force: some subset of the unknown operations
/// and all returned ones, in some order respecting real time, that the
/// model accepts.
fn brute_force<M: Model>(model: &M, h: &History<M>) -> bool {
    fn go<M: Model>(model: &M, h: &History<M>, used: &mut Vec<bool>, state: M::State) -> bool {
        let open_returned = (0..h.len()).any(|i| !used[i] && h[i].ret() != u64::MAX);
        if !open_returned {
            return true;
        }
        for x in 0..h.len() {
            // x may go next only if no unused operation returned before x began.
            if used[x] || (0..h.len()).any(|y| !used[y] && h[y].ret() < h[x].call) {
                continue;
            }
            let output = match &h[x].outcome {
                Outcome::Returned { output, .. } => Some(output),
                Outcome::Unknown => None,
            };
            if let Some(next) = model.step(&state, &h[x].input, output) {
                used[x] = true;
                let found = go(model, h, used, next);
                used[x] = false;
                if found {
                    return true;
                }
            }
        }
        false
    }
    go(model, h, &mut vec![false; h.len()], model.init())
}

/// A random register history: each process runs operations one after
/// another; each takes effect at a random point of its interval, in that
/// order, and answers what the register gave then. Some outcomes are then
/// made unknown (some of those never took effect) and, if `corrupt`, one
/// answer is changed.
fn random_register_history(rng: &mut ChaCha8Rng, ops: usize, corrupt: bool) -> History<Register> {
    let processes = rng.random_range(1..4usize);
    let mut clock = vec![0u64; processes];
    let mut planned = Vec::new();
    for _ in 0..ops {
        let p = rng.random_range(0..processes);
        let call = clock[p] + rng.random_range(0..5u64);
        let ret = call + rng.random_range(1..12u64);
        let point = rng.random_range(call..=ret);
        clock[p] = ret + 1;
        let input = match rng.random_range(0..3) {
            0 => Read,
            1 => Write(rng.random_range(0..3)),
            _ => Cas {
                from: rng.random_range(0..3),
                to: rng.random_range(0..3),
            },
        };
        let lost = rng.random_bool(0.15);
        let never = lost && rng.random_bool(0.5);
        planned.push((p, input, call, ret, point, lost, never));
    }
    let mut order: Vec<usize> = (0..planned.len()).collect();
    order.sort_by_key(|&i| planned[i].4);
    let mut value = 0;
    let mut outputs = vec![R::Written; planned.len()];
    for i in order {
        let (_, input, .., never) = &planned[i];
        if *never {
            continue;
        }
        let after = REG.step(&value, input, None).unwrap();
        outputs[i] = match input {
            Read => R::Read(value),
            Write(_) => R::Written,
            Cas { from, .. } => R::Cas(*from == value),
        };
        value = after;
    }
    let mut h: History<Register> = planned
        .into_iter()
        .zip(outputs)
        .map(|((p, input, call, ret, _, lost, _), out)| {
            if lost {
                unknown(p, input, call)
            } else {
                done(p, input, call, ret, out)
            }
        })
        .collect();
    if corrupt {
        let i = rng.random_range(0..h.len());
        if let Outcome::Returned { output, .. } = &mut h[i].outcome {
            *output = match output {
                R::Read(v) => R::Read((*v + 1) % 3),
                R::Cas(b) => R::Cas(!*b),
                R::Written => R::Written,
            };
        }
    }
    h
}

fn seeds() -> u64 {
    std::env::var("HOLOGRAM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300)
}

#[test]
fn random_histories_agree_with_brute_force() {
    let (mut linearizable, mut not) = (0, 0);
    for seed in 0..seeds() {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let corrupt = rng.random_bool(0.5);
        let n = rng.random_range(1..8usize);
        let h = random_register_history(&mut rng, n, corrupt);
        let expected = brute_force(&REG, &h);
        let got = check(&REG, &h);
        assert_eq!(got.is_ok(), expected, "seed {seed}: {h:?}\n{got:?}");
        if !corrupt {
            assert!(expected, "seed {seed}: made linearizable, {h:?}");
        }
        if expected {
            linearizable += 1;
        } else {
            not += 1;
        }
        // The order found is a valid linearization.
        if let Ok(order) = got {
            let mut state = REG.init();
            for (k, &i) in order.iter().enumerate() {
                let output = match &h[i].outcome {
                    Outcome::Returned { output, .. } => Some(output),
                    Outcome::Unknown => None,
                };
                state = REG.step(&state, &h[i].input, output).unwrap();
                for &j in &order[k + 1..] {
                    assert!(
                        h[j].ret() >= h[i].call,
                        "seed {seed}: {j} returned before {i} began"
                    );
                }
            }
        }
    }
    assert!(linearizable > 0 && not > 0, "{linearizable} / {not}");
}

#[test]
fn long_random_linearizable_histories_pass() {
    for seed in 0..seeds() / 30 {
        let mut rng = ChaCha8Rng::seed_from_u64(1_000 + seed);
        let h = random_register_history(&mut rng, 300, false);
        check(&REG, &h).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
}
