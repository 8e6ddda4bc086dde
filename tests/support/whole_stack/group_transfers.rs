//! The transfers over the replicated shard groups (see `groups.rs`): each
//! driven step by step by its coordinator, one call a tick, through the
//! nemesis; a coordinator that stops (at a seed-chosen step, or because its
//! node crashed) leaves its transfer to the recovery process, which settles
//! it from the primary group's replicated decision (`settle`).

use super::groups::ShardGroups;
use hologram_lattice::NodeId;
use hologram_receipt::{Purpose, Receipt};
use hologram_txn::{
    settle, Decision, Op, Participant, PrepareRequest, ReplicatedParticipant, SignedReceipt,
    TxnError, TxnId,
};
use rand::RngExt;

/// Transfers a coordinator leaves behind wait this many ticks for recovery.
const SETTLE_AFTER: u64 = 5;

/// Where a transfer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    Prepare(usize),
    Decide,
    Resolve(usize),
    OnePhase,
    Finished,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    Running,
    /// Its coordinator stopped at this tick.
    Orphaned(u64),
    Done,
}

/// One transfer and what its coordinator holds.
#[derive(Debug, Clone)]
pub(super) struct Transfer {
    pub txn: TxnId,
    pub coordinator: NodeId,
    pub from: usize,
    pub to: usize,
    pub amount: i64,
    /// Each participant group's request, in the order prepared.
    pub requests: Vec<(usize, PrepareRequest)>,
    pub primary: usize,
    next: Step,
    /// Steps completed (prepares, decision, resolves), and the count at
    /// which the coordinator stops, if it does.
    steps: usize,
    crash_at: Option<usize>,
    pub votes: Vec<SignedReceipt>,
    refused: bool,
    decision: Option<Decision>,
    pub state: State,
}

/// A coordinator's call to a group, through the nemesis.
enum Link {
    Up,
    Cut,
    RequestLost,
    AnswerLost,
}

impl ShardGroups {
    fn link(&self, from: NodeId, g: usize) -> Link {
        let mut view = self.view.lock();
        if view.is_down(from) || self.members[g].iter().all(|&m| view.cut(from, m)) {
            view.failed_calls += 1;
            return Link::Cut;
        }
        let link = match (view.lose(), view.coin()) {
            (false, _) => Link::Up,
            (true, true) => Link::RequestLost,
            (true, false) => Link::AnswerLost,
        };
        if !matches!(link, Link::Up) {
            view.failed_calls += 1;
        }
        link
    }

    /// Calls group `g` from `from`; a cut or lost call is a transport error
    /// (a lost answer after the group applied the call).
    fn call<T>(
        &self,
        from: NodeId,
        g: usize,
        f: impl FnOnce(&ReplicatedParticipant) -> Result<T, TxnError>,
    ) -> Result<T, TxnError> {
        let lost = |what: &str| Err(TxnError::Transport(format!("{what} by the nemesis")));
        let result = match self.link(from, g) {
            Link::Cut => lost("cut off"),
            Link::RequestLost => lost("request lost"),
            Link::AnswerLost => f(&self.groups[g]).and_then(|_| lost("answer lost")),
            Link::Up => f(&self.groups[g]),
        };
        self.trace.record(|| {
            let outcome = match &result {
                Ok(_) => "ok".to_string(),
                Err(e) => e.to_string(),
            };
            format!(
                "call from {} to group {g}: {outcome}",
                super::trace::short(&from)
            )
        });
        result
    }

    /// Begins a transfer at `coordinator`, stopping after `crash_at` steps.
    fn begin(&mut self, coordinator: NodeId, (from, to, amount): (usize, usize, i64)) {
        let txn = TxnId::random(&mut self.rng);
        let (gf, gt) = (self.accounts[from].1, self.accounts[to].1);
        let op = |a: usize, delta| Op::Add {
            key: self.accounts[a].0.clone(),
            delta,
        };
        let mut writes = vec![(gf, vec![op(from, -amount)])];
        match gf == gt {
            true => writes[0].1.push(op(to, amount)),
            false => writes.push((gt, vec![op(to, amount)])),
        }
        let mut participants: Vec<NodeId> = writes.iter().map(|(g, _)| self.gids[*g]).collect();
        participants.sort();
        let primary = self
            .gids
            .iter()
            .position(|g| *g == participants[0])
            .unwrap_or(0);
        let requests: Vec<(usize, PrepareRequest)> = writes
            .into_iter()
            .map(|(g, ops)| {
                let request = PrepareRequest {
                    txn,
                    primary: participants[0],
                    participants: participants.clone(),
                    ops,
                    map_version: self.map.version(),
                };
                (g, request)
            })
            .collect();
        let one_phase = requests.len() == 1;
        // Stop after the first prepare, after both, or after the decision.
        let crash_at =
            (!one_phase && self.rng.random_bool(0.3)).then(|| self.rng.random_range(1..=3));
        self.transfers.push(Transfer {
            txn,
            coordinator,
            from,
            to,
            amount,
            requests,
            primary,
            next: if one_phase {
                Step::OnePhase
            } else {
                Step::Prepare(0)
            },
            steps: 0,
            crash_at,
            votes: Vec::new(),
            refused: false,
            decision: None,
            state: State::Running,
        });
    }

