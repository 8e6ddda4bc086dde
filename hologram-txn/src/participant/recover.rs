//! Rebuilding a participant from its durable records after a restart.

use super::records::{self, Record};
use super::{ParticipantConfig, ParticipantCore, Signer, Stored};
use crate::sharding::ShardMap;
use crate::TxnError;
use hologram_cam::Store;

impl ParticipantCore {
    /// The participant rebuilt from its durable `records` (see
    /// [`records`](crate::ParticipantRecord)); `map` serves until a newer one is found among them.
    /// Stale records found are queued for removal in the effects.
    pub fn recover(
        signer: impl Into<Signer>,
        config: ParticipantConfig,
        map: ShardMap,
        records: impl IntoIterator<Item = Record>,
    ) -> Result<Self, TxnError> {
        let mut core = Self::blank(signer.into(), config, map);
        let mut prepared = Vec::new();
        for record in records {
            let address = record.to_object()?.address();
            match record {
                Record::Value {
                    key,
                    version,
                    value,
                } => {
                    let stale = match core.data.get(&key) {
                        Some(old) if old.version >= version => Some(address),
                        _ => {
                            let stored = Stored {
                                version,
                                value,
                                address,
                            };
                            core.data.insert(key, stored).map(|old| old.address)
                        }
                    };
                    core.effects.persist.remove.extend(stale);
                }
                Record::Prepared { request } => prepared.push((request, address)),
                Record::Outcome { txn, decision } => {
                    core.outcomes.insert(txn, decision);
                }
                Record::Map(map) => {
                    let stale = if core.map_address.is_none() || map.version() > core.map.version()
                    {
                        core.map = map;
                        core.map_address.replace(address)
                    } else {
                        Some(address)
                    };
                    core.effects.persist.remove.extend(stale);
                }
            }
        }
        let mut in_doubt = 0u64;
        for (request, address) in prepared {
            if core.outcomes.contains_key(&request.txn) {
                core.effects.persist.remove.push(address);
                continue;
            }
            tracing::warn!(participant = %core.id, txn = ?request.txn,
                           "recovered a prepared transaction in doubt: held until decided");
            in_doubt += 1;
            let writes = core.writes(&request)?;
            core.hold(request, writes, address)?;
        }
        ::metrics::counter!("hologram_txn_in_doubt_total").increment(in_doubt);
        tracing::info!(participant = %core.id, values = core.data.len(),
                       decisions = core.outcomes.len(), in_doubt, "participant recovered");
        Ok(core)
    }

    /// The participant `signer` serves from `store`: recovered from what the
    /// store holds (prepared transactions, decisions, values, its newest
    /// map), or new on an empty store.
    pub async fn open<S: Store + ?Sized>(
        signer: impl Into<Signer>,
        config: ParticipantConfig,
        map: ShardMap,
        store: &S,
    ) -> Result<Self, TxnError> {
        let records = records::load_records(store).await?;
        if records.is_empty() {
            Self::new(signer, config, map)
        } else {
            Self::recover(signer, config, map, records)
        }
    }
}
