//! The participant: a shard's side of two-phase commit, as a deterministic
//! core without I/O.

mod apply;
mod inputs;
mod locks;
mod moves;
mod prework;
pub mod records;
mod recover;
mod signer;

pub use locks::LockTable;
pub use prework::Prework;
pub use signer::Signer;

use crate::effects::Effects;
use crate::receipts::{abort_receipt, check_certificate_with, commit_receipt};
use crate::sharding::ShardMap;
use crate::{Decision, Key, PrepareRequest, SignedReceipt, TxnError, TxnId};
use hologram_lattice::sim::Millis;
use hologram_lattice::{Address, NodeId};
use hologram_receipt::{Purpose, Receipt};
use records::Record;
use std::collections::BTreeMap;

/// Timing of a participant's recovery actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParticipantConfig {
    /// A primary still undecided this long after it prepared decides abort.
    pub decide_timeout_ms: Millis,
    /// A secondary still prepared this long after prepare asks the primary.
    pub resolve_after_ms: Millis,
    /// The longest wait between two questions to the primary.
    pub resolve_max_ms: Millis,
    /// How long the source of a hand-off waits for the acknowledgement
    /// before it sends the keys again.
    pub handoff_resend_ms: Millis,
}

impl Default for ParticipantConfig {
    fn default() -> Self {
        ParticipantConfig {
            decide_timeout_ms: 500,
            resolve_after_ms: 600,
            resolve_max_ms: 4_000,
            handoff_resend_ms: 300,
        }
    }
}

/// What a participant's timers carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParticipantTimer {
    /// Primary: decide abort if still undecided.
    Decide(TxnId),
    /// Secondary: ask the primary if still prepared.
    Resolve {
        /// The transaction.
        txn: TxnId,
        /// How many times it asked already.
        attempt: u32,
    },
    /// Source of a hand-off: send the keys not acknowledged yet again.
    HandOff,
}

/// Each written key's value after a transaction.
type Writes = BTreeMap<Key, Option<Vec<u8>>>;

/// A key's current value and the record that holds it.
#[derive(Debug, Clone)]
struct Stored {
    version: u64,
    value: Option<Vec<u8>>,
    address: Address,
}

/// A prepared transaction.
#[derive(Debug, Clone)]
struct Prepared {
    request: PrepareRequest,
    vote: SignedReceipt,
    /// Each written key's value after the commit.
    writes: Writes,
    address: Address,
}

/// A shard's side of two-phase commit (see the module docs).
///
/// [`ParticipantCore`] holds a shard's keys, its locks, its prepared
/// transactions and the decisions it applied. It never touches a store,
/// clock or network: every method takes the time, and what must be made
/// durable, sent or timed accumulates in [`Effects`] that the driver drains
/// with [`ParticipantCore::take_effects`] and carries out — durable writes
/// first ([`Persist`](crate::Persist)).
///
/// ## The protocol (Percolator-style primary)
///
/// Every transaction names one participant its **primary**; the primary's
/// store holds the decision record, so the coordinator keeps no state at all
/// and its loss blocks nobody.
///
/// 1. **Prepare.** Each participant checks that it owns every key (else
///    [`TxnError::StaleShardMap`]), that no key is locked by another
///    transaction (no-wait: else [`TxnError::Conflict`]), and that every op
///    applies; it locks the keys, makes a `Prepared` record durable and
///    returns its signed prepare receipt. A primary that refuses also decides
///    abort at once.
/// 2. **Decide.** The primary commits only on a certificate of every
///    participant's signed prepare receipt (checked), atomically with its own
///    writes and the decision record, and signs the commit receipt: their
///    composition. A primary asked to abort, or still undecided
///    `decide_timeout_ms` after it prepared (the coordinator is slow or
///    gone), decides abort. Whichever comes first wins; the decision is final.
/// 3. **Resolve.** A secondary applies only a decision signed by the primary
///    named at prepare (a commit must list its own prepare receipt and compose
///    to the signed receipt), and acknowledges with its own signed receipt,
///    equal to the primary's. A secondary still prepared `resolve_after_ms`
///    after prepare asks the primary (again and again, backing off up to
///    `resolve_max_ms`); a primary that never heard of the transaction
///    records an abort for it (so a late prepare is refused) and says so. A
///    prepared participant therefore never waits longer than the primary
///    takes to come back.
///
/// A single-participant transaction takes the one-phase fast path:
/// [`ParticipantCore::commit_one_phase`] validates and commits in one step.
#[derive(Debug, Clone)]
pub struct ParticipantCore {
    signer: Signer,
    id: NodeId,
    config: ParticipantConfig,
    map: ShardMap,
    map_address: Option<Address>,
    data: BTreeMap<Key, Stored>,
    locks: LockTable,
    prepared: BTreeMap<TxnId, Prepared>,
    outcomes: BTreeMap<TxnId, Decision>,
    effects: Effects<ParticipantTimer>,
    prework: Prework,
}

