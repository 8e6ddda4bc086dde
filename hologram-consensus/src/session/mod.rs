//! Client sessions: what makes a replicated state machine apply each
//! client command at most once (Raft's client sessions, Ongaro's
//! dissertation §6.3).

mod codec;

use crate::command::Command;
use hologram_lattice::NodeId;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The limits of a [`SessionTable`]. They are part of the state machine's
/// definition: every replica of one machine must use the same ones, or
/// replicas would answer (and apply) differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// The most sessions kept; when a new client comes and the table is
    /// full, the least recently active session is evicted (ties by client
    /// id).
    pub max_sessions: usize,
    /// How far ahead of its first unanswered sequence a client may number
    /// a command: a sequence `≥ first_unanswered + window` is refused. It
    /// bounds the answers kept per session.
    pub window: u64,
    /// A session with no command for this many heights is dropped when the
    /// height that makes it so idle is applied.
    pub expiry_heights: u64,
}

impl Default for SessionLimits {
    /// 4,096 sessions, a window of 1,024 sequences, expiry after 100,000
    /// idle heights.
    fn default() -> Self {
        Self {
            max_sessions: 4096,
            window: 1024,
            expiry_heights: 100_000,
        }
    }
}

/// What the session table says of a decided command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<O> {
    /// New: apply it (then record its answer with [`SessionTable::answer`]).
    Apply,
    /// Applied before: not applied again; the first answer.
    Duplicate(O),
    /// Below the client's first unanswered sequence: not applied (the
    /// client said it holds the answer, which was forgotten).
    Stale,
    /// Too far ahead of the client's first unanswered sequence (at least
    /// [`SessionLimits::window`]): not applied.
    Refused,
}

/// What the table knows of (client, sequence) before it is decided
/// ([`SessionTable::lookup`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup<'a, O> {
    /// Applied, with this answer.
    Answered(&'a O),
    /// Below the client's first unanswered sequence.
    Stale,
    /// Not applied yet (or its session is unknown).
    Unknown,
}

/// One client's session.
#[derive(Debug, Clone)]
struct Session<O> {
    first_unanswered: u64,
    answers: BTreeMap<u64, O>,
    last_active: u64,
}

/// The session table of a replicated state machine: per client (its key),
/// the answers of the applied sequences at or above the client's first
/// unanswered sequence, and the height at which it was last active.
///
/// Fed with every decided command in log order ([`admit`](Self::admit)):
/// the client's first unanswered sequence is raised to the command's
/// (answers below it are dropped); then a sequence below it is
/// [stale](Verdict::Stale), one already answered a
/// [duplicate](Verdict::Duplicate) (carrying the first answer), one at or
/// beyond `first_unanswered + window` [refused](Verdict::Refused), and any
/// other is [applied](Verdict::Apply) and its answer kept. Everything here
/// depends only on the log and the [`SessionLimits`], so every replica keeps
/// the same table: a session idle for [`SessionLimits::expiry_heights`]
/// heights is dropped by [`expire`](Self::expire) (found through an index
/// by last-active height, never a scan), and a new session in a full table
/// evicts the least recently active one, ties broken by client id. Memory
/// is bounded by `max_sessions × window` answers.
///
/// A client whose session was dropped (expired or evicted) starts a new
/// one with its next command; a retry of an answered command that arrives
/// only after that is applied again, as in Raft: clients must not stay idle
/// longer than the expiry with commands unanswered.
///
/// The table is part of the replicated state: a snapshot (#16) must carry
/// it, or a replica restored from one would apply retried commands again.
#[derive(Debug, Clone)]
pub struct SessionTable<O> {
    limits: SessionLimits,
    sessions: HashMap<NodeId, Session<O>>,
    by_activity: BTreeSet<(u64, NodeId)>,
}

impl<O: Clone> SessionTable<O> {
    /// An empty table with these limits.
    pub fn new(limits: SessionLimits) -> Self {
        Self {
            limits,
            sessions: HashMap::new(),
            by_activity: BTreeSet::new(),
        }
    }

    /// The limits.
    pub fn limits(&self) -> SessionLimits {
        self.limits
    }

    /// The number of sessions.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether there is no session.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// The number of answers kept, over all sessions.
    pub fn answers(&self) -> usize {
        self.sessions.values().map(|s| s.answers.len()).sum()
    }

    /// `client`'s first unanswered sequence, if it has a session.
    pub fn first_unanswered(&self, client: &NodeId) -> Option<u64> {
        self.sessions.get(client).map(|s| s.first_unanswered)
    }

