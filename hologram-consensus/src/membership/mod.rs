//! Reconfiguration: which validator set is in force at each height, how a
//! decided [`SetChange`] moves it, and the light-client check of a chain of
//! changes.
//!
//! See [`Membership`] for the rule and why it is safe.

mod change;

pub use change::{SetChange, SetOp};

use crate::codec::Reader;
use crate::message::Decision;
use crate::validators::MAX_VALIDATORS;
use crate::{ConsensusError, ValidatorSet};
use hologram_lattice::NodeId;

/// The default [`Membership::delay`]: a change decided at height `H` takes
/// effect at `H + 16` (at least the pipeline depth of every validator; see
/// [`Membership`]).
pub const DEFAULT_SET_CHANGE_DELAY: u64 = 16;

/// The largest delay a group may use (the largest pipeline depth).
pub const MAX_SET_CHANGE_DELAY: u64 = 256;

/// How many of the newest applied changes a [`Membership`] keeps as links
/// (their certified decisions), to hand a node behind them
/// ([`Membership::links`]).
pub const MAX_SET_CHANGE_LINKS: usize = 32;

/// The validator sets of a consensus group over heights: the one in force
/// at the next height to deliver and those scheduled by changes decided
/// since.
///
/// **The rule** (CometBFT's: validator updates decided at height `H` take
/// effect at a fixed later height, `H + 2` there). A change carried by the
/// batch decided at height `H` is applied when `H` is delivered, in height
/// order, and the set it makes is in force from height `H + delay`
/// ([`delay`](Membership::delay), [`ReplicaConfig::set_change_delay`](crate::ReplicaConfig::set_change_delay)).
/// Every validator of a group must use the same delay (it is part of the
/// group's definition, like its genesis set).
///
/// **Why the delay must be at least the pipeline depth.** A replica with
/// `max_pipeline_depth = d` works on the heights `next .. next + d`; it
/// knows the set of height `h` once every height `≤ h - delay` is
/// delivered, i.e. for `h < next + delay`. With `delay ≥ d` every height it
/// proposes, votes or certifies in is one whose set it already knows, and
/// since the set of `h` is a function of the decided heights `≤ h - delay`
/// alone, every honest replica computes the same one: each height is
/// decided by exactly one set, every honest replica agrees which, and the
/// Tendermint argument holds height by height. A replica refuses
/// ([`ReplicaConfig::check`](crate::ReplicaConfig::check)) a delay below
/// its depth; with a shorter one a replica could vote at a height under a
/// set that a change it has not delivered yet replaced.
///
/// **What it means for safety across a change.** A certificate of height
/// `h` verifies only against the set in force at `h` (and, if its batch
/// names a set, only if that is the one: [`ConsensusError::UnknownValidatorSet`]):
/// once a change is in force, a quorum of the old set is no quorum (a
/// removed validator's votes are not counted, a 4-validator quorum is not a
/// 7-validator one), and no two certificates of one height can come from
/// different sets.
///
/// **Light clients** ([`verify_chain`](Membership::verify_chain)): a node that knows the
/// set at some height (its genesis, or a trusted checkpoint) checks a chain
/// of set-change links (certified decisions carrying changes) one by one,
/// each under the set the previous ones made, before it trusts a
/// certificate of a later height. Links it was not given cannot be skipped
/// unnoticed: every honest leader's batch names its set, so a chain that
/// omits a change ends at a certificate naming a set the client did not
/// derive, and is refused. As in CometBFT, this trusts each set only while
/// it was in force (a retired set's quorum, colluding later, could sign a
/// chain of its own: the weak-subjectivity assumption).
///
/// ```
/// use hologram_consensus::{Membership, SetChange, SetOp, ValidatorSet};
/// use hologram_receipt::KeyPair;
///
/// let keys: Vec<KeyPair> = (1..=4u8).map(|i| KeyPair::from_seed([i; 32])).collect();
/// let set = ValidatorSet::new(keys.iter().map(KeyPair::node_id).collect())?;
/// let membership = Membership::new(set.clone(), 2);
/// // Heights 0 and 1 are known to be under the genesis set; height 2 is
/// // not known yet (a change decided at 0 would take effect there).
/// assert_eq!(membership.at(1)?, &set);
/// assert!(membership.at(2).is_err());
/// // Three of the four validators approve a fifth.
/// let op = SetOp::Add(KeyPair::from_seed([5; 32]).node_id());
/// let approvals = keys[..3].iter().map(|k| SetChange::approve(k, 0, &set, &op)).collect();
/// let change = SetChange::new(0, op, approvals);
/// assert_eq!(change.verify(0, &set)?.len(), 5);
/// # Ok::<(), hologram_consensus::ConsensusError>(())
/// ```
///
/// Two memberships are equal when their group, delay, height, version and
/// sets are (their [`links`](Self::links) are evidence, and two nodes may
/// hold different certificates of one decided height).
#[derive(Debug, Clone)]
pub struct Membership {
    /// The fingerprint of the genesis set: which group this is.
    genesis: [u8; 32],
    delay: u64,
    /// The next height to apply.
    next: u64,
    /// The number of changes applied.
    version: u64,
    /// `(first height in force, set)`, heights increasing; the first entry
    /// is in force at `next`, the others were scheduled since.
    sets: Vec<(u64, ValidatorSet)>,
    /// The certified decisions of the newest changes applied, oldest first.
    links: Vec<Decision>,
}

