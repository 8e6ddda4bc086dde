//! Byzantine validators: an honest replica underneath whose outputs are
//! twisted before they leave.

use hologram_consensus::{
    Batch, Certificate, Command, ConsensusMessage, Decision, Outgoing, Outputs, Replica,
    ReplicaConfig, SignedHeader, Slot, Timer, Vote, VoteKind,
};
use hologram_consensus::{BatchProof, Proposal};
use hologram_lattice::sim::Context;
use hologram_lattice::NodeId;
use hologram_receipt::{Budget, KeyPair, Receipt, Signature};
use rand::{Rng, RngExt};

/// What a Byzantine validator does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Sends nothing at all.
    Silent,
    /// Sends only to the first half of the validators.
    Withhold,
    /// Signs a conflicting vote (and proposal) for every one it casts and
    /// sends different ones to different halves.
    Equivocate,
    /// Adds votes and decisions under other validators' names with bad
    /// signatures, and certificates that do not verify.
    Forge,
    /// Resends old messages it received, at random, to random peers.
    Replay,
    /// Proposes headers whose receipt is not its batch's, and votes for
    /// receipts nobody proposed.
    InvalidReceipts,
    /// Votes and proposes receipts claiming a budget above 47.
    ImpossibleBudget,
    /// Slips forged commands (a real one with its payload changed, with its
    /// key swapped for another client's, with a garbage signature) into its
    /// proposals (re-signing their headers) and its `Commands` frames, and
    /// sends frames of forgeries alone. Not in [`Behaviour::ALL`] (adding
    /// it would re-draw every campaign seed's behaviours): the campaign of
    /// `consensus_commands` runs it.
    ForgeCommands,
    /// Sends its proposals to the even-indexed validators and a conflicting
    /// one (the same for every resend) to the odd-indexed; votes honestly.
    /// Not in [`Behaviour::ALL`]: `consensus_split_proposer` runs it.
    SplitProposals,
    /// Offers every validator the newest certified snapshot it knows (a
    /// real certified decision), on every catch-up request (never serving
    /// the decisions asked for) and resend, and
    /// answers every request for a snapshot part with bytes that are not
    /// the part: random ones, or the right length cut short. Votes
    /// honestly. Not in [`Behaviour::ALL`]: `consensus_snapshots` runs it.
    LyingSnapshots,
}

impl Behaviour {
    pub const ALL: [Behaviour; 7] = [
        Behaviour::Silent,
        Behaviour::Withhold,
        Behaviour::Equivocate,
        Behaviour::Forge,
        Behaviour::Replay,
        Behaviour::InvalidReceipts,
        Behaviour::ImpossibleBudget,
    ];
}

pub struct Byzantine {
    replica: Replica,
    keys: KeyPair,
    config: ReplicaConfig,
    behaviour: Behaviour,
    captured: Vec<ConsensusMessage>,
}

fn random_receipt(rng: &mut impl Rng) -> Receipt {
    let bytes: [u8; 16] = rng.random();
    Receipt::from_bytes(&bytes)
}

impl Byzantine {
    pub fn new(keys: KeyPair, config: ReplicaConfig, behaviour: Behaviour) -> Self {
        Self {
            replica: Replica::new(keys.clone(), config.clone()).expect("config"),
            keys,
            config,
            behaviour,
            captured: Vec::new(),
        }
    }

    pub fn recover(&self) -> Self {
        Self::new(self.keys.clone(), self.config.clone(), self.behaviour)
    }

    pub fn on_start(&mut self, ctx: &mut Context<'_, ConsensusMessage, Timer>) {
        let mut out = Outputs::default();
        self.replica.start(ctx.now(), &mut out);
        self.apply(ctx, out);
    }

    pub fn on_message(
        &mut self,
        ctx: &mut Context<'_, ConsensusMessage, Timer>,
        from: NodeId,
        message: ConsensusMessage,
    ) {
        if self.behaviour == Behaviour::LyingSnapshots
            && self.lie_about_snapshots(ctx, from, &message)
        {
            return;
        }
        if self.captured.len() < 256 {
            self.captured.push(message.clone());
        } else {
            let i = ctx.rng().random_range(0..256);
            self.captured[i] = message.clone();
        }
        let mut out = Outputs::default();
        self.replica
            .handle_message(ctx.now(), from, message, &mut out);
        self.apply(ctx, out);
    }

