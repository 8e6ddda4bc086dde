//! The checks on the key-value workloads' history: each register's
//! operations linearizable against the register model (one history per
//! key), the bank's against the bank model, every result of the kind its
//! operation answers, and every read of the balances summing to the total
//! the accounts opened with (conserved).

use super::checker::{check, CheckError, History, Operation, Outcome};
use super::kv_workload::{decode_u64, KvEnd, KvInput, KvRecord, ACCOUNTS, OPENING, REGISTERS};
use super::models::{Bank, BankInput, BankOutput, Register, RegisterInput, RegisterOutput};
use hologram::node::{KvError, KvResult};

/// What the key-value checks counted.
#[derive(Clone, Debug, Default)]
pub struct KvChecked {
    /// Register operations checked (unknown ones included).
    pub register: usize,
    /// Bank operations checked (unknown ones included).
    pub bank: usize,
    /// Operations of unknown outcome.
    pub unknown: usize,
    /// Reads of every balance whose total was checked.
    pub totals: usize,
    /// Transfers refused for want of funds.
    pub refused: usize,
}

impl KvChecked {
    /// Adds another run's counts.
    pub fn add(&mut self, o: &KvChecked) {
        self.register += o.register;
        self.bank += o.bank;
        self.unknown += o.unknown;
        self.totals += o.totals;
        self.refused += o.refused;
    }
}

/// The model's output for a register operation's result, or why the
/// result cannot answer it.
fn register_output(input: &RegisterInput, result: &KvResult) -> Result<RegisterOutput, String> {
    match (input, result) {
        (RegisterInput::Read, KvResult::Value(v)) => decode_u64(v.as_deref())
            .map(RegisterOutput::Read)
            .ok_or_else(|| format!("a register holds {v:?}, not a u64")),
        (RegisterInput::Write(_), KvResult::Written) => Ok(RegisterOutput::Written),
        (RegisterInput::Cas { .. }, KvResult::Cas { swapped }) => Ok(RegisterOutput::Cas(*swapped)),
        _ => Err(format!("{input:?} answered {result:?}")),
    }
}

/// The model's output for a bank operation's result, or why the result
/// cannot answer it.
fn bank_output(input: &BankInput, result: &KvResult) -> Result<BankOutput, String> {
    match (input, result) {
        (BankInput::Transfer { .. }, KvResult::Transferred) => Ok(BankOutput::Transferred(true)),
        (BankInput::Transfer { .. }, KvResult::Refused(KvError::InsufficientFunds { .. })) => {
            Ok(BankOutput::Transferred(false))
        }
        (BankInput::Read, KvResult::Values(values)) if values.len() == ACCOUNTS => values
            .iter()
            .map(|v| decode_u64(v.as_deref()))
            .collect::<Option<Vec<u64>>>()
            .map(BankOutput::Read)
            .ok_or_else(|| format!("a balance is not a u64: {values:?}")),
        _ => Err(format!("{input:?} answered {result:?}")),
    }
}

/// The checker's outcome of a record (`None`: it never took effect).
fn outcome<O>(
    record: &KvRecord,
    output: impl FnOnce(&KvResult) -> Result<O, String>,
    bad: &mut Vec<String>,
) -> Option<Outcome<O>> {
    match &record.end {
        KvEnd::NotApplied => None,
        KvEnd::Unknown => Some(Outcome::Unknown),
        KvEnd::Returned { at, result } => match output(result) {
            Ok(output) => Some(Outcome::Returned { at: *at, output }),
            Err(why) => {
                bad.push(format!("client {}: {why}", record.client));
                None
            }
        },
    }
}

fn verdict<S: std::fmt::Debug, I: std::fmt::Debug, O: std::fmt::Debug>(
    what: &str,
    result: Result<Vec<usize>, CheckError<S>>,
    history: &[Operation<I, O>],
    seed: u64,
    bad: &mut Vec<String>,
) {
    match result {
        Ok(_) => {}
        Err(CheckError::Violation(v)) => bad.push(format!("{what}: {}", v.render(history, seed))),
        Err(e) => bad.push(format!("{what}, seed {seed}: the checker {e}")),
    }
}

