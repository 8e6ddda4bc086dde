//! The key-value part of the node's state machine: a command whose payload
//! starts with [`KV_MAGIC`] is a key-value operation ([`KvOp`]), applied to
//! a bounded map of keys to values when its command is applied (so in the
//! decided order, through consensus: a read is linearizable), its result
//! ([`KvResult`]) carried back to the client in the command's [`Ack`].
//! Any other payload is only a log entry, as before.
//!
//! Bank accounts are keys whose value is a balance, 8 bytes little-endian
//! (an absent key holds 0): [`KvOp::Transfer`] moves an amount between two
//! of them atomically, or is refused, and [`KvOp::ReadMany`] reads several
//! keys in one operation.
//!
//! Bounds: keys of at most [`MAX_KV_KEY`] bytes, values of at most
//! [`MAX_KV_VALUE`], at most [`MAX_KV_KEYS`] keys held and
//! [`MAX_KV_READ`] keys in one read; each exceeded is refused with its own
//! [`KvError`]. The decoder refuses trailing bytes and anything out of
//! bounds, and a payload that starts with the magic and does not decode is
//! applied as a refusal ([`KvError::Malformed`]), never acted on.
//!
//! [`Ack`]: super::Ack

use hologram_lattice::wire;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The first bytes of a key-value operation's payload.
pub const KV_MAGIC: &[u8; 4] = b"hKV1";
/// The longest key, in bytes.
pub const MAX_KV_KEY: usize = 64;
/// The longest value, in bytes.
pub const MAX_KV_VALUE: usize = 256;
/// The most keys the map holds.
pub const MAX_KV_KEYS: usize = 4096;
/// The most keys one [`KvOp::ReadMany`] reads (so that the answers of a
/// whole submission of such reads fit in one response).
pub const MAX_KV_READ: usize = 8;

/// The most bytes of an operation after the magic (its largest encoding).
const MAX_OP_BYTES: usize = 4 + 2 * (2 + MAX_KV_KEY) + 2 * (3 + MAX_KV_VALUE) + MAX_KV_READ * 64;

/// A key-value operation, the payload of a command
/// ([`KvOp::encode`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvOp {
    /// The value of `key` ([`KvResult::Value`]).
    Read {
        /// The key.
        key: Vec<u8>,
    },
    /// The values of `keys`, read at one point ([`KvResult::Values`]).
    ReadMany {
        /// The keys (1 to [`MAX_KV_READ`]).
        keys: Vec<Vec<u8>>,
    },
    /// Sets `key` to `value` ([`KvResult::Written`]).
    Write {
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
    },
    /// Sets `key` to `new` if it holds `expected` (`None`: absent)
    /// ([`KvResult::Cas`]).
    Cas {
        /// The key.
        key: Vec<u8>,
        /// The value expected (`None`: the key is absent).
        expected: Option<Vec<u8>>,
        /// The value set.
        new: Vec<u8>,
    },
    /// Moves `amount` from the balance at `from` to the one at `to`, both
    /// or neither ([`KvResult::Transferred`]); refused if `from` holds
    /// less ([`KvError::InsufficientFunds`]).
    Transfer {
        /// The payer's key.
        from: Vec<u8>,
        /// The payee's key.
        to: Vec<u8>,
        /// How much.
        amount: u64,
    },
}

/// What a key-value operation answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvResult {
    /// The value read (`None`: absent).
    Value(Option<Vec<u8>>),
    /// The values read, in the order of the keys.
    Values(Vec<Option<Vec<u8>>>),
    /// The write took effect.
    Written,
    /// Whether the compare-and-set found its expected value (and set the
    /// new one).
    Cas {
        /// Whether it swapped.
        swapped: bool,
    },
    /// The transfer took effect.
    Transferred,
    /// The operation was refused and changed nothing.
    Refused(KvError),
}

/// Why a key-value operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum KvError {
    /// The payload starts with [`KV_MAGIC`] but is no operation (or has
    /// trailing bytes).
    Malformed,
    /// A key is longer than [`MAX_KV_KEY`].
    KeyTooLong {
        /// Its length.
        len: u64,
    },
    /// A value is longer than [`MAX_KV_VALUE`].
    ValueTooLong {
        /// Its length.
        len: u64,
    },
    /// A read names no key, or more than [`MAX_KV_READ`].
    ReadCount {
        /// How many it names.
        count: u64,
    },
    /// The map holds [`MAX_KV_KEYS`] keys: no new one is taken.
    TooManyKeys,
    /// The payer's balance is less than the amount.
    InsufficientFunds {
        /// The payer's balance.
        balance: u64,
        /// The amount asked.
        amount: u64,
    },
    /// An account's value is not a balance (8 bytes).
    NotABalance,
    /// The payee's balance would overflow.
    Overflow,
    /// A transfer from an account to itself.
    SameAccount,
}