    /// [`Behaviour::LyingSnapshots`]: whether `message` was answered with a lie.
    fn lie_about_snapshots(
        &mut self,
        ctx: &mut Context<'_, ConsensusMessage, Timer>,
        from: NodeId,
        message: &ConsensusMessage,
    ) -> bool {
        match message {
            ConsensusMessage::SyncRequest { .. } => {
                // Never the decisions asked for: only its snapshot.
                if let Some(d) = self.replica.certified_snapshot() {
                    ctx.send(
                        from,
                        ConsensusMessage::SnapshotOffer(Box::new(d.clone()), Vec::new()),
                    );
                }
                true
            }
            ConsensusMessage::SnapshotRequest { snapshot, part } => {
                let len = ctx.rng().random_range(1..2048usize);
                let mut bytes: Vec<u8> = (0..len).map(|_| ctx.rng().random()).collect();
                if ctx.rng().random_bool(0.5) {
                    bytes.truncate(len / 2);
                }
                let lie = ConsensusMessage::SnapshotPart {
                    snapshot: *snapshot,
                    part: *part,
                    bytes,
                };
                ctx.send(from, lie);
                true
            }
            _ => false,
        }
    }

    pub fn on_timer(&mut self, ctx: &mut Context<'_, ConsensusMessage, Timer>, timer: Timer) {
        if self.behaviour == Behaviour::LyingSnapshots && timer == Timer::Resend {
            if let Some(d) = self.replica.certified_snapshot() {
                let me = self.keys.node_id();
                let others: Vec<NodeId> = (self.config.validators.validators().iter())
                    .filter(|v| **v != me)
                    .copied()
                    .collect();
                ctx.send_all(
                    others,
                    ConsensusMessage::SnapshotOffer(Box::new(d.clone()), Vec::new()),
                );
            }
        }
        let mut out = Outputs::default();
        self.replica.handle_timer(ctx.now(), timer, &mut out);
        self.apply(ctx, out);
    }

    fn apply(&mut self, ctx: &mut Context<'_, ConsensusMessage, Timer>, mut out: Outputs) {
        for (after, timer) in out.timers.drain(..) {
            ctx.set_timer(after, timer);
        }
        let me = self.keys.node_id();
        let validators: Vec<NodeId> = self.config.validators.validators().to_vec();
        let mut sends: Vec<(usize, NodeId, ConsensusMessage)> = Vec::new();
        for m in out.messages.drain(..) {
            match m {
                Outgoing::Broadcast(msg) => {
                    for (i, v) in validators.iter().enumerate() {
                        if *v != me {
                            sends.push((i, *v, msg.clone()));
                        }
                    }
                }
                Outgoing::To(to, msg) => {
                    let i = validators.iter().position(|v| *v == to).unwrap_or(0);
                    sends.push((i, to, msg));
                }
            }
        }
        let n = validators.len();
        for (i, to, msg) in sends {
            match self.behaviour {
                Behaviour::Silent => {}
                // Its lies are told in `lie_about_snapshots`.
                Behaviour::LyingSnapshots => ctx.send(to, msg),
                Behaviour::Withhold => {
                    if i < n / 2 {
                        ctx.send(to, msg);
                    }
                }
                Behaviour::Equivocate => {
                    let msg = if i % 2 == 1 {
                        self.conflicting(ctx, msg)
                    } else {
                        msg
                    };
                    ctx.send(to, msg);
                }
                Behaviour::Forge => {
                    let forged = self.forged(ctx, &msg, &validators);
                    ctx.send(to, msg);
                    if let Some(f) = forged {
                        ctx.send(to, f);
                    }
                }
                Behaviour::Replay => {
                    ctx.send(to, msg);
                    if !self.captured.is_empty() && ctx.rng().random_bool(0.3) {
                        let k = ctx.rng().random_range(0..self.captured.len());
                        let old = self.captured[k].clone();
                        let target = validators[ctx.rng().random_range(0..n)];
                        if target != me {
                            ctx.send(target, old);
                        }
                    }
                }
                Behaviour::InvalidReceipts => {
                    let msg = self.invalid_receipt(ctx, msg);
                    ctx.send(to, msg);
                }
                Behaviour::ImpossibleBudget => {
                    let msg = self.impossible(msg);
                    ctx.send(to, msg);
                }
                Behaviour::SplitProposals => {
                    let msg = match msg {
                        ConsensusMessage::Proposal(p) if i % 2 == 1 => self.split(*p),
                        other => other,
                    };
                    ctx.send(to, msg);
                }
                Behaviour::ForgeCommands => {
                    let (msg, alone) = self.forge_commands(msg, &validators);
                    ctx.send(to, msg);
                    if let Some(alone) = alone {
                        ctx.send(to, alone);
                    }
                }
            }
        }
    }