impl PartialEq for Membership {
    fn eq(&self, other: &Self) -> bool {
        (
            self.genesis,
            self.delay,
            self.next,
            self.version,
            &self.sets,
        ) == (
            other.genesis,
            other.delay,
            other.next,
            other.version,
            &other.sets,
        )
    }
}

impl Eq for Membership {}

impl From<ValidatorSet> for Membership {
    /// A group that starts with `set` at height 0, with the default delay.
    fn from(set: ValidatorSet) -> Self {
        Self::new(set, DEFAULT_SET_CHANGE_DELAY)
    }
}

impl Membership {
    /// A group whose set is `genesis` from height 0, changes taking effect
    /// `delay` heights after the height deciding them (between 1 and
    /// [`MAX_SET_CHANGE_DELAY`]; clamped into that range).
    pub fn new(genesis: ValidatorSet, delay: u64) -> Self {
        Self {
            genesis: genesis.fingerprint(),
            delay: delay.clamp(1, MAX_SET_CHANGE_DELAY),
            next: 0,
            version: 0,
            sets: vec![(0, genesis)],
            links: Vec::new(),
        }
    }

    /// The fingerprint of the group's genesis set (its identity, like a
    /// chain id: a snapshot of another group is refused).
    pub fn genesis(&self) -> [u8; 32] {
        self.genesis
    }

    /// How many heights after the height deciding it a change takes effect.
    pub fn delay(&self) -> u64 {
        self.delay
    }

    /// The next height to apply ([`apply`](Self::apply)).
    pub fn next_height(&self) -> u64 {
        self.next
    }

    /// The number of changes applied: the version a new change must name.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The set in force at the next height.
    pub fn current(&self) -> &ValidatorSet {
        &self.sets[0].1
    }

    /// The set every change applied so far makes (the one a new change
    /// changes, and its approvers').
    pub fn newest(&self) -> &ValidatorSet {
        &self.sets[self.sets.len() - 1].1
    }

    /// Whether a change applied is not in force yet at the next height.
    pub fn changing(&self) -> bool {
        self.sets.len() > 1
    }

    /// The sets from the next height on: `(first height in force, set)`.
    pub fn sets(&self) -> impl Iterator<Item = (u64, &ValidatorSet)> {
        self.sets.iter().map(|(h, s)| (*h, s))
    }

