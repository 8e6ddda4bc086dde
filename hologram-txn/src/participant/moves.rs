//! Moving keys between participants: the source's and the target's side of
//! a hand-off ([`crate::handoff`] describes the protocol and why it is
//! crash-safe).

use super::{ParticipantCore, ParticipantTimer};
use crate::handoff::{HandOffAck, HandedOff, Transfer};
use crate::wire::MAX_MESSAGE_LEN;
use crate::{Key, ShardMap, TxnError, TxnMessage};
use hologram_lattice::wire::Wire;
use hologram_lattice::NodeId;
use std::collections::BTreeMap;

impl ParticipantCore {
    /// The keys transfers and acknowledgements are signed with. A
    /// replicated group's core has none: hand-offs to or from a group are
    /// not built yet, and refused with [`TxnError::InvalidHandOff`].
    fn hand_off_keys(&self) -> Result<&hologram_receipt::KeyPair, TxnError> {
        self.signer.keys().ok_or(TxnError::InvalidHandOff(
            "a replicated group does not hand keys off (not built yet)",
        ))
    }

    /// Starts serving `map` (a split or move of this node's shards) and
    /// returns the keys it no longer owns, with their versions and values,
    /// for the new owner's [`ParticipantCore::absorb`]. From now on requests
    /// for them are refused with [`TxnError::StaleShardMap`]; their data stays
    /// readable here until [`ParticipantCore::forget`]. Refused with
    /// [`TxnError::Conflict`] (retry later) while any leaving key is locked.
    /// Only keys whose owner changes are returned: a split moves only the
    /// split shard's keys above the split point.
    pub fn hand_off(&mut self, map: ShardMap) -> Result<Vec<HandedOff>, TxnError> {
        let moved = self.leaving(&map)?;
        self.install_map(map)?;
        Ok(moved)
    }

    /// The keys held here that `map` places elsewhere, or the conflict with
    /// a transaction that holds one of them locked.
    fn leaving(&self, map: &ShardMap) -> Result<Vec<HandedOff>, TxnError> {
        let leaving =
            self.held_elsewhere(map)
                .map(|(key, version, value)| match self.locks.holder(&key) {
                    Some(holder) => Err(TxnError::Conflict { key, holder }),
                    None => Ok((key, version, value)),
                });
        leaving.collect()
    }

    /// The keys held here that `map` places elsewhere.
    fn held_elsewhere<'a>(&'a self, map: &'a ShardMap) -> impl Iterator<Item = HandedOff> + 'a {
        self.data
            .iter()
            .filter(move |(k, _)| map.node_of(k) != Some(self.id))
            .map(|(k, s)| (k.clone(), s.version, s.value.clone()))
    }

    /// Takes over keys handed off by their previous owner (with `map`, under
    /// which this node owns them), durably, keeping their versions. A key
    /// already held at that version or newer is left as it is, so taking
    /// the same keys again changes nothing.
    pub fn absorb(&mut self, map: ShardMap, entries: Vec<HandedOff>) -> Result<(), TxnError> {
        self.install_map(map)?;
        for (key, version, value) in entries {
            self.check_owned(&key)?;
            if self.data.get(&key).is_none_or(|s| s.version < version) {
                self.put_value(key, version, value)?;
            }
        }
        Ok(())
    }