    /// A validly signed message that conflicts with `msg`.
    fn conflicting(
        &self,
        ctx: &mut Context<'_, ConsensusMessage, Timer>,
        msg: ConsensusMessage,
    ) -> ConsensusMessage {
        match msg {
            ConsensusMessage::Vote(v) => {
                let value = Some(random_receipt(ctx.rng()));
                ConsensusMessage::Vote(Vote::sign(&self.keys, v.slot, value))
            }
            ConsensusMessage::Proposal(p) => {
                let extra: [u8; 8] = ctx.rng().random();
                let mut commands = p.batch.commands().to_vec();
                let n = u64::from_le_bytes(extra);
                commands.push(Command::sign(&self.keys, n, n, extra.to_vec()).expect("small"));
                let batch = Batch::new(commands).unwrap_or_default();
                let header = SignedHeader::sign(
                    &self.keys,
                    p.header.height,
                    p.header.round,
                    None,
                    batch.receipt(),
                );
                ConsensusMessage::Proposal(Box::new(Proposal {
                    header,
                    batch,
                    proof_of_lock: None,
                }))
            }
            other => other,
        }
    }

    /// The conflicting proposal of [`Behaviour::SplitProposals`]: `p`'s
    /// batch and one command more, depending only on the height and round.
    fn split(&self, p: Proposal) -> ConsensusMessage {
        let (h, r) = (p.header.height, p.header.round);
        let mut extra = h.to_le_bytes().to_vec();
        extra.extend_from_slice(&r.to_le_bytes());
        let mut commands = p.batch.commands().to_vec();
        commands.push(Command::sign(&self.keys, h, h, extra).expect("small"));
        let batch = Batch::new(commands).unwrap_or_default();
        let header = SignedHeader::sign(&self.keys, h, r, None, batch.receipt());
        ConsensusMessage::Proposal(Box::new(Proposal {
            header,
            batch,
            proof_of_lock: None,
        }))
    }

    /// A message under another validator's name that must not verify.
    fn forged(
        &self,
        ctx: &mut Context<'_, ConsensusMessage, Timer>,
        msg: &ConsensusMessage,
        validators: &[NodeId],
    ) -> Option<ConsensusMessage> {
        let victim = validators[ctx.rng().random_range(0..validators.len())];
        let mut sig = [0u8; 64];
        ctx.rng().fill(&mut sig[..]);
        let value = random_receipt(ctx.rng());
        match msg {
            ConsensusMessage::Vote(v) => Some(ConsensusMessage::Vote(Vote {
                slot: Slot {
                    kind: VoteKind::Precommit,
                    ..v.slot
                },
                value: Some(value),
                voter: victim,
                signature: Signature::from_bytes(sig),
            })),
            ConsensusMessage::Proposal(p) => {
                // A "decision" for a batch nobody certified: our own valid
                // precommit plus forged ones under the other validators' names.
                let slot = Slot {
                    height: p.header.height,
                    round: p.header.round,
                    kind: VoteKind::Precommit,
                };
                let command = Command::sign(&self.keys, 0, 0, b"forged".to_vec()).expect("small");
                let batch = Batch::new(vec![command]).expect("small");
                let value = batch.receipt();
                let mut votes = vec![Vote::sign(&self.keys, slot, Some(value))];
                for v in validators.iter().filter(|v| **v != self.keys.node_id()) {
                    let mut s = [0u8; 64];
                    ctx.rng().fill(&mut s[..]);
                    votes.push(Vote {
                        slot,
                        value: Some(value),
                        voter: *v,
                        signature: Signature::from_bytes(s),
                    });
                }
                let certificate = Certificate::from_votes(slot, value, &votes);
                Some(ConsensusMessage::Decision(Box::new(Decision {
                    batch,
                    certificate,
                })))
            }
            _ => None,
        }
    }