    /// The set in force at height `h`: known for `next ≤ h < next + delay`
    /// (and below `next` back to the start of the current set), else
    /// [`ConsensusError::UnknownValidatorSet`].
    pub fn at(&self, h: u64) -> Result<&ValidatorSet, ConsensusError> {
        if h >= self.next.saturating_add(self.delay) || h < self.sets[0].0 {
            return Err(ConsensusError::UnknownValidatorSet {
                height: h,
                named: "not yet known".into(),
            });
        }
        let i = self.sets.partition_point(|(from, _)| *from <= h);
        Ok(&self.sets[i.saturating_sub(1)].1)
    }

    /// The certified decisions of the newest changes applied here (at most
    /// [`MAX_SET_CHANGE_LINKS`], oldest first; none of those before a
    /// snapshot this membership was restored from): the chain a node that
    /// knows an older set checks ([`verify_chain`](Self::verify_chain))
    /// before it trusts a certificate of this group's later heights.
    pub fn links(&self) -> &[Decision] {
        &self.links
    }

    /// Keeps `older` links (this node's, from before a snapshot it was
    /// restored from) ahead of those it holds: the ones of versions below
    /// its first, newest [`MAX_SET_CHANGE_LINKS`] in all.
    pub(crate) fn keep_links(&mut self, older: &[Decision]) {
        let first = (self.links.first())
            .and_then(|d| d.batch.set_change())
            .map_or(self.version, |c| c.version);
        let mut links: Vec<Decision> = (older.iter())
            .filter(|d| d.batch.set_change().is_some_and(|c| c.version < first))
            .cloned()
            .collect();
        let version = |d: &Decision| d.batch.set_change().map_or(0, |c| c.version);
        links.sort_by_key(version);
        links.dedup_by_key(|d| version(d));
        links.append(&mut self.links);
        let drop = links.len().saturating_sub(MAX_SET_CHANGE_LINKS);
        links.drain(..drop);
        self.links = links;
    }

    /// The links a node whose sets are at `version` needs, in order.
    pub fn links_after(&self, version: u64) -> impl Iterator<Item = &Decision> {
        self.links
            .iter()
            .filter(move |d| d.batch.set_change().is_some_and(|c| c.version >= version))
    }

    /// Whether `id` is a validator of the current set or of one scheduled.
    pub fn is_member(&self, id: &NodeId) -> bool {
        self.sets.iter().any(|(_, s)| s.contains(id))
    }

    /// Every validator of the current set and of those scheduled, each
    /// once, the current set's first.
    pub fn members(&self) -> Vec<NodeId> {
        let mut out: Vec<NodeId> = Vec::with_capacity(self.current().len());
        for (_, s) in &self.sets {
            for id in s.validators() {
                if !out.contains(id) {
                    out.push(*id);
                }
            }
        }
        out
    }

    /// Checks a decision as [`Decision::verify`] does, against the set in
    /// force at its height; a batch naming another set (or a height whose
    /// set is not known here) is [`ConsensusError::UnknownValidatorSet`].
    pub fn verify(&self, d: &Decision) -> Result<(), ConsensusError> {
        let set = self.at(d.height())?;
        if let Some(named) = d.batch.set_name() {
            check_named(d.height(), named, set)?;
        }
        d.verify(set)
    }

    /// Applies the decided height `d` (it must be the next height; the
    /// caller verified it): a change it carries that
    /// [verifies](SetChange::verify) against the newest set is scheduled
    /// for `height + delay` (returned); one that does not is ignored, as
    /// every replica ignores it.
    pub fn apply(&mut self, d: &Decision) -> Result<Option<u64>, ConsensusError> {
        if d.height() != self.next {
            return Err(ConsensusError::Log(format!(
                "membership: height {} applied, {} expected",
                d.height(),
                self.next
            )));
        }
        self.next += 1;
        let scheduled = match d.batch.set_change() {
            None => None,
            Some(c) => {
                match travels_alone(d).and_then(|()| c.verify(self.version, self.newest())) {
                    Ok(set) => {
                        let at = d.height().saturating_add(self.delay);
                        tracing::info!(height = d.height(), at, version = c.version, op = ?c.op,
                                   validators = set.len(), "validator-set change scheduled");
                        self.version += 1;
                        self.sets.push((at, set));
                        self.links.push(d.clone());
                        if self.links.len() > MAX_SET_CHANGE_LINKS {
                            self.links.remove(0);
                        }
                        Some(at)
                    }
                    Err(e) => {
                        tracing::warn!(height = d.height(), error = %e, "a decided set change does not apply");
                        None
                    }
                }
            }
        };
        self.prune();
        Ok(scheduled)
    }

