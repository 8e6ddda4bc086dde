//! The crate's error type.

use crate::vote::VoteKind;
use hologram_cam::CamError;
use hologram_lattice::transport::TransportError;
use hologram_lattice::wire::WireError;
use hologram_lattice::{Address, NodeId};
use hologram_receipt::{Receipt, ReceiptError};
use thiserror::Error;

/// Everything that can go wrong in `hologram-consensus`.
///
/// Each variant says what was wrong and with which input.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConsensusError {
    /// A validator set was empty, too large or named a validator twice.
    #[error("invalid validator set: {0}")]
    InvalidValidatorSet(String),
    /// A message, vote or certificate came from a node that is not a validator.
    #[error("{0} is not a validator")]
    NotAValidator(NodeId),
    /// A signature (of a vote or proposal) did not verify.
    #[error("bad signature: {0}")]
    BadSignature(#[source] ReceiptError),
    /// A proposal was signed by someone other than the round's leader.
    #[error("proposal for height {height} round {round} from {from}, but the leader is {leader}")]
    WrongProposer {
        /// The proposal's height.
        height: u64,
        /// The proposal's round.
        round: u32,
        /// Who signed it.
        from: NodeId,
        /// Who leads that round.
        leader: NodeId,
    },
    /// A batch's bytes do not have the receipt a proposal or certificate claims.
    #[error("batch receipt mismatch: claimed {}, computed {}", .claimed.content, .computed.content)]
    BatchMismatch {
        /// The receipt claimed.
        claimed: Box<Receipt>,
        /// The receipt of the batch's canonical bytes.
        computed: Box<Receipt>,
    },
    /// A certificate carries too few distinct valid signatures.
    #[error("certificate for height {height} round {round} has {got} signatures, {needed} needed")]
    InsufficientSignatures {
        /// The certificate's height.
        height: u64,
        /// The certificate's round.
        round: u32,
        /// Distinct valid signatures present.
        got: usize,
        /// The quorum.
        needed: usize,
    },
    /// A certificate lists a signer twice or out of order.
    #[error("certificate lists signer {0} twice or out of order")]
    DuplicateSigner(NodeId),
    /// A certificate is of the wrong kind (a polka where a commit was needed).
    #[error("expected a {expected:?} certificate, got a {got:?} one")]
    WrongCertificateKind {
        /// The kind required.
        expected: VoteKind,
        /// The kind given.
        got: VoteKind,
    },
    /// A proposal's proof-of-lock certificate does not justify it.
    #[error("proof of lock invalid: {0}")]
    BadProofOfLock(String),
    /// A command, batch or broadcast body exceeds a size bound.
    #[error("{what} of {size} exceeds the limit of {max}")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A wire message or stored record did not decode, or a list in it is
    /// longer than allowed (see [`hologram_lattice::wire`]).
    #[error(transparent)]
    Wire(#[from] WireError),
    /// A command's batch proof has no shape a batch can give: its index
    /// is not below its count, its count is 0 or over
    /// [`MAX_SIGNED_BATCH`](crate::MAX_SIGNED_BATCH), or it has another
    /// number of sibling hashes than that place's path.
    #[error("malformed batch proof: index {index} of {count} with {siblings} sibling hashes")]
    BadBatchProof {
        /// The index it claims.
        index: u16,
        /// The batch size it claims.
        count: u16,
        /// The sibling hashes it has.
        siblings: usize,
    },
    /// A command's client signature does not verify: it was forged or
    /// altered (payload, key or signature changed). It is not stored,
    /// gossiped or voted for.
    #[error("command {id} of client {client}: bad signature: {reason}")]
    BadCommand {
        /// The command's id (as computed from its client and payload).
        id: crate::CommandId,
        /// The client it claims.
        client: NodeId,
        /// Why verification failed.
        #[source]
        reason: Box<ReceiptError>,
    },
    /// The mempool is full: the command was not accepted.
    #[error("mempool full ({capacity} commands): command rejected")]
    MempoolFull {
        /// The mempool's capacity.
        capacity: usize,
    },
    /// An equivocation proof does not prove equivocation.
    #[error("not an equivocation: {0}")]
    NotEquivocation(String),
    /// A configuration value is unusable.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The transport failed.
    #[error("transport: {0}")]
    Transport(#[from] TransportError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] CamError),
    /// A replicated log or its persisted form is inconsistent.
    #[error("log: {0}")]
    Log(String),
    /// A stored block or voting record is in a format version newer than
    /// this build reads (written by a newer version of hologram): the log
    /// is not opened, and nothing was changed.
    #[error(
        "stored {what} is in format version {found}; this build reads versions up to {supported}"
    )]
    UnsupportedFormat {
        /// What the object is (block, voting record).
        what: &'static str,
        /// The version found.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// A stored object claiming to be a block or voting record does not
    /// decode: it was not used.
    #[error("stored {what} at {address} is malformed: {reason}")]
    CorruptStored {
        /// What the object claims to be (block, voting record).
        what: &'static str,
        /// Its address in the store.
        address: Address,
        /// Why it does not decode.
        reason: String,
    },
    /// A stored block decodes but its certificate does not certify it (a
    /// tampered or forged block): it was not applied.
    #[error("stored block for height {height} at {address} rejected: {source}")]
    RejectedBlock {
        /// The height the block claims.
        height: u64,
        /// Its address in the store.
        address: Address,
        /// Why its certificate does not hold.
        #[source]
        source: Box<ConsensusError>,
    },
    /// Snapshot bytes that do not decode (cut short, trailing bytes, a
    /// bound exceeded, sessions out of order): nothing was restored.
    #[error("malformed snapshot: {0}")]
    SnapshotMalformed(String),
    /// A part of a snapshot (its manifest, or a chunk) whose bytes do not
    /// hash to the address the certified checkpoint (or the manifest)
    /// names: refused, nothing applied.
    #[error("snapshot part {part} hashes to {actual}, {expected} expected")]
    SnapshotAddress {
        /// The part: 0 for the manifest, `i + 1` for chunk `i`.
        part: u32,
        /// The address it must hash to.
        expected: Address,
        /// The address its bytes hash to.
        actual: Address,
    },
    /// A snapshot chunk whose length differs from its manifest's (a
    /// truncated chunk): refused, nothing applied.
    #[error("snapshot part {part} has {actual} bytes, its manifest says {expected}")]
    SnapshotChunkLength {
        /// The part (`i + 1` for chunk `i`).
        part: u32,
        /// The length the manifest gives.
        expected: u64,
        /// The length received.
        actual: u64,
    },
    /// A snapshot that decodes but is not the one its checkpoint names, or
    /// not one this machine can take (another height, chain head,
    /// validator set or session limits): nothing was restored.
    #[error("snapshot does not match: {0}")]
    SnapshotMismatch(String),
    /// A certificate (or the decided batch it certifies) names a validator
    /// set that is not the one this node knows in force at its height, or
    /// is of a height whose set this node cannot know yet (a set change
    /// decided less than the delay before it has not been delivered here):
    /// refused, nothing applied.
    #[error("height {height}: certificate under validator set {named}, which is not the set known in force there")]
    UnknownValidatorSet {
        /// The certificate's height.
        height: u64,
        /// The fingerprint it names (hex; `unnamed` if it names none, or
        /// `not yet known` if this node does not know the set at that height).
        named: String,
    },
    /// A validator-set change that does not apply: its version is not the
    /// set's, its approvals are not a quorum of the set's distinct members
    /// with valid signatures, or its operation does not fit the set (adding
    /// a member, removing a stranger, emptying the set): refused, nothing
    /// applied.
    #[error("validator-set change {version} refused: {reason}")]
    SetChangeRefused {
        /// The set version the change claims to apply to.
        version: u64,
        /// Why it does not apply.
        reason: String,
    },
    /// A link of a chain of validator-set changes (a certified decision
    /// carrying a change) that does not verify from the set before it: its
    /// certificate is not a quorum of that set, it names another set, it
    /// carries no change or one that does not apply. The chain is refused;
    /// nothing of it is trusted.
    #[error("set-change link at height {height} refused: {source}")]
    ForgedSetChangeLink {
        /// The link's height.
        height: u64,
        /// Why it does not verify.
        #[source]
        source: Box<ConsensusError>,
    },
    /// The validator or its driver has stopped.
    #[error("validator {0} stopped")]
    Stopped(NodeId),
    /// A subscriber to decided heights fell behind what the validator keeps
    /// in memory: read heights `from..oldest` from its `DurableLog` (the
    /// decisions `DurableLog::open` recovers), then subscribe again.
    #[error("lagged: height {from} is no longer kept in memory (the oldest kept is {oldest}); read it from the DurableLog")]
    Lagged {
        /// The height the subscriber needed next.
        from: u64,
        /// The oldest height still kept (the first undecided one if none is).
        oldest: u64,
    },
    /// A validator answered with an error.
    #[error("validator {validator} refused: {reason}")]
    Refused {
        /// The validator.
        validator: NodeId,
        /// What it said.
        reason: String,
    },
    // broadcast
    /// The origin could not sign its own broadcast.
    #[error("broadcast could not be built: {0}")]
    BroadcastBuild(#[source] ReceiptError),
    /// A broadcast's acknowledgements were forgotten (more than `max_pending`
    /// newer broadcasts) before its result was read.
    #[error("broadcast {0} is no longer tracked")]
    BroadcastForgotten(String),
    /// A delivery certificate has fewer acknowledgements than required.
    #[error("delivery certificate has {acks} acknowledgements, {threshold} required")]
    CertificateBelowThreshold {
        /// Distinct acknowledgements in the certificate.
        acks: usize,
        /// The threshold it was checked against.
        threshold: usize,
    },
    /// A delivery certificate lists a receiver twice, or out of order.
    #[error("delivery certificate lists receiver {receiver} twice or out of order")]
    CertificateDuplicateReceiver {
        /// The repeated (or misplaced) receiver.
        receiver: NodeId,
    },
    /// A delivery certificate counts an acknowledgement from a node outside the directory.
    #[error("delivery certificate counts {receiver}, who is not a known node")]
    CertificateUnknownReceiver {
        /// The unknown receiver.
        receiver: NodeId,
    },
    /// A delivery certificate holds an acknowledgement whose signature does
    /// not verify, or that is for another message or origin.
    #[error("delivery certificate holds a forged acknowledgement of {receiver}")]
    CertificateForgedAck {
        /// The receiver the forged acknowledgement names.
        receiver: NodeId,
    },
}
