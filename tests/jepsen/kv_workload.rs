//! The key-value workloads, through the node's key-value state machine
//! (`hologram::node::KvOp`): a register workload (reads, writes and
//! compare-and-sets of [`REGISTERS`] keys holding `u64`s, absent = 0) and a
//! bank workload (transfers between [`ACCOUNTS`] accounts opened with
//! [`OPENING`] each, and reads of every balance in one operation). Every
//! operation is recorded with its invocation and completion, unknown
//! outcomes kept ([`KvRecord`]); `verify_kv` checks them.

use super::models::{BankInput, RegisterInput};
use hologram::node::{KvOp, KvResult};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;

/// The register keys.
pub const REGISTERS: usize = 3;
/// The bank's accounts.
pub const ACCOUNTS: usize = 5;
/// Each account's opening balance.
pub const OPENING: u64 = 100;

/// The key of register `i`.
pub fn register_key(i: usize) -> Vec<u8> {
    format!("jepsen/register/{i}").into_bytes()
}

/// The key of account `i`.
pub fn account_key(i: usize) -> Vec<u8> {
    format!("jepsen/account/{i}").into_bytes()
}

/// What a key-value operation of the workload asks, in the models' terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvInput {
    /// An operation on register `key`.
    Register(usize, RegisterInput),
    /// A bank operation.
    Bank(BankInput),
}

impl KvInput {
    /// The node's operation.
    pub fn op(&self) -> KvOp {
        let value = |v: u64| v.to_le_bytes().to_vec();
        match self {
            KvInput::Register(k, RegisterInput::Read) => KvOp::Read {
                key: register_key(*k),
            },
            KvInput::Register(k, RegisterInput::Write(v)) => KvOp::Write {
                key: register_key(*k),
                value: value(*v),
            },
            // 0 is the register's initial value: the key absent (the
            // workload never writes 0).
            KvInput::Register(k, RegisterInput::Cas { from, to }) => KvOp::Cas {
                key: register_key(*k),
                expected: (*from != 0).then(|| value(*from)),
                new: value(*to),
            },
            KvInput::Bank(BankInput::Transfer { from, to, amount }) => KvOp::Transfer {
                from: account_key(*from),
                to: account_key(*to),
                amount: *amount,
            },
            KvInput::Bank(BankInput::Read) => KvOp::ReadMany {
                keys: (0..ACCOUNTS).map(account_key).collect(),
            },
        }
    }
}

/// How a key-value operation ended for its client.
#[derive(Clone, Debug, PartialEq)]
pub enum KvEnd {
    /// Applied, with this result, acknowledged at `at`.
    Returned {
        /// When.
        at: u64,
        /// What the node's machine answered.
        result: KvResult,
    },
    /// Decided and never applied.
    NotApplied,
    /// Timed out or failed on the way at every node tried.
    Unknown,
}

/// One key-value operation of the workload.
#[derive(Clone, Debug)]
pub struct KvRecord {
    /// The client.
    pub client: usize,
    /// What it asked.
    pub input: KvInput,
    /// When it was first submitted.
    pub call: u64,
    /// How it ended.
    pub end: KvEnd,
}

/// A client's next operation: `fresh` is a value never used before (≥ 1).
/// A register client compare-and-sets from the last value it saw.
pub fn next_input(
    rng: &mut ChaCha8Rng,
    bank: bool,
    fresh: u64,
    seen: &HashMap<usize, u64>,
) -> KvInput {
    if bank {
        if rng.random_bool(0.3) {
            return KvInput::Bank(BankInput::Read);
        }
        let from = rng.random_range(0..ACCOUNTS);
        let to = (from + rng.random_range(1..ACCOUNTS)) % ACCOUNTS;
        return KvInput::Bank(BankInput::Transfer {
            from,
            to,
            amount: rng.random_range(1..=40),
        });
    }
    let key = rng.random_range(0..REGISTERS);
    KvInput::Register(
        key,
        match rng.random_range(0..10) {
            0..4 => RegisterInput::Read,
            4..7 => RegisterInput::Write(fresh),
            _ => RegisterInput::Cas {
                from: seen.get(&key).copied().unwrap_or(0),
                to: fresh,
            },
        },
    )
}

/// What a client learns of a register from an acknowledged operation.
pub fn observe(seen: &mut HashMap<usize, u64>, input: &KvInput, result: &KvResult) {
    let KvInput::Register(key, input) = input else {
        return;
    };
    let now = match (input, result) {
        (RegisterInput::Read, KvResult::Value(v)) => decode_u64(v.as_deref()),
        (RegisterInput::Write(v), KvResult::Written) => Some(*v),
        (RegisterInput::Cas { to, .. }, KvResult::Cas { swapped: true }) => Some(*to),
        _ => None,
    };
    if let Some(v) = now {
        seen.insert(*key, v);
    }
}

/// A register's or an account's value as a `u64` (absent: 0); `None` if
/// it is not 8 bytes.
pub fn decode_u64(value: Option<&[u8]>) -> Option<u64> {
    match value {
        None => Some(0),
        Some(v) => Some(u64::from_le_bytes(v.try_into().ok()?)),
    }
}