    /// This membership moved to height `h` assuming nothing was decided
    /// before it (a replica restarted without its log's membership).
    pub(crate) fn starting_at(mut self, h: u64) -> Self {
        self.skip_to(h);
        self
    }

    /// Moves to height `h` assuming nothing changed before it (a light
    /// client between links).
    fn skip_to(&mut self, h: u64) {
        self.next = self.next.max(h);
        self.prune();
    }

    /// Drops the sets no longer in force at the next height.
    fn prune(&mut self) {
        while self.sets.len() > 1 && self.sets[1].0 <= self.next {
            self.sets.remove(0);
        }
        self.sets[0].0 = self.sets[0].0.min(self.next);
    }

    /// The light client's check (see [`Membership`]): from this
    /// membership, verifies each of `links` in height order — a certified
    /// decision at or after the next height, naming the set in force at
    /// its height, carrying a change that set's quorum approved — then
    /// `target`, which must name the set the links lead to. Returns the
    /// membership at `target`'s height. A link that does not verify is
    /// [`ConsensusError::ForgedSetChangeLink`]; a target under another set
    /// [`ConsensusError::UnknownValidatorSet`]. Nothing of a refused chain
    /// is kept (`self` is not changed).
    pub fn verify_chain(
        &self,
        links: &[Decision],
        target: &Decision,
    ) -> Result<Membership, ConsensusError> {
        let mut light = self.clone();
        for link in links {
            let h = link.height();
            let forged = |e: ConsensusError| ConsensusError::ForgedSetChangeLink {
                height: h,
                source: Box::new(e),
            };
            if h < light.next {
                return Err(forged(ConsensusError::Log(format!(
                    "a link at {h}, below the chain's height {}",
                    light.next
                ))));
            }
            light.skip_to(h);
            light.verify_named(link).map_err(forged)?;
            let change = link.batch.set_change().ok_or_else(|| {
                forged(ConsensusError::SetChangeRefused {
                    version: light.version,
                    reason: "the link carries no set change".into(),
                })
            })?;
            travels_alone(link).map_err(forged)?;
            change
                .verify(light.version, light.newest())
                .map_err(forged)?;
            light.apply(link)?;
        }
        if target.height() < light.next {
            return Err(ConsensusError::Log(format!(
                "the target height {} is below the chain's last link",
                target.height()
            )));
        }
        light.skip_to(target.height());
        light.verify_named(target)?;
        Ok(light)
    }

    /// [`verify`](Self::verify), and the batch must name its set.
    fn verify_named(&self, d: &Decision) -> Result<(), ConsensusError> {
        if d.batch.set_name().is_none() {
            return Err(ConsensusError::UnknownValidatorSet {
                height: d.height(),
                named: "unnamed".into(),
            });
        }
        self.verify(d)
    }

