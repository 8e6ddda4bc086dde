//! The nemesis at a shard group's validators: what the campaign's crashes,
//! partitions and loss rate do to the consensus calls of a replicated
//! shard group whose members are campaign nodes.
//!
//! A group's consensus runs in this process (`ReplicatedParticipant`), so
//! its validators are wrapped in a [`Gate`] that reads the nemesis'
//! [`View`]: a call to a member's validator fails on the transport —
//! unreachable when the member's node is down or on the other side of a
//! partition from the proposer that sent it, timed out at the network's
//! loss rate — and the group retries it as it would over a network
//! (`MEMBER_ATTEMPTS`).
//! A Byzantine member's validator takes part but signs its votes for
//! another value (consensus does not count them).

use super::MAX_LATENCY_MS;
use hologram_consensus::{
    Certificate, ConsensusError, Decision, HeightStatus, LocalValidator, Proposal, Validator, Vote,
};
use hologram_lattice::transport::TransportError;
use hologram_lattice::NodeId;
use hologram_receipt::{KeyPair, Receipt};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The nemesis' state as the groups see it.
#[derive(Debug)]
pub struct View {
    loss: f64,
    down: BTreeSet<NodeId>,
    /// Each node's side of the partition in force (empty when healed).
    side: BTreeMap<NodeId, usize>,
    rng: ChaCha8Rng,
    /// Validator calls the nemesis failed.
    pub failed_calls: u64,
}

impl View {
    pub fn new(rng: ChaCha8Rng, loss: f64) -> Self {
        View {
            loss,
            down: BTreeSet::new(),
            side: BTreeMap::new(),
            rng,
            failed_calls: 0,
        }
    }

    pub fn set_loss(&mut self, loss: f64) {
        self.loss = loss;
    }

    pub fn set_down(&mut self, id: NodeId, down: bool) {
        match down {
            true => self.down.insert(id),
            false => self.down.remove(&id),
        };
    }

    pub fn partition(&mut self, sides: &[Vec<NodeId>]) {
        self.side = sides
            .iter()
            .enumerate()
            .flat_map(|(s, ids)| ids.iter().map(move |&id| (id, s)))
            .collect();
    }

    pub fn heal(&mut self) {
        self.side.clear();
    }

    pub fn is_down(&self, id: NodeId) -> bool {
        self.down.contains(&id)
    }

    /// Whether `a` and `b` cannot talk: one is down, or a partition
    /// separates them.
    pub fn cut(&self, a: NodeId, b: NodeId) -> bool {
        self.is_down(a) || self.is_down(b) || self.side.get(&a) != self.side.get(&b)
    }

    /// Draws whether one message is lost at the current rate.
    pub fn lose(&mut self) -> bool {
        self.loss > 0.0 && self.rng.random_bool(self.loss.min(1.0))
    }

    /// A fair coin from the same stream.
    pub fn coin(&mut self) -> bool {
        self.rng.random()
    }
}

/// The view shared by every gate and the driver.
#[derive(Debug, Clone)]
pub struct Nemesis(Arc<Mutex<View>>);

impl Nemesis {
    pub fn new(view: View) -> Self {
        Nemesis(Arc::new(Mutex::new(view)))
    }

    pub fn lock(&self) -> MutexGuard<'_, View> {
        // A panic while holding the view fails the test anyway.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Where a validator call comes from, as far as the gate can tell.
#[derive(Debug, Clone, Copy)]
enum Caller {
    Proposer(NodeId),
    Last,
    Unknown,
}

/// A member's validator behind the nemesis.
pub struct Gate {
    inner: LocalValidator,
    member: NodeId,
    /// A Byzantine member's keys: its votes name another value.
    liar: Option<KeyPair>,
    view: Nemesis,
    /// The group's proposer as last seen in a proposal (shared by the
    /// group's gates): status and finalize calls come from it.
    proposer: Arc<Mutex<Option<NodeId>>>,
}

impl Gate {
    pub fn new(
        inner: LocalValidator,
        liar: Option<KeyPair>,
        view: Nemesis,
        proposer: Arc<Mutex<Option<NodeId>>>,
    ) -> Self {
        Gate {
            member: inner.id(),
            inner,
            liar,
            view,
            proposer,
        }
    }

    /// Whether a call reaches this member: from the proposer a proposal
    /// names, from the last one seen (`Last`), or from a proposer not known
    /// yet (`Unknown`: a new one catching up after a failover), which only
    /// this member's crash cuts off.
    fn pass(&self, from: Caller) -> Result<(), ConsensusError> {
        let proposer = {
            let mut last = self.proposer.lock().unwrap_or_else(|e| e.into_inner());
            match from {
                Caller::Proposer(p) => *last = Some(p),
                Caller::Unknown => *last = None,
                Caller::Last => {}
            }
            *last
        };
        let mut view = self.view.lock();
        let cut = proposer.map_or(view.is_down(self.member), |p| view.cut(p, self.member));
        let error = match cut {
            true => TransportError::Unreachable(self.member),
            false if view.lose() => TransportError::TimedOut {
                peer: self.member,
                timeout: Duration::from_millis(MAX_LATENCY_MS),
            },
            false => return Ok(()),
        };
        view.failed_calls += 1;
        Err(ConsensusError::Transport(error))
    }

    fn lie(&self, vote: Vote) -> Vote {
        match &self.liar {
            Some(keys) => Vote::sign(keys, vote.slot, Some(Receipt::from_bytes(b"byzantine"))),
            None => vote,
        }
    }
}

type Answer<'a, T> = Pin<Box<dyn Future<Output = Result<T, ConsensusError>> + Send + 'a>>;

// `Validator` is an `async_trait`; this is the expansion its macro would
// write (the root crate does not depend on `async-trait`).
impl Validator for Gate {
    fn id(&self) -> NodeId {
        self.member
    }

    fn prepare_vote<'s, 'p, 'a>(&'s self, proposal: &'p Proposal) -> Answer<'a, Vote>
    where
        's: 'a,
        'p: 'a,
        Self: 'a,
    {
        Box::pin(async move {
            self.pass(Caller::Proposer(proposal.header.proposer))?;
            let vote = self.inner.prepare_vote(proposal).await?;
            Ok(self.lie(vote))
        })
    }

    fn commit<'s, 'p, 'c, 'a>(
        &'s self,
        proposal: &'p Proposal,
        polka: &'c Certificate,
    ) -> Answer<'a, Vote>
    where
        's: 'a,
        'p: 'a,
        'c: 'a,
        Self: 'a,
    {
        Box::pin(async move {
            self.pass(Caller::Proposer(proposal.header.proposer))?;
            let vote = self.inner.commit(proposal, polka).await?;
            Ok(self.lie(vote))
        })
    }

    fn finalize<'s, 'd, 'a>(&'s self, decision: &'d Decision) -> Answer<'a, ()>
    where
        's: 'a,
        'd: 'a,
        Self: 'a,
    {
        Box::pin(async move {
            self.pass(Caller::Last)?;
            self.inner.finalize(decision).await
        })
    }

    fn status<'s, 'a>(&'s self, height: u64) -> Answer<'a, HeightStatus>
    where
        's: 'a,
        Self: 'a,
    {
        Box::pin(async move {
            self.pass(Caller::Unknown)?;
            self.inner.status(height).await
        })
    }
}
