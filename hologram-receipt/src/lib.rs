//! # hologram-receipt
//!
//! Everything a hologram node signs, verifies or chains: budgets in Z/96,
//! receipts and their composition, domain-separated Ed25519 signatures,
//! witness chains for authenticated messages, and receipt chains. It follows
//! the project's SPEC §5 (budgets), §6 (receipts) and §7 (identity,
//! signatures, witnesses), and builds on `hologram-lattice` for addresses,
//! R96 digests, the C768 schedule and node ids.
//!
//! ## Map
//!
//! | module | what it holds |
//! |---|---|
//! | `budget` | [`Budget`], Z/96 arithmetic, signed view, impossible claims |
//! | `ledger` | [`BudgetLedger`]: charge and release without going negative |
//! | `receipt` | [`Receipt`], its 72 canonical bytes, `verify`, `is_lawful` |
//! | `builder` | [`ReceiptBuilder`]: address and R96 digest in one streaming pass |
//! | `compose` | sequential, many-way and state-transition composition |
//! | `signing` | [`KeyPair`], [`Signature`], [`Purpose`], [`verify_signature`] |
//! | `cache` | the bounded process-wide caches of decompressed keys and valid signatures |
//! | `batch` | [`SignatureBatch`]: batch verification that names the bad signature |
//! | `witness` | [`Witness`] chains: origin and hop links |
//! | `message` | [`AuthenticatedMessage`]: payload, receipt, witness |
//! | `chain` | [`ReceiptChain`], [`ChainHead`], replica comparison |
//! | `error` | [`ReceiptError`] |
//!
//! ## Key-derivation contexts
//!
//! Every hash this crate defines is `BLAKE3-derive(context, bytes)` with its
//! own context, each ending in `v1`:
//!
//! | context | what it derives | defined by |
//! |---|---|---|
//! | `hologram receipt-seq v1` | r96 of `A ; B` | SPEC §6 |
//! | `hologram receipt-chain v1` | receipt chain heads | SPEC §6 |
//! | `hologram <purpose> v1` | the Ed25519 message of each [`Purpose`] | SPEC §7 |
//! | `hologram receipt-seq-content v1` | content of `A ; B` | this crate |
//! | `hologram receipt-par v1` | r96 of a many-way composition | this crate |
//! | `hologram receipt-par-content v1` | content of a many-way composition | this crate |
//! | `hologram receipt-transition v1` | content of a state-transition receipt | this crate |
//! | `hologram witness-link v1` | witness link digests | this crate |
//!
//! The purposes are `vote`, `commit`, `prepare`, `abort`, `proposal`,
//! `witness-origin`, `witness-hop`, `delivery`, `transition` and `hand-off`.
//!
//! ## Example
//!
//! ```
//! use hologram_lattice::wire::Wire;
//! use hologram_receipt::{AuthenticatedMessage, KeyPair, Receipt, ReceiptChain, ReceiptError};
//!
//! // Receipts of data, composed.
//! let a = Receipt::from_bytes(b"HELLO ");
//! let b = Receipt::from_bytes(b"WORLD");
//! assert!(a.then(&b).is_lawful(None));
//! assert_eq!(Receipt::compose_all([&a, &b]), Receipt::compose_all([&b, &a]));
//!
//! // An authenticated message, forwarded once and sent over the wire.
//! let (alice, bob) = (KeyPair::from_seed([1; 32]), KeyPair::from_seed([2; 32]));
//! let msg = AuthenticatedMessage::new(b"HELLO WORLD".to_vec(), &alice)?
//!     .forward(bob.node_id(), &alice)?;
//! let received = AuthenticatedMessage::from_wire(&msg.to_wire()?)?;
//! received.verify()?;
//! assert!(received.authorizes(&alice.node_id()));
//!
//! // A replicated log, summarised.
//! let mut chain = ReceiptChain::new();
//! chain.extend(received.receipt());
//! assert!(ReceiptChain::verify(&[*received.receipt()], chain.head()).is_ok());
//! # Ok::<(), ReceiptError>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod batch;
mod budget;
mod builder;
mod cache;
mod chain;
mod compose;
mod error;
mod ledger;
mod message;
mod receipt;
mod signing;
mod wire;
mod witness;

pub use batch::SignatureBatch;
pub use budget::{Budget, MAX_NON_NEGATIVE, MODULUS};
pub use builder::{ReceiptBuilder, BLOCK_LEN, PARALLEL_MIN_LEN};
pub use chain::{ChainHead, ReceiptChain, ReplicaComparison, CHAIN_CONTEXT};
pub use compose::{
    PAR_CONTENT_CONTEXT, PAR_R96_CONTEXT, SEQ_CONTENT_CONTEXT, SEQ_R96_CONTEXT, TRANSITION_CONTEXT,
};
pub use error::ReceiptError;
pub use ledger::BudgetLedger;
pub use message::{AuthenticatedMessage, MAX_PAYLOAD_LEN};
pub use receipt::{Receipt, CANONICAL_LEN};
pub use signing::{
    forget_verified_signatures, verify_signature, verifying_key, KeyPair, Purpose, Signature,
    KEY_CACHE_CAPACITY, VERIFIED_CACHE_CAPACITY,
};
pub use witness::{HopLink, OriginLink, Witness, LINK_CONTEXT, MAX_HOPS};
