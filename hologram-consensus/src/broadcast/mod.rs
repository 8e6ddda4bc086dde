//! `LatticeProtocol`: authenticated epidemic broadcast over the lattice, with
//! delivery proofs (the chapter's "Lattice-Aware Networking" and its
//! exercise 1).
//!
//! # The protocol
//!
//! A broadcast is an [`AuthenticatedMessage`](hologram_receipt::AuthenticatedMessage)
//! (SPEC §7) whose payload is an envelope `issued_ms u64 LE ‖ body`
//! ([`encode_envelope`]); its [`MessageId`] binds the payload's receipt and
//! the origin. Every copy on the wire carries the witness chain from the
//! origin to its receiver, extended by one signed hop at every forward.
//!
//! - **Eager push**: the origin sends to its page neighbours (phase 1) and to
//!   one member on each of `gossip_fanout` remote pages chosen with the C768
//!   [`ScheduleRotation`](hologram_lattice::ScheduleRotation) of the current
//!   slot (phase 2). A node that delivers a message for the first time does
//!   phase 2, and phase 1 too when the message came from another page (a
//!   message from a page neighbour was already sent around the page). Phase 2
//!   takes pages `rotation.map_page(local_page, i_j)` for
//!   `i_j = (h + j·⌊47 / fanout⌋) mod 47`, `j < fanout`, with `h` a mix of the
//!   message id and the node id, and a member of each page picked by the same
//!   mix. The chapter's `i = 0..fanout` would make every node of a page pick
//!   the same few consecutive pages in a slot, so the pages reached would grow
//!   by about `fanout` per round (some 16 rounds for 48 pages); spreading and
//!   offsetting the indices keeps the rotation's equal frequency and reaches
//!   every page in a few rounds. Choices are deterministic: a run replays.
//! - **Checks before delivery**, cheapest first, each failure counted under a
//!   [`DropReason`]: the immediate sender is an accepted member; the id is not
//!   already delivered (duplicates are dropped before any signature is
//!   checked); the payload is within `max_body`; the origin and every
//!   forwarder are accepted members; the chain is addressed to this node and
//!   its last hop was signed by the peer that sent it; the envelope is fresh
//!   (not older than `max_age_ms`, not above the suppression floor, not from
//!   the future); then the payload against its receipt and every signature of
//!   the chain in one batch. Only then is the message delivered, acknowledged,
//!   kept and forwarded. Nothing that fails is forwarded or stored.
//! - **Duplicate suppression in bounded memory** ([`SeenIds`]): delivered
//!   ids are remembered with their issue time, at most `seen_capacity` of
//!   them; anything older than what was forgotten is refused as stale, so a
//!   message is delivered at most once (per incarnation of the node: a
//!   restarted node remembers nothing).
//! - **Lazy-push repair** (Plumtree's IHAVE/IWANT): every `repair_interval_ms`
//!   while it has recent deliveries, a node announces their ids (at most
//!   [`MAX_IDS`] per announcement) to `repair_fanout` random members, each id
//!   in `announce_rounds` rounds; a node missing an announced id pulls it
//!   from the announcer, which pushes its copy with the chain extended to the
//!   puller. Announcements carry ids, not payloads, and stop after a few
//!   rounds, so repair costs a few small messages per node and the network
//!   goes quiet.
//! - **Delivery proofs** ([`DeliveryCertificate`]): each receiver signs a
//!   [`DeliveryReceipt`] for the origin; the origin counts distinct members'
//!   valid acknowledgements and, at `ack_threshold`, holds a
//!   [`DeliveryCertificate`] that anyone can verify against the node
//!   identities. [`BroadcastResult`] reports page coverage and an estimate of
//!   network coverage from the acknowledgements.
//!
//! # Rounds
//!
//! A delivery's **round** is the number of hops in the witness chain it
//! arrived with ([`Delivery::hops`]): the origin's own sends are round 1,
//! their forwards round 2, and so on; a message pulled in repair counts the
//! hops of the copy that answered plus one. With a uniform one-way latency
//! the round is also the delivery time in latencies.
//!
//! # Shape
//!
//! [`LatticeProtocol`] is the deterministic core (inputs with the current
//! time, [`Output`]s back); [`BroadcastNode`] runs it in
//! [`hologram_lattice::sim`]; [`BroadcastDriver`] runs it over a
//! [`Transport`](hologram_lattice::transport::Transport).
//!
//! | module | what it holds |
//! |---|---|
//! | `config` | [`BroadcastConfig`], [`ForwardPolicy`] |
//! | `directory` | [`Directory`]: accepted identities by page, shunning |
//! | `id` | [`MessageId`], the envelope |
//! | `targets` | phase 1 and phase 2 target selection |
//! | `recent` | [`SeenIds`], [`MessageCache`] |
//! | `delivery` | [`DeliveryReceipt`], [`DeliveryCertificate`] |
//! | `drops` | [`DropReason`], [`DropCounts`] |
//! | `wire` | [`BroadcastMessage`], bounded decoding |
//! | `protocol` | [`LatticeProtocol`], [`Output`], [`Delivery`], [`BroadcastResult`] |
//! | `node` | [`BroadcastNode`] for the simulator |
//! | `driver` | [`BroadcastDriver`] over a transport, its [`BroadcastHandler`] |

mod config;
pub(crate) mod delivery;
mod directory;
mod driver;
mod drops;
mod id;
mod node;
pub(crate) mod protocol;
mod recent;
mod targets;
mod wire;

pub use config::{BroadcastConfig, ForwardPolicy};
use delivery::DeliveryCertificate;
pub use delivery::{
    Ack, DeliveryReceipt, ACK_SIGNED_LEN, MAX_CERTIFICATE_ACKS, MAX_CERTIFICATE_WIRE,
};
pub use directory::Directory;
pub use driver::{unix_millis, BroadcastDriver, BroadcastHandler, Clock};
pub use drops::{DropCounts, DropReason};
pub use id::{decode_envelope, encode_envelope, MessageId, ENVELOPE_HEADER, MESSAGE_ID_CONTEXT};
pub use node::{BroadcastNode, BroadcastTimer};
use protocol::{BroadcastResult, LatticeProtocol};
pub use protocol::{Delivery, Output, SentCounts};
pub use recent::{MessageCache, SeenIds};
pub use wire::{BroadcastMessage, MAX_IDS, MAX_MESSAGE_WIRE};