impl core::fmt::Display for KvError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            KvError::Malformed => write!(f, "not a key-value operation"),
            KvError::KeyTooLong { len } => {
                write!(f, "a key of {len} bytes (at most {MAX_KV_KEY})")
            }
            KvError::ValueTooLong { len } => {
                write!(f, "a value of {len} bytes (at most {MAX_KV_VALUE})")
            }
            KvError::ReadCount { count } => {
                write!(f, "a read of {count} keys (1 to {MAX_KV_READ})")
            }
            KvError::TooManyKeys => write!(f, "the map holds {MAX_KV_KEYS} keys, the most"),
            KvError::InsufficientFunds { balance, amount } => {
                write!(f, "a transfer of {amount} from a balance of {balance}")
            }
            KvError::NotABalance => write!(f, "an account's value is not 8 bytes"),
            KvError::Overflow => write!(f, "the payee's balance would overflow"),
            KvError::SameAccount => write!(f, "a transfer from an account to itself"),
        }
    }
}

impl std::error::Error for KvError {}

fn check_key(key: &[u8]) -> Result<(), KvError> {
    match key.len() > MAX_KV_KEY {
        true => Err(KvError::KeyTooLong {
            len: key.len() as u64,
        }),
        false => Ok(()),
    }
}

fn check_value(value: &[u8]) -> Result<(), KvError> {
    match value.len() > MAX_KV_VALUE {
        true => Err(KvError::ValueTooLong {
            len: value.len() as u64,
        }),
        false => Ok(()),
    }
}

impl KvOp {
    /// Whether the operation is within the bounds (the refusal if not).
    pub fn check(&self) -> Result<(), KvError> {
        match self {
            KvOp::Read { key } => check_key(key),
            KvOp::ReadMany { keys } => {
                if keys.is_empty() || keys.len() > MAX_KV_READ {
                    return Err(KvError::ReadCount {
                        count: keys.len() as u64,
                    });
                }
                keys.iter().try_for_each(|k| check_key(k))
            }
            KvOp::Write { key, value } => check_key(key).and(check_value(value)),
            KvOp::Cas { key, expected, new } => {
                check_key(key)?;
                expected.as_deref().map_or(Ok(()), check_value)?;
                check_value(new)
            }
            KvOp::Transfer { from, to, .. } => {
                check_key(from)?;
                check_key(to)?;
                match from == to {
                    true => Err(KvError::SameAccount),
                    false => Ok(()),
                }
            }
        }
    }

    /// The payload of a command of this operation: [`KV_MAGIC`], then
    /// its postcard encoding. Refused if out of bounds ([`check`](Self::check)).
    pub fn encode(&self) -> Result<Vec<u8>, KvError> {
        self.check()?;
        wire::encode_into("key-value operation", self, KV_MAGIC.to_vec())
            .map_err(|_| KvError::Malformed)
    }

    /// The operation `payload` holds: `None` if it does not start with
    /// [`KV_MAGIC`] (not a key-value operation); otherwise the operation,
    /// or why it is refused (it does not decode, has trailing bytes or is
    /// out of bounds).
    pub fn decode(payload: &[u8]) -> Option<Result<KvOp, KvError>> {
        let body = payload.strip_prefix(KV_MAGIC)?;
        Some(
            wire::decode::<KvOp>("key-value operation", body, MAX_OP_BYTES)
                .map_err(|_| KvError::Malformed)
                .and_then(|op| op.check().map(|()| op)),
        )
    }
}

/// The map of keys to values the node's machine holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KvMap {
    entries: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// A balance as stored (absent: 0).
fn balance(value: Option<&Vec<u8>>) -> Result<u64, KvError> {
    match value {
        None => Ok(0),
        Some(v) => Ok(u64::from_le_bytes(
            v.as_slice().try_into().map_err(|_| KvError::NotABalance)?,
        )),
    }
}

