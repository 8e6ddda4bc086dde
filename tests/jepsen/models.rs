//! Sequential models for the checker: an append-only log (the node's
//! `CommandList` today), a register (read, write, compare-and-set) and a bank
//! (transfers between accounts, the total conserved), for the key-value
//! workloads.

use super::checker::Model;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// An append-only log of `u64` values: an append answers the position its
/// value took; a read answers the whole log.
pub struct AppendLog;

/// What a log operation asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogInput {
    /// Append this value.
    Append(u64),
    /// Read the whole log.
    Read,
}

/// What a log operation answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogOutput {
    /// The value was appended at this position.
    Appended {
        /// Its position (0 first).
        position: u64,
    },
    /// The log, in order.
    Read(Vec<u64>),
}

/// A log as a persistent list (cloned in O(1), shared between the
/// checker's memoised states), with its length and a running hash.
#[derive(Clone, Default)]
pub struct LogState {
    len: u64,
    hash: u64,
    last: Option<Arc<Entry>>,
}

struct Entry {
    value: u64,
    before: Option<Arc<Entry>>,
}

impl Drop for Entry {
    // Iterative, so that dropping a long log does not recurse.
    fn drop(&mut self) {
        let mut next = self.before.take();
        while let Some(entry) = next {
            next = match Arc::try_unwrap(entry) {
                Ok(mut owned) => owned.before.take(),
                Err(_) => None,
            };
        }
    }
}

impl LogState {
    fn push(&self, value: u64) -> LogState {
        LogState {
            len: self.len + 1,
            hash: (self.hash.rotate_left(7) ^ value).wrapping_mul(0x0000_0100_0000_01b3),
            last: Some(Arc::new(Entry {
                value,
                before: self.last.clone(),
            })),
        }
    }

    /// The values, last first.
    fn rev_values(&self) -> impl Iterator<Item = u64> + '_ {
        let mut at = self.last.as_deref();
        std::iter::from_fn(move || {
            let entry = at?;
            at = entry.before.as_deref();
            Some(entry.value)
        })
    }

    /// The values, in order.
    pub fn values(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.rev_values().collect();
        v.reverse();
        v
    }
}

impl PartialEq for LogState {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len
            && self.hash == other.hash
            && match (&self.last, &other.last) {
                (Some(a), Some(b)) if Arc::ptr_eq(a, b) => true,
                _ => self.rev_values().eq(other.rev_values()),
            }
    }
}

impl Eq for LogState {}

impl Hash for LogState {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.len, self.hash).hash(state);
    }
}

impl fmt::Debug for LogState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut tail: Vec<u64> = self.rev_values().take(8).collect();
        tail.reverse();
        let more = if self.len > 8 { "…, " } else { "" };
        write!(f, "log of {}: [{more}{tail:?}]", self.len)
    }
}

impl Model for AppendLog {
    type State = LogState;
    type Input = LogInput;
    type Output = LogOutput;

    fn init(&self) -> LogState {
        LogState::default()
    }

    fn step(
        &self,
        state: &LogState,
        input: &LogInput,
        output: Option<&LogOutput>,
    ) -> Option<LogState> {
        match (input, output) {
            (LogInput::Append(v), None) => Some(state.push(*v)),
            (LogInput::Append(v), Some(LogOutput::Appended { position })) => {
                (*position == state.len).then(|| state.push(*v))
            }
            (LogInput::Read, None) => Some(state.clone()),
            (LogInput::Read, Some(LogOutput::Read(log))) => (log.len() as u64 == state.len
                && log.iter().rev().copied().eq(state.rev_values()))
            .then(|| state.clone()),
            _ => None,
        }
    }
}

/// A register of `u64`, starting at `initial`.
pub struct Register {
    /// Its value before any write.
    pub initial: u64,
}

/// What a register operation asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegisterInput {
    /// Read the value.
    Read,
    /// Write this value.
    Write(u64),
    /// Set `to` if the value is `from`.
    Cas {
        /// The value expected.
        from: u64,
        /// The value set.
        to: u64,
    },
}

/// What a register operation answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegisterOutput {
    /// The value read.
    Read(u64),
    /// The write took effect.
    Written,
    /// Whether the compare-and-set found its value (and set it).
    Cas(bool),
}

impl Model for Register {
    type State = u64;
    type Input = RegisterInput;
    type Output = RegisterOutput;

    fn init(&self) -> u64 {
        self.initial
    }

    fn step(
        &self,
        state: &u64,
        input: &RegisterInput,
        output: Option<&RegisterOutput>,
    ) -> Option<u64> {
        let (after, answer) = match *input {
            RegisterInput::Read => (*state, RegisterOutput::Read(*state)),
            RegisterInput::Write(v) => (v, RegisterOutput::Written),
            RegisterInput::Cas { from, to } if from == *state => (to, RegisterOutput::Cas(true)),
            RegisterInput::Cas { .. } => (*state, RegisterOutput::Cas(false)),
        };
        output.is_none_or(|o| *o == answer).then_some(after)
    }
}

/// Accounts of a bank, each starting with `initial`: transfers move money
/// between them when the payer has enough, so the total is conserved.
pub struct Bank {
    /// How many accounts.
    pub accounts: usize,
    /// Each account's opening balance.
    pub initial: u64,
}

/// What a bank operation asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BankInput {
    /// Move `amount` from account `from` to account `to`, if `from` has it.
    Transfer {
        /// The payer.
        from: usize,
        /// The payee.
        to: usize,
        /// How much.
        amount: u64,
    },
    /// Read every balance.
    Read,
}

/// What a bank operation answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BankOutput {
    /// Whether the transfer was made.
    Transferred(bool),
    /// Every balance, by account.
    Read(Vec<u64>),
}

impl Model for Bank {
    type State = Vec<u64>;
    type Input = BankInput;
    type Output = BankOutput;

    fn init(&self) -> Vec<u64> {
        vec![self.initial; self.accounts]
    }

    fn step(
        &self,
        state: &Vec<u64>,
        input: &BankInput,
        output: Option<&BankOutput>,
    ) -> Option<Vec<u64>> {
        let (after, answer) = match *input {
            BankInput::Read => (state.clone(), BankOutput::Read(state.clone())),
            BankInput::Transfer { from, to, amount } => {
                let made =
                    from != to && from < state.len() && to < state.len() && state[from] >= amount;
                let mut after = state.clone();
                if made {
                    after[from] -= amount;
                    after[to] += amount;
                }
                (after, BankOutput::Transferred(made))
            }
        };
        output.is_none_or(|o| *o == answer).then_some(after)
    }
}