impl ParticipantCore {
    /// A participant with no data, serving its shards of `map`, signing as
    /// `signer` (its [`KeyPair`](hologram_receipt::KeyPair), or a [`Group`](crate::Group)).
    pub fn new(
        signer: impl Into<Signer>,
        config: ParticipantConfig,
        map: ShardMap,
    ) -> Result<Self, TxnError> {
        let mut core = Self::blank(signer.into(), config, map.clone());
        core.install_map(map)?;
        Ok(core)
    }

    fn blank(signer: Signer, config: ParticipantConfig, map: ShardMap) -> Self {
        ParticipantCore {
            id: signer.id(),
            signer,
            config,
            map,
            map_address: None,
            data: BTreeMap::new(),
            locks: LockTable::default(),
            prepared: BTreeMap::new(),
            outcomes: BTreeMap::new(),
            effects: Effects::default(),
            prework: Prework::default(),
        }
    }

    /// This participant's id (its public key, or its group's id).
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Who it signs as (its keys make a caller's [`Prework`]).
    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// Runs `f` with signatures made and verified ahead ([`Prework`]): the
    /// results are the same as without, only the signing and verifying that
    /// `prework` did are not done again.
    pub fn with_prework<R>(&mut self, prework: Prework, f: impl FnOnce(&mut Self) -> R) -> R {
        self.prework = prework;
        let result = f(self);
        self.prework = Prework::default();
        result
    }

    /// Its timing.
    pub fn config(&self) -> ParticipantConfig {
        self.config
    }

    /// The shard map it serves.
    pub fn map(&self) -> &ShardMap {
        &self.map
    }

    /// A key's committed value.
    pub fn value(&self, key: &Key) -> Option<&[u8]> {
        self.data.get(key).and_then(|s| s.value.as_deref())
    }

    /// Every key with a committed value.
    pub fn values(&self) -> impl Iterator<Item = (&Key, &[u8])> {
        self.data
            .iter()
            .filter_map(|(k, s)| s.value.as_deref().map(|v| (k, v)))
    }

    /// The locks it holds.
    pub fn locks(&self) -> &LockTable {
        &self.locks
    }

    /// The transactions prepared here and not yet resolved.
    pub fn prepared(&self) -> impl Iterator<Item = (&TxnId, &PrepareRequest)> {
        self.prepared.iter().map(|(t, p)| (t, &p.request))
    }

    /// The decision this participant applied for `txn`.
    pub fn outcome(&self, txn: &TxnId) -> Option<&Decision> {
        self.outcomes.get(txn)
    }

    /// Every decision it applied.
    pub fn outcomes(&self) -> impl Iterator<Item = (&TxnId, &Decision)> {
        self.outcomes.iter()
    }

    /// Drains what the driver must do: persist, then send and set timers.
    pub fn take_effects(&mut self) -> Effects<ParticipantTimer> {
        std::mem::take(&mut self.effects)
    }

    /// Sets a key outside any transaction (initial load). Refused while the
    /// key is locked or when this shard does not own it.
    pub fn load(&mut self, key: Key, value: Vec<u8>) -> Result<(), TxnError> {
        self.check_owned(&key)?;
        if let Some(holder) = self.locks.holder(&key) {
            return Err(TxnError::Conflict { key, holder });
        }
        self.write_values(Writes::from([(key, Some(value))]))
    }

    /// Serves `map` from now on if it is newer than the current one.
    pub fn install_map(&mut self, map: ShardMap) -> Result<(), TxnError> {
        if self.map_address.is_some() && map.version() <= self.map.version() {
            return Ok(());
        }
        let object = Record::Map(map.clone()).to_object()?;
        if let Some(old) = self.map_address.replace(object.address()) {
            self.effects.persist.remove.push(old);
        }
        self.effects.persist.put.push(object);
        self.map = map;
        Ok(())
    }

    /// Phase 1: prepare `request` and return the signed prepare receipt
    /// (the same one again for a repeated request).
    pub fn prepare(&mut self, request: PrepareRequest) -> Result<SignedReceipt, TxnError> {
        request.check()?;
        self.check_participant(&request)?;
        let txn = request.txn;
        if self.outcomes.contains_key(&txn) {
            return Err(TxnError::AlreadyDecided(txn));
        }
        if let Some(p) = self.prepared.get(&txn) {
            return same_contents(&p.request, &request)
                .then(|| p.vote.clone())
                .ok_or(TxnError::ContentsDiffer(txn));
        }
        let request_primary = request.primary;
        match self.try_prepare(request) {
            Ok(vote) => Ok(vote),
            Err(error) => {
                if request_primary == self.id {
                    self.decide_abort(txn)?;
                }
                Err(error)
            }
        }
    }

    /// The one-phase fast path for a single-participant transaction:
    /// validate and commit at once, provided this participant's prepare
    /// receipt equals `expected` (the coordinator's; otherwise the request
    /// was damaged or altered, and the transaction aborts). Returns the
    /// decision (also an abort, when a repeated request finds one).
    pub fn commit_one_phase(
        &mut self,
        request: PrepareRequest,
        expected: &Receipt,
    ) -> Result<Decision, TxnError> {
        request.check()?;
        if request.participants != [self.id] {
            return Err(TxnError::Decode {
                what: "one-phase commit",
                reason: "this participant is not the only one".into(),
            });
        }
        let txn = request.txn;
        if let Some(decision) = self.outcomes.get(&txn) {
            return Ok(decision.clone());
        }
        if self.prepared.contains_key(&txn) {
            return Err(TxnError::ContentsDiffer(txn));
        }
        let checked = match request.prepare_receipt(&self.id) == *expected {
            true => self.validate(&request),
            false => Err(TxnError::ReceiptMismatch {
                txn,
                participant: self.id,
            }),
        };
        match checked {
            Ok(writes) => {
                let vote = self.vote(&request);
                let commit = self.sign(Purpose::Commit, commit_receipt([&vote]));
                let decision = Decision::Committed {
                    prepares: vec![vote],
                    primary: commit,
                };
                self.settle(txn, decision.clone(), writes)?;
                Ok(decision)
            }
            Err(error) => {
                self.decide_abort(txn)?;
                Err(error)
            }
        }
    }

    /// Phase 2 at the primary: commit on a certificate of every
    /// participant's signed prepare receipt. Returns the decision, which is
    /// an abort when the primary already aborted or never prepared.
    pub fn commit(&mut self, txn: TxnId, prepares: &[SignedReceipt]) -> Result<Decision, TxnError> {
        if let Some(decision) = self.outcomes.get(&txn) {
            return Ok(decision.clone());
        }
        let Some(p) = self.prepared.get(&txn) else {
            return self.decide_abort(txn);
        };
        if p.request.primary != self.id {
            return Err(TxnError::InvalidCertificate {
                txn,
                reason: "this participant is not the primary",
            });
        }
        let receipt =
            check_certificate_with(&txn, &p.request.participants, prepares, &p.vote, |p| {
                self.verify_signed(p, Purpose::Prepare)
            })?;
        let decision = Decision::Committed {
            prepares: prepares.to_vec(),
            primary: self.sign(Purpose::Commit, receipt),
        };
        self.settle(txn, decision.clone(), Writes::new())?;
        Ok(decision)
    }

    /// At the primary: decide abort (or return the decision already made).
    pub fn abort(&mut self, txn: TxnId) -> Result<Decision, TxnError> {
        if let Some(decision) = self.outcomes.get(&txn) {
            return Ok(decision.clone());
        }
        if self.prepared.contains_key(&txn) && !self.prepared_primary(&txn) {
            return Err(TxnError::InvalidCertificate {
                txn,
                reason: "only the primary decides",
            });
        }
        self.decide_abort(txn)
    }

    /// Phase 2 at a secondary: apply the primary's decision and return this
    /// participant's own signed receipt of it (equal to the primary's).
    pub fn resolve(&mut self, txn: TxnId, decision: &Decision) -> Result<SignedReceipt, TxnError> {
        if let Some(done) = self.outcomes.get(&txn) {
            return Ok(self.ack(done));
        }
        let Some(p) = self.prepared.get(&txn) else {
            return match decision {
                // Nothing held here: acknowledging the abort is truthful.
                Decision::Aborted { .. } => Ok(self.sign(Purpose::Abort, abort_receipt(&txn))),
                Decision::Committed { .. } => Err(TxnError::UnknownTransaction(txn)),
            };
        };
        decision.check_claim(&txn, &p.request.primary)?;
        self.verify_signed(decision.primary(), decision.purpose())?;
        if let Decision::Committed { prepares, .. } = decision {
            if !prepares.iter().any(|v| v.same_claim(&p.vote)) {
                return Err(TxnError::InvalidCertificate {
                    txn,
                    reason: "this participant's prepare receipt is missing",
                });
            }
        }
        self.settle(txn, decision.clone(), Writes::new())?;
        Ok(self.ack(decision))
    }

    /// A secondary asks for the decision. `None`: not decided yet (the primary
    /// prepared it recently), or this is not the primary.
    pub fn query(&mut self, txn: TxnId) -> Result<Option<Decision>, TxnError> {
        if let Some(decision) = self.outcomes.get(&txn) {
            return Ok(Some(decision.clone()));
        }
        if self.prepared.contains_key(&txn) {
            // Prepared here: the primary's own Decide timer settles it.
            return Ok(None);
        }
        // Never prepared here: it can no longer commit. Record the abort so
        // that a late prepare is refused.
        self.decide_abort(txn).map(Some)
    }

    /// This participant's own signed receipt of a decision.
    fn ack(&self, decision: &Decision) -> SignedReceipt {
        self.sign(decision.purpose(), decision.primary().receipt)
    }

    /// This node's signature of `receipt` for `purpose`, or its group's
    /// unsigned claim of it (from the prework
    /// when it was made ahead; Ed25519 is deterministic, so it is the same).
    fn sign(&self, purpose: Purpose, receipt: Receipt) -> SignedReceipt {
        self.prework
            .signed(&self.id, purpose, &receipt)
            .unwrap_or_else(|| self.signer.sign(purpose, receipt))
    }

    /// Checks a signature for `purpose`, unless the prework verified exactly it.
    fn verify_signed(&self, signed: &SignedReceipt, purpose: Purpose) -> Result<(), TxnError> {
        if self.prework.verified(purpose, signed) {
            Ok(())
        } else {
            signed.verify(purpose)
        }
    }
}

/// Whether two requests prepare the same thing (the map version only routes).
fn same_contents(a: &PrepareRequest, b: &PrepareRequest) -> bool {
    a.txn == b.txn && a.primary == b.primary && a.participants == b.participants && a.ops == b.ops
}