    /// Begins a random transfer at a random coordinator that is up.
    fn begin_random(&mut self) {
        let running = self.transfers.iter().filter(|t| t.state == State::Running);
        if running.count() >= 4 {
            return;
        }
        let coordinator = self.clients[self.rng.random_range(0..self.clients.len())];
        if self.view.lock().is_down(coordinator) {
            return;
        }
        let n = self.accounts.len();
        let from = self.rng.random_range(0..n);
        let to = (from + self.rng.random_range(1..n)) % n;
        let amount = self.rng.random_range(1..=60);
        self.begin(coordinator, (from, to, amount));
    }

    /// Accepts a decision of `txn`'s primary group `p`, as a coordinator
    /// does: it must verify as the group's.
    fn accept(&mut self, txn: TxnId, p: usize, decision: &Decision) -> bool {
        match decision.verify(&txn, &self.gids[p]) {
            Ok(receipt) => {
                self.accepted.push((txn, p, receipt));
                true
            }
            Err(e) => {
                let e = format!("{txn}: group {p}'s decision does not verify: {e}");
                self.violations.push(e);
                false
            }
        }
    }

    /// Checks a group's vote or acknowledgement: its signer, receipt and
    /// `f + 1` member signatures.
    fn check_signed(&mut self, g: usize, s: &SignedReceipt, receipt: Receipt, purpose: Purpose) {
        if s.signer != self.gids[g] || s.receipt != receipt || s.verify(purpose).is_err() {
            let e = format!("group {g} answered a {purpose:?} receipt that does not verify");
            self.violations.push(e);
        }
    }

    /// One step of a running transfer, as its coordinator takes it.
    fn advance(&mut self, t: &mut Transfer) {
        if t.state != State::Running {
            return;
        }
        if self.view.lock().is_down(t.coordinator) || t.crash_at == Some(t.steps) {
            t.state = State::Orphaned(self.tick);
            self.counts.coordinator_stops += 1;
            return;
        }
        let (txn, c) = (t.txn, t.coordinator);
        let result = match t.next {
            Step::Prepare(k) => {
                let (g, request) = t.requests[k].clone();
                let r = self.call(c, g, |p| self.runner.block_on(p.prepare(request.clone())));
                if let Ok(vote) = &r {
                    let expected = request.prepare_receipt(&self.gids[g]);
                    self.check_signed(g, vote, expected, Purpose::Prepare);
                    t.votes.push(vote.clone());
                }
                match (r, k + 1 < t.requests.len()) {
                    (Ok(_), true) => Ok(Step::Prepare(k + 1)),
                    (Err(e @ TxnError::Transport(_)), _) => Err(e),
                    (Ok(_), false) | (Err(_), _) => {
                        t.refused |= t.votes.len() <= k;
                        t.steps = t.requests.len() - 1;
                        Ok(Step::Decide)
                    }
                }
            }
            Step::Decide => {
                let commit = !t.refused && t.votes.len() == t.requests.len();
                let votes = t.votes.clone();
                let r = self.call(c, t.primary, |p| match commit {
                    true => self.runner.block_on(p.commit(txn, votes)),
                    false => self.runner.block_on(p.abort(txn)),
                });
                match r {
                    Ok(decision) => {
                        if self.accept(txn, t.primary, &decision) {
                            t.decision = Some(decision);
                        }
                        Ok(Step::Resolve(0))
                    }
                    Err(e @ TxnError::Transport(_)) => Err(e),
                    Err(e) if !commit => {
                        self.violations.push(format!("{txn}: abort refused: {e}"));
                        Ok(Step::Finished)
                    }
                    // Refused (e.g. decided abort meanwhile): ask for abort.
                    Err(_) => {
                        t.refused = true;
                        Ok(Step::Decide)
                    }
                }
            }
            Step::Resolve(k) => {
                let primary = t.primary;
                let secondaries: Vec<usize> = t.requests.iter().map(|(g, _)| *g).collect();
                let secondaries: Vec<usize> =
                    secondaries.into_iter().filter(|g| *g != primary).collect();
                match (secondaries.get(k), t.decision.clone()) {
                    (Some(&g), Some(decision)) => {
                        let d = decision.clone();
                        match self.call(c, g, |p| self.runner.block_on(p.resolve(txn, d))) {
                            Ok(ack) => {
                                let receipt = decision.primary().receipt;
                                self.check_signed(g, &ack, receipt, decision.purpose());
                                self.accepted.push((txn, primary, ack.receipt));
                                Ok(Step::Resolve(k + 1))
                            }
                            Err(e @ TxnError::Transport(_)) => Err(e),
                            Err(e) => {
                                self.violations.push(format!("{txn}: resolve refused: {e}"));
                                Ok(Step::Finished)
                            }
                        }
                    }
                    _ => Ok(Step::Finished),
                }
            }
            Step::OnePhase => {
                let (g, request) = t.requests[0].clone();
                let expected = request.prepare_receipt(&self.gids[g]);
                let r = self.call(c, g, |p| {
                    self.runner.block_on(p.commit_one_phase(request, expected))
                });
                match r {
                    Ok(decision) => {
                        self.accept(txn, g, &decision);
                        self.counts.one_phase += 1;
                        Ok(Step::Finished)
                    }
                    Err(e @ TxnError::Transport(_)) => Err(e),
                    Err(_) => Ok(Step::Finished),
                }
            }
            Step::Finished => Ok(Step::Finished),
        };
        match result {
            Ok(next) => {
                t.steps += usize::from(next != t.next);
                t.next = next;
            }
            Err(_) => self.counts.retried_calls += 1,
        }
        if t.next == Step::Finished {
            self.finish(t);
        }
    }