impl KvMap {
    /// The number of keys held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether `key` can be set: held already, or room for one more.
    fn room_for(&self, key: &[u8]) -> Result<(), KvError> {
        match self.entries.len() >= MAX_KV_KEYS && !self.entries.contains_key(key) {
            true => Err(KvError::TooManyKeys),
            false => Ok(()),
        }
    }

    /// Applies the operation `payload` holds, if it is one.
    pub(crate) fn apply_payload(&mut self, payload: &[u8]) -> Option<KvResult> {
        Some(match KvOp::decode(payload)? {
            Ok(op) => self.apply(op),
            Err(e) => KvResult::Refused(e),
        })
    }

    /// Applies `op` (within the bounds: [`KvOp::check`]).
    pub(crate) fn apply(&mut self, op: KvOp) -> KvResult {
        self.try_apply(op).unwrap_or_else(KvResult::Refused)
    }

    fn try_apply(&mut self, op: KvOp) -> Result<KvResult, KvError> {
        Ok(match op {
            KvOp::Read { key } => KvResult::Value(self.entries.get(&key).cloned()),
            KvOp::ReadMany { keys } => {
                KvResult::Values(keys.iter().map(|k| self.entries.get(k).cloned()).collect())
            }
            KvOp::Write { key, value } => {
                self.room_for(&key)?;
                self.entries.insert(key, value);
                KvResult::Written
            }
            KvOp::Cas { key, expected, new } => {
                let swapped = self.entries.get(&key) == expected.as_ref();
                if swapped {
                    self.room_for(&key)?;
                    self.entries.insert(key, new);
                }
                KvResult::Cas { swapped }
            }
            KvOp::Transfer { from, to, amount } => {
                if from == to {
                    return Err(KvError::SameAccount);
                }
                let payer = balance(self.entries.get(&from))?;
                let payee = balance(self.entries.get(&to))?;
                if payer < amount {
                    return Err(KvError::InsufficientFunds {
                        balance: payer,
                        amount,
                    });
                }
                let payee = payee.checked_add(amount).ok_or(KvError::Overflow)?;
                let new_keys = [&from, &to]
                    .iter()
                    .filter(|k| !self.entries.contains_key(k.as_slice()))
                    .count();
                if self.entries.len() + new_keys > MAX_KV_KEYS {
                    return Err(KvError::TooManyKeys);
                }
                self.entries
                    .insert(from, (payer - amount).to_le_bytes().to_vec());
                self.entries.insert(to, payee.to_le_bytes().to_vec());
                KvResult::Transferred
            }
        })
    }

    /// The map's bytes in a snapshot: the postcard encoding of its
    /// (key, value) pairs in key order.
    pub(crate) fn snapshot(&self) -> Result<Vec<u8>, String> {
        let pairs: Vec<(&[u8], &[u8])> = (self.entries.iter())
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
            .collect();
        wire::encode("key-value map", &pairs).map_err(|e| e.to_string())
    }