    /// Drops the data of keys handed off (once their new owner has them).
    /// Keys this node owns again are kept.
    pub fn forget<'a>(&mut self, keys: impl IntoIterator<Item = &'a Key>) {
        for key in keys {
            if !self.owns(key) {
                if let Some(old) = self.data.remove(key) {
                    self.effects.persist.remove.push(old.address);
                }
            }
        }
    }

    /// The source's side of a hand-off over the network: [`hand_off`]
    /// (durably, the map first), then a signed [`Transfer`] to each new
    /// owner, sent again every `handoff_resend_ms` until acknowledged; the
    /// keys are forgotten only on the acknowledgement. Refused with
    /// [`TxnError::Conflict`] while a leaving key is locked, and with
    /// [`TxnError::TooLarge`] when one new owner's keys do not fit one
    /// message (split at a finer point).
    ///
    /// [`hand_off`]: ParticipantCore::hand_off
    pub fn begin_hand_off(&mut self, map: ShardMap) -> Result<usize, TxnError> {
        self.hand_off_keys()?;
        let moved = self.leaving(&map)?;
        let count = moved.len();
        for (target, entries) in group_by_owner(&map, moved) {
            // The size of the message, signature included (64 bytes either way).
            let unsigned = Transfer {
                source: self.id,
                target,
                map: map.clone(),
                entries,
                signature: hologram_receipt::Signature::from_bytes([0; 64]),
            };
            unsigned.check()?;
            let len = TxnMessage::HandOff(Box::new(unsigned)).to_wire()?.len();
            crate::types::bound("hand-off message", len, MAX_MESSAGE_LEN)?;
        }
        self.install_map(map)?;
        self.resend_hand_offs();
        Ok(count)
    }

    /// The keys held here that this node's map places elsewhere: handed off
    /// and not yet acknowledged, grouped by their new owner.
    pub fn pending_hand_offs(&self) -> BTreeMap<NodeId, Vec<HandedOff>> {
        group_by_owner(&self.map, self.held_elsewhere(&self.map))
    }

    /// Whether this node owns `key` under its map.
    pub fn owns(&self, key: &Key) -> bool {
        self.map.node_of(key) == Some(self.id)
    }

    /// The version and value of a key held here (owned, or handed off and
    /// not yet acknowledged).
    pub fn stored(&self, key: &Key) -> Option<(u64, Option<&[u8]>)> {
        self.data.get(key).map(|s| (s.version, s.value.as_deref()))
    }

    /// Sends every pending hand-off and, if there is one, sets the timer to
    /// send it again.
    pub(super) fn resend_hand_offs(&mut self) {
        let pending = self.pending_hand_offs();
        // A group never begins a hand-off (`begin_hand_off` refuses), so it
        // has none pending to sign.
        let Ok(keys) = self.hand_off_keys() else {
            return;
        };
        let keys = keys.clone();
        if pending.is_empty() {
            return;
        }
        for (target, entries) in pending {
            let t = Transfer::sign(&keys, target, self.map.clone(), entries);
            self.effects
                .send
                .push((target, TxnMessage::HandOff(Box::new(t))));
        }
        let resend = self.config.handoff_resend_ms;
        self.effects
            .timers
            .push((resend, ParticipantTimer::HandOff));
    }

    /// The target's side: checks a transfer, takes the keys durably (the map
    /// with them) and returns the signed acknowledgement.
    ///
    /// A first delivery (a map newer than this node's) must be signed by
    /// `from`, the owner of every key under this node's map, and give this
    /// node every key. A repeat (the same map) is acknowledged only if this
    /// node owns and holds every key at that version or newer: it writes
    /// nothing. An older map is refused.
    pub fn receive_hand_off(
        &mut self,
        from: NodeId,
        transfer: Transfer,
    ) -> Result<HandOffAck, TxnError> {
        let invalid = |reason| Err(TxnError::InvalidHandOff(reason));
        self.hand_off_keys()?;
        transfer.check()?;
        if transfer.source != from || transfer.target != self.id {
            return invalid("not from its sender, or not to this node");
        }
        transfer.verify()?;
        let version = transfer.map.version();
        let received = transfer
            .entries
            .iter()
            .map(|(k, v, _)| (k.clone(), *v))
            .collect();
        if version > self.map.version() {
            let rightful = transfer.entries.iter().all(|(key, _, _)| {
                self.map.node_of(key) == Some(from) && transfer.map.node_of(key) == Some(self.id)
            });
            if !rightful {
                return invalid("a key its sender did not own, or this node does not gain");
            }
            self.absorb(transfer.map, transfer.entries)?;
        } else if version == self.map.version() && transfer.map == self.map {
            let held = transfer.entries.iter().all(|(key, v, _)| {
                self.owns(key) && self.data.get(key).is_some_and(|s| s.version >= *v)
            });
            if !held {
                return invalid("a repeat of a hand-off this node does not hold");
            }
        } else {
            return invalid("an older shard map");
        }
        Ok(HandOffAck::sign(
            self.hand_off_keys()?,
            from,
            version,
            received,
        ))
    }

    /// The source's side of an acknowledgement: forgets the keys the new
    /// owner now holds at the version handed off (or newer).
    pub fn hand_off_acknowledged(
        &mut self,
        from: NodeId,
        ack: &HandOffAck,
    ) -> Result<(), TxnError> {
        ack.check()?;
        if ack.target != from || ack.source != self.id {
            return Err(TxnError::InvalidHandOff(
                "not from its sender, or not to this node",
            ));
        }
        ack.verify()?;
        let done: Vec<Key> = ack
            .keys
            .iter()
            .filter(|(key, version)| {
                self.map.node_of(key) == Some(from)
                    && self.data.get(key).is_some_and(|s| s.version <= *version)
            })
            .map(|(key, _)| key.clone())
            .collect();
        self.forget(&done);
        Ok(())
    }
}

/// Entries grouped by the node `map` places each key on (unplaced keys are left out).
fn group_by_owner(
    map: &ShardMap,
    entries: impl IntoIterator<Item = HandedOff>,
) -> BTreeMap<NodeId, Vec<HandedOff>> {
    let mut out: BTreeMap<NodeId, Vec<HandedOff>> = BTreeMap::new();
    for entry in entries {
        if let Some(node) = map.node_of(&entry.0) {
            out.entry(node).or_default().push(entry);
        }
    }
    out
}