/// Runs the key-value checks on `records` (of the run of `seed`).
pub fn check_kv(records: &[KvRecord], seed: u64) -> Result<KvChecked, Vec<String>> {
    let mut bad = Vec::new();
    let mut checked = KvChecked::default();
    let mut registers: Vec<History<Register>> = vec![Vec::new(); REGISTERS];
    let mut bank: History<Bank> = Vec::new();
    let total = OPENING * ACCOUNTS as u64;
    for record in records {
        checked.unknown += usize::from(record.end == KvEnd::Unknown);
        match &record.input {
            KvInput::Register(key, input) => {
                let Some(outcome) = outcome(record, |r| register_output(input, r), &mut bad) else {
                    continue;
                };
                registers[*key].push(Operation {
                    process: record.client,
                    input: input.clone(),
                    call: record.call,
                    outcome,
                });
            }
            KvInput::Bank(input) => {
                let Some(outcome) = outcome(record, |r| bank_output(input, r), &mut bad) else {
                    continue;
                };
                match &outcome {
                    Outcome::Returned {
                        output: BankOutput::Read(balances),
                        ..
                    } => {
                        checked.totals += 1;
                        let sum: u64 = balances.iter().sum();
                        if sum != total {
                            bad.push(format!(
                                "seed {seed}: client {} read balances {balances:?}, total {sum}, \
                                 not the {total} opened: the total is not conserved",
                                record.client
                            ));
                        }
                    }
                    Outcome::Returned {
                        output: BankOutput::Transferred(false),
                        ..
                    } => checked.refused += 1,
                    _ => {}
                }
                bank.push(Operation {
                    process: record.client,
                    input: input.clone(),
                    call: record.call,
                    outcome,
                });
            }
        }
    }
    for (key, history) in registers.iter().enumerate() {
        checked.register += history.len();
        let what = format!("register {key}");
        verdict(
            &what,
            check(&Register { initial: 0 }, history),
            history,
            seed,
            &mut bad,
        );
    }
    checked.bank = bank.len();
    let model = Bank {
        accounts: ACCOUNTS,
        initial: OPENING,
    };
    verdict("bank", check(&model, &bank), &bank, seed, &mut bad);
    if bad.is_empty() {
        Ok(checked)
    } else {
        Err(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(client: usize, input: KvInput, call: u64, at: u64, result: KvResult) -> KvRecord {
        KvRecord {
            client,
            input,
            call,
            end: KvEnd::Returned { at, result },
        }
    }

    fn value(v: u64) -> KvResult {
        KvResult::Value(Some(v.to_le_bytes().to_vec()))
    }

    fn balances(b: [u64; ACCOUNTS]) -> KvResult {
        KvResult::Values(b.iter().map(|v| Some(v.to_le_bytes().to_vec())).collect())
    }

    fn reg(input: RegisterInput) -> KvInput {
        KvInput::Register(1, input)
    }

    fn transfer(from: usize, to: usize, amount: u64) -> KvInput {
        KvInput::Bank(BankInput::Transfer { from, to, amount })
    }

    /// A linearizable history of both workloads, with an unknown write.
    fn good() -> Vec<KvRecord> {
        let read = KvInput::Bank(BankInput::Read);
        vec![
            done(0, reg(RegisterInput::Read), 0, 10, KvResult::Value(None)),
            done(0, reg(RegisterInput::Write(5)), 20, 30, KvResult::Written),
            KvRecord {
                client: 1,
                input: reg(RegisterInput::Write(6)),
                call: 25,
                end: KvEnd::Unknown,
            },
            done(
                2,
                reg(RegisterInput::Cas { from: 5, to: 7 }),
                40,
                50,
                KvResult::Cas { swapped: true },
            ),
            done(0, reg(RegisterInput::Read), 60, 70, value(7)),
            done(3, transfer(0, 1, 30), 0, 10, KvResult::Transferred),
            done(
                4,
                transfer(2, 3, 101),
                20,
                30,
                KvResult::Refused(KvError::InsufficientFunds {
                    balance: 100,
                    amount: 101,
                }),
            ),
            done(3, read, 40, 50, balances([70, 130, 100, 100, 100])),
        ]
    }

    #[test]
    fn a_linearizable_history_passes() {
        let checked = check_kv(&good(), 1).unwrap();
        assert_eq!((checked.register, checked.bank, checked.unknown), (5, 3, 1));
        assert_eq!((checked.totals, checked.refused), (1, 1));
    }

    #[test]
    fn a_stale_read_is_a_violation() {
        let mut history = good();
        // The last read sees 5, overwritten by the CAS that returned before
        // it was invoked.
        history[4].end = KvEnd::Returned {
            at: 70,
            result: value(5),
        };
        let bad = check_kv(&history, 3).unwrap_err();
        assert!(
            bad[0].contains("register 1: NOT LINEARIZABLE (seed 3)"),
            "{bad:?}"
        );
    }

    #[test]
    fn a_total_not_conserved_and_a_lost_transfer_are_violations() {
        let mut history = good();
        history[7].end = KvEnd::Returned {
            at: 50,
            result: balances([70, 131, 100, 100, 100]),
        };
        let bad = check_kv(&history, 4).unwrap_err();
        assert!(bad.iter().any(|b| b.contains("total 501")), "{bad:?}");
        assert!(
            bad.iter().any(|b| b.contains("bank: NOT LINEARIZABLE")),
            "{bad:?}"
        );
        // Conserved, but without the acknowledged transfer.
        let mut history = good();
        history[7].end = KvEnd::Returned {
            at: 50,
            result: balances([100; ACCOUNTS]),
        };
        let bad = check_kv(&history, 5).unwrap_err();
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert!(
            bad[0].contains("bank: NOT LINEARIZABLE (seed 5)"),
            "{bad:?}"
        );
    }

    #[test]
    fn a_result_of_the_wrong_kind_is_a_violation() {
        let mut history = good();
        history[1].end = KvEnd::Returned {
            at: 30,
            result: KvResult::Cas { swapped: true },
        };
        let bad = check_kv(&history, 6).unwrap_err();
        assert!(bad.iter().any(|b| b.contains("answered Cas")), "{bad:?}");
    }
}