    /// What is known of `client`'s command `sequence`, without changing
    /// anything.
    pub fn lookup(&self, client: &NodeId, sequence: u64) -> Lookup<'_, O> {
        let Some(s) = self.sessions.get(client) else {
            return Lookup::Unknown;
        };
        if sequence < s.first_unanswered {
            return Lookup::Stale;
        }
        s.answers
            .get(&sequence)
            .map_or(Lookup::Unknown, Lookup::Answered)
    }

    /// Drops the sessions idle for [`SessionLimits::expiry_heights`] or
    /// more when `height` is applied.
    pub fn expire(&mut self, height: u64) {
        while let Some(&(last, client)) = self.by_activity.first() {
            if height.saturating_sub(last) < self.limits.expiry_heights {
                break;
            }
            self.by_activity.pop_first();
            self.sessions.remove(&client);
        }
    }

    /// The verdict on `command`, decided at `height`, in log order (see
    /// the [type docs](Self)). After [`Verdict::Apply`], the caller applies
    /// it and records the answer with [`answer`](Self::answer).
    pub fn admit(&mut self, height: u64, command: &Command) -> Verdict<O> {
        let client = command.client();
        if !self.sessions.contains_key(&client) {
            while self.sessions.len() >= self.limits.max_sessions.max(1) {
                let Some((_, oldest)) = self.by_activity.pop_first() else {
                    break;
                };
                self.sessions.remove(&oldest);
            }
        }
        let limits = self.limits;
        let by_activity = &mut self.by_activity;
        let session = self.sessions.entry(client).or_insert_with(|| {
            by_activity.insert((height, client));
            Session {
                first_unanswered: 0,
                answers: BTreeMap::new(),
                last_active: height,
            }
        });
        if session.last_active != height {
            by_activity.remove(&(session.last_active, client));
            by_activity.insert((height, client));
            session.last_active = height;
        }
        if command.first_unanswered() > session.first_unanswered {
            session.first_unanswered = command.first_unanswered();
            session.answers = session.answers.split_off(&session.first_unanswered);
        }
        let sequence = command.sequence();
        if sequence < session.first_unanswered {
            return Verdict::Stale;
        }
        if let Some(first) = session.answers.get(&sequence) {
            return Verdict::Duplicate(first.clone());
        }
        if sequence >= session.first_unanswered.saturating_add(limits.window) {
            return Verdict::Refused;
        }
        Verdict::Apply
    }

    /// Records the answer of `command`, applied after [`Verdict::Apply`].
    pub fn answer(&mut self, command: &Command, output: O) {
        if let Some(s) = self.sessions.get_mut(&command.client()) {
            s.answers.insert(command.sequence(), output);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hologram_receipt::KeyPair;
    use proptest::prelude::*;

    fn keys(i: u8) -> KeyPair {
        KeyPair::from_seed([i; 32])
    }

    fn cmd(client: u8, sequence: u64, first: u64) -> Command {
        Command::sign(&keys(client), sequence, first, vec![client]).unwrap()
    }

    fn limits(max_sessions: usize, window: u64, expiry_heights: u64) -> SessionLimits {
        SessionLimits {
            max_sessions,
            window,
            expiry_heights,
        }
    }

    /// Admits and, when told to apply, answers with the sequence.
    fn feed(t: &mut SessionTable<u64>, height: u64, c: &Command) -> Verdict<u64> {
        t.expire(height);
        let v = t.admit(height, c);
        if v == Verdict::Apply {
            t.answer(c, c.sequence().wrapping_mul(10));
        }
        v
    }

    #[test]
    fn duplicates_get_the_first_answer_and_stale_ones_nothing() {
        let mut t = SessionTable::new(SessionLimits::default());
        assert_eq!(feed(&mut t, 0, &cmd(1, 0, 0)), Verdict::Apply);
        assert_eq!(feed(&mut t, 0, &cmd(1, 1, 0)), Verdict::Apply);
        assert_eq!(feed(&mut t, 1, &cmd(1, 0, 0)), Verdict::Duplicate(0));
        assert_eq!(t.lookup(&keys(1).node_id(), 1), Lookup::Answered(&10));
        assert_eq!(t.lookup(&keys(1).node_id(), 2), Lookup::Unknown);
        // The client says it has the answers below 2: they are dropped.
        assert_eq!(feed(&mut t, 2, &cmd(1, 2, 2)), Verdict::Apply);
        assert_eq!(t.answers(), 1);
        assert_eq!(feed(&mut t, 3, &cmd(1, 1, 0)), Verdict::Stale);
        assert_eq!(t.lookup(&keys(1).node_id(), 0), Lookup::Stale);
        assert_eq!(t.first_unanswered(&keys(1).node_id()), Some(2));
        // Another client's numbers are its own.
        assert_eq!(feed(&mut t, 3, &cmd(2, 0, 0)), Verdict::Apply);
    }

    #[test]
    fn sequences_beyond_the_window_are_refused() {
        let mut t = SessionTable::new(limits(8, 4, 100));
        assert_eq!(feed(&mut t, 0, &cmd(1, 3, 0)), Verdict::Apply);
        assert_eq!(feed(&mut t, 0, &cmd(1, 4, 0)), Verdict::Refused);
        assert_eq!(feed(&mut t, 0, &cmd(1, 4, 1)), Verdict::Apply);
        // A jump forward is fine when the client claims its answers.
        assert_eq!(feed(&mut t, 0, &cmd(1, 1_000, 1_000)), Verdict::Apply);
        assert_eq!(
            feed(&mut t, 0, &cmd(1, u64::MAX - 1, u64::MAX - 3)),
            Verdict::Apply
        );
        assert!(t.answers() <= 4);
    }

    #[test]
    fn a_full_table_evicts_the_least_recently_active_then_the_lowest_id() {
        let mut t = SessionTable::new(limits(2, 16, 1_000));
        let (a, b, c) = (keys(1).node_id(), keys(2).node_id(), keys(3).node_id());
        let (low, high) = if a < b { (1u8, 2u8) } else { (2, 1) };
        feed(&mut t, 0, &cmd(1, 0, 0));
        feed(&mut t, 0, &cmd(2, 0, 0));
        // Both last active at height 0: the lower id goes.
        feed(&mut t, 1, &cmd(3, 0, 0));
        assert_eq!(t.len(), 2);
        assert!(t.first_unanswered(&keys(low).node_id()).is_none());
        assert!(t.first_unanswered(&keys(high).node_id()).is_some());
        // The evicted client's retry is applied again (documented).
        assert_eq!(feed(&mut t, 2, &cmd(low, 0, 0)), Verdict::Apply);
        assert!(t.first_unanswered(&keys(high).node_id()).is_none());
        assert!(t.first_unanswered(&c).is_some());
    }

    #[test]
    fn idle_sessions_expire_by_height() {
        let mut t = SessionTable::new(limits(16, 16, 10));
        feed(&mut t, 0, &cmd(1, 0, 0));
        feed(&mut t, 5, &cmd(2, 0, 0));
        t.expire(9);
        assert_eq!(t.len(), 2);
        t.expire(10);
        assert_eq!(t.len(), 1);
        assert!(t.first_unanswered(&keys(1).node_id()).is_none());
        // Activity moves a session's expiry on.
        feed(&mut t, 14, &cmd(2, 1, 0));
        t.expire(23);
        assert_eq!(t.len(), 1);
        t.expire(24);
        assert!(t.is_empty());
    }

    proptest! {
        /// Two tables fed the same log give the same verdicts and keep the
        /// same sessions; answers stay within `max_sessions × window`; a
        /// sequence is applied at most once while its session lives.
        #[test]
        fn replicas_fed_the_same_log_agree(
            log in proptest::collection::vec((0u8..6, 0u64..24, 0u64..24, 0u64..3), 0..300),
        ) {
            let lim = limits(3, 8, 5);
            let (mut a, mut b) = (SessionTable::new(lim), SessionTable::new(lim));
            let mut height = 0;
            // The (client, sequence) applied in each client's live session.
            let mut applied = std::collections::HashSet::new();
            for (client, seq, first, step) in log {
                height += step;
                let c = cmd(client, seq, first.min(seq + 1));
                a.expire(height);
                applied.retain(|(k, _)| a.first_unanswered(k).is_some());
                if a.first_unanswered(&c.client()).is_none() && a.len() >= 3 {
                    // A new session evicts one: forget what it applied.
                    let gone = a.by_activity.first().map(|(_, k)| *k);
                    applied.retain(|(k, _)| Some(*k) != gone);
                }
                let (va, vb) = (feed(&mut a, height, &c), feed(&mut b, height, &c));
                prop_assert_eq!(&va, &vb);
                if va == Verdict::Apply {
                    prop_assert!(applied.insert((c.client(), seq)), "applied twice");
                }
                prop_assert!(a.len() <= 3);
                prop_assert!(a.answers() <= 3 * 8);
                let mut ka: Vec<_> = a.sessions.iter().map(|(k, s)| (*k, s.first_unanswered, s.last_active, s.answers.clone())).collect();
                let mut kb: Vec<_> = b.sessions.iter().map(|(k, s)| (*k, s.first_unanswered, s.last_active, s.answers.clone())).collect();
                ka.sort();
                kb.sort();
                prop_assert_eq!(ka, kb);
                prop_assert_eq!(&a.by_activity, &b.by_activity);
            }
        }
    }
}