    /// A transfer is over: counted by its primary group's outcome.
    fn finish(&mut self, t: &mut Transfer) {
        t.state = State::Done;
        let committed = self.read(t.primary, |c| c.outcome(&t.txn).map(Decision::is_commit));
        match committed {
            Some(true) => self.counts.committed += 1,
            _ => self.counts.aborted += 1,
        }
    }

    /// The recovery process: transfers whose coordinator stopped at least
    /// `patience` ticks ago are settled from their primary group, and the
    /// groups where they are not prepared decide abort (so a late prepare
    /// is refused).
    fn settle_orphans(&mut self, patience: u64) {
        let mut transfers = std::mem::take(&mut self.transfers);
        for t in transfers.iter_mut() {
            let State::Orphaned(since) = t.state else {
                continue;
            };
            if self.tick < since + patience {
                continue;
            }
            let mut pending = false;
            for &(g, _) in &t.requests {
                if !self.prepared_at(g, &t.txn) {
                    // A prepare the coordinator sent may still be ordered
                    // later (a replica keeps a command until it is
                    // decided): the group decides abort first, which then
                    // refuses it (or says it prepared meanwhile).
                    match self.runner.block_on(self.groups[g].abort(t.txn)) {
                        Ok(_) => continue,
                        Err(TxnError::Transport(_)) => {
                            pending = true;
                            continue;
                        }
                        Err(TxnError::Aborted { .. }) => {}
                        Err(e) => {
                            let e = format!("{}: fencing group {g}: {e}", t.txn);
                            self.violations.push(e);
                            continue;
                        }
                    }
                }
                let (prepared, primary) = (&*self.groups[g], &*self.groups[t.primary]);
                match self.runner.block_on(settle(prepared, primary, t.txn)) {
                    Ok(ack) => {
                        // The recovery accepts the ack of the primary's
                        // decision: it must be the group's, for that decision.
                        let decided = self.read(t.primary, |c| c.outcome(&t.txn).cloned());
                        if let Some(d) = decided {
                            self.check_signed(g, &ack, d.primary().receipt, d.purpose());
                        }
                        self.accepted.push((t.txn, t.primary, ack.receipt));
                    }
                    Err(TxnError::Transport(_)) => pending = true,
                    Err(e) => self.violations.push(format!("{}: settle: {e}", t.txn)),
                }
            }
            if !pending {
                self.counts.settled_after_stop += 1;
                self.finish(t);
            }
        }
        self.transfers = transfers;
    }

    /// One tick of the workload: maybe a new transfer, one step of every
    /// running one, and recovery of those left behind.
    pub fn step(&mut self) {
        if self.rng.random_bool(0.3) {
            self.begin_random();
        }
        self.tick_once(SETTLE_AFTER);
    }

    /// One step of every running transfer, and recovery of those whose
    /// coordinator stopped `patience` ticks ago or more.
    pub(super) fn tick_once(&mut self, patience: u64) {
        self.tick += 1;
        let mut transfers = std::mem::take(&mut self.transfers);
        for t in transfers.iter_mut() {
            self.advance(t);
        }
        self.transfers = transfers;
        self.settle_orphans(patience);
    }

    /// Begins a transfer whose coordinator does not stop.
    pub(super) fn begin_at(&mut self, coordinator: NodeId, transfer: (usize, usize, i64)) {
        self.begin(coordinator, transfer);
        if let Some(t) = self.transfers.last_mut() {
            t.crash_at = None;
        }
    }

    pub(super) fn client(&self) -> NodeId {
        self.clients[0]
    }
}