    /// The map `bytes` hold ([`snapshot`](Self::snapshot)'s): refused if
    /// it does not decode, has trailing bytes, holds more than
    /// [`MAX_KV_KEYS`] keys, a key or value out of bounds, or keys out of
    /// order or repeated.
    pub(crate) fn from_snapshot(bytes: &[u8]) -> Result<Self, String> {
        let max = MAX_KV_KEYS * (MAX_KV_KEY + MAX_KV_VALUE + 4) + 8;
        let pairs: Vec<(&[u8], &[u8])> =
            wire::decode("key-value map", bytes, max).map_err(|e| e.to_string())?;
        wire::check_count("key-value keys", pairs.len(), MAX_KV_KEYS).map_err(|e| e.to_string())?;
        let mut entries = BTreeMap::new();
        let mut last: Option<&[u8]> = None;
        for (key, value) in pairs {
            check_key(key)
                .and(check_value(value))
                .map_err(|e| e.to_string())?;
            if last.is_some_and(|l| l >= key) {
                return Err("key-value map keys out of order or repeated".into());
            }
            last = Some(key);
            entries.insert(key.to_vec(), value.to_vec());
        }
        Ok(Self { entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..=max)
    }

    fn any_op() -> impl Strategy<Value = KvOp> {
        let key = || any_bytes(MAX_KV_KEY);
        let value = || any_bytes(MAX_KV_VALUE);
        prop_oneof![
            key().prop_map(|key| KvOp::Read { key }),
            proptest::collection::vec(key(), 1..=MAX_KV_READ)
                .prop_map(|keys| KvOp::ReadMany { keys }),
            (key(), value()).prop_map(|(key, value)| KvOp::Write { key, value }),
            (key(), proptest::option::of(value()), value())
                .prop_map(|(key, expected, new)| KvOp::Cas { key, expected, new }),
            (key(), key(), any::<u64>())
                .prop_filter("two accounts", |(a, b, _)| a != b)
                .prop_map(|(from, to, amount)| KvOp::Transfer { from, to, amount }),
        ]
    }

    fn write(key: &str, value: &[u8]) -> KvOp {
        KvOp::Write {
            key: key.into(),
            value: value.to_vec(),
        }
    }

    fn transfer(from: &str, to: &str, amount: u64) -> KvOp {
        KvOp::Transfer {
            from: from.into(),
            to: to.into(),
            amount,
        }
    }

    #[test]
    fn reads_writes_and_compare_and_set() {
        let mut map = KvMap::default();
        let read = |key: &str| KvOp::Read { key: key.into() };
        assert_eq!(map.apply(read("a")), KvResult::Value(None));
        assert_eq!(map.apply(write("a", b"1")), KvResult::Written);
        assert_eq!(map.apply(read("a")), KvResult::Value(Some(b"1".to_vec())));
        let cas = |expected: Option<&[u8]>, new: &[u8]| KvOp::Cas {
            key: b"a".to_vec(),
            expected: expected.map(<[u8]>::to_vec),
            new: new.to_vec(),
        };
        assert_eq!(map.apply(cas(None, b"2")), KvResult::Cas { swapped: false });
        assert_eq!(
            map.apply(cas(Some(b"0"), b"2")),
            KvResult::Cas { swapped: false }
        );
        assert_eq!(
            map.apply(cas(Some(b"1"), b"2")),
            KvResult::Cas { swapped: true }
        );
        assert_eq!(
            map.apply(KvOp::ReadMany {
                keys: vec![b"a".to_vec(), b"b".to_vec()]
            }),
            KvResult::Values(vec![Some(b"2".to_vec()), None])
        );
        let new_key = KvOp::Cas {
            key: b"b".to_vec(),
            expected: None,
            new: b"x".to_vec(),
        };
        assert_eq!(map.apply(new_key), KvResult::Cas { swapped: true });
    }

    #[test]
    fn transfers_move_money_or_nothing() {
        let mut map = KvMap::default();
        map.apply(write("a", &10u64.to_le_bytes()));
        assert_eq!(map.apply(transfer("a", "b", 4)), KvResult::Transferred);
        let balances = map.apply(KvOp::ReadMany {
            keys: vec![b"a".to_vec(), b"b".to_vec()],
        });
        assert_eq!(
            balances,
            KvResult::Values(vec![
                Some(6u64.to_le_bytes().to_vec()),
                Some(4u64.to_le_bytes().to_vec())
            ])
        );
        let before = map.clone();
        assert_eq!(
            map.apply(transfer("a", "b", 7)),
            KvResult::Refused(KvError::InsufficientFunds {
                balance: 6,
                amount: 7
            })
        );
        assert_eq!(
            map.apply(transfer("a", "a", 1)),
            KvResult::Refused(KvError::SameAccount)
        );
        map.apply(write("c", b"not a balance"));
        assert_eq!(
            map.apply(transfer("c", "a", 1)),
            KvResult::Refused(KvError::NotABalance)
        );
        map.apply(write("m", &u64::MAX.to_le_bytes()));
        assert_eq!(
            map.apply(transfer("a", "m", 1)),
            KvResult::Refused(KvError::Overflow)
        );
        map.entries.remove(b"c".as_slice());
        map.entries.remove(b"m".as_slice());
        assert_eq!(map, before, "refusals change nothing");
    }

    #[test]
    fn bounds_are_refused_each_with_its_error() {
        let long_key = vec![0u8; MAX_KV_KEY + 1];
        let long_value = vec![0u8; MAX_KV_VALUE + 1];
        let op = KvOp::Read {
            key: long_key.clone(),
        };
        let err = KvError::KeyTooLong {
            len: MAX_KV_KEY as u64 + 1,
        };
        assert_eq!(op.encode(), Err(err));
        let op = KvOp::Write {
            key: b"k".to_vec(),
            value: long_value.clone(),
        };
        assert_eq!(
            op.encode(),
            Err(KvError::ValueTooLong {
                len: MAX_KV_VALUE as u64 + 1
            })
        );
        let too_many = KvOp::ReadMany {
            keys: vec![b"k".to_vec(); MAX_KV_READ + 1],
        };
        assert_eq!(
            too_many.encode(),
            Err(KvError::ReadCount {
                count: MAX_KV_READ as u64 + 1
            })
        );
        assert_eq!(
            KvOp::ReadMany { keys: vec![] }.encode(),
            Err(KvError::ReadCount { count: 0 })
        );
        // An out-of-bounds operation a client encoded by hand is refused
        // when applied, and changes nothing.
        let mut payload = KV_MAGIC.to_vec();
        payload.extend(wire::encode("op", &op).unwrap());
        let mut map = KvMap::default();
        assert_eq!(
            map.apply_payload(&payload),
            Some(KvResult::Refused(KvError::ValueTooLong {
                len: MAX_KV_VALUE as u64 + 1
            }))
        );
        assert_eq!(map.len(), 0);
        assert_eq!(map.apply_payload(b"plain"), None, "not an operation");
        // The number of keys.
        for i in 0..MAX_KV_KEYS {
            let key = (i as u32).to_be_bytes().to_vec();
            assert_eq!(
                map.apply(KvOp::Write { key, value: vec![] }),
                KvResult::Written
            );
        }
        assert_eq!(
            map.apply(write("new", b"v")),
            KvResult::Refused(KvError::TooManyKeys)
        );
        let key = 7u32.to_be_bytes().to_vec();
        assert_eq!(
            map.apply(KvOp::Write {
                key,
                value: b"held".to_vec()
            }),
            KvResult::Written,
            "a held key may change"
        );
        let bytes = map.snapshot().unwrap();
        assert_eq!(KvMap::from_snapshot(&bytes).unwrap(), map);
    }

    #[test]
    fn snapshots_refuse_what_the_map_could_not_hold() {
        let pairs = |ps: &[(&[u8], &[u8])]| wire::encode("m", &ps.to_vec()).unwrap();
        assert!(KvMap::from_snapshot(&pairs(&[(b"a", b"1"), (b"b", b"2")])).is_ok());
        assert!(KvMap::from_snapshot(&pairs(&[(b"b", b"1"), (b"a", b"2")])).is_err());
        assert!(KvMap::from_snapshot(&pairs(&[(b"a", b"1"), (b"a", b"2")])).is_err());
        let long = vec![1u8; MAX_KV_VALUE + 1];
        assert!(KvMap::from_snapshot(&pairs(&[(b"a", &long)])).is_err());
        let mut trailing = pairs(&[(b"a", b"1")]);
        trailing.push(0);
        assert!(KvMap::from_snapshot(&trailing).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn operations_round_trip(op in any_op()) {
            let payload = op.encode().unwrap();
            prop_assert!(payload.len() <= KV_MAGIC.len() + MAX_OP_BYTES);
            prop_assert_eq!(KvOp::decode(&payload), Some(Ok(op)));
        }

        #[test]
        fn the_decoder_refuses_trailing_bytes(op in any_op(), extra in any_bytes(8)) {
            prop_assume!(!extra.is_empty());
            let mut payload = op.encode().unwrap();
            payload.extend(extra);
            prop_assert_eq!(KvOp::decode(&payload), Some(Err(KvError::Malformed)));
        }

        #[test]
        fn garbage_is_refused_or_within_bounds(bytes in any_bytes(512)) {
            let mut payload = KV_MAGIC.to_vec();
            payload.extend(bytes);
            if let Some(Ok(op)) = KvOp::decode(&payload) {
                prop_assert!(op.check().is_ok());
                prop_assert_eq!(KvOp::decode(&op.encode().unwrap()), Some(Ok(op)));
            }
        }

        #[test]
        fn snapshots_round_trip(ops in proptest::collection::vec(any_op(), 0..32)) {
            let mut map = KvMap::default();
            for op in ops {
                map.apply(op);
            }
            let bytes = map.snapshot().unwrap();
            prop_assert_eq!(KvMap::from_snapshot(&bytes).unwrap(), map);
        }
    }
}
