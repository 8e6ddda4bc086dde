//! Bounded memory of what a node has delivered: the ids it must not deliver
//! again ([`SeenIds`]) and the messages it can hand to peers that missed
//! them ([`MessageCache`]).

use super::MessageId;
use hologram_receipt::AuthenticatedMessage;
use std::collections::{BTreeSet, HashMap, VecDeque};

/// The ids of delivered messages, with their issue times, in bounded memory.
///
/// A message is *fresh* when it was issued after the **floor** and no more
/// than `max_age_ms` before now. The floor rises in two ways: entries older
/// than the age window are forgotten (the age check refuses them anyway),
/// and when more than `capacity` ids are held the oldest is forgotten and the
/// floor rises to its issue time. So an id is either remembered or refused as
/// stale: a message is never delivered twice, whatever the memory bound.
#[derive(Debug, Clone)]
pub struct SeenIds {
    by_id: HashMap<MessageId, u64>,
    by_time: BTreeSet<(u64, MessageId)>,
    floor: Option<u64>,
    capacity: usize,
    max_age_ms: u64,
}

impl SeenIds {
    /// An empty set holding at most `capacity` ids (at least 1).
    pub fn new(capacity: usize, max_age_ms: u64) -> Self {
        Self {
            by_id: HashMap::new(),
            by_time: BTreeSet::new(),
            floor: None,
            capacity: capacity.max(1),
            max_age_ms,
        }
    }

    /// Whether `id` is remembered.
    pub fn contains(&self, id: &MessageId) -> bool {
        self.by_id.contains_key(id)
    }

    /// Whether a message issued at `issued_ms` may still be delivered at `now`.
    pub fn is_fresh(&self, issued_ms: u64, now: u64) -> bool {
        issued_ms.saturating_add(self.max_age_ms) >= now && self.floor.is_none_or(|f| issued_ms > f)
    }

    /// Remembers `id`, issued at `issued_ms`, and forgets what the age window
    /// and the capacity no longer allow.
    pub fn insert(&mut self, id: MessageId, issued_ms: u64, now: u64) {
        if self.by_id.insert(id, issued_ms).is_none() {
            self.by_time.insert((issued_ms, id));
        }
        let horizon = now.saturating_sub(self.max_age_ms);
        while let Some(&(t, old)) = self.by_time.first() {
            if t >= horizon && self.by_id.len() <= self.capacity {
                break;
            }
            self.by_time.pop_first();
            self.by_id.remove(&old);
            if t >= horizon {
                self.floor = Some(self.floor.map_or(t, |f| f.max(t)));
            }
        }
    }

    /// The number of ids remembered.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// The last delivered messages (as this node holds them), for answering
/// pulls; the oldest goes when more than `capacity` are held.
#[derive(Debug, Clone)]
pub struct MessageCache {
    messages: HashMap<MessageId, AuthenticatedMessage>,
    order: VecDeque<MessageId>,
    capacity: usize,
}

impl MessageCache {
    /// An empty cache of at most `capacity` messages.
    pub fn new(capacity: usize) -> Self {
        Self {
            messages: HashMap::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    /// Keeps `message` under `id`, evicting the oldest beyond capacity.
    pub fn insert(&mut self, id: MessageId, message: AuthenticatedMessage) {
        if self.capacity == 0 {
            return;
        }
        if self.messages.insert(id, message).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.messages.remove(&old);
            }
        }
    }

    /// The message kept under `id`.
    pub fn get(&self, id: &MessageId) -> Option<&AuthenticatedMessage> {
        self.messages.get(id)
    }

    /// The number of messages kept.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hologram_receipt::KeyPair;
    use proptest::prelude::*;

    fn id(i: u32) -> MessageId {
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&i.to_le_bytes());
        MessageId::from_bytes(b)
    }

    #[test]
    fn old_messages_are_stale_and_forgotten() {
        let mut seen = SeenIds::new(10, 100);
        seen.insert(id(1), 50, 60);
        assert!(seen.contains(&id(1)));
        assert!(seen.is_fresh(50, 150) && !seen.is_fresh(49, 150));
        seen.insert(id(2), 200, 200);
        assert!(!seen.contains(&id(1)) && seen.contains(&id(2)));
    }

    #[test]
    fn cache_keeps_the_newest() {
        let keys = KeyPair::from_seed([1; 32]);
        let msg = AuthenticatedMessage::new(vec![1], &keys).unwrap();
        let mut cache = MessageCache::new(2);
        for i in 0..3 {
            cache.insert(id(i), msg.clone());
        }
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&id(0)).is_none() && cache.get(&id(2)).is_some());
        let mut none = MessageCache::new(0);
        none.insert(id(0), msg);
        assert!(none.is_empty());
    }

    proptest! {
        /// Whatever the sequence of insertions, the set stays within its
        /// capacity, and an id it forgot is never fresh again: no message is
        /// accepted twice.
        #[test]
        fn forgotten_ids_are_never_fresh(
            events in proptest::collection::vec((0u32..64, 0u64..50), 1..200),
            capacity in 1usize..16,
        ) {
            let mut seen = SeenIds::new(capacity, 300);
            let mut now = 0u64;
            let mut delivered: HashMap<MessageId, u64> = HashMap::new();
            for (i, advance) in events {
                now += advance;
                // An id binds its issue time, as a real one does.
                let issued = (u64::from(i) * 7919) % 1000;
                let m = id(i);
                if seen.contains(&m) || !seen.is_fresh(issued, now) {
                    continue;
                }
                // Accepted: it must be the first time for this id.
                prop_assert!(!delivered.contains_key(&m), "id {i} accepted twice");
                delivered.insert(m, issued);
                seen.insert(m, issued, now);
                prop_assert!(seen.len() <= capacity);
            }
            for (m, issued) in delivered {
                prop_assert!(seen.contains(&m) || !seen.is_fresh(issued, now));
            }
        }
    }
}
