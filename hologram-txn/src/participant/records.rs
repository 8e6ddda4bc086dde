//! What a participant makes durable, as objects in its [`Store`].

use crate::receipts::{Decision, PrepareRequest};
use crate::sharding::ShardMap;
use crate::types::{bound, MAX_VALUE_LEN};
use crate::wire::MAX_MESSAGE_LEN;
use crate::{Key, TxnError, TxnId};
use hologram_cam::{Object, Store};
use hologram_lattice::wire;
use serde::{Deserialize, Serialize};

/// The prefix of every record object.
pub const RECORD_TAG: &[u8] = b"hologram txn-record v1\n";

/// How many addresses recovery reads per scan page.
pub const SCAN_PAGE: usize = 1024;

/// The longest record object.
pub const MAX_RECORD_LEN: usize = RECORD_TAG.len() + MAX_MESSAGE_LEN;

/// A durable participant record (see the module docs).
///
/// The store is content-addressed, so a record cannot be put "at" a name:
/// each record is an object whose bytes are `"hologram txn-record v1\n" ‖
/// postcard(record)`, and the participant remembers the address of every live
/// record so that it can remove it once superseded. On restart it scans the
/// store in pages of [`SCAN_PAGE`] addresses (bounded memory per page),
/// decodes every object that starts with the prefix (others are skipped, so
/// the store may be shared), and rebuilds its state:
///
/// - `Value { key, version, value }`: the newest version of each key wins;
///   older ones left by a crash between a commit and its clean-up are removed.
/// - `Prepared { request }`: a prepared transaction, its locks re-taken —
///   unless an `Outcome` for it exists (then it is stale and removed).
/// - `Outcome { txn, decision }`: the primary-signed decision this participant
///   applied (kept to answer repeated requests and queries idempotently).
/// - `Map(ShardMap)`: the newest shard map this participant serves.
///
/// A commit is one atomic `put_batch` (the outcome and every new value), then
/// the removal of the superseded records; a crash between the two leaves only
/// records that recovery recognises as stale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// A version of a key's value (`None`: deleted).
    Value {
        /// The key.
        key: Key,
        /// Its version, counting commits that wrote it.
        version: u64,
        /// The value.
        value: Option<Vec<u8>>,
    },
    /// A prepared transaction.
    Prepared {
        /// What was prepared.
        request: PrepareRequest,
    },
    /// A decided transaction.
    Outcome {
        /// The transaction.
        txn: TxnId,
        /// The primary's decision.
        decision: Decision,
    },
    /// The shard map this participant serves.
    Map(ShardMap),
}

impl Record {
    /// The record as a store object.
    pub fn to_object(&self) -> Result<Object, TxnError> {
        let bytes = wire::encode_into("participant record", self, RECORD_TAG.to_vec())?;
        Ok(Object::new(bytes))
    }

    /// The record in `object`: `None` when the object is not a record,
    /// an error when it is one that does not decode or breaks a bound.
    pub fn from_object(object: &Object) -> Option<Result<Record, TxnError>> {
        let body = object.data().strip_prefix(RECORD_TAG)?;
        Some(Self::decode(body))
    }

    fn decode(body: &[u8]) -> Result<Record, TxnError> {
        let record: Record = wire::decode("participant record", body, MAX_MESSAGE_LEN)?;
        match &record {
            Record::Value { key, value, .. } => {
                key.check()?;
                bound("value", value.as_ref().map_or(0, Vec::len), MAX_VALUE_LEN)?;
            }
            Record::Prepared { request } => request.check()?,
            Record::Outcome { decision, .. } => decision.check()?,
            Record::Map(map) => map.check()?,
        }
        Ok(record)
    }
}

/// Every record in `store`, read page by page. A record object that does
/// not decode is an error (the store's integrity check makes that a bug or
/// a foreign writer, never a torn write).
pub async fn load_records<S: Store + ?Sized>(store: &S) -> Result<Vec<Record>, TxnError> {
    let mut records = Vec::new();
    let mut after = None;
    loop {
        let page = store.scan(after, SCAN_PAGE).await?;
        let Some(&last) = page.last() else {
            return Ok(records);
        };
        after = Some(last);
        for address in page {
            if let Some(object) = store.get(&address).await? {
                if let Some(record) = Record::from_object(&object) {
                    records.push(record?);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn records_round_trip_and_foreign_objects_are_skipped() {
        let r = Record::Value {
            key: Key::new(b"k".to_vec()).unwrap(),
            version: 3,
            value: Some(vec![1, 2]),
        };
        let object = r.to_object().unwrap();
        assert_eq!(Record::from_object(&object), Some(Ok(r)));
        assert_eq!(
            Record::from_object(&Object::new(b"not a record".to_vec())),
            None
        );
    }

    proptest! {
        #[test]
        fn garbage_records_are_errors_not_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut bytes = RECORD_TAG.to_vec();
            bytes.extend_from_slice(&body);
            let _ = Record::from_object(&Object::new(bytes));
        }

        #[test]
        fn value_records_round_trip(key in proptest::collection::vec(any::<u8>(), 1..64),
                                    version in any::<u64>(),
                                    value in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..256))) {
            let r = Record::Value { key: Key::new(key).unwrap(), version, value };
            prop_assert_eq!(Record::from_object(&r.to_object().unwrap()), Some(Ok(r)));
        }
    }
}