    /// Three forgeries of `real` (see [`Behaviour::ForgeCommands`]), the
    /// swapped key being a validator's. They depend only on `real` and
    /// `validators`, so every peer is sent the same forged proposal (one
    /// that a replica without signature checks would vote for, not an
    /// equivocation its peers would split on).
    fn forgeries(real: &Command, validators: &[NodeId]) -> Vec<Command> {
        let mut payload = real.bytes().to_vec();
        payload.extend_from_slice(b" and pay mallory");
        let pick = real.id().as_bytes()[0] as usize % validators.len();
        let victim = validators[pick];
        let mut garbage = [0u8; 64];
        for (i, b) in garbage.iter_mut().enumerate() {
            *b = real.id().as_bytes()[i % 32] ^ (i as u8);
        }
        let (seq, first) = (real.sequence(), real.first_unanswered());
        [
            Command::from_parts(
                real.client(),
                seq,
                first,
                real.signature(),
                BatchProof::single(),
                payload,
            ),
            Command::from_parts(
                victim,
                seq,
                first,
                real.signature(),
                BatchProof::single(),
                real.bytes().to_vec(),
            ),
            Command::from_parts(
                real.client(),
                seq,
                first,
                Signature::from_bytes(garbage),
                BatchProof::single(),
                real.bytes().to_vec(),
            ),
        ]
        .into_iter()
        .filter_map(Result::ok)
        .collect()
    }

    /// `msg` with forged commands slipped in (a proposal is re-signed for
    /// its new batch), and a frame of forgeries alone.
    fn forge_commands(
        &self,
        msg: ConsensusMessage,
        validators: &[NodeId],
    ) -> (ConsensusMessage, Option<ConsensusMessage>) {
        // A real command to mutate: one of the message, else our own.
        let own = Command::sign(&self.keys, 0, 0, b"own".to_vec()).expect("small");
        match msg {
            ConsensusMessage::Proposal(mut p) => {
                let real = p.batch.commands().first().cloned().unwrap_or(own);
                let forged = Self::forgeries(&real, validators);
                let mut commands = p.batch.commands().to_vec();
                commands.extend(forged.iter().cloned());
                p.batch = Batch::new(commands).unwrap_or_default();
                let h = p.header;
                // No proof of lock: the forgery must reach the command check.
                p.proof_of_lock = None;
                p.header =
                    SignedHeader::sign(&self.keys, h.height, h.round, None, p.batch.receipt());
                let alone = ConsensusMessage::Commands(forged);
                (ConsensusMessage::Proposal(p), Some(alone))
            }
            ConsensusMessage::Commands(mut commands) => {
                let real = commands.first().cloned().unwrap_or(own);
                let forged = Self::forgeries(&real, validators);
                commands.extend(forged.iter().cloned());
                let alone = ConsensusMessage::Commands(forged);
                (ConsensusMessage::Commands(commands), Some(alone))
            }
            other => (other, None),
        }
    }

    /// Re-signs `msg` (a vote or proposal) for the value `twist` makes of it.
    fn resign(
        &self,
        msg: ConsensusMessage,
        mut twist: impl FnMut(Option<Receipt>) -> Receipt,
    ) -> ConsensusMessage {
        match msg {
            ConsensusMessage::Vote(v) => {
                ConsensusMessage::Vote(Vote::sign(&self.keys, v.slot, Some(twist(v.value))))
            }
            ConsensusMessage::Proposal(mut p) => {
                let h = p.header;
                let value = twist(Some(h.value));
                p.header = SignedHeader::sign(&self.keys, h.height, h.round, h.pol_round, value);
                ConsensusMessage::Proposal(p)
            }
            other => other,
        }
    }

    /// Votes and proposals for receipts nobody proposed.
    fn invalid_receipt(
        &self,
        ctx: &mut Context<'_, ConsensusMessage, Timer>,
        msg: ConsensusMessage,
    ) -> ConsensusMessage {
        self.resign(msg, |_| random_receipt(ctx.rng()))
    }

    /// Votes and proposals whose receipts claim the budget 60.
    fn impossible(&self, msg: ConsensusMessage) -> ConsensusMessage {
        self.resign(msg, |r| Receipt {
            budget: Budget::new(60).expect("below 96"),
            ..r.unwrap_or_else(|| Receipt::from_bytes(b"nil"))
        })
    }
}