    /// The canonical bytes (kept in a snapshot; the [`links`](Self::links)
    /// are not: they are evidence this node holds, and two nodes may hold
    /// different certificates of one height, while a snapshot must be the
    /// same on every node): `genesis fingerprint (32) ‖ delay u64 LE ‖ next u64
    /// LE ‖ version u64 LE ‖ set count u16 LE ‖ for each: first height u64
    /// LE ‖ validator count u16 LE ‖ ids (32 each)`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(58 + self.sets.len() * (10 + 32 * self.current().len()));
        self.write_canonical(&mut out);
        out
    }

    pub(crate) fn write_canonical(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.genesis);
        out.extend_from_slice(&self.delay.to_le_bytes());
        out.extend_from_slice(&self.next.to_le_bytes());
        out.extend_from_slice(&self.version.to_le_bytes());
        // At most delay + 1 (≤ 257) sets of at most MAX_VALIDATORS ids.
        out.extend_from_slice(&(self.sets.len() as u16).to_le_bytes());
        for (from, set) in &self.sets {
            out.extend_from_slice(&from.to_le_bytes());
            out.extend_from_slice(&(set.len() as u16).to_le_bytes());
            for id in set.validators() {
                out.extend_from_slice(id.as_bytes());
            }
        }
    }

    /// Decodes [`encode`](Self::encode)'s bytes, every count bounded
    /// before it is used ([`ConsensusError::SnapshotMalformed`] otherwise).
    pub fn decode(bytes: &[u8]) -> Result<Self, ConsensusError> {
        let mut r = Reader::new(bytes);
        let m = Self::read(&mut r).map_err(ConsensusError::SnapshotMalformed)?;
        r.finish().map_err(ConsensusError::SnapshotMalformed)?;
        Ok(m)
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, String> {
        let genesis = r.array("genesis fingerprint")?;
        let delay = r.u64("membership delay")?;
        if !(1..=MAX_SET_CHANGE_DELAY).contains(&delay) {
            return Err(format!("a set-change delay of {delay}"));
        }
        let next = r.u64("membership height")?;
        let version = r.u64("membership version")?;
        let count = usize::from(u16::from_le_bytes(r.array("set count")?));
        if count == 0 || count as u64 > delay + 1 {
            return Err(format!("{count} sets with a delay of {delay}"));
        }
        let mut sets: Vec<(u64, ValidatorSet)> = Vec::with_capacity(count);
        for i in 0..count {
            let from = r.u64("set height")?;
            let n = usize::from(u16::from_le_bytes(r.array("validator count")?));
            if n > MAX_VALIDATORS || n * 32 > r.rest.len() {
                return Err(format!("{n} validators, {} bytes left", r.rest.len()));
            }
            let ids = (0..n)
                .map(|_| r.array("validator").map(NodeId::from_bytes))
                .collect::<Result<Vec<_>, _>>()?;
            let set = ValidatorSet::new(ids).map_err(|e| e.to_string())?;
            let in_order = match sets.last() {
                None => from <= next,
                Some((prev, _)) => from > *prev && from > next,
            };
            if !in_order || (i > 0 && from >= next.saturating_add(delay).saturating_add(1)) {
                return Err(format!("set {i} from height {from} is out of order"));
            }
            sets.push((from, set));
        }
        Ok(Self {
            genesis,
            delay,
            next,
            version,
            sets,
            links: Vec::new(),
        })
    }
}

/// A set change travels in a batch without commands (so that the links a
/// node keeps and hands on stay small): one with commands is refused.
pub(crate) fn travels_alone(d: &Decision) -> Result<(), ConsensusError> {
    travels_alone_batch(&d.batch)
}

/// [`travels_alone`] of a batch.
pub(crate) fn travels_alone_batch(batch: &crate::Batch) -> Result<(), ConsensusError> {
    match batch.set_change() {
        Some(c) if !batch.is_empty() => Err(ConsensusError::SetChangeRefused {
            version: c.version,
            reason: "a set change travels in a batch without commands".into(),
        }),
        _ => Ok(()),
    }
}

/// [`ConsensusError::UnknownValidatorSet`] unless `named` is `set`'s fingerprint.
fn check_named(height: u64, named: [u8; 32], set: &ValidatorSet) -> Result<(), ConsensusError> {
    if named == set.fingerprint() {
        return Ok(());
    }
    let named = named.iter().map(|b| format!("{b:02x}")).collect();
    Err(ConsensusError::UnknownValidatorSet { height, named })
}

#[cfg(test)]
mod tests;
